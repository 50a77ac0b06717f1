// The Transformer of src/core/brain/transformer.ts: parameter layout, initialisation, the forward
// pass against a plain float64 oracle written from the spec, the KV-cache decode against the
// whole-sequence forward, the distributed building blocks (head ranges, FFN column ranges) against
// the whole layer, and the analytic gradient against central differences in float64
// (research/anchors-brain.md §4.4: h = 1e-5, relative error < 1e-6) for EVERY parameter.
//
// Measured once (Node 24, f32, warm, on this 2-core VM shared with other jobs: load average 2.8) at
// { vocab 64, seqLen 256, dModel 256, nHeads 8, dFF 1024, nLayers 4, nClasses 3 } (3.24 M
// parameters, ≈ 1.74 GFLOP per 256-token forward):
//   forward over 256 tokens              ≈ 350 ms (≈ 5 GFLOP/s; 410 ms cold)
//   decode step with a KV cache          ≈ 1.8–2.2 ms at position 10, ≈ 3.1 ms at position 250
//   lossAndGrad, one 256-token example   ≈ 1.0 s
// bench/brain.ts is the place for the living numbers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRng, type Rng } from "../../../src/core/util/rng.ts";
import {
  attendHeads, attentionInputs, configError, createLayerActs, embed, type Example, ffn, fillNormal, forward, initParams, inputError,
  KvCache, layerWeights, layout, lossAndGrad, type ModelConfig, modelWeights, paramCount, paramTensor, paramView,
  SEED_CONFIG, step, validateConfig, type Vec, weightDecayMask, Workspace,
} from "../../../src/core/brain/transformer.ts";

const SMALL: ModelConfig = { vocab: 7, seqLen: 5, dModel: 12, nHeads: 3, dFF: 24, nLayers: 2, nClasses: 3 };
const MEDIUM: ModelConfig = { vocab: 11, seqLen: 33, dModel: 24, nHeads: 4, dFF: 37, nLayers: 3, nClasses: 5 };

function randomSequence(rng: Rng, cfg: ModelConfig, T: number): { ids: Int32Array; values: Float32Array } {
  const ids = new Int32Array(T), values = new Float32Array(T);
  for (let t = 0; t < T; t++) {
    ids[t] = rng.int(cfg.vocab);
    values[t] = rng.next() * 4 - 2;
  }
  return { ids, values };
}

/** Every parameter random (std `std`), LayerNorm gains around 1, so no gradient is trivially zero. */
function randomParams(cfg: ModelConfig, seed: number, std: number): Float64Array {
  const p = new Float64Array(paramCount(cfg));
  fillNormal(p, 0, p.length, std, createRng(seed));
  for (const t of layout(cfg)) if (t.name.endsWith(".g")) for (let i = t.offset; i < t.offset + t.size; i++) p[i] = p[i]! + 1;
  return p;
}

// ---------------------------------------------------------------------------------------------
// A float64 oracle straight from the spec: arrays of numbers, no kernels, no workspace.

