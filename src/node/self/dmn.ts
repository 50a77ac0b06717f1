// The Default Mode Network (issue 14): when the node has been idle for a while (its own request
// rate, load and event-loop delay: DmnClock in src/core/self/dmn.ts), it works on itself in
// bounded slices that yield to the event loop and stop as soon as foreground work comes back:
// - consolidate (the Raft leader: one consolidator): near-duplicate memories merged into one that
//   supersedes them (kept, hidden from recall), and per-speaker summaries when a mind is reachable;
// - review (every node): its inference statistics since the last review, published in the gossip
//   topic `self.report` (one row per node, its own) and as an event;
// - ga (the Raft leader: one evolver): one GA generation of the published model (the Brain's
//   idle GA, moved here);
// - train (the Raft leader, once): training the seed model while the cluster has never published
//   one, so a fresh cluster stops answering `infer` with untrained weights.
// A real node only: the simulator has no event loop to yield to (ctx.defer), so its DMN stays off.
import { DMN_DEFAULTS, DmnClock, type DmnConfig, type DmnJob } from "../../core/self/dmn.ts";
import type { Memory, MemoryKind } from "../../core/self/memory-record.ts";
import { tokens } from "../../core/self/embed.ts";
import type { SubsystemContext } from "../subsystem-context.ts";

export const REPORT_TOPIC = "self.report";

export interface DmnPartConfig extends DmnConfig {
  /** Time a slice of idle work runs before it yields to the event loop (ms). */
  readonly sliceMs: number;
  /** Memories looked at in one consolidation (newest first). */
  readonly consolidateScan: number;
  /** Cosine at or above which two memories of one speaker and kind are the same memory. */
  readonly duplicateCosine: number;
  /** New memories of a speaker since its last summary before another is asked for. */
  readonly summaryEvery: number;
  /** Memories put in one summary prompt. */
  readonly summaryInput: number;
  /** Epochs of the seed model's training. */
  readonly trainEpochs: number;
  /** Tokens a summary may take. */
  readonly summaryTokens: number;
}

export const DMN_PART_DEFAULTS: DmnPartConfig = {
  ...DMN_DEFAULTS,
  sliceMs: 4,
  consolidateScan: 4_096,
  duplicateCosine: 0.97,
  summaryEvery: 8,
  summaryInput: 40,
  trainEpochs: 30,
  summaryTokens: 300,
};

/** Thrown at a slice boundary when foreground work came back. */
class Preempted extends Error {}

const CONSOLIDATED: readonly MemoryKind[] = ["user", "note"];
/** A review with nothing new is published again after this long (ms), so the report stays fresh. */
const REPORT_REFRESH_MS = 600_000;
const SAMPLE_TICKS = 50;

export class DmnPart {
  readonly clock: DmnClock;
  readonly #ctx: SubsystemContext;
  readonly #config: DmnPartConfig;
  /** Per speaker: current memories when its last summary was made, and that summary's id. */
  readonly #summaries = new Map<string, { count: number; id: string }>();
  #lastReview: Record<string, number> | undefined;
  #lastPublishedMs = -Infinity;
  /** Memories the consolidation compared already (each is compared once, when new). */
  readonly #compared = new Set<string>();
  #sliceStart = 0;
  /** The DMN's own time on the event loop: in all, in how many slices, the longest one (ms). */
  readonly work = { busyMs: 0, slices: 0, longestSliceMs: 0 };
  /** What the clock observes each tick, one object updated in place (no allocation per tick). */
  readonly #signals: { requests: number; loadPerCore: number | undefined; loopDelayP99Ms: number | undefined } = { requests: 0, loadPerCore: undefined, loopDelayP99Ms: undefined };
  readonly #can = (job: DmnJob): boolean => this.#blocker(job) === undefined;

