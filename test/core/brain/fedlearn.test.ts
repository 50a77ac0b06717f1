import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  aggregate, clipDelta, coordinateMedian, fedAvg, trimmedMean, type ModelUpdate,
} from "../../../src/core/brain/fedlearn.ts";

const f32 = (...xs: number[]): Float32Array => Float32Array.from(xs);
function bytes(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

test("fedlearn: FedAvg weights by n, and caps self-reported n", () => {
  const updates: ModelUpdate[] = [{ params: f32(1, 2), n: 1 }, { params: f32(3, 6), n: 3 }];
  assert.deepEqual(Array.from(fedAvg(updates)), [2.5, 5]); // (1·1 + 3·3)/4, (2·1 + 6·3)/4
  assert.deepEqual(Array.from(fedAvg(updates, { capN: 1 })), [2, 4]); // both weigh 1
  // A liar claiming a billion examples is held to the cap.
  const liar = [{ params: f32(0), n: 100 }, { params: f32(1000), n: 1e9 }];
  assert.deepEqual(Array.from(fedAvg(liar, { capN: 100 })), [500]);
});

test("fedlearn: trimmed mean and median, hand-computed", () => {
  const vs = [f32(1, 50), f32(2, 40), f32(3, 30), f32(4, 20), f32(100, -1000)];
  // β = 0.2, k = 5: drop 1 from each end per coordinate.
  assert.deepEqual(Array.from(trimmedMean(vs, 0.2)), [3, 30]); // (2+3+4)/3, (20+30+40)/3
  assert.deepEqual(Array.from(trimmedMean(vs, 0)), [22, -172]); // plain mean
  assert.deepEqual(Array.from(coordinateMedian(vs)), [3, 30]);
  assert.deepEqual(Array.from(coordinateMedian([f32(1), f32(5), f32(2), f32(10)])), [3.5]); // (2+5)/2
  assert.deepEqual(Array.from(trimmedMean([f32(1), f32(5), f32(2), f32(10)], 0.49)), [3.5]); // ⌊1.96⌋ = 1
});

test("fedlearn: clear errors on empty input, length mismatch, NaN and Infinity", () => {
  assert.throws(() => fedAvg([]), /no vectors/);
  assert.throws(() => trimmedMean([], 0.2), /no vectors/);
  assert.throws(() => coordinateMedian([]), /no vectors/);
  assert.throws(() => coordinateMedian([f32(1, 2), f32(1)]), /vector 1 has length 1, expected 2/);
  assert.throws(() => trimmedMean([f32(1), f32(NaN)], 0.2), /vector 1 has a non-finite value at 0/);
  assert.throws(() => fedAvg([{ params: f32(0, Infinity), n: 1 }]), /non-finite value at 1/);
  assert.throws(() => fedAvg([{ params: f32(0), n: 0 }]), /n = 0/);
  assert.throws(() => fedAvg([{ params: f32(0), n: NaN }]), /n = NaN/);
  assert.throws(() => trimmedMean([f32(1)], 0.5), /beta/);
  assert.throws(() => clipDelta(f32(0), f32(0, 1), 1), /length/);
});

test("fedlearn: results are bitwise independent of arrival order (property)", () => {
  const value = fc.float({ min: -1e6, max: 1e6, noNaN: true, noDefaultInfinity: true });
  const input = fc.integer({ min: 1, max: 6 }).chain((dim) =>
    fc.array(fc.record({ v: fc.array(value, { minLength: dim, maxLength: dim }), n: fc.integer({ min: 1, max: 50 }) }), { minLength: 1, maxLength: 9 }),
  );
  fc.assert(fc.property(input, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 9, maxLength: 9 }), (rows, keys) => {
    const updates = rows.map((r) => ({ params: Float32Array.from(r.v), n: r.n }));
    const order = updates.map((_, i) => i).sort((a, b) => (keys[a] as number) - (keys[b] as number) || a - b);
    const permuted = order.map((i) => updates[i] as ModelUpdate);
    assert.deepEqual(bytes(fedAvg(permuted)), bytes(fedAvg(updates)));
    const vs = updates.map((u) => u.params);
    const pvs = permuted.map((u) => u.params);
    assert.deepEqual(bytes(trimmedMean(pvs, 0.2)), bytes(trimmedMean(vs, 0.2)));
    assert.deepEqual(bytes(coordinateMedian(pvs)), bytes(coordinateMedian(vs)));
  }), { numRuns: 300 });
});

