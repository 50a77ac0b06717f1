// Distributed KV attention (DKVA): the K/V rows of one sequence are spread over shards (nodes) by
// GLOBAL position — contiguous blocks, round-robin, anything — and one query is answered by asking
// every shard for a partial softmax and merging the partials exactly with the log-sum-exp rule
// (Milakov & Gimelshein 2018 online softmax; Flash-Decoding; Ring Attention; research/anchors-brain.md §2).
//
// Per head and query, shard i sends (m_i, l_i, o_i) over its visible positions J_i (s ≤ queryPos):
//
//   m_i = max_{j∈J_i} s_j            (−Infinity when J_i is empty)
//   l_i = Σ exp(s_j − m_i)           (0 when empty; ≥ 1 otherwise, the maximum contributes exactly 1)
//   o_i = Σ exp(s_j − m_i) · v_j     (unnormalised, ℝ^dh)
//
// and the merge is M = max m_i over non-empty shards, L = Σ exp(m_i − M)·l_i,
// O = Σ exp(m_i − M)·o_i / L. Every exponent is ≤ 0, so nothing overflows whatever the scores; the
// result equals softmax(s)·V over all of J up to float reassociation. Scores are s_j = q_h·k_{j,h}/√dh.
// K/V are stored in f32 (memory), everything is accumulated in f64.
//
// Pure and synchronous: no I/O, no time, no randomness. Shapes that come from a peer must be checked
// by the caller (q.length === d, layer < nLayers) before partialAttention; appends from a peer go
// through KvShard.append, which returns failures as values; partials from a peer go through
// checkPartial before they are merged.
import { assert } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";

/** One shard's answer to one query row, all heads: m[H], l[H], o[H·dh] (head h at o[h·dh..]). */
export interface AttentionPartial {
  readonly m: Float64Array;
  readonly l: Float64Array;
  readonly o: Float64Array;
}
export type { AttentionPartial as Partial };

export type KvAppendResult =
  | { ok: true }
  | { ok: false; reason: "layer" | "shape" | "position" | "order" | "full"; error: string };

/** Largest global position a shard stores (LIMITS.dkva). */
export const KV_POSITION_MAX = LIMITS.dkva.positionMax;

export interface KvShardOptions {
  nLayers: number;
  /** Model width: one K row and one V row are d floats. */
  d: number;
  /** Positions a shard holds per layer at most: the bound on its memory (2·d·4 bytes + 4 per position and layer). */
  capacity: number;
  /** Rows allocated per layer at first; the buffers double up to `capacity`. Default min(capacity, 64). */
  initialRows?: number;
}

/** A read-only view of one layer of a shard (subarrays of its buffers; valid until the next append or clear). */
export interface KvLayerView {
  readonly count: number;
  readonly positions: Uint32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
}

/**
 * The K and V rows a node holds for one sequence: per layer, rows for a set of global positions,
 * strictly ascending in append order (a sequence is written forward; a replay after a failure starts
 * with `truncate`). Row storage is one Float32Array per layer for K and one for V, grown by
 * doubling, never beyond `capacity` rows.
 */
export class KvShard {
  readonly nLayers: number;
  readonly d: number;
  readonly capacity: number;
  readonly #initialRows: number;
  #k: Float32Array[];
  #v: Float32Array[];
  #pos: Uint32Array[];
  #count: number[];

  constructor(options: KvShardOptions) {
    const { nLayers, d, capacity } = options;
    assert(Number.isInteger(nLayers) && nLayers >= 1, `KvShard: nLayers must be a positive integer, got ${nLayers}`);
    assert(Number.isInteger(d) && d >= 1, `KvShard: d must be a positive integer, got ${d}`);
    assert(Number.isInteger(capacity) && capacity >= 1, `KvShard: capacity must be a positive integer, got ${capacity}`);
    const initialRows = options.initialRows ?? Math.min(capacity, 64);
    assert(Number.isInteger(initialRows) && initialRows >= 0 && initialRows <= capacity,
      `KvShard: initialRows must be an integer in [0, capacity], got ${initialRows}`);
    this.nLayers = nLayers;
    this.d = d;
    this.capacity = capacity;
    this.#initialRows = initialRows;
    this.#k = [];
    this.#v = [];
    this.#pos = [];
    this.#count = [];
    this.#allocate();
  }

