// data: synthetic sensor data with a hidden cause, for training and judging the Brain's models.
//
// Four sensor tokens, in this order: temperature, humidity, pressure, light (token ids 0..3).
// Three classes: 0 normal, 1 alert, 2 critical.
//
// Generative story (all in "latent units"; the emitted values are these, standardised):
//   1. A hidden fault *severity* picks the class: class c ~ priors (0.40, 0.35, 0.25), and the fault
//      magnitude is m = SEVERITY[c] (0, 1.6, 3.2) plus a little per-example jitter N(0, 0.15²)
//      for the two fault classes.
//   2. A hidden fault *kind* k ~ uniform over three kinds, each showing up in a different
//      combination of sensors (the loading rows below):
//        overheat      — temperature up, humidity down, light slightly up (glow);
//        seal breach   — humidity up, pressure down;
//        electrical arc— light up, temperature up a little, pressure down a little.
//      A normal example (m = 0) looks the same whatever its kind.
//   3. A hidden nuisance, the time of day d ~ N(0, 1), moves temperature and light together (and
//      humidity against them), whatever the class: sunshine is not a fault.
//   4. Every sensor adds its own Gaussian noise (SENSOR_NOISE, σ = 0.25).
//   5. Label noise: with probability `labelNoise` (default 0.04) the label is replaced by one of
//      the two other classes, uniformly.
//   x = m·LOADING[k] + d·DIURNAL + noise; values = (x − mean) / std (the mixture's exact moments
//   under the default priors, so values are zero-mean, unit-variance), plus an optional skew shift.
//   Normal draws use ga.ts's specified Box–Muller, so nodes that share a seed (e.g. for a common
//   held-out set) generate bit-identical data.
//
// Why a single feature is not enough: each sensor sees at most two of the three fault kinds, and
// temperature and light are blurred by the time of day, which only a model combining sensors can
// subtract. Measured on n = 4000, 25 % held out, seeds 1–3 (test/core/brain/data.test.ts checks
// the bounds): the best single-feature two-threshold rule (always pressure) reaches 0.63–0.65
// held-out; softmax regression on the raw values ≈ 0.70; on quadratic features ≈ 0.85; the Bayes
// rule of this generator (`bayesPredict`) 0.92–0.93 (bounded by sensor overlap and the 4 % label
// noise).
//
// The original's sensors were four hand-picked rows (pkernel-catalog.md §2.19) and its gate a
// temperature threshold (§2.23); this generator exists so that "the model learned something" is
// measured against a baseline that a single threshold cannot reach.
import { assert } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";
import { shuffle, type Rng } from "../util/rng.ts";
import { normalSampler } from "./ga.ts";

export const SENSORS = ["temperature", "humidity", "pressure", "light"] as const;
export const CLASSES = ["normal", "alert", "critical"] as const;
export const FAULT_KINDS = ["overheat", "seal-breach", "electrical-arc"] as const;
export const NUM_SENSORS = 4;
export const NUM_CLASSES = 3;
/** Examples generated per call, at most (LIMITS.data). */
export const SENSOR_EXAMPLES_MAX = LIMITS.data.examplesMax;

export interface SensorExample {
  /** Token ids [0, 1, 2, 3]: temperature, humidity, pressure, light. */
  readonly ids: Int32Array;
  /** Standardised readings, one per token. */
  readonly values: Float32Array;
  /** 0 normal, 1 alert, 2 critical (after label noise). */
  readonly label: number;
}

type Vec4 = readonly [number, number, number, number];
type Vec3 = readonly [number, number, number];

