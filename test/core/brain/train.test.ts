import { test } from "node:test";
import assert from "node:assert/strict";
import { createRng } from "../../../src/core/util/rng.ts";
import { SEED_CONFIG, Workspace, initParams, type Example } from "../../../src/core/brain/transformer.ts";
import { bestThresholdBaseline, generateSensorData, split, type SensorExample } from "../../../src/core/brain/data.ts";
import {
  TRAIN_DEFAULTS, Trainer, evaluate, predict, scheduledLr, trainModel, type TrainProgress,
} from "../../../src/core/brain/train.ts";

const cfg = SEED_CONFIG;

function dataset(seed: number, n = 4000): { train: SensorExample[]; heldOut: SensorExample[] } {
  return split(generateSensorData(createRng(seed), n), 0.25, createRng(seed, 2));
}

test("train: with the defaults the seed model beats the best threshold rule by > 0.10 held-out (seeds 1..3)", (t) => {
  for (const seed of [1, 2, 3]) {
    const { train, heldOut } = dataset(seed);
    const baseline = bestThresholdBaseline(train, heldOut).heldOutAccuracy;
    const params = initParams(cfg, createRng(seed, 3));
    const progress: TrainProgress[] = [];
    const t0 = performance.now();
    const report = trainModel(cfg, params, train, { rng: createRng(seed, 4), heldOut, onProgress: (p) => progress.push(p) });
    const ms = performance.now() - t0;
    const held = report.heldOutAccuracy;
    assert.ok(held !== null);
    t.diagnostic(`seed ${seed}: baseline ${baseline.toFixed(3)}, trained held-out ${held.toFixed(3)}, train ${report.trainAccuracy.toFixed(3)}, `
      + `final loss ${report.finalLoss.toFixed(3)}, ${report.steps} steps in ${ms.toFixed(0)} ms`);
    assert.ok(held > baseline + 0.1, `seed ${seed}: held-out ${held} vs baseline ${baseline}`);
    assert.ok(held >= 0.85, `seed ${seed}: held-out ${held}`);
    assert.equal(report.epochs, TRAIN_DEFAULTS.epochs);
    assert.equal(report.steps, TRAIN_DEFAULTS.epochs * Math.ceil(train.length / TRAIN_DEFAULTS.batchSize));
    assert.equal(report.stopped, false);
    // One progress report per epoch, with the held-out accuracy, the last one equal to the report's.
    assert.equal(progress.length, report.epochs);
    assert.deepEqual(progress.map((p) => p.epoch), Array.from({ length: report.epochs }, (_, i) => i + 1));
    assert.equal(progress.at(-1)?.heldOutAccuracy, held);
    assert.deepEqual(progress.map((p) => p.loss), report.lossCurve);
  }
});

test("train: the loss decreases (per-epoch curve and against the initial parameters)", () => {
  const { train, heldOut } = dataset(4, 1200);
  const params = initParams(cfg, createRng(4, 3));
  const before = evaluate(cfg, params, train);
  const report = trainModel(cfg, params, train, { rng: createRng(4, 4), heldOut, epochs: 8 });
  const curve = report.lossCurve;
  assert.equal(curve.length, 8);
  assert.ok(curve.every(Number.isFinite));
  assert.ok((curve.at(-1) as number) < (curve[0] as number) * 0.75, `loss curve ${curve.join(", ")}`);
  // Each epoch's mean loss is below the first's, and the last is within noise of the minimum.
  for (let e = 1; e < curve.length; e++) assert.ok((curve[e] as number) < (curve[0] as number), `epoch ${e}: ${curve[e]}`);
  assert.ok((curve.at(-1) as number) <= Math.min(...curve) + 0.02);
  assert.ok(report.finalLoss < before.loss - 0.3, `initial loss ${before.loss}, final ${report.finalLoss}`);
  assert.ok(Math.abs(before.loss - Math.log(3)) < 0.05, `initial loss ${before.loss} is about ln 3`);
});

test("train: deterministic — the same seed gives bit-identical parameters; another seed does not", () => {
  const { train } = dataset(5, 600);
  const run = (shuffleSeed: number, optimizer: "adamw" | "sgd"): Float32Array => {
    const p = initParams(cfg, createRng(7, 3));
    trainModel(cfg, p, train, { rng: createRng(shuffleSeed, 4), epochs: 3, optimizer, lr: optimizer === "sgd" ? 0.05 : 0.01 });
    return p;
  };
  for (const opt of ["adamw", "sgd"] as const) {
    const a = run(1, opt);
    const b = run(1, opt);
    const c = run(2, opt);
    assert.deepEqual(new Uint8Array(a.buffer), new Uint8Array(b.buffer), opt);
    assert.notDeepEqual(a, c, opt);
    assert.notDeepEqual(a, initParams(cfg, createRng(7, 3)), `${opt} changed the parameters`);
  }
});

