// Rollouts' sans-IO core (issue 16): the record and health decoders refuse what is malformed
// (fuzzed: never a throw), and judge() rolls back on each sign a new version is worse than the one
// it replaces, promotes after the window, and waits otherwise.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeHealth, decodeModelHealth, decodeRecord, encodeHealth, encodeModelHealth, encodeRecord, judge, judgeModel, ROLLOUT_DEFAULTS, signedBody, type ModelHealth, type ProgramHealth, type RolloutRecord } from "../../src/core/evolve/rollout.ts";

const A = "a".repeat(16), B = "b".repeat(16), C = "c".repeat(16);
const RECORD: RolloutRecord = {
  name: "outliers", version: "1.1.0", hash: "1".repeat(64), from: { version: "1.0.0", hash: "2".repeat(64) }, canary: [A], windowMs: 10_000,
  startedMs: 1_000_000, approver: A, sig: `${"A".repeat(86)}==`, phase: "canary",
};

function health(node: string, version: string, over: Partial<ProgramHealth> = {}): ProgramHealth {
  return {
    node, name: "outliers", version, sinceMs: 1_000_000, atMs: 1_005_000, runs: 50, failures: 0, lastError: null, gasAvg: 1, memoryPeak: 200_000,
    memoryLimit: 8 * 1024 * 1024, probe: { runs: 5, failed: 0, msAvg: 2 }, accuracy: null, loopDelayMs: 10, ...over,
  };
}
const base = [health(B, "1.0.0"), health(C, "1.0.0")];

test("a record and a health row decode back to themselves", () => {
  assert.deepEqual(decodeRecord(encodeRecord(RECORD)), { ok: true, value: RECORD });
  const decided: RolloutRecord = { ...RECORD, phase: "rolled-back", decidedMs: 1_010_000, decidedBy: B, reason: "errors" };
  assert.deepEqual(decodeRecord(encodeRecord(decided)), { ok: true, value: decided });
  const h = health(A, "1.1.0", { accuracy: { with: 0.8, without: 0.9 } });
  assert.deepEqual(decodeHealth(encodeHealth(h)), { ok: true, value: h });
});

test("malformed records are refused by field, and the signed bytes cover what runs where", () => {
  const bad = (patch: Record<string, unknown>): string => {
    const d = decodeRecord(new TextEncoder().encode(JSON.stringify({ ...RECORD, ...patch })));
    assert.equal(d.ok, false, JSON.stringify(patch));
    return d.ok ? "" : d.error;
  };
  assert.match(bad({ name: "../x" }), /name/);
  assert.match(bad({ version: "1.0" }), /version/);
  assert.match(bad({ canary: [] }), /canary/);
  assert.match(bad({ canary: ["x"] }), /canary/);
  assert.match(bad({ phase: "promoted" }), /phase/);
  assert.match(bad({ decidedMs: 5, decidedBy: A, reason: "x" }), /phase/);
  assert.match(bad({ extra: 1 }), /field/);
  assert.match(bad({ windowMs: -1 }), /windowMs/);
  assert.match(bad({ from: { version: "1.0.0" } }), /from/);
  const body = (r: RolloutRecord): string => new TextDecoder().decode(signedBody(r));
  for (const patch of [{ version: "1.2.0" }, { hash: "3".repeat(64) }, { canary: [B] }, { windowMs: 1 }, { from: null }, { approver: B }]) {
    assert.notEqual(body({ ...RECORD, ...patch }), body(RECORD), JSON.stringify(patch));
  }
  // A decision changes no signed byte: the approver's signature stays valid through it.
  assert.equal(body({ ...RECORD, phase: "promoted", decidedMs: 1, decidedBy: B, reason: "ok" }), body(RECORD));
});

test("the decoders never throw on any bytes", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
    assert.equal(typeof decodeRecord(bytes).ok, "boolean");
    assert.equal(typeof decodeHealth(bytes).ok, "boolean");
    assert.equal(typeof decodeModelHealth(bytes).ok, "boolean");
  }), { numRuns: 2_000 });
  fc.assert(fc.property(fc.jsonValue(), (value) => {
    const bytes = new TextEncoder().encode(JSON.stringify(value));
    assert.equal(typeof decodeRecord(bytes).ok, "boolean");
    assert.equal(typeof decodeHealth(bytes).ok, "boolean");
  }), { numRuns: 2_000 });
  // Mutations of a valid record's fields: refused or decoded, never thrown.
  fc.assert(fc.property(fc.constantFrom(...Object.keys(RECORD)), fc.jsonValue(), (key, value) => {
    const bytes = new TextEncoder().encode(JSON.stringify({ ...RECORD, [key]: value }));
    assert.equal(typeof decodeRecord(bytes).ok, "boolean");
  }), { numRuns: 2_000 });
});

test("judge: each sign of a worse version rolls back, with its rule", () => {
  const at = 1_005_000;
  const cases: Array<[string, ProgramHealth, RegExp]> = [
    ["throws", health(A, "1.1.0", { runs: 10, failures: 4, lastError: "throw: boom" }), /^errors: 4 of 10 runs failed \(throw: boom\)/],
    ["leaks", health(A, "1.1.0", { memoryPeak: 3_000_000 }), /^memory: peak 2\.9 MiB/],
    ["probe fails", health(A, "1.1.0", { probe: { runs: 3, failed: 2, msAvg: 1 } }), /^probe: 2 of 3 probes failed/],
    ["probe slows", health(A, "1.1.0", { probe: { runs: 3, failed: 0, msAvg: 60 } }), /^probe slowed: 60\.0 ms against 2\.0 ms/],
    ["accuracy", health(A, "1.1.0", { accuracy: { with: 0.5, without: 0.8 } }), /^accuracy: held-out 50\.0% with it, 80\.0% without/],
    ["vitals", health(A, "1.1.0", { loopDelayMs: 900 }), /^vital signs/],
  ];
  for (const [name, cand, rule] of cases) {
    const v = judge(RECORD, [cand, ...base], at);
    assert.equal(v.verdict, "rollback", `${name}: ${v.reason}`);
    assert.match(v.reason, rule, name);
  }
});