/** Fault magnitude per class. */
const SEVERITY: Vec3 = [0, 1.6, 3.2];
/** Standard deviation of the magnitude around SEVERITY[c] for faulty classes. */
const SEVERITY_JITTER = 0.15;
/** How each fault kind shows in (temperature, humidity, pressure, light), per unit of magnitude. */
const LOADING: readonly Vec4[] = [
  [1.0, -0.6, 0.0, 0.35], // overheat
  [0.0, 1.0, -0.8, 0.0], // seal breach
  [0.35, 0.0, -0.3, 1.0], // electrical arc
];
/** The time-of-day nuisance's effect on each sensor. */
const DIURNAL: Vec4 = [0.9, -0.45, 0.0, 1.0];
/** Independent per-sensor noise (standard deviation). */
const SENSOR_NOISE: Vec4 = [0.25, 0.25, 0.25, 0.25];
const DEFAULT_CLASS_PRIORS: Vec3 = [0.4, 0.35, 0.25];
const DEFAULT_KIND_PRIORS: Vec3 = [1 / 3, 1 / 3, 1 / 3];
const DEFAULT_LABEL_NOISE = 0.04;

/** Non-IID skew for one federated node's local data. */
export interface SensorSkew {
  /** Class priors (normalised here); e.g. [0.8, 0.15, 0.05] for a mostly quiet site. */
  readonly classPriors?: Vec3;
  /** Fault-kind priors (normalised here); e.g. [1, 0, 0] for a site that only overheats. */
  readonly kindPriors?: Vec3;
  /** Added to the standardised values: a miscalibrated sensor set (covariate shift). */
  readonly featureShift?: Vec4;
}

export interface SensorDataOptions {
  readonly skew?: SensorSkew;
  /** Probability that a label is replaced by another class, in [0, 2/3). Default 0.04. */
  readonly labelNoise?: number;
}

/** v[i] for an index known to be in range (the vectors here are fixed-length tuples). */
function at(v: readonly number[], i: number): number {
  return v[i] as number;
}

function normalisePriors(p: Vec3, what: string): Vec3 {
  const sum = p[0] + p[1] + p[2];
  if (!p.every((x) => Number.isFinite(x) && x >= 0) || !(sum > 0)) {
    throw new RangeError(`${what} must be three finite non-negative numbers with a positive sum`);
  }
  return [p[0] / sum, p[1] / sum, p[2] / sum];
}

/** Exact mean and standard deviation of x under the default priors (the standardisation). */
function defaultMoments(): { mean: Vec4; std: Vec4 } {
  const mean = [0, 0, 0, 0];
  const second = [0, 0, 0, 0];
  for (let c = 0; c < NUM_CLASSES; c++) {
    const pc = DEFAULT_CLASS_PRIORS[c] as number;
    const m = SEVERITY[c] as number;
    const mVar = c > 0 ? SEVERITY_JITTER * SEVERITY_JITTER : 0;
    for (let k = 0; k < FAULT_KINDS.length; k++) {
      const p = pc * (DEFAULT_KIND_PRIORS[k] as number);
      const row = LOADING[k] as Vec4;
      for (let j = 0; j < NUM_SENSORS; j++) {
        mean[j] = (mean[j] as number) + p * m * at(row, j);
        second[j] = (second[j] as number) + p * (m * m + mVar) * at(row, j) * at(row, j);
      }
    }
  }
  const std = [0, 0, 0, 0];
  for (let j = 0; j < NUM_SENSORS; j++) {
    const v = (second[j] as number) - (mean[j] as number) ** 2 + at(DIURNAL, j) ** 2 + at(SENSOR_NOISE, j) ** 2;
    std[j] = Math.sqrt(v);
  }
  return { mean: mean as unknown as Vec4, std: std as unknown as Vec4 };
}

const MOMENTS = defaultMoments();

function sampleIndex(rng: Rng, probs: Vec3): number {
  const u = rng.next();
  let acc = 0;
  for (let i = 0; i < probs.length; i++) {
    acc += probs[i] as number;
    if (u < acc) return i;
  }
  return probs.length - 1;
}

