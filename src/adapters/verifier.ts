// The verifier off the event loop: a worker thread holding one warm ProgramVerifier (verify-ts.ts).
// Loading TypeScript's library and checking a program take tens to hundreds of milliseconds, which
// would stall the kernel's ticks; here they cost the kernel a message each way. The thread starts
// on the first use (a node that never verifies never loads the compiler); a thread that dies fails
// what was in flight and is started again on the next use.
import { Worker } from "node:worker_threads";
import type { VerifyReport } from "../core/evolve/verdict.ts";

interface Pending {
  resolve: (report: VerifyReport) => void;
  reject: (error: Error) => void;
}

export class VerifierThread {
  #worker: Worker | undefined;
  readonly #pending = new Map<number, Pending>();
  #next = 0;
  /** Threads started (1, plus one after each death). */
  starts = 0;

  verifySource(source: string, beside?: unknown): Promise<VerifyReport> {
    const worker = this.#ensure();
    const id = ++this.#next;
    return new Promise<VerifyReport>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage(beside === undefined ? { id, source } : { id, source, beside });
    });
  }

  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    this.#failAll(new Error("the verifier was closed"));
    if (worker !== undefined) await worker.terminate();
  }

  #ensure(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const script = new URL(import.meta.url.endsWith(".ts") ? "./verifier-worker.ts" : "./verifier-worker.js", import.meta.url);
    const worker = new Worker(script);
    this.starts++;
    worker.unref();
    worker.on("message", (reply: { id: number; report?: VerifyReport; error?: string }) => {
      const pending = this.#pending.get(reply.id);
      if (pending === undefined) return;
      this.#pending.delete(reply.id);
      if (reply.report !== undefined) pending.resolve(reply.report);
      else pending.reject(new Error(`the verifier failed: ${reply.error ?? "no report"}`));
    });
    const gone = (why: string): void => {
      if (this.#worker === worker) this.#worker = undefined;
      this.#failAll(new Error(`the verifier thread ${why}`));
    };
    worker.on("error", (error) => gone(`failed: ${error.message}`));
    worker.on("exit", (code) => gone(`exited with code ${code}`));
    this.#worker = worker;
    return worker;
  }

  #failAll(error: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(error);
  }
}
