import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { createRng } from "../../../src/core/util/rng.ts";
import {
  accuracy, bayesPosterior, bayesPredict, bestThresholdBaseline, generateSensorData, split, thresholdPredict,
  type SensorExample,
} from "../../../src/core/brain/data.ts";

test("data: examples have the four sensor tokens, four values and a class; the stream is seeded", () => {
  const a = generateSensorData(createRng(1), 200);
  const b = generateSensorData(createRng(1), 200);
  const c = generateSensorData(createRng(2), 200);
  assert.equal(a.length, 200);
  for (const ex of a) {
    assert.deepEqual(Array.from(ex.ids), [0, 1, 2, 3]);
    assert.equal(ex.values.length, 4);
    assert.ok(ex.values.every(Number.isFinite));
    assert.ok([0, 1, 2].includes(ex.label));
  }
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.equal(new Set(a.map((e) => e.label)).size, 3);
  assert.throws(() => generateSensorData(createRng(1), -1), RangeError);
  assert.throws(() => generateSensorData(createRng(1), 1, { labelNoise: 0.7 }), RangeError);
});

test("data: values are standardised (mean ≈ 0, standard deviation ≈ 1 per sensor)", () => {
  const data = generateSensorData(createRng(3), 20_000);
  for (let j = 0; j < 4; j++) {
    const xs = data.map((e) => e.values[j] as number);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length);
    assert.ok(Math.abs(mean) < 0.04, `sensor ${j} mean ${mean}`);
    assert.ok(Math.abs(sd - 1) < 0.04, `sensor ${j} sd ${sd}`);
  }
});

/** Brute force over every pair of cut points and all 27 class assignments. */
function bruteForceBest(train: readonly SensorExample[]): number {
  let best = 0;
  for (let f = 0; f < 4; f++) {
    const vals = [...new Set(train.map((e) => e.values[f] as number))].sort((x, y) => x - y);
    const cuts = [-Infinity, ...vals.slice(1).map((v, i) => (v + (vals[i] as number)) / 2), Infinity];
    for (const t1 of cuts) {
      for (const t2 of cuts) {
        if (t2 < t1) continue;
        for (let code = 0; code < 27; code++) {
          const classes = [code % 3, Math.floor(code / 3) % 3, Math.floor(code / 9)] as const;
          const rule = { feature: f, thresholds: [t1, t2] as const, classes };
          let correct = 0;
          for (const ex of train) if (thresholdPredict(rule, ex) === ex.label) correct++;
          best = Math.max(best, correct);
        }
      }
    }
  }
  return best;
}

test("data: bestThresholdBaseline finds the exhaustive optimum (property, with tied values)", () => {
  const example = fc.record({
    v: fc.array(fc.integer({ min: -4, max: 4 }), { minLength: 4, maxLength: 4 }),
    y: fc.integer({ min: 0, max: 2 }),
  });
  fc.assert(fc.property(fc.array(example, { minLength: 1, maxLength: 14 }), (rows) => {
    const train: SensorExample[] = rows.map((r) => ({ ids: Int32Array.of(0, 1, 2, 3), values: Float32Array.from(r.v, (x) => x / 2), label: r.y }));
    const rule = bestThresholdBaseline(train, train);
    assert.equal(Math.round(rule.trainAccuracy * train.length), bruteForceBest(train));
    // The reported rule really has the reported accuracy, and its thresholds are ordered.
    assert.equal(rule.heldOutAccuracy, rule.trainAccuracy);
    assert.ok(rule.thresholds[0] <= rule.thresholds[1]);
  }), { numRuns: 150 });
});

