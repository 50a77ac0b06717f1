// The Brain's model: a small pre-norm, causal, GPT-2-style Transformer classifier over sensor tokens,
// forward (whole sequence, or one position at a time with a KV cache) and backward, over flat
// parameters in one typed array. The math, exactly (other modules rely on it):
//
//   h0[t] = tokEmb[ids[t]] + values[t]·valEmb + posEmb[t]
//   per layer:  a = LN1(h);  q = a·Wqᵀ + bq;  k = a·Wkᵀ + bk;  v = a·Wvᵀ + bv
//               att_j[t] = Σ_{s≤t} softmax_s(q_j[t]·k_j[s] / √dh) · v_j[s]   (head j = dims [j·dh, (j+1)·dh))
//               h = h + att·Woᵀ + bo
//               f = LN2(h);  h = h + gelu_tanh(f·W1ᵀ + b1)·W2ᵀ + b2
//   z = LNf(h[T−1]);  logits = z·Whᵀ + bh            (LayerNorm eps 1e-5, affine)
//
// Linear weights are W[out][in] row-major (PyTorch nn.Linear). The flat parameter order is given by
// layout(); scripts/brain-golden.py builds the same model in PyTorch and test/core/brain/golden.test.ts
// holds this file to it. Every function is generic over Vec, so the gradient check runs this very
// code in float64.
//
// Memory: a Workspace holds every activation buffer, sized once for seqLen rows, so forward, step
// and lossAndGrad allocate nothing once it exists (weight views are cached per params array).
// An inference workspace shares one set of layer buffers between layers; a training workspace keeps
// one set per layer for the backward pass.
import { assert } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";
import type { Rng } from "../util/rng.ts";
import {
  gelu, geluBackward, layerNorm, layerNormBackward, linear, matmul, matmulAT, matmulBT, sumRows, type Vec,
} from "./tensor.ts";

export type { Vec } from "./tensor.ts";

export interface ModelConfig {
  readonly vocab: number;
  readonly seqLen: number;
  readonly dModel: number;
  readonly nHeads: number;
  readonly dFF: number;
  readonly nLayers: number;
  readonly nClasses: number;
}

/** The seed model: 715 parameters. */
export const SEED_CONFIG: ModelConfig = Object.freeze({ vocab: 4, seqLen: 4, dModel: 8, nHeads: 2, dFF: 16, nLayers: 1, nClasses: 3 });
/** Token ids of the seed model: one per sensor. */
export const SEED_TOKENS = Object.freeze(["temperature", "humidity", "pressure", "light"] as const);
/** Classes of the seed model. */
export const SEED_CLASSES = Object.freeze(["normal", "alert", "critical"] as const);

/** Upper bounds of a model this code accepts (validateConfig; values in LIMITS.model). */
export const MODEL_BOUNDS = Object.freeze({ ...LIMITS.model });

const CONFIG_KEYS = ["vocab", "seqLen", "dModel", "nHeads", "dFF", "nLayers", "nClasses"] as const;

/** Why `cfg` is not a usable model configuration, or null when it is. Safe on untrusted input. */
export function configError(cfg: unknown): string | null {
  if (typeof cfg !== "object" || cfg === null) return "model config must be an object";
  const c = cfg as Record<string, unknown>;
  for (const key of CONFIG_KEYS) {
    const v = c[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) return `model config: ${key} must be a positive integer, got ${String(v)}`;
    if (v > MODEL_BOUNDS[key]) return `model config: ${key} = ${v} exceeds the bound ${MODEL_BOUNDS[key]}`;
  }
  const m = c as unknown as ModelConfig;
  if (m.dModel % m.nHeads !== 0) return `model config: dModel (${m.dModel}) must be a multiple of nHeads (${m.nHeads})`;
  const n = paramCount(m);
  if (n > MODEL_BOUNDS.params) return `model config: ${n} parameters exceed the bound ${MODEL_BOUNDS.params}`;
  return null;
}

/** `cfg` as a ModelConfig; throws a RangeError naming the first problem. */
export function validateConfig(cfg: unknown): ModelConfig {
  const err = configError(cfg);
  if (err !== null) throw new RangeError(err);
  return cfg as ModelConfig;
}

// ---------------------------------------------------------------------------------------------
// Parameter layout

export interface ParamTensor {
  /** e.g. "tokEmb", "layers.0.wq", "layers.0.ln1.g", "lnf.b", "wh". */
  readonly name: string;
  readonly offset: number;
  readonly size: number;
  readonly shape: readonly number[];
}

