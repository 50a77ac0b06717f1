// The Brain of one node (issue 6): the replicated model, the node's side of distributed inference
// (a BrainWorker answering peers, a Coordinator running requests over peers), local training, the
// node's own expert (MoE) and federated learning rounds. Pure cores do the work
// (src/core/brain/); this file joins them to the kernel.
//
// The model is a file of the shared folder, `/shared/brain/model.pkm` (model-file.ts): written by
// `dtr train`, `dtr init` or a federated round, replicated to every node by sfs, loaded when it
// changes (a bad file is refused and counted; the node keeps the model it has). Until one exists
// every node runs the same deterministic untrained seed model (version 0), so nodes agree on the
// weights from the start. Peers check the weights tag in every request (parallel.ts): a node still
// on another version answers "weights" and is dropped from that request.
//
// Trust (issue 13). Only a core node publishes: a contributor's `dtr train|init`, `fl train` and
// `ga run` answer an error. A published file is signed (PKM2) by the writer's identity, and a node
// runs a file only if modelTrustError passes — signed by its origin, a member whose entry's key maps
// to its id, a signature that verifies, a core role; otherwise it is refused and counted
// (`modelUntrusted`) and the model in use stays (a file signed by a member not known yet is read
// again when that member comes alive). GA rows are signed likewise and followed only from core
// evolvers, and only when the weights they lead to score at least as well on this node's held-out
// data. In a federated round a contributor's update goes through the robust rule, and one whose
// delta is far longer than the core updates' is dropped (fedlearn.ts). Distributed inference
// audits a fraction of the runs with a contributor among the peers (parallel.ts): a peer caught
// answering wrong is banned (sent no more work, until this node restarts), counted and announced
// (`brain-cheater`).
//
// RPC. Brain messages (brain-wire.ts) travel in the kernel's `brain` message on the stream channel:
// `c` a call id, `r` reply or request, `b` the encoded brain message. Calls have a deadline in ticks
// (checked every tick, so late by at most one) and fail at once when SWIM declares the peer dead or
// gone; a failed call makes the Coordinator drop the peer and compute its share here (REDUCED or
// SOLO), so no request hangs. A request is answered synchronously when it arrives.
//
// The Coordinator (parallel.ts) is a sans-IO state machine that keeps its own calls and their
// deadlines; this service feeds it answers, ticks and deaths, sends what its ready() holds (with
// call ids from the one id space of this service), calls advance() once they are out, and turns
// its outcomes into the Promises `infer` returns. The expert and training calls are this
// service's own (`call`, Promise-based). A Coordinator replaced by a new model keeps being driven
// until its runs are done.
//
// GA. In idle time the Raft leader (one evolver, so the chain does not fork) proposes mutants of
// the seed-shaped model and keeps one only if it scores better (lower loss) on its held-out data.
// Nodes exchange the mutation, not the weights (Such et al. 2017): a row of the gossip topic
// `brain.ga`, keyed by the tag of the weights it starts from, holds [seed, sigma, tag after, loss,
// origin, signature] (ga.ts: GaRow); every node walks the chain from the weights it runs (applyMutation
// is bit-exact across nodes), checks each row's signer and resulting tag, and adopts the chain's
// head once it scores at least as well on its own held-out data as what it runs (a head that scores
// worse is judged again only when the chain grows). A new model file starts a new chain.
//
// Data. Each node has its own sensor data (data.ts), drawn from a seed derived from its id with a
// site skew (one class over-represented), so nodes train on different, non-IID data: `dtr train`
// and local experts train on it; every report is on held-out data the training never saw.
import { Coordinator, BrainWorker, weightsTag, type ParallelMode, type RunRequest, type RunResult } from "../../core/brain/parallel.ts";
import { decodeBrainMessage, encodeBrainMessage, type BrainMessage } from "../../core/brain/brain-wire.ts";
import { decodeModelFile, encodeSignedModelFile, modelTrustError, type ModelFileHeader, type ModelTrust } from "../../core/brain/model-file.ts";
import { forward, initParams, inputError, KvCache, paramCount, SEED_CONFIG, SEED_CLASSES, step as decodeStep, Workspace, type ModelConfig } from "../../core/brain/transformer.ts";
import { bestThresholdBaseline, generateSensorData, split, type SensorExample } from "../../core/brain/data.ts";
import { evaluate, Trainer, type TrainProgress, type TrainReport } from "../../core/brain/train.ts";
import { type AggregationRule } from "../../core/brain/fedlearn.ts";
import { FED_LOCAL_DEFAULTS, FederatedRound, localUpdate, type ClientUpdate } from "../../core/brain/federated.ts";
import { MoeRouter } from "../../core/brain/moe.ts";
import { drawProbes, recordProbe, sensorProbeSource, type Probe } from "../../core/brain/experts.ts";
import { applyMutation, decodeGaRow, encodeGaRow, gaRowMessage, gaStep, judgeMutant, type Mutation } from "../../core/brain/ga.ts";
import { signerRefusal } from "../../core/brain/trust.ts";
import { hash } from "node:crypto";
import { LIMITS } from "../../core/util/limits.ts";
import { createRng, type Rng } from "../../core/util/rng.ts";
import { fnv1a, FNV_OFFSET } from "../../core/util/bytes.ts";
import type { SharedFolder } from "../collective/shared-folder.ts";

export const MODEL_PATH = "brain/model.pkm";
/** Local decode sessions kept at once (each holds a KV cache of the model's seqLen). */
const LOCAL_SESSIONS_MAX = LIMITS.brain.localSessionsMax;

export interface BrainConfig {
  /** Deadline of one call to a peer. */
  readonly callDeadlineTicks: number;
  /** Peers a distributed request uses at most (3 nodes in all by default). */
  readonly peersMax: number;
  /** Examples of this node's own sensor data, of which heldOutFraction are held out. */
  readonly localExamples: number;
  readonly heldOutFraction: number;
  /** Epochs of `dtr train` unless given. */
  readonly trainEpochs: number;
  /** Epochs of a federated round's local training. */
  readonly federatedEpochs: number;
  /** Labelled probes per node and class that `moe probe` sends. */
  readonly probesPerClass: number;
  /** Largest model file loaded. */
  readonly modelBytesMax: number;
  /** GA: a generation every this many ticks while idle (0: never on its own). */
  readonly gaEveryTicks: number;
  /** GA: no inference (run or served) nor training for this long counts as idle. */
  readonly gaIdleTicks: number;
  readonly gaPopulation: number;
  readonly gaSigma: number;
  /** Fraction of distributed runs and sessions with a contributor among the peers whose contributor answers are recomputed here. */
  readonly spotCheckFraction: number;
  /** An answer is wrong when an element is off by more than this times max(1, |expected|). */
  readonly spotCheckTolerance: number;
  /** A contributor's federated update is dropped when its delta is longer than this times the core updates' median. */
  readonly fedContributorNormRatio: number;
}

export const BRAIN_DEFAULTS: BrainConfig = {
  callDeadlineTicks: 100,
  peersMax: 2,
  localExamples: 4000,
  heldOutFraction: 0.25,
  trainEpochs: 30,
  federatedEpochs: 2,
  probesPerClass: 20,
  modelBytesMax: 256 * 1024 * 1024,
  // The idle GA is the DMN's now (src/node/self/dmn.ts): the Brain no longer starts it on its own.
  gaEveryTicks: 0,
  gaIdleTicks: 500,
  gaPopulation: 4,
  gaSigma: 0.01,
  spotCheckFraction: 0.1,
  spotCheckTolerance: 1e-3,
  fedContributorNormRatio: 4,
};

export const GA_TOPIC = "brain.ga";