/** Four honest updates near 1.0 per coordinate, and the poisoned fifth. */
function honestAndPoison(poison: (honestMean: number[]) => number[]): { honest: Float32Array[]; all: Float32Array[] } {
  const honest = [f32(1.0, -2.0, 0.5), f32(1.1, -2.2, 0.4), f32(0.9, -1.9, 0.6), f32(1.05, -2.1, 0.45)];
  const mean = [0, 1, 2].map((i) => honest.reduce((s, v) => s + (v[i] as number), 0) / honest.length);
  return { honest, all: [...honest, Float32Array.from(poison(mean))] };
}

function withinHonestRange(result: Float32Array, honest: Float32Array[]): boolean {
  return Array.from(result).every((x, i) => {
    const col = honest.map((v) => v[i] as number);
    return x >= Math.min(...col) && x <= Math.max(...col);
  });
}

test("fedlearn: one poisoned update in five drags FedAvg far but not the trimmed mean or median", () => {
  const attacks: Record<string, (m: number[]) => number[]> = {
    huge: (m) => m.map(() => 1e6),
    signFlip: (m) => m.map((x) => -10 * x),
  };
  for (const [name, attack] of Object.entries(attacks)) {
    const { honest, all } = honestAndPoison(attack);
    const trimmed = trimmedMean(all, 0.2);
    const median = coordinateMedian(all);
    assert.ok(withinHonestRange(trimmed, honest), `${name}: trimmed mean ${Array.from(trimmed)}`);
    assert.ok(withinHonestRange(median, honest), `${name}: median ${Array.from(median)}`);
    const avg = fedAvg(all.map((params) => ({ params, n: 10 })));
    assert.ok(!withinHonestRange(avg, honest), `${name}: FedAvg ${Array.from(avg)} should be dragged`);
    assert.ok(Math.abs((avg[0] as number) - 1) > 1.5, `${name}: FedAvg moved by ${(avg[0] as number) - 1}`);
  }
});

test("fedlearn: with one arbitrary poison among five, trimmed mean and median stay in the honest range (property)", () => {
  const value = fc.float({ min: -100, max: 100, noNaN: true, noDefaultInfinity: true });
  const poison = fc.float({ noNaN: true, noDefaultInfinity: true });
  fc.assert(fc.property(fc.array(fc.array(value, { minLength: 3, maxLength: 3 }), { minLength: 4, maxLength: 4 }), fc.array(poison, { minLength: 3, maxLength: 3 }), fc.integer({ min: 0, max: 4 }), (h, p, at) => {
    const honest = h.map((v) => Float32Array.from(v));
    const all = [...honest];
    all.splice(at, 0, Float32Array.from(p));
    assert.ok(withinHonestRange(trimmedMean(all, 0.2), honest));
    assert.ok(withinHonestRange(coordinateMedian(all), honest));
  }), { numRuns: 500 });
});

test("fedlearn: clipDelta scales the delta to the norm bound and leaves small deltas alone", () => {
  assert.deepEqual(Array.from(clipDelta(f32(0, 0), f32(3, 4), 1)), [Math.fround(0.6), Math.fround(0.8)]);
  assert.deepEqual(Array.from(clipDelta(f32(1, 1), f32(4, 5), 10)), [4, 5]);
  const u = f32(1, 2);
  assert.notEqual(clipDelta(f32(0, 0), u, 10), u); // a copy, not the caller's array
  assert.throws(() => clipDelta(f32(0), f32(1), -1), /maxNorm/);
});

