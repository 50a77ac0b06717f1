// federated: federated-learning rounds over whole models (sans-IO orchestration on top of
// fedlearn.ts's aggregation rules and train.ts's local training).
//
// One round (McMahan et al. 2017, FedAvg's outer loop): every participating client receives a copy
// of the global parameters, trains locally (E epochs on its own, typically non-IID, data) and
// answers with its new parameters and its example count; the answers are aggregated by
// fedlearn.aggregate under its policy — FedAvg when every participant is a core (owned) node, the
// coordinate-wise trimmed mean or median (Yin et al. 2018) as soon as a contributor takes part —
// with malformed answers rejected, never averaged in, and (contributorNormRatio) a contributor's
// update far longer than the core updates' rejected too.
//
// One path for every round: `FederatedRound` (sans-IO) holds a round's participants and collects
// their answers as they come — an answer for another round, from a non-participant or a second one
// from the same participant is refused, a participant that cannot answer is marked failed — and
// aggregates them with `aggregateAnswers` once everyone has answered or failed. A node's `fl train`
// (src/node/brain/service.ts) feeds it the `train-res` answers it receives and its own update;
// `federatedRound` feeds it clients trained synchronously (simulations, tests). Local training is
// `localUpdate` in both: a node answering `train-req` and `honestClient` run the same code. The
// result does not depend on the order the answers arrived in: aggregate() is bitwise
// order-independent, ids are reported sorted, and (in aggregateAnswers) a client id answering twice
// is rejected altogether ("duplicate") rather than resolved by arrival order.
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
import { assert } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";
import { createRng, type Rng } from "../util/rng.ts";
import { aggregate, type AggregationRule, type RejectReason } from "./fedlearn.ts";
import { normalSampler } from "./ga.ts";
import type { SensorSkew } from "./data.ts";
import { trainModel, type TrainOptions } from "./train.ts";
import { paramCount, validateConfig, type Example, type ModelConfig } from "./transformer.ts";

/** Clients per round, at most (fedlearn's FED_UPDATES_MAX). */
export const FED_CLIENTS_MAX = LIMITS.fed.updatesMax;

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
  /** Reject a contributor's update whose delta norm exceeds this times the core updates' median (fedlearn). */
  readonly contributorNormRatio?: number;
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
    ...(opts.contributorNormRatio !== undefined && { contributorNormRatio: opts.contributorNormRatio }),
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

/** A participant of a round: its id and whether it is a core (owned, trusted) node. */
export interface RoundParticipant {
  readonly id: string;
  readonly core: boolean;
}

/** A participant's answer as it arrived: the round it answers, its parameters and example count. */
export interface RoundAnswer extends ClientUpdate {
  readonly round: number;
}

/** Why FederatedRound.answer refused an answer (it is not counted). */
export type RoundRefusal = "not-participant" | "settled" | "stale-round";

export interface FederatedRoundReport extends FederatedRoundResult {
  readonly round: number;
  /** Participants that answered (accepted or rejected), sorted. */
  readonly answered: readonly string[];
  /** Participants that could not answer (no answer, an error, the wrong kind of answer), sorted. */
  readonly failed: readonly { readonly id: string; readonly reason: string }[];
  /** Σ n of the accepted answers, as reported (aggregate caps each n under FedAvg). */
  readonly examples: number;
}

/**
 * One round of federated learning as a state machine: the participants, the global parameters
 * they start from, and their answers as they come in. Sans-IO: the caller sends the requests
 * (`train-req` with `round` and `global`) and feeds back what comes; `global` is not modified.
 */
export class FederatedRound {
  readonly cfg: ModelConfig;
  readonly global: Float32Array;
  readonly round: number;
  readonly participants: readonly RoundParticipant[];
  readonly #opts: FederatedRoundOptions;
  readonly #byId: Map<string, RoundParticipant>;
  readonly #answers = new Map<string, ClientAnswer>();
  readonly #failed = new Map<string, string>();