function oracleForward(cfg: ModelConfig, params: Vec, ids: Int32Array, values: Vec): number[] {
  const d = cfg.dModel, dh = d / cfg.nHeads, T = ids.length;
  const P = (name: string): number[] => [...paramView(cfg, params, name)];
  const linear = (x: number[], W: number[], b: number[], nOut: number): number[] =>
    b.slice(0, nOut).map((bj, j) => x.reduce((s, xi, i) => s + xi * W[j * x.length + i]!, bj));
  const ln = (x: number[], g: number[], b: number[]): number[] => {
    const m = x.reduce((s, v) => s + v, 0) / x.length;
    const v = x.reduce((s, u) => s + (u - m) ** 2, 0) / x.length;
    return x.map((u, i) => ((u - m) / Math.sqrt(v + 1e-5)) * g[i]! + b[i]!);
  };
  const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  const tok = P("tokEmb"), val = P("valEmb"), pos = P("posEmb");
  let h: number[][] = [];
  for (let t = 0; t < T; t++) h.push(val.map((ve, i) => tok[ids[t]! * d + i]! + values[t]! * ve + pos[t * d + i]!));
  for (let l = 0; l < cfg.nLayers; l++) {
    const L = (n: string) => P(`layers.${l}.${n}`);
    const a = h.map((row) => ln(row, L("ln1.g"), L("ln1.b")));
    const q = a.map((r) => linear(r, L("wq"), L("bq"), d));
    const k = a.map((r) => linear(r, L("wk"), L("bk"), d));
    const v = a.map((r) => linear(r, L("wv"), L("bv"), d));
    const att = h.map(() => new Array<number>(d).fill(0));
    for (let j = 0; j < cfg.nHeads; j++) {
      for (let t = 0; t < T; t++) {
        const s: number[] = [];
        for (let u = 0; u <= t; u++) {
          let dot = 0;
          for (let c = j * dh; c < (j + 1) * dh; c++) dot += q[t]![c]! * k[u]![c]!;
          s.push(dot / Math.sqrt(dh));
        }
        const mx = Math.max(...s);
        const e = s.map((x) => Math.exp(x - mx));
        const z = e.reduce((x, y) => x + y, 0);
        for (let u = 0; u <= t; u++) for (let c = j * dh; c < (j + 1) * dh; c++) att[t]![c]! += (e[u]! / z) * v[u]![c]!;
      }
    }
    h = h.map((row, t) => linear(att[t]!, L("wo"), L("bo"), d).map((o, i) => row[i]! + o));
    h = h.map((row) => {
      const f = ln(row, L("ln2.g"), L("ln2.b"));
      const act = linear(f, L("w1"), L("b1"), cfg.dFF).map(gelu);
      return linear(act, L("w2"), L("b2"), d).map((o, i) => row[i]! + o);
    });
  }
  const z = ln(h[T - 1]!, P("lnf.g"), P("lnf.b"));
  return linear(z, P("wh"), P("bh"), cfg.nClasses);
}

function crossEntropy(logits: ArrayLike<number>, label: number): number {
  let mx = -Infinity;
  for (let i = 0; i < logits.length; i++) mx = Math.max(mx, logits[i]!);
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += Math.exp(logits[i]! - mx);
  return mx + Math.log(s) - logits[label]!;
}

// ---------------------------------------------------------------------------------------------

test("transformer: the seed model has 715 parameters laid out in the spec's order", () => {
  assert.equal(paramCount(SEED_CONFIG), 715);
  const L = layout(SEED_CONFIG);
  assert.deepEqual(L.map((t) => t.name), [
    "tokEmb", "valEmb", "posEmb",
    "layers.0.ln1.g", "layers.0.ln1.b", "layers.0.wq", "layers.0.bq", "layers.0.wk", "layers.0.bk", "layers.0.wv", "layers.0.bv",
    "layers.0.wo", "layers.0.bo", "layers.0.ln2.g", "layers.0.ln2.b", "layers.0.w1", "layers.0.b1", "layers.0.w2", "layers.0.b2",
    "lnf.g", "lnf.b", "wh", "bh",
  ]);
  assert.deepEqual(L.map((t) => t.size), [32, 8, 32, 8, 8, 64, 8, 64, 8, 64, 8, 64, 8, 8, 8, 128, 16, 128, 8, 8, 8, 24, 3]);
  assert.deepEqual(paramTensor(SEED_CONFIG, "layers.0.w1").shape, [16, 8]);
  assert.deepEqual(paramTensor(SEED_CONFIG, "layers.0.w2").shape, [8, 16]);
  assert.deepEqual(paramTensor(SEED_CONFIG, "wh").shape, [3, 8]);
  for (const cfg of [SEED_CONFIG, SMALL, MEDIUM]) {
    const tensors = layout(cfg);
    let offset = 0;
    for (const t of tensors) {
      assert.equal(t.offset, offset, t.name);
      assert.equal(t.size, t.shape.reduce((a, b) => a * b, 1), t.name);
      offset += t.size;
    }
    assert.equal(offset, paramCount(cfg));
    // The typed views point at the same entries as the layout.
    const p = new Float32Array(paramCount(cfg)).map((_, i) => i);
    const w = modelWeights(cfg, p);
    for (let l = 0; l < cfg.nLayers; l++) {
      const lw = layerWeights(cfg, p, l);
      for (const [key, name] of [["ln1g", "ln1.g"], ["wq", "wq"], ["bv", "bv"], ["wo", "wo"], ["ln2b", "ln2.b"], ["w1", "w1"], ["b2", "b2"]] as const) {
        const t = paramTensor(cfg, `layers.${l}.${name}`);
        assert.equal(lw[key].length, t.size);
        assert.equal(lw[key][0], t.offset, `layers.${l}.${name}`);
        assert.equal(w.layers[l]![key][0], t.offset);
      }
    }
    assert.equal(w.bh[w.bh.length - 1], paramCount(cfg) - 1);
    assert.equal(w.lnfG[0], paramTensor(cfg, "lnf.g").offset);
    assert.equal(paramView(cfg, p, "posEmb")[0], cfg.vocab * cfg.dModel + cfg.dModel);
  }
  assert.throws(() => paramTensor(SEED_CONFIG, "layers.1.wq"), RangeError);
});

