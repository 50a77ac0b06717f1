// The sandbox (docs/adr/017-sandbox.md; docs/protocols/programs.md, "Runs and the sandbox"): runs
// programs off the kernel's event loop. A Sandbox owns one worker thread (sandbox-worker.ts) with a
// SandboxEngine in it and hands it one request at a time from a bounded queue. The host keeps its
// own wall clock: a worker that has not answered within the run's wallMs plus a margin is
// terminated (kind "wall") and replaced, and one that dies fails its run (kind "host") and is
// replaced too; the queue goes on with the new worker. createInlineSandbox runs the same engine in
// the caller's thread (tests, the benchmark's comparison): no wall-clock kill there beyond the
// engine's own interrupt check.
import { Worker } from "node:worker_threads";
import type { RunFailure, RunOutcome, RunRequest } from "../core/evolve/run.ts";
import { LIMITS } from "../core/util/limits.ts";
import { SANDBOX_ENGINE_DEFAULTS, SandboxEngine, failed, requestBytes, type EngineOptions } from "./sandbox-engine.ts";

const RUN = LIMITS.evolve.run;
const SANDBOX = LIMITS.evolve.sandbox;

export const SANDBOX_DEFAULTS = {
  /** Time past a run's wallMs before the host terminates its worker (the engine's own check comes first). */
  wallMarginMs: 1_000,
} as const;

export interface SandboxStats {
  runs: number;
  /** Failed runs by kind. */
  failures: Partial<Record<RunFailure, number>>;
  /** Engine modules thrown away after a host failure (and loaded again). */
  rebuilds: number;
  /** Workers replaced: killed at the wall-clock bound, or dead. */
  workerRestarts: number;
}

export interface SandboxOptions extends EngineOptions {
  readonly wallMarginMs?: number;
}

/** What runs programs: the worker Sandbox, or the engine in the caller's thread. */
export interface ProgramSandbox {
  run(req: RunRequest): Promise<RunOutcome>;
  readonly stats: SandboxStats;
  close(): Promise<void>;
}

function newStats(): SandboxStats {
  return { runs: 0, failures: {}, rebuilds: 0, workerRestarts: 0 };
}

function count(stats: SandboxStats, outcome: RunOutcome): RunOutcome {
  stats.runs++;
  if (outcome.error !== undefined) stats.failures[outcome.error.kind] = (stats.failures[outcome.error.kind] ?? 0) + 1;
  return outcome;
}

/** Why a request is refused before it runs, or undefined. */
function refusal(req: RunRequest): string | undefined {
  const bytes = requestBytes(req);
  if (bytes === undefined) return "refused: the request is not JSON data";
  if (bytes > RUN.requestBytesMax) return `refused: the request is ${bytes} bytes, over ${RUN.requestBytesMax}`;
  return undefined;
}

interface Job {
  readonly req: RunRequest;
  readonly resolve: (outcome: RunOutcome) => void;
}

interface Thread {
  readonly worker: Worker;
  ready: boolean;
  /** Retired: terminated by the host, its exit is expected. */
  retired: boolean;
  /** Rebuilds its engine reported last. */
  rebuilds: number;
}

export class Sandbox implements ProgramSandbox {
  readonly stats: SandboxStats = newStats();
  readonly #options: SandboxOptions;
  readonly #queue: Job[] = [];
  #thread: Thread | undefined;
  #current: { job: Job; id: number; timer: NodeJS.Timeout } | undefined;
  #nextId = 1;
  #closed = false;

  constructor(options: SandboxOptions = {}) {
    this.#options = options;
    this.#thread = this.#spawn();
  }

