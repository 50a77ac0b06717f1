// ga: a genetic algorithm whose genome is a chain of mutation seeds (sans-IO, model-agnostic).
//
// Source: Such et al. 2017, "Deep Neuroevolution" (arXiv 1712.06567): a mutation is
// `θ' = θ + σ·ε`, ε ~ N(0, I) drawn from a seeded generator, so an evolved model is the base
// model plus the list of (seed, σ) that produced it — "million-parameter DNNs in thousands of
// bytes". Nodes exchange seeds, not weights (anchors-brain.md §8.2); every node rebuilds the same
// mutant bit for bit, so the noise generator is *specified* here rather than borrowed from the
// engine:
//
//   * uniforms: PCG32 (src/core/util/rng.ts), `createRng(seed, GA_MUTATION_STREAM)`;
//   * normals: Box–Muller in pairs. Pair j draws a = nextU32(), then b = nextU32();
//     u1 = (2^32 − a) / 2^32 ∈ (0, 1], u2 = b / 2^32 ∈ [0, 1);
//     r = sqrt(−2·ln u1); z[2j] = r·cos(2π·u2), z[2j+1] = r·sin(2π·u2).
//   * `ln`, `cos` and `sin` are *not* Math.log/cos/sin (ECMAScript lets engines approximate
//     those differently): `portableLn` and `portableSinCos2Pi` below use only +, −, ×, ÷ on IEEE-754
//     doubles (which JS rounds to nearest, never fused), so they give the same bits on every engine
//     and version. Math.sqrt is the IEEE-754 correctly rounded square root (hardware sqrt on every
//     engine we run).
//   * a mutant coordinate is `Math.fround(params[i] + sigma * z[i])` (the sum in double, stored in
//     float32).
//
// What the original got wrong (pkernel-catalog.md §2.25): its fitness was label-free
// self-confidence (rewarding over-confident models); here the caller scores on labelled held-out
// data. It accepted a mutant at `> best + 0.005`; here a mutant is kept only if its score is
// strictly better than the current parameters', and otherwise the current ones are kept.
//
// Between nodes (issue 13): a kept mutation travels as a GaRow signed by its evolver, bound to the
// weights it starts from (gaRowMessage); a node checks the signer (trust.ts) and then judges the
// weights it would get on its own held-out data with judgeMutant — at least as good, or refused.
import { createRng, type Rng } from "../util/rng.ts";
import { LIMITS } from "../util/limits.ts";
import { packValue, unpackValue } from "../wire/codec.ts";

/** PCG32 stream every mutation draws from (ASCII "GA"). Part of the mutation format. */
export const GA_MUTATION_STREAM = 0x4741;
/** Mutants proposed per gaStep, at most (LIMITS.ga). */
export const GA_POPULATION_MAX = LIMITS.ga.populationMax;
/** Mutations replayed onto a base model, at most (LIMITS.ga). */
export const GA_CHAIN_MAX = LIMITS.ga.chainMax;

export interface Mutation {
  /** Unsigned 32-bit seed of the PCG32 generator (stream GA_MUTATION_STREAM). */
  readonly seed: number;
  /** Standard deviation of the Gaussian noise added to every parameter. */
  readonly sigma: number;
}

const LN2 = 0.6931471805599453;
const SQRT_HALF = 0.7071067811865476;
const SQRT2 = 1.4142135623730951;
const HALF_PI = 1.5707963267948966;
const TWO_32 = 4294967296;

/**
 * Natural logarithm of a positive finite x using only +, −, ×, ÷ (so bit-identical on every
 * IEEE-754 engine). x = m·2^e with m ∈ [√½, √2) (exact scaling by 2), then
 * ln m = 2·atanh(s) = 2·(s + s³/3 + … + s²³/23) with s = (m − 1)/(m + 1), |s| ≤ 0.1716.
 * Relative error below 1e-15 against Math.log (tested).
 */
export function portableLn(x: number): number {
  if (!(x > 0) || x === Infinity) throw new RangeError(`portableLn needs a positive finite number, got ${x}`);
  let m = x;
  let e = 0;
  while (m < SQRT_HALF) { m *= 2; e -= 1; }
  while (m >= SQRT2) { m /= 2; e += 1; }
  const s = (m - 1) / (m + 1);
  const s2 = s * s;
  let p = 1 / 23;
  for (let k = 21; k >= 1; k -= 2) p = p * s2 + 1 / k;
  return e * LN2 + 2 * s * p;
}

/**
 * [cos(2πu), sin(2πu)] for u ∈ [0, 1), using only +, −, ×, ÷: the quadrant q = ⌊4u⌋ and
 * f = 4u − q are exact; a = f·π/2 ∈ [0, π/2); sin a and cos a are Taylor series to degree 23/22
 * in nested (Horner) form; the quadrant then rotates them.
 */