  constructor(cfg: ModelConfig, global: Float32Array, participants: readonly RoundParticipant[], opts: FederatedRoundOptions = {}) {
    checkGlobal(cfg, global);
    if (participants.length > FED_CLIENTS_MAX) throw new RangeError(`${participants.length} participants exceed FED_CLIENTS_MAX (${FED_CLIENTS_MAX})`);
    this.#byId = new Map(participants.map((p) => [p.id, p]));
    if (this.#byId.size !== participants.length) throw new RangeError("FederatedRound: participant ids must be distinct");
    const round = opts.round ?? 0;
    if (!Number.isSafeInteger(round) || round < 0) throw new RangeError(`round must be a non-negative integer, got ${round}`);
    this.cfg = cfg;
    this.global = global;
    this.round = round;
    this.participants = [...participants];
    this.#opts = opts;
  }

  /** Participants that have neither answered nor failed, in the order given. */
  get waiting(): string[] {
    return this.participants.filter((p) => !this.#answers.has(p.id) && !this.#failed.has(p.id)).map((p) => p.id);
  }

  /** Every participant has answered or failed. */
  get done(): boolean {
    return this.#answers.size + this.#failed.size === this.participants.length;
  }

  /**
   * A participant's answer. Refused (and not counted) from a non-participant, after the
   * participant's answer or failure, or for another round (a late answer to an earlier one). Its
   * content is judged by aggregateAnswers at the end: a wrong length, a non-finite value or a bad n
   * is rejected there, never averaged in.
   */
  answer(id: string, answer: RoundAnswer): RoundRefusal | undefined {
    const p = this.#byId.get(id);
    if (p === undefined) return "not-participant";
    if (this.#answers.has(id) || this.#failed.has(id)) return "settled";
    if (answer.round !== this.round) return "stale-round";
    this.#answers.set(id, { id, core: p.core, params: answer.params, n: answer.n });
    return undefined;
  }

  /** The participant could not answer (its call failed or it answered something else); ignored once settled. */
  fail(id: string, reason: string): void {
    if (!this.#byId.has(id) || this.#answers.has(id) || this.#failed.has(id)) return;
    this.#failed.set(id, reason);
  }

  /** The aggregate of the answers so far (call when done; the still-waiting count as failed). */
  result(): FederatedRoundReport {
    for (const id of this.waiting) this.#failed.set(id, "no answer");
    const answers = this.participants.flatMap((p) => this.#answers.get(p.id) ?? []);
    const aggregated = aggregateAnswers(this.cfg, this.global, answers, this.#opts);
    const accepted = new Set(aggregated.accepted);
    return {
      ...aggregated,
      examples: answers.reduce((sum, a) => sum + (accepted.has(a.id) ? a.n : 0), 0),
      round: this.round,
      answered: answers.map((a) => a.id).sort(byId),
      failed: [...this.#failed].map(([id, reason]) => ({ id, reason })).sort((a, b) => byId(a.id, b.id)),
    };
  }
}

/**
 * One federated round: each client trains from its own copy of `global`; the answers go through
 * FederatedRound (and so aggregateAnswers). `global` is not modified. Client ids must be distinct.
 */
export function federatedRound(
  cfg: ModelConfig, global: Float32Array, clients: readonly FedClient[], opts: FederatedRoundOptions = {},
): FederatedRoundResult {
  const fed = new FederatedRound(cfg, global, clients, opts);
  for (const c of clients) {
    const u = c.train(global.slice(), { round: fed.round });
    const refused = fed.answer(c.id, { round: fed.round, params: u.params, n: u.n });
    assert(refused === undefined, `federatedRound: ${c.id}'s answer refused (${refused ?? ""})`);
  }
  const { ok, params, rule, accepted, rejected, clipped, trimmed } = fed.result();
  return { ok, params, rule, accepted, rejected, clipped, trimmed };
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

/**
 * A participant's local training in a round: a copy of `global` trained on its own `data` under
 * `local` (default FED_LOCAL_DEFAULTS), shuffled by `rng`; n is the number of examples. What a node
 * answers to `train-req` and what honestClient answers.
 */
export function localUpdate(cfg: ModelConfig, global: Float32Array, data: readonly Example[], rng: Rng, local: LocalTrainOptions = FED_LOCAL_DEFAULTS): ClientUpdate {
  if (data.length === 0) throw new RangeError("localUpdate: no local data");
  const params = global.slice();
  trainModel(cfg, params, data, { ...local, rng });
  return { params, n: data.length };
}

/** A client that trains honestly on its local data. */
export function honestClient(o: HonestClientOptions): FedClient {
  if (o.data.length === 0) throw new RangeError(`client ${o.id}: no local data`);
  const local = o.local ?? FED_LOCAL_DEFAULTS;
  return {
    id: o.id,
    core: o.core,
    train: (global, ctx) => localUpdate(o.cfg, global, o.data, createRng(o.seed, ctx.round), local),
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