test("judge: a failure rate no worse than the old version's, and small noise, do not roll back", () => {
  const at = 1_005_000;
  const oldFails = [health(B, "1.0.0", { runs: 100, failures: 20 }), health(C, "1.0.0", { runs: 100, failures: 20 })];
  assert.equal(judge(RECORD, [health(A, "1.1.0", { runs: 50, failures: 10 }), ...oldFails], at).verdict, "wait");
  assert.equal(judge(RECORD, [health(A, "1.1.0", { runs: 50, failures: 1 }), ...base], at).verdict, "wait");
  assert.equal(judge(RECORD, [health(A, "1.1.0", { memoryPeak: 390_000 }), ...base], at).verdict, "wait");
  assert.equal(judge(RECORD, [health(A, "1.1.0", { accuracy: { with: 0.79, without: 0.8 } }), ...base], at).verdict, "wait");
  // Nodes' held-out data differ: a canary scoring lower than the baseline's nodes, at the same cost, is no worse.
  const baseAcc = base.map((h) => ({ ...h, accuracy: { with: 0.9, without: 0.92 } }));
  assert.equal(judge(RECORD, [health(A, "1.1.0", { accuracy: { with: 0.82, without: 0.84 } }), ...baseAcc], at).verdict, "wait");
  assert.equal(judge(RECORD, [health(A, "1.1.0", { accuracy: { with: 0.74, without: 0.84 } }), ...baseAcc], at).verdict, "rollback");
  // Rows of other versions, or from before the rollout, do not count.
  assert.equal(judge(RECORD, [health(A, "1.0.9", { failures: 50 }), health(A, "1.1.0", { atMs: 999_000, failures: 50 }), ...base], at).verdict, "wait");
});

test("judge: promoted after the window with enough runs; patience when runs are few", () => {
  const cand = health(A, "1.1.0", { runs: 3, probe: null });
  assert.equal(judge(RECORD, [cand, ...base], 1_009_999).verdict, "wait");
  assert.equal(judge(RECORD, [cand, ...base], 1_010_000).verdict, "wait", "3 of 5 runs");
  const late = judge(RECORD, [cand, ...base], 1_000_000 + 10_000 * ROLLOUT_DEFAULTS.patienceWindows);
  assert.equal(late.verdict, "promote");
  assert.match(late.reason, /only 3 runs seen/);
  const ok = judge(RECORD, [health(A, "1.1.0"), ...base], 1_010_000);
  assert.equal(ok.verdict, "promote");
  assert.match(ok.reason, /^healthy for 10 s: 50 runs, 0 failed/);
  assert.equal(judge({ ...RECORD, phase: "promoted", decidedMs: 1, decidedBy: A, reason: "x" }, [], 2_000_000).verdict, "wait");
});

test("judge: a new program is held to its own limits and to running without it", () => {
  const fresh: RolloutRecord = { ...RECORD, version: "1.0.0", from: null };
  assert.equal(judge(fresh, [health(A, "1.0.0", { memoryPeak: 5 * 1024 * 1024 })], 1_005_000).verdict, "rollback");
  assert.equal(judge(fresh, [health(A, "1.0.0", { memoryPeak: 3 * 1024 * 1024 })], 1_005_000).verdict, "wait");
  assert.equal(judge(fresh, [health(A, "1.0.0", { accuracy: { with: 0.6, without: 0.8 } })], 1_005_000).verdict, "rollback");
  assert.equal(judge(fresh, [health(A, "1.0.0")], 1_010_000).verdict, "promote");
});

test("judgeModel: a new model version is kept, or rolled back when it costs held-out accuracy on average", () => {
  const row = (node: string, accuracy: number, previousAccuracy: number | null, version = 5): ModelHealth => ({ node, version, tag: "0123456789abcdef", accuracy, previousVersion: version - 1, previousAccuracy, atMs: 1 });
  assert.deepEqual(decodeModelHealth(encodeModelHealth(row(A, 0.8, 0.9))), { ok: true, value: row(A, 0.8, 0.9) });
  assert.equal(decodeModelHealth(new TextEncoder().encode(JSON.stringify({ ...row(A, 0.8, 0.9), accuracy: 2 }))).ok, false);
  assert.equal(judgeModel(5, "0123456789abcdef", [row(A, 0.5, 0.9)], 5).verdict, "wait", "1 of the 3 nodes needed");
  const worse = judgeModel(5, "0123456789abcdef", [row(A, 0.5, 0.9), row(B, 0.6, 0.88), row(C, 0.55, 0.9)], 5);
  assert.equal(worse.verdict, "rollback");
  assert.match(worse.reason, /^model v5: held-out 55\.0% against 89\.3% for v4, on 3 nodes/);
  assert.equal(judgeModel(5, "0123456789abcdef", [row(A, 0.89, 0.9), row(B, 0.9, 0.88), row(C, 0.9, 0.9)], 5).verdict, "promote");
  // Other versions' or weights' rows, and rows without a predecessor, do not count.
  assert.equal(judgeModel(5, "0123456789abcdef", [row(A, 0.1, 0.9, 4), row(B, 0.1, null), { ...row(C, 0.1, 0.9), tag: "ffffffffffffffff" }], 3).verdict, "wait");
});
