// C programs, the optional component (src/adapters/compile-c.ts; docs/adr/019-c-programs.md). With
// the toolchain installed (`npm install --no-save @yowasp/clang binaryen`; CI does not install it):
// the outlier prefilter in C keeps exactly what the TypeScript one keeps, run in the real Sandbox;
// an endless C loop ends on the gas meter; a program importing anything but the pk_* functions, one
// over its memory and one calling pk_log without the log grant are refused; a compiler error is
// reported on its line; the command hook turns arguments into output; the node's ports route a C
// source to the compiler. Without it: a C program is refused with the install command. Either way:
// the module reader (wasmShape) on hand-made binaries.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { C_INSTALL_HINT, CCompilerThread, compileC, closeCompileC, wasmShape, type CompileResult } from "../../src/adapters/compile-c.ts";
import { createEvolvePorts } from "../../src/adapters/evolve-ports.ts";
import { Sandbox } from "../../src/adapters/sandbox.ts";
import { ProgramVerifier } from "../../src/adapters/verify-ts.ts";
import type { HookKind } from "../../src/core/evolve/capabilities.ts";
import { PROGRAM_DEFAULTS, type Grants, type RunLimits } from "../../src/core/evolve/manifest.ts";
import type { RunArg, RunOutcome, RunRequest, RunState } from "../../src/core/evolve/run.ts";
import { formatReport, type VerifyReport } from "../../src/core/evolve/verdict.ts";
import { OUTLIERS_SOURCE, outlierBatch } from "../fixtures/programs/outliers.ts";

const OUTLIERS_C = readFileSync(new URL("../fixtures/programs/outliers.c", import.meta.url), "utf8");
const SKIP = "@yowasp/clang is not installed: npm install @yowasp/clang";

/** Whether both optional packages resolve from here (resolving loads nothing). */
function installed(): boolean {
  for (const name of ["@yowasp/clang", "binaryen"]) {
    try {
      import.meta.resolve(name);
    } catch {
      return false;
    }
  }
  return true;
}
const HAVE = installed();

const NONE: Grants = { log: false, kv: false, sensors: false, files: false, clock: false, random: false, topics: { read: [], publish: [] } };
const LIMITS_RUN: RunLimits = { gas: PROGRAM_DEFAULTS.gas, memoryBytes: PROGRAM_DEFAULTS.memoryBytes, stackBytes: PROGRAM_DEFAULTS.stackBytes, wallMs: 2_000, outputBytes: PROGRAM_DEFAULTS.outputBytes };
const STATE: RunState = { kv: {}, files: {}, topics: {}, sensors: [], nowMs: 1_700_000_000_000, seed: 7 };

function request(js: string, hook: HookKind, arg: RunArg, grants: Grants, limits: RunLimits = LIMITS_RUN): RunRequest {
  return { program: "c@1.0.0", js, hook, arg, grants, limits, state: STATE };
}

function header(fields: Record<string, unknown>): string {
  return `// @pk-program ${JSON.stringify({ name: "c-test", version: "1.0.0", language: "c", ...fields })}\n`;
}

function rule(report: VerifyReport, name: string): { verdict: string; findings: ReadonlyArray<{ line: number; col: number; message: string }> } {
  const r = report.rules.find((x) => x.rule === name);
  assert.ok(r !== undefined, `no rule ${name} in\n${formatReport(report)}`);
  return r;
}

function ok(result: CompileResult): string {
  assert.ok(result.ok && result.js !== undefined, formatReport(result.report));
  return result.js;
}

test("compile-c: the module reader sees imports, memory limits and typed exports in a hand-made binary", () => {
  // (module (type (func (param i32 i32))) (type (func (result i32)))
  //   (import "env" "open" (func (type 0))) (func (type 1) i32.const 1)
  //   (memory 2) (export "pk_probe" (func 1)) (export "memory" (memory 0)))
  const bytes = Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x0a, 0x02, 0x60, 0x02, 0x7f, 0x7f, 0x00, 0x60, 0x00, 0x01, 0x7f,
    0x02, 0x0c, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x04, 0x6f, 0x70, 0x65, 0x6e, 0x00, 0x00,
    0x03, 0x02, 0x01, 0x01,
    0x05, 0x03, 0x01, 0x00, 0x02,
    0x07, 0x15, 0x02, 0x08, 0x70, 0x6b, 0x5f, 0x70, 0x72, 0x6f, 0x62, 0x65, 0x00, 0x01, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00,
    0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x01, 0x0b,
  ]);
  const shape = wasmShape(bytes);
  assert.deepEqual(shape.imports, [{ module: "env", name: "open", kind: "function", type: { params: ["i32", "i32"], results: [] } }]);
  assert.deepEqual(shape.memories, [{ initialPages: 2, maxPages: undefined, shared: false, memory64: false }]);
  assert.deepEqual(shape.exports, [{ name: "pk_probe", kind: "function", type: { params: [], results: ["i32"] } }, { name: "memory", kind: "memory" }]);
  assert.throws(() => wasmShape(bytes.subarray(0, 30)), /malformed WebAssembly/);
  assert.throws(() => wasmShape(Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, 1, 0, 0, 0])), /not a WebAssembly 1 module/);
});

