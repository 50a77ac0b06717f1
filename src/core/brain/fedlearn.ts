// fedlearn: aggregation of federated model updates (sans-IO, model-agnostic: flat Float32Array
// parameter vectors).
//
// Rules and their sources (anchors-brain.md §5):
//   * FedAvg — McMahan et al., AISTATS 2017 (arXiv 1602.05629): Σ n_k·w_k / Σ n_k. n_k is
//     self-reported, so it is capped (Flower's aggregate.py has the same weakness).
//   * Coordinate-wise trimmed mean and median — Yin, Chen, Ramchandran, Bartlett, ICML 2018:
//     per coordinate, drop the ⌊β·k⌋ smallest and largest of k values and average the rest; or
//     take the median. Order-optimal error for a Byzantine fraction below β (trimmed mean) or 1/2
//     (median). They do not stop small in-variance shifts ("A Little Is Enough", Baruch et al. 2019).
//   * Norm clipping of each update's delta from the global model (anchors-brain.md §5.6).
//
// Policy (`aggregate`): when every participant is a core (owned) node, FedAvg; as soon as one
// contributor (non-core, untrusted) participates, the robust rule (trimmed mean, β = 0.2, or the
// median). An update with a NaN/Infinity, the wrong length or a bad n is rejected and counted,
// never averaged in (DESIGN.md §2 rule 6). With `contributorNormRatio` r, a contributor's update
// whose delta from the global model is longer (L2) than r times the median of the core updates'
// deltas is rejected too ("norm": a boosted or replaced model, Bagdasaryan et al. 2020, is dropped
// before the robust rule even sees it); with no valid core update in the round there is nothing to
// measure against and only the robust rule applies.
//
// All sums are in float64. Results are bitwise independent of the order the updates arrived in
// (FedAvg sums in a canonical order; the robust rules sort per coordinate), so two aggregators
// that received the same updates agree exactly.
//
// What the original got wrong (pkernel-catalog.md §2.19): its "FedAvg" sent no weights at all and
// its local gradient was a finite difference of a step loss that was exactly zero.
import { LIMITS } from "../util/limits.ts";

/** Updates aggregated per round, at most (LIMITS.fed). */
export const FED_UPDATES_MAX = LIMITS.fed.updatesMax;
/** Default cap on a self-reported example count n when aggregate() runs FedAvg (LIMITS.fed). */
export const FED_N_CAP_DEFAULT = LIMITS.fed.nCapDefault;
/** Default trimmed-mean fraction (drop ⌊β·k⌋ from each end). */
export const FED_TRIM_BETA_DEFAULT = 0.2;

export interface ModelUpdate {
  /** The participant's new model parameters (not a delta). */
  readonly params: Float32Array;
  /** Local training examples it used (self-reported; capped). */
  readonly n: number;
}

function checkVectors(vectors: readonly Float32Array[], what: string): number {
  if (vectors.length === 0) throw new RangeError(`${what}: no vectors to aggregate`);
  if (vectors.length > FED_UPDATES_MAX) throw new RangeError(`${what}: ${vectors.length} vectors exceed FED_UPDATES_MAX (${FED_UPDATES_MAX})`);
  const dim = (vectors[0] as Float32Array).length;
  vectors.forEach((v, i) => {
    if (v.length !== dim) throw new RangeError(`${what}: vector ${i} has length ${v.length}, expected ${dim}`);
    const bad = firstNonFinite(v);
    if (bad >= 0) throw new RangeError(`${what}: vector ${i} has a non-finite value at ${bad}`);
  });
  return dim;
}

/** Index of the first NaN or ±Infinity, or −1. */
export function firstNonFinite(v: Float32Array): number {
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i] as number)) return i;
  return -1;
}

/** Lexicographic order on (n, then the parameter values): the canonical summation order. */
function compareUpdates(a: { w: number; params: Float32Array }, b: { w: number; params: Float32Array }): number {
  if (a.w !== b.w) return a.w - b.w;
  for (let i = 0; i < a.params.length; i++) {
    const x = a.params[i] as number;
    const y = b.params[i] as number;
    if (x !== y) return x - y;
  }
  return 0;
}

/**
 * FedAvg (McMahan et al. 2017): Σ min(n_k, capN)·w_k / Σ min(n_k, capN). Throws RangeError on no
 * updates, mismatched lengths, non-finite values, or an n that is not finite and > 0.
 */