test("transformer: validateConfig names what is wrong", () => {
  assert.equal(configError(SEED_CONFIG), null);
  assert.equal(validateConfig(SMALL), SMALL);
  const cases: [unknown, RegExp][] = [
    [null, /object/],
    [{ ...SEED_CONFIG, nHeads: 3 }, /dModel \(8\) must be a multiple of nHeads \(3\)/],
    [{ ...SEED_CONFIG, dFF: 0 }, /dFF must be a positive integer/],
    [{ ...SEED_CONFIG, vocab: 2.5 }, /vocab must be a positive integer/],
    [{ ...SEED_CONFIG, seqLen: "4" }, /seqLen must be a positive integer/],
    [{ ...SEED_CONFIG, nLayers: undefined }, /nLayers must be a positive integer/],
    [{ ...SEED_CONFIG, nClasses: 1e9 }, /nClasses = 1000000000 exceeds/],
    [{ ...SEED_CONFIG, dModel: 8192, dFF: 32768, nLayers: 64, nHeads: 8 }, /parameters exceed/],
  ];
  for (const [cfg, re] of cases) {
    assert.match(configError(cfg) ?? "", re);
    assert.throws(() => validateConfig(cfg), re);
  }
});

test("transformer: initParams is deterministic and GPT-2-like", () => {
  const cfg = MEDIUM;
  const a = initParams(cfg, createRng(42)), b = initParams(cfg, createRng(42)), c = initParams(cfg, createRng(43));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  let n = 0, s = 0, s2 = 0;
  for (const t of layout(cfg)) {
    const v = a.subarray(t.offset, t.offset + t.size);
    if (t.name.endsWith(".g")) assert.ok(v.every((x) => x === 1), t.name);
    else if (t.shape.length === 1 && t.name !== "valEmb") assert.ok(v.every((x) => x === 0), t.name);
    else for (const x of v) { n++; s += x; s2 += x * x; }
  }
  const mean = s / n, std = Math.sqrt(s2 / n - mean * mean);
  assert.ok(n > 10000 && Math.abs(mean) < 0.001 && Math.abs(std - 0.02) < 0.0005, `mean ${mean}, std ${std} over ${n}`);
  assert.deepEqual([...weightDecayMask(SEED_CONFIG)].reduce((x, y) => x + y, 0), 32 + 32 + 4 * 64 + 128 + 128 + 24);
});

test("transformer: forward equals the float64 oracle (f32 within 1e-5, f64 within 1e-12)", () => {
  const rng = createRng(5);
  for (const cfg of [SEED_CONFIG, SMALL, MEDIUM]) {
    const p64 = randomParams(cfg, 7, 0.4), p32 = new Float32Array(p64);
    const ws32 = new Workspace(cfg, Float32Array), ws64 = new Workspace(cfg, Float64Array, { training: true });
    for (const T of [1, 2, cfg.seqLen]) {
      const { ids, values } = randomSequence(rng, cfg, T);
      const ref = oracleForward(cfg, p64, ids, values);
      const ref32 = oracleForward(cfg, p32, ids, values);
      const got64 = forward(cfg, p64, ids, values, ws64);
      const got32 = forward(cfg, p32, ids, values, ws32);
      assert.equal(got32.length, cfg.nClasses);
      assert.ok(got32 instanceof Float32Array && got64 instanceof Float64Array);
      const scale = Math.max(1, ...ref.map(Math.abs));
      for (let c = 0; c < cfg.nClasses; c++) {
        assert.ok(Math.abs(got64[c]! - ref[c]!) <= 1e-12 * scale, `f64 ${cfg.dModel}/${T} class ${c}: ${got64[c]} vs ${ref[c]}`);
        assert.ok(Math.abs(got32[c]! - ref32[c]!) <= 1e-5 * scale, `f32 ${cfg.dModel}/${T} class ${c}: ${got32[c]} vs ${ref32[c]}`);
      }
      // Without a workspace: same answer in a fresh array.
      assert.deepEqual(forward(cfg, p32, ids, values), got32);
    }
  }
});

