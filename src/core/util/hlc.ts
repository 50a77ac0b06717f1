// Hybrid logical clock (Kulkarni et al. 2014): a timestamp that follows physical time when the
// clocks agree and stays causal when they do not. Physical time is passed in by the caller (the
// node stamps it from its wall clock; the simulator from its simulated, skewed clocks).
import { assert } from "./assert.ts";
import { LIMITS } from "./limits.ts";

export interface Hlc {
  /** Physical component, milliseconds. */
  readonly wall: number;
  /** Logical counter that orders events within the same wall millisecond. */
  readonly logical: number;
}

export const HLC_ZERO: Hlc = { wall: 0, logical: 0 };


export function compareHlc(a: Hlc, b: Hlc): number {
  return a.wall !== b.wall ? a.wall - b.wall : a.logical - b.logical;
}

export class HybridClock {
  #last: Hlc = HLC_ZERO;
  /** How far ahead of local physical time a remote timestamp may be before it is rejected. */
  readonly maxOffsetMs: number;

  constructor(maxOffsetMs: number) {
    assert(maxOffsetMs > 0, "HybridClock: maxOffsetMs must be positive");
    this.maxOffsetMs = maxOffsetMs;
  }

  get last(): Hlc {
    return this.#last;
  }

  /** A timestamp for a local or send event. */
  now(physicalMs: number): Hlc {
    const last = this.#last;
    const next = physicalMs > last.wall
      ? { wall: physicalMs, logical: 0 }
      : { wall: last.wall, logical: last.logical + 1 };
    assert(next.logical <= LIMITS.hlcLogicalMax, "HybridClock: logical counter overflow");
    this.#last = next;
    return next;
  }

  /**
   * Merges a timestamp received from a peer. Returns undefined (and leaves the clock unchanged)
   * when the remote clock is further ahead than maxOffsetMs: an expected failure, not a crash.
   */
  update(remote: Hlc, physicalMs: number): Hlc | undefined {
    if (remote.wall - physicalMs > this.maxOffsetMs) return undefined;
    if (remote.logical > LIMITS.hlcLogicalMax) return undefined;
    const last = this.#last;
    const wall = Math.max(last.wall, remote.wall, physicalMs);
    let logical: number;
    if (wall === last.wall && wall === remote.wall) logical = Math.max(last.logical, remote.logical) + 1;
    else if (wall === last.wall) logical = last.logical + 1;
    else if (wall === remote.wall) logical = remote.logical + 1;
    else logical = 0;
    if (logical > LIMITS.hlcLogicalMax) return undefined;
    this.#last = { wall, logical };
    return this.#last;
  }
}
