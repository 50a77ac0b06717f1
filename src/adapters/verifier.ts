// The verifier off the event loop: a worker thread holding one warm ProgramVerifier (verify-ts.ts).
// Loading TypeScript's library and checking a program take tens to hundreds of milliseconds, which
// would stall the kernel's ticks; here they cost the kernel a message each way. The thread starts
// on the first use (a node that never verifies never loads the compiler); a thread that dies fails
// what was in flight and is started again on the next use (worker-calls.ts).
import type { VerifyReport } from "../core/evolve/verdict.ts";
import { WorkerCalls, workerScript } from "./worker-calls.ts";

export class VerifierThread {
  readonly #calls = new WorkerCalls<VerifyReport>({ script: workerScript(import.meta.url, "verifier-worker"), name: "the verifier" });

  verifySource(source: string, beside?: unknown): Promise<VerifyReport> {
    return this.#calls.call(beside === undefined ? { source } : { source, beside });
  }

  close(): Promise<void> {
    return this.#calls.close();
  }
}
