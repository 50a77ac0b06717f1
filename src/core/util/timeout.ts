// A timer counted in ticks (TigerBeetle's vsr.Timeout; etcd-raft's electionElapsed). Cores own
// Timeout values and advance them from tick(); nothing in core touches wall-clock timers.
import { assert } from "./assert.ts";
import type { Rng } from "./rng.ts";

export class Timeout {
  readonly name: string;
  #after: number;
  #ticks = 0;
  #running = false;

  constructor(name: string, afterTicks: number) {
    assert(Number.isInteger(afterTicks) && afterTicks > 0, `Timeout ${name}: afterTicks must be a positive integer, got ${afterTicks}`);
    this.name = name;
    this.#after = afterTicks;
  }

  get afterTicks(): number {
    return this.#after;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Ticks since the last start or reset. */
  get elapsed(): number {
    return this.#ticks;
  }

  start(): void {
    this.#ticks = 0;
    this.#running = true;
  }

  stop(): void {
    this.#ticks = 0;
    this.#running = false;
  }

  reset(): void {
    assert(this.#running, `Timeout ${this.name}: reset while stopped`);
    this.#ticks = 0;
  }

  /** Sets a new period and restarts. */
  setAfter(afterTicks: number): void {
    assert(Number.isInteger(afterTicks) && afterTicks > 0, `Timeout ${this.name}: afterTicks must be a positive integer`);
    this.#after = afterTicks;
    this.start();
  }

  /** Restarts with a random extra delay in [0, jitterTicks) drawn from rng. */
  backoff(rng: Rng, jitterTicks: number): void {
    this.start();
    if (jitterTicks > 0) this.#ticks = -rng.int(jitterTicks);
  }

  tick(): void {
    if (this.#running) this.#ticks++;
  }

  fired(): boolean {
    return this.#running && this.#ticks >= this.#after;
  }
}