  #allocate(): void {
    const rows = this.#initialRows;
    this.#k = Array.from({ length: this.nLayers }, () => new Float32Array(rows * this.d));
    this.#v = Array.from({ length: this.nLayers }, () => new Float32Array(rows * this.d));
    this.#pos = Array.from({ length: this.nLayers }, () => new Uint32Array(rows));
    this.#count = new Array<number>(this.nLayers).fill(0);
  }

  /** Stores the K and V rows of `position` at `layer`. Positions ascend strictly per layer. */
  append(layer: number, position: number, k: Float32Array, v: Float32Array): KvAppendResult {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.nLayers) {
      return { ok: false, reason: "layer", error: `layer ${layer} is outside [0, ${this.nLayers})` };
    }
    if (k.length !== this.d || v.length !== this.d) {
      return { ok: false, reason: "shape", error: `k and v must have d = ${this.d} values, got ${k.length} and ${v.length}` };
    }
    if (!Number.isInteger(position) || position < 0 || position > KV_POSITION_MAX) {
      return { ok: false, reason: "position", error: `position ${position} is not an integer in [0, 2^32)` };
    }
    const count = this.#count[layer] as number;
    const pos = this.#pos[layer] as Uint32Array;
    if (count > 0 && position <= (pos[count - 1] as number)) {
      return { ok: false, reason: "order", error: `position ${position} is not after the last stored position ${pos[count - 1]} of layer ${layer}` };
    }
    if (count >= this.capacity) {
      return { ok: false, reason: "full", error: `KV shard full: layer ${layer} holds its capacity of ${this.capacity} positions` };
    }
    if (count >= pos.length) this.#grow(layer, count);
    (this.#k[layer] as Float32Array).set(k, count * this.d);
    (this.#v[layer] as Float32Array).set(v, count * this.d);
    (this.#pos[layer] as Uint32Array)[count] = position;
    this.#count[layer] = count + 1;
    return { ok: true };
  }

  #grow(layer: number, count: number): void {
    const rows = Math.min(this.capacity, Math.max(16, count * 2));
    const k = new Float32Array(rows * this.d);
    const v = new Float32Array(rows * this.d);
    const pos = new Uint32Array(rows);
    k.set((this.#k[layer] as Float32Array).subarray(0, count * this.d));
    v.set((this.#v[layer] as Float32Array).subarray(0, count * this.d));
    pos.set((this.#pos[layer] as Uint32Array).subarray(0, count));
    this.#k[layer] = k;
    this.#v[layer] = v;
    this.#pos[layer] = pos;
  }

  /** Positions stored for `layer`, ascending (a copy). */
  positions(layer: number): Uint32Array {
    this.#checkLayer(layer);
    return (this.#pos[layer] as Uint32Array).slice(0, this.#count[layer]);
  }

  /** How many positions `layer` holds. */
  count(layer: number): number {
    this.#checkLayer(layer);
    return this.#count[layer] as number;
  }

  /** The layer's rows without copying; valid until the next append, truncate or clear. */
  view(layer: number): KvLayerView {
    this.#checkLayer(layer);
    const count = this.#count[layer] as number;
    return {
      count,
      positions: (this.#pos[layer] as Uint32Array).subarray(0, count),
      k: (this.#k[layer] as Float32Array).subarray(0, count * this.d),
      v: (this.#v[layer] as Float32Array).subarray(0, count * this.d),
    };
  }

  /** Forgets every position ≥ `fromPosition` in every layer (keeps the memory), e.g. before a replay. */
  truncate(fromPosition: number): void {
    for (let layer = 0; layer < this.nLayers; layer++) {
      const pos = this.#pos[layer] as Uint32Array;
      this.#count[layer] = lowerBound(pos, this.#count[layer] as number, fromPosition);
    }
  }

  /** Forgets everything and gives back the grown memory. */
  clear(): void {
    this.#allocate();
  }

  /** Bytes held by the row buffers (allocated, not only used). */
  bytes(): number {
    let total = 0;
    for (let layer = 0; layer < this.nLayers; layer++) {
      total += (this.#k[layer] as Float32Array).byteLength + (this.#v[layer] as Float32Array).byteLength
        + (this.#pos[layer] as Uint32Array).byteLength;
    }
    return total;
  }

  #checkLayer(layer: number): void {
    assert(Number.isInteger(layer) && layer >= 0 && layer < this.nLayers, `KvShard: layer ${layer} is outside [0, ${this.nLayers})`);
  }
}

/** First index in sorted `a[0..n)` whose value is ≥ x. */
function lowerBound(a: Uint32Array, n: number, x: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((a[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** An empty partial (m = −Infinity, l = 0, o = 0): the identity of `combine`. */
export function emptyPartial(nHeads: number, dh: number): AttentionPartial {
  return { m: new Float64Array(nHeads).fill(-Infinity), l: new Float64Array(nHeads), o: new Float64Array(nHeads * dh) };
}

let scoreScratch = new Float64Array(1024);

/**
 * The shard's partial softmax for one query row (all heads) at global position `queryPos`, over its
 * positions s ≤ queryPos of `layer`. Writes into `out` when given (it must have the right sizes).
 */
export function partialAttention(
  shard: KvShard, layer: number, q: Float32Array | Float64Array, queryPos: number, nHeads: number, out?: AttentionPartial,
): AttentionPartial {
  const d = shard.d;
  assert(Number.isInteger(nHeads) && nHeads >= 1 && d % nHeads === 0, `partialAttention: nHeads ${nHeads} must divide d ${d}`);
  assert(q.length === d, `partialAttention: q has ${q.length} values, d is ${d}`);
  const dh = d / nHeads;
  const result = out ?? emptyPartial(nHeads, dh);
  assert(result.m.length === nHeads && result.l.length === nHeads && result.o.length === d, "partialAttention: out has the wrong sizes");
  const { count, positions, k, v } = shard.view(layer);
  // Positions ascend, so the causal mask by global position is a prefix.
  const n = queryPos < 0 ? 0 : upperBound(positions, count, queryPos);
  if (scoreScratch.length < n) scoreScratch = new Float64Array(Math.max(n, scoreScratch.length * 2));
  headsAttention(k, v, n, d, q, nHeads, result, scoreScratch);
  return result;
}

/** First index in sorted `a[0..n)` whose value is > x. */
function upperBound(a: Uint32Array, n: number, x: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((a[mid] as number) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Two-pass softmax partial over rows 0..n of row-major K/V (row stride d), per head, into `out`. */
function headsAttention(
  k: Float32Array | Float64Array, v: Float32Array | Float64Array, n: number, d: number,
  q: Float32Array | Float64Array, nHeads: number, out: AttentionPartial, scores: Float64Array,
): void {
  const dh = d / nHeads;
  const scale = 1 / Math.sqrt(dh);
  const { m: mOut, l: lOut, o: oOut } = out;
  oOut.fill(0);
  for (let h = 0; h < nHeads; h++) {
    const off = h * dh;
    let m = -Infinity;
    for (let j = 0; j < n; j++) {
      const base = j * d + off;
      let s = 0;
      for (let i = 0; i < dh; i++) s += (q[off + i] as number) * (k[base + i] as number);
      s *= scale;
      scores[j] = s;
      if (s > m) m = s;
    }
    let l = 0;
    for (let j = 0; j < n; j++) {
      const w = Math.exp((scores[j] as number) - m);
      l += w;
      const base = j * d + off;
      for (let i = 0; i < dh; i++) oOut[off + i] = (oOut[off + i] as number) + w * (v[base + i] as number);
    }
    mOut[h] = m;
    lOut[h] = l;
  }
}

/**
 * Checks a partial from a peer before it is merged: sizes, l = 0 with m = −Infinity and o = 0 for an
 * empty head, otherwise m finite, 1 ≤ l ≤ positionsMax (the maximum contributes exactly 1) and o
 * finite. Returns undefined when valid, else what is wrong.
 */
export function checkPartial(p: AttentionPartial, nHeads: number, dh: number, positionsMax = KV_POSITION_MAX + 1): string | undefined {
  if (p.m.length !== nHeads || p.l.length !== nHeads || p.o.length !== nHeads * dh) {
    return `sizes m ${p.m.length}, l ${p.l.length}, o ${p.o.length}; expected ${nHeads}, ${nHeads}, ${nHeads * dh}`;
  }
  for (let h = 0; h < nHeads; h++) {
    const m = p.m[h] as number;
    const l = p.l[h] as number;
    if (l === 0) {
      if (m !== -Infinity) return `head ${h}: empty (l = 0) but m = ${m}`;
      for (let i = h * dh; i < (h + 1) * dh; i++) if (p.o[i] !== 0) return `head ${h}: empty but o ≠ 0`;
      continue;
    }
    if (!Number.isFinite(m)) return `head ${h}: m = ${m} with l = ${l}`;
    if (!(l >= 1 && l <= positionsMax)) return `head ${h}: l = ${l} outside [1, ${positionsMax}]`;
    for (let i = h * dh; i < (h + 1) * dh; i++) if (!Number.isFinite(p.o[i])) return `head ${h}: o is not finite`;
  }
  return undefined;
}

/**
 * Merges shard partials into the attention output `out` (d = nHeads·dh values, f32 or f64). Shards
 * with l = 0 for a head are skipped; a head for which every shard is empty has no visible position:
 * its output is zero and it is counted in `emptyHeads`.
 */
export function mergePartials(
  partials: readonly AttentionPartial[], nHeads: number, dh: number, out: Float32Array | Float64Array,
): { emptyHeads: number } {
  assert(out.length === nHeads * dh, `mergePartials: out has ${out.length} values, expected ${nHeads * dh}`);
  for (const p of partials) {
    assert(p.m.length === nHeads && p.l.length === nHeads && p.o.length === nHeads * dh, "mergePartials: a partial has the wrong sizes");
  }
  let emptyHeads = 0;
  const acc = new Float64Array(dh);
  for (let h = 0; h < nHeads; h++) {
    const off = h * dh;
    let M = -Infinity;
    for (const p of partials) if ((p.l[h] as number) !== 0 && (p.m[h] as number) > M) M = p.m[h] as number;
    let L = 0;
    let any = false;
    acc.fill(0);
    for (const p of partials) {
      const l = p.l[h] as number;
      if (l === 0) continue;
      any = true;
      const w = Math.exp((p.m[h] as number) - M);
      L += w * l;
      for (let i = 0; i < dh; i++) acc[i] = (acc[i] as number) + w * (p.o[off + i] as number);
    }
    if (!any) {
      emptyHeads++;
      for (let i = 0; i < dh; i++) out[off + i] = 0;
      continue;
    }
    for (let i = 0; i < dh; i++) out[off + i] = (acc[i] as number) / L;
  }
  return { emptyHeads };
}

/**
 * The pairwise merge (m,l,o) ⊕ (m',l',o'): associative and commutative with `emptyPartial` as its
 * identity, so partials can be reduced in any order or tree (ring, hierarchy, online). Returns a new
 * partial, unnormalised; `normalize` turns it into the attention output.
 */
export function combine(a: AttentionPartial, b: AttentionPartial): AttentionPartial {
  const nHeads = a.m.length;
  assert(b.m.length === nHeads && a.l.length === nHeads && b.l.length === nHeads && a.o.length === b.o.length
    && a.o.length % Math.max(nHeads, 1) === 0, "combine: partials of different shapes");
  const dh = nHeads === 0 ? 0 : a.o.length / nHeads;
  const r = emptyPartial(nHeads, dh);
  for (let h = 0; h < nHeads; h++) {
    const la = a.l[h] as number;
    const lb = b.l[h] as number;
    const off = h * dh;
    if (la === 0 && lb === 0) continue;
    if (lb === 0 || la === 0) {
      const src = lb === 0 ? a : b;
      r.m[h] = src.m[h] as number;
      r.l[h] = src.l[h] as number;
      for (let i = 0; i < dh; i++) r.o[off + i] = src.o[off + i] as number;
      continue;
    }
    const ma = a.m[h] as number;
    const mb = b.m[h] as number;
    const m = ma > mb ? ma : mb;
    const wa = Math.exp(ma - m);
    const wb = Math.exp(mb - m);
    r.m[h] = m;
    r.l[h] = la * wa + lb * wb;
    for (let i = 0; i < dh; i++) r.o[off + i] = (a.o[off + i] as number) * wa + (b.o[off + i] as number) * wb;
  }
  return r;
}

/** O = o / l per head (zero for an empty head): the attention output of a (combined) partial. */
export function normalize(p: AttentionPartial, out?: Float64Array): Float64Array {
  const nHeads = p.m.length;
  const dh = nHeads === 0 ? 0 : p.o.length / nHeads;
  const r = out ?? new Float64Array(p.o.length);
  assert(r.length === p.o.length, "normalize: out has the wrong size");
  for (let h = 0; h < nHeads; h++) {
    const l = p.l[h] as number;
    for (let i = h * dh; i < (h + 1) * dh; i++) r[i] = l === 0 ? 0 : (p.o[i] as number) / l;
  }
  return r;
}

/**
 * Single-node reference: plain softmax attention (max subtracted, float64) of query row `q` at
 * `queryPos` over rows 0..min(queryPos, T−1) of row-major K and V (T×d, row index = global position).
 */
export function fullAttention(
  K: Float32Array | Float64Array, V: Float32Array | Float64Array, q: Float32Array | Float64Array, queryPos: number, nHeads: number,
): Float64Array {
  const d = q.length;
  assert(nHeads >= 1 && d % nHeads === 0, `fullAttention: nHeads ${nHeads} must divide d ${d}`);
  assert(K.length === V.length && K.length % d === 0, "fullAttention: K and V must be T×d");
  const T = K.length / d;
  const n = Math.max(0, Math.min(T, Math.floor(queryPos) + 1));
  const dh = d / nHeads;
  const scale = 1 / Math.sqrt(dh);
  const out = new Float64Array(d);
  const p = new Float64Array(n);
  for (let h = 0; h < nHeads; h++) {
    const off = h * dh;
    let max = -Infinity;
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < dh; i++) s += (q[off + i] as number) * (K[j * d + off + i] as number);
      p[j] = s * scale;
      if ((p[j] as number) > max) max = p[j] as number;
    }
    let sum = 0;
    for (let j = 0; j < n; j++) {
      p[j] = Math.exp((p[j] as number) - max);
      sum += p[j] as number;
    }
    for (let j = 0; j < n; j++) {
      const w = (p[j] as number) / sum;
      for (let i = 0; i < dh; i++) out[off + i] = (out[off + i] as number) + w * (V[j * d + off + i] as number);
    }
  }
  return out;
}
