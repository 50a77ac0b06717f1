// The Evolution layer's ports for a real node: the verifier's thread (verifier.ts) and the
// sandbox's worker (sandbox.ts), each started on first use, so a node that never runs a program
// loads neither TypeScript's compiler nor QuickJS. A C program (its manifest says "language":"c")
// goes to the C compiler's thread instead (compile-c.ts, an optional component): its report has the
// verifier's shape and its JavaScript runs in the same sandbox.
import { readManifest } from "../core/evolve/manifest.ts";
import type { RunOutcome, RunRequest } from "../core/evolve/run.ts";
import type { VerifyReport } from "../core/evolve/verdict.ts";
import type { EvolvePorts } from "../node/ports.ts";
import { VerifierThread } from "./verifier.ts";

type SandboxLike = { run(request: RunRequest): Promise<RunOutcome>; close(): Promise<void> | void };
type CompilerLike = { compileC(source: string, beside?: unknown): Promise<{ readonly report: VerifyReport }>; closeCompileC(): Promise<void> };

export function createEvolvePorts(): EvolvePorts {
  const verifier = new VerifierThread();
  let sandbox: Promise<SandboxLike> | undefined;
  let compiler: Promise<CompilerLike> | undefined;
  const sandboxOf = (): Promise<SandboxLike> => (sandbox ??= import("./sandbox.ts").then((m) => new m.Sandbox() as SandboxLike));
  const compilerOf = (): Promise<CompilerLike> => (compiler ??= import("./compile-c.ts"));
  return {
    verifySource: async (source: string, beside?: unknown): Promise<VerifyReport> => {
      if (!isC(source, beside)) return verifier.verifySource(source, beside);
      return (await (await compilerOf()).compileC(source, beside)).report;
    },
    run: async (request: RunRequest): Promise<RunOutcome> => (await sandboxOf()).run(request),
    close: async (): Promise<void> => {
      await verifier.close();
      if (sandbox !== undefined) await (await sandbox).close();
      if (compiler !== undefined) await (await compiler).closeCompileC();
    },
  };
}

/** True when the manifest (header or beside) decodes and says "language":"c". */
function isC(source: string, beside: unknown): boolean {
  const manifest = readManifest(source, beside);
  return manifest.ok && manifest.value.language === "c";
}