/** The GA chain walked ahead of the weights in use (BrainService.#followChain). */
interface ChainAhead {
  base: string;
  rows: string[];
  mutations: Mutation[];
  params: Float32Array;
  tag: string;
  judged: boolean;
}
/** Time a slice of sliced work (training, a DMN GA generation) runs before it yields (ms). */
const SLICE_MS = 4;
/** Training steps between two looks at the slice's clock. */
const TRAIN_STEPS_PER_CHECK = 2;
/** Held-out examples scored per slice by a sliced GA generation. */
const GA_EVAL_CHUNK = 50;
/** Chain rows followed per tick at most. */
const GA_FOLLOW_PER_TICK = LIMITS.brain.gaFollowRowsPerTickMax;
/** Peers caught answering wrong that a node keeps banned, oldest forgotten first. */
const BANNED_MAX = LIMITS.brain.bannedPeersMax;

/** The kernel's `brain` message. */
export interface BrainEnvelope {
  readonly t: "brain";
  readonly c: number;
  readonly r: boolean;
  readonly b: Uint8Array;
}

export interface BrainHost {
  readonly id: string;
  send(to: string, message: BrainEnvelope): void;
  /** SWIM's live members, self excluded, in a stable order. */
  liveIds(): readonly string[];
  /** Every member SWIM does not hold dead (suspects included), self excluded, in a stable order. */
  memberIds(): readonly string[];
  tick(): number;
  nowMs(): number;
  event(type: string, data: Record<string, unknown>): void;
  /** The shared folder, when the node has one. */
  folder(): SharedFolder | undefined;
  /** Runs fn after the current I/O (setImmediate); absent: at once. */
  defer?: (fn: () => void) => void;
  /** The gossip topic rows of the GA chain. */
  gossipGet(topic: string, key: string): Uint8Array | undefined;
  gossipPublish(topic: string, key: string, value: Uint8Array): string | undefined;
  /** Whether this node leads Raft (the one GA evolver). */
  isLeader(): boolean;
  /** A member's role, this node's included; undefined when unknown (treated as contributor). */
  roleOf(id: string): string | undefined;
  /** The public key a member's entry holds, this node's included; undefined for a stranger. */
  publicKeyOf(id: string): Uint8Array | undefined;
  /** Signs with this node's Ed25519 identity. */
  sign(data: Uint8Array): Uint8Array;
  verify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
  /** The node id of a public key. */
  idOf(publicKey: Uint8Array): string;
}

export interface GaStats {
  generations: number;
  kept: number;
  /** Mutations adopted from others' chain rows. */
  followed: number;
  /** Rows refused as malformed or not giving the weights they claim. */
  refused: number;
  /** Rows refused for their signer: unsigned, badly signed, unknown or not core. */
  untrusted: number;
  /** Chain heads that scored worse here than the weights in use (not adopted). */
  worse: number;
  lastLoss: number | undefined;
  lastError: string;
}

export interface LoadedModel {
  readonly header: ModelFileHeader;
  readonly cfg: ModelConfig;
  readonly params: Float32Array;
  readonly tag: string;
  readonly worker: BrainWorker;
  readonly coordinator: Coordinator;
}

/** A new model version's held-out accuracy on one node, against the version it replaced there. */
export interface ModelCheck {
  readonly version: number;
  readonly tag: string;
  readonly kind: string;
  readonly accuracy: number;
  readonly previousVersion: number;
  readonly previousAccuracy: number | null;
}

export type InferMode = "local" | ParallelMode;

export interface InferOutcome {
  readonly logits: Float32Array;
  readonly probs: number[];
  readonly class: number;
  readonly label: string;
  /** FULL, REDUCED or SOLO (local inference is SOLO by definition). */
  readonly state: RunResult["mode"];
  readonly dropped: readonly string[];
  readonly peers: readonly string[];
  readonly ms: number;
  readonly modelVersion: number;
  readonly roundTrips: number;
}

interface PendingCall {
  readonly peer: string;
  readonly deadline: number;
  readonly resolve: (msg: BrainMessage) => void;
  readonly reject: (error: Error) => void;
}

export interface BrainCounters {
  callsSent: number;
  callsFailed: number;
  callsTimedOut: number;
  requestsServed: number;
  badMessages: number;
  modelLoads: number;
  /** Model files refused as malformed (the decoder's checks, the weights tag). */
  modelRejected: number;
  /** Model files refused for their signature: unsigned, badly signed, or not by a core member. */
  modelUntrusted: number;
  inferences: Record<InferMode | "remote" | "moe", number>;
  reduced: number;
  solo: number;
  /** Runs and sessions audited, answers recomputed, answers found wrong (spot checks). */
  audited: number;
  checked: number;
  caught: number;
  /** Contributors' and others' federated updates dropped by the aggregation (non-finite, norm, ...). */
  fedRejected: number;
  /** Training requests refused because their sender is not a core member (only the core coordinates rounds). */
  trainRefused: number;
  lastModelError: string;
}

export interface FederatedRoundReport {
  readonly round: number;
  readonly participants: readonly string[];
  readonly failed: readonly string[];
  readonly rule: AggregationRule;
  readonly rejected: number;
  readonly heldOutAccuracy: number;
}

const utf8 = new TextEncoder();

function seedOf(id: string): number {
  return fnv1a(FNV_OFFSET, utf8.encode(id)) >>> 0;
}

