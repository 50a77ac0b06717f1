// The subsystem contract: the registry's compile-time check that every message kind has an owner,
// and (test/sim/subsystems.test.ts) the sender rules and single ownership at boot.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import test from "node:test";
import ts from "typescript";
import { SUBSYSTEMS } from "../../src/node/registry.ts";
import type { MessageType } from "../../src/core/wire/messages.ts";

const root = resolve(import.meta.dirname, "../..");

function diagnostics(source: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), "pk-registry-"));
  try {
    const file = join(dir, "fixture.ts");
    writeFileSync(file, source);
    const program = ts.createProgram([file], {
      strict: true, noEmit: true, target: ts.ScriptTarget.ES2024, module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext, allowImportingTsExtensions: true, skipLibCheck: true,
      types: ["node"], typeRoots: [join(root, "node_modules/@types")],
    });
    return ts.getPreEmitDiagnostics(program).filter((d) => d.file?.fileName === file).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("registry: a message kind without an owner is a compile error that names it", () => {
  const registry = JSON.stringify(join(root, "src/node/registry.ts"));
  const body = JSON.stringify(join(root, "src/node/body/subsystems.ts"));
  const missing = diagnostics(`import type { EveryKindOwned } from ${registry};\nimport { MEMBERSHIP, VITALS } from ${body};\nexport const check: EveryKindOwned<readonly [typeof MEMBERSHIP, typeof VITALS]> = true;\n`);
  assert.equal(missing.length, 1, missing.join("\n"));
  assert.match(missing[0]!, /no subsystem owns/);
  assert.match(missing[0]!, /no subsystem owns raft/);
  const whole = diagnostics(`import type { EveryKindOwned } from ${registry};\nimport { SUBSYSTEMS } from ${registry};\nexport const check: EveryKindOwned<typeof SUBSYSTEMS> = true;\n`);
  assert.deepEqual(whole, []);
});

test("registry: every kind has exactly one owner at run time too, and names are unique", () => {
  const owners = new Map<string, string[]>();
  for (const spec of SUBSYSTEMS) for (const kind of Object.keys(spec.kinds)) owners.set(kind, [...(owners.get(kind) ?? []), spec.name]);
  for (const [kind, names] of owners) assert.equal(names.length, 1, `${kind} owned by ${names.join(", ")}`);
  const kinds: MessageType[] = ["ping", "raft", "gossip", "brain", "heal", "vital", "swim-sync", "sfs-chunk", "mesh-data"];
  for (const kind of kinds) assert.ok(owners.has(kind), kind);
  assert.equal(new Set(SUBSYSTEMS.map((s) => s.name)).size, SUBSYSTEMS.length);
});
