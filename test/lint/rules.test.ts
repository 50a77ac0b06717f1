// The boundaries of DESIGN.md §2-§3 that ESLint enforces (eslint.config.js; issue 12): each rule is
// shown to fire on a planted violation, by the rule expected (a rule that never reports would let
// ambient time, I/O, async or an upward import in unnoticed), and the tree is shown to keep them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ESLint } from "eslint";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const eslint = new ESLint({ cwd: root });

const IMPORTS = "no-restricted-imports";
const TS_IMPORTS = "@typescript-eslint/no-restricted-imports";
const SYNTAX = "no-restricted-syntax";
const GLOBALS = "no-restricted-globals";
const BOUNDARY_RULES = new Set([IMPORTS, TS_IMPORTS, SYNTAX, GLOBALS]);

interface Problem { rule: string; message: string }

async function problems(code: string, filePath: string): Promise<Problem[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).map((m) => ({ rule: m.ruleId ?? "?", message: m.message }));
}

function show(found: Problem[]): string {
  return found.length === 0 ? "nothing" : found.map((p) => `${p.rule}: ${p.message}`).join("; ");
}

/** Lints `code` as `filePath` and checks that `rule` reports it (with a message matching `message`). */
async function assertReported(code: string, filePath: string, rule: string, message?: RegExp): Promise<void> {
  const found = await problems(code, filePath);
  const hit = found.some((p) => p.rule === rule && (message === undefined || message.test(p.message)));
  assert.ok(hit, `${filePath}: expected ${rule}${message === undefined ? "" : ` ${message}`}, got ${show(found)}`);
}

/** Lints `code` as `filePath` and checks that no boundary rule reports it. */
async function assertAllowed(code: string, filePath: string): Promise<void> {
  const found = (await problems(code, filePath)).filter((p) => BOUNDARY_RULES.has(p.rule));
  assert.deepEqual(found, [], `${filePath}: expected no boundary problem, got ${show(found)}`);
}

const CORE = "src/core/body/example.ts";
const CORE_TOP = "src/core/example.ts";

// (b) src/core is pure and the bottom layer: no Node built-ins, no imports from the layers above.
const coreImports: Array<[string, string, string]> = [
  ["a node: module", CORE, `import { readFileSync } from "node:fs";\nexport const x = readFileSync;\n`],
  ["a node: module, type only", CORE, `import type { Stats } from "node:fs";\nexport type S = Stats;\n`],
  ["a node: module, re-exported", CORE, `export { readFileSync } from "node:fs";\n`],
  ["a bare built-in (fs)", CORE, `import { readFileSync } from "fs";\nexport const x = readFileSync;\n`],
  ["a bare built-in (fs/promises)", CORE, `import { readFile } from "fs/promises";\nexport const x = readFile;\n`],
  ["a bare built-in (crypto)", CORE, `import { randomBytes } from "crypto";\nexport const x = randomBytes;\n`],
  ["src/adapters (../../)", CORE, `import { openStore } from "../../adapters/store.ts";\nexport const s = openStore;\n`],
  ["src/adapters (../)", CORE_TOP, `import { openStore } from "../adapters/store.ts";\nexport const s = openStore;\n`],
  ["src/adapters, type only", CORE, `import type { Store } from "../../adapters/store.ts";\nexport type S = Store;\n`],
  ["src/node (../../)", CORE, `import { Kernel } from "../../node/kernel.ts";\nexport const k = Kernel;\n`],
  ["src/node (../)", CORE_TOP, `import { Kernel } from "../node/kernel.ts";\nexport const k = Kernel;\n`],
  ["src/node, type only", CORE, `import type { Kernel } from "../../node/kernel.ts";\nexport type K = Kernel;\n`],
  ["src/node, re-exported", CORE, `export * from "../../node/ports.ts";\n`],
  ["src/cli", CORE, `import { main } from "../../cli/main.ts";\nexport const m = main;\n`],
  ["src/sim", CORE, `import { Cluster } from "../../sim/cluster.ts";\nexport const c = Cluster;\n`],
];
for (const [what, file, code] of coreImports) {
  test(`lint: src/core may not import ${what}`, async () => {
    await assertReported(code, file, IMPORTS);
  });
}

// DESIGN.md §2.2: no ambient time, randomness, timers or I/O in src/core.
const coreAmbient: Array<[string, string, string]> = [
  ["Date.now", "export const t = Date.now();\n", SYNTAX],
  ["new Date", "export const t = new Date();\n", SYNTAX],
  ["Math.random", "export const r = Math.random();\n", SYNTAX],
  ["performance.now", "export const t = performance.now();\n", SYNTAX],
  ["crypto.randomUUID", "export const u = crypto.randomUUID();\n", SYNTAX],
  ["crypto.getRandomValues", "export const u = crypto.getRandomValues(new Uint8Array(4));\n", SYNTAX],
  ["setTimeout", "setTimeout(() => undefined, 1);\n", GLOBALS],
  ["setInterval", "setInterval(() => undefined, 1);\n", GLOBALS],
  ["setImmediate", "setImmediate(() => undefined);\n", GLOBALS],
  ["queueMicrotask", "queueMicrotask(() => undefined);\n", GLOBALS],
  ["fetch", `export const f = fetch("http://127.0.0.1/");\n`, GLOBALS],
  ["process", "export const e = process.env;\n", GLOBALS],
];
for (const [what, code, rule] of coreAmbient) {
  test(`lint: src/core may not use ${what}`, async () => {
    await assertReported(code, CORE, rule);
  });
}

