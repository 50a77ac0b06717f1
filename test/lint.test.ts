// The purity rules of DESIGN.md §2 are enforced by ESLint for src/core: this checks that they fire
// (a rule that never reports would let ambient time or I/O into a core unnoticed).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ESLint } from "eslint";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const eslint = new ESLint({ cwd: root });

async function problems(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).map((m) => `${m.ruleId ?? "?"}: ${m.message}`);
}

const forbidden: Array<[string, string]> = [
  ["node import", `import { readFileSync } from "node:fs";\nexport const x = readFileSync;\n`],
  ["Date.now", "export const t = Date.now();\n"],
  ["new Date", "export const t = new Date();\n"],
  ["Math.random", "export const r = Math.random();\n"],
  ["performance.now", "export const t = performance.now();\n"],
  ["setTimeout", "setTimeout(() => undefined, 1);\n"],
  ["setInterval", "setInterval(() => undefined, 1);\n"],
  ["crypto.randomUUID", "export const u = crypto.randomUUID();\n"],
  ["crypto.getRandomValues", "export const u = crypto.getRandomValues(new Uint8Array(4));\n"],
  ["adapter import", `import { openStore } from "../../adapters/store.ts";\nexport const s = openStore;\n`],
  ["node layer import", `import { Kernel } from "../../node/kernel.ts";\nexport const k = Kernel;\n`],
  ["cli import", `import { main } from "../../cli/main.ts";\nexport const m = main;\n`],
];

for (const [what, code] of forbidden) {
  test(`lint: src/core may not use ${what}`, async () => {
    const found = await problems(code, "src/core/body/example.ts");
    assert.ok(found.length > 0, `no problem reported for ${what}`);
  });
}

test("lint: the same code is allowed outside src/core (adapters may do I/O)", async () => {
  const found = await problems(`import { readFileSync } from "node:fs";\nexport const x = readFileSync;\nexport const t = Date.now();\n`, "src/adapters/example.ts");
  assert.deepEqual(found, []);
});
