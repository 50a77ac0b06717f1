// vital: every node's vital signs (uptime, load, memory, event-loop delay), a sans-IO core.
//
// Each vital period (1 s) the node samples its own signs (the host measures them; the kernel passes
// them in), keeps them in a bounded history window, and sends them in one `vital` datagram to the
// next `fanout` (8) live members of a round-robin over the member list. With n − 1 ≤ fanout every
// member hears every other each second; above it each member is reached every ⌈(n − 1)/fanout⌉ s and
// `vital` shows the age of what it knows (a gossip topic carries them at scale once K-DDS lands).
import { assert } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";

export interface VitalSigns {
  readonly uptimeMs: number;
  /** 1-minute load average of the machine. */
  readonly load1: number;
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  /** Event-loop delay p99 over the host's sampling window, in ms. */
  readonly loopDelayP99Ms: number;
}

export interface VitalSample {
  /** Tick at which it was taken (local) or received (from a peer). */
  readonly tick: number;
  readonly signs: VitalSigns;
}

export interface VitalConfig {
  /** Ticks between samples and sends. */
  readonly periodTicks: number;
  /** Members sent to per period. */
  readonly fanout: number;
  /** Own samples kept. */
  readonly historyMax: number;
}

export const VITAL_DEFAULTS: VitalConfig = { periodTicks: 100, fanout: 8, historyMax: LIMITS.vitalHistoryMax };

export type VitalWire = { readonly t: "vital"; readonly up: number; readonly load: number; readonly rss: number; readonly heap: number; readonly lag: number };

const U32_MAX = 0xffff_ffff;

function clampInt(value: number, max: number): number {
  if (!(value > 0)) return 0;
  return Math.min(max, Math.round(value));
}

export function vitalToWire(signs: VitalSigns): VitalWire {
  return {
    t: "vital",
    up: clampInt(signs.uptimeMs, Number.MAX_SAFE_INTEGER),
    load: clampInt(signs.load1 * 1000, U32_MAX),
    rss: clampInt(signs.rssBytes, Number.MAX_SAFE_INTEGER),
    heap: clampInt(signs.heapUsedBytes, Number.MAX_SAFE_INTEGER),
    lag: clampInt(signs.loopDelayP99Ms * 1000, U32_MAX),
  };
}

export function vitalFromWire(wire: VitalWire): VitalSigns {
  return { uptimeMs: wire.up, load1: wire.load / 1000, rssBytes: wire.rss, heapUsedBytes: wire.heap, loopDelayP99Ms: wire.lag / 1000 };
}

export class Vitals {
  readonly #config: VitalConfig;
  /** Own samples, oldest first; at most historyMax. */
  #history: VitalSample[] = [];
  /** The latest signs heard from each member. */
  readonly #peers = new Map<string, VitalSample>();
  #cursor = 0;

  constructor(config: VitalConfig = VITAL_DEFAULTS) {
    assert(config.periodTicks > 0 && config.fanout >= 1 && config.historyMax >= 1, "Vitals: config out of bounds");
    this.#config = config;
  }

  get config(): VitalConfig {
    return this.#config;
  }

  /** Records an own sample; the oldest falls out of the window. */
  sample(tick: number, signs: VitalSigns): void {
    this.#history.push({ tick, signs });
    if (this.#history.length > this.#config.historyMax) this.#history.splice(0, this.#history.length - this.#config.historyMax);
  }

  /** Restores the history window from the store (before any traffic), ticks made relative to now. */
  restore(samples: readonly VitalSample[]): void {
    this.#history = samples.slice(-this.#config.historyMax);
  }

  history(): readonly VitalSample[] {
    return this.#history;
  }

  latest(): VitalSample | undefined {
    return this.#history[this.#history.length - 1];
  }

  record(from: string, tick: number, signs: VitalSigns): void {
    if (!this.#peers.has(from) && this.#peers.size >= LIMITS.membersMax) return;
    this.#peers.set(from, { tick, signs });
  }

  peer(id: string): VitalSample | undefined {
    return this.#peers.get(id);
  }

  forget(id: string): void {
    this.#peers.delete(id);
  }

  /** The next `fanout` of `live` (ids in a stable order), continuing where the last period stopped. */
  targets(live: readonly string[]): string[] {
    if (live.length === 0) return [];
    const count = Math.min(this.#config.fanout, live.length);
    const out: string[] = [];
    for (let i = 0; i < count; i++) out.push(live[(this.#cursor + i) % live.length] as string);
    this.#cursor = (this.#cursor + count) % live.length;
    return out;
  }

  clear(): void {
    this.#history = [];
    this.#peers.clear();
  }
}
