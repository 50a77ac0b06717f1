// Replay protection: a sliding window over (epoch, counter) per sender and channel, in the manner
// of IPsec's anti-replay window (RFC 4303 §3.4.3) and WireGuard's. A packet is accepted once; a
// packet from an older epoch of its sender (a previous boot) is refused, and a newer epoch resets
// the window. Call check() after the packet authenticated, never before: an unauthenticated packet
// must not move the window.
import { assert } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";
import type { Channel } from "./envelope.ts";

interface Window {
  epoch: number;
  /** Highest counter accepted in this epoch; -1 before the first. */
  top: number;
  /** Bit i set: counter top - i was seen (i < width). */
  seen: Uint32Array;
}

export type ReplayVerdict = "fresh" | "replay" | "stale-epoch";

export class ReplayGuard {
  readonly #width: number;
  readonly #sendersMax: number;
  // Map iteration order is insertion order: re-inserting on use makes the first key the least
  // recently heard sender, the one evicted when the table is full.
  readonly #windows = new Map<string, Window>();

  constructor(width: number = LIMITS.replayWindow, sendersMax: number = LIMITS.replaySendersMax) {
    assert(width > 0 && width % 32 === 0, "ReplayGuard: width must be a positive multiple of 32");
    this.#width = width;
    this.#sendersMax = sendersMax;
  }

  get size(): number {
    return this.#windows.size;
  }

  check(sender: string, channel: Channel, epoch: number, counter: number): ReplayVerdict {
    const key = channel === "datagram" ? sender : `${sender}/s`;
    let w = this.#windows.get(key);
    if (w !== undefined && epoch < w.epoch) return "stale-epoch";
    if (w === undefined || epoch > w.epoch) {
      w = { epoch, top: -1, seen: new Uint32Array(this.#width / 32) };
    }
    const verdict = this.#mark(w, counter);
    if (verdict === "fresh") {
      this.#windows.delete(key);
      this.#windows.set(key, w);
      if (this.#windows.size > this.#sendersMax) {
        const oldest = this.#windows.keys().next().value;
        if (oldest !== undefined) this.#windows.delete(oldest);
      }
    }
    return verdict;
  }

  #mark(w: Window, counter: number): ReplayVerdict {
    if (counter > w.top) {
      const shift = w.top < 0 ? this.#width : counter - w.top;
      shiftWindow(w.seen, Math.min(shift, this.#width));
      w.top = counter;
      setBit(w.seen, 0);
      return "fresh";
    }
    const age = w.top - counter;
    if (age >= this.#width) return "replay";
    if (getBit(w.seen, age)) return "replay";
    setBit(w.seen, age);
    return "fresh";
  }
}

function getBit(bits: Uint32Array, i: number): boolean {
  return ((bits[i >>> 5] as number) & (1 << (i & 31))) !== 0;
}

function setBit(bits: Uint32Array, i: number): void {
  bits[i >>> 5] = (bits[i >>> 5] as number) | (1 << (i & 31));
}

/** Moves every bit up by n positions (older), dropping those that fall off the end. */
function shiftWindow(bits: Uint32Array, n: number): void {
  const words = n >>> 5;
  const rest = n & 31;
  for (let i = bits.length - 1; i >= 0; i--) {
    const src = i - words;
    const hi = src >= 0 ? (bits[src] as number) : 0;
    const lo = src - 1 >= 0 ? (bits[src - 1] as number) : 0;
    bits[i] = rest === 0 ? hi : ((hi << rest) | (lo >>> (32 - rest))) >>> 0;
  }
}
