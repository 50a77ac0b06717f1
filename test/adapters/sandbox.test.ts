// The sandbox (src/adapters/sandbox*.ts) on real QuickJS: each hook runs and returns; the guest has
// only the capabilities granted; effects come back in order and reads see the run's own writes; a
// request run twice gives the same outcome; each limit fails with its kind; a host failure rebuilds
// the engine; a worker killed at the wall-clock bound is replaced and the next run works; 2,000 runs
// leave the heap where it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { ProgramVerifier } from "../../src/adapters/verify-ts.ts";
import { Sandbox, createInlineSandbox } from "../../src/adapters/sandbox.ts";
import { SandboxEngine } from "../../src/adapters/sandbox-engine.ts";
import type { HookKind } from "../../src/core/evolve/capabilities.ts";
import { PROGRAM_DEFAULTS, type Grants, type RunLimits } from "../../src/core/evolve/manifest.ts";
import type { RunArg, RunRequest, RunState } from "../../src/core/evolve/run.ts";
import { formatReport } from "../../src/core/evolve/verdict.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import { OUTLIERS_SOURCE, outlierBatch } from "../fixtures/programs/outliers.ts";

const NONE: Grants = { log: false, kv: false, sensors: false, files: false, clock: false, random: false, topics: { read: [], publish: [] } };
const ALL: Grants = { log: true, kv: true, sensors: true, files: true, clock: true, random: true, topics: { read: ["p.*", "sensor.temp"], publish: ["p.out"] } };
const LIMITS_DEFAULT: RunLimits = { gas: PROGRAM_DEFAULTS.gas, memoryBytes: PROGRAM_DEFAULTS.memoryBytes, stackBytes: PROGRAM_DEFAULTS.stackBytes, wallMs: 1_000, outputBytes: PROGRAM_DEFAULTS.outputBytes };
const STATE: RunState = {
  kv: { count: "3", "other/x": "mine" },
  files: { "notes/a.txt": "hello" },
  topics: { "p.in": [{ topic: "p.in", key: "k1", value: "v1", origin: "node-a" }], "sensor.temp": [{ topic: "sensor.temp", key: "t", value: "21.5", origin: "node-b" }] },
  sensors: [{ sensor: "temperature", value: 21.5, at: 5 }],
  nowMs: 1_700_000_000_000,
  seed: 42,
};

const ARGS: Record<HookKind, RunArg> = {
  "sensor.prefilter": { kind: "sensor.prefilter", readings: [{ sensor: "temperature", value: 20, at: 1 }, { sensor: "temperature", value: 22, at: 2 }] },
  task: { kind: "task" },
  command: { kind: "command", args: ["a", "b"] },
  probe: { kind: "probe" },
  topic: { kind: "topic", row: { topic: "p.in", key: "k2", value: "v2", origin: "node-c" } },
};

export function request(js: string, hook: HookKind = "task", overrides: Partial<RunRequest> = {}): RunRequest {
  return { program: "t@1.0.0", js, hook, arg: ARGS[hook], grants: ALL, limits: LIMITS_DEFAULT, state: STATE, ...overrides };
}

const engine = await SandboxEngine.create();

test("sandbox: each hook runs and returns what its contract asks", () => {
  const cases: Array<[HookKind, string, unknown]> = [
    ["sensor.prefilter", "export function prefilter(rs) { return rs.filter((r) => r.value > 21); }", [{ sensor: "temperature", value: 22, at: 2 }]],
    ["task", "export function task() {}", undefined],
    ["command", "export function command(args) { return args.join('+'); }", "a+b"],
    ["probe", "export function probe() { return { ok: true, detail: 'fine' }; }", { ok: true, detail: "fine" }],
    ["topic", "import { log } from 'pk:program'; export function onTopic(row) { log.info(row.topic + '/' + row.key + '=' + row.value + ' from ' + row.origin); }", undefined],
  ];
  for (const [hook, js, expected] of cases) {
    const outcome = engine.run(request(js, hook));
    assert.equal(outcome.ok, true, `${hook}: ${JSON.stringify(outcome.error)}`);
    assert.deepEqual(outcome.result, expected, hook);
    assert.ok(outcome.gas >= 1 && outcome.memoryBytes > 0 && outcome.ms >= 0);
  }
  assert.deepEqual(engine.run(request(cases[4]![1], "topic")).logs, [{ level: "info", message: "p.in/k2=v2 from node-c" }]);
});