/** `n` examples drawn from the generative story above (deterministic in `rng`). */
export function generateSensorData(rng: Rng, n: number, opts: SensorDataOptions = {}): SensorExample[] {
  if (!Number.isInteger(n) || n < 0 || n > SENSOR_EXAMPLES_MAX) {
    throw new RangeError(`n must be an integer in 0..${SENSOR_EXAMPLES_MAX}, got ${n}`);
  }
  const labelNoise = opts.labelNoise ?? DEFAULT_LABEL_NOISE;
  if (!(labelNoise >= 0 && labelNoise < 2 / 3)) throw new RangeError(`labelNoise must be in [0, 2/3), got ${labelNoise}`);
  const classPriors = normalisePriors(opts.skew?.classPriors ?? DEFAULT_CLASS_PRIORS, "classPriors");
  const kindPriors = normalisePriors(opts.skew?.kindPriors ?? DEFAULT_KIND_PRIORS, "kindPriors");
  const shift = opts.skew?.featureShift ?? [0, 0, 0, 0];
  if (!shift.every(Number.isFinite)) throw new RangeError("featureShift must be finite");
  const normal = normalSampler(rng);
  const out: SensorExample[] = [];
  for (let i = 0; i < n; i++) {
    const c = sampleIndex(rng, classPriors);
    const k = sampleIndex(rng, kindPriors);
    const m = (SEVERITY[c] as number) + (c > 0 ? SEVERITY_JITTER * normal.next() : 0);
    const d = normal.next();
    const row = LOADING[k] as Vec4;
    const values = new Float32Array(NUM_SENSORS);
    for (let j = 0; j < NUM_SENSORS; j++) {
      const x = m * at(row, j) + d * at(DIURNAL, j) + at(SENSOR_NOISE, j) * normal.next();
      values[j] = (x - at(MOMENTS.mean, j)) / at(MOMENTS.std, j) + at(shift, j);
    }
    let label = c;
    if (rng.next() < labelNoise) label = (c + 1 + rng.int(2)) % NUM_CLASSES;
    out.push({ ids: Int32Array.from([0, 1, 2, 3]), values, label });
  }
  return out;
}

/** Splits into train and held-out parts after a seeded shuffle; held-out gets round(f·n). */
export function split<T>(examples: readonly T[], heldOutFraction: number, rng: Rng): { train: T[]; heldOut: T[] } {
  if (!(heldOutFraction >= 0 && heldOutFraction <= 1)) {
    throw new RangeError(`heldOutFraction must be in [0, 1], got ${heldOutFraction}`);
  }
  const shuffled = shuffle(rng, examples.slice());
  const h = Math.round(heldOutFraction * shuffled.length);
  return { heldOut: shuffled.slice(0, h), train: shuffled.slice(h) };
}

/** Fraction of examples whose label `predict` gets right. */
export function accuracy(predict: (ex: SensorExample) => number, examples: readonly SensorExample[]): number {
  if (examples.length === 0) throw new RangeError("accuracy of an empty example set is undefined");
  let correct = 0;
  for (const ex of examples) if (predict(ex) === ex.label) correct++;
  return correct / examples.length;
}

// ---- The best single-feature threshold rule (the baseline a model must beat) ----

export interface ThresholdRule {
  /** Index of the feature (0 temperature .. 3 light). */
  readonly feature: number;
  readonly featureName: string;
  /** [t1, t2], t1 ≤ t2; −Infinity/Infinity when an interval is empty. */
  readonly thresholds: readonly [number, number];
  /** Class of v < t1, of t1 ≤ v < t2, and of v ≥ t2. */
  readonly classes: readonly [number, number, number];
  readonly trainAccuracy: number;
  readonly heldOutAccuracy: number;
}

export function thresholdPredict(rule: Pick<ThresholdRule, "feature" | "thresholds" | "classes">, ex: SensorExample): number {
  const v = ex.values[rule.feature] as number;
  if (v < rule.thresholds[0]) return rule.classes[0];
  if (v < rule.thresholds[1]) return rule.classes[1];
  return rule.classes[2];
}

/**
 * The single-feature, two-threshold rule with the best train accuracy: for each feature, sort the
 * train examples by it; a split at sorted index i puts examples [0, i) below t1. For split indices
 * i ≤ j the correct count is max over (c1, c2, c3) of
 *   cnt[i][c1] + (cnt[j][c2] − cnt[i][c2]) + (tot[c3] − cnt[j][c3])
 * (cnt = class counts of the first i examples). For each (c1, c2) a running maximum of
 * cnt[i][c1] − cnt[i][c2] over i ≤ j makes this O(9·n) per feature after the O(n log n) sort —
 * exactly the exhaustive optimum over distinct-value cut points and all 27 class assignments.
 * Thresholds sit halfway between neighbouring distinct values. Ties go to the lowest feature, then
 * the smallest j, then (c1, c2) in order.
 */
