// The escape suite: programs that try to get out of the sandbox or past its bounds. Each attempt
// is raw JavaScript handed to the worker Sandbox directly (the sandbox as the second line of
// defence, whatever the verifier says); where the attempt is a program a mind could write, its
// TypeScript also goes through the real ProgramVerifier, and the rule that refuses it is asserted
// (the first line). Every attempt asserts its own verdict. After each, the host's own prototypes
// are checked, and the next run sees a clean world. Meanwhile a 10 ms interval on this thread
// measures the longest stall of the event loop: the runs happen in the worker.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ProgramVerifier } from "../../src/adapters/verify-ts.ts";
import { Sandbox } from "../../src/adapters/sandbox.ts";
import type { HookKind } from "../../src/core/evolve/capabilities.ts";
import { PROGRAM_DEFAULTS, type Grants, type RunLimits } from "../../src/core/evolve/manifest.ts";
import type { RunArg, RunOutcome, RunRequest, RunState } from "../../src/core/evolve/run.ts";
import { failures, formatReport, type RuleName } from "../../src/core/evolve/verdict.ts";
import { LIMITS } from "../../src/core/util/limits.ts";

const GRANTS: Grants = { log: true, kv: true, sensors: true, files: true, clock: true, random: true, topics: { read: ["p.*"], publish: ["p.mine"] } };
const BASE_LIMITS: RunLimits = { gas: PROGRAM_DEFAULTS.gas, memoryBytes: PROGRAM_DEFAULTS.memoryBytes, stackBytes: PROGRAM_DEFAULTS.stackBytes, wallMs: 500, outputBytes: PROGRAM_DEFAULTS.outputBytes };
const STATE: RunState = { kv: { mine: "1" }, files: { "a.txt": "A" }, topics: {}, sensors: [], nowMs: 1_700_000_000_000, seed: 9 };
const ARGS: Record<HookKind, RunArg> = {
  "sensor.prefilter": { kind: "sensor.prefilter", readings: [{ sensor: "t", value: 1, at: 1 }, { sensor: "t", value: 2, at: 2 }] },
  task: { kind: "task" },
  command: { kind: "command", args: [] },
  probe: { kind: "probe" },
  topic: { kind: "topic", row: { topic: "p.in", key: "k", value: "v", origin: "n" } },
};

interface Attempt {
  readonly name: string;
  /** What the sandbox runs. */
  readonly js: string;
  readonly hook?: HookKind;
  readonly limits?: Partial<RunLimits>;
  readonly check: (o: RunOutcome) => void;
  /** The program as TypeScript and the rule the verifier refuses it with ("passes": it is verified, the sandbox alone stops it). */
  readonly ts?: { readonly body: string; readonly refusedBy: RuleName | "passes"; readonly capabilities?: Record<string, unknown> };
}

const kind = (k: string | readonly string[], message?: RegExp) => (o: RunOutcome): void => {
  assert.equal(o.ok, false, `expected a failure, got ${JSON.stringify(o).slice(0, 300)}`);
  const kinds = typeof k === "string" ? [k] : k;
  assert.ok(kinds.includes(o.error?.kind ?? ""), `kind ${o.error?.kind} (${o.error?.message}), expected ${kinds.join("|")}`);
  if (message !== undefined) assert.match(o.error?.message ?? "", message);
  assert.deepEqual(o.effects, { kv: [], files: [], publish: [] });
};
const result = (expected: unknown) => (o: RunOutcome): void => {
  assert.equal(o.ok, true, JSON.stringify(o.error));
  assert.deepEqual(o.result, expected);
};
const cmd = (body: string): string => `export function command() { ${body} }`;

