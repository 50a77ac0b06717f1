// A small deterministic in-memory network for driving N Swim cores (tests only). One seeded Rng
// decides delays and losses; every message goes through encodeMessage/decodeMessage so that the
// wire schemas are exercised, and every datagram is checked against LIMITS.datagramBytesMax after
// the 44-byte envelope.
//
// Faults: per-datagram loss, per-message delay in [delayMin, delayMax] ticks, partitions (blocked
// directed pairs; both channels), crashes (a crashed node stops ticking and its inbound is dropped).
import { Swim, SWIM_LAN, type SwimConfig, type SwimCrypto, type SwimEvent } from "../../src/core/body/swim.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import { createRng, type Rng } from "../../src/core/util/rng.ts";
import { simSwimCrypto, simSwimEntry, type SimEntryOptions } from "../../src/sim/swim-scale.ts";
import { decodeMessage, encodeMessage } from "../../src/core/wire/codec.ts";
import type { Channel } from "../../src/core/wire/envelope.ts";
import type { MemberEntry } from "../../src/core/wire/messages.ts";

export const ENVELOPE_BYTES = 44;

/**
 * Ids are the hex of the key's first 8 bytes (cheap, still derived from the key); entries carry the
 * scenario owner's certificate and the member's signature, checked as on a node, with the
 * simulator's stand-in signatures (src/sim/swim-scale.ts).
 */
export const testCrypto: SwimCrypto = simSwimCrypto;

export type EntryOptions = SimEntryOptions;

export function testEntry(index: number, options: EntryOptions = {}): MemberEntry {
  return simSwimEntry(index, options);
}

/** A suspect (1), dead (2) or left (3) update, signed by `from` as a member does (stand-in signatures). */
export function claim(code: 1 | 2 | 3, id: string, incarnation: number, from: string): [1 | 2 | 3, string, number, string, Uint8Array] {
  return [code, id, incarnation, from, simSwimCrypto.signClaim({ leave: code === 3, id, incarnation, from })];
}

export interface SimOptions {
  readonly n: number;
  readonly seed: number;
  readonly config?: SwimConfig;
  /** Probability that a datagram is lost (streams are reliable). */
  readonly loss?: number;
  readonly delayMin?: number;
  readonly delayMax?: number;
  /** Whether node i starts out knowing node j; everyone knows everyone by default. */
  readonly knows?: (i: number, j: number) => boolean;
  readonly entry?: (i: number) => MemberEntry;
}

export interface SimEvent {
  readonly tick: number;
  readonly node: number;
  readonly event: SwimEvent;
}

interface InFlight {
  readonly from: number;
  readonly to: number;
  readonly channel: Channel;
  readonly body: Uint8Array;
}

export class SwimSim {
  readonly nodes: Swim[] = [];
  readonly entries: MemberEntry[] = [];
  readonly events: SimEvent[] = [];
  readonly crashed = new Set<number>();
  readonly seed: number;
  now = 0;
  loss: number;
  sent = 0;
  lost = 0;
  datagramBytesMax = 0;
  readonly #rng: Rng;
  readonly #delayMin: number;
  readonly #delayMax: number;
  readonly #byAddr = new Map<string, number>();
  readonly #blocked = new Set<string>();
  readonly #queue = new Map<number, InFlight[]>();

  constructor(options: SimOptions) {
    this.seed = options.seed;
    this.#rng = createRng(options.seed, 7);
    this.loss = options.loss ?? 0;
    this.#delayMin = options.delayMin ?? 1;
    this.#delayMax = options.delayMax ?? 3;
    for (let i = 0; i < options.n; i++) {
      const entry = options.entry?.(i) ?? testEntry(i);
      this.entries.push(entry);
      this.#byAddr.set(entry.addr, i);
    }
    for (let i = 0; i < options.n; i++) {
      const swim = new Swim(this.entries[i] as MemberEntry, createRng(options.seed * 1000 + i, 3), testCrypto, options.config ?? SWIM_LAN);
      for (let j = 0; j < options.n; j++) {
        if (j !== i && (options.knows?.(i, j) ?? true)) swim.add(this.entries[j] as MemberEntry);
      }
      swim.ready(); // Initial member-alive events are not interesting.
      this.nodes.push(swim);
    }
  }

  node(i: number): Swim {
    return this.nodes[i] as Swim;
  }

  id(i: number): string {
    return (this.entries[i] as MemberEntry).id;
  }

  crash(i: number): void {
    this.crashed.add(i);
  }

  /** Blocks traffic from a to b (one way) or both ways. */
  block(a: number, b: number, bothWays = true): void {
    this.#blocked.add(`${a}>${b}`);
    if (bothWays) this.#blocked.add(`${b}>${a}`);
  }

  /** Cuts node i off from everyone. */
  isolate(i: number): void {
    for (let j = 0; j < this.nodes.length; j++) if (j !== i) this.block(i, j);
  }

  heal(): void {
    this.#blocked.clear();
  }

  run(ticks: number, until?: () => boolean): boolean {
    for (let t = 0; t < ticks; t++) {
      this.tick();
      if (until?.()) return true;
    }
    return false;
  }

  tick(): void {
    this.now++;
    const due = this.#queue.get(this.now);
    if (due !== undefined) {
      this.#queue.delete(this.now);
      for (const message of due) this.#deliver(message);
    }
    for (let i = 0; i < this.nodes.length; i++) {
      if (!this.crashed.has(i)) this.node(i).tick();
    }
    for (let i = 0; i < this.nodes.length; i++) this.#drain(i);
  }

  /** Events of one type about member `id` (by node index), in order. */
  eventsAbout(type: SwimEvent["type"], id: string): SimEvent[] {
    return this.events.filter((e) => e.event.type === type && e.event.id === id);
  }

  #drain(i: number): void {
    const swim = this.node(i);
    if (!swim.hasReady()) return;
    const ready = swim.ready();
    for (const event of ready.events) this.events.push({ tick: this.now, node: i, event });
    if (this.crashed.has(i)) return;
    for (const out of ready.messages) {
      const to = this.#byAddr.get(out.to);
      if (to === undefined) throw new Error(`seed ${this.seed}: message to unknown address ${out.to}`);
      const body = encodeMessage(out.message);
      if (out.channel === "datagram") {
        const size = body.length + ENVELOPE_BYTES;
        if (size > LIMITS.datagramBytesMax) throw new Error(`seed ${this.seed}: ${out.message.t} datagram of ${size} bytes`);
        this.datagramBytesMax = Math.max(this.datagramBytesMax, size);
      }
      this.sent++;
      if (out.channel === "datagram" && this.loss > 0 && this.#rng.chance(this.loss)) {
        this.lost++;
        continue;
      }
      const at = this.now + this.#delayMin + this.#rng.int(this.#delayMax - this.#delayMin + 1);
      let bucket = this.#queue.get(at);
      if (bucket === undefined) this.#queue.set(at, bucket = []);
      bucket.push({ from: i, to, channel: out.channel, body });
    }
  }

  #deliver(message: InFlight): void {
    if (this.crashed.has(message.to) || this.#blocked.has(`${message.from}>${message.to}`)) return;
    const decoded = decodeMessage(message.body);
    if (!decoded.ok) throw new Error(`seed ${this.seed}: decode failed: ${decoded.detail}`);
    this.node(message.to).step(this.id(message.from), decoded.message);
    this.#drain(message.to);
  }
}