export function fedAvg(updates: readonly ModelUpdate[], opts: { capN?: number } = {}): Float32Array {
  const capN = opts.capN ?? Infinity;
  if (!(capN > 0)) throw new RangeError(`capN must be > 0, got ${capN}`);
  const dim = checkVectors(updates.map((u) => u.params), "fedAvg");
  const weighted = updates.map((u, i) => {
    if (!Number.isFinite(u.n) || !(u.n > 0)) throw new RangeError(`fedAvg: update ${i} has n = ${u.n}, expected finite and > 0`);
    return { w: Math.min(u.n, capN), params: u.params };
  });
  weighted.sort(compareUpdates);
  const acc = new Float64Array(dim);
  let total = 0;
  for (const { w, params } of weighted) {
    total += w;
    for (let i = 0; i < dim; i++) acc[i] = (acc[i] as number) + w * (params[i] as number);
  }
  const out = new Float32Array(dim);
  for (let i = 0; i < dim; i++) out[i] = (acc[i] as number) / total;
  return out;
}

/**
 * Coordinate-wise trimmed mean (Yin et al. 2018): per coordinate, sort the k values, drop the
 * ⌊β·k⌋ lowest and highest, average the rest. β ∈ [0, 0.5).
 */
export function trimmedMean(vectors: readonly Float32Array[], beta: number): Float32Array {
  if (!(beta >= 0 && beta < 0.5)) throw new RangeError(`trimmedMean: beta must be in [0, 0.5), got ${beta}`);
  const dim = checkVectors(vectors, "trimmedMean");
  const k = vectors.length;
  const trim = Math.floor(beta * k);
  const column = new Float64Array(k);
  const out = new Float32Array(dim);
  for (let i = 0; i < dim; i++) {
    for (let j = 0; j < k; j++) column[j] = (vectors[j] as Float32Array)[i] as number;
    column.sort();
    let sum = 0;
    for (let j = trim; j < k - trim; j++) sum += column[j] as number;
    out[i] = sum / (k - 2 * trim);
  }
  return out;
}

/** Coordinate-wise median (Yin et al. 2018); for an even count, the mean of the middle two. */
export function coordinateMedian(vectors: readonly Float32Array[]): Float32Array {
  const dim = checkVectors(vectors, "coordinateMedian");
  const k = vectors.length;
  const column = new Float64Array(k);
  const out = new Float32Array(dim);
  const mid = k >> 1;
  for (let i = 0; i < dim; i++) {
    for (let j = 0; j < k; j++) column[j] = (vectors[j] as Float32Array)[i] as number;
    column.sort();
    out[i] = k % 2 === 1 ? (column[mid] as number) : ((column[mid - 1] as number) + (column[mid] as number)) / 2;
  }
  return out;
}

/**
 * global + (update − global)·min(1, maxNorm / ‖update − global‖₂): the update moved back toward
 * the global model so that its delta has L2 norm at most maxNorm. Returns a new array.
 */
export function clipDelta(global: Float32Array, update: Float32Array, maxNorm: number): Float32Array {
  if (global.length !== update.length) throw new RangeError(`clipDelta: update has length ${update.length}, global ${global.length}`);
  if (!(maxNorm >= 0) || maxNorm === Infinity) throw new RangeError(`clipDelta: maxNorm must be finite and >= 0, got ${maxNorm}`);
  if (firstNonFinite(global) >= 0 || firstNonFinite(update) >= 0) throw new RangeError("clipDelta: non-finite value");
  const norm = deltaNorm(global, update);
  if (norm <= maxNorm) return update.slice();
  const scale = maxNorm / norm;
  const out = new Float32Array(update.length);
  for (let i = 0; i < update.length; i++) {
    const g = global[i] as number;
    out[i] = g + ((update[i] as number) - g) * scale;
  }
  return out;
}

/** The median of a non-empty list (the mean of the middle two for an even count). */
function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** ‖update − global‖₂ in float64. */
export function deltaNorm(global: Float32Array, update: Float32Array): number {
  let ss = 0;
  for (let i = 0; i < update.length; i++) {
    const d = (update[i] as number) - (global[i] as number);
    ss += d * d;
  }
  return Math.sqrt(ss);
}

export type AggregationRule = "fedavg" | "trimmed-mean" | "median";
export type RejectReason = "length" | "non-finite" | "bad-n" | "norm";

export interface AggregateOptions {
  /** The current global model: defines the expected length, and the origin for clipping. */
  readonly global: Float32Array;
  /** core[i]: is updates[i] from a core (owned, trusted) node? Same length as updates. */
  readonly core: readonly boolean[];
  /** Robust rule when a contributor participates. Default "trimmed-mean". */
  readonly robust?: "trimmed-mean" | "median";
  /** Trimmed-mean β. Default FED_TRIM_BETA_DEFAULT. */
  readonly beta?: number;
  /** Cap on self-reported n for FedAvg. Default FED_N_CAP_DEFAULT. */
  readonly capN?: number;
  /** If set, every accepted update's delta is clipped to this L2 norm first. */
  readonly maxDeltaNorm?: number;
  /**
   * If set (> 0), a contributor's update whose delta norm exceeds this times the median delta norm
   * of the round's valid core updates is rejected ("norm"), before clipping.
   */
  readonly contributorNormRatio?: number;
}

