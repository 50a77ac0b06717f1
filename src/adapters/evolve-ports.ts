// The Evolution layer's ports for a real node: the verifier's thread (verifier.ts) and the
// sandbox's worker (sandbox.ts), each started on first use, so a node that never runs a program
// loads neither TypeScript's compiler nor QuickJS.
import type { RunOutcome, RunRequest } from "../core/evolve/run.ts";
import type { VerifyReport } from "../core/evolve/verdict.ts";
import type { EvolvePorts } from "../node/ports.ts";
import { VerifierThread } from "./verifier.ts";

type SandboxLike = { run(request: RunRequest): Promise<RunOutcome>; close(): Promise<void> | void };

export function createEvolvePorts(): EvolvePorts {
  const verifier = new VerifierThread();
  let sandbox: Promise<SandboxLike> | undefined;
  const sandboxOf = (): Promise<SandboxLike> => (sandbox ??= import("./sandbox.ts").then((m) => new m.Sandbox() as SandboxLike));
  return {
    verifySource: (source: string, beside?: unknown): Promise<VerifyReport> => verifier.verifySource(source, beside),
    run: async (request: RunRequest): Promise<RunOutcome> => (await sandboxOf()).run(request),
    close: async (): Promise<void> => {
      await verifier.close();
      if (sandbox !== undefined) await (await sandbox).close();
    },
  };
}
