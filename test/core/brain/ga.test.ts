import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { createRng } from "../../../src/core/util/rng.ts";
import {
  GA_CHAIN_MAX, GA_MUTATION_STREAM, applyMutation, gaStep, normalSampler, portableLn, portableSinCos2Pi, replay,
  type Mutation,
} from "../../../src/core/brain/ga.ts";

function bytes(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

test("ga: portableLn and portableSinCos2Pi agree with Math to within 1e-15", () => {
  const rng = createRng(5);
  for (let i = 0; i < 20_000; i++) {
    const x = (4294967296 - rng.nextU32()) / 4294967296;
    if (x !== 1) assert.ok(Math.abs(portableLn(x) - Math.log(x)) <= 2e-15 * Math.abs(Math.log(x)), `ln ${x}`);
    const u = rng.next();
    const [c, s] = portableSinCos2Pi(u);
    assert.ok(Math.abs(c - Math.cos(2 * Math.PI * u)) < 2e-15, `cos ${u}`);
    assert.ok(Math.abs(s - Math.sin(2 * Math.PI * u)) < 2e-15, `sin ${u}`);
  }
  assert.equal(portableLn(1), 0);
  assert.equal(portableLn(2 ** -32), -32 * 0.6931471805599453);
  assert.deepEqual(portableSinCos2Pi(0), [1, 0]);
  assert.throws(() => portableLn(0), RangeError);
  assert.throws(() => portableSinCos2Pi(1), RangeError);
});

test("ga: the specified Box–Muller stream is pinned (a change breaks cross-node replay)", () => {
  // Regression vector for createRng(1, GA_MUTATION_STREAM): if this changes, mutants built by an
  // older node no longer match — bump the mutation format instead.
  const s = normalSampler(createRng(1, GA_MUTATION_STREAM));
  assert.deepEqual(Array.from({ length: 6 }, () => s.next()), [
    2.217676191298809, -0.5127946004397128, -0.18064296273873015,
    -0.17263057013087574, -0.28283428125429994, 0.8429126949086119,
  ]);
  assert.deepEqual(Array.from(applyMutation(new Float32Array(6), { seed: 1, sigma: 1 })), [
    2.2176761627197266, -0.5127946138381958, -0.1806429624557495,
    -0.17263056337833405, -0.2828342914581299, 0.8429126739501953,
  ]);
});

test("ga: the normal draws have mean 0, variance 1 and the 68% one-sigma mass", () => {
  const s = normalSampler(createRng(99, 3));
  const n = 100_000;
  let sum = 0;
  let sq = 0;
  let within = 0;
  for (let i = 0; i < n; i++) {
    const z = s.next();
    sum += z;
    sq += z * z;
    if (Math.abs(z) < 1) within++;
  }
  const mean = sum / n;
  assert.ok(Math.abs(mean) < 0.015, `mean ${mean}`);
  assert.ok(Math.abs(sq / n - mean * mean - 1) < 0.02, `variance ${sq / n}`);
  assert.ok(Math.abs(within / n - 0.6827) < 0.006, `P(|z|<1) ${within / n}`);
});

test("ga: two nodes build bit-identical mutants from the same seed; other seeds differ", () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.double({ min: 1e-4, max: 10, noNaN: true }), (seed, sigma) => {
    const base = Float32Array.from({ length: 33 }, (_, i) => Math.sin(i));
    const nodeA = applyMutation(base.slice(), { seed, sigma });
    applyMutation(base, { seed: (seed + 1) >>> 0, sigma }); // unrelated work in between: no shared state
    const nodeB = applyMutation(Float32Array.from(base), { seed, sigma });
    assert.deepEqual(bytes(nodeA), bytes(nodeB));
    const other = applyMutation(base, { seed: (seed + 1) >>> 0, sigma });
    assert.notDeepEqual(bytes(other), bytes(nodeA));
  }), { numRuns: 100 });
});

test("ga: applyMutation leaves its input alone; sigma 0 is the identity; bad mutations throw", () => {
  const base = Float32Array.of(1, 2, 3);
  const mutant = applyMutation(base, { seed: 7, sigma: 0.5 });
  assert.deepEqual(Array.from(base), [1, 2, 3]);
  assert.notDeepEqual(Array.from(mutant), [1, 2, 3]);
  assert.deepEqual(Array.from(applyMutation(base, { seed: 7, sigma: 0 })), [1, 2, 3]);
  for (const bad of [{ seed: -1, sigma: 1 }, { seed: 2 ** 32, sigma: 1 }, { seed: 1.5, sigma: 1 }, { seed: 1, sigma: NaN }, { seed: 1, sigma: -1 }]) {
    assert.throws(() => applyMutation(base, bad), RangeError);
  }
});