const LAYER_TENSORS = ["ln1.g", "ln1.b", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", "ln2.g", "ln2.b", "w1", "b1", "w2", "b2"] as const;

function layerShapes(cfg: ModelConfig): readonly (readonly number[])[] {
  const d = cfg.dModel, F = cfg.dFF;
  return [[d], [d], [d, d], [d], [d, d], [d], [d, d], [d], [d, d], [d], [d], [d], [F, d], [F], [d, F], [d]];
}

function paramsPerLayer(cfg: ModelConfig): number {
  const d = cfg.dModel, F = cfg.dFF;
  return 4 * d * d + 4 * d + 4 * d + F * d + F + d * F + d;
}

/** Number of parameters: 715 for SEED_CONFIG. */
export function paramCount(cfg: ModelConfig): number {
  const d = cfg.dModel;
  return cfg.vocab * d + d + cfg.seqLen * d + cfg.nLayers * paramsPerLayer(cfg) + 2 * d + cfg.nClasses * d + cfg.nClasses;
}

/** Every tensor in the flat parameter array, in order. */
export function layout(cfg: ModelConfig): ParamTensor[] {
  const d = cfg.dModel;
  const out: ParamTensor[] = [];
  let offset = 0;
  const add = (name: string, shape: readonly number[]): void => {
    let size = 1;
    for (const s of shape) size *= s;
    out.push({ name, offset, size, shape });
    offset += size;
  };
  add("tokEmb", [cfg.vocab, d]);
  add("valEmb", [d]);
  add("posEmb", [cfg.seqLen, d]);
  const shapes = layerShapes(cfg);
  for (let l = 0; l < cfg.nLayers; l++) LAYER_TENSORS.forEach((t, i) => add(`layers.${l}.${t}`, shapes[i]!));
  add("lnf.g", [d]);
  add("lnf.b", [d]);
  add("wh", [cfg.nClasses, d]);
  add("bh", [cfg.nClasses]);
  assert(offset === paramCount(cfg), "layout and paramCount disagree");
  return out;
}

/** The tensor called `name` in layout(cfg); throws RangeError for an unknown name. */
export function paramTensor(cfg: ModelConfig, name: string): ParamTensor {
  const t = layout(cfg).find((p) => p.name === name);
  if (t === undefined) throw new RangeError(`no parameter tensor named ${JSON.stringify(name)}`);
  return t;
}

/** A view of the tensor called `name` inside `params` (or a gradient in the same layout). */
export function paramView<V extends Vec>(cfg: ModelConfig, params: V, name: string): V {
  const t = paramTensor(cfg, name);
  return view(params, t.offset, t.size);
}

/** 1 for the weights that decay under AdamW (matrices and embeddings), 0 for biases and LN gains/biases. */
export function weightDecayMask(cfg: ModelConfig): Uint8Array {
  const mask = new Uint8Array(paramCount(cfg));
  for (const t of layout(cfg)) if (t.shape.length === 2) mask.fill(1, t.offset, t.offset + t.size);
  return mask;
}

function view<V extends Vec>(a: V, offset: number, size: number): V {
  return a.subarray(offset, offset + size) as V;
}

/** One layer's tensors as views into the flat array (W[out][in] row-major). */
export interface LayerWeights<V extends Vec = Vec> {
  readonly ln1g: V; readonly ln1b: V;
  readonly wq: V; readonly bq: V;
  readonly wk: V; readonly bk: V;
  readonly wv: V; readonly bv: V;
  readonly wo: V; readonly bo: V;
  readonly ln2g: V; readonly ln2b: V;
  readonly w1: V; readonly b1: V;
  readonly w2: V; readonly b2: V;
}

/** All tensors of the model as views into the flat array. */
export interface ModelWeights<V extends Vec = Vec> {
  readonly tokEmb: V;
  readonly valEmb: V;
  readonly posEmb: V;
  readonly layers: readonly LayerWeights<V>[];
  readonly lnfG: V;
  readonly lnfB: V;
  readonly wh: V;
  readonly bh: V;
}

/** Views of layer `layer`'s tensors inside `params` (a flat parameter or gradient array). */
export function layerWeights<V extends Vec>(cfg: ModelConfig, params: V, layer: number): LayerWeights<V> {
  assert(Number.isInteger(layer) && layer >= 0 && layer < cfg.nLayers, `layer ${layer} outside [0, ${cfg.nLayers})`);
  const d = cfg.dModel;
  const shapes = layerShapes(cfg);
  let o = cfg.vocab * d + d + cfg.seqLen * d + layer * paramsPerLayer(cfg);
  const v = shapes.map((s) => {
    const size = s.reduce((x, y) => x * y, 1);
    const t = view(params, o, size);
    o += size;
    return t;
  });
  const at = (i: number): V => v[i]!;
  return {
    ln1g: at(0), ln1b: at(1), wq: at(2), bq: at(3), wk: at(4), bk: at(5), wv: at(6), bv: at(7),
    wo: at(8), bo: at(9), ln2g: at(10), ln2b: at(11), w1: at(12), b1: at(13), w2: at(14), b2: at(15),
  };
}

/** Views of every tensor inside `params` (a flat parameter or gradient array of paramCount(cfg)). */
export function modelWeights<V extends Vec>(cfg: ModelConfig, params: V): ModelWeights<V> {
  assert(params.length === paramCount(cfg), `params has ${params.length} entries, the model needs ${paramCount(cfg)}`);
  const d = cfg.dModel;
  const layers: LayerWeights<V>[] = [];
  for (let l = 0; l < cfg.nLayers; l++) layers.push(layerWeights(cfg, params, l));
  const head = cfg.vocab * d + d + cfg.seqLen * d + cfg.nLayers * paramsPerLayer(cfg);
  return {
    tokEmb: view(params, 0, cfg.vocab * d),
    valEmb: view(params, cfg.vocab * d, d),
    posEmb: view(params, cfg.vocab * d + d, cfg.seqLen * d),
    layers,
    lnfG: view(params, head, d),
    lnfB: view(params, head + d, d),
    wh: view(params, head + 2 * d, cfg.nClasses * d),
    bh: view(params, head + 2 * d + cfg.nClasses * d, cfg.nClasses),
  };
}

// ---------------------------------------------------------------------------------------------
// Initialisation

/**
 * GPT-2-like initial parameters, deterministic for a given Rng state: every matrix and embedding
 * drawn from N(0, std²) (Box–Muller), biases 0, LayerNorm gains 1 and biases 0.
 */
export function initParams(cfg: ModelConfig, rng: Rng, std = 0.02): Float32Array {
  validateConfig(cfg);
  const params = new Float32Array(paramCount(cfg));
  for (const t of layout(cfg)) {
    if (t.name.endsWith(".g")) params.fill(1, t.offset, t.offset + t.size);
    else if (t.shape.length === 2 || t.name === "valEmb") fillNormal(params, t.offset, t.size, std, rng);
  }
  return params;
}

/** a[offset .. offset+n) ← N(0, std²) samples by Box–Muller (two per pair of uniforms). */
export function fillNormal(a: Vec, offset: number, n: number, std: number, rng: Rng): void {
  for (let i = 0; i < n; i += 2) {
    const u1 = 1 - rng.next(); // (0, 1]: log stays finite
    const u2 = rng.next();
    const r = std * Math.sqrt(-2 * Math.log(u1));
    a[offset + i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) a[offset + i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
}

// ---------------------------------------------------------------------------------------------
// Workspace and KV cache

type VecCtor<V extends Vec> = new (n: number) => V;

/** Activations of one layer for up to `rows` positions; kept for the backward pass. */
export interface LayerActs<V extends Vec = Vec> {
  /** Layer input (LN1 input) [rows×d]. */
  readonly x: V;
  /** LN1 output [rows×d], its mean and rstd [rows]. */
  readonly a: V; readonly mean1: V; readonly rstd1: V;
  /** Projections [rows×d]. */
  readonly q: V; readonly k: V; readonly v: V;
  /** Attention probabilities: head j, query r, key s at (j·qRows + r)·kvLen + s; nHeads·rows·seqLen. */
  readonly probs: V;
  /** Attention output before Wo [rows×d]. */
  readonly att: V;
  /** LN2 input [rows×d], LN2 output [rows×d], its mean and rstd [rows]. */
  readonly xm: V; readonly f: V; readonly mean2: V; readonly rstd2: V;
  /** FFN pre-activation and GELU output [rows×dFF] (compact [rows×(c1−c0)] for a column range). */
  readonly pre: V; readonly act: V;
}

/** Allocates one layer's activation buffers for up to `rows` positions. */
export function createLayerActs<V extends Vec>(cfg: ModelConfig, ctor: VecCtor<V>, rows: number): LayerActs<V> {
  const d = cfg.dModel;
  return {
    x: new ctor(rows * d), a: new ctor(rows * d), mean1: new ctor(rows), rstd1: new ctor(rows),
    q: new ctor(rows * d), k: new ctor(rows * d), v: new ctor(rows * d),
    probs: new ctor(cfg.nHeads * rows * cfg.seqLen), att: new ctor(rows * d),
    xm: new ctor(rows * d), f: new ctor(rows * d), mean2: new ctor(rows), rstd2: new ctor(rows),
    pre: new ctor(rows * cfg.dFF), act: new ctor(rows * cfg.dFF),
  };
}

/** Gradient scratch of a training workspace. */
interface BackwardScratch<V extends Vec> {
  readonly dh: V; readonly dhLast: V; readonly dz: V; readonly dlogits: V;
  readonly datt: V; readonly dq: V; readonly dk: V; readonly dv: V; readonly da: V; readonly df: V;
  readonly dact: V; readonly dprobs: V;
}

export interface WorkspaceOptions {
  /** Keep per-layer activations and gradient scratch for lossAndGrad (default false). */
  readonly training?: boolean;
  /** Positions processed at once (default seqLen; a decode workspace needs 1). */
  readonly rows?: number;
}

/**
 * Every buffer forward, step and lossAndGrad need, allocated once. After a forward pass, `h` holds
 * the final residual stream of all T positions, `hLast` its last row and `z` = LNf(hLast), the
 * final hidden state the head reads; `logits` the output. All are overwritten by the next call.
 */
export class Workspace<V extends Vec = Vec> {
  readonly cfg: ModelConfig;
  readonly training: boolean;
  readonly rows: number;
  /** Residual stream [rows×d]. */
  readonly h: V;
  /** Per-layer activations (one shared set unless training). */
  readonly acts: readonly LayerActs<V>[];
  readonly hLast: V; readonly z: V; readonly meanf: V; readonly rstdf: V; readonly logits: V;
  readonly grad: BackwardScratch<V> | null;
  #params: V | null = null;
  #weights: ModelWeights<V> | null = null;
  #gradArray: V | null = null;
  #gradWeights: ModelWeights<V> | null = null;

  constructor(cfg: ModelConfig, ctor: VecCtor<V>, options: WorkspaceOptions = {}) {
    validateConfig(cfg);
    const rows = options.rows ?? cfg.seqLen;
    assert(Number.isInteger(rows) && rows >= 1 && rows <= cfg.seqLen, `workspace rows ${rows} outside [1, ${cfg.seqLen}]`);
    const d = cfg.dModel;
    this.cfg = cfg;
    this.training = options.training ?? false;
    this.rows = rows;
    this.h = new ctor(rows * d);
    const shared = this.training ? null : createLayerActs(cfg, ctor, rows);
    const acts: LayerActs<V>[] = [];
    for (let l = 0; l < cfg.nLayers; l++) acts.push(shared ?? createLayerActs(cfg, ctor, rows));
    this.acts = acts;
    this.hLast = new ctor(d);
    this.z = new ctor(d);
    this.meanf = new ctor(1);
    this.rstdf = new ctor(1);
    this.logits = new ctor(cfg.nClasses);
    this.grad = !this.training ? null : {
      dh: new ctor(rows * d), dhLast: new ctor(d), dz: new ctor(d), dlogits: new ctor(cfg.nClasses),
      datt: new ctor(rows * d), dq: new ctor(rows * d), dk: new ctor(rows * d), dv: new ctor(rows * d),
      da: new ctor(rows * d), df: new ctor(rows * d), dact: new ctor(rows * cfg.dFF), dprobs: new ctor(cfg.seqLen),
    };
  }

  /** Weight views of `params`, cached for the last array seen. */
  weights(params: V): ModelWeights<V> {
    if (this.#params !== params || this.#weights === null) {
      this.#weights = modelWeights(this.cfg, params);
      this.#params = params;
    }
    return this.#weights;
  }

  /** Views of a gradient array, cached for the last array seen. */
  gradWeights(grad: V): ModelWeights<V> {
    if (this.#gradArray !== grad || this.#gradWeights === null) {
      this.#gradWeights = modelWeights(this.cfg, grad);
      this.#gradArray = grad;
    }
    return this.#gradWeights;
  }
}

/** The array constructor matching `params` (Float32Array or Float64Array). */
export function vecCtorOf<V extends Vec>(params: V): VecCtor<V> {
  return (params instanceof Float64Array ? Float64Array : Float32Array) as unknown as VecCtor<V>;
}

/** K and V of every layer for the positions seen so far: rows [0, length) of [seqLen×d] each. */
export class KvCache<V extends Vec = Float32Array> {
  readonly cfg: ModelConfig;
  readonly k: readonly V[];
  readonly v: readonly V[];
  /** Positions cached. */
  length = 0;
  /** The one-position workspace step() uses unless given another. */
  readonly ws: Workspace<V>;

  constructor(cfg: ModelConfig, ctor: VecCtor<V> = Float32Array as unknown as VecCtor<V>) {
    validateConfig(cfg);
    this.cfg = cfg;
    const n = cfg.seqLen * cfg.dModel;
    const k: V[] = [], v: V[] = [];
    for (let l = 0; l < cfg.nLayers; l++) {
      k.push(new ctor(n));
      v.push(new ctor(n));
    }
    this.k = k;
    this.v = v;
    this.ws = new Workspace(cfg, ctor, { rows: 1 });
  }

  /** Forget every position (the buffers are kept). */
  reset(): void {
    this.length = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Building blocks of the forward pass

/** h[row] = tokEmb[id] + value·valEmb + posEmb[pos]. */
export function embedToken(cfg: ModelConfig, w: ModelWeights, id: number, value: number, pos: number, h: Vec, row: number): void {
  assert(Number.isInteger(id) && id >= 0 && id < cfg.vocab, `token id ${id} outside [0, ${cfg.vocab})`);
  assert(Number.isInteger(pos) && pos >= 0 && pos < cfg.seqLen, `position ${pos} outside [0, ${cfg.seqLen})`);
  const d = cfg.dModel, te = w.tokEmb, ve = w.valEmb, pe = w.posEmb;
  const ho = row * d, to = id * d, po = pos * d;
  for (let i = 0; i < d; i++) h[ho + i] = te[to + i]! + value * ve[i]! + pe[po + i]!;
}

/** Rows [0, T) of h: token t at position pos0 + t. */
export function embed(cfg: ModelConfig, w: ModelWeights, ids: Int32Array, values: Vec, pos0: number, T: number, h: Vec): void {
  for (let t = 0; t < T; t++) embedToken(cfg, w, ids[t]!, values[t]!, pos0 + t, h, t);
}

/** LN1 and the q/k/v projections of rows [0, T) of h into acts.x, acts.a, acts.q, acts.k, acts.v. */
export function attentionInputs(cfg: ModelConfig, w: LayerWeights, h: Vec, T: number, acts: LayerActs): void {
  const d = cfg.dModel;
  copy(acts.x, 0, h, 0, T * d);
  layerNorm(acts.a, acts.x, w.ln1g, w.ln1b, T, d, acts.mean1, acts.rstd1);
  matmulBT(acts.q, acts.a, w.wq, T, d, d, w.bq);
  matmulBT(acts.k, acts.a, w.wk, T, d, d, w.bk);
  matmulBT(acts.v, acts.a, w.wv, T, d, d, w.bv);
}

/**
 * Causal attention of heads [h0, h1) for qRows query rows of q [qRows×d] at absolute positions
 * qPos0, qPos0+1, …, against the K and V rows [kvLen×d] with kvLen = qPos0 + qRows: query r sees
 * keys 0..qPos0+r. Writes those heads' dims of out [qRows×d] and, per head j and query r, the
 * probabilities at probs[(j·qRows + r)·kvLen + s].
 */
export function attendHeads(
  cfg: ModelConfig, out: Vec, q: Vec, K: Vec, V: Vec, qRows: number, qPos0: number, h0: number, h1: number, probs: Vec,
): void {
  const d = cfg.dModel, dh = d / cfg.nHeads, scale = 1 / Math.sqrt(dh);
  const kvLen = qPos0 + qRows;
  assert(h0 >= 0 && h0 <= h1 && h1 <= cfg.nHeads, `head range [${h0}, ${h1}) outside [0, ${cfg.nHeads})`);
  assert(K.length >= kvLen * d && V.length >= kvLen * d, "attendHeads: K/V hold fewer than kvLen rows");
  for (let j = h0; j < h1; j++) {
    const off = j * dh;
    for (let r = 0; r < qRows; r++) {
      const n = qPos0 + r + 1;
      const p0 = (j * qRows + r) * kvLen;
      const qo = r * d + off;
      let max = -Infinity;
      for (let s = 0; s < n; s++) {
        const ko = s * d + off;
        let dot = 0;
        for (let c = 0; c < dh; c++) dot += q[qo + c]! * K[ko + c]!;
        const sc = dot * scale;
        probs[p0 + s] = sc;
        if (sc > max) max = sc;
      }
      let sum = 0;
      for (let s = 0; s < n; s++) {
        const e = Math.exp(probs[p0 + s]! - max);
        probs[p0 + s] = e;
        sum += e;
      }
      const inv = 1 / sum;
      const oo = r * d + off;
      for (let c = 0; c < dh; c++) out[oo + c] = 0;
      for (let s = 0; s < n; s++) {
        const p = probs[p0 + s]! * inv;
        probs[p0 + s] = p;
        const vo = s * d + off;
        for (let c = 0; c < dh; c++) out[oo + c] = out[oo + c]! + p * V[vo + c]!;
      }
    }
  }
}

/** h += att·Woᵀ + bo over rows [0, T). */
export function attentionOutput(cfg: ModelConfig, w: LayerWeights, att: Vec, T: number, h: Vec): void {
  const d = cfg.dModel;
  matmulBT(h, att, w.wo, T, d, d, w.bo, true);
}

/**
 * The feed-forward block on rows [0, T) of h: f = LN2(h) (into acts.xm/f/mean2/rstd2),
 * pre = f·W1[c0:c1]ᵀ + b1[c0:c1], act = gelu(pre) (compact [T×(c1−c0)]), and
 * out (+)= act·W2[:, c0:c1]ᵀ, plus b2 when c0 = 0. The default range is the whole FFN; a node
 * owning columns [c0, c1) computes its partial sum (Megatron: W1 split by rows, W2 by columns) and
 * the partials of all ranges add up to the full output, b2 counted once. out may be h.
 */
export function ffn(
  cfg: ModelConfig, w: LayerWeights, h: Vec, T: number, acts: LayerActs, out: Vec, accumulate: boolean,
  c0 = 0, c1 = cfg.dFF,
): void {
  const d = cfg.dModel, F = cfg.dFF, width = c1 - c0;
  assert(c0 >= 0 && c0 <= c1 && c1 <= F, `ffn column range [${c0}, ${c1}) outside [0, ${F})`);
  copy(acts.xm, 0, h, 0, T * d);
  layerNorm(acts.f, acts.xm, w.ln2g, w.ln2b, T, d, acts.mean2, acts.rstd2);
  // Rows c0..c1 of W1 are contiguous: a plain matmulBT (the SIMD kernel on large products).
  matmulBT(acts.pre, acts.f, w.w1.subarray(c0 * d, c1 * d), T, d, width, w.b1.subarray(c0, c1));
  gelu(acts.act, acts.pre, T * width);
  // Columns c0..c1 of W2 (row j of W2 from column c0, leading dimension F).
  linear(T, width, d, acts.act, 0, width, w.w2, c0, F, out, 0, d, c0 === 0 ? w.b2 : null, 0, accumulate);
}

/** One whole layer on rows [0, T) of the residual stream h (positions 0..T−1), in place. */
export function layerForward<V extends Vec>(cfg: ModelConfig, params: V, layer: number, h: V, T: number, ws: Workspace<V>): void {
  const w = ws.weights(params).layers[layer];
  const acts = ws.acts[layer];
  assert(w !== undefined && acts !== undefined, `layer ${layer} outside [0, ${cfg.nLayers})`);
  attentionInputs(cfg, w, h, T, acts);
  attendHeads(cfg, acts.att, acts.q, acts.k, acts.v, T, 0, 0, cfg.nHeads, acts.probs);
  attentionOutput(cfg, w, acts.att, T, h);
  ffn(cfg, w, h, T, acts, h, true);
}

/** The classifier head on row T−1 of h: ws.hLast, ws.z = LNf(hLast), ws.logits = z·Whᵀ + bh. */
export function head<V extends Vec>(cfg: ModelConfig, params: V, h: V, T: number, ws: Workspace<V>): V {
  const w = ws.weights(params);
  const d = cfg.dModel;
  copy(ws.hLast, 0, h, (T - 1) * d, d);
  layerNorm(ws.z, ws.hLast, w.lnfG, w.lnfB, 1, d, ws.meanf, ws.rstdf);
  matmulBT(ws.logits, ws.z, w.wh, 1, d, cfg.nClasses, w.bh);
  return ws.logits;
}

function copy(dst: Vec, dstOff: number, src: Vec, srcOff: number, n: number): void {
  for (let i = 0; i < n; i++) dst[dstOff + i] = src[srcOff + i]!;
}

/**
 * Why (ids, values) is not a valid input sequence for the model, or null. Use it on input from
 * outside: forward, step and embed treat a bad token id or length as a broken invariant (assert).
 */
export function inputError(cfg: ModelConfig, ids: Int32Array, values: ArrayLike<number>, startPos = 0): string | null {
  const T = ids.length;
  if (T < 1 || startPos + T > cfg.seqLen) return `sequence of ${T} tokens from position ${startPos} does not fit seqLen ${cfg.seqLen}`;
  if (values.length !== T) return `values has ${values.length} entries for ${T} tokens`;
  for (let t = 0; t < T; t++) {
    const id = ids[t]!;
    if (id < 0 || id >= cfg.vocab) return `token id ${id} at ${t} outside [0, ${cfg.vocab})`;
    if (!Number.isFinite(values[t]!)) return `value at ${t} is not finite`;
  }
  return null;
}

function checkSequence(cfg: ModelConfig, ids: Int32Array, values: Vec): number {
  const T = ids.length;
  assert(T >= 1 && T <= cfg.seqLen, `sequence length ${T} outside [1, ${cfg.seqLen}]`);
  assert(values.length === T, `values has ${values.length} entries for ${T} tokens`);
  return T;
}

// ---------------------------------------------------------------------------------------------
// Whole-sequence forward and incremental decode

/**
 * Logits for the sequence (ids, values) of length 1..seqLen. The result is ws.logits (overwritten
 * by the next call on ws); ws.z holds the final hidden state. Without ws a new one is made, which
 * allocates: pass one in loops. With a cache, K and V of every position are stored in it (prefill):
 * step() then continues at position T.
 */
export function forward<V extends Vec>(
  cfg: ModelConfig, params: V, ids: Int32Array, values: Vec, ws?: Workspace<V>, cache?: KvCache<V>,
): V {
  const T = checkSequence(cfg, ids, values);
  const w = ws ?? new Workspace(cfg, vecCtorOf(params));
  assert(w.rows >= T, `workspace holds ${w.rows} rows, the sequence has ${T}`);
  embed(cfg, w.weights(params), ids, values, 0, T, w.h);
  const d = cfg.dModel;
  for (let l = 0; l < cfg.nLayers; l++) {
    layerForward(cfg, params, l, w.h, T, w);
    if (cache !== undefined) {
      const acts = w.acts[l]!;
      copy(cache.k[l]!, 0, acts.k, 0, T * d);
      copy(cache.v[l]!, 0, acts.v, 0, T * d);
    }
  }
  if (cache !== undefined) cache.length = T;
  return head(cfg, params, w.h, T, w);
}

/**
 * Appends one position (id, value) to the sequence in `cache` and returns the logits at it, equal to
 * forward() over the whole sequence so far. Allocation-free; the result is the workspace's logits.
 */
export function step<V extends Vec>(cfg: ModelConfig, params: V, cache: KvCache<V>, id: number, value: number, ws: Workspace<V> = cache.ws): V {
  const pos = cache.length;
  assert(pos < cfg.seqLen, `KV cache is full (${cfg.seqLen} positions)`);
  const mw = ws.weights(params);
  const d = cfg.dModel;
  embedToken(cfg, mw, id, value, pos, ws.h, 0);
  for (let l = 0; l < cfg.nLayers; l++) {
    const w = mw.layers[l]!, acts = ws.acts[l]!, K = cache.k[l]!, V = cache.v[l]!;
    attentionInputs(cfg, w, ws.h, 1, acts);
    copy(K, pos * d, acts.k, 0, d);
    copy(V, pos * d, acts.v, 0, d);
    attendHeads(cfg, acts.att, acts.q, K, V, 1, pos, 0, cfg.nHeads, acts.probs);
    attentionOutput(cfg, w, acts.att, 1, ws.h);
    ffn(cfg, w, ws.h, 1, acts, ws.h, true);
  }
  cache.length = pos + 1;
  return head(cfg, params, ws.h, 1, ws);
}

// ---------------------------------------------------------------------------------------------
// Backward

export interface Example {
  readonly ids: Int32Array;
  readonly values: Vec;
  /** Class index in [0, nClasses). */
  readonly label: number;
}

/**
 * Backward of attendHeads over T positions (qPos0 = 0, kvLen = T) for heads [h0, h1): given
 * datt = ∂L/∂att [T×d], accumulates ∂L/∂q, ∂L/∂k, ∂L/∂v into dq, dk, dv [T×d] from the saved
 * probabilities. dprobs is scratch of at least T entries.
 */
export function attendHeadsBackward(
  cfg: ModelConfig, dq: Vec, dk: Vec, dv: Vec, datt: Vec, q: Vec, K: Vec, V: Vec, probs: Vec, T: number,
  h0: number, h1: number, dprobs: Vec,
): void {
  const d = cfg.dModel, dh = d / cfg.nHeads, scale = 1 / Math.sqrt(dh);
  for (let j = h0; j < h1; j++) {
    const off = j * dh;
    for (let t = 0; t < T; t++) {
      const p0 = (j * T + t) * T;
      const to = t * d + off;
      // dp_s = datt[t]·v[s];  dv[s] += p_s·datt[t]
      let pdp = 0;
      for (let s = 0; s <= t; s++) {
        const so = s * d + off;
        const p = probs[p0 + s]!;
        let dot = 0;
        for (let c = 0; c < dh; c++) {
          const g = datt[to + c]!;
          dot += g * V[so + c]!;
          dv[so + c] = dv[so + c]! + p * g;
        }
        dprobs[s] = dot;
        pdp += p * dot;
      }
      // softmax backward: dscore_s = p_s·(dp_s − Σ p·dp); score = q·k·scale
      for (let s = 0; s <= t; s++) {
        const so = s * d + off;
        const ds = probs[p0 + s]! * (dprobs[s]! - pdp) * scale;
        for (let c = 0; c < dh; c++) {
          dq[to + c] = dq[to + c]! + ds * K[so + c]!;
          dk[so + c] = dk[so + c]! + ds * q[to + c]!;
        }
      }
    }
  }
}

/**
 * Mean cross-entropy of the batch; adds ∂(mean loss)/∂params into `grad` (same flat layout; the
 * caller zeroes it). ws, if given, must be a training workspace of the params' precision.
 */
export function lossAndGrad<V extends Vec>(cfg: ModelConfig, params: V, batch: readonly Example[], grad: V, ws?: Workspace<V>): number {
  assert(batch.length >= 1, "lossAndGrad needs at least one example");
  assert(grad.length === params.length, `grad has ${grad.length} entries, params ${params.length}`);
  const w = ws ?? new Workspace(cfg, vecCtorOf(params), { training: true });
  assert(w.training && w.grad !== null, "lossAndGrad needs a training workspace");
  let total = 0;
  for (const ex of batch) total += exampleBackward(cfg, params, ex, grad, w, 1 / batch.length);
  return total / batch.length;
}

function exampleBackward<V extends Vec>(cfg: ModelConfig, params: V, ex: Example, grad: V, ws: Workspace<V>, weight: number): number {
  const C = cfg.nClasses, d = cfg.dModel, F = cfg.dFF;
  assert(Number.isInteger(ex.label) && ex.label >= 0 && ex.label < C, `label ${ex.label} outside [0, ${C})`);
  const logits = forward(cfg, params, ex.ids, ex.values, ws);
  const T = ex.ids.length;
  const mw = ws.weights(params), gw = ws.gradWeights(grad), g = ws.grad!;

  // Cross-entropy and ∂loss/∂logits = (softmax − onehot)·weight.
  let max = -Infinity;
  for (let c = 0; c < C; c++) if (logits[c]! > max) max = logits[c]!;
  let sum = 0;
  for (let c = 0; c < C; c++) sum += Math.exp(logits[c]! - max);
  const loss = max + Math.log(sum) - logits[ex.label]!;
  for (let c = 0; c < C; c++) g.dlogits[c] = (Math.exp(logits[c]! - max) / sum - (c === ex.label ? 1 : 0)) * weight;

  // Head: logits = z·Whᵀ + bh, z = LNf(h[T−1]).
  sumRows(gw.bh, g.dlogits, 1, C);
  matmulAT(gw.wh, g.dlogits, ws.z, C, 1, d, true);
  matmul(g.dz, g.dlogits, mw.wh, 1, C, d);
  g.dhLast.fill(0);
  layerNormBackward(g.dhLast, gw.lnfG, gw.lnfB, g.dz, ws.hLast, mw.lnfG, ws.meanf, ws.rstdf, 1, d);
  const dh = g.dh;
  dh.fill(0, 0, T * d);
  copy(dh, (T - 1) * d, g.dhLast, 0, d);

  for (let l = cfg.nLayers - 1; l >= 0; l--) {
    const w = mw.layers[l]!, gl = gw.layers[l]!, acts = ws.acts[l]!;
    // FFN: h_out = xm + gelu(f·W1ᵀ + b1)·W2ᵀ + b2, f = LN2(xm).
    sumRows(gl.b2, dh, T, d);
    matmulAT(gl.w2, dh, acts.act, d, T, F, true);
    matmul(g.dact, dh, w.w2, T, d, F);
    geluBackward(g.dact, g.dact, acts.pre, T * F);
    sumRows(gl.b1, g.dact, T, F);
    matmulAT(gl.w1, g.dact, acts.f, F, T, d, true);
    matmul(g.df, g.dact, w.w1, T, F, d);
    layerNormBackward(dh, gl.ln2g, gl.ln2b, g.df, acts.xm, w.ln2g, acts.mean2, acts.rstd2, T, d);
    // Attention: xm = x + att·Woᵀ + bo.
    sumRows(gl.bo, dh, T, d);
    matmulAT(gl.wo, dh, acts.att, d, T, d, true);
    matmul(g.datt, dh, w.wo, T, d, d);
    g.dq.fill(0, 0, T * d);
    g.dk.fill(0, 0, T * d);
    g.dv.fill(0, 0, T * d);
    attendHeadsBackward(cfg, g.dq, g.dk, g.dv, g.datt, acts.q, acts.k, acts.v, acts.probs, T, 0, cfg.nHeads, g.dprobs);
    sumRows(gl.bq, g.dq, T, d);
    sumRows(gl.bk, g.dk, T, d);
    sumRows(gl.bv, g.dv, T, d);
    matmulAT(gl.wq, g.dq, acts.a, d, T, d, true);
    matmulAT(gl.wk, g.dk, acts.a, d, T, d, true);
    matmulAT(gl.wv, g.dv, acts.a, d, T, d, true);
    matmul(g.da, g.dq, w.wq, T, d, d);
    matmul(g.da, g.dk, w.wk, T, d, d, null, true);
    matmul(g.da, g.dv, w.wv, T, d, d, null, true);
    layerNormBackward(dh, gl.ln1g, gl.ln1b, g.da, acts.x, w.ln1g, acts.mean1, acts.rstd1, T, d);
  }

  // Embeddings.
  const gt = gw.tokEmb, gv = gw.valEmb, gp = gw.posEmb;
  for (let t = 0; t < T; t++) {
    const to = ex.ids[t]! * d, po = t * d, ho = t * d, val = ex.values[t]!;
    for (let i = 0; i < d; i++) {
      const x = dh[ho + i]!;
      gt[to + i] = gt[to + i]! + x;
      gv[i] = gv[i]! + val * x;
      gp[po + i] = gp[po + i]! + x;
    }
  }
  return loss;
}