test("transformer: decoding token by token with a KV cache equals the whole-sequence forward", () => {
  const rng = createRng(6);
  for (const cfg of [SEED_CONFIG, SMALL, MEDIUM]) {
    const params = new Float32Array(randomParams(cfg, 1, 0.3));
    const T = cfg.seqLen;
    const { ids, values } = randomSequence(rng, cfg, T);
    const ws = new Workspace(cfg, Float32Array);
    const cache = new KvCache(cfg);
    for (let t = 0; t < T; t++) {
      const got = [...step(cfg, params, cache, ids[t]!, values[t]!)];
      const ref = [...forward(cfg, params, ids.subarray(0, t + 1), values.subarray(0, t + 1), ws)];
      assert.equal(cache.length, t + 1);
      for (let c = 0; c < cfg.nClasses; c++) assert.ok(Math.abs(got[c]! - ref[c]!) <= 1e-5 * Math.max(1, Math.abs(ref[c]!)), `pos ${t}: ${got} vs ${ref}`);
    }
    assert.throws(() => step(cfg, params, cache, 0, 0), /KV cache is full/);

    // Prefill with forward(…, cache), then continue with step.
    const half = Math.ceil(T / 2);
    cache.reset();
    forward(cfg, params, ids.subarray(0, half), values.subarray(0, half), ws, cache);
    assert.equal(cache.length, half);
    let last: number[] = [];
    for (let t = half; t < T; t++) last = [...step(cfg, params, cache, ids[t]!, values[t]!)];
    const whole = [...forward(cfg, params, ids, values, ws)];
    if (half < T) for (let c = 0; c < cfg.nClasses; c++) assert.ok(Math.abs(last[c]! - whole[c]!) <= 1e-5 * Math.max(1, Math.abs(whole[c]!)));
  }
});

test("transformer: head ranges and FFN column ranges add up to the whole layer (tensor parallelism)", () => {
  const cfg = MEDIUM, d = cfg.dModel, T = 9;
  const params = new Float32Array(randomParams(cfg, 3, 0.3));
  const rng = createRng(8);
  const w = modelWeights(cfg, params);
  const { ids, values } = randomSequence(rng, cfg, T);
  const h = new Float32Array(T * d);
  embed(cfg, w, ids, values, 0, T, h);
  const lw = w.layers[1]!;
  const acts = createLayerActs(cfg, Float32Array, T);
  attentionInputs(cfg, lw, h, T, acts);
  const full = new Float32Array(T * d), parts = new Float32Array(T * d);
  attendHeads(cfg, full, acts.q, acts.k, acts.v, T, 0, 0, cfg.nHeads, acts.probs);
  for (const [h0, h1] of [[0, 1], [1, 3], [3, 4]] as const) attendHeads(cfg, parts, acts.q, acts.k, acts.v, T, 0, h0, h1, acts.probs);
  assert.deepEqual(parts, full);

  const whole = new Float32Array(T * d), sum = new Float32Array(T * d), part = new Float32Array(T * d);
  ffn(cfg, lw, h, T, acts, whole, false);
  for (const [c0, c1] of [[0, 10], [10, 11], [11, 30], [30, 37]] as const) {
    ffn(cfg, lw, h, T, createLayerActs(cfg, Float32Array, T), part, false, c0, c1);
    for (let i = 0; i < sum.length; i++) sum[i] = sum[i]! + part[i]!;
  }
  for (let i = 0; i < sum.length; i++) assert.ok(Math.abs(sum[i]! - whole[i]!) <= 1e-5 * Math.max(1, Math.abs(whole[i]!)), `${i}: ${sum[i]} vs ${whole[i]}`);
  // The bias b2 is counted once, by the range starting at column 0.
  ffn(cfg, lw, h, T, acts, part, false, 5, 5);
  assert.ok(part.every((x) => x === 0));
  ffn(cfg, lw, h, T, acts, part, false, 0, 0);
  for (let t = 0; t < T; t++) for (let i = 0; i < d; i++) assert.equal(part[t * d + i], lw.b2[i]);
});

