// Simulated wall clocks (DESIGN.md §2.3). Protocol timing counts ticks; the wall clock only feeds
// HLC timestamps and boot epochs, so what matters here is that clocks disagree the way real ones
// do: each node's clock has a fixed offset from true time and a drift rate, both drawn from the
// seed, and a test may step it (an NTP correction, possibly backwards).
//
//   nowMs = floor(epochMs + elapsed + offsetMs + driftPpm * 1e-6 * elapsed),  elapsed = tick * tickMs
import type { Clock } from "../node/ports.ts";
import type { Rng } from "../core/util/rng.ts";
import { assert } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";

/** Anything that knows the current virtual tick; SimNetwork does. */
export interface TickSource {
  readonly now: number;
}

/** 2026-01-01T00:00:00Z: the simulated world's tick 0, fixed so runs replay. */
export const SIM_EPOCH_MS = 1_767_225_600_000;
/** Largest drift accepted, in parts per million (real quartz is within ~100; 10^4 is a broken clock). */
export const DRIFT_PPM_MAX = LIMITS.sim.driftPpmMax;
/** Largest offset accepted: a day either way. */
export const OFFSET_MS_MAX = LIMITS.sim.offsetMsMax;

export interface SimClockOptions {
  /** Milliseconds per tick. Default 1000 / LIMITS.ticksPerSecond (10 ms). */
  readonly tickMs?: number;
  /** True time at tick 0. Default SIM_EPOCH_MS. */
  readonly epochMs?: number;
  /** This clock's fixed error, in ms (positive: ahead). Default 0. */
  readonly offsetMs?: number;
  /** This clock's rate error, in parts per million (positive: runs fast). Default 0. */
  readonly driftPpm?: number;
}

export interface RandomClockOptions {
  readonly tickMs?: number;
  readonly epochMs?: number;
  /** Offsets are uniform in [-maxOffsetMs, maxOffsetMs]. Default 250. */
  readonly maxOffsetMs?: number;
  /** Drifts are uniform in [-maxDriftPpm, maxDriftPpm]. Default 100. */
  readonly maxDriftPpm?: number;
}

export class SimClock implements Clock {
  readonly #time: TickSource;
  readonly tickMs: number;
  readonly epochMs: number;
  readonly driftPpm: number;
  #offsetMs: number;

  constructor(time: TickSource, options: SimClockOptions = {}) {
    this.#time = time;
    this.tickMs = options.tickMs ?? 1000 / LIMITS.ticksPerSecond;
    this.epochMs = options.epochMs ?? SIM_EPOCH_MS;
    this.driftPpm = options.driftPpm ?? 0;
    this.#offsetMs = options.offsetMs ?? 0;
    assert(this.tickMs > 0, "SimClock: tickMs must be positive");
    assert(Math.abs(this.driftPpm) <= DRIFT_PPM_MAX, `SimClock: |driftPpm| must be <= ${DRIFT_PPM_MAX}`);
    assert(Math.abs(this.#offsetMs) <= OFFSET_MS_MAX, `SimClock: |offsetMs| must be <= ${OFFSET_MS_MAX}`);
  }

  /** A clock with offset and drift drawn from `rng` (give each node its own fork). */
  static random(time: TickSource, rng: Rng, options: RandomClockOptions = {}): SimClock {
    const maxOffsetMs = options.maxOffsetMs ?? 250;
    const maxDriftPpm = options.maxDriftPpm ?? 100;
    const clockOptions: SimClockOptions = {
      offsetMs: Math.round((rng.next() * 2 - 1) * maxOffsetMs),
      driftPpm: (rng.next() * 2 - 1) * maxDriftPpm,
      ...(options.tickMs === undefined ? {} : { tickMs: options.tickMs }),
      ...(options.epochMs === undefined ? {} : { epochMs: options.epochMs }),
    };
    return new SimClock(time, clockOptions);
  }

  get offsetMs(): number {
    return this.#offsetMs;
  }

  nowMs(): number {
    const elapsed = this.#time.now * this.tickMs;
    return Math.floor(this.epochMs + elapsed + this.#offsetMs + this.driftPpm * 1e-6 * elapsed);
  }

  /** Steps the clock by deltaMs (negative: backwards), as an NTP correction would. */
  step(deltaMs: number): void {
    const offset = this.#offsetMs + deltaMs;
    assert(Math.abs(offset) <= OFFSET_MS_MAX, `SimClock.step: offset would exceed ${OFFSET_MS_MAX} ms`);
    this.#offsetMs = offset;
  }
}