  constructor(ctx: SubsystemContext, config: DmnPartConfig = DMN_PART_DEFAULTS, cores = ctx.host?.cores ?? 1) {
    this.#ctx = ctx;
    this.#config = config;
    this.clock = new DmnClock(config);
    this.#cores = Math.max(1, cores);
    // No event loop to yield to: off (the simulator).
    if (ctx.defer === undefined) this.clock.enabled = false;
  }

  readonly #cores: number;

  get available(): boolean {
    return this.#ctx.defer !== undefined;
  }

  tick(tick: number): void {
    const signals = this.#signals;
    if (tick % SAMPLE_TICKS === 0 && this.#ctx.host !== undefined) {
      const s = this.#ctx.host.sample();
      signals.loadPerCore = s.load1 / this.#cores;
      signals.loopDelayP99Ms = s.loopDelayP99Ms;
    }
    signals.requests = this.#ctx.activity();
    this.clock.observe(tick, signals);
    if (!this.available || this.clock.running !== undefined) return;
    const job = this.clock.next(tick, this.#can);
    if (job !== undefined) void this.#run(job, false);
  }

  /** `dmn run JOB`: runs it now, idle or not (not preempted); its summary, or why not. */
  async runNow(job: DmnJob): Promise<string> {
    if (!this.available) throw new Error("the DMN runs on a real node only");
    const blocker = this.#blocker(job);
    if (blocker !== undefined) throw new Error(`${job} cannot run here now: ${blocker}`);
    if (!this.clock.force(this.#ctx.tick(), job)) throw new Error(`${this.clock.running ?? "a job"} is running; try again shortly`);
    return this.#run(job, true);
  }

  /** Why a job cannot run on this node now, or undefined. */
  #blocker(job: DmnJob): string | undefined {
    const { memory, minds, brain } = this.#ctx.services;
    const leader = this.#ctx.services.kv?.isLeader === true && this.#ctx.members.self.role === "core";
    switch (job) {
      case "consolidate":
        if (memory === undefined) return "no memory";
        if (!leader) return "not the Raft leader (the one consolidator)";
        if (memory.size < 2 && (minds === undefined || minds.list().length === 0)) return "nothing to consolidate";
        return undefined;
      case "review":
        return brain === undefined ? "no Brain" : undefined;
      case "ga":
        return brain === undefined ? "no Brain" : brain.gaIdleBlocker();
      case "train":
        return brain === undefined ? "no Brain" : brain.seedTrainBlocker();
    }
  }

  async #run(job: DmnJob, forced: boolean): Promise<string> {
    const preemptible = !forced;
    this.#sliceStart = performance.now();
    try {
      const summary = await this.#jobs[job](preemptible);
      this.#endSlice();
      this.clock.finished(this.#ctx.tick(), "done", summary);
      this.#ctx.emit("dmn-done", { job, summary });
      return summary;
    } catch (error) {
      this.#endSlice();
      if (error instanceof Preempted) {
        this.clock.finished(this.#ctx.tick(), "preempted", "foreground work came back; resumes when idle");
        return "preempted";
      }
      const message = error instanceof Error ? error.message : String(error);
      this.clock.finished(this.#ctx.tick(), "failed", message.slice(0, 200));
      if (forced) throw error;
      return message;
    }
  }

  /** A slice boundary: lets the event loop run, then stops the job if the node is no longer idle. */
  async #slice(preemptible: boolean): Promise<void> {
    this.#endSlice();
    const defer = this.#ctx.defer!;
    await new Promise<void>((resolve) => defer(resolve));
    this.#sliceStart = performance.now();
    if (preemptible && !this.clock.idle(this.#ctx.tick())) throw new Preempted();
  }

  /** Whether the current slice has used its time (the job should reach a slice boundary). */
  #sliceSpent(): boolean {
    return performance.now() - this.#sliceStart >= this.#config.sliceMs;
  }

  #endSlice(): void {
    const ms = performance.now() - this.#sliceStart;
    this.work.busyMs += ms;
    this.work.slices++;
    if (ms > this.work.longestSliceMs) this.work.longestSliceMs = ms;
  }

  readonly #jobs: Record<DmnJob, (preemptible: boolean) => Promise<string>> = {
    consolidate: (p) => this.#consolidate(p),
    review: () => Promise.resolve(this.#review()),
    ga: (p) => this.#ga(p),
    train: () => this.#train(),
  };

  async #consolidate(preemptible: boolean): Promise<string> {
    const memory = this.#ctx.services.memory!;
    // The memories not compared yet, newest first; each is compared once, with what is held then.
    const all = memory.list({ limit: this.#config.consolidateScan }).filter((m) => CONSOLIDATED.includes(m.kind) && !this.#compared.has(m.id));
    let merged = 0;
    let compared = 0;
    const gone = new Set<string>();
    for (const m of all) {
      if (this.#sliceSpent()) await this.#slice(preemptible);
      compared++;
      this.#compared.add(m.id);
      if (gone.has(m.id) || !isCurrentHere(memory.get(m.id))) continue;
      const twin = memory.search(m.text, 3, { mode: "vector", speaker: m.speaker, kinds: [m.kind] })
        .find((h) => h.memory.id !== m.id && !gone.has(h.memory.id) && (h.vector ?? 0) >= this.#config.duplicateCosine && sameFacts(h.memory.text, m.text));
      if (twin === undefined) continue;
      // The newer words stand for both; the two stay, superseded.
      const [older, newer] = twin.memory.atMs <= m.atMs ? [twin.memory, m] : [m, twin.memory];
      const result = memory.remember({ text: newer.text, speaker: newer.speaker, kind: newer.kind === "note" ? "note" : "user", conv: newer.conv, supersedes: [older.id, newer.id], by: "dmn" });
      if ("error" in result) continue;
      gone.add(older.id).add(newer.id);
      merged++;
    }
    const summaries = await this.#summarise(preemptible);
    return `${compared} memories compared, ${merged} near-duplicate pairs merged${summaries}`;
  }

  /** Per-speaker summaries, when a mind answers: each speaker with enough new memories since the last. */
  async #summarise(preemptible: boolean): Promise<string> {
    const { memory, minds } = this.#ctx.services;
    if (memory === undefined || minds === undefined || minds.list().length === 0) return "; no mind for summaries";
    const bySpeaker = new Map<string, Memory[]>();
    for (const m of memory.list({ limit: this.#config.consolidateScan })) {
      if (!CONSOLIDATED.includes(m.kind)) continue;
      const list = bySpeaker.get(m.speaker) ?? [];
      list.push(m);
      bySpeaker.set(m.speaker, list);
    }
    let made = 0;
    for (const [speaker, list] of bySpeaker) {
      const last = this.#summaries.get(speaker);
      if (list.length - (last?.count ?? 0) < this.#config.summaryEvery) continue;
      await this.#slice(preemptible);
      const lines = list.slice(0, this.#config.summaryInput).reverse().map((m) => `- ${m.text.replace(/\s+/g, " ")}`);
      const reply = await minds.ask({
        request: {
          messages: [
            { role: "system", content: "You summarise, in at most five short bullet points, what a person has told an assistant. Keep facts, dates and names; add nothing." },
            { role: "user", content: `What ${speaker} said, oldest first:\n${lines.join("\n")}` },
          ],
          maxTokens: this.#config.summaryTokens,
          temperature: 0,
        },
      });
      const previous = last !== undefined && memory.get(last.id) !== undefined ? [last.id] : [];
      const result = memory.remember({ text: `Summary of what ${speaker} said: ${reply.text}`, speaker, kind: "summary", supersedes: previous, by: reply.mind.name });
      if ("error" in result) continue;
      this.#summaries.set(speaker, { count: list.length, id: result.id });
      made++;
    }
    return `; ${made} speaker summaries made`;
  }

  /** This node's inference statistics since the last review, published (self.report) and as an event. */
  #review(): string {
    const brain = this.#ctx.services.brain!;
    const c = brain.counters;
    const now: Record<string, number> = {
      ...Object.fromEntries(Object.entries(c.inferences).map(([mode, n]) => [`infer.${mode}`, n])),
      reduced: c.reduced, solo: c.solo, timeouts: c.callsTimedOut, failed: c.callsFailed, caught: c.caught,
    };
    const before = this.#lastReview;
    this.#lastReview = now;
    const delta: Record<string, number> = Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (before?.[k] ?? 0)]).filter(([, v]) => v !== 0));
    const inferences = Object.entries(delta).filter(([k]) => k.startsWith("infer.")).reduce((n, [, v]) => n + (v as number), 0);
    const degraded = (delta["reduced"] ?? 0) + (delta["solo"] ?? 0);
    const accuracy = brain.lastTrain?.heldOutAccuracy ?? undefined;
    const verdict = inferences === 0 ? "no inferences since the last review"
      : degraded > 0 ? `${degraded} of ${inferences} inferences fell back (REDUCED/SOLO): peers were lost`
        : (delta["timeouts"] ?? 0) > 0 ? `${delta["timeouts"]} peer calls timed out` : `${inferences} inferences, none degraded`;
    const report = {
      at: Math.floor(this.#ctx.clock.nowMs()), model: brain.model.header.version, heldOut: accuracy === undefined ? null : Math.round(accuracy * 1000) / 1000,
      untrained: brain.model.header.version === 0, delta, verdict,
    };
    const topics = this.#ctx.services.topics;
    // Nothing new since a recent report: not published again (each publication is a durable write everywhere).
    const nowMs = this.#ctx.clock.nowMs();
    if (Object.keys(delta).length === 0 && nowMs - this.#lastPublishedMs < REPORT_REFRESH_MS) return `${verdict} (nothing new to publish)`;
    this.#lastPublishedMs = nowMs;
    let text = JSON.stringify(report);
    if (text.length > 480) text = JSON.stringify({ ...report, delta: {} });
    const error = topics?.publish(REPORT_TOPIC, this.#ctx.id, new TextEncoder().encode(text));
    this.#ctx.emit("dmn-review", report);
    return error === undefined ? verdict : `${verdict} (not published: ${error})`;
  }

  async #ga(preemptible: boolean): Promise<string> {
    const brain = this.#ctx.services.brain!;
    const result = await brain.evolveSliced(() => this.#slice(preemptible));
    return result.kept > 0 ? `a generation kept: held-out loss ${result.before.toFixed(4)} → ${result.after.toFixed(4)}` : `a generation tried, none better (loss ${result.before.toFixed(4)})`;
  }

  async #train(): Promise<string> {
    const brain = this.#ctx.services.brain!;
    // The training yields in its own slices (the Brain's, a few ms each): they are not the DMN's to count.
    const { report, baseline, header } = await brain.train(this.#config.trainEpochs);
    this.#sliceStart = performance.now();
    return `seed model trained (${report.epochs} epochs): held-out ${(100 * (report.heldOutAccuracy ?? 0)).toFixed(1)}% against ${(100 * baseline).toFixed(1)}% for the best single threshold; published as version ${header.version}`;
  }
}

const NUMBER = /\d+(?:[.,:]\d+)*/g;

/**
 * Whether two similar texts say the same thing, so one may stand for both: the same numbers (a
 * different time, day or amount is another fact however close the words) and nearly the same
 * content words (Jaccard ≥ 0.8 over their stems).
 */
export function sameFacts(a: string, b: string): boolean {
  const numbers = (t: string): string => (t.match(NUMBER) ?? []).sort().join(" ");
  if (numbers(a) !== numbers(b)) return false;
  const ta = new Set(tokens(a));
  const tb = new Set(tokens(b));
  let shared = 0;
  for (const t of ta) if (tb.has(t)) shared++;
  const union = ta.size + tb.size - shared;
  return union === 0 || shared / union >= 0.8;
}

function isCurrentHere(memory: Memory | undefined): boolean {
  return memory !== undefined && memory.kind !== "redacted" && memory.supersededBy.length === 0;
}