test("sandbox: the verified outlier program drops the outliers, logs and counts in its KV namespace", () => {
  const report = new ProgramVerifier().verifySource(OUTLIERS_SOURCE);
  assert.ok(report.ok && report.js !== undefined, formatReport(report));
  const readings = outlierBatch(48, 2);
  const outcome = engine.run(request(report.js, "sensor.prefilter", { arg: { kind: "sensor.prefilter", readings }, grants: { ...NONE, log: true, kv: true }, state: { ...STATE, kv: { dropped: "10" } } }));
  assert.equal(outcome.ok, true, JSON.stringify(outcome.error));
  assert.equal((outcome.result as unknown[]).length, 96);
  assert.deepEqual(outcome.effects.kv, [["dropped", "14"]]);
  assert.match(outcome.logs[0]?.message ?? "", /^prefilter: dropped 4\/100 outliers \(mean=/);
});

test("sandbox: a capability not granted is not bound in the guest", () => {
  const js = `import { log, kv, topics, sensors, files, clock, random } from "pk:program";
export function probe() { return { ok: true, detail: [typeof log, typeof kv, typeof topics, typeof sensors, typeof files, typeof clock, typeof random, typeof globalThis.__pk_program_capabilities__].join(",") }; }`;
  const none = engine.run(request(js, "probe", { grants: NONE }));
  assert.deepEqual(none.result, { ok: true, detail: "undefined,undefined,undefined,undefined,undefined,undefined,undefined,undefined" });
  const all = engine.run(request(js, "probe"));
  assert.deepEqual(all.result, { ok: true, detail: "object,object,object,object,object,object,object,undefined" });
  const some = engine.run(request(js, "probe", { grants: { ...NONE, kv: true, topics: { read: ["p.in"], publish: [] } } }));
  assert.deepEqual(some.result, { ok: true, detail: "undefined,object,object,undefined,undefined,undefined,undefined,undefined" });
});

test("sandbox: effects come back in order and reads see the run's own writes", () => {
  const js = `import { kv, files, topics, log, clock, random, sensors } from "pk:program";
export function command() {
  const out = [];
  out.push(kv.get("count"));
  kv.set("count", "4"); out.push(kv.get("count"));
  kv.delete("other/x"); out.push(String(kv.get("other/x")));
  out.push(kv.keys().join("|"));
  files.write("notes/b.txt", "B"); out.push(files.read("notes/b.txt"));
  files.remove("notes/a.txt"); out.push(files.list().join("|"));
  out.push(String(topics.publish("p.out", "x", "1")));
  out.push(String(topics.publish("p.elsewhere", "x", "1")));
  out.push(String(topics.get("p.in", "k1")), String(topics.get("sensor.temp", "t")), String(topics.get("mem", "x")));
  out.push(String(clock.now()), String(sensors.latest()[0].value), String(random.int(1000)));
  log.info("done");
  return out.join(";");
}`;
  const outcome = engine.run(request(js, "command"));
  assert.equal(outcome.ok, true, JSON.stringify(outcome.error));
  const parts = String(outcome.result).split(";");
  assert.deepEqual(parts.slice(0, 13), ["3", "4", "undefined", "count", "B", "notes/b.txt", "true", "false", "v1", "21.5", "undefined", "1700000000000", "21.5"]);
  assert.deepEqual(outcome.effects, {
    kv: [["count", "4"], ["other/x", null]],
    files: [["notes/b.txt", "B"], ["notes/a.txt", null]],
    publish: [{ topic: "p.out", key: "x", value: "1" }],
  });
  assert.deepEqual(outcome.logs.map((l) => l.level), ["warn", "warn", "info"], "two refused calls noted, then the program's line");
  assert.match(outcome.logs[0]!.message, /topics.publish "p.elsewhere": not granted/);
  assert.match(outcome.logs[1]!.message, /topics.get "mem": not granted/);
  assert.equal(outcome.outputBytes, 1 + 4 + String(outcome.result).length);
});

test("sandbox: the same request twice gives the same outcome (result, effects, logs, gas, memory)", () => {
  const js = `import { random, log, kv } from "pk:program";
export function command() { let s = 0; for (let i = 0; i < 200000; i++) s += random.next(); log.info(String(Math.random()) + " " + Date.now() + " " + new Date().toISOString()); kv.set("s", String(s)); return String(s); }`;
  const a = engine.run(request(js, "command"));
  const b = engine.run(request(js, "command"));
  assert.equal(a.ok, true, JSON.stringify(a.error));
  assert.ok(a.gas > 1, "the loop spent gas");
  const { ms: _a, ...restA } = a;
  const { ms: _b, ...restB } = b;
  assert.deepEqual(restA, restB);
  assert.match(a.logs[0]!.message, / 1700000000000 2023-11-14T22:13:20.000Z$/);
  const other = engine.run(request(js, "command", { state: { ...STATE, seed: 43 } }));
  assert.notEqual(other.result, a.result, "another seed draws other numbers");
});

test("sandbox: each limit fails the run with its kind, and the effects are dropped", (t) => {
  const cases: Array<[string, string, Partial<RunLimits>, string, HookKind?]> = [
    ["gas", "import { kv } from 'pk:program'; export function task() { kv.set('a', 'b'); for (;;) {} }", { gas: 20 }, "gas"],
    ["wall", "export function task() { for (;;) {} }", { gas: LIMITS.evolve.program.gasMax, wallMs: 50 }, "wall"],
    ["memory", "export function task() { const a = []; for (;;) a.push({ n: a.length, s: 'x' + a.length }); }", { memoryBytes: 4 << 20, gas: LIMITS.evolve.program.gasMax }, "memory"],
    ["memory (large blocks, the module's cap)", "export function task() { const a = []; for (;;) a.push(new Uint8Array(1 << 20)); }", { memoryBytes: 4 << 20 }, "memory"],
    ["stack", "export function task() { const f = (n) => f(n + 1) + 1; f(0); }", {}, "stack"],
    ["output", "import { log } from 'pk:program'; export function task() { for (let i = 0; i < 100; i++) log.info('x'.repeat(100)); }", { outputBytes: 1000 }, "output"],
    ["command output", "export function command() { return 'y'.repeat(2000); }", { outputBytes: 1000 }, "output", "command"],
    ["throw", "export function task() { throw new RangeError('no such thing'); }", {}, "throw"],
    ["contract", "export function probe() { return { ok: 'yes' }; }", {}, "contract", "probe"],
  ];
  for (const [name, js, limits, kind, hook] of cases) {
    const started = performance.now();
    const outcome = engine.run(request(js, hook ?? "task", { limits: { ...LIMITS_DEFAULT, ...limits } }));
    assert.equal(outcome.ok, false, name);
    assert.equal(outcome.error?.kind, kind, `${name}: ${JSON.stringify(outcome.error)}`);
    assert.deepEqual(outcome.effects, { kv: [], files: [], publish: [] }, name);
    t.diagnostic(`${name}: ${kind} after ${(performance.now() - started).toFixed(0)} ms, gas ${outcome.gas}`);
  }
  const thrown = engine.run(request("export function task() { throw new RangeError('no such thing'); }"));
  assert.equal(thrown.error?.message, "RangeError: no such thing");
});

test("sandbox: a host failure rebuilds the engine and the next run works", async () => {
  // A stack cap above 256 KiB lets a deep recursion overflow the host's own stack first: a real host
  // RangeError out of the WebAssembly, not a guest error.
  const risky = await SandboxEngine.create({ stackBytesCap: 1024 * 1024 });
  const deep = request("export function task() { const f = (n) => f(n + 1) + 1; f(0); }", "task", { limits: { ...LIMITS_DEFAULT, stackBytes: 1024 * 1024, gas: LIMITS.evolve.program.gasMax, memoryBytes: LIMITS.evolve.program.memoryBytesMax } });
  const broken = await risky.runAsync(deep);
  assert.equal(broken.error?.kind, "host", JSON.stringify(broken.error));
  assert.equal(risky.stats.rebuilds, 1);
  assert.equal(risky.loaded, false);
  const next = await risky.runAsync(request("export function command() { return 'alive'; }", "command"));
  assert.equal(next.result, "alive");
});

test("sandbox: the worker is terminated past the wall-clock bound, replaced, and the next run works", async (t) => {
  // JSON.stringify of a million objects is one builtin call that polls no interrupt (about a second
  // here): the engine's own check cannot see it, so the host's clock ends it.
  const sandbox = new Sandbox({ wallMarginMs: 200 });
  t.after(() => sandbox.close());
  const first = await sandbox.run(request("export function command() { return 'first'; }", "command"));
  assert.equal(first.result, "first");
  const started = performance.now();
  const stuck = await sandbox.run(request("export function command() { const o = new Array(1000).fill({ a: [1, 2, 3] }); return String(JSON.stringify(new Array(3000).fill(o)).length); }", "command", { limits: { ...LIMITS_DEFAULT, wallMs: 100, gas: LIMITS.evolve.program.gasMax, memoryBytes: LIMITS.evolve.program.memoryBytesMax } }));
  const waited = performance.now() - started;
  assert.equal(stuck.error?.kind, "wall", JSON.stringify(stuck.error));
  assert.ok(waited < 5_000, `waited ${waited} ms`);
  t.diagnostic(`stuck run ended after ${waited.toFixed(0)} ms: ${stuck.error?.message}`);
  const next = await sandbox.run(request("export function command() { return 'after'; }", "command"));
  assert.equal(next.result, "after");
  assert.ok(sandbox.stats.runs === 3);
  assert.equal(sandbox.stats.failures.wall, 1);
  assert.equal(sandbox.stats.workerRestarts, 1);
  assert.match(stuck.error?.message ?? "", /its worker was terminated/);
});

test("sandbox: the worker sandbox runs requests in order, refuses an oversized one, and counts", async (t) => {
  const sandbox = new Sandbox();
  t.after(() => sandbox.close());
  const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => sandbox.run(request(`export function command() { return "${i}"; }`, "command"))));
  assert.deepEqual(outcomes.map((o) => o.result), Array.from({ length: 20 }, (_, i) => String(i)));
  const huge = await sandbox.run(request("export function task() {}", "task", { state: { ...STATE, files: { big: "x".repeat(LIMITS.evolve.run.requestBytesMax) } } }));
  assert.equal(huge.ok, false);
  assert.match(huge.error?.message ?? "", /^refused: the request is \d+ bytes/);
  assert.equal(sandbox.stats.runs, 21);
  const inline = await createInlineSandbox();
  assert.equal((await inline.run(request("export function command() { return 'inline'; }", "command"))).result, "inline");
});