const ATTEMPTS: Attempt[] = [
  // The file system, the process.
  { name: "import fs", js: `import fs from "fs"; ${cmd("return 'x';")}`, check: kind("throw", /no module fs/), ts: { body: `import fs from "fs";\n${cmd("return String(fs);")}`, refusedBy: "imports" } },
  { name: "import a path beside pk:program", js: `import x from "pk:program/../node:fs"; ${cmd("return 'x';")}`, check: kind("throw", /no module/) },
  { name: "require('fs')", js: cmd("return String(require('fs'));"), check: kind("throw", /'require' is not defined/), ts: { body: cmd("return String(require('fs'));"), refusedBy: "imports" } },
  { name: "import('fs')", js: cmd("const p = import('fs'); return typeof p;"), check: result("object") /* a promise whose job never runs */, ts: { body: cmd("const p = import('fs'); return typeof p;"), refusedBy: "imports" } },
  { name: "process.binding", js: cmd("return String(process.binding('fs'));"), check: kind("throw", /'process' is not defined/), ts: { body: cmd("return String(process.binding('fs'));"), refusedBy: "globals" } },
  { name: "process.exit", js: cmd("process.exit(1); return 'x';"), check: kind("throw", /'process' is not defined/) },
  { name: "process.env", js: cmd("return JSON.stringify(process.env);"), check: kind("throw", /'process' is not defined/) },
  // The network, timers, jobs.
  { name: "fetch", js: cmd("fetch('http://127.0.0.1/'); return 'x';"), check: kind("throw", /'fetch' is not defined/), ts: { body: cmd("void fetch('http://127.0.0.1/'); return 'x';"), refusedBy: "globals" } },
  { name: "XMLHttpRequest", js: cmd("new XMLHttpRequest(); return 'x';"), check: kind("throw", /'XMLHttpRequest' is not defined/) },
  { name: "WebSocket", js: cmd("new WebSocket('ws://127.0.0.1/'); return 'x';"), check: kind("throw", /'WebSocket' is not defined/) },
  { name: "setTimeout", js: cmd("setTimeout(() => { for (;;) {} }, 0); return 'x';"), check: kind("throw", /'setTimeout' is not defined/), ts: { body: cmd("setTimeout(() => 1, 0); return 'x';"), refusedBy: "globals" } },
  { name: "setInterval", js: cmd("setInterval(() => 1, 1); return 'x';"), check: kind("throw", /'setInterval' is not defined/) },
  { name: "queueMicrotask", js: cmd("queueMicrotask(() => { for (;;) {} }); return 'x';"), check: kind("throw", /'queueMicrotask' is not defined/) },
  { name: "a flood of promise jobs never runs", js: cmd("for (let i = 0; i < 10000; i++) Promise.resolve(i).then(() => { for (;;) {} }); return 'queued';"), check: result("queued"), ts: { body: cmd("for (let i = 0; i < 10000; i++) void Promise.resolve(i).then(() => 1); return 'queued';"), refusedBy: "async" } },
  { name: "an async hook", js: "export async function command() { await null; for (;;) {} }", check: kind("contract", /must return a string/) },
  { name: "top-level await", js: `await new Promise(() => {}); ${cmd("return 'x';")}`, check: kind("contract", /exports no function command/) },
  // Prototypes and the global object.
  { name: "Object.prototype polluted inside", js: cmd("Object.prototype.polluted = 'yes'; Array.prototype.map = null; return String(({}).polluted);"), check: result("yes"), ts: { body: cmd("(Object as unknown as { prototype: Record<string, string> }).prototype.polluted = 'yes'; return 'x';"), refusedBy: "prototype" } },
  { name: "the next run does not see the pollution", js: cmd("return String(({}).polluted) + typeof [].map;"), check: result("undefinedfunction") },
  { name: "__proto__ in a result", js: "export function probe() { return JSON.parse('{\"ok\":true,\"__proto__\":{\"polluted\":1}}'); }", hook: "probe", check: (o) => { assert.equal(o.ok, true); assert.equal(({} as Record<string, unknown>).polluted, undefined); } },
  { name: "(() => {}).constructor('return this')()", js: cmd("return String((() => {}).constructor('return this')());"), check: kind("throw", /no code from strings/), ts: { body: cmd("return String((() => 1).constructor('return this'));"), refusedBy: "prototype" } },
  { name: "[].constructor.constructor", js: cmd("return String([].constructor.constructor('return globalThis')());"), check: kind("throw", /no code from strings/) },
  { name: "async function's constructor", js: cmd("return String((async () => {}).constructor('return 1'));"), check: kind("throw", /no code from strings/) },
  { name: "Function('...')", js: cmd("return String(Function('return globalThis')());"), check: kind("throw", /no code from strings/), ts: { body: cmd("return String(Function('return 1')());"), refusedBy: "dynamic-code" } },
  { name: "eval", js: cmd("return String(eval('1 + 1'));"), check: kind("throw", /'eval' is not defined/), ts: { body: cmd("return String(eval('1 + 1'));"), refusedBy: "dynamic-code" } },
  { name: "globalThis holds no host", js: cmd("return Object.getOwnPropertyNames(globalThis).filter((n) => /process|require|fetch|setTimeout|WebAssembly|SharedArrayBuffer|Atomics|^eval$|console|__pk/.test(n)).join(',');"), check: result(""), ts: { body: cmd("return String(globalThis);"), refusedBy: "globals" } },
  { name: "this at the top", js: `const t = this; ${cmd("return String(t) + String((function () { return this; })());")}`, check: result("undefinedundefined") },
  // CPU.
  { name: "for (;;)", js: cmd("for (;;) {}"), check: kind("gas"), ts: { body: cmd("for (;;) {}"), refusedBy: "loops" } },
  { name: "while (true) in a callback", js: cmd("[1].forEach(() => { while (true) {} }); return 'x';"), check: kind("gas") },
  { name: "an endless loop at the module's top", js: `for (;;) {} ${cmd("return 'x';")}`, check: kind("gas") },
  { name: "recursion that catches its own stack overflow", js: cmd("const f = () => { try { f(); } catch { f(); } }; f(); return 'x';"), check: kind(["gas", "stack", "wall"]) /* throwing "stack overflow" over and over polls the meter rarely: the host's kill may end it */ },
  { name: "a catastrophic regex", js: cmd("return String(/(a+)+$/.test('a'.repeat(40) + '!'));"), check: kind(["gas", "wall"]), ts: { body: cmd("return String(/(a+)+$/.test('a'.repeat(40) + '!'));"), refusedBy: "passes" } },
  { name: "JSON.stringify of a million objects (one builtin, no interrupt)", js: cmd("const o = new Array(1000).fill({ a: [1, 2, 3] }); return String(JSON.stringify(new Array(3000).fill(o)).length);"), limits: { wallMs: 100, gas: LIMITS.evolve.program.gasMax, memoryBytes: LIMITS.evolve.program.memoryBytesMax }, check: kind("wall", /worker was terminated/) },
  // Memory and stack.
  { name: "string doubling", js: cmd("let s = 'ab'; for (;;) s += s; return s;"), check: kind(["memory", "throw"], /string too long|out of memory/), ts: { body: cmd("let s = 'ab'; for (let i = 0; i < 100; i++) s += s; return s;"), refusedBy: "passes" } },
  { name: "array growth", js: cmd("const a = []; for (;;) a.push({ i: a.length }); return 'x';"), limits: { gas: LIMITS.evolve.program.gasMax, wallMs: LIMITS.evolve.program.wallMsMax } /* the memory bound is what this tests: on a loaded machine filling it can take longer than the suite's 500 ms */, check: kind("memory") },
  { name: "a huge ArrayBuffer", js: cmd("return String(new ArrayBuffer(1 << 30).byteLength);"), check: kind(["memory", "throw"], /memory|length/) },
  { name: "large blocks past the module's WebAssembly cap", js: cmd("const a = []; for (;;) a.push(new Uint8Array(4 << 20)); return 'x';"), limits: { wallMs: LIMITS.evolve.program.wallMsMax }, check: kind("memory") },
  { name: "unbounded recursion", js: cmd("const f = (n) => f(n + 1) + 1; return String(f(0));"), check: kind("stack"), ts: { body: cmd("const f = (n: number): number => f(n + 1) + 1; return String(f(0));"), refusedBy: "passes" } },
  { name: "deeply nested JSON", js: cmd("return String(JSON.parse('['.repeat(200000) + ']'.repeat(200000)).length);"), check: kind(["stack", "throw"]) },
  // Output.
  { name: "a log flood", js: `import { log } from "pk:program"; ${cmd("for (let i = 0; i < 100000; i++) log.info(i + 'x'.repeat(1000)); return 'x';")}`, check: (o) => { kind("output")(o); assert.ok(o.logs.length <= LIMITS.evolve.run.logLinesMax); } },
  { name: "command output over the bound", js: cmd("return 'y'.repeat(100000);"), check: kind("output") },
  { name: "a publish flood", js: `import { topics } from "pk:program"; ${cmd("for (let i = 0; i < 100000; i++) topics.publish('p.mine', 'k' + (i % 100), 'v'.repeat(100)); return 'x';")}`, check: kind("output") },
  // Shared memory, WebAssembly, reflection.
  { name: "SharedArrayBuffer", js: cmd("return String(new SharedArrayBuffer(8).byteLength);"), check: kind("throw", /'SharedArrayBuffer' is not defined/), ts: { body: cmd("return String(new SharedArrayBuffer(8).byteLength);"), refusedBy: "shared-memory" } },
  { name: "Atomics", js: cmd("return String(Atomics.add(new Int32Array(1), 0, 1));"), check: kind("throw", /'Atomics' is not defined/) },
  { name: "WebAssembly", js: cmd("return String(new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0])));"), check: kind("throw", /'WebAssembly' is not defined/), ts: { body: cmd("return String(WebAssembly);"), refusedBy: "webassembly" } },
  { name: "a Proxy result whose traps never end", js: "export function probe() { return new Proxy({}, { get() { for (;;) {} }, ownKeys() { for (;;) {} } }); }", hook: "probe", check: kind("gas"), ts: { body: "export function probe() { return new Proxy({ ok: true }, {}); }", refusedBy: "reflection" } },
  { name: "Reflect to reach a hidden global", js: cmd("return String(Reflect.get(globalThis, '__pk_program_capabilities__'));"), check: result("undefined") },
  { name: "Symbol.toPrimitive on a result", js: cmd("return { [Symbol.toPrimitive]() { for (;;) {} }, toString() { for (;;) {} } };"), check: kind("contract", /must return a string/) },
  // The result as the host reads it.
  { name: "a getter on the result that never ends", js: "export function probe() { return { get ok() { for (;;) {} } }; }", hook: "probe", check: kind("gas") },
  { name: "a getter on the result that throws", js: "export function probe() { return { get ok() { throw new Error('gotcha'); } }; }", hook: "probe", check: kind("contract", /not JSON data: Error: gotcha/) },
  { name: "a cyclic result", js: "export function probe() { const o = { ok: true }; o.self = o; return o; }", hook: "probe", check: kind("contract", /circular/) },
  { name: "a huge result", js: "export function prefilter() { return new Array(1000000).fill({ sensor: 't', value: 1, at: 1 }); }", hook: "sensor.prefilter", limits: { memoryBytes: LIMITS.evolve.program.memoryBytesMax, gas: LIMITS.evolve.program.gasMax }, check: kind(["contract", "memory", "output", "wall"]) /* serialising it is one long builtin call: the host's kill may end it */ },
  // Capabilities beyond the grant.
  { name: "another program's KV namespace by key tricks", js: `import { kv } from "pk:program"; ${cmd("kv.set('../other/x', 'v'); return String(kv.set('\\u0000other', 'v')) + String(kv.get('mine'));")}`, check: (o) => { result("false1")(o); assert.deepEqual(o.effects.kv, [["../other/x", "v"]], "a key of its own namespace: the host prefixes it with the program's"); assert.match(o.logs[0]?.message ?? "", /control characters/); } },
  { name: "kv without its grant, through the hidden global", js: cmd("return typeof globalThis.__pk_program_capabilities__;"), check: result("undefined") },
  { name: "publish to kernel topics", js: `import { topics } from "pk:program"; ${cmd("return [topics.publish('mem', 'k', 'v'), topics.publish('self.minds', 'k', 'v'), topics.publish('p.other', 'k', 'v'), topics.publish('p.mine', 'k', 'v')].join(',');")}`, check: (o) => { result("false,false,false,true")(o); assert.deepEqual(o.effects.publish, [{ topic: "p.mine", key: "k", value: "v" }]); assert.equal(o.logs.filter((l) => /not granted/.test(l.message)).length, 3); } },
  { name: "files outside the folder", js: `import { files } from "pk:program"; ${cmd("return [files.write('../x', 'x'), files.write('/etc/passwd', 'x'), files.write('a/../../x', 'x'), files.read('/etc/passwd'), files.read('../a.txt'), files.read('a.txt')].map(String).join(',');")}`, check: (o) => { result("false,false,false,undefined,undefined,A")(o); assert.deepEqual(o.effects.files, []); } },
  { name: "topics read outside the grant", js: `import { topics } from "pk:program"; ${cmd("return String(topics.read('mem').length) + String(topics.get('self.minds', 'x'));")}`, check: result("0undefined") },
  // Determinism.
  { name: "Date.now, new Date() and Math.random follow the run", js: cmd("return [Date.now(), new Date().getTime(), Date(), Math.random()].join(',');"), check: (o) => { assert.equal(o.ok, true); const [now, date] = String(o.result).split(","); assert.equal(now, "1700000000000"); assert.equal(date, "1700000000000"); }, ts: { body: cmd("return String(Date.now() + Math.random());"), refusedBy: "determinism" } },
];