  run(req: RunRequest): Promise<RunOutcome> {
    if (this.#closed) return Promise.resolve(count(this.stats, failed("host", "the sandbox is closed")));
    const refused = refusal(req);
    if (refused !== undefined) return Promise.resolve(count(this.stats, failed("host", refused)));
    if (this.#queue.length >= SANDBOX.queuedRunsMax) return Promise.resolve(count(this.stats, failed("host", `refused: ${SANDBOX.queuedRunsMax} runs are waiting already`)));
    this.#thread ??= this.#spawn();
    return new Promise((resolve) => {
      this.#queue.push({ req, resolve });
      this.#pump();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) job.resolve(count(this.stats, failed("host", "the sandbox is closed")));
    const thread = this.#thread;
    this.#thread = undefined;
    if (this.#current !== undefined) this.#finish(failed("host", "the sandbox is closed"));
    if (thread !== undefined) {
      thread.retired = true;
      await thread.worker.terminate();
    }
  }

  #spawn(): Thread {
    const script = new URL(import.meta.url.endsWith(".ts") ? "./sandbox-worker.ts" : "./sandbox-worker.js", import.meta.url);
    const worker = new Worker(script, { workerData: { stackBytesCap: this.#options.stackBytesCap } });
    worker.unref();
    const thread: Thread = { worker, ready: false, retired: false, rebuilds: 0 };
    worker.on("message", (message: { ready?: true; id?: number; outcome?: RunOutcome; rebuilds?: number }) => {
      if (thread.retired) return;
      if (message.ready === true) {
        thread.ready = true;
        this.#pump();
        return;
      }
      if (typeof message.rebuilds === "number") {
        this.stats.rebuilds += Math.max(0, message.rebuilds - thread.rebuilds);
        thread.rebuilds = message.rebuilds;
      }
      const current = this.#current;
      if (current === undefined || message.id !== current.id || message.outcome === undefined) return;
      this.#finish(message.outcome);
      this.#pump();
    });
    const died = (why: string): void => {
      if (thread.retired) return;
      thread.retired = true;
      if (this.#thread === thread) this.#thread = undefined;
      if (this.#current !== undefined) this.#finish(failed("host", `the sandbox's worker died: ${why}`));
      if (this.#closed) return;
      this.stats.workerRestarts++;
      if (thread.ready) this.#thread = this.#spawn();
      else {
        // It died before its engine loaded: the next one would too. Fail what waits; the next run tries again.
        for (const job of this.#queue.splice(0)) job.resolve(count(this.stats, failed("host", `the sandbox's worker could not start: ${why}`)));
      }
    };
    worker.on("error", (error) => died(error.message));
    worker.on("exit", (code) => died(`exit code ${code}`));
    return thread;
  }

  #finish(outcome: RunOutcome): void {
    const current = this.#current;
    if (current === undefined) return;
    clearTimeout(current.timer);
    this.#current = undefined;
    current.job.resolve(count(this.stats, outcome));
  }

  #pump(): void {
    if (this.#closed || this.#current !== undefined) return;
    const thread = this.#thread;
    if (thread === undefined || !thread.ready) return;
    const job = this.#queue.shift();
    if (job === undefined) return;
    const id = this.#nextId++;
    // The engine's start may take up to startWallMs before the program's own wallMs begins.
    const waitMs = job.req.limits.wallMs + SANDBOX_ENGINE_DEFAULTS.startWallMs + (this.#options.wallMarginMs ?? SANDBOX_DEFAULTS.wallMarginMs);
    const started = performance.now();
    const timer = setTimeout(() => {
      if (this.#current?.id !== id) return;
      // The worker is stuck past the engine's own checks: terminate it and start another.
      thread.retired = true;
      void thread.worker.terminate();
      if (this.#thread === thread) this.#thread = undefined;
      this.#finish(failed("wall", `the run did not end within ${waitMs} ms; its worker was terminated`, { ms: performance.now() - started }));
      if (!this.#closed) {
        this.stats.workerRestarts++;
        this.#thread = this.#spawn();
      }
    }, waitMs);
    this.#current = { job, id, timer };
    thread.worker.postMessage({ id, req: job.req });
  }
}

/** The engine in the caller's thread, behind the same interface: a run blocks the caller for its duration. */
export async function createInlineSandbox(options: EngineOptions = {}): Promise<ProgramSandbox> {
  const engine = await SandboxEngine.create(options);
  const stats = newStats();
  let closed = false;
  return {
    stats,
    async run(req: RunRequest): Promise<RunOutcome> {
      if (closed) return count(stats, failed("host", "the sandbox is closed"));
      const refused = refusal(req);
      if (refused !== undefined) return count(stats, failed("host", refused));
      const outcome = await engine.runAsync(req);
      stats.rebuilds = engine.stats.rebuilds;
      return count(stats, outcome);
    },
    close(): Promise<void> {
      closed = true;
      return Promise.resolve();
    },
  };
}
