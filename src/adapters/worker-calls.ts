// Calls to a tool held by a worker thread, off the kernel's event loop (the verifier, the C
// compiler): each call posts { id, ...message } and settles on the worker's { id, result } or
// { id, error }. The thread starts on the first call; a call over `timeoutMs` terminates it, and
// with `idleMs` it ends once idle that long (a tool that holds a lot of memory). A thread that dies
// fails what was in flight; the next call starts another.
import { Worker } from "node:worker_threads";

export interface WorkerCallsOptions {
  /** The worker's script. */
  readonly script: URL;
  /** What the errors call the tool: "the verifier", "the C compiler". */
  readonly name: string;
  readonly timeoutMs?: number;
  readonly idleMs?: number;
  /** Calls in flight at most; more are refused. */
  readonly inFlightMax?: number;
}

interface Pending<R> {
  resolve: (result: R) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

export class WorkerCalls<R> {
  readonly #options: WorkerCallsOptions;
  #worker: Worker | undefined;
  readonly #pending = new Map<number, Pending<R>>();
  #next = 0;
  #idle: NodeJS.Timeout | undefined;
  /** Threads started (1, plus one after each death, termination or idle end). */
  starts = 0;

  constructor(options: WorkerCallsOptions) {
    this.#options = options;
  }

  call(message: Readonly<Record<string, unknown>>): Promise<R> {
    const { name, timeoutMs, inFlightMax } = this.#options;
    if (inFlightMax !== undefined && this.#pending.size >= inFlightMax) return Promise.reject(new Error(`refused: ${inFlightMax} calls to ${name} are in flight already`));
    clearTimeout(this.#idle);
    const worker = this.#ensure();
    const id = ++this.#next;
    return new Promise<R>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.#retire(worker);
          this.#failAll(new Error(`${name} did not finish within ${timeoutMs} ms; its thread was terminated`));
        }, timeoutMs);
        timer.unref();
      }
      this.#pending.set(id, { resolve, reject, timer });
      worker.postMessage({ ...message, id });
    });
  }

  async close(): Promise<void> {
    clearTimeout(this.#idle);
    const worker = this.#worker;
    this.#worker = undefined;
    this.#failAll(new Error(`${this.#options.name} was closed`));
    if (worker !== undefined) await worker.terminate();
  }

  #ensure(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const worker = new Worker(this.#options.script);
    this.starts++;
    worker.unref();
    worker.on("message", (reply: { id: number; result?: R; error?: string }) => {
      const pending = this.#pending.get(reply.id);
      if (pending === undefined) return;
      this.#pending.delete(reply.id);
      clearTimeout(pending.timer);
      if (reply.result !== undefined) pending.resolve(reply.result);
      else pending.reject(new Error(`${this.#options.name} failed: ${reply.error ?? "no result"}`));
      if (this.#pending.size === 0 && this.#options.idleMs !== undefined) {
        clearTimeout(this.#idle);
        this.#idle = setTimeout(() => {
          if (this.#pending.size === 0) this.#retire(worker);
        }, this.#options.idleMs);
        this.#idle.unref();
      }
    });
    const gone = (why: string): void => {
      if (this.#worker !== worker) return; // retired by us (timed out, idle, closed): nothing of it is pending
      this.#worker = undefined;
      this.#failAll(new Error(`${this.#options.name}'s thread ${why}`));
    };
    worker.on("error", (error) => gone(`failed: ${error.message}`));
    worker.on("exit", (code) => gone(`exited with code ${code}`));
    this.#worker = worker;
    return worker;
  }

  /** Terminates a thread of ours on purpose: its exit fails nothing. */
  #retire(worker: Worker): void {
    if (this.#worker === worker) this.#worker = undefined;
    void worker.terminate();
  }

  #failAll(error: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(error);
    }
  }
}

/** A worker script beside this module (.ts when run from source, .js when built). */
export function workerScript(base: string, name: string): URL {
  return new URL(base.endsWith(".ts") ? `./${name}.ts` : `./${name}.js`, base);
}
