// federated: federated-learning rounds over whole models (sans-IO orchestration on top of
// fedlearn.ts's aggregation rules and train.ts's local training).
//
// One round (McMahan et al. 2017, FedAvg's outer loop): every participating client receives a copy
// of the global parameters, trains locally (E epochs on its own, typically non-IID, data) and
// answers with its new parameters and its example count; the answers are aggregated by
// fedlearn.aggregate under its policy — FedAvg when every participant is a core (owned) node, the
// coordinate-wise trimmed mean or median (Yin et al. 2018) as soon as a contributor takes part —
// with malformed answers rejected, never averaged in.
//
// `federatedRound` runs the clients synchronously (simulations, tests, a node training its own
// shards); a node that collects answers over the network calls `aggregateAnswers` itself. Either
// way the result does not depend on the order the answers arrived in: aggregate() is bitwise
// order-independent, ids are reported sorted, and a client id answering twice is rejected
// altogether ("duplicate") rather than resolved by arrival order.
//
// Client builders for experiments and tests:
//   * honestClient — local training (train.ts) on its own data; the shuffle seed depends on the
//     client's seed and the round only, so a client's answer does not depend on other clients;
//   * labelFlipClient — a data-poisoning client: trains honestly on labels mapped by `flip`
//     (default y → nClasses−1−y: "critical" reported as "normal" and back; Tolpegin et al. 2020);
//   * signFlipClient — a model-poisoning client: global − scale·(local − global), the honest update
//     reversed and scaled ("boosted"), the attack family of Bhagoji et al. 2019 and the model
//     replacement of Bagdasaryan et al. 2020 (which scales by n/η to survive averaging); it may also
//     over-claim its example count;
//   * noiseClient — global + N(0, σ²) per parameter (a "Gaussian" Byzantine client).
//
// Measured (test/core/brain/federated.test.ts: 5 nodes × 500 non-IID examples, 2 local epochs,
// 20 rounds, held-out accuracy averaged over the last 3 rounds, seeds 1–5): all honest with
// FedAvg 0.84–0.88; one sign-flip ×10 node under plain FedAvg collapses to ≈ 0.39 (a constant
// class); the same node as a contributor costs the trimmed mean 0.7–3.3 points and the median
// −2.1…+2.8 points against all-honest FedAvg. The robust rules do not remove the attacker's pull
// entirely: it always sits at one extreme, so the order statistic they keep is shifted toward it,
// and with only 10 rounds they trail by 3–10 points (they converge more slowly on non-IID data).
import { createRng } from "../util/rng.ts";
import { aggregate, type AggregationRule, type RejectReason } from "./fedlearn.ts";
import { normalSampler } from "./ga.ts";
import type { SensorSkew } from "./data.ts";
import { trainModel, type TrainOptions } from "./train.ts";
import { paramCount, validateConfig, type Example, type ModelConfig } from "./transformer.ts";

/** Clients per round, at most (fedlearn's FED_UPDATES_MAX). */
export const FED_CLIENTS_MAX = 4096;

export interface RoundContext {
  /** Round number (seeds a client's local shuffle). */
  readonly round: number;
}

export interface ClientUpdate {
  /** The client's new parameters (not a delta). */
  readonly params: Float32Array;
  /** Local examples it trained on (self-reported). */
  readonly n: number;
}

export interface FedClient {
  readonly id: string;
  /** A core (owned, trusted) node; false for a contributor. */
  readonly core: boolean;
  /** Trains from a private copy of the global parameters. */
  train(global: Float32Array, ctx: RoundContext): ClientUpdate;
}

/** One client's answer as the aggregator received it. */
export interface ClientAnswer extends ClientUpdate {
  readonly id: string;
  readonly core: boolean;
}

export interface FederatedRoundOptions {
  /** Round number passed to the clients. Default 0. */
  readonly round?: number;
  /** Robust rule when a contributor participates. Default "trimmed-mean". */
  readonly robust?: "trimmed-mean" | "median";
  /** Trimmed-mean β (fedlearn default 0.2). */
  readonly beta?: number;
  /** Cap on self-reported n under FedAvg (fedlearn default). */
  readonly capN?: number;
  /** Clip every update's delta from the global model to this L2 norm first. */
  readonly maxDeltaNorm?: number;
}

export type AnswerRejectReason = RejectReason | "duplicate";

