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
import {
  keyedRegisterModel, kvModel, pruneUnseenWrites, kvModelWhole, registerModel, type KeyedRegisterInput, type KeyedRegisterOutput, type KvInput, type KvOutput,
  type RegisterInput, type RegisterOutput,
} from "../../src/sim/checkers/models.ts";

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
  assert.ok(Object.keys(expected).length > 0, "MANIFEST.json lists Jepsen histories");
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
  let checked = 0;
  for (const [file, checks] of Object.entries(manifest?.kv ?? {})) {
    const ops = parseKv(readFileSync(`${FIXTURES}kv/${file}`, "utf8"));
    for (const check of checks) {
      checked++;
      const started = performance.now();
      const got = check.partitioned_by_key ? checkLinearizable(kvModel, ops) : checkLinearizable(kvModelWhole, ops);
      assert.equal(got, check.linearizable ? "ok" : "illegal", `${file} (partitioned ${check.partitioned_by_key})`);
      t.diagnostic(`${file} ${check.partitioned_by_key ? "per key" : "whole map"}: ${got} in ${(performance.now() - started).toFixed(0)} ms (${ops.length} operations)`);
    }
  }
  assert.ok(checked > 0, "MANIFEST.json lists key-value histories");
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

test("linearizability: the keyed register model (read, write, delete, cas per key)", () => {
  type Op = Operation<KeyedRegisterInput, KeyedRegisterOutput>;
  const op = (client: number, input: KeyedRegisterInput, call: number, output: KeyedRegisterOutput, ret: number): Op => ({ client, input, call, output, return: ret });
  const done = (fields: Omit<Extract<KeyedRegisterOutput, { unknown: false }>, "unknown">): KeyedRegisterOutput => ({ unknown: false, ...fields });
  const unknown: KeyedRegisterOutput = { unknown: true };
  const check = (ops: Op[]) => checkLinearizable(keyedRegisterModel, ops);
  const read = (key: string) => ({ key, op: "read" as const });
  const write = (key: string, value: number) => ({ key, op: "write" as const, value });
  const del = (key: string) => ({ key, op: "delete" as const });
  const cas = (key: string, expected: number | null, value: number) => ({ key, op: "cas" as const, expected, value });

  // Keys start absent; keys are independent.
  assert.equal(check([op(0, read("a"), 0, done({ value: null }), 1)]), "ok");
  assert.equal(check([op(0, read("a"), 0, done({ value: 1 }), 1)]), "illegal");
  assert.equal(check([op(0, write("a", 1), 0, done({ previous: null }), 1), op(1, read("b"), 2, done({ value: null }), 3), op(1, read("a"), 4, done({ value: 1 }), 5)]), "ok");
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(1, read("b"), 2, done({ value: 1 }), 3)]), "illegal");
  // A write reports the value it replaced.
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(0, write("a", 2), 2, done({ previous: 1 }), 3)]), "ok");
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(0, write("a", 2), 2, done({ previous: null }), 3)]), "illegal");
  // Delete: found only when present; the key reads absent after it.
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(0, del("a"), 2, done({ found: true, previous: 1 }), 3), op(1, read("a"), 4, done({ value: null }), 5)]), "ok");
  assert.equal(check([op(0, del("a"), 0, done({ found: true }), 1)]), "illegal");
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(0, del("a"), 2, done({ found: false }), 3)]), "illegal");
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(0, del("a"), 2, done({ found: true }), 3), op(1, read("a"), 4, done({ value: 1 }), 5)]), "illegal");
  // Two deletes overlapping: only one may find the key.
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(1, del("a"), 2, done({ found: true }), 5), op(2, del("a"), 3, done({ found: false }), 4)]), "ok");
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(1, del("a"), 2, done({ found: true }), 5), op(2, del("a"), 3, done({ found: true }), 4)]), "illegal");
  // Cas on an absent key (expected null), cas conflicts report the current value.
  assert.equal(check([op(0, cas("a", null, 1), 0, done({ ok: true }), 1), op(1, cas("a", null, 2), 2, done({ ok: false, previous: 1 }), 3)]), "ok");
  assert.equal(check([op(0, cas("a", null, 1), 0, done({ ok: true }), 1), op(1, cas("a", null, 2), 2, done({ ok: true }), 3)]), "illegal");
  assert.equal(check([op(0, cas("a", null, 1), 0, done({ ok: true }), 1), op(1, cas("a", 5, 2), 2, done({ ok: false, previous: 5 }), 3)]), "illegal");
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(1, cas("a", 1, 2), 2, done({ ok: true }), 3), op(1, read("a"), 4, done({ value: 2 }), 5)]), "ok");
  // Two overlapping cas from the same expected value: only one may win.
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(1, cas("a", 1, 2), 2, done({ ok: true }), 5), op(2, cas("a", 1, 3), 3, done({ ok: true }), 4)]), "illegal");
  // Unknown outcomes may or may not take effect, at any time after their call.
  assert.equal(check([op(0, write("a", 1), 0, unknown, Infinity), op(1, read("a"), 2, done({ value: null }), 3), op(1, read("a"), 4, done({ value: 1 }), 5)]), "ok");
  assert.equal(check([op(0, write("a", 1), 0, unknown, Infinity), op(1, read("a"), 2, done({ value: null }), 3)]), "ok");
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(0, del("a"), 2, unknown, Infinity), op(1, read("a"), 4, done({ value: 1 }), 5), op(1, read("a"), 6, done({ value: null }), 7)]), "ok");
  // ... but once not seen after being seen, it cannot come back.
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(0, del("a"), 2, unknown, Infinity), op(1, read("a"), 4, done({ value: null }), 5), op(1, read("a"), 6, done({ value: 1 }), 7)]), "illegal");
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(1, cas("a", 1, 2), 2, unknown, Infinity), op(2, read("a"), 3, done({ value: 2 }), 4), op(2, read("a"), 5, done({ value: 2 }), 6)]), "ok");
  assert.equal(check([op(0, write("a", 1), 0, done({}), 1), op(1, cas("a", 3, 2), 2, unknown, Infinity), op(2, read("a"), 3, done({ value: 2 }), 4)]), "illegal");
  // A write can only be seen once it was called.
  assert.equal(check([op(1, read("a"), 0, done({ value: 1 }), 1), op(0, write("a", 1), 2, unknown, Infinity)]), "illegal");
});

