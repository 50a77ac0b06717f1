// The Default Mode Network's clock (issue 14): when the node is idle, and which piece of idle work
// is due. Sans-IO: the node tells it, every tick, how many foreground requests it has handled so
// far and what the host measures; it answers whether the node is idle and which job to run next.
// A job runs in slices and yields between them; it is preempted (stops at the next slice) as
// soon as foreground work comes back, and resumes from where it was the next time the node idles.

export type DmnJob = "consolidate" | "review" | "ga" | "train";
export const DMN_JOBS: readonly DmnJob[] = ["consolidate", "review", "ga", "train"];

export interface DmnConfig {
  /** Ticks without enough foreground requests before the node counts as idle. */
  readonly idleTicks: number;
  /** Foreground requests per second that still count as idle (a dashboard, a probe). */
  readonly idleRequestsPerSecond: number;
  /** 1-minute load per core at or above which the node is busy. */
  readonly loadPerCoreMax: number;
  /** Event-loop delay p99 (ms) at or above which the node is busy. */
  readonly loopDelayMsMax: number;
  /** Ticks between two runs of each job while idle; the first run comes this long after boot. */
  readonly everyTicks: Readonly<Record<DmnJob, number>>;
  /** Ticks of idleness a job needs before it starts (at least idleTicks): training the seed waits longer, since a user may be about to. */
  readonly idleTicksFor: Readonly<Record<DmnJob, number>>;
  /** Entries kept in the history `dmn` shows. */
  readonly historyMax: number;
  /** Milliseconds per tick (to turn request counts into a rate). */
  readonly tickMs: number;
}

export const DMN_DEFAULTS: DmnConfig = {
  idleTicks: 300,
  idleRequestsPerSecond: 2,
  loadPerCoreMax: 0.9,
  loopDelayMsMax: 50,
  everyTicks: { consolidate: 6_000, review: 3_000, ga: 1_000, train: 6_000 },
  idleTicksFor: { consolidate: 300, review: 300, ga: 300, train: 3_000 },
  historyMax: 32,
  tickMs: 10,
};

export interface DmnSignals {
  /** Foreground requests handled so far (a counter that only grows). */
  readonly requests: number;
  /** The host's 1-minute load per core, and its event-loop delay p99; undefined where unknown (the simulator). */
  readonly loadPerCore: number | undefined;
  readonly loopDelayP99Ms: number | undefined;
}

export interface DmnEntry {
  readonly job: DmnJob;
  readonly startTick: number;
  readonly endTick: number;
  readonly outcome: "done" | "skipped" | "preempted" | "failed";
  readonly summary: string;
}

export interface DmnJobState {
  runs: number;
  preempted: number;
  failed: number;
  skipped: number;
  lastTick: number | undefined;
  lastSummary: string;
}

/** The window over which the request rate is measured, in ticks. */
const RATE_WINDOW_TICKS = 100;

export class DmnClock {
  readonly config: DmnConfig;
  readonly jobs: Record<DmnJob, DmnJobState>;
  readonly #history: DmnEntry[] = [];
  #lastBusyTick = 0;
  /** Why the node was last busy (formatted by state(), not on every tick): what, and its reading. */
  #busyWhy: "booting" | "requests" | "load" | "lag" = "booting";
  #busyValue = 0;
  #windowStart = 0;
  #windowRequests: number | undefined;
  #rate = 0;
  #running: { job: DmnJob; startTick: number } | undefined;
  #enabled = true;