// Denominator floor of the relative error. The loss is computed to about 1e-15 absolute, so a central
// difference with h = 1e-5 carries ≈ 1e-15 / 1e-5 = 1e-10 of round-off whatever the gradient is
// (measured on a layers.1.w1 entry of 1.47e-5: relative error 9e-7 at h = 1e-4, 2.8e-6 at 1e-5,
// 1.9e-5 at 1e-6 — the error grows as 1/h, the analytic value is right). A floor of 1e-8 would ask
// gradients near 1e-5 for more digits than double precision gives; with 1e-4 every gradient of
// magnitude ≥ 1e-4 is held to a relative 1e-6 and smaller ones to an absolute 1e-10.
const FLOOR = 1e-4;

/** Central differences of the mean loss at every index in `indices`, against lossAndGrad. */
function gradientCheck(cfg: ModelConfig, params: Float64Array, batch: Example[], indices: Iterable<number>): { checked: number; worst: number; nonzero: number } {
  // nonzero counts the gradients above FLOOR, i.e. those held to the strict relative bound.
  const grad = new Float64Array(params.length);
  const ws = new Workspace(cfg, Float64Array, { training: true });
  const loss = lossAndGrad(cfg, params, batch, grad, ws);
  const inf = new Workspace(cfg, Float64Array);
  const meanLoss = () => batch.reduce((s, ex) => s + crossEntropy(forward(cfg, params, ex.ids, ex.values, inf), ex.label), 0) / batch.length;
  assert.ok(Math.abs(loss - meanLoss()) <= 1e-13 * Math.max(1, loss), `loss ${loss} vs ${meanLoss()}`);
  const h = 1e-5;
  let checked = 0, worst = 0, nonzero = 0;
  for (const i of indices) {
    const keep = params[i]!;
    params[i] = keep + h;
    const up = meanLoss();
    params[i] = keep - h;
    const down = meanLoss();
    params[i] = keep;
    const num = (up - down) / (2 * h), ana = grad[i]!;
    const name = layout(cfg).find((t) => i >= t.offset && i < t.offset + t.size)!.name;
    checked++;
    if (/\.bk$/.test(name)) {
      // ∂L/∂bk is zero exactly: q·(k_s + bk) shifts every score of a query by the same q·bk, and
      // softmax ignores shifts. Central differences can only show round-off there, ≈ ε·L/h ≈ 1e-11.
      assert.ok(Math.abs(ana) < 1e-15 && Math.abs(num) < 1e-9, `${name} [${i}]: analytic ${ana}, numeric ${num} should both vanish`);
      continue;
    }
    const rel = Math.abs(num - ana) / Math.max(Math.abs(num), Math.abs(ana), FLOOR);
    worst = Math.max(worst, rel);
    if (Math.abs(ana) > FLOOR) nonzero++;
    assert.ok(rel < 1e-6, `parameter ${i} (${name}): analytic ${ana}, numeric ${num}, rel ${rel}`);
  }
  return { checked, worst, nonzero };
}

function batchOf(cfg: ModelConfig, seed: number, lengths: number[]): Example[] {
  const rng = createRng(seed);
  return lengths.map((T, n) => {
    const { ids, values } = randomSequence(rng, cfg, T);
    // Every token id occurs, so no embedding row is trivially unused.
    for (let t = 0; t < T; t++) ids[t] = (n * 3 + t * 5 + rng.int(2)) % cfg.vocab;
    return { ids, values, label: n % cfg.nClasses };
  });
}

test("transformer: analytic gradients of EVERY parameter match central differences (seed config, f64)", () => {
  const cfg = SEED_CONFIG;
  const params = randomParams(cfg, 11, 0.5);
  const batch = batchOf(cfg, 12, [4, 3, 4, 1, 2]);
  const all = Array.from({ length: params.length }, (_, i) => i);
  const r = gradientCheck(cfg, params, batch, all);
  assert.equal(r.checked, 715);
  assert.ok(r.nonzero >= 650, `only ${r.nonzero} of 715 gradients are above ${FLOOR}: the check would be weak`);
});

