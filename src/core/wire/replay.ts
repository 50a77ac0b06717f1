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
  /** Index of this window's words in the guard's shared bit pool. */
  readonly slot: number;
  /** When a fresh packet last moved it (the guard's use counter), for least-recently-used eviction. */
  used: number;
}

export type ReplayVerdict = "fresh" | "replay" | "stale-epoch";

export class ReplayGuard {
  readonly #width: number;
  readonly #words: number;
  readonly #sendersMax: number;
  readonly #windows = new Map<string, Window>();
  #uses = 0;
  /**
   * Every window's bits live in one pool, #words 32-bit words per slot (bit i of a slot set:
   * counter top - i was seen). One typed array instead of one per sender keeps a node that hears
   * thousands of peers from holding thousands of small buffers.
   */
  #pool: Uint32Array;
  readonly #freeSlots: number[] = [];
  #slotsUsed = 0;

  constructor(width: number = LIMITS.replayWindow, sendersMax: number = LIMITS.replaySendersMax) {
    assert(width > 0 && width % 32 === 0, "ReplayGuard: width must be a positive multiple of 32");
    this.#width = width;
    this.#words = width / 32;
    this.#sendersMax = sendersMax;
    this.#pool = new Uint32Array(this.#words * 16);
  }

  get size(): number {
    return this.#windows.size;
  }

  check(sender: string, channel: Channel, epoch: number, counter: number): ReplayVerdict {
    const key = channel === "datagram" ? sender : `${sender}/s`;
    const known = this.#windows.get(key);
    if (known !== undefined && epoch < known.epoch) return "stale-epoch";
    let w = known;
    if (w === undefined) {
      w = { epoch, top: -1, slot: this.#allocate(), used: 0 };
    } else if (epoch > w.epoch) {
      w.epoch = epoch;
      w.top = -1;
    }
    const verdict = this.#mark(w, counter);
    if (verdict === "fresh") {
      w.used = ++this.#uses;
      if (known === undefined) {
        this.#windows.set(key, w);
        if (this.#windows.size > this.#sendersMax) this.#evict();
      }
    } else if (known === undefined) {
      this.#freeSlots.push(w.slot);
    }
    return verdict;
  }

  /**
   * Forgets the least recently heard sender. A scan of the table, but only when a new sender
   * arrives at a full table: senders are authenticated before they get a window, so only more than
   * sendersMax genuine peers make this happen.
   */
  #evict(): void {
    let oldestKey: string | undefined;
    let oldest: Window | undefined;
    for (const [key, window] of this.#windows) {
      if (oldest === undefined || window.used < oldest.used) {
        oldest = window;
        oldestKey = key;
      }
    }
    if (oldestKey === undefined || oldest === undefined) return;
    this.#windows.delete(oldestKey);
    this.#freeSlots.push(oldest.slot);
  }

  #allocate(): number {
    const free = this.#freeSlots.pop();
    if (free !== undefined) return free;
    const slot = this.#slotsUsed++;
    if ((slot + 1) * this.#words > this.#pool.length) {
      const grown = new Uint32Array(this.#pool.length * 2);
      grown.set(this.#pool);
      this.#pool = grown;
    }
    return slot;
  }

  #mark(w: Window, counter: number): ReplayVerdict {
    const base = w.slot * this.#words;
    if (counter > w.top) {
      const shift = w.top < 0 ? this.#width : counter - w.top;
      shiftWindow(this.#pool, base, this.#words, Math.min(shift, this.#width));
      w.top = counter;
      setBit(this.#pool, base, 0);
      return "fresh";
    }
    const age = w.top - counter;
    if (age >= this.#width) return "replay";
    if (getBit(this.#pool, base, age)) return "replay";
    setBit(this.#pool, base, age);
    return "fresh";
  }
}

function getBit(bits: Uint32Array, base: number, i: number): boolean {
  return ((bits[base + (i >>> 5)] as number) & (1 << (i & 31))) !== 0;
}

function setBit(bits: Uint32Array, base: number, i: number): void {
  const at = base + (i >>> 5);
  bits[at] = (bits[at] as number) | (1 << (i & 31));
}

/** Moves every bit of one window up by n positions (older), dropping those that fall off the end. */
function shiftWindow(bits: Uint32Array, base: number, length: number, n: number): void {
  const words = n >>> 5;
  const rest = n & 31;
  for (let i = length - 1; i >= 0; i--) {
    const src = i - words;
    const hi = src >= 0 ? (bits[base + src] as number) : 0;
    const lo = src - 1 >= 0 ? (bits[base + src - 1] as number) : 0;
    bits[base + i] = rest === 0 ? hi : ((hi << rest) | (lo >>> (32 - rest))) >>> 0;
  }
}