export function portableSinCos2Pi(u: number): [number, number] {
  if (!(u >= 0 && u < 1)) throw new RangeError(`portableSinCos2Pi needs u in [0, 1), got ${u}`);
  const t = u * 4;
  const q = Math.floor(t);
  const a = (t - q) * HALF_PI;
  const a2 = a * a;
  // sin a = a(1 − a²/(2·3)(1 − a²/(4·5)(1 − …))), cos a = 1 − a²/(1·2)(1 − a²/(3·4)(1 − …)).
  let s = 1;
  for (let k = 22; k >= 2; k -= 2) s = 1 - (a2 / (k * (k + 1))) * s;
  s *= a;
  let c = 1;
  for (let k = 21; k >= 1; k -= 2) c = 1 - (a2 / (k * (k + 1))) * c;
  switch (q) {
    case 0: return [c, s];
    case 1: return [-s, c];
    case 2: return [-c, -s];
    default: return [s, -c];
  }
}

/** A source of N(0, 1) draws by the specified Box–Muller above, consuming `rng` two words per pair. */
export interface NormalSampler {
  next(): number;
}

export function normalSampler(rng: Rng): NormalSampler {
  let spare = 0;
  let hasSpare = false;
  return {
    next(): number {
      if (hasSpare) {
        hasSpare = false;
        return spare;
      }
      const a = rng.nextU32();
      const b = rng.nextU32();
      const u1 = (TWO_32 - a) / TWO_32;
      const u2 = b / TWO_32;
      const r = Math.sqrt(-2 * portableLn(u1));
      const [c, s] = portableSinCos2Pi(u2);
      spare = r * s;
      hasSpare = true;
      return r * c;
    },
  };
}

function checkMutation(m: Mutation): void {
  if (!Number.isInteger(m.seed) || m.seed < 0 || m.seed >= TWO_32) {
    throw new RangeError(`mutation seed must be an unsigned 32-bit integer, got ${m.seed}`);
  }
  if (!Number.isFinite(m.sigma) || m.sigma < 0) {
    throw new RangeError(`mutation sigma must be finite and >= 0, got ${m.sigma}`);
  }
}

/** params + sigma·N(0, I) from the mutation's seed, as a new array (the input is not changed). */
export function applyMutation(params: Float32Array, mutation: Mutation): Float32Array {
  checkMutation(mutation);
  const normal = normalSampler(createRng(mutation.seed, GA_MUTATION_STREAM));
  const out = new Float32Array(params.length);
  const sigma = mutation.sigma;
  for (let i = 0; i < params.length; i++) out[i] = (params[i] as number) + sigma * normal.next();
  return out;
}

/** Rebuilds an evolved model from its base and its chain of kept mutations, in order. */
export function replay(base: Float32Array, mutations: readonly Mutation[]): Float32Array {
  if (mutations.length > GA_CHAIN_MAX) {
    throw new RangeError(`mutation chain of ${mutations.length} exceeds GA_CHAIN_MAX (${GA_CHAIN_MAX})`);
  }
  for (const m of mutations) checkMutation(m);
  let params: Float32Array = base.slice();
  for (const m of mutations) params = applyMutation(params, m);
  return params;
}

export interface GaOptions {
  /** Mutants proposed this step, 1..GA_POPULATION_MAX. */
  readonly population: number;
  /** Mutation standard deviation, > 0. */
  readonly sigma: number;
}

export interface GaStepResult {
  /** True if the best mutant scored strictly better than the current parameters. */
  readonly kept: boolean;
  /** The kept mutation (append it to the seed chain); absent when nothing was kept. */
  readonly mutation?: Mutation;
  /** Score of the current parameters (a NaN score is reported as −Infinity). */
  readonly before: number;
  /** Score of the returned parameters (= before when nothing was kept). */
  readonly after: number;
  /** Best score among the mutants, kept or not (NaN scores count as −∞). */
  readonly bestMutantScore: number;
  /** The parameters to continue from: the kept mutant, or the input array itself. */
  readonly params: Float32Array;
}

/** NaN scores (a broken model or scorer) rank below everything. */
function rank(score: number): number {
  return Number.isNaN(score) ? -Infinity : score;
}

/**
 * One (1 + λ) step: propose `population` mutants of `params` with seeds drawn from `rng`, score
 * each (the caller's `score` should use labelled held-out data; higher is better), and keep the
 * best only if it is strictly better than `params`. Ties go to the current parameters, and among
 * mutants to the first proposed.
 */
