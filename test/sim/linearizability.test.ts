// The linearizability checker against the histories with known verdicts in
// ../shared/linearizability-fixtures (Porcupine's test data: Jepsen's 2014 etcd register histories
// and the 6.824 key-value histories). Every verdict must match MANIFEST.json exactly. The fixtures
// are not copied into the project: without ../shared these tests skip and say so.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { checkLinearizable, type Operation } from "../../src/sim/checkers/linearizability.ts";
import { kvModel, kvModelWhole, registerModel, type KvInput, type KvOutput, type RegisterInput, type RegisterOutput } from "../../src/sim/checkers/models.ts";

const FIXTURES = fileURLToPath(new URL("../../../shared/linearizability-fixtures/", import.meta.url));
const present = existsSync(`${FIXTURES}MANIFEST.json`);
const skip = present ? false : `no fixtures at ${FIXTURES} (they live in the project's shared folder, beside the repository)`;

interface Manifest {
  "jepsen-etcd": { expected_linearizable: Record<string, boolean> };
  kv: Record<string, Array<{ linearizable: boolean; partitioned_by_key: boolean }>>;
}

/** Jepsen's log lines (Porcupine's parser): :info lines are ignored, so their calls stay open. */
function parseJepsen(text: string): Operation<RegisterInput, RegisterOutput>[] {
  const prefix = String.raw`^INFO\s+jepsen\.util\s+-\s+(\d+)\s+`;
  const patterns = {
    invokeRead: new RegExp(`${prefix}:invoke\\s+:read\\s+nil$`),
    invokeWrite: new RegExp(`${prefix}:invoke\\s+:write\\s+(\\d+)$`),
    invokeCas: new RegExp(`${prefix}:invoke\\s+:cas\\s+\\[(\\d+)\\s+(\\d+)\\]$`),
    okRead: new RegExp(`${prefix}:ok\\s+:read\\s+(nil|\\d+)$`),
    okWrite: new RegExp(`${prefix}:ok\\s+:write\\s+(\\d+)$`),
    endCas: new RegExp(`${prefix}:(ok|fail)\\s+:cas\\s+\\[(\\d+)\\s+(\\d+)\\]$`),
    timeoutRead: new RegExp(`${prefix}:fail\\s+:read\\s+:timed-out$`),
  };
  const ops: Operation<RegisterInput, RegisterOutput>[] = [];
  const pending = new Map<string, { input: RegisterInput; call: number }>();
  let time = 0;
  const invoke = (proc: string, input: RegisterInput): void => {
    const open = pending.get(proc);
    // The process moved on after an :info (indeterminate) outcome: that call never returns.
    if (open !== undefined) ops.push({ client: Number(proc), input: open.input, call: open.call, output: { unknown: true }, return: Infinity });
    pending.set(proc, { input, call: time++ });
  };
  const complete = (proc: string, output: RegisterOutput): void => {
    const open = pending.get(proc);
    assert.ok(open !== undefined, `return without a call for process ${proc}`);
    pending.delete(proc);
    ops.push({ client: Number(proc), input: open.input, call: open.call, output, return: time++ });
  };
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = patterns.invokeRead.exec(line)) !== null) invoke(m[1] as string, { op: "read" });
    else if ((m = patterns.invokeWrite.exec(line)) !== null) invoke(m[1] as string, { op: "write", value: Number(m[2]) });
    else if ((m = patterns.invokeCas.exec(line)) !== null) invoke(m[1] as string, { op: "cas", expected: Number(m[2]), value: Number(m[3]) });
    else if ((m = patterns.okRead.exec(line)) !== null) complete(m[1] as string, { unknown: false, value: m[2] === "nil" ? null : Number(m[2]) });
    else if ((m = patterns.okWrite.exec(line)) !== null) complete(m[1] as string, { unknown: false });
    else if ((m = patterns.endCas.exec(line)) !== null) complete(m[1] as string, { unknown: false, ok: m[2] === "ok" });
    else if ((m = patterns.timeoutRead.exec(line)) !== null) complete(m[1] as string, { unknown: true });
  }
  for (const [proc, open] of pending) ops.push({ client: Number(proc), input: open.input, call: open.call, output: { unknown: true }, return: Infinity });
  return ops;
}