export function bestThresholdBaseline(train: readonly SensorExample[], heldOut: readonly SensorExample[]): ThresholdRule {
  if (train.length === 0) throw new RangeError("bestThresholdBaseline needs a non-empty train set");
  const n = train.length;
  const tot = [0, 0, 0];
  for (const ex of train) {
    checkLabel(ex.label);
    tot[ex.label] = (tot[ex.label] as number) + 1;
  }
  let best: { correct: number; feature: number; i: number; j: number; classes: [number, number, number]; sorted: Float64Array } | undefined;
  for (let f = 0; f < NUM_SENSORS; f++) {
    const order = train.map((ex) => ({ v: ex.values[f] as number, y: ex.label })).sort((a, b) => a.v - b.v);
    const sorted = Float64Array.from(order, (o) => o.v);
    // cnt at position i (i = 0..n) kept incrementally.
    const cnt = [0, 0, 0];
    const runMax = new Float64Array(9).fill(-Infinity);
    const runArg = new Int32Array(9);
    for (let j = 0; j <= n; j++) {
      const cut = j === 0 || j === n || (sorted[j - 1] as number) < (sorted[j] as number);
      if (cut) {
        // i = j becomes available as a first cut.
        for (let c1 = 0; c1 < 3; c1++) {
          for (let c2 = 0; c2 < 3; c2++) {
            const v = (cnt[c1] as number) - (cnt[c2] as number);
            if (v > (runMax[c1 * 3 + c2] as number)) {
              runMax[c1 * 3 + c2] = v;
              runArg[c1 * 3 + c2] = j;
            }
          }
        }
        let c3 = 0;
        let tail = -1;
        for (let c = 0; c < 3; c++) {
          const t = (tot[c] as number) - (cnt[c] as number);
          if (t > tail) { tail = t; c3 = c; }
        }
        for (let c1 = 0; c1 < 3; c1++) {
          for (let c2 = 0; c2 < 3; c2++) {
            const correct = (runMax[c1 * 3 + c2] as number) + (cnt[c2] as number) + tail;
            if (best === undefined || correct > best.correct) {
              best = { correct, feature: f, i: runArg[c1 * 3 + c2] as number, j, classes: [c1, c2, c3], sorted };
            }
          }
        }
      }
      if (j < n) {
        const y = (order[j] as { y: number }).y;
        cnt[y] = (cnt[y] as number) + 1;
      }
    }
  }
  assert(best !== undefined, "a non-empty train set has a best rule");
  const cutAt = (sorted: Float64Array, i: number): number =>
    i === 0 ? -Infinity : i === n ? Infinity : ((sorted[i - 1] as number) + (sorted[i] as number)) / 2;
  const rule = {
    feature: best.feature,
    thresholds: [cutAt(best.sorted, best.i), cutAt(best.sorted, best.j)] as const,
    classes: best.classes,
  };
  return {
    ...rule,
    featureName: SENSORS[best.feature] as string,
    trainAccuracy: best.correct / n,
    heldOutAccuracy: heldOut.length === 0 ? NaN : accuracy((ex) => thresholdPredict(rule, ex), heldOut),
  };
}

function checkLabel(y: number): void {
  if (!(Number.isInteger(y) && y >= 0 && y < NUM_CLASSES)) throw new RangeError(`label must be 0, 1 or 2, got ${y}`);
}

// ---- The generator's own Bayes rule (an oracle ceiling for models) ----

/**
 * Posterior class probabilities of the *clean* class given standardised values, under the
 * generative story with the given skew (default priors when absent). Each (class, kind) is a
 * Gaussian in x with mean SEVERITY[c]·LOADING[k] and covariance
 * diag(noise²) + DIURNAL·DIURNALᵀ + jitter²·LOADING[k]·LOADING[k]ᵀ (for c > 0); the posterior sums
 * the kinds. Label noise does not change the argmax (it is below 2/3 and symmetric).
 */