test("compile-c: without the optional toolchain a C program is refused with the install command", { skip: HAVE ? "the toolchain is installed here" : false }, async () => {
  const result = await compileC(OUTLIERS_C);
  assert.equal(result.ok, false);
  assert.equal(result.report.ok, false);
  assert.match(rule(result.report, "checker").findings[0]?.message ?? "", /npm install @yowasp\/clang binaryen/);
  assert.ok(C_INSTALL_HINT.includes("npm install"));
  await closeCompileC();
});

test("compile-c: C programs compile, are checked and run metered in the sandbox", async (t) => {
  if (!HAVE) {
    t.skip(SKIP);
    return;
  }
  const compiler = new CCompilerThread();
  const sandbox = new Sandbox();
  t.after(async () => {
    await compiler.close();
    await sandbox.close();
    await closeCompileC();
  });

  await t.test("the outlier prefilter in C keeps what the TypeScript one keeps; compile and run measured", async () => {
    let started = performance.now();
    const cold = await compiler.compile(OUTLIERS_C);
    const coldMs = performance.now() - started;
    const js = ok(cold);
    started = performance.now();
    const warm = await compiler.compile(OUTLIERS_C);
    const warmMs = performance.now() - started;
    ok(warm);
    assert.equal(rule(cold.report, "imports").verdict, "pass");

    const ts = new ProgramVerifier().verifySource(OUTLIERS_SOURCE);
    assert.ok(ts.ok && ts.js !== undefined, formatReport(ts));
    const readings = outlierBatch(48, 2, 5);
    assert.equal(readings.length, 100);
    const arg: RunArg = { kind: "sensor.prefilter", readings };
    const runs = 20;
    const measure = async (code: string, grants: Grants): Promise<{ outcome: RunOutcome; ms: number; gas: number }> => {
      let outcome: RunOutcome | undefined;
      let ms = 0;
      let gas = 0;
      for (let i = 0; i < 5; i++) await sandbox.run(request(code, "sensor.prefilter", arg, grants)); // warm the worker
      for (let i = 0; i < runs; i++) {
        outcome = await sandbox.run(request(code, "sensor.prefilter", arg, grants));
        assert.equal(outcome.ok, true, JSON.stringify(outcome.error));
        ms += outcome.ms;
        gas += outcome.gas;
      }
      return { outcome: outcome as RunOutcome, ms: ms / runs, gas: gas / runs };
    };
    const c = await measure(js, { ...NONE, log: true });
    const typescript = await measure(ts.js, { ...NONE, log: true, kv: true });
    assert.deepEqual(c.outcome.result, typescript.outcome.result);
    assert.equal((c.outcome.result as unknown[]).length, 96);
    assert.deepEqual(c.outcome.logs, [{ level: "info", message: "prefilter: dropped 4/100 outliers" }]);
    t.diagnostic(`C compile: cold ${coldMs.toFixed(0)} ms (toolchain load ${cold.stats.loadMs.toFixed(0)} ms, clang ${cold.stats.compileMs.toFixed(0)} ms, wasm2js ${cold.stats.wasm2jsMs.toFixed(0)} ms), warm ${warmMs.toFixed(0)} ms (clang ${warm.stats.compileMs.toFixed(0)} ms, wasm2js ${warm.stats.wasm2jsMs.toFixed(1)} ms); module ${cold.stats.wasmBytes} bytes, JavaScript ${cold.stats.jsChars} characters`);
    t.diagnostic(`prefilter on 100 readings, mean of ${runs} runs after 5 in the Sandbox's worker: C ${c.ms.toFixed(2)} ms, gas ${c.gas.toFixed(1)}; TypeScript ${typescript.ms.toFixed(2)} ms, gas ${typescript.gas.toFixed(1)}`);
  });

  await t.test("an endless C loop ends on the gas meter", async () => {
    const js = ok(await compiler.compile(`${header({ hook: "task" })}void pk_task(void) {\n  volatile int x = 0;\n  for (;;) x++;\n}\n`));
    const outcome = await sandbox.run(request(js, "task", { kind: "task" }, NONE, { ...LIMITS_RUN, gas: 50 }));
    assert.equal(outcome.ok, false);
    assert.equal(outcome.error?.kind, "gas", JSON.stringify(outcome.error));
    assert.ok(outcome.gas >= 50);
  });

  await t.test("a C program importing anything but the pk_* functions is refused", async () => {
    const libc = await compiler.compile(`${header({ hook: "task" })}int open(const char *path, int flags);\nvoid pk_task(void) { open("/etc/passwd", 0); }\n`);
    assert.equal(libc.ok, false);
    assert.equal(rule(libc.report, "imports").verdict, "fail");
    assert.match(rule(libc.report, "imports").findings[0]?.message ?? "", /calls open/);
    const wasi = await compiler.compile(`${header({ hook: "task" })}__attribute__((import_module("wasi_snapshot_preview1"), import_name("fd_write"))) int fd_write(int, int, int, int);\nvoid pk_task(void) { fd_write(1, 0, 0, 0); }\n`);
    assert.equal(wasi.ok, false);
    assert.match(rule(wasi.report, "imports").findings[0]?.message ?? "", /fd_write/);
    const ungranted = await compiler.compile(`${header({ hook: "task" })}void pk_task(void) { pk_log("hi", 2); }\n`);
    assert.equal(ungranted.ok, false);
    assert.match(rule(ungranted.report, "grants").findings[0]?.message ?? "", /pk_log without the log capability/);
    const big = await compiler.compile(`${header({ hook: "task", limits: { memoryBytes: 1024 * 1024 } })}static volatile char room[2 * 1024 * 1024];\nvoid pk_task(void) { room[12345] = 1; }\n`);
    assert.equal(big.ok, false, formatReport(big.report));
    assert.match(rule(big.report, "size").findings[0]?.message ?? "", /memoryBytes/, formatReport(big.report));
    const topic = await compiler.compile(`${header({ hook: "topic:p.x" })}void pk_task(void) {}\n`);
    assert.equal(topic.ok, false);
    assert.match(rule(topic.report, "hook").findings[0]?.message ?? "", /not offered to C programs/);
  });

  await t.test("a compiler error is reported on its line; a hook of the wrong type does not compile", async () => {
    const result = await compiler.compile(`${header({ hook: "task" })}void pk_task(void) {\n  int x = 1\n  x++;\n}\n`);
    assert.equal(result.ok, false);
    const syntax = rule(result.report, "syntax");
    assert.equal(syntax.verdict, "fail");
    assert.equal(syntax.findings[0]?.line, 3, formatReport(result.report));
    assert.match(syntax.findings[0]?.message ?? "", /error: expected ';'/);
    const wrong = await compiler.compile(`${header({ hook: "task" })}int pk_task(int x) { return x; }\n`);
    assert.equal(wrong.ok, false);
    assert.equal(rule(wrong.report, "syntax").findings[0]?.line, 2);
    const missing = await compiler.compile(`${header({ hook: "task" })}void other(void) {}\n`);
    assert.equal(missing.ok, false);
    assert.match(rule(missing.report, "hook").findings[0]?.message ?? "", /does not define pk_task/);
  });

  await t.test("the command hook: arguments in, output out", async () => {
    const source = `${header({ hook: "command" })}int pk_command(int argc, const char *args, char *out, int cap) {
  int n = 0;
  for (int i = 0; i < argc; i++) {
    if (i > 0 && n < cap) out[n++] = '+';
    while (*args != 0) { if (n < cap) out[n++] = *args; args++; }
    args++;
  }
  return n;
}
`;
    const js = ok(await compiler.compile(source));
    const outcome = await sandbox.run(request(js, "command", { kind: "command", args: ["a", "bé", "c"] }, NONE));
    assert.equal(outcome.ok, true, JSON.stringify(outcome.error));
    assert.equal(outcome.result, "a+bé+c");
    // memcpy and struct copies become memory.copy (bulk memory), which wasm2js translates; a negative return fails the run.
    const copies = ok(await compiler.compile(`${header({ hook: "command" })}struct s { int x[40]; };\nstatic struct s a, b;\nint pk_command(int argc, const char *args, char *out, int cap) {\n  if (argc == 0) return -3;\n  a.x[3] = 2;\n  b = a;\n  __builtin_memcpy(out, "ok", 2);\n  out[2] = (char)('0' + b.x[3]);\n  return 3;\n}\n`));
    assert.equal((await sandbox.run(request(copies, "command", { kind: "command", args: ["x"] }, NONE))).result, "ok2");
    const refused = await sandbox.run(request(copies, "command", { kind: "command", args: [] }, NONE));
    assert.equal(refused.error?.kind, "throw");
    assert.match(refused.error?.message ?? "", /pk_command failed with code -3/);
  });

  await t.test("an idle compiler thread ends (its toolchain holds hundreds of MB) and the next compile starts another", async () => {
    const idle = new CCompilerThread({ idleMs: 50 });
    try {
      const source = `${header({ hook: "probe" })}int pk_probe(void) { return 1; }\n`;
      ok(await idle.compile(source));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const again = await idle.compile(source);
      ok(again);
      assert.equal(idle.starts, 2);
      const outcome = await sandbox.run(request(again.js as string, "probe", { kind: "probe" }, NONE));
      assert.deepEqual(outcome.result, { ok: true });
    } finally {
      await idle.close();
    }
  });

  await t.test("the node's ports route a C source to the compiler and run it in the sandbox", async () => {
    const ports = createEvolvePorts();
    try {
      const report = await ports.verifySource(OUTLIERS_C);
      assert.ok(report.ok && report.js !== undefined, formatReport(report));
      const outcome = await ports.run(request(report.js, "sensor.prefilter", { kind: "sensor.prefilter", readings: outlierBatch(10, 1) }, { ...NONE, log: true }));
      assert.equal(outcome.ok, true, JSON.stringify(outcome.error));
      assert.equal((outcome.result as unknown[]).length, 20);
    } finally {
      await ports.close();
    }
  });
});