test("ga: a mutant is kept exactly when it scores strictly better than the current params", () => {
  const small = fc.integer({ min: 0, max: 3 }); // few values, so ties are common
  fc.assert(fc.property(small, fc.array(small, { minLength: 1, maxLength: 8 }), fc.integer({ min: 0, max: 1000 }), (before, mutantScores, seed) => {
    const params = Float32Array.of(0.5, -0.25, 1);
    const scores = [before, ...mutantScores];
    const seen: Float32Array[] = [];
    const score = (p: Float32Array): number => {
      seen.push(p);
      return scores[seen.length - 1] as number;
    };
    const r = gaStep(createRng(seed), params, score, { population: mutantScores.length, sigma: 0.1 });
    const best = Math.max(...mutantScores);
    assert.equal(r.kept, best > before);
    assert.equal(r.before, before);
    assert.equal(r.bestMutantScore, best);
    const seeds = Array.from({ length: mutantScores.length }, ((g) => () => g.nextU32())(createRng(seed)));
    if (r.kept) {
      const first = mutantScores.indexOf(best);
      assert.equal(r.after, best);
      assert.deepEqual(r.mutation, { seed: seeds[first], sigma: 0.1 });
      assert.deepEqual(bytes(r.params), bytes(applyMutation(params, r.mutation as Mutation)));
      assert.deepEqual(bytes(r.params), bytes(seen[first + 1] as Float32Array));
    } else {
      assert.equal(r.mutation, undefined);
      assert.equal(r.after, before);
      assert.equal(r.params, params);
    }
  }), { numRuns: 300 });
});

test("ga: NaN scores never win, and any finite mutant beats a NaN current score", () => {
  const params = Float32Array.of(1, 2);
  const nanMutants = gaStep(createRng(1), params, (p) => (p === params ? 0 : NaN), { population: 4, sigma: 0.1 });
  assert.equal(nanMutants.kept, false);
  const nanCurrent = gaStep(createRng(1), params, (p) => (p === params ? NaN : -5), { population: 4, sigma: 0.1 });
  assert.equal(nanCurrent.kept, true);
  assert.equal(nanCurrent.before, -Infinity);
  assert.throws(() => gaStep(createRng(1), params, () => 0, { population: 0, sigma: 0.1 }), RangeError);
  assert.throws(() => gaStep(createRng(1), params, () => 0, { population: 2, sigma: 0 }), RangeError);
});

test("ga: on a quadratic, repeated steps never get worse, clearly improve, and replay from seeds", () => {
  const dim = 16;
  const target = Float32Array.from({ length: dim }, (_, i) => Math.cos(i) * 2);
  const score = (p: Float32Array): number => {
    let s = 0;
    for (let i = 0; i < dim; i++) s -= ((p[i] as number) - (target[i] as number)) ** 2;
    return s;
  };
  const base = new Float32Array(dim);
  const rng = createRng(2024);
  let params: Float32Array = base;
  const chain: Mutation[] = [];
  const initial = score(base);
  let last = initial;
  for (let step = 0; step < 150; step++) {
    const r = gaStep(rng, params, score, { population: 8, sigma: 0.1 });
    assert.ok(r.after >= last, `step ${step} went from ${last} to ${r.after}`);
    assert.equal(r.before, last);
    last = r.after;
    params = r.params;
    if (r.mutation !== undefined) chain.push(r.mutation);
  }
  assert.ok(last > initial * 0.25, `score ${last} vs initial ${initial}`);
  assert.ok(chain.length > 10);
  // A peer holding only the base and the seed chain rebuilds the same model, bit for bit.
  const rebuilt = replay(base, chain);
  assert.deepEqual(bytes(rebuilt), bytes(params));
  assert.deepEqual(Array.from(base), new Array<number>(dim).fill(0));
  assert.throws(() => replay(base, new Array<Mutation>(GA_CHAIN_MAX + 1).fill({ seed: 1, sigma: 0.1 })), RangeError);
  assert.throws(() => replay(base, [{ seed: 1, sigma: 0.1 }, { seed: -3, sigma: 0.1 }]), RangeError);
});