export function bayesPosterior(values: Float32Array, skew: SensorSkew = {}): [number, number, number] {
  const classPriors = normalisePriors(skew.classPriors ?? DEFAULT_CLASS_PRIORS, "classPriors");
  const kindPriors = normalisePriors(skew.kindPriors ?? DEFAULT_KIND_PRIORS, "kindPriors");
  const shift = skew.featureShift ?? [0, 0, 0, 0];
  const x = [0, 0, 0, 0];
  for (let j = 0; j < NUM_SENSORS; j++) {
    x[j] = ((values[j] as number) - at(shift, j)) * at(MOMENTS.std, j) + at(MOMENTS.mean, j);
  }
  const logp: number[] = [];
  const cls: number[] = [];
  for (let c = 0; c < NUM_CLASSES; c++) {
    for (let k = 0; k < FAULT_KINDS.length; k++) {
      const prior = (classPriors[c] as number) * (kindPriors[k] as number);
      if (prior === 0) continue;
      const row = LOADING[k] as Vec4;
      const m = SEVERITY[c] as number;
      const cov = covariance(c > 0 ? row : undefined);
      const diff = x.map((xj, j) => xj - m * at(row, j));
      logp.push(Math.log(prior) + gaussianLogDensity(diff, cov));
      cls.push(c);
    }
  }
  const top = Math.max(...logp);
  const post = [0, 0, 0];
  let z = 0;
  logp.forEach((lp, idx) => {
    const w = Math.exp(lp - top);
    const c = cls[idx] as number;
    post[c] = (post[c] as number) + w;
    z += w;
  });
  return [(post[0] as number) / z, (post[1] as number) / z, (post[2] as number) / z];
}

/** The Bayes-optimal class under the generator (argmax of bayesPosterior). */
export function bayesPredict(values: Float32Array, skew: SensorSkew = {}): number {
  const p = bayesPosterior(values, skew);
  let best = 0;
  for (let c = 1; c < NUM_CLASSES; c++) if ((p[c] as number) > (p[best] as number)) best = c;
  return best;
}

function covariance(jitterRow: Vec4 | undefined): number[][] {
  const cov: number[][] = [];
  for (let a = 0; a < NUM_SENSORS; a++) {
    const r: number[] = [];
    for (let b = 0; b < NUM_SENSORS; b++) {
      let v = at(DIURNAL, a) * at(DIURNAL, b);
      if (a === b) v += at(SENSOR_NOISE, a) ** 2;
      if (jitterRow !== undefined) v += SEVERITY_JITTER ** 2 * at(jitterRow, a) * at(jitterRow, b);
      r.push(v);
    }
    cov.push(r);
  }
  return cov;
}

/** log N(diff; 0, cov) by a Cholesky factorisation (cov is 4×4, symmetric positive definite). */
function gaussianLogDensity(diff: readonly number[], cov: readonly (readonly number[])[]): number {
  const d = diff.length;
  const l: number[][] = Array.from({ length: d }, () => new Array<number>(d).fill(0));
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = (cov[i] as number[])[j] as number;
      for (let k = 0; k < j; k++) s -= ((l[i] as number[])[k] as number) * ((l[j] as number[])[k] as number);
      if (i === j) {
        assert(s > 0, "covariance is positive definite");
        (l[i] as number[])[i] = Math.sqrt(s);
      } else {
        (l[i] as number[])[j] = s / ((l[j] as number[])[j] as number);
      }
    }
  }
  // Solve L y = diff; quad = |y|², logdet = 2 Σ log L_ii.
  const y = new Array<number>(d).fill(0);
  let quad = 0;
  let logdet = 0;
  for (let i = 0; i < d; i++) {
    let s = diff[i] as number;
    for (let k = 0; k < i; k++) s -= ((l[i] as number[])[k] as number) * (y[k] as number);
    const lii = (l[i] as number[])[i] as number;
    y[i] = s / lii;
    quad += (y[i] as number) ** 2;
    logdet += 2 * Math.log(lii);
  }
  return -0.5 * (quad + logdet + d * Math.log(2 * Math.PI));
}