test("transformer: analytic gradients match central differences (2 layers, d 12, 3 heads, T 5, vocab 7, f64)", () => {
  const cfg = SMALL;
  const params = randomParams(cfg, 21, 0.4);
  const batch = batchOf(cfg, 22, [5, 3, 5]);
  const all = Array.from({ length: params.length }, (_, i) => i);
  const r = gradientCheck(cfg, params, batch, all);
  assert.equal(r.checked, paramCount(cfg));
  assert.ok(r.nonzero >= 0.8 * paramCount(cfg), `only ${r.nonzero} gradients are above ${FLOOR}`);
});

test("transformer: lossAndGrad averages over the batch and accumulates into grad", () => {
  const cfg = SMALL;
  const params = randomParams(cfg, 31, 0.3);
  const batch = batchOf(cfg, 32, [5, 2, 4]);
  const ws = new Workspace(cfg, Float64Array, { training: true });
  const gAll = new Float64Array(params.length);
  const loss = lossAndGrad(cfg, params, batch, gAll, ws);
  let sumLoss = 0;
  const gSum = new Float64Array(params.length);
  for (const ex of batch) {
    const g = new Float64Array(params.length);
    sumLoss += lossAndGrad(cfg, params, [ex], g, ws);
    for (let i = 0; i < g.length; i++) gSum[i] = gSum[i]! + g[i]! / batch.length;
  }
  assert.ok(Math.abs(loss - sumLoss / batch.length) < 1e-14);
  // Summed in another order, a component that cancels to ~1e-17 differs by a few ulps of the
  // gradient's scale, not of itself (arm64's last bits differ from x64's: component 480 was
  // 5.6e-17 against -5.9e-17 there), so the absolute part of the bound is relative to the scale.
  const scale = Math.max(...gSum.map(Math.abs));
  for (let i = 0; i < gAll.length; i++) assert.ok(Math.abs(gAll[i]! - gSum[i]!) <= 1e-12 * Math.abs(gSum[i]!) + 1e-14 * scale, `${i}: ${gAll[i]} vs ${gSum[i]}`);
  // A second call adds the same gradient again.
  lossAndGrad(cfg, params, batch, gAll, ws);
  for (let i = 0; i < gAll.length; i++) assert.ok(Math.abs(gAll[i]! - 2 * gSum[i]!) <= 1e-12 * Math.abs(gSum[i]!) + 2e-14 * scale, `${i}`);
  // f32 gives the same gradient to f32 precision.
  const g32 = new Float32Array(params.length);
  lossAndGrad(cfg, new Float32Array(params), batch, g32);
  for (let i = 0; i < g32.length; i++) assert.ok(Math.abs(g32[i]! - gSum[i]!) <= 1e-5 * scale, `${i}: ${g32[i]} vs ${gSum[i]}`);

  const p32 = new Float32Array(params);
  assert.throws(() => lossAndGrad(cfg, p32, batch, g32, new Workspace(cfg, Float32Array)), /training workspace/);
  assert.throws(() => lossAndGrad(cfg, p32, [{ ...batch[0]!, label: 3 }], g32), /label 3/);
  assert.throws(() => forward(cfg, p32, new Int32Array([7]), new Float32Array(1)), /token id 7/);
  assert.throws(() => forward(cfg, p32, new Int32Array(6), new Float32Array(6)), /sequence length 6/);
  assert.equal(inputError(cfg, new Int32Array([1, 6]), [0, 1]), null);
  assert.match(inputError(cfg, new Int32Array([1, 7]), [0, 1]) ?? "", /token id 7 at 1/);
  assert.match(inputError(cfg, new Int32Array([-1]), [0]) ?? "", /token id -1/);
  assert.match(inputError(cfg, new Int32Array(2), [0]) ?? "", /values has 1 entries/);
  assert.match(inputError(cfg, new Int32Array(1), [NaN]) ?? "", /not finite/);
  assert.match(inputError(cfg, new Int32Array(6), new Float32Array(6)) ?? "", /does not fit/);
  assert.match(inputError(cfg, new Int32Array(2), [0, 0], 4) ?? "", /does not fit/);
  assert.match(inputError(cfg, new Int32Array(0), []) ?? "", /does not fit/);
});
