// LIMITS is the one place to read every bound (DESIGN.md §2 rule 4): each value is a positive whole
// number, and no numeric *_MAX / *Max constant hides elsewhere in src/ (the core, the node, the
// adapters, the simulator and the CLI). The scan is shown to fire on planted constants, so a check
// that never reports would not pass unnoticed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { SFS_DEFAULTS } from "../../src/core/collective/sfs.ts";
import { LIMITS } from "../../src/core/util/limits.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const src = join(root, "src");

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
  assert.equal(LIMITS.node.sfsRecordsMax, 2 * SFS_DEFAULTS.filesMax, "the shared folder's boot read is twice its manifest bound");
  assert.ok(LIMITS.sim.addressesMax ** 2 <= Number.MAX_SAFE_INTEGER, "the simulator's pair keys (from * addressesMax + to) are exact");
});

// A name that reads as a bound: FOO_MAX, MAX_FOO, FOO_MAX_BYTES, fooMax, fooMaxTicks, maxFoo.
const BOUND_NAME = /(^|_)MAX(_|$)|^max[A-Z]|Max([A-Z0-9_]|$)/;

/**
 * Numeric constants named as bounds that may stay outside LIMITS, by "file:name" under src/, with
 * why. Type ranges are facts of an encoding, not choices; the simulator's scale scenarios hold
 * thresholds their measurements are checked against, and parameters of their network model.
 */
const ALLOWED = new Map<string, string>([
  ["core/body/vital.ts:U32_MAX", "range of a u32 wire field"],
  ["core/wire/codec.ts:maxExtLength", "0: no MessagePack extension types at all"],
  ["core/wire/envelope.ts:SAFE_HIGH_MAX", "range of the high word of a 53-bit counter"],
  ["sim/swim-scale.ts:DELAY_MAX", "the scale model's delivery delay (DELAY_MIN..DELAY_MAX ticks): a parameter, not a bound"],
  ["sim/replica-scale.ts:DELAY_MAX", "the scale model's delivery delay (DELAY_MIN..DELAY_MAX ticks): a parameter, not a bound"],
  ["sim/swim-scale.ts:loadRatioMax", "SWIM_SCALE_BOUNDS: a threshold the scenario checks its measurements against"],
  ["sim/swim-scale.ts:disseminationCMax", "SWIM_SCALE_BOUNDS: a threshold the scenario checks its measurements against"],
  ["sim/swim-scale.ts:deadEverywhereCMax", "SWIM_SCALE_BOUNDS: a threshold the scenario checks its measurements against"],
  ["sim/replica-scale.ts:cMax", "REPLICA_SCALE_BOUNDS: a threshold the scenario checks its measurements against"],
  ["sim/replica-scale.ts:bytesPerNodePerPeriodMax", "REPLICA_SCALE_BOUNDS: a threshold the scenario checks its measurements against"],
  ["sim/replica-scale.ts:bytesMax", "a measured maximum (Load.bytesMax starts at 0), not a bound"],
  ["sim/files.ts:latencyTicksMax", "the default of a tunable option (simulated disk latency), not a hard bound"],
  ["sim/clock.ts:maxOffsetMs", "the default of a tunable option (a random clock's offset spread), within LIMITS.sim.offsetMsMax"],
  ["sim/clock.ts:maxDriftPpm", "the default of a tunable option (a random clock's drift spread), within LIMITS.sim.driftPpmMax"],
  ["sim/organism.ts:FORM_TICKS_MAX", "pending: a scenario deadline, to LIMITS.sim or a *_DEFAULTS (issue 12)"],
  ["sim/organism.ts:WAIT_TICKS_MAX", "pending: a scenario deadline, to LIMITS.sim or a *_DEFAULTS (issue 12)"],
]);

/** True for 64, -1, 0xffff_ffff, 15 * 1024 * 1024, 1 << 20, 2 ** 48, (4096) as const. */
function isNumberLiteral(node: ts.Expression): boolean {
  if (ts.isNumericLiteral(node)) return true;
  if (ts.isParenthesizedExpression(node) || ts.isAsExpression(node) || ts.isSatisfiesExpression(node)) return isNumberLiteral(node.expression);
  if (ts.isPrefixUnaryExpression(node)) return isNumberLiteral(node.operand);
  if (ts.isBinaryExpression(node)) return isNumberLiteral(node.left) && isNumberLiteral(node.right);
  return false;
}

/**
 * True inside a tunable config: a variable named *_DEFAULTS, or typed as a *Config (a profile such
 * as SWIM_WAN); or a simulated link's faults (typed LinkFaults, or named `faults`).
 */