export function gaStep(
  rng: Rng,
  params: Float32Array,
  score: (p: Float32Array) => number,
  opts: GaOptions,
): GaStepResult {
  const { population, sigma } = opts;
  if (!Number.isInteger(population) || population < 1 || population > GA_POPULATION_MAX) {
    throw new RangeError(`population must be an integer in 1..${GA_POPULATION_MAX}, got ${population}`);
  }
  if (!Number.isFinite(sigma) || !(sigma > 0)) throw new RangeError(`sigma must be finite and > 0, got ${sigma}`);
  const before = rank(score(params));
  let best: { mutation: Mutation; params: Float32Array; score: number } | undefined;
  for (let i = 0; i < population; i++) {
    const mutation: Mutation = { seed: rng.nextU32(), sigma };
    const mutant = applyMutation(params, mutation);
    const s = rank(score(mutant));
    if (best === undefined || s > best.score) best = { mutation, params: mutant, score: s };
  }
  if (best !== undefined && best.score > before) {
    return { kept: true, mutation: best.mutation, before, after: best.score, bestMutantScore: best.score, params: best.params };
  }
  return { kept: false, before, after: before, bestMutantScore: best?.score ?? -Infinity, params };
}

/**
 * A mutation another node proposes, judged on this node's own data before it replaces anything:
 * accepted only if `mutant` scores at least as well as `current` (higher is better; NaN counts as
 * −∞, and a mutant scoring −∞ is never accepted).
 */
export function judgeMutant(current: Float32Array, mutant: Float32Array, score: (p: Float32Array) => number): { accepted: boolean; before: number; after: number } {
  const before = rank(score(current));
  const after = rank(score(mutant));
  return { accepted: after > -Infinity && after >= before, before, after };
}

// ---------------------------------------------------------------------------------------------
// The chain's rows (gossip topic `brain.ga`, src/node/brain/service.ts)

/** Bytes of a row's Ed25519 signature. */
const GA_SIGNATURE_BYTES = 64;
/** Code units of a row's tag and origin (as a model file's: LIMITS.modelFile.stringMax). */
const GA_ROW_STRING_MAX = LIMITS.modelFile.stringMax;
const GA_ROW_DOMAIN = new TextEncoder().encode("p-kernel ga row v1\u0000");

/**
 * A kept mutation as its evolver publishes it, keyed (in the topic) by the weights tag it starts
 * from: the mutation, the tag of the weights it gives, their held-out loss on the evolver, and the
 * evolver's id and Ed25519 signature over gaRowMessage.
 */
export interface GaRow {
  readonly seed: number;
  readonly sigma: number;
  readonly tag: string;
  readonly loss: number;
  readonly origin: string;
  readonly signature: Uint8Array;
}

/** What a row's evolver signs: the domain, then [fromTag, seed, sigma, tag, loss, origin] packed. */
export function gaRowMessage(fromTag: string, row: Omit<GaRow, "signature">): Uint8Array {
  const body = packValue([fromTag, row.seed, row.sigma, row.tag, row.loss, row.origin]);
  const out = new Uint8Array(GA_ROW_DOMAIN.length + body.length);
  out.set(GA_ROW_DOMAIN, 0);
  out.set(body, GA_ROW_DOMAIN.length);
  return out;
}

export function encodeGaRow(row: GaRow): Uint8Array {
  return packValue([row.seed, row.sigma, row.tag, row.loss, row.origin, row.signature]);
}

function rowString(x: unknown): x is string {
  return typeof x === "string" && x.length >= 1 && x.length <= GA_ROW_STRING_MAX && x.isWellFormed();
}

/** A row from the topic (any member may have written it), or why it is malformed. Never throws. */
export function decodeGaRow(bytes: Uint8Array): GaRow | string {
  const v = unpackValue(bytes);
  if (!Array.isArray(v) || v.length !== 6) return "malformed row: not [seed, sigma, tag, loss, origin, signature]";
  const [seed, sigma, tag, loss, origin, signature] = v as unknown[];
  if (typeof seed !== "number" || !Number.isInteger(seed) || seed < 0 || seed >= TWO_32) return "malformed row: seed is not a u32";
  if (typeof sigma !== "number" || !(sigma > 0 && sigma < 1)) return "malformed row: sigma outside (0, 1)";
  if (!rowString(tag) || !rowString(origin)) return "malformed row: tag or origin";
  if (typeof loss !== "number" || !Number.isFinite(loss)) return "malformed row: loss is not finite";
  if (!(signature instanceof Uint8Array) || signature.length !== GA_SIGNATURE_BYTES) return "malformed row: signature";
  return { seed, sigma, tag, loss, origin, signature: signature.slice() };
}
