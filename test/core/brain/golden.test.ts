// The Transformer against PyTorch: fixtures made by scripts/brain-golden.py (torch float64, the model
// built from nn modules) hold parameters, inputs, logits, the batch loss and its gradient, and for
// the seed model the losses of 5 AdamW steps (the llm.c test pattern, research/anchors-brain.md
// §4.2). Our forward, lossAndGrad and AdamW must reproduce them within 1e-9 in float64 and 1e-5
// with float32 parameters. Reads JSON only; Python is not needed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  type Example, forward, lossAndGrad, type ModelConfig, paramCount, validateConfig, type Vec, weightDecayMask, Workspace,
} from "../../../src/core/brain/transformer.ts";
import { AdamW } from "../../../src/core/brain/optim.ts";

interface Fixture {
  config: ModelConfig;
  params: number[];
  examples: { ids: number[]; values: number[]; label: number; logits: number[] }[];
  loss: number;
  grad: number[];
  adamw?: { lr: number; weightDecay: number; beta1: number; beta2: number; eps: number; losses: number[] };
}

function load(name: string): Fixture {
  return JSON.parse(readFileSync(new URL(`../../testdata/brain/${name}`, import.meta.url), "utf8")) as Fixture;
}

const FIXTURES = ["golden-seed.json", "golden-small.json"];
const PRECISIONS = [
  { name: "f64", ctor: Float64Array, tol: 1e-9 },
  { name: "f32", ctor: Float32Array, tol: 1e-5 },
] as const;

/** |got − want| ≤ tol·max(1, |want|) for every element. */
function close(got: ArrayLike<number>, want: readonly number[], tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i]! - want[i]!) <= tol * Math.max(1, Math.abs(want[i]!)), `${what}[${i}]: ${got[i]} vs torch ${want[i]}`);
  }
}

function examplesOf(f: Fixture): Example[] {
  return f.examples.map((e) => ({ ids: Int32Array.from(e.ids), values: Float32Array.from(e.values), label: e.label }));
}

for (const file of FIXTURES) {
  for (const { name, ctor, tol } of PRECISIONS) {
    test(`golden ${file} (${name}): logits, loss and every gradient equal PyTorch's within ${tol}`, () => {
      const f = load(file);
      const cfg = validateConfig(f.config);
      assert.equal(f.params.length, paramCount(cfg));
      assert.ok(f.grad.some((g) => Math.abs(g) > 1e-3), "the fixture's gradient is not trivially zero");
      const params: Vec = ctor.from(f.params);
      const batch = examplesOf(f);
      const ws = new Workspace<Vec>(cfg, ctor);
      batch.forEach((ex, n) => close(forward(cfg, params, ex.ids, ex.values, ws), f.examples[n]!.logits, tol, `example ${n} logits`));
      const grad: Vec = new ctor(params.length);
      const loss = lossAndGrad(cfg, params, batch, grad);
      close([loss], [f.loss], tol, "loss");
      close(grad, f.grad, tol, "grad");
    });
  }
}

for (const { name, ctor, tol } of PRECISIONS) {
  test(`golden golden-seed.json (${name}): 5 AdamW steps give PyTorch's losses within ${tol}`, () => {
    const f = load("golden-seed.json");
    const cfg = validateConfig(f.config);
    const a = f.adamw;
    assert.ok(a !== undefined && a.losses.length === 5);
    const params: Vec = ctor.from(f.params);
    const batch = examplesOf(f);
    const ws = new Workspace<Vec>(cfg, ctor, { training: true });
    const grad: Vec = new ctor(params.length);
    const opt = new AdamW(params.length, {
      lr: a.lr, beta1: a.beta1, beta2: a.beta2, eps: a.eps, weightDecay: a.weightDecay,
      decayMask: weightDecayMask(cfg), state: name,
    });
    const losses: number[] = [];
    for (let s = 0; s < a.losses.length; s++) {
      grad.fill(0);
      losses.push(lossAndGrad(cfg, params, batch, grad, ws));
      opt.step(params, grad);
    }
    close(losses, a.losses, tol, "losses");
    assert.ok(losses[4]! < losses[0]! * 0.5, "training lowers the loss");
  });
}