test(`escape suite: ${ATTEMPTS.length} attempts, each contained with its own verdict; the host's event loop stays free`, async (t) => {
  assert.ok(ATTEMPTS.length >= 40);
  const verifier = new ProgramVerifier();
  const sandbox = new Sandbox({ wallMarginMs: 300 });
  t.after(() => sandbox.close());
  let last = performance.now();
  let stallMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last - 10);
    last = now;
  }, 10);
  t.after(() => clearInterval(timer));
  const lines: string[] = [];
  const request = (a: Attempt): RunRequest => ({ program: "escape@1.0.0", js: a.js, hook: a.hook ?? "command", arg: ARGS[a.hook ?? "command"], grants: GRANTS, limits: { ...BASE_LIMITS, ...a.limits }, state: STATE });
  // The verifier runs on this thread: measure the stall over the sandbox's runs alone.
  for (const a of ATTEMPTS) {
    if (a.ts === undefined) continue;
    const manifest = { name: "escape", version: "1.0.0", hook: a.hook ?? "command", capabilities: a.ts.capabilities ?? { log: true } };
    const report = verifier.verifySource(`// @pk-program ${JSON.stringify(manifest)}\n${a.ts.body}\n`);
    if (a.ts.refusedBy === "passes") assert.ok(report.ok, `${a.name}: expected the verifier to pass it:\n${formatReport(report)}`);
    else assert.ok(!report.ok && report.rules.find((r) => r.rule === a.ts?.refusedBy)?.verdict === "fail", `${a.name}: expected rule ${a.ts.refusedBy} to refuse it: ${failures(report).join("; ")}`);
  }
  await new Promise((resolve) => setTimeout(resolve, 20));
  last = performance.now();
  stallMs = 0;
  let longestMs = 0;
  for (const a of ATTEMPTS) {
    const outcome = await sandbox.run(request(a));
    longestMs = Math.max(longestMs, outcome.ms);
    try {
      a.check(outcome);
    } catch (error) {
      assert.fail(`${a.name}: ${(error as Error).message}`);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined, `${a.name}: the host's Object.prototype`);
    assert.equal(typeof [].map, "function");
    const stoppedBy = a.ts === undefined ? "sandbox" : a.ts.refusedBy === "passes" ? "sandbox (verified)" : `verifier (${a.ts.refusedBy}) and sandbox`;
    lines.push(`${a.name}: ${outcome.ok ? "ok" : outcome.error?.kind} — ${stoppedBy}`);
  }
  for (const line of lines) t.diagnostic(line);
  t.diagnostic(`largest event-loop stall on the host thread during the suite: ${stallMs.toFixed(1)} ms (goal < 50 ms)`);
  t.diagnostic(`sandbox stats: ${JSON.stringify(sandbox.stats)}`);
  // A run on the host's own thread would stall it for about as long as the run: the longest run
  // took longestMs. A loaded machine's scheduler alone can stall a timer a few hundred ms.
  t.diagnostic(`longest run: ${longestMs.toFixed(0)} ms`);
  assert.ok(stallMs < Math.max(250, longestMs * 0.8), `the host's event loop stalled ${stallMs} ms (the longest run took ${longestMs} ms)`);
  const after = await sandbox.run(request({ name: "after", js: cmd("return 'still here';"), check: () => undefined }));
  assert.equal(after.result, "still here");
});