// (d) DESIGN.md §2.1: protocol cores are synchronous state machines.
const ASYNC = /no async functions/;
const PROMISE = /no Promise/;
const coreAsync: Array<[string, string, RegExp]> = [
  ["an async function", "export async function f() { return 1; }\n", ASYNC],
  ["an async function expression", "export const f = async function () { return 1; };\n", ASYNC],
  ["an async arrow", "export const f = async () => 1;\n", ASYNC],
  ["an async method", "export class C { async m() { return 1; } }\n", ASYNC],
  ["an async private method", "export class C { async #m() { return 1; }\n  n(): unknown { return this.#m; } }\n", ASYNC],
  ["an async object method", "export const o = { async m() { return 1; } };\n", ASYNC],
  ["an async generator", "export async function* g() { yield 1; }\n", ASYNC],
  ["await", "declare const p: number;\nexport const v = await p;\n", /no await/],
  ["for await", "declare const xs: number[];\nfor await (const x of xs) console.log(x);\n", /no for await/],
  ["new Promise", "export const p = new Promise<void>((resolve) => resolve());\n", PROMISE],
  ["Promise.resolve", "export const p = Promise.resolve(1);\n", PROMISE],
  ["Promise.all", "export const p = Promise.all([]);\n", PROMISE],
  ["Promise.withResolvers", "export const p = Promise.withResolvers<void>();\n", PROMISE],
  ["a Promise return type", "export type Call = (x: number) => Promise<number>;\n", PROMISE],
  ["a Promise field type", "export interface Session { tail: Promise<void> }\n", PROMISE],
  ["a PromiseLike type", "export type Call = (x: number) => PromiseLike<number>;\n", PROMISE],
  ["a dynamic import()", `export const m = import("./swim.ts");\n`, /no dynamic import/],
];
for (const [what, code, message] of coreAsync) {
  test(`lint: src/core may not use ${what}`, async () => {
    await assertReported(code, CORE, SYNTAX, message);
  });
}

test("lint: src/core may import core modules, its npm dependencies, and sync code passes", async () => {
  await assertAllowed([
    `import { assert } from "../util/assert.ts";`,
    `import { LIMITS } from "../util/limits.ts";`,
    `import { simd } from "../brain/simd.ts";`,
    `import { Type } from "@sinclair/typebox";`,
    `import type { Vec } from "../brain/tensor.ts";`,
    "export function* ids(): Generator<number> { yield 1; }",
    "export const promised = 1;",
    "export class Machine { step(): void { assert(true); } tick(): number { return LIMITS ? 1 : 0; } }",
    "export const all = [simd, Type];",
    "export type V = Vec;",
    "",
  ].join("\n"), CORE);
});

// (c) DESIGN.md §3: adapters never import the node; they see it through the interfaces of
// src/node/ports.ts, of which they import only types.
const ADAPTER = "src/adapters/example.ts";
const adapterImports: Array<[string, string, RegExp]> = [
  ["src/node", `import { Kernel } from "../node/kernel.ts";\nexport const k = Kernel;\n`, /never import/],
  ["src/node, type only", `import type { Kernel } from "../node/kernel.ts";\nexport type K = Kernel;\n`, /never import/],
  ["src/node, a subsystem", `import type { InferOutcome } from "../node/brain/service.ts";\nexport type I = InferOutcome;\n`, /never import/],
  ["src/node, re-exported", `export { Kernel } from "../node/kernel.ts";\n`, /never import/],
  ["a value from src/node/ports.ts", `import { Something } from "../node/ports.ts";\nexport const s = Something;\n`, /only types/],
  ["src/cli", `import { main } from "../cli/main.ts";\nexport const m = main;\n`, /never import/],
  ["src/sim", `import { Cluster } from "../sim/cluster.ts";\nexport const c = Cluster;\n`, /never import/],
];
for (const [what, code, message] of adapterImports) {
  test(`lint: src/adapters may not import ${what}`, async () => {
    await assertReported(code, ADAPTER, TS_IMPORTS, message);
  });
}

test("lint: src/adapters may not import src/node by import() either", async () => {
  await assertReported(`export const k = import("../node/kernel.ts");\n`, ADAPTER, SYNTAX, /never import/);
});

test("lint: src/adapters may import types from src/node/ports.ts, core, node: modules, and do I/O", async () => {
  await assertAllowed([
    `import type { Store, StoreWrite } from "../node/ports.ts";`,
    `import { LIMITS } from "../core/util/limits.ts";`,
    `import { readFileSync } from "node:fs";`,
    "export type S = Store | StoreWrite;",
    "export const x = [readFileSync, LIMITS];",
    "export const t = Date.now();",
    "export async function later(): Promise<void> { await new Promise((r) => setTimeout(r, 1)); }",
    "",
  ].join("\n"), ADAPTER);
});

test("lint: the node may import adapters and be async", async () => {
  await assertAllowed([
    `import { openStore } from "../adapters/store.ts";`,
    "export const s = openStore;",
    "export async function boot(): Promise<void> { await Promise.resolve(); }",
    "",
  ].join("\n"), "src/node/example.ts");
});

test("lint: src/core and src/adapters keep their boundaries", async () => {
  const results = await eslint.lintFiles(["src/core/**/*.ts", "src/adapters/**/*.ts"]);
  assert.ok(results.length > 10, `linted only ${results.length} files`);
  const found = results.flatMap((r) => r.messages
    .filter((m) => BOUNDARY_RULES.has(m.ruleId ?? ""))
    .map((m) => `${r.filePath.slice(root.length)}:${m.line}: ${m.ruleId}: ${m.message}`));
  assert.deepEqual(found, []);
});
