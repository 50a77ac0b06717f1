// The verifier (src/adapters/verify-ts.ts): a good program of each hook passes and its JavaScript
// is emitted (the prefilter's is run, against a stand-in capability module, and prints the seed's
// line); each rule has a program that breaks it and is refused with that rule named and the place;
// loops and recursion are warnings, not refusals; every report names every rule; size and nesting
// bombs are refused before the compiler can overflow or crawl; one checker verifies 50 programs in a
// row and nothing a program declares leaks into the next. Cold and warm times are printed, not asserted.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fc from "fast-check";
import { ProgramVerifier } from "../../src/adapters/verify-ts.ts";
import { RULE_NAMES, failures, formatReport, type RuleName, type VerifyReport } from "../../src/core/evolve/verdict.ts";
import { LIMITS } from "../../src/core/util/limits.ts";

const verifier = new ProgramVerifier();

function source(hook: string, body: string, capabilities: Record<string, unknown> = { log: true }): string {
  return `// @pk-program ${JSON.stringify({ name: "p", version: "1.0.0", hook, capabilities })}\n${body}`;
}

const PREFILTER = source("sensor.prefilter", `import { log, type Reading } from "pk:program";

/** Drops readings more than three standard deviations from their sensor's mean. */
export function prefilter(readings: readonly Reading[]): readonly Reading[] {
  const bySensor = new Map<string, number[]>();
  for (const r of readings) bySensor.set(r.sensor, [...(bySensor.get(r.sensor) ?? []), r.value]);
  const stats = new Map<string, { mean: number; std: number }>();
  for (const [sensor, values] of bySensor) {
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
    stats.set(sensor, { mean, std });
  }
  const kept = readings.filter((r) => {
    const s = stats.get(r.sensor);
    return s === undefined || s.std === 0 || Math.abs(r.value - s.mean) <= 2 * s.std;
  });
  const t = stats.get("temperature");
  log.info(\`prefilter: dropped \${readings.length - kept.length}/\${readings.length} outliers (mean=\${(t?.mean ?? 0).toFixed(1)}, std=\${(t?.std ?? 0).toFixed(1)})\`);
  return kept;
}
`);

function verdicts(report: VerifyReport): Map<RuleName, string> {
  return new Map(report.rules.map((r) => [r.rule, r.verdict]));
}

function refusedBy(report: VerifyReport, rule: RuleName, message?: RegExp): void {
  const result = report.rules.find((r) => r.rule === rule);
  assert.ok(result !== undefined);
  assert.equal(result.verdict, "fail", `expected ${rule} to fail:\n${formatReport(report)}`);
  assert.equal(report.ok, false);
  assert.equal(report.js, undefined);
  assert.ok(result.findings.length > 0);
  if (message !== undefined) assert.ok(result.findings.some((f) => message.test(f.message)), `${rule}: no finding matches ${String(message)}:\n${formatReport(report)}`);
}