  constructor(config: DmnConfig = DMN_DEFAULTS) {
    this.config = config;
    // Every job's first run is a period after boot (lastTick 0): a node that just started is not idle yet in any sense that matters.
    this.jobs = Object.fromEntries(DMN_JOBS.map((j) => [j, { runs: 0, preempted: 0, failed: 0, skipped: 0, lastTick: 0, lastSummary: "" }])) as Record<DmnJob, DmnJobState>;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  set enabled(on: boolean) {
    this.#enabled = on;
  }

  /** The node's state at `tick`; call every tick. */
  observe(tick: number, signals: DmnSignals): void {
    if (this.#windowRequests === undefined) {
      this.#windowRequests = signals.requests;
      this.#windowStart = tick;
    } else if (tick - this.#windowStart >= RATE_WINDOW_TICKS) {
      const seconds = ((tick - this.#windowStart) * this.config.tickMs) / 1000;
      this.#rate = (signals.requests - this.#windowRequests) / seconds;
      this.#windowRequests = signals.requests;
      this.#windowStart = tick;
    }
    if (this.#rate > this.config.idleRequestsPerSecond) this.#busy(tick, "requests", this.#rate);
    else if (signals.loadPerCore !== undefined && signals.loadPerCore >= this.config.loadPerCoreMax) this.#busy(tick, "load", signals.loadPerCore);
    else if (signals.loopDelayP99Ms !== undefined && signals.loopDelayP99Ms >= this.config.loopDelayMsMax) this.#busy(tick, "lag", signals.loopDelayP99Ms);
  }

  #busy(tick: number, why: "requests" | "load" | "lag", value: number): void {
    this.#lastBusyTick = tick;
    this.#busyWhy = why;
    this.#busyValue = value;
  }

  #busyText(): string {
    switch (this.#busyWhy) {
      case "booting":
        return "booting";
      case "requests":
        return `${this.#busyValue.toFixed(1)} requests/s`;
      case "load":
        return `load ${this.#busyValue.toFixed(2)} per core`;
      case "lag":
        return `event-loop delay p99 ${this.#busyValue.toFixed(0)} ms`;
    }
  }

  /** Idle: no foreground load for idleTicks (and enabled). */
  idle(tick: number): boolean {
    return this.#enabled && tick - this.#lastBusyTick >= this.config.idleTicks;
  }

  /** Why the node is not idle, or for how long it has been. */
  state(tick: number): string {
    if (!this.#enabled) return "off (dmn on to start it)";
    const seconds = ((tick - this.#lastBusyTick) * this.config.tickMs) / 1000;
    if (this.idle(tick)) return `idle for ${seconds.toFixed(0)} s${this.#running === undefined ? "" : `, running ${this.#running.job}`}`;
    return `busy: ${this.#busyText()} ${seconds.toFixed(0)} s ago (idle after ${((this.config.idleTicks * this.config.tickMs) / 1000).toFixed(0)} s without)`;
  }

  get running(): DmnJob | undefined {
    return this.#running?.job;
  }

  /** The job due longest among those `can` allows, when idle and nothing runs; it is marked running. */
  next(tick: number, can: (job: DmnJob) => boolean): DmnJob | undefined {
    if (this.#running !== undefined || !this.idle(tick)) return undefined;
    let best: DmnJob | undefined;
    let bestLate = -Infinity;
    const idleFor = tick - this.#lastBusyTick;
    for (const job of DMN_JOBS) {
      const last = this.jobs[job].lastTick;
      const late = last === undefined ? Number.MAX_SAFE_INTEGER - DMN_JOBS.indexOf(job) : tick - last - this.config.everyTicks[job];
      if (late < 0 || late <= bestLate || idleFor < this.config.idleTicksFor[job] || !can(job)) continue;
      best = job;
      bestLate = late;
    }
    if (best !== undefined) this.#running = { job: best, startTick: tick };
    return best;
  }

  /** Marks a job started out of turn (`dmn run JOB`); false when another runs. */
  force(tick: number, job: DmnJob): boolean {
    if (this.#running !== undefined) return false;
    this.#running = { job, startTick: tick };
    return true;
  }

  /** The running job ended. A preempted job keeps its place (due again at once when idle). */
  finished(tick: number, outcome: DmnEntry["outcome"], summary: string): void {
    const running = this.#running;
    if (running === undefined) return;
    this.#running = undefined;
    const state = this.jobs[running.job];
    if (outcome === "done") state.runs++;
    else if (outcome === "preempted") state.preempted++;
    else if (outcome === "failed") state.failed++;
    else state.skipped++;
    if (outcome !== "preempted") state.lastTick = tick;
    state.lastSummary = summary;
    this.#history.push({ job: running.job, startTick: running.startTick, endTick: tick, outcome, summary });
    if (this.#history.length > this.config.historyMax) this.#history.shift();
  }

  history(): readonly DmnEntry[] {
    return this.#history;
  }
}