test("fedlearn: aggregate uses FedAvg for all-core rounds and a robust rule once a contributor joins", () => {
  const global = f32(0, 0);
  const updates: ModelUpdate[] = [
    { params: f32(1, 1), n: 10 }, { params: f32(2, 2), n: 10 }, { params: f32(3, 3), n: 10 },
    { params: f32(4, 4), n: 10 }, { params: f32(1000, -1000), n: 10 },
  ];
  const allCore = aggregate(updates, { global, core: [true, true, true, true, true] });
  assert.ok(allCore.ok);
  assert.equal(allCore.rule, "fedavg");
  assert.deepEqual(Array.from(allCore.params), [202, -198]);

  const mixed = aggregate(updates, { global, core: [true, true, true, true, false] });
  assert.ok(mixed.ok);
  assert.equal(mixed.rule, "trimmed-mean");
  assert.equal(mixed.trimmed, 1);
  assert.deepEqual(Array.from(mixed.params), [3, 2]); // (2+3+4)/3, (1+2+3)/3

  const median = aggregate(updates, { global, core: [true, true, true, true, false], robust: "median" });
  assert.ok(median.ok);
  assert.equal(median.rule, "median");
  assert.deepEqual(Array.from(median.params), [3, 2]);

  // Three updates: ⌊0.2·3⌋ = 0 would trim nothing, so the median is used and reported.
  const few = aggregate(updates.slice(2), { global, core: [true, true, false] });
  assert.ok(few.ok);
  assert.equal(few.rule, "median");
  assert.deepEqual(Array.from(few.params), [4, 3]);

  assert.throws(() => aggregate(updates, { global, core: [true] }), /core has 1 flags for 5 updates/);
});

test("fedlearn: aggregate rejects and counts NaN, Infinity, wrong-length and bad-n updates, never averaging them in", () => {
  const global = f32(0, 0);
  const good: ModelUpdate[] = [{ params: f32(1, 2), n: 5 }, { params: f32(3, 4), n: 5 }];
  const bad: ModelUpdate[] = [
    { params: f32(NaN, 0), n: 5 }, { params: f32(0, Infinity), n: 5 }, { params: f32(1, 2, 3), n: 5 }, { params: f32(9, 9), n: -1 },
  ];
  const r = aggregate([...good, ...bad], { global, core: new Array<boolean>(6).fill(true) });
  assert.ok(r.ok);
  assert.deepEqual(Array.from(r.params), [2, 3]);
  assert.deepEqual(r.accepted, [0, 1]);
  assert.deepEqual(r.rejected, [
    { index: 2, reason: "non-finite" }, { index: 3, reason: "non-finite" }, { index: 4, reason: "length" }, { index: 5, reason: "bad-n" },
  ]);
  const none = aggregate(bad, { global, core: [false, false, false, false] });
  assert.equal(none.ok, false);
  assert.equal(none.rejected.length, 4);
  const empty = aggregate([], { global, core: [] });
  assert.deepEqual(empty, { ok: false, error: "no-valid-updates", rejected: [] });
});

test("fedlearn: aggregate clips each delta when asked, and caps n for FedAvg", () => {
  const global = f32(0, 0);
  const updates: ModelUpdate[] = [{ params: f32(3, 4), n: 1 }, { params: f32(0.3, 0.4), n: 1 }];
  const r = aggregate(updates, { global, core: [true, true], maxDeltaNorm: 1 });
  assert.ok(r.ok);
  assert.equal(r.clipped, 1);
  // (3, 4) clipped to (0.6, 0.8), then averaged with (0.3, 0.4); float32 rounding aside.
  assert.ok(Math.abs((r.params[0] as number) - 0.45) < 1e-6 && Math.abs((r.params[1] as number) - 0.6) < 1e-6, `${Array.from(r.params)}`);
  const capped = aggregate([{ params: f32(0), n: 1e12 }, { params: f32(1), n: 10 }], { global: f32(0), core: [true, true], capN: 10 });
  assert.ok(capped.ok);
  assert.deepEqual(Array.from(capped.params), [0.5]);
});
