// AdamW and SGD against steps worked out by hand and against torch.optim (1.13, float64) on the same
// three gradients; parameter 3 has weight decay switched off (a second param group in PyTorch, a
// decay mask here).
import { test } from "node:test";
import assert from "node:assert/strict";
import { AdamW, clipGradNorm, SGD } from "../../../src/core/brain/optim.ts";

const GRADS = [
  [0.3, -0.1, 2.0, 0.5],
  [-0.2, 0.4, 1.0, -0.5],
  [0.1, 0.0, -3.0, 0.25],
];
const START = [1.0, -2.0, 0.5, 0.25];
const MASK = new Uint8Array([1, 1, 1, 0]);

function close(got: ArrayLike<number>, want: readonly number[], tol: number, what: string): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= tol * Math.max(1, Math.abs(want[i]!)), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

test("optim: AdamW's first step, by hand", () => {
  // m = (1−β1)g, v = (1−β2)g², so m̂ = g and v̂ = g²: p ← p·(1 − lr·wd) − lr·g/(|g| + eps).
  const lr = 0.1, wd = 0.1;
  const p = new Float64Array(START);
  const opt = new AdamW(4, { lr, weightDecay: wd, decayMask: MASK, state: "f64" });
  opt.step(p, new Float64Array(GRADS[0]!));
  const want = START.map((x, i) => x * (i < 3 ? 1 - lr * wd : 1) - (lr * GRADS[0]![i]!) / (Math.abs(GRADS[0]![i]!) + 1e-8));
  close(p, want, 1e-15, "adamw step 1");
  assert.equal(opt.t, 1);
  close(opt.m, GRADS[0]!.map((g) => 0.1 * g), 1e-16, "m");
  close(opt.v, GRADS[0]!.map((g) => 0.001 * g * g), 1e-16, "v");
});

test("optim: AdamW follows torch.optim.AdamW for three steps (f64 and f32 state)", () => {
  const torch = [0.8301305812923112, -1.941228634245054, 0.30305139657861424, 0.13779060677388005];
  for (const [state, tol] of [["f64", 1e-15], ["f32", 1e-6]] as const) {
    const p = new Float64Array(START);
    const opt = new AdamW(4, { lr: 0.1, weightDecay: 0.1, decayMask: MASK, state });
    for (const g of GRADS) opt.step(p, new Float64Array(g));
    close(p, torch, tol, `adamw ${state}`);
  }
  // Without a mask every parameter decays: parameter 3 ends lower than with the mask.
  const p = new Float32Array(START);
  const opt = new AdamW(4, { lr: 0.1, weightDecay: 0.1 });
  for (const g of GRADS) opt.step(p, new Float32Array(g));
  assert.ok(p[3]! < torch[3]! - 1e-3);
  assert.throws(() => opt.step(new Float32Array(3), new Float32Array(3)), /expected 4/);
});

test("optim: SGD with momentum (plain and Nesterov) follows torch.optim.SGD", () => {
  const plain = [0.892016, -1.937637, 0.04876949999999991, 0.18450000000000003];
  const nesterov = [0.855270764, -1.9153768230000001, 0.0957157905, 0.16605000000000003];
  for (const [want, useNesterov] of [[plain, false], [nesterov, true]] as const) {
    const p = new Float64Array(START);
    const opt = new SGD(4, { lr: 0.1, momentum: 0.9, nesterov: useNesterov, weightDecay: 0.1, decayMask: MASK, state: "f64" });
    for (const g of GRADS) opt.step(p, new Float64Array(g));
    close(p, want, 1e-15, useNesterov ? "nesterov" : "momentum");
  }
  // Plain gradient descent: p ← p − lr·g, by hand.
  const p = new Float64Array(START);
  const opt = new SGD(4, { lr: 0.5 });
  opt.step(p, new Float64Array(GRADS[0]!));
  close(p, START.map((x, i) => x - 0.5 * GRADS[0]![i]!), 0, "sgd");
  assert.throws(() => new SGD(2, { lr: 0.1, nesterov: true }), /Nesterov needs momentum/);
});

test("optim: clipGradNorm scales to the bound like torch.nn.utils.clip_grad_norm_", () => {
  const g = new Float64Array([3, 4, 0]);
  assert.equal(clipGradNorm(g, 2), 5);
  close(g, [1.199999760000048, 1.599999680000064, 0], 1e-15, "clipped");
  const small = new Float64Array([0.3, 0.4]);
  assert.equal(clipGradNorm(small, 2), 0.5);
  assert.deepEqual([...small], [0.3, 0.4]);
});