function softmax(logits: Float32Array): number[] {
  let max = -Infinity;
  for (const x of logits) max = Math.max(max, x);
  const e = [...logits].map((x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if ((v[i] as number) > (v[best] as number)) best = i;
  return best;
}

export class BrainService {
  readonly config: BrainConfig;
  readonly counters: BrainCounters = {
    callsSent: 0, callsFailed: 0, callsTimedOut: 0, requestsServed: 0, badMessages: 0, modelLoads: 0, modelRejected: 0, modelUntrusted: 0,
    inferences: { local: 0, pipeline: 0, tensor: 0, dkva: 0, remote: 0, moe: 0 }, reduced: 0, solo: 0,
    audited: 0, checked: 0, caught: 0, fedRejected: 0, trainRefused: 0, lastModelError: "",
  };
  readonly router = new MoeRouter();
  readonly #host: BrainHost;
  readonly #pending = new Map<number, PendingCall>();
  #callId = 0;
  /** Coordinators being driven: the current model's, and older ones until their runs are done. */
  readonly #coordinators = new Set<Coordinator>();
  /** Runs waiting for their outcome, per coordinator. */
  readonly #runs = new Map<Coordinator, Map<number, { resolve: (r: RunResult) => void; reject: (e: Error) => void }>>();
  #loaded: LoadedModel | undefined;
  /** The node's own expert (MoE): trained on its local data only; the shared model until then. */
  #expert: { params: Float32Array; version: number; report: TrainReport | undefined } | undefined;
  #dataCache: { train: SensorExample[]; heldOut: SensorExample[]; classPriors: [number, number, number] } | undefined;
  #baseline: ReturnType<typeof bestThresholdBaseline> | undefined;
  #training: string | undefined;
  #loading = false;
  #reloadWanted = false;
  readonly #rng: Rng;
  #lastTrain: TrainReport | undefined;
  readonly #rounds: FederatedRoundReport[] = [];
  /** The model as the file holds it (the GA chain starts from it). */
  #fileModel: LoadedModel | undefined;
  /** The model this node ran before the current file's (for a model rollback). */
  #previousModel: LoadedModel | undefined;
  /** The current model file's held-out accuracy here, and its predecessor's: what the rollout judges. */
  modelCheck: ModelCheck | undefined;
  /** Mutations applied on top of the file's model. */
  #chain: Array<{ seed: number; sigma: number }> = [];
  #lastBusyTick = 0;
  gaEnabled = true;
  readonly ga: GaStats = { generations: 0, kept: 0, followed: 0, refused: 0, untrusted: 0, worse: 0, lastLoss: undefined, lastError: "" };
  /**
   * The GA chain walked ahead of the weights in use: from `base` (the tag in use), the rows checked
   * so far (their keys and digests), their mutations, the weights and tag they give; `judged` once
   * its head scored worse here (judged again when the chain grows). One row at a time is refused
   * for good (`badRow`).
   */
  #ahead: ChainAhead | undefined;
  /** A sliced judgement of the chain's head is running (a real node). */
  #judging = false;
  #badRow: string | undefined;
  /** Peers caught answering wrong: no more distributed work for them (until this node restarts). */
  readonly #cheaters = new Set<string>();
  /** The signer of the last model file refused because this node did not know it yet. */
  #awaitingSigner: string | undefined;
  readonly #trust: ModelTrust;
  /** Spot-check counts of each coordinator already added to the counters. */
  readonly #auditSeen = new WeakMap<Coordinator, { audited: number; checked: number }>();
  /** Local decode sessions (mode local), least recently used first. */
  readonly #localSessions = new Map<string, { tag: string; cache: KvCache }>();

  constructor(host: BrainHost, rng: Rng, config: BrainConfig = BRAIN_DEFAULTS) {
    this.#host = host;
    this.#rng = rng;
    this.config = config;
    this.#trust = {
      sha256: (bytes) => new Uint8Array(hash("sha256", bytes, "buffer")),
      publicKeyOf: (id) => host.publicKeyOf(id),
      idOf: (key) => host.idOf(key),
      verify: (key, data, signature) => host.verify(key, data, signature),
      roleOf: (id) => host.roleOf(id),
    };
  }

  /** Whether this node may publish (models, GA rows, federated results): only a core node does. */
  get core(): boolean {
    return this.#host.roleOf(this.#host.id) === "core";
  }

  /** Peers caught answering wrong, banned from distributed inference here. */
  get cheaters(): readonly string[] {
    return [...this.#cheaters];
  }

  #mustBeCore(what: string): void {
    if (!this.core) throw new Error(`${what}: this node is a contributor, and only core nodes publish models`);
  }

  /** The model in use; until a model file is loaded, the deterministic untrained seed model. */
  get model(): LoadedModel {
    this.#loaded ??= this.#initialModel();
    return this.#loaded;
  }

  // Built on first use: a thousand simulated kernels never pay for it.
  get #model(): LoadedModel {
    return this.model;
  }

  set #model(model: LoadedModel) {
    this.#loaded = model;
  }

  /** This node's sensor data: the site's skew is one class, chosen by the id, twice as frequent. */
  get #data(): { train: SensorExample[]; heldOut: SensorExample[]; classPriors: [number, number, number] } {
    if (this.#dataCache === undefined) {
      const seed = seedOf(this.#host.id);
      const classPriors: [number, number, number] = [1, 1, 1];
      classPriors[seed % 3] = 2;
      const all = generateSensorData(createRng(seed, 0x6461), this.config.localExamples, { skew: { classPriors } });
      this.#dataCache = { ...split(all, this.config.heldOutFraction, createRng(seed, 0x7370)), classPriors };
    }
    return this.#dataCache;
  }

  get training(): string | undefined {
    return this.#training;
  }

  get lastTrain(): TrainReport | undefined {
    return this.#lastTrain;
  }

  get rounds(): readonly FederatedRoundReport[] {
    return this.#rounds;
  }

  get localData(): { readonly train: number; readonly heldOut: number; readonly classPriors: readonly number[] } {
    return { train: this.#data.train.length, heldOut: this.#data.heldOut.length, classPriors: this.#data.classPriors };
  }

  /** The best single-feature threshold rule on this node's data (computed once). */
  baseline(): ReturnType<typeof bestThresholdBaseline> {
    this.#baseline ??= bestThresholdBaseline(this.#data.train, this.#data.heldOut);
    return this.#baseline;
  }

  /** Accuracy of the shared model on this node's held-out data. */
  heldOutAccuracy(params: Float32Array = this.#model.params, cfg: ModelConfig = this.#model.cfg): number | undefined {
    if (cfg.vocab !== SEED_CONFIG.vocab || cfg.seqLen < 4 || cfg.nClasses !== 3) return undefined;
    return evaluate(cfg, params, this.#data.heldOut).accuracy;
  }

  /**
   * The model's held-out accuracy on at most `n` of this node's held-out examples, as they are and
   * with their readings passed through `filter` (a sensor prefilter under a rollout's watch);
   * undefined when the model does not take sensor readings.
   */
  async prefilterAccuracy(n: number, filter: (values: readonly Float32Array[]) => Promise<Float32Array[]>): Promise<{ with: number; without: number } | undefined> {
    const model = this.#model;
    if (!this.#evolvable()) return undefined;
    const sample = this.#data.heldOut.slice(0, n);
    if (sample.length === 0) return undefined;
    const filtered = await filter(sample.map((ex) => ex.values));
    const without = evaluate(model.cfg, model.params, sample).accuracy;
    const withIt = evaluate(model.cfg, model.params, sample.map((ex, i) => ({ ...ex, values: filtered[i] ?? ex.values }))).accuracy;
    return { with: withIt, without };
  }

  /** Loss of the shared model (or of `params` of its shape) on this node's held-out data: what the GA scores. */
  heldOutLoss(params: Float32Array = this.#model.params): number | undefined {
    return this.#evolvable() ? evaluate(this.#model.cfg, params, this.#data.heldOut).loss : undefined;
  }

  // ---- Model ------------------------------------------------------------------------------------

  /** Reads the model file, if the node has a shared folder and the file exists. */
  async load(): Promise<void> {
    const folder = this.#host.folder();
    if (folder === undefined) return;
    if (this.#loading) {
      this.#reloadWanted = true;
      return;
    }
    this.#loading = true;
    try {
      let bytes: Uint8Array;
      try {
        bytes = await folder.files.read(MODEL_PATH, this.config.modelBytesMax + 1);
      } catch {
        return; // no model file yet
      }
      this.#install(bytes);
    } finally {
      this.#loading = false;
      if (this.#reloadWanted) {
        this.#reloadWanted = false;
        void this.load();
      }
    }
  }

  /** A file of the shared folder changed (an sfs event). */
  onFileChanged(path: string): void {
    if (path === MODEL_PATH) void this.load();
  }

  /** Loads model file bytes if they decode and a core member signed them; else refuses and counts them. */
  #install(bytes: Uint8Array): void {
    if (bytes.length > this.config.modelBytesMax) return this.#reject(`model file larger than ${this.config.modelBytesMax} bytes`);
    const decoded = decodeModelFile(bytes, { maxBytes: this.config.modelBytesMax });
    if (!decoded.ok) return this.#reject(decoded.error);
    const { header, params } = decoded;
    const tag = weightsTag(header.config, params);
    if (tag !== header.tag) return this.#reject(`weights tag ${tag} differs from the header's ${header.tag}`);
    const untrusted = modelTrustError(decoded, this.#trust);
    if (untrusted !== null) {
      this.#awaitingSigner = untrusted.reason === "unknown-signer" ? decoded.signature?.signer : undefined;
      return this.#reject(untrusted.error, untrusted.reason);
    }
    this.#awaitingSigner = undefined;
    if (this.#fileModel !== undefined && tag === this.#fileModel.tag) return;
    const previous = this.#fileModel ?? this.#model;
    this.#model = this.#build(header, params, tag);
    this.#fileModel = this.#model;
    this.#previousModel = previous;
    // Measured once per new version, on this node's held-out data: the model rollout's evidence.
    const accuracy = this.heldOutAccuracy(params, header.config);
    const before = previous.cfg.vocab === header.config.vocab && previous.cfg.nClasses === header.config.nClasses ? this.heldOutAccuracy(previous.params, previous.cfg) : undefined;
    this.modelCheck = accuracy === undefined ? undefined : { version: header.version, tag, kind: header.kind, accuracy, previousVersion: previous.header.version, previousAccuracy: before ?? null };
    this.#chain = [];
    this.counters.modelLoads++;
    this.#host.event("brain-model-loaded", { version: header.version, kind: header.kind, tag, params: params.length, signer: header.origin });
  }

  #reject(error: string, untrusted?: string): void {
    if (untrusted === undefined) this.counters.modelRejected++;
    else this.counters.modelUntrusted++;
    this.counters.lastModelError = error;
    this.#host.event("brain-model-rejected", { error, ...(untrusted === undefined ? {} : { untrusted }) });
  }

  /** Version 0: the same untrained weights on every node, never written to a file. */
  #initialModel(): LoadedModel {
    const params = initParams(SEED_CONFIG, createRng(0x5eed, 1));
    const tag = weightsTag(SEED_CONFIG, params);
    return this.#build({ config: SEED_CONFIG, version: 0, tag, createdMs: 0, origin: "", kind: "init" }, params, tag);
  }

  #build(header: ModelFileHeader, params: Float32Array, tag: string): LoadedModel {
    const cfg = header.config;
    const coordinator = new Coordinator(cfg, params, {
      weightsTag: tag, id: this.#host.id, callDeadlineTicks: this.config.callDeadlineTicks, callId: () => this.#nextCallId(),
      audit: {
        fraction: this.config.spotCheckFraction, tolerance: this.config.spotCheckTolerance, rng: this.#rng.fork(),
        untrusted: (peer) => this.#host.roleOf(peer) !== "core",
      },
    });
    for (const cheater of this.#cheaters) coordinator.ban(cheater);
    this.#coordinators.add(coordinator);
    return { header, cfg, params, tag, worker: new BrainWorker(cfg, params, { weightsTag: tag }), coordinator };
  }

  /** Writes a new model version, signed here, to the shared folder (replicated to every node) and loads it. Core nodes only. */
  async publish(cfg: ModelConfig, params: Float32Array, kind: ModelFileHeader["kind"], metrics: ModelFileHeader["metrics"]): Promise<ModelFileHeader> {
    this.#mustBeCore("publish");
    const folder = this.#host.folder();
    const header: ModelFileHeader = {
      config: cfg, version: this.#model.header.version + 1, tag: weightsTag(cfg, params), createdMs: Math.floor(this.#host.nowMs()),
      origin: this.#host.id, kind, ...(metrics === undefined ? {} : { metrics }),
    };
    const bytes = encodeSignedModelFile(header, params, { id: this.#host.id, sign: (m) => this.#host.sign(m) }, this.#trust.sha256);
    if (folder === undefined) {
      // No shared folder (the simulator): the model stays on this node.
      this.#install(bytes);
      return header;
    }
    const staged = await folder.files.stageBytes(bytes);
    const result = folder.core.localWrite(MODEL_PATH, staged.info, staged.temp);
    if (!result.ok) await folder.files.discardStaged(staged.temp);
    const error = await folder.wait(result);
    if (error !== undefined) throw new Error(`writing /shared/${MODEL_PATH}: ${error}`);
    this.#install(bytes);
    return header;
  }

  /**
   * A model rollback: the weights this node ran before `version` are published again (a new
   * version, kind "restored"). Only when `version` is still the current model. Core nodes only.
   */
  async restore(version: number): Promise<ModelFileHeader | undefined> {
    this.#mustBeCore("restore a model");
    const previous = this.#previousModel;
    if (this.#fileModel?.header.version !== version || previous === undefined) return undefined;
    const accuracy = this.heldOutAccuracy(previous.params, previous.cfg);
    return this.publish(previous.cfg, previous.params, "restored", accuracy === undefined ? undefined : { heldOutAccuracy: accuracy, baselineAccuracy: this.baseline().heldOutAccuracy });
  }

  /** `dtr init SHAPE`: a freshly initialised model of any shape (for tests and benchmarks). */
  async init(cfg: ModelConfig, seed: number): Promise<ModelFileHeader> {
    this.#mustBeCore("dtr init");
    return this.publish(cfg, initParams(cfg, createRng(seed, 2)), "init", undefined);
  }

  // ---- Training ----------------------------------------------------------------------------------

  /**
   * `dtr train`: trains the shared seed model on this node's data (in slices, so the node keeps
   * answering), reports held-out accuracy against the best single-feature threshold, and
   * publishes the result as the next model version.
   */
  async train(
    epochs: number, progress: (line: string) => void = () => undefined, steps?: (at: TrainProgress) => void,
  ): Promise<{ report: TrainReport; baseline: number; header: ModelFileHeader }> {
    if (this.#training !== undefined) throw new Error(`a training is running (${this.#training})`);
    this.#mustBeCore("dtr train");
    const cfg = this.#model.cfg;
    if (cfg.vocab !== SEED_CONFIG.vocab || cfg.nClasses !== 3) throw new Error("dtr train trains the seed shape on sensor data; the loaded model has another shape (dtr init seed first)");
    this.#training = "dtr train";
    try {
      const params = this.#model.params.slice();
      const report = await this.#runTrainer(cfg, params, this.#data.train, epochs, progress, steps);
      const baseline = this.baseline().heldOutAccuracy;
      this.#lastTrain = report;
      const header = await this.publish(cfg, params, "trained", {
        heldOutAccuracy: report.heldOutAccuracy ?? 0, baselineAccuracy: baseline, trainAccuracy: report.trainAccuracy,
        loss: report.finalLoss, examples: this.#data.train.length, epochs: report.epochs,
      });
      return { report, baseline, header };
    } finally {
      this.#training = undefined;
    }
  }

  /** `steps` hears where the training is after every slice of steps (a progress bar's feed). */
  #runTrainer(
    cfg: ModelConfig, params: Float32Array, train: readonly SensorExample[], epochs: number, progress: (line: string) => void, steps?: (at: TrainProgress) => void,
  ): Promise<TrainReport> {
    const trainer = new Trainer(cfg, params, train, {
      epochs, rng: this.#rng.fork(), heldOut: this.#data.heldOut,
      onProgress: (p) => {
        progress(`epoch ${p.epoch}: loss ${p.loss.toFixed(4)}${p.heldOutAccuracy === undefined ? "" : `, held-out ${(100 * p.heldOutAccuracy).toFixed(1)}%`}`);
        this.#host.event("brain-train-progress", { epoch: p.epoch, steps: p.step, of: p.steps, loss: p.loss, heldOut: p.heldOutAccuracy ?? null });
      },
    });
    const defer = this.#host.defer;
    if (defer === undefined) {
      trainer.runSteps(Infinity);
      steps?.(trainer.progress());
      return Promise.resolve(trainer.report());
    }
    return new Promise((resolve, reject) => {
      const slice = (): void => {
        try {
          // A few steps at a time until the slice's time is spent: the node keeps answering.
          const start = performance.now();
          do trainer.runSteps(TRAIN_STEPS_PER_CHECK);
          while (!trainer.done && performance.now() - start < SLICE_MS);
          steps?.(trainer.progress());
          if (trainer.done) resolve(trainer.report());
          else defer(slice);
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      };
      defer(slice);
    });
  }

  /** This node's update in a federated round: the core's local training from the given params on its own data. */
  #trainLocal(cfg: ModelConfig, params: Float32Array, epochs: number, seed: number): ClientUpdate {
    return localUpdate(cfg, params, this.#data.train, createRng(seed, seedOf(this.#host.id)), { ...FED_LOCAL_DEFAULTS, epochs });
  }

  /** `moe train`: this node's expert, trained from the shared model on its own data only. */
  async trainExpert(epochs: number): Promise<{ version: number; heldOutAccuracy: number }> {
    if (this.#training !== undefined) throw new Error(`a training is running (${this.#training})`);
    this.#training = "moe train";
    try {
      const { cfg } = this.#model;
      const params = this.#model.params.slice();
      const report = await this.#runTrainer(cfg, params, this.#data.train, epochs, () => undefined);
      this.#expert = { params, version: (this.#expert?.version ?? 0) + 1, report };
      return { version: this.#expert.version, heldOutAccuracy: report.heldOutAccuracy ?? 0 };
    } finally {
      this.#training = undefined;
    }
  }

  // ---- Inference ---------------------------------------------------------------------------------

  /** Peers for a distributed request: up to peersMax live members not caught cheating, in a stable order. */
  peers(): string[] {
    return this.#host.liveIds().filter((id) => !this.#cheaters.has(id)).slice(0, this.config.peersMax);
  }

  async infer(mode: InferMode, ids: Int32Array, values: Float32Array, options: { session?: string; peers?: readonly string[] } = {}): Promise<InferOutcome> {
    const started = this.#host.nowMs();
    this.#lastBusyTick = this.#host.tick();
    const model = this.#model;
    let logits: Float32Array;
    let state: RunResult["mode"] = "SOLO";
    let dropped: readonly string[] = [];
    let roundTrips = 0;
    let peers: readonly string[] = [];
    if (mode === "local" && options.session !== undefined) {
      logits = this.#localStep(options.session, ids, values);
    } else if (mode === "local") {
      const error = inputError(model.cfg, ids, values);
      if (error !== null) throw new RangeError(error);
      logits = forward(model.cfg, model.params, ids, values, new Workspace(model.cfg, Float32Array, { rows: ids.length })).slice();
    } else {
      peers = options.peers ?? this.peers();
      const result = await this.#run(model.coordinator, { mode, ids, values, peers, ...(options.session === undefined ? {} : { session: options.session }) });
      logits = result.logits;
      state = result.mode;
      peers = result.peers; // a session's are those of its first request
      dropped = result.dropped;
      roundTrips = result.roundTrips;
      if (state === "REDUCED") this.counters.reduced++;
      if (state === "SOLO" && peers.length > 0) this.counters.solo++;
    }
    this.counters.inferences[mode]++;
    return this.#outcome(logits, state, dropped, peers, started, roundTrips);
  }

  /** `infer NODE ...`: the whole Transformer run on another node (one stage of every layer), the head here. */
  async inferAt(node: string, ids: Int32Array, values: Float32Array): Promise<InferOutcome> {
    const outcome = await this.infer("pipeline", ids, values, { peers: [node] });
    this.counters.inferences.remote++;
    return outcome;
  }

  #outcome(logits: Float32Array, state: RunResult["mode"], dropped: readonly string[], peers: readonly string[], started: number, roundTrips: number): InferOutcome {
    const probs = softmax(logits);
    const cls = argmax(logits);
    const labels: readonly string[] = this.#model.cfg.nClasses === SEED_CLASSES.length ? SEED_CLASSES : [];
    return {
      logits, probs, class: cls, label: labels[cls] ?? `class ${cls}`, state, dropped, peers,
      ms: this.#host.nowMs() - started, modelVersion: this.#model.header.version, roundTrips,
    };
  }

  /** A local decode session: the KV cache stays here between requests. */
  #localStep(session: string, ids: Int32Array, values: Float32Array): Float32Array {
    const model = this.#model;
    let entry = this.#localSessions.get(session);
    if (entry !== undefined && entry.tag !== model.tag) throw new RangeError(`session ${session} was started with other weights`);
    if (entry === undefined) {
      if (this.#localSessions.size >= LOCAL_SESSIONS_MAX) this.#localSessions.delete(this.#localSessions.keys().next().value as string);
      entry = { tag: model.tag, cache: new KvCache(model.cfg) };
    }
    this.#localSessions.delete(session);
    this.#localSessions.set(session, entry);
    const error = inputError(model.cfg, ids, values, entry.cache.length);
    if (error !== null) throw new RangeError(error);
    let logits: Float32Array = new Float32Array(0);
    for (let i = 0; i < ids.length; i++) logits = decodeStep(model.cfg, model.params, entry.cache, ids[i] as number, values[i] as number);
    return logits.slice();
  }

  /** Ends a decode session here and on every peer that holds part of it (after its runs in progress). */
  async endSession(session: string): Promise<void> {
    this.#localSessions.delete(session);
    const coordinator = this.#model.coordinator;
    coordinator.end(session);
    this.#pump(coordinator);
  }

  /** Starts a run on the coordinator (a RangeError for bad input rejects); resolves with its result. */
  #run(coordinator: Coordinator, req: RunRequest): Promise<RunResult> {
    const run = coordinator.start(req);
    const result = new Promise<RunResult>((resolve, reject) => {
      let waiting = this.#runs.get(coordinator);
      if (waiting === undefined) this.#runs.set(coordinator, (waiting = new Map()));
      waiting.set(run, { resolve, reject });
    });
    this.#pump(coordinator);
    return result;
  }

  /** Carries out what the coordinator has ready: sends (then advance), outcomes to their waiters, cheaters banned. */
  #pump(coordinator: Coordinator): void {
    while (coordinator.hasReady()) {
      const { sends, outcomes, caught } = coordinator.ready();
      for (const c of caught) this.#caughtCheating(c.peer, { mode: c.mode, what: c.what, diff: c.diff });
      for (const { to, call, msg } of sends) {
        if (call !== 0) this.counters.callsSent++;
        this.#host.send(to, { t: "brain", c: call === 0 ? this.#nextCallId() : call, r: false, b: encodeBrainMessage(msg) });
      }
      const waiting = this.#runs.get(coordinator);
      for (const outcome of outcomes) {
        const waiter = waiting?.get(outcome.run);
        waiting?.delete(outcome.run);
        if (outcome.ok) waiter?.resolve(outcome.result);
        else waiter?.reject(new Error(outcome.error));
      }
      coordinator.advance();
    }
    const seen = this.#auditSeen.get(coordinator) ?? { audited: 0, checked: 0 };
    this.counters.audited += coordinator.stats.audited - seen.audited;
    this.counters.checked += coordinator.stats.checked - seen.checked;
    this.#auditSeen.set(coordinator, { audited: coordinator.stats.audited, checked: coordinator.stats.checked });
    if (coordinator !== this.#loaded?.coordinator && coordinator.idle) {
      this.#coordinators.delete(coordinator);
      this.#runs.delete(coordinator);
    }
  }

  /** A peer answered wrong: banned here and on every coordinator, counted and announced. */
  #caughtCheating(peer: string, detail: { mode: string; what: string; diff: number }): void {
    this.counters.caught++;
    if (!this.#cheaters.has(peer)) {
      if (this.#cheaters.size >= BANNED_MAX) this.#cheaters.delete(this.#cheaters.values().next().value as string);
      this.#cheaters.add(peer);
    }
    for (const coordinator of this.#coordinators) coordinator.ban(peer);
    this.#host.event("brain-cheater", { id: peer, ...detail });
  }

  #nextCallId(): number {
    this.#callId = (this.#callId % 0xffff_ffff) + 1;
    return this.#callId;
  }

  // ---- MoE ---------------------------------------------------------------------------------------

  /**
   * `moe probe`: the router's own labelled probes through experts.ts's drawProbes (the path the
   * tests' runProbes takes) — 3 × perClass probes per node of the classes measured least there,
   * each drawn from the router's own generator (never from a node) — sent to every live member's
   * expert and to this node's; each answer is scored against the label with recordProbe.
   */
  async probe(perClass: number = this.config.probesPerClass): Promise<number> {
    const nodes = [this.#host.id, ...this.#host.liveIds()];
    const rng = this.#rng.fork();
    const byNode = new Map<string, Probe[]>(nodes.map((node) => [node, []]));
    for (const probe of drawProbes(this.router, rng, nodes, 3 * perClass, sensorProbeSource(rng))) byNode.get(probe.node)!.push(probe);
    let sent = 0;
    await Promise.all(nodes.map(async (node) => {
      for (const probe of byNode.get(node)!) {
        const answer = await this.#askExpert(node, probe.example.ids, Float32Array.from(probe.example.values)).catch(() => undefined);
        if (answer === undefined) continue;
        recordProbe(this.router, probe, argmax(answer));
        sent++;
      }
    }));
    return sent;
  }

  /** `moe infer`: the shared model is the gate; its class picks the expert with the best measured accuracy for it. */
  async moeInfer(ids: Int32Array, values: Float32Array): Promise<InferOutcome & { expert: string; gateClass: number }> {
    const started = this.#host.nowMs();
    const gate = await this.infer("local", ids, values);
    const live = [this.#host.id, ...this.#host.liveIds()];
    const expert = this.router.route(gate.class, live, this.#rng) ?? this.#host.id;
    let logits: Float32Array;
    let state: RunResult["mode"] = "FULL";
    let dropped: string[] = [];
    try {
      logits = await this.#askExpert(expert, ids, values);
    } catch {
      // The expert failed: the gate's answer stands.
      logits = gate.logits;
      state = "REDUCED";
      dropped = [expert];
    }
    this.counters.inferences.moe++;
    return { ...this.#outcome(logits, state, dropped, [expert], started, expert === this.#host.id ? 0 : 1), expert, gateClass: gate.class };
  }

  async #askExpert(node: string, ids: Int32Array, values: Float32Array): Promise<Float32Array> {
    if (node === this.#host.id) return this.#expertLogits(ids, values);
    const answer = await this.call(node, { t: "expert-req", requestId: 0, ids, values });
    if (answer.t !== "expert-res" || answer.logits.length !== this.#model.cfg.nClasses) throw new Error(`${node}: bad expert answer`);
    return answer.logits;
  }

  #expertLogits(ids: Int32Array, values: Float32Array): Float32Array {
    const params = this.#expert?.params ?? this.#model.params;
    return forward(this.#model.cfg, params, ids, values, new Workspace(this.#model.cfg, Float32Array, { rows: ids.length })).slice();
  }

  // ---- Federated learning ----------------------------------------------------------------------

  /**
   * `fl train`: rounds of federated learning coordinated here. Every live member (and this node)
   * trains the current shared model on its own data for a few epochs and sends back its weights;
   * they are aggregated (FedAvg when every participant is a core node, trimmed mean or median when
   * a contributor takes part) and published as the next model version. The round itself is the
   * core's FederatedRound (federated.ts): answers for another round are refused, malformed ones
   * (length, non-finite, n) and contributors' far too long ones (norm) rejected, never averaged in,
   * and counted (`fedRejected`). Core nodes only: the result is published.
   */
  async federated(rounds: number, progress: (line: string) => void = () => undefined): Promise<FederatedRoundReport[]> {
    if (this.#training !== undefined) throw new Error(`a training is running (${this.#training})`);
    this.#mustBeCore("fl train");
    this.#training = "fl train";
    const out: FederatedRoundReport[] = [];
    try {
      for (let r = 0; r < rounds; r++) {
        const { cfg, params } = this.#model;
        const round = this.#rounds.length + 1;
        const seed = this.#rng.nextU32();
        // Suspects are asked too: a node slowed by its own training is often suspected for a
        // moment (a round in CI lost a member that way); a dead one fails its call at once.
        const members = this.#host.memberIds();
        const fed = new FederatedRound(cfg, params, [
          { id: this.#host.id, core: true }, ...members.map((id) => ({ id, core: this.#host.roleOf(id) === "core" })),
        ], { round, contributorNormRatio: this.config.fedContributorNormRatio });
        const calls = members.map(async (id) => {
          try {
            const answer = await this.call(id, { t: "train-req", requestId: 0, round, epochs: this.config.federatedEpochs, seed, params }, 60 * this.config.callDeadlineTicks);
            if (answer.t !== "train-res") fed.fail(id, answer.t === "error" ? `${answer.code}: ${answer.message}` : `answered ${answer.t}`);
            else {
              const refused = fed.answer(id, answer);
              if (refused !== undefined) fed.fail(id, refused);
            }
          } catch (error) {
            fed.fail(id, error instanceof Error ? error.message : String(error));
          }
        });
        // This node trains once the others have answered: training blocks the event loop, and a
        // coordinator that stalls while its peers train holds their answers (and SWIM's probes)
        // until it is done — with training first, a member's round-2 answer went missing in CI.
        await Promise.all(calls);
        fed.answer(this.#host.id, { round, ...this.#trainLocal(cfg, params, this.config.federatedEpochs, seed) });
        const result = fed.result();
        this.counters.fedRejected += result.rejected.length;
        if (!result.ok || result.rule === null) throw new Error(`round ${round}: no valid update (${result.rejected.length} rejected, ${result.failed.length} failed)`);
        const accuracy = this.heldOutAccuracy(result.params, cfg) ?? 0;
        await this.publish(cfg, result.params, "federated", { heldOutAccuracy: accuracy, rounds: round, examples: result.examples });
        const report: FederatedRoundReport = {
          round, participants: result.answered, failed: result.failed.map((f) => f.id), rule: result.rule,
          rejected: result.rejected.length, heldOutAccuracy: accuracy,
        };
        this.#rounds.push(report);
        if (this.#rounds.length > LIMITS.brain.fedRoundsKeptMax) this.#rounds.shift();
        out.push(report);
        progress(`round ${round}: ${result.answered.length} updates (${result.failed.length} failed${result.rejected.length === 0 ? "" : `, ${result.rejected.length} rejected`}), ${result.rule}, held-out ${(100 * accuracy).toFixed(1)}%`);
      }
      return out;
    } finally {
      this.#training = undefined;
    }
  }

  // ---- GA ----------------------------------------------------------------------------------------

  get chainLength(): number {
    return this.#chain.length;
  }

  /** Why the idle GA (run by the DMN) would not run a generation here now, or undefined when it may. */
  gaIdleBlocker(): string | undefined {
    if (!this.gaEnabled) return "the GA is off (ga off)";
    if (!this.core) return "this node is a contributor";
    if (!this.#host.isLeader()) return "not the Raft leader (the one evolver)";
    if (this.#fileModel === undefined) return "no model published yet";
    if (this.#training !== undefined) return `a training is running (${this.#training})`;
    if (!this.#evolvable()) return "the model is not seed-shaped";
    return undefined;
  }

  /**
   * Why the DMN would not train the seed model here now, or undefined when it may: only while the
   * cluster has never published a model (no model file in the shared folder, booted), on the Raft
   * leader, a core node, with no training running.
   */
  seedTrainBlocker(): string | undefined {
    const folder = this.#host.folder();
    if (folder === undefined || !folder.booted) return "the shared folder is not ready";
    if (this.#fileModel !== undefined || folder.core.stat(MODEL_PATH) !== undefined) return "the cluster has a model";
    if (!this.core) return "this node is a contributor";
    if (!this.#host.isLeader()) return "not the Raft leader";
    if (this.#training !== undefined) return `a training is running (${this.#training})`;
    return undefined;
  }

  #evolvable(): boolean {
    const cfg = this.#model.cfg;
    return cfg.vocab === SEED_CONFIG.vocab && cfg.nClasses === 3 && cfg.seqLen >= 4;
  }

  /**
   * Runs GA generations now: each proposes gaPopulation mutants, scores them by held-out loss
   * here, and keeps the best only if it beats the current weights; a kept mutation is published
   * (seed and sigma, not weights, in a row signed here) for every node to judge. Returns the
   * generations kept. Core nodes only.
   */
  evolve(generations: number): { kept: number; before: number; after: number } {
    if (!this.core) throw new Error("ga run: this node is a contributor, and only core nodes publish GA mutations");
    if (!this.#evolvable()) throw new Error("GA evolves the seed-shaped sensor model; the loaded model has another shape");
    if (this.#training !== undefined) throw new Error(`a training is running (${this.#training})`);
    const score = this.#score();
    let kept = 0;
    let first: number | undefined;
    let last = 0;
    for (let g = 0; g < generations; g++) {
      const base = this.#model;
      const result = gaStep(this.#rng, base.params, score, { population: this.config.gaPopulation, sigma: this.config.gaSigma });
      this.ga.generations++;
      first ??= -result.before;
      last = -result.after;
      this.ga.lastLoss = last;
      if (!result.kept || result.mutation === undefined) continue;
      if (!this.#keep(base, result.params, result.mutation, last)) break;
      kept++;
    }
    return { kept, before: first ?? last, after: last };
  }

  /**
   * One GA generation as `evolve(1)` makes it, in slices: the weights in use and each mutant are
   * scored on the held-out data a chunk of examples at a time, `pause()` between chunks (the DMN's
   * slice boundary: it yields to the event loop and may stop the generation). A generation whose
   * base model changed meanwhile keeps nothing.
   */
  async evolveSliced(pause: () => Promise<void>): Promise<{ kept: number; before: number; after: number }> {
    if (!this.core) throw new Error("ga: this node is a contributor, and only core nodes publish GA mutations");
    if (!this.#evolvable()) throw new Error("GA evolves the seed-shaped sensor model; the loaded model has another shape");
    if (this.#training !== undefined) throw new Error(`a training is running (${this.#training})`);
    const base = this.#model;
    const lossOf = (params: Float32Array): Promise<number> => this.#heldOutLoss(base, params, pause);
    const before = await lossOf(base.params);
    let best: { mutation: Mutation; params: Float32Array; loss: number } | undefined;
    for (let i = 0; i < this.config.gaPopulation; i++) {
      const mutation: Mutation = { seed: this.#rng.nextU32(), sigma: this.config.gaSigma };
      const params = applyMutation(base.params, mutation);
      const loss = await lossOf(params);
      if (best === undefined || loss < best.loss) best = { mutation, params, loss };
    }
    this.ga.generations++;
    if (this.#model !== base) return { kept: 0, before, after: before };
    if (best === undefined || !(best.loss < before)) {
      this.ga.lastLoss = before;
      return { kept: 0, before, after: before };
    }
    this.ga.lastLoss = best.loss;
    return { kept: this.#keep(base, best.params, best.mutation, best.loss) ? 1 : 0, before, after: best.loss };
  }

  /** Mean held-out loss of `params` (of `model`'s shape), a chunk of examples per slice; NaN counts as +∞. */
  async #heldOutLoss(model: LoadedModel, params: Float32Array, pause: () => Promise<void>): Promise<number> {
    const held = this.#data.heldOut;
    let sum = 0;
    for (let at = 0; at < held.length; at += GA_EVAL_CHUNK) {
      const part = held.slice(at, at + GA_EVAL_CHUNK);
      sum += evaluate(model.cfg, params, part).loss * part.length;
      await pause();
    }
    const loss = sum / held.length;
    return Number.isNaN(loss) ? Infinity : loss;
  }

  /** Publishes a kept mutation (a row signed here) and adopts it; false if the row was refused. */
  #keep(base: LoadedModel, params: Float32Array, mutation: Mutation, loss: number): boolean {
    const tag = weightsTag(base.cfg, params);
    const unsigned = { seed: mutation.seed, sigma: mutation.sigma, tag, loss, origin: this.#host.id };
    const row = encodeGaRow({ ...unsigned, signature: this.#host.sign(gaRowMessage(base.tag, unsigned)) });
    const error = this.#host.gossipPublish(GA_TOPIC, base.tag, row);
    if (error !== undefined) {
      this.ga.lastError = error;
      return false;
    }
    this.#adopt(params, [mutation], tag);
    this.ga.kept++;
    return true;
  }

  /** Held-out score of weights of the model's shape here (higher is better: −loss). */
  #score(): (p: Float32Array) => number {
    const cfg = this.#model.cfg, held = this.#data.heldOut;
    return (p) => -evaluate(cfg, p, held).loss;
  }

  /**
   * Walks the chain rows published from the weights in use (up to GA_FOLLOW_PER_TICK a call):
   * each row must be well-formed, signed by a core member, and give the weights it names. At the
   * chain's head, adopts the mutations walked if the head scores at least as well on this node's
   * held-out data as the weights in use; otherwise keeps them and judges again when the chain grows.
   */
  #followChain(): void {
    const model = this.#model;
    const keyOf = (from: string): string | undefined => {
      const bytes = this.#host.gossipGet(GA_TOPIC, from);
      return bytes === undefined ? undefined : `${from}/${fnv1a(FNV_OFFSET, bytes) >>> 0}`;
    };
    // The rows walked must still be the topic's: one rewritten (another evolver at that key) restarts the walk.
    if (this.#ahead?.base !== model.tag || !this.#ahead.rows.every((key) => keyOf(key.slice(0, key.lastIndexOf("/"))) === key)) this.#ahead = undefined;
    for (let i = 0; i < GA_FOLLOW_PER_TICK; i++) {
      const from = this.#ahead?.tag ?? model.tag;
      const bytes = this.#host.gossipGet(GA_TOPIC, from);
      if (bytes === undefined) break;
      const rowKey = `${from}/${fnv1a(FNV_OFFSET, bytes) >>> 0}`;
      if (rowKey === this.#badRow) return;
      const row = decodeGaRow(bytes);
      if (typeof row === "string") return this.#refuseRow(rowKey, row, "refused");
      const refusal = signerRefusal(this.#trust, row.origin, gaRowMessage(from, row), row.signature);
      // A signer not known yet may become known: that row is judged again (and counted once).
      if (refusal !== null) return this.#refuseRow(refusal.reason === "unknown-signer" ? `${rowKey}?` : rowKey, `GA row: ${refusal.error}`, "untrusted");
      const mutation = { seed: row.seed, sigma: row.sigma };
      const params = applyMutation(this.#ahead?.params ?? model.params, mutation);
      if (weightsTag(model.cfg, params) !== row.tag) return this.#refuseRow(rowKey, `mutation ${row.seed} does not give ${row.tag}`, "refused");
      this.#ahead = {
        base: model.tag, rows: [...(this.#ahead?.rows ?? []), rowKey], mutations: [...(this.#ahead?.mutations ?? []), mutation], params, tag: row.tag, judged: false,
      };
      if (this.#ahead.mutations.length > LIMITS.ga.chainMax) {
        this.#ahead = undefined;
        return this.#refuseRow(rowKey, `a chain of more than ${LIMITS.ga.chainMax} mutations ahead`, "refused");
      }
    }
    const ahead = this.#ahead;
    if (ahead === undefined || ahead.judged || this.#host.gossipGet(GA_TOPIC, ahead.tag) !== undefined) return;
    if (!this.#evolvable()) {
      ahead.judged = true;
      return this.#refuseRow(undefined, "GA rows for a model of another shape than the sensor model's: not scored here", "refused");
    }
    const defer = this.#host.defer;
    if (defer !== undefined) {
      // On a real node the judgement runs in slices (two held-out evaluations would hold the
      // event loop for tens of milliseconds on every node each time the chain grows).
      if (this.#judging) return;
      this.#judging = true;
      const pause = (): Promise<void> => new Promise((resolve) => defer(resolve));
      void Promise.all([this.#heldOutLoss(model, model.params, pause), this.#heldOutLoss(model, ahead.params, pause)]).then(([before, after]) => {
        this.#judging = false;
        // Judged against weights that are no longer in use, or a chain that moved: judged again later.
        if (this.#model !== model || this.#ahead !== ahead) return;
        this.#verdict(ahead, { accepted: Number.isFinite(after) && after <= before, before: -before, after: -after });
      }, (error: unknown) => {
        this.#judging = false;
        this.ga.lastError = `judging chain head ${ahead.tag}: ${error instanceof Error ? error.message : String(error)}`;
      });
      return;
    }
    this.#verdict(ahead, judgeMutant(model.params, ahead.params, this.#score()));
  }

  /** Adopts the chain head the verdict accepts, or marks it judged and worse. */
  #verdict(ahead: ChainAhead, verdict: { accepted: boolean; before: number; after: number }): void {
    if (!verdict.accepted) {
      ahead.judged = true;
      this.ga.worse++;
      this.ga.lastError = `chain head ${ahead.tag}: held-out loss ${(-verdict.after).toFixed(4)} here, worse than ${(-verdict.before).toFixed(4)}`;
      return;
    }
    this.#ahead = undefined;
    this.#adopt(ahead.params, ahead.mutations, ahead.tag);
    this.ga.followed += ahead.mutations.length;
    this.ga.lastLoss = -verdict.after;
  }

  /** A chain row refused: counted once (not read again while it is the same row). */
  #refuseRow(rowKey: string | undefined, error: string, kind: "refused" | "untrusted"): void {
    if (rowKey !== undefined && rowKey === this.#badRow) return;
    this.#badRow = rowKey;
    this.ga[kind]++;
    this.ga.lastError = error;
  }

  /** Weights some mutations on from the current ones; `tag` is theirs (the caller computed or checked it). */
  #adopt(params: Float32Array, mutations: readonly Mutation[], tag: string): void {
    const file = this.#fileModel?.header ?? this.#model.header;
    this.#chain.push(...mutations);
    if (this.#chain.length > LIMITS.modelFile.mutationsMax) this.#chain.splice(0, this.#chain.length - LIMITS.modelFile.mutationsMax);
    const header: ModelFileHeader = {
      ...file, kind: "evolved", tag,
      lineage: { ...(file.version >= 1 ? { base: file.version } : {}), mutations: this.#chain.slice() },
    };
    this.#model = this.#build(header, params, tag);
    this.#host.event("brain-evolved", { generation: this.#chain.length, seeds: mutations.map((m) => m.seed), tag: header.tag });
  }

  // ---- RPC ---------------------------------------------------------------------------------------

  /** One brain request to a peer; rejects at the deadline, when the peer dies, or on a bad answer. */
  call(peer: string, msg: BrainMessage, deadlineTicks: number = this.config.callDeadlineTicks): Promise<BrainMessage> {
    const c = this.#nextCallId();
    const body = encodeBrainMessage(msg);
    this.counters.callsSent++;
    return new Promise<BrainMessage>((resolve, reject) => {
      this.#pending.set(c, { peer, deadline: this.#host.tick() + deadlineTicks, resolve, reject });
      this.#host.send(peer, { t: "brain", c, r: false, b: body });
    });
  }

  /** A `brain` message from an authenticated member. */
  step(from: string, envelope: BrainEnvelope): void {
    if (envelope.r) {
      const pending = this.#pending.get(envelope.c);
      if (pending === undefined || pending.peer !== from) return this.#answerRun(from, envelope);
      this.#pending.delete(envelope.c);
      const decoded = decodeBrainMessage(envelope.b);
      if (!decoded.ok) {
        this.counters.badMessages++;
        this.counters.callsFailed++;
        pending.reject(new Error(`bad answer from ${from}: ${decoded.error}`));
        return;
      }
      pending.resolve(decoded.msg);
      return;
    }
    const decoded = decodeBrainMessage(envelope.b);
    if (!decoded.ok) {
      this.counters.badMessages++;
      this.#host.send(from, { t: "brain", c: envelope.c, r: true, b: encodeBrainMessage({ t: "error", requestId: 0, code: "kind", message: decoded.error.slice(0, 200) }) });
      return;
    }
    this.counters.requestsServed++;
    // Serving a peer's request is Brain work too: the GA waits (it would change the weights under it).
    this.#lastBusyTick = this.#host.tick();
    const answer = this.#serve(from, decoded.msg);
    this.#host.send(from, { t: "brain", c: envelope.c, r: true, b: encodeBrainMessage(answer) });
  }

  /** An answer to one of the coordinators' calls, or a late or stray one (dropped). */
  #answerRun(from: string, envelope: BrainEnvelope): void {
    for (const coordinator of this.#coordinators) {
      if (!coordinator.awaits(from, envelope.c)) continue;
      const decoded = decodeBrainMessage(envelope.b);
      if (!decoded.ok) {
        this.counters.badMessages++;
        this.counters.callsFailed++;
      }
      coordinator.step(from, envelope.c, decoded.ok ? decoded.msg : null);
      this.#pump(coordinator);
      return;
    }
  }

  #serve(from: string, msg: BrainMessage): BrainMessage {
    const { cfg } = this.#model;
    switch (msg.t) {
      case "expert-req": {
        if (msg.ids.length !== msg.values.length || msg.ids.length === 0 || msg.ids.length > cfg.seqLen || msg.ids.some((id) => id < 0 || id >= cfg.vocab) || msg.values.some((v) => !Number.isFinite(v))) {
          return { t: "error", requestId: msg.requestId, code: "shape", message: "input does not fit the model" };
        }
        return { t: "expert-res", requestId: msg.requestId, version: this.#expert?.version ?? 0, logits: this.#expertLogits(msg.ids, msg.values) };
      }
      case "train-req": {
        if (msg.params.length !== paramCount(cfg) || msg.params.some((v) => !Number.isFinite(v)) || msg.epochs < 1 || msg.epochs > 20) {
          return { t: "error", requestId: msg.requestId, code: "shape", message: "parameters do not fit the model, or epochs outside 1..20" };
        }
        if (this.#training !== undefined) return { t: "error", requestId: msg.requestId, code: "full", message: `busy: ${this.#training}` };
        // Training holds the event loop for up to 20 epochs: only a core coordinator may ask for it
        // (fl train is core-only), or any contributor could stall a voter into an election.
        if (this.#host.roleOf(from) !== "core") {
          this.counters.trainRefused++;
          return { t: "error", requestId: msg.requestId, code: "forbidden", message: "only a core member coordinates federated rounds" };
        }
        const update = this.#trainLocal(cfg, msg.params, msg.epochs, msg.seed);
        return { t: "train-res", requestId: msg.requestId, round: msg.round, n: update.n, params: update.params };
      }
      default:
        return this.#model.worker.handle(msg);
    }
  }

  tick(): void {
    const now = this.#host.tick();
    // A node that never used its Brain (a simulated one) builds no model to follow the chain with.
    if (now % 10 === 0 && this.#loaded !== undefined) this.#followChain();
    // Only a model someone published evolves on its own (never the untrained default).
    const every = this.config.gaEveryTicks;
    if (every > 0 && now % every === 0 && this.gaEnabled && this.#fileModel !== undefined && this.#training === undefined
      && now - this.#lastBusyTick >= this.config.gaIdleTicks && this.#host.isLeader() && this.core && this.#evolvable()) {
      this.evolve(1);
    }
    for (const [c, pending] of this.#pending) {
      if (now < pending.deadline) continue;
      this.#pending.delete(c);
      this.counters.callsTimedOut++;
      pending.reject(new Error(`${pending.peer}: no answer before the deadline`));
    }
    for (const coordinator of this.#coordinators) {
      const before = coordinator.stats.timedOut;
      coordinator.tick();
      this.counters.callsTimedOut += coordinator.stats.timedOut - before;
      this.#pump(coordinator);
    }
  }

  /** A member came alive: the model file its signature was waiting for is read again. */
  memberAlive(id: string): void {
    if (id === this.#awaitingSigner) void this.load();
  }

  /** SWIM declared the member dead or gone: its calls fail now. */
  memberGone(id: string): void {
    for (const [c, pending] of this.#pending) {
      if (pending.peer !== id) continue;
      this.#pending.delete(c);
      this.counters.callsFailed++;
      pending.reject(new Error(`${id} is dead`));
    }
    for (const coordinator of this.#coordinators) {
      const before = coordinator.stats.failed;
      coordinator.peerGone(id);
      this.counters.callsFailed += coordinator.stats.failed - before;
      this.#pump(coordinator);
    }
  }
}
