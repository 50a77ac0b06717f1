// `npm run bench -- evolve [--quick]`: the program sandbox and verifier (issue 15; ADR 017). Prints
// one JSON object, each figure beside its goal:
// - start: a new QuickJS runtime + context + prelude + a trivial run, in this thread (SandboxEngine),
//   median and p99 over 1,000 runs (goal ≤ 1 ms), and its parts: a bare runtime and context, and
//   the same with the capability prelude evaluated;
// - worker round trip: the same trivial run through the worker Sandbox;
// - gas overhead: one compute loop under the engine (interrupt handler as the gas meter, prelude,
//   capabilities) against plain QuickJS (no handler, no prelude), as a ratio of times;
// - prefilter calls per second: the outlier filter (test/fixtures/programs/outliers.ts), 100
//   readings a call, through the worker Sandbox one at a time, and in this thread;
// - verify: ProgramVerifier.verifySource on the outlier program, warm, median and p99 (goal ≤ 100 ms).
import { performance } from "node:perf_hooks";
import { newQuickJSWASMModuleFromVariant } from "quickjs-emscripten-core";
import { Sandbox, createInlineSandbox } from "../src/adapters/sandbox.ts";
import { QUICKJS_VARIANT, SandboxEngine } from "../src/adapters/sandbox-engine.ts";
import { preludeSource } from "../src/adapters/sandbox-prelude.ts";
import { ProgramVerifier } from "../src/adapters/verify-ts.ts";
import { LIMITS } from "../src/core/util/limits.ts";
import type { Grants, RunLimits } from "../src/core/evolve/manifest.ts";
import type { RunRequest } from "../src/core/evolve/run.ts";
import { OUTLIERS_SOURCE, outlierBatch } from "../test/fixtures/programs/outliers.ts";

const NONE: Grants = { log: false, kv: false, sensors: false, files: false, clock: false, random: false, topics: { read: [], publish: [] } };
const LIMITS_RUN: RunLimits = { gas: LIMITS.evolve.program.gasMax, memoryBytes: 8 * 1024 * 1024, stackBytes: 128 * 1024, wallMs: 10_000, outputBytes: 16 * 1024 };
const STATE = { kv: {}, files: {}, topics: {}, sensors: [], nowMs: 1_700_000_000_000, seed: 1 };

function quantiles(xs: number[]): { median: number; p99: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => Number((s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0).toFixed(3));
  return { median: at(0.5), p99: at(0.99) };
}

function trivial(): RunRequest {
  return { program: "trivial@1.0.0", js: "export function task() {}", hook: "task", arg: { kind: "task" }, grants: NONE, limits: LIMITS_RUN, state: STATE };
}