/** The 6.824 key-value logs (EDN-like maps, one per line). */
function parseKv(text: string): Operation<KvInput, KvOutput>[] {
  const invoke = /^\{:process (\d+), :type :invoke, :f :(get|put|append), :key "(.*)", :value (nil|"(.*)")\}$/;
  const ok = /^\{:process (\d+), :type :ok, :f :(get|put|append), :key ".*", :value (nil|"(.*)")\}$/;
  const ops: Operation<KvInput, KvOutput>[] = [];
  const pending = new Map<string, { input: KvInput; call: number }>();
  let time = 0;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    let m = invoke.exec(line);
    if (m !== null) {
      pending.set(m[1] as string, { input: { op: m[2] as KvInput["op"], key: m[3] as string, value: m[5] ?? "" }, call: time++ });
      continue;
    }
    m = ok.exec(line);
    assert.ok(m !== null, `unparsed line: ${line.slice(0, 80)}`);
    const open = pending.get(m[1] as string);
    assert.ok(open !== undefined);
    pending.delete(m[1] as string);
    ops.push({ client: Number(m[1]), input: open.input, call: open.call, output: { value: m[4] ?? "" }, return: time++ });
  }
  for (const [proc, open] of pending) ops.push({ client: Number(proc), input: open.input, call: open.call, output: { value: "" }, return: Infinity });
  return ops;
}

const manifest = present ? JSON.parse(readFileSync(`${FIXTURES}MANIFEST.json`, "utf8")) as Manifest : undefined;

test("linearizability: every Jepsen etcd history gets the verdict in MANIFEST.json", { skip, timeout: 600_000 }, (t) => {
  const expected = manifest?.["jepsen-etcd"].expected_linearizable ?? {};
  let linearizable = 0;
  const started = performance.now();
  for (const [file, verdict] of Object.entries(expected)) {
    const ops = parseJepsen(readFileSync(`${FIXTURES}jepsen-etcd/${file}`, "utf8"));
    const got = checkLinearizable(registerModel, ops);
    assert.equal(got, verdict ? "ok" : "illegal", `${file}: expected ${verdict ? "linearizable" : "not linearizable"}`);
    if (verdict) linearizable++;
  }
  t.diagnostic(`${Object.keys(expected).length} histories (${linearizable} linearizable) in ${((performance.now() - started) / 1000).toFixed(2)} s`);
});

test("linearizability: every 6.824 key-value history gets its verdict, with and without partitioning by key", { skip, timeout: 600_000 }, (t) => {
  for (const [file, checks] of Object.entries(manifest?.kv ?? {})) {
    const ops = parseKv(readFileSync(`${FIXTURES}kv/${file}`, "utf8"));
    for (const check of checks) {
      const started = performance.now();
      const got = check.partitioned_by_key ? checkLinearizable(kvModel, ops) : checkLinearizable(kvModelWhole, ops);
      assert.equal(got, check.linearizable ? "ok" : "illegal", `${file} (partitioned ${check.partitioned_by_key})`);
      t.diagnostic(`${file} ${check.partitioned_by_key ? "per key" : "whole map"}: ${got} in ${(performance.now() - started).toFixed(0)} ms (${ops.length} operations)`);
    }
  }
});