export interface FederatedRoundResult {
  /** False when no answer was usable: params is then a copy of the global model. */
  readonly ok: boolean;
  /** The new global parameters (a new array). */
  readonly params: Float32Array;
  /** The rule that produced params; null when !ok. */
  readonly rule: AggregationRule | null;
  /** Ids aggregated, sorted. */
  readonly accepted: readonly string[];
  /** Ids rejected and why, sorted by id. */
  readonly rejected: readonly { readonly id: string; readonly reason: AnswerRejectReason }[];
  /** Accepted answers whose delta was clipped (maxDeltaNorm). */
  readonly clipped: number;
  /** Values dropped from each end per coordinate (trimmed mean), else 0. */
  readonly trimmed: number;
}

function checkGlobal(cfg: ModelConfig, global: Float32Array): void {
  validateConfig(cfg);
  if (!(global instanceof Float32Array) || global.length !== paramCount(cfg)) {
    throw new RangeError(`global parameters must be a Float32Array of ${paramCount(cfg)} entries`);
  }
}

const byId = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Aggregates the answers of one round under fedlearn.aggregate's policy. Order-independent: any
 * permutation of `answers` gives the same bits and the same report.
 */
export function aggregateAnswers(
  cfg: ModelConfig, global: Float32Array, answers: readonly ClientAnswer[], opts: FederatedRoundOptions = {},
): FederatedRoundResult {
  checkGlobal(cfg, global);
  if (answers.length > FED_CLIENTS_MAX) throw new RangeError(`${answers.length} answers exceed FED_CLIENTS_MAX (${FED_CLIENTS_MAX})`);
  const seen = new Map<string, number>();
  for (const a of answers) seen.set(a.id, (seen.get(a.id) ?? 0) + 1);
  const rejected: { id: string; reason: AnswerRejectReason }[] = [];
  for (const [id, count] of seen) if (count > 1) rejected.push({ id, reason: "duplicate" });
  const unique = answers.filter((a) => seen.get(a.id) === 1);
  const result = aggregate(unique.map((a) => ({ params: a.params, n: a.n })), {
    global,
    core: unique.map((a) => a.core === true),
    ...(opts.robust !== undefined && { robust: opts.robust }),
    ...(opts.beta !== undefined && { beta: opts.beta }),
    ...(opts.capN !== undefined && { capN: opts.capN }),
    ...(opts.maxDeltaNorm !== undefined && { maxDeltaNorm: opts.maxDeltaNorm }),
  });
  for (const r of result.rejected) rejected.push({ id: (unique[r.index] as ClientAnswer).id, reason: r.reason });
  rejected.sort((a, b) => byId(a.id, b.id));
  if (!result.ok) return { ok: false, params: global.slice(), rule: null, accepted: [], rejected, clipped: 0, trimmed: 0 };
  return {
    ok: true,
    params: result.params,
    rule: result.rule,
    accepted: result.accepted.map((i) => (unique[i] as ClientAnswer).id).sort(byId),
    rejected,
    clipped: result.clipped,
    trimmed: result.trimmed,
  };
}

/**
 * One federated round: each client trains from its own copy of `global`; the answers are
 * aggregated by aggregateAnswers. `global` is not modified. Client ids must be distinct.
 */
export function federatedRound(
  cfg: ModelConfig, global: Float32Array, clients: readonly FedClient[], opts: FederatedRoundOptions = {},
): FederatedRoundResult {
  checkGlobal(cfg, global);
  if (clients.length > FED_CLIENTS_MAX) throw new RangeError(`${clients.length} clients exceed FED_CLIENTS_MAX (${FED_CLIENTS_MAX})`);
  const ids = new Set(clients.map((c) => c.id));
  if (ids.size !== clients.length) throw new RangeError("federatedRound: client ids must be distinct");
  const round = opts.round ?? 0;
  if (!Number.isSafeInteger(round) || round < 0) throw new RangeError(`round must be a non-negative integer, got ${round}`);
  const answers = clients.map((c) => {
    const u = c.train(global.slice(), { round });
    return { id: c.id, core: c.core, params: u.params, n: u.n };
  });
  return aggregateAnswers(cfg, global, answers, opts);
}

// ---------------------------------------------------------------------------------------------
// Clients for experiments

/** Local training options of a client (its rng is derived from its seed and the round). */
export type LocalTrainOptions = Omit<TrainOptions, "rng" | "heldOut" | "onProgress" | "shouldStop">;