test("data: no single-feature threshold rule comes close to a model that combines the sensors", () => {
  // The numbers quoted in src/core/brain/data.ts's header come from this test (n = 4000, 25 % held out).
  for (const seed of [1, 2, 3]) {
    const { train, heldOut } = split(generateSensorData(createRng(seed), 4000), 0.25, createRng(seed, 7));
    const rule = bestThresholdBaseline(train, heldOut);
    const bayes = accuracy((e) => bayesPredict(e.values), heldOut);
    assert.ok(rule.trainAccuracy < 0.75 && rule.heldOutAccuracy > 0.55 && rule.heldOutAccuracy < 0.75, `seed ${seed}: ${JSON.stringify(rule)}`);
    assert.ok(bayes > 0.88, `seed ${seed}: Bayes ${bayes}`);
    assert.ok(bayes - rule.heldOutAccuracy > 0.2, `seed ${seed}: Bayes ${bayes} vs threshold ${rule.heldOutAccuracy}`);
    // Every feature alone is far from perfect on its own best rule.
    for (let f = 0; f < 4; f++) {
      const one = (exs: SensorExample[]): SensorExample[] => exs.map((e) => ({ ...e, values: Float32Array.of(e.values[f] as number, 0, 0, 0) }));
      assert.ok(bestThresholdBaseline(one(train), []).trainAccuracy < 0.75);
    }
  }
});

test("data: bayesPosterior is a distribution and its argmax is bayesPredict", () => {
  for (const ex of generateSensorData(createRng(4), 100)) {
    const p = bayesPosterior(ex.values);
    assert.ok(Math.abs(p[0] + p[1] + p[2] - 1) < 1e-12);
    assert.equal(bayesPredict(ex.values), p.indexOf(Math.max(...p)));
  }
});

test("data: skew gives non-IID local data (class priors, fault kinds, feature shift)", () => {
  const quiet = generateSensorData(createRng(5), 500, { skew: { classPriors: [1, 0, 0] }, labelNoise: 0 });
  assert.ok(quiet.every((e) => e.label === 0));
  const base = generateSensorData(createRng(6), 300);
  const shifted = generateSensorData(createRng(6), 300, { skew: { featureShift: [0.5, 0, -1, 0] } });
  base.forEach((e, i) => {
    const s = shifted[i] as SensorExample;
    assert.equal(s.label, e.label);
    assert.ok(Math.abs((s.values[0] as number) - (e.values[0] as number) - 0.5) < 1e-5);
    assert.ok(Math.abs((s.values[2] as number) - (e.values[2] as number) + 1) < 1e-5);
    assert.equal(s.values[1], e.values[1]);
  });
  // A site that only ever overheats: its faults move temperature, and leave pressure as it is.
  const overheat = generateSensorData(createRng(8), 3000, { skew: { kindPriors: [1, 0, 0] }, labelNoise: 0 });
  const meanOf = (label: number, j: number): number => {
    const xs = overheat.filter((e) => e.label === label);
    return xs.reduce((s, e) => s + (e.values[j] as number), 0) / xs.length;
  };
  assert.ok(meanOf(2, 0) - meanOf(0, 0) > 2, `temperature ${meanOf(2, 0)} vs ${meanOf(0, 0)}`);
  assert.ok(Math.abs(meanOf(2, 2) - meanOf(0, 2)) < 0.1, `pressure ${meanOf(2, 2)} vs ${meanOf(0, 2)}`);
  // The Bayes rule told about the skew does better than one that is not.
  const { train, heldOut } = split(generateSensorData(createRng(9), 2000, { skew: { featureShift: [1, 1, 1, 1] } }), 0.5, createRng(9));
  assert.ok(train.length === 1000);
  const told = accuracy((e) => bayesPredict(e.values, { featureShift: [1, 1, 1, 1] }), heldOut);
  const untold = accuracy((e) => bayesPredict(e.values), heldOut);
  assert.ok(told > untold + 0.1, `told ${told} untold ${untold}`);
});

test("data: split is a seeded partition; accuracy counts matches", () => {
  const items = Array.from({ length: 101 }, (_, i) => i);
  const { train, heldOut } = split(items, 0.3, createRng(1));
  assert.equal(heldOut.length, 30);
  assert.equal(train.length, 71);
  assert.deepEqual([...train, ...heldOut].sort((a, b) => a - b), items);
  assert.deepEqual(split(items, 0.3, createRng(1)), { train, heldOut });
  assert.notDeepEqual(heldOut, items.slice(0, 30));
  assert.throws(() => split(items, 1.5, createRng(1)), RangeError);
  const exs = generateSensorData(createRng(2), 4);
  assert.equal(accuracy((e) => e.label, exs), 1);
  assert.equal(accuracy((e) => (e.label + 1) % 3, exs), 0);
  assert.throws(() => accuracy(() => 0, []), RangeError);
});