test("linearizability: small hand-made histories", () => {
  const op = (client: number, input: RegisterInput, call: number, output: RegisterOutput, ret: number): Operation<RegisterInput, RegisterOutput> =>
    ({ client, input, call, output, return: ret });
  // A write overlapping a read may or may not be seen.
  assert.equal(checkLinearizable(registerModel, [op(0, { op: "write", value: 1 }, 0, { unknown: false }, 3), op(1, { op: "read" }, 1, { unknown: false, value: 1 }, 2)]), "ok");
  assert.equal(checkLinearizable(registerModel, [op(0, { op: "write", value: 1 }, 0, { unknown: false }, 3), op(1, { op: "read" }, 1, { unknown: false, value: null }, 2)]), "ok");
  // A read after the write returned must see it.
  assert.equal(checkLinearizable(registerModel, [op(0, { op: "write", value: 1 }, 0, { unknown: false }, 1), op(1, { op: "read" }, 2, { unknown: false, value: null }, 3)]), "illegal");
  // A stale read after a newer value was read (the 2014 etcd bug's shape).
  assert.equal(checkLinearizable(registerModel, [
    op(0, { op: "write", value: 1 }, 0, { unknown: false }, 1),
    op(0, { op: "write", value: 2 }, 2, { unknown: false }, 3),
    op(1, { op: "read" }, 4, { unknown: false, value: 2 }, 5),
    op(2, { op: "read" }, 6, { unknown: false, value: 1 }, 7),
  ]), "illegal");
  // An unknown-outcome write may take effect any time after its call.
  assert.equal(checkLinearizable(registerModel, [op(0, { op: "write", value: 7 }, 0, { unknown: true }, Infinity), op(1, { op: "read" }, 5, { unknown: false, value: 7 }, 6)]), "ok");
  // A failed CAS needs a different value; a successful one the expected value.
  assert.equal(checkLinearizable(registerModel, [op(0, { op: "cas", expected: 1, value: 2 }, 0, { unknown: false, ok: true }, 1)]), "illegal");
  assert.equal(checkLinearizable(registerModel, [op(0, { op: "cas", expected: 1, value: 2 }, 0, { unknown: false, ok: false }, 1)]), "ok");
  // A search bounded by steps says so.
  assert.equal(checkLinearizable(registerModel, [op(0, { op: "write", value: 1 }, 0, { unknown: false }, 1)], { stepsMax: 0 }), "timeout");
});

test("linearizability: a sequential run is linearizable however its intervals stretch; a wrong read is caught", () => {
  fc.assert(fc.property(
    fc.array(fc.oneof(fc.constant({ op: "read" as const }), fc.record({ op: fc.constant("write" as const), value: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ op: fc.constant("cas" as const), expected: fc.integer({ min: 0, max: 3 }), value: fc.integer({ min: 0, max: 3 }) })), { minLength: 1, maxLength: 30 }),
    fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 30, maxLength: 30 }),
    (inputs, stretch) => {
      // Run the operations one after another on a real register; operation i takes time slot
      // [2i, 2i + 1], then its return is pushed later by up to 3 slots (it may overlap the next ones).
      let state: number | null = null;
      const ops: Operation<RegisterInput, RegisterOutput>[] = inputs.map((input, i) => {
        let output: RegisterOutput;
        if (input.op === "read") output = { unknown: false, value: state };
        else if (input.op === "write") {
          state = input.value;
          output = { unknown: false };
        } else {
          const ok = state === input.expected;
          if (ok) state = input.value;
          output = { unknown: false, ok };
        }
        return { client: i, input, call: 2 * i, output, return: 2 * i + 1 + 2 * (stretch[i] ?? 0) };
      });
      assert.equal(checkLinearizable(registerModel, ops), "ok");
      // A read made to return a value no write ever produced cannot be linearized.
      const readAt = ops.findIndex((o) => o.input.op === "read");
      if (readAt >= 0) {
        const broken = ops.map((o, i) => (i === readAt ? { ...o, output: { unknown: false as const, value: 99 } } : o));
        assert.equal(checkLinearizable(registerModel, broken), "illegal");
      }
    },
  ), { numRuns: 300 });
});