test("train: a Trainer run in slices of any size gives the same bits as trainModel", () => {
  const { train, heldOut } = dataset(6, 500);
  const whole = initParams(cfg, createRng(6, 3));
  const reportWhole = trainModel(cfg, whole, train, { rng: createRng(6, 4), heldOut, epochs: 3, batchSize: 24 });
  const sliced = initParams(cfg, createRng(6, 3));
  const trainer = new Trainer(cfg, sliced, train, { rng: createRng(6, 4), heldOut, epochs: 3, batchSize: 24 });
  assert.equal(trainer.steps, 3 * Math.ceil(375 / 24));
  const sizes = [1, 5, 0, 7, 16, 2, 100];
  let calls = 0;
  let last;
  for (let i = 0; !trainer.done; i++) {
    last = trainer.runSteps(sizes[i % sizes.length] as number);
    calls++;
    assert.ok(last.taken <= (sizes[i % sizes.length] as number));
    assert.equal(last.step, Math.min(trainer.steps, last.step));
  }
  assert.ok(calls > 3);
  assert.equal(last?.done, true);
  assert.equal(last?.step, trainer.steps);
  assert.deepEqual(new Uint8Array(sliced.buffer), new Uint8Array(whole.buffer));
  assert.deepEqual(trainer.report(), reportWhole);
  assert.equal(trainer.runSteps(10).taken, 0);
});

test("train: shouldStop ends the training early and the report says so", () => {
  const { train } = dataset(7, 400);
  const params = initParams(cfg, createRng(7, 3));
  let checks = 0;
  const report = trainModel(cfg, params, train, { rng: createRng(7, 4), epochs: 5, shouldStop: () => ++checks > 12 });
  assert.equal(report.stopped, true);
  assert.equal(report.steps, 12);
  assert.equal(report.epochs, 1); // 300 examples / 32 = 10 steps per epoch
  assert.equal(report.heldOutAccuracy, null);
});

test("train: evaluate and predict agree; per-class counts and confusion add up", () => {
  const { train, heldOut } = dataset(8, 1200);
  const params = initParams(cfg, createRng(8, 3));
  trainModel(cfg, params, train, { rng: createRng(8, 4), epochs: 5 });
  const ev = evaluate(cfg, params, heldOut);
  const ws = new Workspace(cfg, Float32Array);
  let correct = 0;
  for (const ex of heldOut) if (predict(cfg, params, ex, ws) === ex.label) correct++;
  assert.equal(ev.accuracy, correct / heldOut.length);
  assert.equal(ev.perClass.reduce((s, c) => s + c.total, 0), heldOut.length);
  assert.equal(ev.perClass.reduce((s, c) => s + c.correct, 0), correct);
  assert.equal(ev.confusion.flat().reduce((s, x) => s + x, 0), heldOut.length);
  for (let c = 0; c < 3; c++) {
    assert.equal(ev.perClass[c]?.total, heldOut.filter((e) => e.label === c).length);
    assert.equal(ev.perClass[c]?.correct, ev.confusion[c]?.[c]);
  }
  assert.ok(ev.loss > 0 && Number.isFinite(ev.loss));
});

test("train: the cosine schedule warms up linearly, peaks at lr and ends at minLrFraction·lr", () => {
  const o = { lr: 0.01, schedule: "cosine" as const, warmupSteps: 4, minLrFraction: 0.1 };
  assert.equal(scheduledLr(0, 100, o), 0.002);
  assert.ok(Math.abs(scheduledLr(3, 100, o) - 0.008) < 1e-15);
  assert.ok(Math.abs(scheduledLr(4, 100, o) - 0.01) < 1e-15);
  assert.ok(Math.abs(scheduledLr(99, 100, o) - 0.001) < 1e-15);
  for (let s = 5; s < 100; s++) assert.ok(scheduledLr(s, 100, o) <= scheduledLr(s - 1, 100, o));
  assert.equal(scheduledLr(50, 100, { ...o, schedule: "constant" }), 0.01);
  assert.ok(Math.abs(scheduledLr(0, 1, o) - 0.01) < 1e-15); // a single step: no warm-up, peak lr
});

test("train: bad options and examples are RangeErrors", () => {
  const { train } = dataset(9, 40);
  const p = initParams(cfg, createRng(9, 3));
  const rng = createRng(1);
  assert.throws(() => trainModel(cfg, p, [], { rng }), RangeError);
  assert.throws(() => trainModel(cfg, p, train, { rng, epochs: -1 }), RangeError);
  assert.throws(() => trainModel(cfg, p, train, { rng, batchSize: 0 }), RangeError);
  assert.throws(() => trainModel(cfg, p, train, { rng, lr: NaN }), RangeError);
  assert.throws(() => trainModel(cfg, p, train, { rng, optimizer: "adam" as "adamw" }), RangeError);
  assert.throws(() => trainModel(cfg, p.subarray(1), train, { rng }), RangeError);
  const bad = { ...(train[0] as Example), label: 3 };
  assert.throws(() => trainModel(cfg, p, [bad], { rng }), RangeError);
  const nan = { ...(train[0] as Example), values: Float32Array.of(0, NaN, 0, 0) };
  assert.throws(() => evaluate(cfg, p, [nan]), RangeError);
  assert.throws(() => evaluate(cfg, p, []), RangeError);
});