export type AggregateResult =
  | {
      readonly ok: true;
      readonly params: Float32Array;
      readonly rule: AggregationRule;
      /** Indices (into updates) that were aggregated. */
      readonly accepted: readonly number[];
      readonly rejected: readonly { readonly index: number; readonly reason: RejectReason }[];
      /** Accepted updates whose delta was clipped. */
      readonly clipped: number;
      /** Values dropped from each end per coordinate (trimmed mean only; else 0). */
      readonly trimmed: number;
    }
  | {
      readonly ok: false;
      readonly error: "no-valid-updates";
      readonly rejected: readonly { readonly index: number; readonly reason: RejectReason }[];
    };

/**
 * One aggregation round under the policy in the header. Bad updates are values (rejected and
 * counted), not exceptions; only a caller's mistake (core.length ≠ updates.length, bad options,
 * too many updates) throws.
 *
 * With a contributor present and the trimmed mean selected, if ⌊β·k⌋ = 0 (k < 1/β accepted
 * updates) the trimmed mean would trim nothing and be a plain mean, so the median is used instead
 * and reported as the rule. With k ≤ 2 no rule can outvote a bad update: callers should require a
 * quorum (Yin et al.: a Byzantine fraction below β, or below 1/2 for the median).
 */
export function aggregate(updates: readonly ModelUpdate[], opts: AggregateOptions): AggregateResult {
  if (opts.core.length !== updates.length) {
    throw new RangeError(`aggregate: core has ${opts.core.length} flags for ${updates.length} updates`);
  }
  if (updates.length > FED_UPDATES_MAX) throw new RangeError(`aggregate: ${updates.length} updates exceed FED_UPDATES_MAX (${FED_UPDATES_MAX})`);
  const beta = opts.beta ?? FED_TRIM_BETA_DEFAULT;
  if (!(beta >= 0 && beta < 0.5)) throw new RangeError(`aggregate: beta must be in [0, 0.5), got ${beta}`);
  if (firstNonFinite(opts.global) >= 0) throw new RangeError("aggregate: the global model has a non-finite value");
  if (opts.maxDeltaNorm !== undefined && !(opts.maxDeltaNorm >= 0 && opts.maxDeltaNorm < Infinity)) {
    throw new RangeError(`aggregate: maxDeltaNorm must be finite and >= 0, got ${opts.maxDeltaNorm}`);
  }
  const ratio = opts.contributorNormRatio;
  if (ratio !== undefined && !(ratio > 0 && ratio < Infinity)) throw new RangeError(`aggregate: contributorNormRatio must be finite and > 0, got ${ratio}`);
  const dim = opts.global.length;
  const rejected: { index: number; reason: RejectReason }[] = [];
  const accepted: number[] = [];
  const kept: ModelUpdate[] = [];
  let allCore = true;
  let clipped = 0;
  const problem = (u: ModelUpdate): RejectReason | null =>
    u.params.length !== dim ? "length" : firstNonFinite(u.params) >= 0 ? "non-finite" : !Number.isFinite(u.n) || !(u.n > 0) ? "bad-n" : null;
  let normMax = Infinity;
  if (ratio !== undefined) {
    const coreNorms = updates.flatMap((u, i) => (opts.core[i] === true && problem(u) === null ? [deltaNorm(opts.global, u.params)] : []));
    if (coreNorms.length > 0) normMax = ratio * median(coreNorms);
  }
  updates.forEach((u, index) => {
    const reason = problem(u);
    if (reason !== null) rejected.push({ index, reason });
    else if (opts.core[index] !== true && deltaNorm(opts.global, u.params) > normMax) rejected.push({ index, reason: "norm" });
    else {
      let params = u.params;
      if (opts.maxDeltaNorm !== undefined && deltaNorm(opts.global, params) > opts.maxDeltaNorm) {
        params = clipDelta(opts.global, params, opts.maxDeltaNorm);
        clipped++;
      }
      accepted.push(index);
      kept.push({ params, n: u.n });
      if (opts.core[index] !== true) allCore = false;
    }
  });
  if (kept.length === 0) return { ok: false, error: "no-valid-updates", rejected };
  if (allCore) {
    const params = fedAvg(kept, { capN: opts.capN ?? FED_N_CAP_DEFAULT });
    return { ok: true, params, rule: "fedavg", accepted, rejected, clipped, trimmed: 0 };
  }
  const vectors = kept.map((u) => u.params);
  const trim = Math.floor(beta * vectors.length);
  if ((opts.robust ?? "trimmed-mean") === "trimmed-mean" && trim > 0) {
    return { ok: true, params: trimmedMean(vectors, beta), rule: "trimmed-mean", accepted, rejected, clipped, trimmed: trim };
  }
  return { ok: true, params: coordinateMedian(vectors), rule: "median", accepted, rejected, clipped, trimmed: 0 };
}