function inTunables(node: ts.Node, sf: ts.SourceFile): boolean {
  for (let at: ts.Node | undefined = node.parent; at !== undefined; at = at.parent) {
    if (!ts.isVariableDeclaration(at) || !ts.isIdentifier(at.name)) continue;
    if (/DEFAULTS$|^faults$/.test(at.name.text) || /Config\b|\bLinkFaults\b/.test(at.type?.getText(sf) ?? "")) return true;
  }
  return false;
}

/** The name of `x`, `a.x` or `this.#x`, if it reads as a bound. */
function boundName(node: ts.Expression): string | undefined {
  const name = ts.isIdentifier(node) ? node.text : ts.isPropertyAccessExpression(node) ? node.name.text : undefined;
  return name !== undefined && BOUND_NAME.test(name.replace(/^#/, "")) ? name : undefined;
}

/**
 * Numeric bounds written as literals outside LIMITS: `const X_MAX = 64`, `{ fooMax: 64 }` (an
 * object property, a schema's `maxItems: 64`), `server.maxFoo = 64` and `options.fooMax ?? 64`. A
 * config (its *_DEFAULTS, its profiles) is tunable and may hold literals (within the hard bounds
 * of LIMITS).
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
    if (ts.isBinaryExpression(node) && (node.operatorToken.kind === ts.SyntaxKind.EqualsToken || node.operatorToken.kind === ts.SyntaxKind.QuestionQuestionToken)
      && isNumberLiteral(node.right)) {
      const name = boundName(node.left);
      const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
      if (name !== undefined) found.push(`${file}:${line}:${name}`);
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
    "server.maxHeadersCount = 64;",
    "this.#itemsMax = options.itemsMax ?? 200_000;",
    "const server = createServer({ maxHeaderSize: 16 * 1024 }, handle);",
  ].join("\n");
  assert.deepEqual(strayBounds("planted.ts", planted), [
    "planted.ts:QUEUE_MAX", "planted.ts:MAX_PEERS", "planted.ts:FRAME_BYTES_MAX",
    "planted.ts:4:rowsMax", "planted.ts:4:keyBytesMaxUtf8", "planted.ts:5:maxItems",
    "planted.ts:6:maxHeadersCount", "planted.ts:7:itemsMax", "planted.ts:8:maxHeaderSize",
  ]);
  const fine = [
    "const QUEUE_MAX = LIMITS.queueMax;",
    "export const KV_LIMITS = LIMITS.kv;",
    "const Ids = Type.Array(Id, { maxItems: LIMITS.raft.confMembersMax });",
    "export const GOSSIP_DEFAULTS: GossipConfig = { rowsMax: 262_144, keyBytesMax: 128 };",
    "export const SWIM_WAN: SwimConfig = { suspicionMaxTimeoutMult: 6 };",
    "const TABLE_SLOTS_MIN = 16;",
    "const ENTRY_BYTES_MAX = entrySize(SAMPLE, U53_MAX);",
    "server.maxConnections = API_CONNECTIONS_MAX;",
    "this.#itemsMax = options.itemsMax ?? LIMITS.disk.sfsScanItemsMax;",
    "export const PERFECT_LINK: LinkFaults = { reorderDelayTicksMax: 0 };",
    "const LOSSY: Partial<LinkFaults> = { reorderDelayTicksMax: 10 };",
    "for (let round = 0; round < LIMITS.node.flushRoundsMax; round++) total = Math.max(total, 64);",
  ].join("\n");
  assert.deepEqual(strayBounds("fine.ts", fine), []);
});

test("limits: no numeric bound in src/ (core, node, adapters, sim, cli) lives outside LIMITS", () => {
  const stray: string[] = [];
  const allowed = new Set<string>();
  const dirs = new Set<string>();
  for (const path of sources(src)) {
    const file = relative(src, path).split("\\").join("/");
    if (file === "core/util/limits.ts") continue;
    dirs.add(file.split("/")[0] as string);
    for (const hit of strayBounds(file, readFileSync(path, "utf8"))) {
      const [name] = hit.split(":").slice(-1);
      if (ALLOWED.has(`${file}:${name}`)) allowed.add(`${file}:${name}`);
      else stray.push(hit);
    }
  }
  for (const dir of ["core", "node", "adapters", "sim", "cli"]) assert.ok(dirs.has(dir), `src/${dir} was not scanned`);
  assert.deepEqual(stray, [], "move these into src/core/util/limits.ts (or, for a tunable, into the module's *_DEFAULTS)");
  assert.deepEqual([...ALLOWED.keys()].filter((key) => !allowed.has(key)), [], "these allowed names are gone: drop their lines from ALLOWED");
});