test("linearizability: leaving out unknown writes nobody saw never changes the keyed register's verdict", () => {
  type Op = Operation<KeyedRegisterInput, KeyedRegisterOutput>;
  fc.assert(fc.property(
    fc.array(fc.record({
      kind: fc.integer({ min: 0, max: 3 }), expected: fc.integer({ min: 0, max: 4 }), stretch: fc.integer({ min: 0, max: 4 }),
      unknown: fc.boolean(), applied: fc.boolean(), lie: fc.integer({ min: 0, max: 12 }),
    }), { minLength: 1, maxLength: 14 }),
    (steps) => {
      // A register run sequentially; an unknown operation took effect or not (`applied`); a few
      // answers are made up (`lie`), so that illegal histories are compared too.
      let state: number | null = null;
      const values: number[] = [];
      const ops: Op[] = steps.map((step, i): Op => {
        const call = 2 * i;
        const ret = step.unknown ? Infinity : 2 * i + 1 + 2 * step.stretch;
        const value = 100 + i;
        const expectedOf = (): number | null => (step.expected === 0 || values.length === 0 ? null : values[(step.expected - 1) % values.length]!);
        let input: KeyedRegisterInput;
        let output: KeyedRegisterOutput;
        switch (step.kind) {
          case 0:
            input = { key: "a", op: "read" };
            output = { unknown: false, value: step.lie === 0 ? 999 : state };
            return { client: i, input, call, output, return: 2 * i + 1 + 2 * step.stretch };
          case 1: {
            input = { key: "a", op: "write", value };
            output = step.unknown ? { unknown: true } : { unknown: false, previous: state };
            if (!step.unknown || step.applied) state = value;
            values.push(value);
            break;
          }
          case 2: {
            input = { key: "a", op: "delete" };
            output = step.unknown ? { unknown: true } : { unknown: false, found: state !== null, previous: state };
            if (!step.unknown || step.applied) state = null;
            break;
          }
          default: {
            const expected = expectedOf();
            input = { key: "a", op: "cas", expected, value };
            const matches = state === expected;
            output = step.unknown ? { unknown: true } : { unknown: false, ok: step.lie === 1 ? !matches : matches, previous: state };
            if (matches && (!step.unknown || step.applied)) state = value;
            values.push(value);
          }
        }
        return { client: i, input, call, output, return: ret };
      });
      const pruned = pruneUnseenWrites(ops);
      assert.equal(checkLinearizable(keyedRegisterModel, pruned), checkLinearizable(keyedRegisterModel, ops));
      assert.ok(pruned.every((op) => ops.includes(op)));
    },
  ), { numRuns: 2000 });
  // What it leaves out: only unknown writes and cas whose value no one reports or expects.
  const history: Operation<KeyedRegisterInput, KeyedRegisterOutput>[] = [
    { client: 0, input: { key: "a", op: "write", value: 1 }, call: 0, output: { unknown: true }, return: Infinity },
    { client: 1, input: { key: "a", op: "write", value: 2 }, call: 1, output: { unknown: true }, return: Infinity },
    { client: 2, input: { key: "a", op: "cas", expected: 2, value: 3 }, call: 2, output: { unknown: true }, return: Infinity },
    { client: 3, input: { key: "a", op: "delete" }, call: 3, output: { unknown: true }, return: Infinity },
    { client: 4, input: { key: "a", op: "read" }, call: 4, output: { unknown: false, value: 1 }, return: 5 },
  ];
  assert.deepEqual(pruneUnseenWrites(history).map((op) => op.client), [0, 1, 3, 4]);
  // A delete that found the key without saying what it held: nothing is left out.
  const silent = [...history, { client: 5, input: { key: "a", op: "delete" as const }, call: 6, output: { unknown: false as const, found: true }, return: 7 }];
  assert.equal(pruneUnseenWrites(silent).length, silent.length);
});
