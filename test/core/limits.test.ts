// LIMITS is the one place to read every bound (DESIGN.md §2 rule 4): each value is a positive whole
// number, and no numeric *_MAX / *Max constant hides elsewhere in src/core. The scan is shown to
// fire on planted constants, so a check that never reports would not pass unnoticed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { LIMITS } from "../../src/core/util/limits.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const core = join(root, "src/core");

/** Every leaf of LIMITS with its dotted path. */
function leaves(value: unknown, path: string): [string, unknown][] {
  if (typeof value !== "object" || value === null) return [[path, value]];
  return Object.entries(value).flatMap(([key, inner]) => leaves(inner, path === "" ? key : `${path}.${key}`));
}

test("limits: every bound is a positive whole number (all of them count bytes, items, ticks or values)", () => {
  const all = leaves(LIMITS, "");
  assert.ok(all.length > 100, `only ${all.length} bounds found: is LIMITS still walked?`);
  for (const [path, value] of all) {
    assert.equal(typeof value, "number", `LIMITS.${path} is not a number`);
    assert.ok(Number.isSafeInteger(value) && (value as number) > 0, `LIMITS.${path} = ${String(value)} is not a positive safe integer`);
  }
  assert.ok(LIMITS.sfsWire.chunkBytesMin <= LIMITS.sfsWire.chunkBytesMax);
  assert.ok(LIMITS.raft.snapshotBytesMax < LIMITS.frameBytesMax);
  assert.ok(LIMITS.kv.totalBytesMax < LIMITS.storeValueBytesMax);
});

// A name that reads as a bound: FOO_MAX, MAX_FOO, FOO_MAX_BYTES, fooMax, fooMaxTicks, maxFoo.
const BOUND_NAME = /(^|_)MAX(_|$)|^max[A-Z]|Max([A-Z0-9_]|$)/;

/**
 * Numeric constants named as bounds that may stay outside LIMITS, by "file:name", with why. Type
 * ranges are facts of an encoding, not choices. The brain's parallel.ts and federated.ts are being
 * reworked elsewhere (issue 12): their bounds move into LIMITS there, then these lines go.
 */
const ALLOWED = new Map<string, string>([
  ["body/vital.ts:U32_MAX", "range of a u32 wire field"],
  ["wire/codec.ts:maxExtLength", "0: no MessagePack extension types at all"],
  ["wire/envelope.ts:SAFE_HIGH_MAX", "range of the high word of a 53-bit counter"],
  ["brain/parallel.ts:MAX_PEERS", "pending: to LIMITS"],
  ["brain/parallel.ts:ID_PATTERN_MAX_BYTES", "pending: to LIMITS"],
  ["brain/parallel.ts:SESSION_QUEUE_MAX", "pending: to LIMITS"],
  ["brain/federated.ts:FED_CLIENTS_MAX", "pending: to LIMITS"],
]);

/** True for 64, -1, 0xffff_ffff, 15 * 1024 * 1024, 1 << 20, 2 ** 48, (4096) as const. */
function isNumberLiteral(node: ts.Expression): boolean {
  if (ts.isNumericLiteral(node)) return true;
  if (ts.isParenthesizedExpression(node) || ts.isAsExpression(node) || ts.isSatisfiesExpression(node)) return isNumberLiteral(node.expression);
  if (ts.isPrefixUnaryExpression(node)) return isNumberLiteral(node.operand);
  if (ts.isBinaryExpression(node)) return isNumberLiteral(node.left) && isNumberLiteral(node.right);
  return false;
}

/** True inside a tunable config: a variable named *_DEFAULTS, or typed as a *Config (a profile such as SWIM_WAN). */
function inTunables(node: ts.Node, sf: ts.SourceFile): boolean {
  for (let at: ts.Node | undefined = node.parent; at !== undefined; at = at.parent) {
    if (!ts.isVariableDeclaration(at) || !ts.isIdentifier(at.name)) continue;
    if (/DEFAULTS$/.test(at.name.text) || /Config\b/.test(at.type?.getText(sf) ?? "")) return true;
  }
  return false;
}

/**
 * Numeric bounds written as literals outside LIMITS: `const X_MAX = 64` and `{ fooMax: 64 }` (an
 * object property, a schema's `maxItems: 64`). A core's config (its *_DEFAULTS, its profiles) is
 * tunable and may hold literals (within the hard bounds of LIMITS).
 */
export function strayBounds(file: string, source: string): string[] {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer !== undefined
      && BOUND_NAME.test(node.name.text) && isNumberLiteral(node.initializer)) {
      found.push(`${file}:${node.name.text}`);
    }
    if (ts.isPropertyAssignment(node) && (ts.isIdentifier(node.name) || ts.isStringLiteral(node.name))
      && BOUND_NAME.test(node.name.text) && isNumberLiteral(node.initializer) && !inTunables(node, sf)) {
      const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
      found.push(`${file}:${line}:${node.name.text}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts")).map((f) => join(dir, f));
}

test("limits: the scan finds a planted bound outside LIMITS, and not an alias of one", () => {
  const planted = [
    "const QUEUE_MAX = 64;",
    "export const MAX_PEERS = 255;",
    "const FRAME_BYTES_MAX = 15 * 1024 * 1024;",
    "export const BOUNDS = { rowsMax: 1 << 20, keyBytesMaxUtf8: 0xffff_ffff } as const;",
    "const Ids = Type.Array(Id, { maxItems: 1024 });",
  ].join("\n");
  assert.deepEqual(strayBounds("planted.ts", planted), [
    "planted.ts:QUEUE_MAX", "planted.ts:MAX_PEERS", "planted.ts:FRAME_BYTES_MAX",
    "planted.ts:4:rowsMax", "planted.ts:4:keyBytesMaxUtf8", "planted.ts:5:maxItems",
  ]);
  const fine = [
    "const QUEUE_MAX = LIMITS.queueMax;",
    "export const KV_LIMITS = LIMITS.kv;",
    "const Ids = Type.Array(Id, { maxItems: LIMITS.raft.confMembersMax });",
    "export const GOSSIP_DEFAULTS: GossipConfig = { rowsMax: 262_144, keyBytesMax: 128 };",
    "export const SWIM_WAN: SwimConfig = { suspicionMaxTimeoutMult: 6 };",
    "const TABLE_SLOTS_MIN = 16;",
    "const ENTRY_BYTES_MAX = entrySize(SAMPLE, U53_MAX);",
  ].join("\n");
  assert.deepEqual(strayBounds("fine.ts", fine), []);
});

test("limits: no numeric bound in src/core lives outside LIMITS", () => {
  const stray: string[] = [];
  for (const path of sources(core)) {
    const file = relative(core, path).split("\\").join("/");
    if (file === "util/limits.ts") continue;
    for (const hit of strayBounds(file, readFileSync(path, "utf8"))) {
      const [name] = hit.split(":").slice(-1);
      if (!ALLOWED.has(`${file}:${name}`)) stray.push(hit);
    }
  }
  assert.deepEqual(stray, [], "move these into src/core/util/limits.ts (or, for a tunable, into the module's *_DEFAULTS)");
});