/**
 * Local-training defaults for a federated round: 2 epochs of AdamW at a constant lr 0.01 (a fresh
 * optimizer each round, so a warm-up/cosine schedule per round would only slow it down).
 */
export const FED_LOCAL_DEFAULTS: LocalTrainOptions = Object.freeze({ epochs: 2, lr: 0.01, schedule: "constant" });

export interface HonestClientOptions {
  readonly id: string;
  readonly core: boolean;
  readonly cfg: ModelConfig;
  /** The client's local examples. */
  readonly data: readonly Example[];
  /** Seeds the local shuffles: round r uses createRng(seed, r). */
  readonly seed: number;
  /** Local training; default FED_LOCAL_DEFAULTS. */
  readonly local?: LocalTrainOptions;
}

/** A client that trains honestly on its local data. */
export function honestClient(o: HonestClientOptions): FedClient {
  if (o.data.length === 0) throw new RangeError(`client ${o.id}: no local data`);
  const local = o.local ?? FED_LOCAL_DEFAULTS;
  return {
    id: o.id,
    core: o.core,
    train(global, ctx) {
      const params = global.slice();
      trainModel(o.cfg, params, o.data, { ...local, rng: createRng(o.seed, ctx.round) });
      return { params, n: o.data.length };
    },
  };
}

/** A data-poisoning client: trains like honestClient on labels mapped by `flip`. */
export function labelFlipClient(o: HonestClientOptions & { readonly flip?: (label: number) => number }): FedClient {
  const C = o.cfg.nClasses;
  const flip = o.flip ?? ((y: number) => C - 1 - y);
  const data = o.data.map((ex) => ({ ids: ex.ids, values: ex.values, label: flip(ex.label) }));
  return honestClient({ ...o, data });
}

export interface SignFlipClientOptions {
  readonly id: string;
  readonly core: boolean;
  /** Computes the honest-looking local model whose update is reversed. */
  readonly base: FedClient;
  /** The answer is global − scale·(local − global). Default 10. */
  readonly scale?: number;
  /** Example count to claim; default the base's. */
  readonly claimN?: number;
}

/** A model-poisoning client: the base client's update, sign-flipped and scaled. */
export function signFlipClient(o: SignFlipClientOptions): FedClient {
  const scale = o.scale ?? 10;
  if (!Number.isFinite(scale)) throw new RangeError(`scale must be finite, got ${scale}`);
  return {
    id: o.id,
    core: o.core,
    train(global, ctx) {
      const honest = o.base.train(global.slice(), ctx);
      const params = new Float32Array(global.length);
      for (let i = 0; i < global.length; i++) {
        const g = global[i] as number;
        params[i] = g - scale * ((honest.params[i] as number) - g);
      }
      return { params, n: o.claimN ?? honest.n };
    },
  };
}

/** A client answering global + N(0, sigma²) noise (seeded by seed and round). */
export function noiseClient(o: { readonly id: string; readonly core: boolean; readonly sigma: number; readonly seed: number; readonly n: number }): FedClient {
  if (!(o.sigma >= 0 && o.sigma < Infinity)) throw new RangeError(`sigma must be finite and >= 0, got ${o.sigma}`);
  return {
    id: o.id,
    core: o.core,
    train(global, ctx) {
      const normal = normalSampler(createRng(o.seed, ctx.round));
      const params = new Float32Array(global.length);
      for (let i = 0; i < global.length; i++) params[i] = (global[i] as number) + o.sigma * normal.next();
      return { params, n: o.n };
    },
  };
}

/**
 * A non-IID skew for client `i` of a federation over the sensor data: a fraction `peak` of its
 * examples from class i mod 3 (the rest split evenly over the other two) and the same fraction of
 * its faults of kind (i + 1) mod 3. Default peak 0.5 (twice the share of each other class);
 * 1/3 is IID.
 */
export function nonIidSkew(i: number, peak = 0.5): SensorSkew {
  if (!Number.isInteger(i) || i < 0) throw new RangeError(`client index must be a non-negative integer, got ${i}`);
  if (!(peak >= 0 && peak <= 1)) throw new RangeError(`peak must be in [0, 1], got ${peak}`);
  const rest = (1 - peak) / 2;
  const at = (k: number): [number, number, number] => [k === 0 ? peak : rest, k === 1 ? peak : rest, k === 2 ? peak : rest];
  return { classPriors: at(i % 3), kindPriors: at((i + 1) % 3) };
}