export async function run(args: string[]): Promise<unknown> {
  const quick = args.includes("--quick");
  const n = quick ? 1_000 : 3_000;
  const progress = (text: string): void => void process.stderr.write(`evolve: ${text}\n`);

  progress("start (in this thread)");
  const engine = await SandboxEngine.create();
  for (let i = 0; i < 200; i++) engine.run(trivial());
  const starts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const o = engine.run(trivial());
    starts.push(performance.now() - t);
    if (!o.ok) throw new Error(`trivial run failed: ${JSON.stringify(o.error)}`);
  }

  // Where a start goes: a bare runtime and context (created and disposed), and the same with the
  // capability prelude (no grants) evaluated in it — the rest is the program, the call and the report.
  progress("start, in parts");
  const bare = await newQuickJSWASMModuleFromVariant(QUICKJS_VARIANT);
  const prelude = preludeSource(NONE);
  const parts = { runtimeContext: [] as number[], withPrelude: [] as number[] };
  for (let i = 0; i < n + 200; i++) {
    let t = performance.now();
    const rt = bare.newRuntime();
    const c = rt.newContext();
    c.dispose();
    rt.dispose();
    if (i >= 200) parts.runtimeContext.push(performance.now() - t);
    t = performance.now();
    const rt2 = bare.newRuntime();
    const c2 = rt2.newContext();
    const r = c2.evalCode(prelude, "prelude.js", { type: "global", strict: true });
    (r.error ?? r.value).dispose();
    c2.dispose();
    rt2.dispose();
    if (i >= 200) parts.withPrelude.push(performance.now() - t);
  }

  progress("worker round trip");
  const sandbox = new Sandbox();
  for (let i = 0; i < 100; i++) await sandbox.run(trivial());
  const trips: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await sandbox.run(trivial());
    trips.push(performance.now() - t);
  }

  progress("gas overhead");
  const loop = "let s = 0; for (let i = 0; i < 3000000; i++) s = (s + i * 7) % 1000003;";
  const metered: number[] = [];
  let gas = 0;
  for (let i = 0; i < 7; i++) {
    const o = engine.run({ ...trivial(), js: `export function command() { ${loop} return String(s); }`, hook: "command", arg: { kind: "command", args: [] } });
    if (!o.ok) throw new Error(JSON.stringify(o.error));
    metered.push(o.ms);
    gas = o.gas;
  }
  const plainModule = await newQuickJSWASMModuleFromVariant(QUICKJS_VARIANT);
  const plain: number[] = [];
  for (let i = 0; i < 7; i++) {
    const rt = plainModule.newRuntime();
    const ctx = rt.newContext();
    const t = performance.now();
    const r = ctx.evalCode(`(function () { ${loop} return s; })()`);
    plain.push(performance.now() - t);
    (r.error ?? r.value).dispose();
    ctx.dispose();
    rt.dispose();
  }
  const meteredMs = quantiles(metered).median;
  const plainMs = quantiles(plain).median;

  progress("prefilter calls");
  const verifier = new ProgramVerifier();
  const report = verifier.verifySource(OUTLIERS_SOURCE);
  if (!report.ok || report.js === undefined) throw new Error("the outlier program does not verify");
  const readings = outlierBatch(48, 2);
  const prefilter: RunRequest = { program: "outliers@1.0.0", js: report.js, hook: "sensor.prefilter", arg: { kind: "sensor.prefilter", readings }, grants: { ...NONE, log: true, kv: true }, limits: { ...LIMITS_RUN, gas: 200 }, state: { ...STATE, kv: { dropped: "0" } } };
  const check = await sandbox.run(prefilter);
  if (!check.ok || (check.result as unknown[]).length !== 96) throw new Error(`the outlier program failed: ${JSON.stringify(check.error)}`);
  const calls = quick ? 500 : 2_000;
  let t = performance.now();
  for (let i = 0; i < calls; i++) await sandbox.run(prefilter);
  const workerPerSecond = calls / ((performance.now() - t) / 1000);
  const inline = await createInlineSandbox();
  t = performance.now();
  for (let i = 0; i < calls; i++) await inline.run(prefilter);
  const inlinePerSecond = calls / ((performance.now() - t) / 1000);
  const prefilterRun = await inline.run(prefilter);
  await sandbox.close();

  progress("verify (warm)");
  for (let i = 0; i < 10; i++) verifier.verifySource(OUTLIERS_SOURCE);
  const verifies: number[] = [];
  for (let i = 0; i < (quick ? 30 : 100); i++) {
    const t0 = performance.now();
    verifier.verifySource(OUTLIERS_SOURCE);
    verifies.push(performance.now() - t0);
  }

  const start = quantiles(starts);
  const verify = quantiles(verifies);
  return {
    bench: "evolve",
    node: process.version,
    engine: "quickjs-emscripten 0.32 (release-sync WebAssembly)",
    start: {
      runs: n, medianMs: start.median, p99Ms: start.p99, goalMs: 1, meetsGoal: start.median <= 1,
      parts: { runtimeAndContextMs: quantiles(parts.runtimeContext).median, withPreludeMs: quantiles(parts.withPrelude).median, preludeChars: prelude.length },
    },
    workerRoundTrip: { runs: n, ...Object.fromEntries(Object.entries(quantiles(trips)).map(([k, v]) => [`${k}Ms`, v])) },
    gasOverhead: { loop: "3e6 iterations", meteredMs, plainMs, ratio: Number((meteredMs / plainMs).toFixed(3)), gasUnits: gas },
    prefilter: { readingsPerCall: readings.length, workerCallsPerSecond: Math.round(workerPerSecond), inlineCallsPerSecond: Math.round(inlinePerSecond), gasPerCall: prefilterRun.gas, memoryBytes: prefilterRun.memoryBytes, log: prefilterRun.logs[0]?.message },
    verify: { runs: verifies.length, medianMs: verify.median, p99Ms: verify.p99, goalMs: 100, meetsGoal: verify.median <= 100 },
  };
}
