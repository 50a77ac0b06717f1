// No import cycle anywhere under src/ (issue 12; ADR 010): dependency-cruiser, with the rules of
// .dependency-cruiser.mjs that `npm run lint` runs, reports a cycle planted in a fixture folder
// (runtime, type-only, through a re-export, through import(); two files or three), passes an
// acyclic one, and finds no cycle in src/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { cruise, type ICruiseOptions, type ICruiseResult } from "dependency-cruiser";
import extractDepcruiseOptions from "dependency-cruiser/config-utl/extract-depcruise-options";

const root = fileURLToPath(new URL("../..", import.meta.url));
const options: ICruiseOptions = await extractDepcruiseOptions(join(root, ".dependency-cruiser.mjs"));

/** The cycles found under `baseDir`/src, each as its files joined by " -> ". */
async function cycles(baseDir: string): Promise<string[]> {
  const { output } = await cruise(["src"], { ...options, baseDir });
  assert.equal(typeof output, "object");
  const result = output as ICruiseResult;
  assert.ok(result.summary.totalCruised > 0, "nothing cruised");
  return result.summary.violations
    .filter((v) => v.rule.severity === "error")
    .map((v) => [v.from, ...(v.cycle ?? []).map((c) => c.name)].join(" -> "));
}

/** Writes `files` (path under src/ -> code) into a fresh folder, runs `check` on it, removes it. */
async function withFixture(files: Record<string, string>, check: (baseDir: string) => Promise<void>): Promise<void> {
  const baseDir = mkdtempSync(join(tmpdir(), "pk-cycles-"));
  try {
    for (const [path, code] of Object.entries(files)) {
      const file = join(baseDir, "src", path);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, code);
    }
    await check(baseDir);
  } finally {
    rmSync(baseDir, { recursive: true, force: true });
  }
}

const planted: Array<[string, Record<string, string>, string[]]> = [
  ["two files importing each other", {
    "core/a.ts": `import { b } from "./b.ts";\nexport const a = (): number => b();\n`,
    "core/b.ts": `import { a } from "./a.ts";\nexport const b = (): number => a();\n`,
  }, ["src/core/a.ts", "src/core/b.ts"]],
  ["a type-only cycle", {
    "node/kernel.ts": `import type { Part } from "./part.ts";\nexport interface Kernel { parts: Part[] }\n`,
    "node/part.ts": `import type { Kernel } from "./kernel.ts";\nexport interface Part { kernel: Kernel }\n`,
  }, ["src/node/kernel.ts", "src/node/part.ts"]],
  ["a cycle of three files across folders", {
    "node/run.ts": `import { serve } from "../adapters/http.ts";\nexport const run = (): void => serve();\n`,
    "adapters/http.ts": `import { view } from "../node/body/view.ts";\nexport const serve = (): void => view();\n`,
    "node/body/view.ts": `import { run } from "../run.ts";\nexport const view = (): void => run();\n`,
  }, ["src/node/run.ts", "src/adapters/http.ts", "src/node/body/view.ts"]],
  ["a cycle through a re-export", {
    "core/index.ts": `export { b } from "./b.ts";\nexport const a = 1;\n`,
    "core/b.ts": `import { a } from "./index.ts";\nexport const b = a + 1;\n`,
  }, ["src/core/index.ts", "src/core/b.ts"]],
  ["a cycle through a dynamic import()", {
    "sim/cli.ts": `export const x = 1;\nexport async function run(): Promise<number> { return (await import("./scale.ts")).y; }\n`,
    "sim/scale.ts": `import { x } from "./cli.ts";\nexport const y = x + 1;\n`,
  }, ["src/sim/cli.ts", "src/sim/scale.ts"]],
];

for (const [what, files, involved] of planted) {
  test(`cycles: ${what} is reported`, async () => {
    await withFixture(files, async (baseDir) => {
      const found = await cycles(baseDir);
      assert.ok(found.length > 0, "no cycle reported");
      for (const file of involved) {
        assert.ok(found.some((c) => c.includes(file)), `${file} is in no reported cycle: ${found.join("; ")}`);
      }
    });
  });
}

test("cycles: an acyclic graph (a diamond, type imports, node: modules) passes", async () => {
  await withFixture({
    "core/util/limits.ts": `export const LIMITS = { n: 1 };\n`,
    "core/left.ts": `import { LIMITS } from "./util/limits.ts";\nexport const left = LIMITS.n;\n`,
    "core/right.ts": `import type { LIMITS } from "./util/limits.ts";\nexport type Right = typeof LIMITS;\n`,
    "node/kernel.ts": `import { readFileSync } from "node:fs";\nimport { left } from "../core/left.ts";\nimport type { Right } from "../core/right.ts";\nexport const k: Right | number = left;\nexport const r = readFileSync;\n`,
  }, async (baseDir) => {
    assert.deepEqual(await cycles(baseDir), []);
  });
});

test("cycles: src/ has no import cycle", async () => {
  assert.deepEqual(await cycles(root), []);
});
