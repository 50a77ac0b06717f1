// Optimizers over flat parameter arrays (one Float32Array or Float64Array for the whole model, with
// the gradient in the same layout), written to match PyTorch's torch.optim.AdamW and torch.optim.SGD
// step for step, so a model trained here and one trained there follow the same trajectory.
import { assert } from "../util/assert.ts";
import type { Vec } from "./tensor.ts";

export interface AdamWOptions {
  readonly lr: number;
  /** Default 0.9. */
  readonly beta1?: number;
  /** Default 0.999. */
  readonly beta2?: number;
  /** Default 1e-8. */
  readonly eps?: number;
  /** Decoupled weight decay; default 0.01 (PyTorch's default). */
  readonly weightDecay?: number;
  /** Decay only where mask[i] = 1 (e.g. transformer.weightDecayMask: not biases or LayerNorm). */
  readonly decayMask?: Uint8Array;
  /** Precision of the moment estimates; default "f32". */
  readonly state?: "f32" | "f64";
}

/**
 * AdamW (Loshchilov & Hutter 2019) with bias correction, as torch.optim.AdamW:
 *   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
 *   p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps).
 */
export class AdamW {
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly decayMask: Uint8Array | null;
  readonly m: Vec;
  readonly v: Vec;
  /** Steps taken. */
  t = 0;

  constructor(size: number, options: AdamWOptions) {
    assert(Number.isSafeInteger(size) && size >= 0, `AdamW: size must be a non-negative integer, got ${size}`);
    this.lr = options.lr;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    this.decayMask = options.decayMask ?? null;
    assert(this.lr >= 0 && this.eps > 0 && this.weightDecay >= 0, "AdamW: lr and weightDecay must be ≥ 0, eps > 0");
    assert(this.beta1 >= 0 && this.beta1 < 1 && this.beta2 >= 0 && this.beta2 < 1, "AdamW: betas must be in [0, 1)");
    assert(this.decayMask === null || this.decayMask.length === size, "AdamW: decayMask must have one entry per parameter");
    const ctor = options.state === "f64" ? Float64Array : Float32Array;
    this.m = new ctor(size);
    this.v = new ctor(size);
  }

  /** One update of `params` in place from `grad` (same length as the optimizer). */
  step(params: Vec, grad: Vec): void {
    const n = this.m.length;
    assert(params.length === n && grad.length === n, `AdamW: expected ${n} parameters and gradients`);
    this.t++;
    const { lr, beta1: b1, beta2: b2, eps, m, v } = this;
    const decay = 1 - lr * this.weightDecay;
    const mask = this.decayMask;
    const stepSize = lr / (1 - b1 ** this.t);
    const bc2Sqrt = Math.sqrt(1 - b2 ** this.t);
    for (let i = 0; i < n; i++) {
      const g = grad[i]!;
      let p = params[i]!;
      if (mask === null || mask[i] === 1) p *= decay;
      const mi = b1 * m[i]! + (1 - b1) * g;
      const vi = b2 * v[i]! + (1 - b2) * g * g;
      m[i] = mi;
      v[i] = vi;
      params[i] = p - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
    }
  }
}

export interface SgdOptions {
  readonly lr: number;
  /** Default 0 (plain gradient descent). */
  readonly momentum?: number;
  /** Nesterov momentum; default false. */
  readonly nesterov?: boolean;
  /** L2 penalty added to the gradient (PyTorch SGD's weight_decay); default 0. */
  readonly weightDecay?: number;
  /** Apply weightDecay only where mask[i] = 1. */
  readonly decayMask?: Uint8Array;
  /** Precision of the momentum buffer; default "f32". */
  readonly state?: "f32" | "f64";
}

/**
 * SGD with optional momentum, as torch.optim.SGD (dampening 0):
 *   d = g + wd·p;  b ← d (first step) or μ·b + d;  d ← d + μ·b (Nesterov) or b;  p ← p − lr·d.
 */
export class SGD {
  lr: number;
  readonly momentum: number;
  readonly nesterov: boolean;
  readonly weightDecay: number;
  readonly decayMask: Uint8Array | null;
  /** Momentum buffer (empty without momentum). */
  readonly buf: Vec;
  readonly size: number;
  /** Steps taken. */
  t = 0;

  constructor(size: number, options: SgdOptions) {
    assert(Number.isSafeInteger(size) && size >= 0, `SGD: size must be a non-negative integer, got ${size}`);
    this.lr = options.lr;
    this.momentum = options.momentum ?? 0;
    this.nesterov = options.nesterov ?? false;
    this.weightDecay = options.weightDecay ?? 0;
    this.decayMask = options.decayMask ?? null;
    assert(this.lr >= 0 && this.momentum >= 0 && this.weightDecay >= 0, "SGD: lr, momentum and weightDecay must be ≥ 0");
    assert(!this.nesterov || this.momentum > 0, "SGD: Nesterov needs momentum > 0");
    assert(this.decayMask === null || this.decayMask.length === size, "SGD: decayMask must have one entry per parameter");
    this.size = size;
    this.buf = new (options.state === "f64" ? Float64Array : Float32Array)(this.momentum > 0 ? size : 0);
  }

  /** One update of `params` in place from `grad`. */
  step(params: Vec, grad: Vec): void {
    const n = this.size;
    assert(params.length === n && grad.length === n, `SGD: expected ${n} parameters and gradients`);
    const { lr, momentum: mu, weightDecay: wd, buf } = this;
    const mask = this.decayMask;
    const first = this.t === 0;
    this.t++;
    for (let i = 0; i < n; i++) {
      const p = params[i]!;
      let d = grad[i]!;
      if (wd !== 0 && (mask === null || mask[i] === 1)) d += wd * p;
      if (mu !== 0) {
        const b = first ? d : mu * buf[i]! + d;
        buf[i] = b;
        d = this.nesterov ? d + mu * b : b;
      }
      params[i] = p - lr * d;
    }
  }
}

/**
 * Scales grad in place so its global L2 norm is at most maxNorm, as torch.nn.utils.clip_grad_norm_
 * (factor maxNorm / (norm + 1e-6) when below 1); returns the norm before scaling.
 */
export function clipGradNorm(grad: Vec, maxNorm: number): number {
  let s = 0;
  for (let i = 0; i < grad.length; i++) s += grad[i]! * grad[i]!;
  const norm = Math.sqrt(s);
  const k = maxNorm / (norm + 1e-6);
  if (k < 1) for (let i = 0; i < grad.length; i++) grad[i] = grad[i]! * k;
  return norm;
}