test("sandbox: 2,000 runs leave the heap and the engine's memory bounded", async (t) => {
  const js = "import { kv, log } from 'pk:program'; export function task() { const a = []; for (let i = 0; i < 1000; i++) a.push({ i, s: 'x' + i }); kv.set('n', String(a.length)); log.info('ok'); }";
  const req = request(js);
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const heapAt = (): number => {
    gc();
    return process.memoryUsage().heapUsed;
  };
  const wasm = (): number => process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 200; i++) assert.equal(engine.run(req).ok, true);
  const firstMemory = engine.run(req).memoryBytes;
  const heap0 = heapAt();
  const buffers0 = wasm();
  for (let i = 0; i < 2_000; i++) {
    const o = engine.run(req);
    if (!o.ok) assert.fail(JSON.stringify(o.error));
  }
  const heapGrowth = heapAt() - heap0;
  const buffersGrowth = wasm() - buffers0;
  t.diagnostic(`2,000 runs: JS heap ${(heapGrowth / 1024).toFixed(0)} KiB, array buffers (WebAssembly memory) ${(buffersGrowth / 1024).toFixed(0)} KiB`);
  assert.ok(heapGrowth < 4 * 1024 * 1024, `heap grew ${heapGrowth} bytes`);
  assert.ok(buffersGrowth < 1024 * 1024, `the WebAssembly memory grew ${buffersGrowth} bytes (it grows by 64 KiB pages)`);
  assert.equal(engine.run(req).memoryBytes, firstMemory, "each run's runtime starts from the same memory");
});