test("verify: a good prefilter passes every rule and its JavaScript runs, printing the seed's line", async (t) => {
  const report = verifier.verifySource(PREFILTER);
  assert.ok(report.ok, formatReport(report));
  assert.deepEqual(report.rules.map((r) => r.rule), RULE_NAMES, "every rule, in order");
  assert.ok(report.rules.every((r) => r.verdict === "pass"), formatReport(report));
  assert.deepEqual(report.program, { name: "p", version: "1.0.0", hook: "sensor.prefilter" });
  const js = report.js ?? "";
  assert.match(js, /^import \{ log \} from "pk:program";/);
  assert.match(js, /export function prefilter\(readings\) \{/);
  assert.doesNotMatch(js, /Reading|readonly|: number|@pk-program/, "types and comments are gone");

  // Run the emitted module with a stand-in capability module (the sandbox is the next step).
  const lines: string[] = [];
  (globalThis as Record<string, unknown>).__verifyTestLog = lines;
  const capability = `data:text/javascript,${encodeURIComponent("export const log = { info: (m) => globalThis.__verifyTestLog.push(m), warn() {}, error() {} };")}`;
  const mod = await import(`data:text/javascript,${encodeURIComponent(js.replace("\"pk:program\"", JSON.stringify(capability)))}`) as { prefilter(r: unknown[]): unknown[] };
  const readings = [...Array.from({ length: 97 }, (_, i) => ({ sensor: "temperature", value: 24.7 + ((i % 5) - 2) * 0.6, at: i })),
    { sensor: "temperature", value: 90, at: 97 }, { sensor: "temperature", value: -40, at: 98 }, { sensor: "temperature", value: 75, at: 99 }];
  const kept = mod.prefilter(readings);
  assert.equal(kept.length, 97);
  assert.match(lines[0] ?? "", /^prefilter: dropped 3\/100 outliers \(mean=\d+\.\d, std=\d+\.\d\)$/);
  t.diagnostic(lines[0] ?? "");
  delete (globalThis as Record<string, unknown>).__verifyTestLog;
});

test("verify: a good program of every hook passes (task, command, probe, topic:NAME)", () => {
  const programs = [
    source("task", `import { kv, clock, sensors, topics } from "pk:program";
export function task(): void {
  const latest = sensors.latest().find((r) => r.sensor === "temperature");
  if (latest === undefined) return;
  const runs = Number(kv.get("runs") ?? "0") + 1;
  kv.set("runs", String(runs));
  topics.publish("p.temp", String(clock.now()), JSON.stringify({ value: latest.value, runs }));
}`, { kv: true, clock: true, sensors: true, topics: { publish: ["p.temp"] } }),
    source("command", `import { files, random } from "pk:program";
export function command(args: readonly string[]): string {
  const name = args[0] ?? "notes.txt";
  const text = files.read(name) ?? "";
  return text.length > 0 ? text : \`empty; a random draw: \${random.int(6) + 1}\`;
}`, { files: true, random: true }),
    source("probe", `import type { ProbeResult } from "pk:program";
class Window {
  #values: number[] = [];
  constructor(readonly size: number) {}
  push(v: number): void { this.#values = [...this.#values, v].slice(-this.size); }
  get mean(): number { return this.#values.reduce((a, b) => a + b, 0) / Math.max(1, this.#values.length); }
}
export function probe(): ProbeResult {
  const w = new Window(3);
  for (const v of [1, 2, 3, 4]) w.push(v);
  return { ok: w.mean === 3, detail: \`mean \${w.mean}\` };
}`, {}),
    source("topic:self.report", `import { log, type TopicRow } from "pk:program";
export const onTopic = (row: TopicRow): void => { log.info(\`\${row.key} from \${row.origin}\`); };`),
  ];
  for (const program of programs) {
    const report = verifier.verifySource(program);
    assert.ok(report.ok, formatReport(report));
    assert.ok(report.js !== undefined && report.js.length > 0);
  }
});

/** A hook body that breaks one rule, the rule, and what the finding must say. */
const VIOLATIONS: [string, string, RuleName, RegExp][] = [
  ["eval", "eval(\"1 + 1\");", "dynamic-code", /eval/],
  ["Function called", "Function(\"return 1\")();", "dynamic-code", /Function/],
  ["new Function", "new Function(\"a\", \"return a\");", "dynamic-code", /Function/],
  ["unicode-escaped eval", "\\u0065val(\"1\");", "dynamic-code", /eval/],
  ["constructor escape", "(() => {}).constructor(\"return this\")();", "prototype", /constructor/],
  ["constructor by literal key", "const f = () => 1; f[\"constructor\"];", "prototype", /constructor/],
  ["constructor destructured", "const { constructor: c } = () => 1; void c;", "prototype", /constructor/],
  ["constructor by template key", "const f = () => 1; f[`constructor`];", "prototype", /constructor/],
  ["__proto__", "const o = { a: 1 }; const p = o.__proto__; void p;", "prototype", /__proto__/],
  ["__proto__ in a literal", "const o = { __proto__: null }; void o;", "prototype", /__proto__/],
  ["prototype", "const p = Array.prototype; void p;", "prototype", /prototype/],
  ["computed key of type string", "const o: Record<string, number> = {}; const k = \"con\" + \"structor\"; void o[k];", "computed-keys", /computed key of type string/],
  ["globalThis", "const g = globalThis; void g;", "globals", /globalThis/],
  ["globalThis in a shorthand property", "const o = { globalThis }; void o;", "globals", /globalThis/],
  ["eval in a shorthand property", "const o = { eval }; void o;", "dynamic-code", /eval/],
  ["process", "process.exit(1);", "globals", /process/],
  ["console", "console.log(1);", "globals", /use log/],
  ["setTimeout", "setTimeout(() => 1, 10);", "globals", /no timers/],
  ["require", "const fs = require(\"fs\"); void fs;", "imports", /require/],
  ["dynamic import", "void import(\"node:fs\");", "imports", /dynamic import/],
  ["import.meta", "void import.meta.url;", "imports", /import\.meta/],
  ["Reflect", "Reflect.ownKeys({});", "reflection", /Reflect/],
  ["Proxy", "new Proxy({}, {});", "reflection", /Proxy/],
  ["Object.defineProperty", "Object.defineProperty({}, \"a\", { value: 1 });", "reflection", /Object\.defineProperty/],
  ["Object.getPrototypeOf", "Object.getPrototypeOf([]);", "reflection", /getPrototypeOf/],
  ["Object as a value", "const O = Object; void O;", "reflection", /Object as a value/],
  ["WebAssembly", "const w = WebAssembly; void w;", "webassembly", /WebAssembly/],
  ["SharedArrayBuffer", "new SharedArrayBuffer(8);", "shared-memory", /SharedArrayBuffer/],
  ["Atomics", "Atomics.wait(new Int32Array(4), 0, 0);", "shared-memory", /Atomics/],
  ["Date.now", "Date.now();", "determinism", /clock/],
  ["new Date()", "new Date().getTime();", "determinism", /new Date\(\)/],
  ["Math.random", "Math.random();", "determinism", /random/],
  ["Math destructured", "const { random } = Math; random();", "determinism", /Math as a value/],
  ["Intl", "new Intl.NumberFormat().format(1);", "determinism", /Intl/],
  ["async", "const f = async () => 1; void f;", "async", /async function/],
  ["Promise", "Promise.resolve(1);", "async", /Promise/],
  ["as any", "const x = 1 as any; void x;", "casts", /type assertion/],
  ["angle cast", "const x = <string><unknown>1; void x;", "casts", /type assertion/],
  ["an infinite loop", "while (true) { }", "loops", /never ends/],
  ["for(;;) without exit", "let i = 0; for (;;) { i++; }", "loops", /never ends/],
  ["a loop caught in its own try", "while (1) { try { throw new Error(\"x\"); } catch { } }", "loops", /never ends/],
  ["a break to a label inside", "while (true) { inner: { break inner; } }", "loops", /never ends/],
  ["with", "const o = { a: 1 }; with (o) { a; }", "with", /with/],
  ["@ts-ignore", "// @ts-ignore\nconst n: number = \"x\"; void n;", "ambient", /@ts-ignore/],
];

test("verify: each rule has a program that breaks it, refused with the rule named and its place", () => {
  for (const [name, body, rule, message] of VIOLATIONS) {
    const program = source("task", `export function task(): void {\n  ${body}\n}\n`);
    const report = verifier.verifySource(program);
    refusedBy(report, rule, message);
    const finding = report.rules.find((r) => r.rule === rule)?.findings[0];
    assert.ok(finding !== undefined && finding.line >= 2 && finding.col >= 1, `${name}: a place in the source`);
  }
});

test("verify: module-level violations — imports, grants, ambient declarations, type-level computation", () => {
  const cases: [string, string, Record<string, unknown>, RuleName, RegExp][] = [
    ["import of node:fs", "import { readFileSync } from \"node:fs\";\nexport function task(): void { readFileSync(\"/etc/passwd\"); }", {}, "imports", /"node:fs": only "pk:program"/],
    ["a relative import", "import x from \"./other\";\nexport function task(): void { void x; }", {}, "imports", /"\.\/other"/],
    ["import * as", "import * as pk from \"pk:program\";\nexport function task(): void { pk.log.info(\"x\"); }", { log: true }, "imports", /import \* as pk/],
    ["export from", "export { log } from \"pk:program\";\nexport function task(): void {}", { log: true }, "imports", /re-exports nothing/],
    ["import = require", "import fs = require(\"fs\");\nexport function task(): void { void fs; }", {}, "imports", /import =/],
    ["a capability not granted", "import { kv } from \"pk:program\";\nexport function task(): void { kv.set(\"a\", \"b\"); }", { log: true }, "grants", /kv is not granted/],
    ["topics with no pattern", "import { topics } from \"pk:program\";\nexport function task(): void { topics.read(\"mem\"); }", { topics: { read: [] } }, "grants", /topics is not granted/],
    ["declare global", "declare global { var leaked: number }\nexport function task(): void {}", {}, "ambient", /declare/],
    ["a namespace", "namespace N { export const a = 1; }\nexport function task(): void { void N.a; }", {}, "ambient", /namespace/],
    ["a reference directive", "/// <reference lib=\"dom\" />\nexport function task(): void {}", {}, "ambient", /reference/],
    ["@ts-nocheck", "// @ts-nocheck\nexport function task(): void { const n: number = \"x\"; }", {}, "ambient", /@ts-nocheck/],
    ["a conditional type", "type T<N> = N extends 1 ? 2 : 3;\nexport function task(): void { const t: T<1> = 2; void t; }", {}, "type-complexity", /conditional type/],
    ["a mapped type", "type M = { [K in \"a\" | \"b\"]: K };\nexport function task(): void { const m: M = { a: \"a\", b: \"b\" }; void m; }", {}, "type-complexity", /mapped type/],
    ["a template literal type", "type A = `x${string}`;\nexport function task(): void { const a: A = \"xy\"; void a; }", {}, "type-complexity", /template literal type/],
  ];
  for (const [name, body, capabilities, rule, message] of cases) {
    const report = verifier.verifySource(source("task", body, capabilities));
    refusedBy(report, rule, message);
    assert.ok(report.rules.length === RULE_NAMES.length, name);
  }
  // Type-level computation is not handed to the checker at all.
  const bomb = verifier.verifySource(source("task", "type T<N extends unknown[]> = N[\"length\"] extends 999 ? N : T<[...N, 0]>;\nexport type Z = T<[]>;\nexport function task(): void {}"));
  assert.equal(verdicts(bomb).get("types"), "skip");
  assert.equal(verdicts(bomb).get("hook"), "skip");
});

test("verify: type errors, a wrong hook signature and a missing export are refused by types and hook", () => {
  refusedBy(verifier.verifySource(source("task", "export function task(): void { const n: number = \"seven\"; void n; }")), "types", /not assignable to type 'number'/);
  refusedBy(verifier.verifySource(source("task", "import { log } from \"pk:program\";\nexport function task(): void { log.debug(\"x\"); }")), "types", /debug/);
  refusedBy(verifier.verifySource(source("task", "import { network } from \"pk:program\";\nexport function task(): void { void network; }")), "types", /no exported member 'network'/);
  const wrong = verifier.verifySource(source("sensor.prefilter", "export function prefilter(readings: number[]): number { return readings.length; }"));
  refusedBy(wrong, "hook", /prefilter does not fit the hook sensor.prefilter/);
  assert.equal(wrong.rules.find((r) => r.rule === "hook")?.findings[0]?.line, 2, "the hook finding points at the export");
  refusedBy(verifier.verifySource(source("command", "export function command(args: readonly string[]): number { return args.length; }")), "hook", /command does not fit/);
  refusedBy(verifier.verifySource(source("probe", "export function probe(): boolean { return true; }")), "hook", /probe does not fit/);
  refusedBy(verifier.verifySource(source("sensor.prefilter", "export function filter(): void {}")), "hook", /must export its hook's function: export function prefilter/);
  refusedBy(verifier.verifySource(source("task", "function task(): void {}")), "hook", /must export/);
  refusedBy(verifier.verifySource(source("topic:mem", "export function task(): void {}")), "hook", /export function onTopic/);
  refusedBy(verifier.verifySource(source("task", "export function task(: void {")), "syntax");
});

test("verify: loops, recursion and risky regular expressions are warnings; the program still passes", () => {
  const report = verifier.verifySource(source("command", `export function command(args: readonly string[]): string {
  let i = 0;
  while (i < args.length) i++;
  for (;;) { if (i > 3) break; i++; }
  do { i--; } while (i > 0);
  for (const a of args) i += a.length;
  const fib = (n: number): number => (n < 2 ? n : fib(n - 1) + fib(n - 2));
  const ok = /^(a+)+$/.test(args[0] ?? "") || new RegExp(args[1] ?? "x").test("y");
  return \`\${i} \${fib(10)} \${ok}\`;
}`, {}));
  assert.ok(report.ok, formatReport(report));
  const v = verdicts(report);
  assert.equal(v.get("loops"), "warn");
  assert.equal(v.get("recursion"), "warn");
  assert.equal(v.get("regex"), "warn");
  const loops = report.rules.find((r) => r.rule === "loops");
  assert.equal(loops?.count, 3, "while, for(;;) with a break, do...while; for...of is bounded by its array");
  assert.ok(loops?.findings.every((f) => /bounded by gas/.test(f.message)));
  assert.ok(report.js !== undefined);
  // A local that shadows a global name is the program's own.
  assert.ok(verifier.verifySource(source("task", "export function task(): void { const self = { name: \"me\" }; const process = (n: number) => n; void self.name; void process(1); }", {})).ok);
});

test("verify: a manifest problem fails the manifest rule, and the code is still checked", () => {
  const report = verifier.verifySource("export function task(): void { eval(\"1\"); }\n");
  refusedBy(report, "manifest", /no manifest/);
  refusedBy(report, "dynamic-code", /eval/);
  assert.equal(verdicts(report).get("hook"), "skip");
  assert.equal(report.program, undefined);
  const bad = verifier.verifySource("// @pk-program {\"name\":\"p\",\"version\":\"1\",\"hook\":\"task\"}\nexport function task(): void {}\n");
  refusedBy(bad, "manifest", /version must be/);
  assert.match(failures(bad)[0] ?? "", /^manifest 0:0 version must be/);
});

test("verify: too large — source bytes, syntax-tree nodes, depth, and nesting that would overflow the parser", () => {
  const big = verifier.verifySource(source("task", `export function task(): void {}\n${"// padding\n".repeat(6_000)}`));
  refusedBy(big, "size", /bytes, over 65536/);
  assert.ok(big.rules.filter((r) => r.rule !== "size" && r.rule !== "manifest").every((r) => r.verdict === "skip"));
  refusedBy(verifier.verifySource(source("task", `export function task(): void {}\nexport const a = [${"1,".repeat(LIMITS.evolve.verify.astNodesMax)}];\n`)), "size", /over 20000 nodes/);
  // A left-deep chain: the checker's time grows with the square of its depth, so depth is bounded.
  refusedBy(verifier.verifySource(source("task", `export function task(): void {}\nexport const x = ${"1+".repeat(5_000)}1;\n`)), "size", /over 200 levels deep/);
  for (const deep of ["(".repeat(8_000) + "1" + ")".repeat(8_000), "!".repeat(30_000) + "1", "[".repeat(8_000) + "]".repeat(8_000)]) {
    const report = verifier.verifySource(source("task", `export function task(): void {}\nexport const x = ${deep};\n`));
    refusedBy(report, "size");
  }
  // The checker is unharmed: the next program passes.
  assert.ok(verifier.verifySource(PREFILTER).ok);
});

test("verify: one checker, 50 programs in a row; nothing a program declares reaches the next", (t) => {
  const fresh = new ProgramVerifier();
  const coldStart = performance.now();
  assert.ok(fresh.verifySource(PREFILTER).ok);
  const coldMs = performance.now() - coldStart;
  const kinds = [
    // A program that declares a global, augments Array and exports a secret (refused: ambient).
    () => source("task", "declare global { var leaked: number; interface Array<T> { evil(): T } }\nexport const secret = 42;\nexport function task(): void {}"),
    // A script (no module): its top-level names would be global if it shared a program with the next.
    () => source("task", "var scriptVar = 1;\nfunction task(): void { scriptVar++; }"),
    // The next program reaches for all of them: each is an error now.
    () => source("task", "export function task(): void { void leaked; void secret; void scriptVar; [1].evil(); }"),
    () => PREFILTER,
    () => source("task", "export function task(): void { eval(\"1\"); }"),
  ];
  const times: number[] = [];
  for (let i = 0; i < 50; i++) {
    const kind = i % kinds.length;
    const started = performance.now();
    const report = fresh.verifySource((kinds[kind] as () => string)());
    times.push(performance.now() - started);
    switch (kind) {
      case 0: refusedBy(report, "ambient"); assert.equal(verdicts(report).get("types"), "pass", "its own declarations type-check"); break;
      case 1: refusedBy(report, "hook", /must export/); break;
      case 2: {
        refusedBy(report, "types");
        const messages = report.rules.find((r) => r.rule === "types")?.findings.map((f) => f.message).join("\n") ?? "";
        for (const name of ["leaked", "secret", "scriptVar"]) assert.match(messages, new RegExp(`Cannot find name '${name}'`), `program ${i}: ${name} leaked`);
        assert.match(messages, /Property 'evil' does not exist/, `program ${i}: the Array augmentation leaked`);
        break;
      }
      case 3: assert.ok(report.ok, formatReport(report)); assert.ok(report.js !== undefined); break;
      default: refusedBy(report, "dynamic-code");
    }
  }
  assert.equal(fresh.stats.warmups, 1, "the library was read once");
  assert.equal(fresh.stats.programs, 51);
  const sorted = [...times].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  t.diagnostic(`cold (library ${fresh.stats.libFiles} files read in ${fresh.stats.loadMs.toFixed(0)} ms, then the first check): ${coldMs.toFixed(0)} ms; warm: median ${median.toFixed(1)} ms, p90 ${(sorted[Math.floor(sorted.length * 0.9)] ?? 0).toFixed(1)} ms, max ${(sorted[sorted.length - 1] ?? 0).toFixed(1)} ms over 50 programs`);
});

test("verify: cold in a fresh process — loading the compiler, reading the library, the first check (printed, not asserted)", (t) => {
  const script = `
    const started = performance.now();
    const { ProgramVerifier } = await import(${JSON.stringify(new URL("../../src/adapters/verify-ts.ts", import.meta.url).href)});
    const imported = performance.now();
    const verifier = new ProgramVerifier();
    const report = verifier.verifySource(${JSON.stringify(PREFILTER)});
    const first = performance.now();
    const warm = [];
    for (let i = 0; i < 20; i++) { const s = performance.now(); verifier.verifySource(${JSON.stringify(PREFILTER)}); warm.push(performance.now() - s); }
    warm.sort((a, b) => a - b);
    console.log(JSON.stringify({ ok: report.ok, importMs: imported - started, firstMs: first - imported, libraryMs: verifier.stats.loadMs, warmMedianMs: warm[10] }));`;
  const out = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" })) as Record<string, number | boolean>;
  assert.equal(out.ok, true);
  const ms = (key: string): string => (out[key] as number).toFixed(0);
  t.diagnostic(`fresh process: import typescript + verifier ${ms("importMs")} ms; first check ${ms("firstMs")} ms (of which reading and parsing the library ${ms("libraryMs")} ms); then warm median ${(out.warmMedianMs as number).toFixed(1)} ms`);
});

/** Program-shaped noise: TypeScript fragments, forbidden names and brackets in any order. */
const fragment = fc.oneof(
  fc.constantFrom("export function task(): void {", "}", "{", "(", ")", "[", "]", ";", "\n", " ", "=>", "const x =", "let", "while (true)", "for (;;)", "if (x)", "break;", "return;",
    "eval", "Function", "constructor", "__proto__", "globalThis", "process", "import", "require(", "import(\"fs\")", "\"pk:program\"", "import { log } from \"pk:program\";",
    "as any", "<T>", "type T<N> = N extends 1 ? 2 : 3;", "declare", "namespace", "with", "async", "await", "Math.random()", "Date.now()", "new Date()", "[\"constructor\"]",
    "`${", "`", "/(a+)+/", "//", "/*", "*/", "\"", "'", "x", "1", "+", ".", "?.", "!", "...", "@", "#", "\\u0065val"),
  fc.string({ maxLength: 12 }),
);

test("verify: fuzz — program-shaped noise never throws and always gets a full report", () => {
  fc.assert(fc.property(fc.array(fragment, { maxLength: 80 }), fc.boolean(), (parts, header) => {
    const text = (header ? "// @pk-program {\"name\":\"f\",\"version\":\"1.0.0\",\"hook\":\"task\",\"capabilities\":{\"log\":true}}\n" : "") + parts.join(" ");
    const report = verifier.verifySource(text);
    assert.deepEqual(report.rules.map((r) => r.rule), RULE_NAMES);
    assert.equal(report.ok, report.rules.every((r) => r.verdict !== "fail"));
    assert.equal(report.js !== undefined, report.ok);
    for (const rule of report.rules) for (const f of rule.findings) assert.ok(f.message.length <= LIMITS.evolve.verify.findingCharsMax);
  }), { numRuns: 300 });
});
