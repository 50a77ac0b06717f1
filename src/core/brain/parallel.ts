// Distributed inference of the Brain's Transformer (transformer.ts), transport-agnostic and sans-IO:
// a BrainWorker answers brain-wire requests (docs/protocols/brain.md) synchronously, and a
// Coordinator runs requests over itself and a list of peers as a synchronous state machine (see
// "Driving a Coordinator" below). Every node holds the full, replicated weights, so a worker needs
// nothing but the request.
//
// Three modes (research/anchors-brain.md §1.6–1.8, §2), each for a whole sequence (stateless: T ≤
// seqLen tokens → logits of the last) and for a decode session (stateful: tokens appended at the
// next positions, each participant keeping its state per session → logits of the last new position).
// Participants are [coordinator, ...peers]; index 0 is the coordinator itself.
//
//   pipeline  layers split by splitLayers (weighted by `speeds`); the coordinator embeds, runs its
//             own stage, sends stage-req{layers, hidden T×d, startPos} to each further stage in
//             order (star topology), and runs the head. A session stage keeps K/V of its layers.
//   tensor    Megatron: per layer, participant i owns heads splitHeads[i] and FFN columns
//             splitColumns[i]. tp-req{attn, h (the residual stream, T×d; the worker applies LN1),
//             range} → its heads' attention output times its slice of Wo (no bias); the partials
//             plus bo are added to h; then tp-req{ffn} likewise (b2 comes with the range starting at
//             column 0). The coordinator computes its own share while the requests are in flight.
//             A session worker keeps K/V of its heads.
//   dkva      the coordinator runs everything except attention over remotely stored positions. The
//             K/V of position p lives on participant assignPositions(p, n, policy); per layer and
//             token it computes q,k,v, sends every peer partial-req{layer, queryPos, q, append (k,v)
//             to the owner)}, merges the (m,l,o) answers with its own shard's by mergePartials
//             (exact log-sum-exp), then the output projection and FFN locally. A whole-sequence
//             request runs as a temporary session fed token by token, ended afterwards.
//
// Conventions on top of brain-wire (a worker enforces them; they are what lets it refuse instead of
// computing garbage):
// - The session field is "<weightsTag>" for a stateless request and "<weightsTag>/<id>" for a
//   session. weightsTag is weightsTag(cfg, params) (a 64-bit hash of config and weights, or a
//   version string both sides are given): a worker with other weights answers error "weights".
// - Session requests arrive in position order and a worker checks it: a stage's startPos must be
//   the count it holds; a tp attn request at layer l must start at the count of layer l; a dkva
//   shard gets exactly one partial-req per layer and position, queryPos = previous + 1, and an
//   append is for position = queryPos. The request at position 0 of the session's first layer
//   (re)starts the session; any other request for a session the worker does not hold (never
//   opened, evicted, worker restarted) is error "session" — so lost state is an error, never
//   silently missing positions. A tp ffn request needs no state.
// - A session's shares (stage range, head range) are fixed by the request that starts it.
// - end-session is acknowledged by echoing it.
// Error codes: kind, weights, session, order, shape, range, value, full, internal (a bug here).
//
// Failures. Any failure of a peer — a call past its deadline, to a peer declared gone or answered
// with undecodable bytes, an ErrorResponse, a malformed, mis-shaped, non-finite or wrongly numbered
// response, a dkva partial whose head counts contradict the positions the peer must hold — drops
// that peer: its share moves
// to the coordinator for the rest of the request (a session: for the rest of the session). A
// stateless request just computes the share locally. A session first replays its token history
// locally (Petals-style: the coordinator keeps every session's inputs), rebuilding the K/V its new
// shares need (pipeline, tensor: all layers into its cache; dkva: the dropped shards' positions
// into its shard, including the current token's layers already done), then continues with the
// survivors. Requests already answered by survivors in the same wave are kept. The result says
// FULL (nobody dropped), REDUCED (some dropped, some left) or SOLO (no peer left or none given).
//
// Spot checks (issue 13). A well-formed, plausible but wrong answer passes every check above. With
// `audit`, a fraction of the runs (a whole sequence) and of the sessions (for their whole life) that
// have an untrusted peer (a contributor) are audited: every answer of an untrusted peer in them is
// recomputed here — the coordinator holds the full weights — and compared element by element (a
// difference above tolerance·max(1, |expected|) is wrong). A session is audited from its first
// request so that the coordinator can mirror exactly the state an honest peer holds: the K/V of a
// stage's layers or of a tensor share's heads (one shadow KvCache), a dkva peer's shard (a shadow
// KvShard per untrusted peer, fed the rows sent to it). A wrong answer is handled as a failed call —
// the peer is dropped, its share computed here, so the result stays right — and the peer is banned:
// reported in ready().caught and dropped at the start of every later run and session run (a banned
// peer is sent no more work). The node bans it on its other coordinators (`ban`).
//
// Driving a Coordinator (sans-IO, etcd-raft's Step/Tick/Ready/Advance): `start(request)` returns a
// run id, `end(session)` ends a session; `step(from, call, answer)` feeds a peer's answer (null:
// undecodable), `tick()` counts deadlines (callDeadlineTicks per call) and `peerGone(peer)` fails a
// dead peer's calls at once; `ready()` drains the messages to send (each with its call id) and the
// outcomes of finished runs; `advance()` says the sends are out, and runs that paused behind them
// compute their own share (tensor, dkva) while the peers compute theirs. A run is a generator that
// yields at every wave of requests; nothing waits outside these calls, and a run that needs no
// peer finishes inside start(). The node wraps it in Promises (src/node/brain/service.ts).
//
// Never hangs: a run waits only for calls, each of which is answered, fails or times out within
// callDeadlineTicks; the runs of one session are serialised (queued, at most 64 behind the
// current one). Bounded: a worker holds at most maxSessions sessions and maxBytes of reserved K/V
// (LRU eviction), a coordinator at most
// maxSessions sessions of O(nLayers·seqLen·d) each (its inputs, and K/V of its own shares);
// everything else is O(seqLen·d) per request. Concurrent whole-sequence runs each borrow a
// workspace: the node bounds how many it admits.
import { assert } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";
import type { Rng } from "../util/rng.ts";
import { layerNorm, linear } from "./tensor.ts";
import {
  attendHeads, attentionInputs, attentionOutput, embed, embedToken, ffn, forward, head, inputError, KvCache, modelWeights,
  paramCount, validateConfig, Workspace,
  type LayerActs, type LayerWeights, type ModelConfig, type ModelWeights,
} from "./transformer.ts";
import { checkPartial, KvShard, mergePartials, partialAttention, type AttentionPartial } from "./dkva.ts";
import { BRAIN_WIRE, type BrainMessage, type ErrorResponse, type F32Matrix, type PartialRequest, type StageRequest, type TpRequest } from "./brain-wire.ts";
import { assignPositions, POSITION_BLOCK_DEFAULT, splitColumns, splitHeads, splitLayers, type PositionPolicy, type Range } from "./partition.ts";

export type ParallelMode = "pipeline" | "tensor" | "dkva";
export type RunState = "FULL" | "REDUCED" | "SOLO";

export const PARALLEL_DEFAULTS = Object.freeze({
  workerSessions: 64,
  /** K/V bytes a worker reserves for sessions at most. */
  workerBytes: 256 * 1024 * 1024,
  coordinatorSessions: 64,
  /** A coordinator's call fails this many ticks after it was sent (1 s of the node's 10 ms ticks). */
  callDeadlineTicks: 100,
});

export const ERROR_CODES = Object.freeze(["kind", "weights", "session", "order", "shape", "range", "value", "full", "internal"] as const);
export type ParallelErrorCode = (typeof ERROR_CODES)[number];

const TAG_PATTERN = /^[0-9A-Za-z._-]{1,32}$/;
const utf8 = new TextEncoder();

function utf8Length(s: string): number {
  return utf8.encode(s).length;
}

// ---------------------------------------------------------------------------------------------
// Weights tag and session strings

/**
 * A 64-bit FNV-style hash of the configuration and every parameter's bits, as 16 hex digits: two
 * nodes with the same tag run the same model. Deterministic; not a security boundary.
 */
export function weightsTag(cfg: ModelConfig, params: Float32Array): string {
  assert(params.length === paramCount(cfg), `weightsTag: params has ${params.length} entries, the model needs ${paramCount(cfg)}`);
  let a = 0x811c9dc5, b = 0x9747b28c;
  const mix = (x: number): void => {
    a = Math.imul(a ^ x, 0x01000193);
    b = Math.imul(b ^ x, 0x5bd1e995);
    b ^= b >>> 15;
  };
  for (const x of [cfg.vocab, cfg.seqLen, cfg.dModel, cfg.nHeads, cfg.dFF, cfg.nLayers, cfg.nClasses]) mix(x);
  const words = new Uint32Array(params.buffer, params.byteOffset, params.length);
  for (let i = 0; i < words.length; i++) mix(words[i]!);
  mix(a >>> 7);
  return (a >>> 0).toString(16).padStart(8, "0") + (b >>> 0).toString(16).padStart(8, "0");
}

function checkTag(tag: string): string {
  assert(TAG_PATTERN.test(tag), `weights tag ${JSON.stringify(tag)} must match ${TAG_PATTERN}`);
  return tag;
}

/** The session field: "<tag>" (stateless) or "<tag>/<id>". */
export function wireSession(tag: string, id?: string): string {
  return id === undefined ? tag : `${tag}/${id}`;
}

/** (tag, id) of a session field: id null for a stateless request; null for a malformed field. */
export function parseWireSession(s: string): { tag: string; id: string | null } | null {
  if (typeof s !== "string") return null;
  const slash = s.indexOf("/");
  if (slash < 0) return { tag: s, id: null };
  const id = s.slice(slash + 1);
  if (id.length === 0) return null;
  return { tag: s.slice(0, slash), id };
}

function wellFormedSession(s: unknown): s is string {
  if (typeof s !== "string" || !s.isWellFormed()) return false;
  const n = utf8Length(s);
  return n >= 1 && n <= BRAIN_WIRE.sessionBytesMax;
}

// ---------------------------------------------------------------------------------------------
// Wire size of a message (exactly what encodeBrainMessage produces), for the overhead counters.

function frameBytes(rank: number, dataBytes: number): number {
  return 2 + 4 * rank + 4 + dataBytes;
}

/** Bytes of encodeBrainMessage(msg), computed without encoding; 0 for something that is not a message. */
export function brainMessageBytes(msg: BrainMessage): number {
  try {
    const str8 = (s: string): number => 1 + utf8Length(s);
    switch (msg.t) {
      case "partial-req":
        return 2 + str8(msg.session) + 4 + 2 + 4 + 1 + frameBytes(1, 4 * msg.q.length)
          + (msg.append === undefined ? 0 : 4 + 2 * frameBytes(1, 4 * msg.q.length));
      case "partial-res":
        return 2 + 4 + 2 * frameBytes(1, 8 * msg.m.length) + frameBytes(2, 8 * msg.o.length);
      case "tp-req":
        return 2 + str8(msg.session) + 4 + 2 + 1 + 4 + 4 + 4 + frameBytes(2, 4 * msg.input.data.length);
      case "tp-res":
        return 2 + 4 + frameBytes(2, 4 * msg.partial.data.length);
      case "stage-req":
        return 2 + str8(msg.session) + 4 + 2 + 2 + 4 + frameBytes(2, 4 * msg.hidden.data.length);
      case "stage-res":
        return 2 + 4 + frameBytes(2, 4 * msg.hidden.data.length);
      case "error":
        return 2 + 4 + str8(msg.code) + 2 + utf8Length(msg.message);
      case "end-session":
        return 2 + str8(msg.session);
      default:
        return 0;
    }
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Shared compute blocks (Float32 weights; validated inputs: these assert)

/** Per-layer K and V rows [seqLen×d] (index = layer; unused layers may be empty arrays). */
interface LayerKv {
  readonly k: readonly Float32Array[];
  readonly v: readonly Float32Array[];
}

/**
 * Layers [from, to) on rows [0, T) of h, positions startPos.., in place. With kv, the rows' K/V are
 * written at startPos.. and attention reads rows 0..startPos+T−1 of it; without, startPos is 0 and
 * attention is over the T rows themselves.
 */
function runLayers(
  cfg: ModelConfig, mw: ModelWeights<Float32Array>, from: number, to: number, h: Float32Array, T: number, startPos: number,
  kv: LayerKv | null, acts: LayerActs,
): void {
  const d = cfg.dModel;
  for (let l = from; l < to; l++) {
    const w = mw.layers[l]!;
    attentionInputs(cfg, w, h, T, acts);
    if (kv === null) {
      assert(startPos === 0, "runLayers: a stateless pass starts at position 0");
      attendHeads(cfg, acts.att, acts.q, acts.k, acts.v, T, 0, 0, cfg.nHeads, acts.probs);
    } else {
      const K = kv.k[l]!, V = kv.v[l]!;
      K.set(acts.k.subarray(0, T * d), startPos * d);
      V.set(acts.v.subarray(0, T * d), startPos * d);
      attendHeads(cfg, acts.att, acts.q, K, V, T, startPos, 0, cfg.nHeads, acts.probs);
    }
    attentionOutput(cfg, w, acts.att, T, h);
    ffn(cfg, w, h, T, acts, h, true);
  }
}

/**
 * Tensor-parallel attention share: heads [h0, h1) of one layer on the T residual rows x (positions
 * startPos..): LN1, q/k/v of those heads' dims only, causal attention (over the cache rows when kv
 * is given, writing the new rows' K/V there), and out (+)= att[:, heads]·Wo[:, heads]ᵀ (no bias).
 */
function tpAttention(
  cfg: ModelConfig, w: LayerWeights<Float32Array>, x: Float32Array, T: number, startPos: number, h0: number, h1: number,
  kv: { K: Float32Array; V: Float32Array } | null, acts: LayerActs, out: Float32Array, accumulate: boolean,
): void {
  const d = cfg.dModel, dh = d / cfg.nHeads, c0 = h0 * dh, width = (h1 - h0) * dh;
  for (let i = 0; i < T * d; i++) acts.x[i] = x[i]!;
  layerNorm(acts.a, acts.x, w.ln1g, w.ln1b, T, d, acts.mean1, acts.rstd1);
  // q[:, c0:c1] = a·Wq[c0:c1, :]ᵀ + bq[c0:c1]   (B(k, j) = W[c0 + j][k])
  linear(T, d, width, acts.a, 0, d, w.wq, c0 * d, d, acts.q, c0, d, w.bq, c0, false);
  const K = kv === null ? acts.k : kv.K, V = kv === null ? acts.v : kv.V, o = kv === null ? 0 : startPos * d;
  assert(kv !== null || startPos === 0, "tpAttention: a stateless pass starts at position 0");
  linear(T, d, width, acts.a, 0, d, w.wk, c0 * d, d, K, o + c0, d, w.bk, c0, false);
  linear(T, d, width, acts.a, 0, d, w.wv, c0 * d, d, V, o + c0, d, w.bv, c0, false);
  attendHeads(cfg, acts.att, acts.q, K, V, T, startPos, h0, h1, acts.probs);
  // out[T×d] (+)= att[:, c0:c1]·Wo[:, c0:c1]ᵀ   (B(k, j) = Wo[j][c0 + k])
  linear(T, width, d, acts.att, c0, d, w.wo, c0, d, out, 0, d, null, 0, accumulate);
}

function allFinite(x: ArrayLike<number>, n = x.length): boolean {
  for (let i = 0; i < n; i++) if (!Number.isFinite(x[i]!)) return false;
  return true;
}

function isIndex(x: unknown, end: number): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0 && x < end;
}

function isU32(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff;
}

/** Bytes a worker reserves for one session of any kind: K and V of every layer and position, plus positions. */
function sessionReserve(cfg: ModelConfig): number {
  return cfg.nLayers * cfg.seqLen * (2 * cfg.dModel * 4 + 4);
}

// ---------------------------------------------------------------------------------------------
// Worker

export interface WorkerLimits {
  /** Sessions held at once (LRU eviction); default 64. */
  readonly maxSessions?: number;
  /** Bytes of K/V reserved by sessions at most (each reserves nLayers·seqLen·(8d + 4)); default 256 MiB. */
  readonly maxBytes?: number;
  /** The weights tag (default weightsTag(cfg, params)). */
  readonly weightsTag?: string;
}

type WorkerSession =
  | { kind: "stage"; from: number; to: number; length: number; kv: LayerKv }
  | { kind: "tp"; h0: number; h1: number; lengths: Int32Array; kv: LayerKv }
  | { kind: "dkva"; shard: KvShard; lastQuery: Int32Array };

type Failure = { code: ParallelErrorCode; message: string };

/**
 * Answers brain-wire requests with the full replicated weights. Sans-IO and synchronous: handle()
 * never throws, never waits, and allocates O(seqLen·d) per request plus the bounded session state.
 */
export class BrainWorker {
  readonly cfg: ModelConfig;
  readonly tag: string;
  readonly maxSessions: number;
  readonly maxBytes: number;
  readonly #params: Float32Array;
  readonly #mw: ModelWeights<Float32Array>;
  readonly #sessions = new Map<string, WorkerSession>();
  readonly #reserve: number;
  #ws: Workspace<Float32Array> | null = null;
  #evictions = 0;

  constructor(cfg: ModelConfig, params: Float32Array, limits: WorkerLimits = {}) {
    this.cfg = validateConfig(cfg);
    this.#params = params;
    this.#mw = modelWeights(cfg, params);
    this.tag = checkTag(limits.weightsTag ?? weightsTag(cfg, params));
    this.maxSessions = limits.maxSessions ?? PARALLEL_DEFAULTS.workerSessions;
    this.maxBytes = limits.maxBytes ?? PARALLEL_DEFAULTS.workerBytes;
    assert(Number.isInteger(this.maxSessions) && this.maxSessions >= 1, `maxSessions must be a positive integer, got ${this.maxSessions}`);
    assert(Number.isFinite(this.maxBytes) && this.maxBytes >= 0, `maxBytes must be ≥ 0, got ${this.maxBytes}`);
    this.#reserve = sessionReserve(cfg);
  }

  /** Sessions held now. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Bytes reserved by the sessions held now. */
  get bytesReserved(): number {
    return this.#sessions.size * this.#reserve;
  }

  /** Sessions evicted so far to make room. */
  get evictions(): number {
    return this.#evictions;
  }

  /** The answer to one message: a response, an end-session acknowledgement, or an ErrorResponse. Never throws. */
  handle(msg: BrainMessage): BrainMessage {
    const requestId = typeof msg === "object" && msg !== null && isU32((msg as { requestId?: unknown }).requestId)
      ? (msg as { requestId: number }).requestId : 0;
    try {
      const r = this.#handle(msg);
      return "code" in r && !("t" in r) ? errorResponse(requestId, r) : r as BrainMessage;
    } catch (error) {
      return errorResponse(requestId, { code: "internal", message: String(error) });
    }
  }

  #handle(msg: BrainMessage): BrainMessage | Failure {
    if (typeof msg !== "object" || msg === null) return fail("kind", "not a message");
    if (msg.t !== "end-session" && !isU32((msg as { requestId?: unknown }).requestId)) return fail("kind", "requestId is not a u32");
    switch (msg.t) {
      case "stage-req": return this.#stage(msg);
      case "tp-req": return this.#tp(msg);
      case "partial-req": return this.#partial(msg);
      case "end-session": {
        if (!wellFormedSession(msg.session)) return fail("session", "malformed session");
        this.#sessions.delete(msg.session);
        return { t: "end-session", session: msg.session };
      }
      default:
        return fail("kind", `a worker does not answer ${String((msg as { t?: unknown }).t).slice(0, 20)}`);
    }
  }

  #workspace(): Workspace<Float32Array> {
    this.#ws ??= new Workspace(this.cfg, Float32Array);
    return this.#ws;
  }

  /** The session's (tag, id) after checking the field and the weights tag. */
  #session(s: unknown): { id: string | null } | Failure {
    if (!wellFormedSession(s)) return fail("session", "malformed session");
    const parsed = parseWireSession(s);
    if (parsed === null) return fail("session", "malformed session");
    if (parsed.tag !== this.tag) return fail("weights", `weights ${parsed.tag.slice(0, 32)} requested, this node runs ${this.tag}`);
    return { id: parsed.id };
  }

  /** Checks rows × d of an input matrix; the row count, or a failure. */
  #rows(m: F32Matrix, startPos: unknown): number | Failure {
    const { seqLen, dModel: d } = this.cfg;
    if (typeof m !== "object" || m === null || !(m.data instanceof Float32Array)) return fail("shape", "input is not an f32 matrix");
    if (m.cols !== d) return fail("shape", `rows of ${String(m.cols)} values, the model has d = ${d}`);
    if (!isIndex(m.rows, seqLen + 1) || m.rows < 1 || m.data.length !== m.rows * d) return fail("shape", `${String(m.rows)} rows do not fit seqLen ${seqLen}`);
    if (!isIndex(startPos, seqLen) || startPos + m.rows > seqLen) return fail("range", `rows at ${String(startPos)}.. do not fit seqLen ${seqLen}`);
    if (!allFinite(m.data)) return fail("value", "input is not finite");
    return m.rows;
  }

  /** Opens (or reopens, reusing a compatible one) the session `key`; evicts the least recently used as needed. */
  #open(key: string, make: () => WorkerSession, reuse: (s: WorkerSession) => boolean): WorkerSession | Failure {
    const old = this.#sessions.get(key);
    if (old !== undefined) {
      this.#sessions.delete(key);
      if (reuse(old)) {
        this.#sessions.set(key, old);
        return old;
      }
    }
    if (this.#reserve > this.maxBytes) return fail("full", `a session needs ${this.#reserve} bytes, the limit is ${this.maxBytes}`);
    while (this.#sessions.size >= this.maxSessions || (this.#sessions.size + 1) * this.#reserve > this.maxBytes) {
      const oldest = this.#sessions.keys().next();
      if (oldest.done === true) break;
      this.#sessions.delete(oldest.value);
      this.#evictions++;
    }
    const s = make();
    this.#sessions.set(key, s);
    return s;
  }

  /** The session `key` if held, moved to most recently used. */
  #touch(key: string): WorkerSession | undefined {
    const s = this.#sessions.get(key);
    if (s !== undefined) {
      this.#sessions.delete(key);
      this.#sessions.set(key, s);
    }
    return s;
  }

  #kv(from: number, to: number): LayerKv {
    const n = this.cfg.seqLen * this.cfg.dModel, empty = new Float32Array(0);
    const k: Float32Array[] = [], v: Float32Array[] = [];
    for (let l = 0; l < this.cfg.nLayers; l++) {
      k.push(l >= from && l < to ? new Float32Array(n) : empty);
      v.push(l >= from && l < to ? new Float32Array(n) : empty);
    }
    return { k, v };
  }

  #stage(m: StageRequest): BrainMessage | Failure {
    const sid = this.#session(m.session);
    if ("code" in sid) return sid;
    const L = this.cfg.nLayers;
    const layers = m.layers as unknown;
    if (!Array.isArray(layers) || layers.length !== 2) return fail("range", "layers must be [from, to)");
    const [from, to] = layers as [unknown, unknown];
    if (!isIndex(from, L) || !isIndex(to, L + 1) || from >= to) return fail("range", `layers [${String(from)}, ${String(to)}) outside [0, ${L})`);
    const T = this.#rows(m.hidden, m.startPos);
    if (typeof T !== "number") return T;
    const startPos = m.startPos;
    let session: WorkerSession | null = null;
    if (sid.id === null) {
      if (startPos !== 0) return fail("range", "a stateless stage starts at position 0");
    } else if (startPos === 0) {
      const opened = this.#open(m.session, () => ({ kind: "stage", from, to, length: 0, kv: this.#kv(from, to) }),
        (s) => s.kind === "stage" && s.from === from && s.to === to);
      if ("code" in opened) return opened;
      session = opened;
    } else {
      const s = this.#touch(m.session);
      if (s === undefined) return fail("session", "unknown session (never opened, ended or evicted)");
      if (s.kind !== "stage" || s.from !== from || s.to !== to) return fail("session", "the session holds other layers or another mode");
      if (startPos !== s.length) return fail("order", `stage at position ${startPos}, the session holds ${s.length}`);
      session = s;
    }
    const h = Float32Array.from(m.hidden.data);
    const kv = session !== null && session.kind === "stage" ? session.kv : null;
    runLayers(this.cfg, this.#mw, from, to, h, T, startPos, kv, this.#workspace().acts[0]!);
    if (session !== null && session.kind === "stage") session.length = startPos + T;
    return { t: "stage-res", requestId: m.requestId, hidden: { rows: T, cols: this.cfg.dModel, data: h } };
  }

  #tp(m: TpRequest): BrainMessage | Failure {
    const sid = this.#session(m.session);
    if ("code" in sid) return sid;
    const { nLayers, nHeads, dFF, dModel: d } = this.cfg;
    if (!isIndex(m.layer, nLayers)) return fail("range", `layer ${String(m.layer)} outside [0, ${nLayers})`);
    if (m.part !== "attn" && m.part !== "ffn") return fail("kind", "part must be attn or ffn");
    const range = m.range as unknown;
    if (!Array.isArray(range) || range.length !== 2) return fail("range", "range must be [start, end)");
    const [r0, r1] = range as [unknown, unknown];
    const end = m.part === "attn" ? nHeads : dFF;
    if (!isIndex(r0, end) || !isIndex(r1, end + 1) || r0 >= r1) return fail("range", `${m.part} range [${String(r0)}, ${String(r1)}) outside [0, ${end})`);
    const T = this.#rows(m.input, m.startPos);
    if (typeof T !== "number") return T;
    const w = this.#mw.layers[m.layer]!, acts = this.#workspace().acts[0]!;
    const out = new Float32Array(T * d);
    if (m.part === "ffn") {
      if (m.startPos !== 0) return fail("range", "an ffn request has startPos 0");
      ffn(this.cfg, w, m.input.data, T, acts, out, false, r0, r1);
      return { t: "tp-res", requestId: m.requestId, partial: { rows: T, cols: d, data: out } };
    }
    const startPos = m.startPos;
    if (sid.id === null) {
      if (startPos !== 0) return fail("range", "a stateless attn request starts at position 0");
      tpAttention(this.cfg, w, m.input.data, T, 0, r0, r1, null, acts, out, false);
      return { t: "tp-res", requestId: m.requestId, partial: { rows: T, cols: d, data: out } };
    }
    let s: WorkerSession | undefined;
    if (m.layer === 0 && startPos === 0) {
      const opened = this.#open(m.session,
        () => ({ kind: "tp", h0: r0, h1: r1, lengths: new Int32Array(nLayers), kv: this.#kv(0, nLayers) }),
        (o) => o.kind === "tp" && o.h0 === r0 && o.h1 === r1);
      if ("code" in opened) return opened;
      s = opened;
      if (s.kind === "tp") s.lengths.fill(0);
    } else {
      s = this.#touch(m.session);
      if (s === undefined) return fail("session", "unknown session (never opened, ended or evicted)");
    }
    if (s.kind !== "tp" || s.h0 !== r0 || s.h1 !== r1) return fail("session", "the session holds other heads or another mode");
    if (startPos !== s.lengths[m.layer]) return fail("order", `layer ${m.layer} at position ${startPos}, the session holds ${s.lengths[m.layer]}`);
    tpAttention(this.cfg, w, m.input.data, T, startPos, r0, r1, { K: s.kv.k[m.layer]!, V: s.kv.v[m.layer]! }, acts, out, false);
    s.lengths[m.layer] = startPos + T;
    return { t: "tp-res", requestId: m.requestId, partial: { rows: T, cols: d, data: out } };
  }

  #partial(m: PartialRequest): BrainMessage | Failure {
    const sid = this.#session(m.session);
    if ("code" in sid) return sid;
    if (sid.id === null) return fail("session", "a KV shard needs a session");
    const { nLayers, nHeads, seqLen, dModel: d } = this.cfg;
    if (!isIndex(m.layer, nLayers)) return fail("range", `layer ${String(m.layer)} outside [0, ${nLayers})`);
    if (!isIndex(m.queryPos, seqLen)) return fail("range", `queryPos ${String(m.queryPos)} outside [0, ${seqLen})`);
    if (!(m.q instanceof Float32Array) || m.q.length !== d) return fail("shape", `q must have d = ${d} values`);
    if (!allFinite(m.q)) return fail("value", "q is not finite");
    const app = m.append;
    if (app !== undefined) {
      if (typeof app !== "object" || app === null || !(app.k instanceof Float32Array) || !(app.v instanceof Float32Array)
        || app.k.length !== d || app.v.length !== d) return fail("shape", `k and v must have d = ${d} values`);
      if (app.position !== m.queryPos) return fail("order", "an append is for the query's own position");
      if (!allFinite(app.k) || !allFinite(app.v)) return fail("value", "k or v is not finite");
    }
    let s: WorkerSession | undefined;
    if (m.layer === 0 && m.queryPos === 0) {
      const opened = this.#open(m.session,
        () => ({ kind: "dkva", shard: new KvShard({ nLayers, d, capacity: seqLen, initialRows: Math.min(seqLen, 16) }), lastQuery: new Int32Array(nLayers).fill(-1) }),
        (o) => o.kind === "dkva");
      if ("code" in opened) return opened;
      s = opened;
      if (s.kind === "dkva") {
        s.shard.truncate(0);
        s.lastQuery.fill(-1);
      }
    } else {
      s = this.#touch(m.session);
      if (s === undefined) return fail("session", "unknown session (never opened, ended or evicted)");
    }
    if (s.kind !== "dkva") return fail("session", "the session is of another mode");
    if (m.queryPos !== s.lastQuery[m.layer]! + 1) return fail("order", `layer ${m.layer}: query at ${m.queryPos} after ${s.lastQuery[m.layer]}`);
    if (app !== undefined) {
      const r = s.shard.append(m.layer, app.position, app.k, app.v);
      if (!r.ok) return fail(r.reason === "full" ? "full" : "order", r.error);
    }
    s.lastQuery[m.layer] = m.queryPos;
    const p = partialAttention(s.shard, m.layer, m.q, m.queryPos, nHeads);
    return { t: "partial-res", requestId: m.requestId, m: p.m, l: p.l, o: p.o };
  }

  /** For tests and the bench: the weights this worker runs. */
  get params(): Float32Array {
    return this.#params;
  }
}

function fail(code: ParallelErrorCode, message: string): Failure {
  return { code, message };
}

function errorResponse(requestId: number, f: Failure): ErrorResponse {
  // ≤ 250 code points of well-formed text: ≤ 1,000 UTF-8 bytes, within BRAIN_WIRE.messageBytesMax.
  const message = Array.from(f.message.toWellFormed()).slice(0, 250).join("");
  return { t: "error", requestId, code: f.code, message };
}

// ---------------------------------------------------------------------------------------------
// Coordinator

export interface RunRequest {
  readonly mode: ParallelMode;
  /** A decode session (its id must be unique in the cluster, e.g. prefixed by the node's id); absent: a whole sequence. */
  readonly session?: string;
  /** Tokens: the whole sequence, or the tokens to append to the session (usually one). */
  readonly ids: Int32Array;
  readonly values: ArrayLike<number>;
  /** Peers taking part (distinct, not this node). A session's peers are those of its first request. */
  readonly peers: readonly string[];
  /** Relative speeds of [this node, ...peers] for the split (default equal). */
  readonly speeds?: readonly number[];
}

export interface RunResult {
  /** Logits at the last position of the request. */
  readonly logits: Float32Array;
  readonly mode: RunState;
  /** The peers of the run: those of the request, or for a session those of its first request. */
  readonly peers: readonly string[];
  /** Peers dropped (in this request; for a session, during the whole session), in order. */
  readonly dropped: readonly string[];
  /** Positions in the session after the request (T for a whole sequence). */
  readonly length: number;
  /** Requests sent (a round trip each, whether in parallel or not). */
  readonly roundTrips: number;
  /** Sequential waves of requests (parallel requests count once): what latency pays. */
  readonly rounds: number;
  readonly perLayerRoundTrips: number;
  readonly perLayerRounds: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** (bytesSent + bytesReceived) / nLayers. */
  readonly perLayerBytes: number;
}

export interface CoordinatorOptions {
  /** Sessions held at once; the least recently used idle one is ended to make room. Default 64. */
  readonly maxSessions?: number;
  /** Prefix of temporary session ids (dkva whole sequences): the node's id, unique in the cluster. Default "c". */
  readonly id?: string;
  readonly weightsTag?: string;
  /** Who stores position p in dkva (default round-robin). */
  readonly positionPolicy?: PositionPolicy;
  readonly blockSize?: number;
  /** Ticks a call may take: it fails at the first tick() at or past start + this. Default 100 (1 s of 10 ms ticks). */
  readonly callDeadlineTicks?: number;
  /**
   * Allocates the id of each call (a u32 other than 0; the node shares one id space between this
   * and its other calls). Default: a counter of this coordinator from 1.
   */
  readonly callId?: () => number;
  /** Spot checks of untrusted peers' answers (see the file header); absent: none. */
  readonly audit?: AuditOptions;
}

export interface AuditOptions {
  /** Fraction in [0, 1] of the runs (whole sequences) and sessions with an untrusted peer that are audited. */
  readonly fraction: number;
  /** An answer is wrong when an element differs from the recomputed one by more than tolerance·max(1, |expected|). */
  readonly tolerance: number;
  /** Draws which runs and sessions are audited. */
  readonly rng: Rng;
  /** Peers whose answers are audited (contributors). Default: every peer. */
  readonly untrusted?: (peer: string) => boolean;
}

/** A peer caught answering wrong: the share it answered and how far off it was (answerDiff). */
export interface CaughtPeer {
  readonly peer: string;
  readonly mode: ParallelMode;
  readonly what: string;
  readonly diff: number;
}

/** A message for a peer. `call` identifies the answer (step); 0: no answer is awaited (end-session). */
export interface CoordinatorSend {
  readonly to: string;
  readonly call: number;
  readonly msg: BrainMessage;
}

/**
 * How a run ended: its result, or (only for a bug here: peers' failures are values) an error, after
 * which its session is ended.
 */
export type RunOutcome =
  | { readonly run: number; readonly ok: true; readonly result: RunResult }
  | { readonly run: number; readonly ok: false; readonly error: string };

export interface CoordinatorReady {
  readonly sends: readonly CoordinatorSend[];
  readonly outcomes: readonly RunOutcome[];
  /** Peers caught answering wrong since the last call (now banned here). */
  readonly caught: readonly CaughtPeer[];
}

export interface CoordinatorStats {
  /** Calls sent (end-session not counted). */
  calls: number;
  /** Answered by a well-formed message (right or wrong). */
  answered: number;
  /** Failed at once: a bad answer (step with null) or the peer declared gone. */
  failed: number;
  /** Failed at their deadline. */
  timedOut: number;
  /** Runs and sessions audited (spot checks). */
  audited: number;
  /** Answers recomputed here and compared. */
  checked: number;
  /** Answers found wrong. */
  caught: number;
}

/** The spot checks of one audited run or session: who is checked, and the state an honest peer holds. */
interface Audit {
  /** By participant index (0, this node, is never checked). */
  readonly untrusted: readonly boolean[];
  /** pipeline and tensor sessions: K/V of the layers and heads the untrusted peers hold. */
  readonly shadow: KvCache | null;
  /** dkva: the shard each untrusted peer holds, by participant index. */
  readonly shards: readonly (KvShard | null)[];
}

interface Plan {
  readonly mode: ParallelMode;
  /** Participants 1..n−1 (0 is this node). */
  readonly peers: readonly string[];
  readonly n: number;
  readonly stages: readonly Range[];
  readonly heads: readonly Range[];
  readonly cols: readonly Range[];
}

interface CoordSession {
  readonly id: string;
  readonly wire: string;
  readonly plan: Plan;
  readonly ids: Int32Array;
  readonly values: Float32Array;
  length: number;
  /** Positions once every accepted run is done (start() checks seqLen against it). */
  planned: number;
  readonly dropped: Set<number>;
  readonly dropOrder: string[];
  /** pipeline, tensor: K/V of the layers and heads computed here. */
  readonly cache: KvCache | null;
  /** dkva: the positions stored here. */
  shard: KvShard | null;
  /** Spot checks for the whole session, or null. */
  readonly audit: Audit | null;
  /** A run (or the end) of this session is in progress; the rest wait in `queue`, in order. */
  running: boolean;
  draining: boolean;
  readonly queue: Array<() => void>;
  /** end() was called: no new run is accepted. */
  ending: boolean;
  ended: boolean;
}

/** One fan-out: the answers by slot (null: the call failed), filled in as they come. */
interface Wave {
  readonly job: Job;
  readonly answers: (BrainMessage | null)[];
  pending: number;
}

/** What a run's generator yields: "pause" to let its requests leave before computing its own share, or a wave to wait for. */
type Yield = "pause" | Wave;

interface Job {
  readonly run: number;
  /** The session whose queue the job holds (null: a whole sequence). */
  readonly session: CoordSession | null;
  readonly gen: Generator<Yield, RunResult, void>;
  state: "new" | "running" | "paused" | "waiting" | "done";
  wave: Wave | null;
}

interface PendingCall {
  readonly wave: Wave;
  readonly slot: number;
  readonly peer: string;
  readonly deadline: number;
  readonly ctx: Ctx;
}

interface Ctx {
  readonly plan: Plan;
  readonly wire: string;
  readonly dropped: Set<number>;
  readonly dropOrder: string[];
  readonly session: CoordSession | null;
  readonly audit: Audit | null;
  roundTrips: number;
  rounds: number;
  bytesSent: number;
  bytesReceived: number;
}

const MAX_PEERS = LIMITS.brain.peersMax;
const ID_PATTERN_MAX_BYTES = LIMITS.brain.coordinatorIdBytesMax;
/** Runs waiting behind the one in progress, per session. */
const SESSION_QUEUE_MAX = LIMITS.brain.sessionQueueMax;
/** Peers a coordinator holds banned, oldest forgotten first. */
const BANNED_MAX = LIMITS.brain.bannedPeersMax;

/**
 * Runs requests over this node and its peers; see the file header. A synchronous state machine:
 * start() and end() take work, step() takes a peer's answer, tick() counts deadlines, peerGone()
 * fails a dead peer's calls, advance() lets runs compute their own share once their requests have
 * left, and ready() drains the messages to send and the runs that finished.
 */
export class Coordinator {
  readonly cfg: ModelConfig;
  readonly tag: string;
  readonly maxSessions: number;
  readonly callDeadlineTicks: number;
  readonly stats: CoordinatorStats = { calls: 0, answered: 0, failed: 0, timedOut: 0, audited: 0, checked: 0, caught: 0 };
  readonly #params: Float32Array;
  readonly #mw: ModelWeights<Float32Array>;
  readonly #id: string;
  readonly #policy: PositionPolicy;
  readonly #block: number | undefined;
  readonly #sessions = new Map<string, CoordSession>();
  readonly #pool: { full: Workspace<Float32Array>[]; one: Workspace<Float32Array>[] } = { full: [], one: [] };
  readonly #calls = new Map<number, PendingCall>();
  readonly #nextCall: () => number;
  #sends: CoordinatorSend[] = [];
  #outcomes: RunOutcome[] = [];
  #caught: CaughtPeer[] = [];
  readonly #audit: AuditOptions | undefined;
  readonly #banned = new Set<string>();
  #paused: Job[] = [];
  /** Runs started and not finished. */
  #active = 0;
  /** The job whose generator is running (its sends belong to it). */
  #current: Job | null = null;
  #now = 0;
  #nextRequest = 0;
  #nextRun = 0;
  #callCounter = 0;
  #temp = 0;
  /** Scratch of the spot checks, made at the first one. */
  #auditWs: Workspace<Float32Array> | null = null;

  constructor(cfg: ModelConfig, params: Float32Array, options: CoordinatorOptions = {}) {
    this.cfg = validateConfig(cfg);
    this.#params = params;
    this.#mw = modelWeights(cfg, params);
    this.tag = checkTag(options.weightsTag ?? weightsTag(cfg, params));
    this.maxSessions = options.maxSessions ?? PARALLEL_DEFAULTS.coordinatorSessions;
    assert(Number.isInteger(this.maxSessions) && this.maxSessions >= 1, `maxSessions must be a positive integer, got ${this.maxSessions}`);
    this.callDeadlineTicks = options.callDeadlineTicks ?? PARALLEL_DEFAULTS.callDeadlineTicks;
    assert(Number.isInteger(this.callDeadlineTicks) && this.callDeadlineTicks >= 1, `callDeadlineTicks must be a positive integer, got ${this.callDeadlineTicks}`);
    this.#id = options.id ?? "c";
    assert(this.#id.isWellFormed() && utf8Length(this.#id) >= 1 && utf8Length(this.#id) <= ID_PATTERN_MAX_BYTES,
      `coordinator id must have 1..${ID_PATTERN_MAX_BYTES} UTF-8 bytes`);
    this.#policy = options.positionPolicy ?? "round-robin";
    this.#block = options.blockSize;
    this.#nextCall = options.callId ?? (() => (this.#callCounter = (this.#callCounter % 0xffff_ffff) + 1));
    const audit = options.audit;
    if (audit !== undefined) {
      assert(audit.fraction >= 0 && audit.fraction <= 1, `audit fraction must be in [0, 1], got ${audit.fraction}`);
      assert(audit.tolerance >= 0 && audit.tolerance < Infinity, `audit tolerance must be finite and >= 0, got ${audit.tolerance}`);
    }
    this.#audit = audit;
  }

  /**
   * Sends the peer no more work: it is dropped at the start of every later run and session run
   * (those in progress finish their current run with it unless it fails). Also what a caught peer gets.
   */
  ban(peer: string): void {
    if (this.#banned.has(peer)) return;
    if (this.#banned.size >= BANNED_MAX) this.#banned.delete(this.#banned.values().next().value as string);
    this.#banned.add(peer);
  }

  isBanned(peer: string): boolean {
    return this.#banned.has(peer);
  }

  /** Sessions held now. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Calls waiting for an answer. */
  get pendingCalls(): number {
    return this.#calls.size;
  }

  /** Whether `call` is a call of this coordinator waiting for `from`'s answer. */
  awaits(from: string, call: number): boolean {
    return this.#calls.get(call)?.peer === from;
  }

  /** Nothing in progress and nothing to drain: no run, no call, no output. */
  get idle(): boolean {
    return this.#active === 0 && this.#calls.size === 0 && !this.hasReady();
  }

  /**
   * Starts one run and returns its id; its outcome comes out of ready(). Throws RangeError only for
   * invalid input of the caller (nothing is started then): bad tokens, bad peers or speeds, a
   * session full, ending or of another mode, too many runs queued, every session busy. Peers'
   * failures never throw: they are dropped and their share computed here. A run that needs no peer
   * finishes within this call.
   */
  start(req: RunRequest): number {
    const ids = req.ids;
    if (!(ids instanceof Int32Array)) throw new RangeError("ids must be an Int32Array");
    const values = Float32Array.from(req.values);
    const err = inputError(this.cfg, ids, values);
    if (err !== null) throw new RangeError(err);
    if (req.mode !== "pipeline" && req.mode !== "tensor" && req.mode !== "dkva") throw new RangeError(`unknown mode ${String(req.mode)}`);
    if (req.session === undefined) {
      const plan = this.#plan(req);
      const job = this.#job(null, () => this.#whole(plan, ids, values));
      this.#resume(job);
      return job.run;
    }
    const id = req.session;
    if (typeof id !== "string" || !id.isWellFormed() || utf8Length(id) < 1 || utf8Length(wireSession(this.tag, id)) > BRAIN_WIRE.sessionBytesMax) {
      throw new RangeError(`session id must have 1..${BRAIN_WIRE.sessionBytesMax - this.tag.length - 1} UTF-8 bytes`);
    }
    let s = this.#sessions.get(id);
    if (s === undefined) {
      const plan = this.#plan(req);
      if (this.#sessions.size >= this.maxSessions) this.#evictOne();
      s = this.#newSession(id, plan);
      this.#sessions.set(id, s);
    } else {
      if (s.ending) throw new RangeError(`session ${id} is ending`);
      if (s.plan.mode !== req.mode) throw new RangeError(`session ${id} runs ${s.plan.mode}, not ${req.mode}`);
      if (s.queue.length >= SESSION_QUEUE_MAX) throw new RangeError(`session ${id} has ${SESSION_QUEUE_MAX} runs queued`);
      this.#sessions.delete(id);
      this.#sessions.set(id, s);
    }
    if (s.planned + ids.length > this.cfg.seqLen) {
      throw new RangeError(`session ${id} holds ${s.planned} positions; ${ids.length} more exceed seqLen ${this.cfg.seqLen}`);
    }
    s.planned += ids.length;
    const session = s;
    const job = this.#job(session, () => this.#sessionRun(session, ids, values));
    this.#enqueue(session, () => this.#resume(job));
    return job.run;
  }

  /** Ends a session: once its runs in progress are done, forgets it here and tells its peers (end-session). */
  end(session: string): void {
    const s = this.#sessions.get(session);
    if (s === undefined || s.ending) return;
    s.ending = true;
    this.#enqueue(s, () => {
      s.ended = true;
      if (this.#sessions.get(session) === s) this.#sessions.delete(session);
      this.#endPeers(s);
      this.#release(s);
    });
  }

  /**
   * A peer's answer to call `call`, or null when it could not be decoded (the call fails at once).
   * False when the call is not this coordinator's (unknown, already settled, or `from` is not the
   * peer it was sent to): the caller drops it.
   */
  step(from: string, call: number, reply: BrainMessage | null): boolean {
    const pending = this.#calls.get(call);
    if (pending === undefined || pending.peer !== from) return false;
    this.#calls.delete(call);
    if (reply === null) this.stats.failed++;
    else {
      this.stats.answered++;
      pending.ctx.bytesReceived += brainMessageBytes(reply);
    }
    this.#settle(pending, reply);
    return true;
  }

  /** One tick: calls at their deadline fail (their peers are dropped from those runs). */
  tick(): void {
    this.#now++;
    const due: PendingCall[] = [];
    for (const [call, pending] of this.#calls) {
      if (this.#now < pending.deadline) continue;
      this.#calls.delete(call);
      due.push(pending);
    }
    this.stats.timedOut += due.length;
    for (const pending of due) this.#settle(pending, null);
  }

  /** The peer was declared dead or gone: its calls fail now. */
  peerGone(peer: string): void {
    const gone: PendingCall[] = [];
    for (const [call, pending] of this.#calls) {
      if (pending.peer !== peer) continue;
      this.#calls.delete(call);
      gone.push(pending);
    }
    this.stats.failed += gone.length;
    for (const pending of gone) this.#settle(pending, null);
  }

  /**
   * The sends of the last ready() have left: runs paused behind them compute their own share now
   * (and may send more, or finish). True when it resumed any.
   */
  advance(): boolean {
    if (this.#paused.length === 0) return false;
    const paused = this.#paused;
    this.#paused = [];
    for (const job of paused) if (job.state === "paused") this.#resume(job);
    return true;
  }

  hasReady(): boolean {
    return this.#sends.length > 0 || this.#outcomes.length > 0 || this.#paused.length > 0 || this.#caught.length > 0;
  }

  /** The messages to send, the runs that finished and the peers caught since the last call; call advance() once the sends are out. */
  ready(): CoordinatorReady {
    const out = { sends: this.#sends, outcomes: this.#outcomes, caught: this.#caught };
    this.#sends = [];
    this.#outcomes = [];
    this.#caught = [];
    return out;
  }

  // -- the jobs --------------------------------------------------------------------------------

  #job(session: CoordSession | null, make: () => Generator<Yield, RunResult, void>): Job {
    this.#nextRun = (this.#nextRun % 0xffff_ffff) + 1;
    const run = this.#nextRun;
    this.#active++;
    return { run, session, gen: make(), state: "new", wave: null };
  }

  /** Runs the job's generator until it waits for answers, pauses for its sends to leave, or ends. */
  #resume(job: Job): void {
    const outer = this.#current;
    this.#current = job;
    try {
      for (;;) {
        job.state = "running";
        job.wave = null;
        let r: IteratorResult<Yield, RunResult>;
        try {
          r = job.gen.next();
        } catch (error) {
          this.#finish(job, { run: job.run, ok: false, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
          return;
        }
        if (r.done === true) {
          this.#finish(job, { run: job.run, ok: true, result: r.value });
          return;
        }
        if (r.value === "pause") {
          job.state = "paused";
          this.#paused.push(job);
          return;
        }
        job.wave = r.value;
        if (r.value.pending > 0) {
          job.state = "waiting";
          return;
        }
      }
    } finally {
      this.#current = outer;
    }
  }

  #finish(job: Job, outcome: RunOutcome): void {
    job.state = "done";
    this.#active--;
    for (const [call, pending] of this.#calls) if (pending.wave.job === job) this.#calls.delete(call);
    this.#outcomes.push(outcome);
    if (job.session !== null) this.#release(job.session);
  }

  #settle(pending: PendingCall, reply: BrainMessage | null): void {
    const wave = pending.wave;
    wave.answers[pending.slot] = reply;
    wave.pending--;
    const job = wave.job;
    if (wave.pending === 0 && job.state === "waiting" && job.wave === wave) this.#resume(job);
  }

  /** Runs `start` now if the session is free, else after the runs before it; `start` must lead to #release. */
  #enqueue(s: CoordSession, start: () => void): void {
    s.queue.push(start);
    this.#drain(s);
  }

  #release(s: CoordSession): void {
    s.running = false;
    this.#drain(s);
  }

  #drain(s: CoordSession): void {
    if (s.draining) return; // a run that finished within the loop below: the loop goes on
    s.draining = true;
    try {
      while (!s.running && s.queue.length > 0) {
        s.running = true;
        s.queue.shift()!();
      }
    } finally {
      s.draining = false;
    }
  }

  #evictOne(): void {
    for (const [key, s] of this.#sessions) {
      if (s.running || s.queue.length > 0) continue;
      this.#sessions.delete(key);
      s.ended = true;
      this.#endPeers(s);
      return;
    }
    throw new RangeError(`all ${this.maxSessions} sessions are busy`);
  }

  /** Tells every peer of the session to forget it (no answer awaited: a dead peer forgets anyway, LRU bounds a live one). */
  #endPeers(s: CoordSession): void {
    const msg: BrainMessage = { t: "end-session", session: s.wire };
    for (const peer of s.plan.peers) this.#sends.push({ to: peer, call: 0, msg });
  }

  #plan(req: RunRequest): Plan {
    const peers = req.peers;
    if (!Array.isArray(peers) || peers.length > MAX_PEERS) throw new RangeError(`peers must be an array of at most ${MAX_PEERS}`);
    const seen = new Set<string>();
    for (const p of peers) {
      if (typeof p !== "string" || p.length === 0 || seen.has(p)) throw new RangeError("peers must be distinct non-empty strings");
      seen.add(p);
    }
    const n = peers.length + 1;
    const speeds = req.speeds ?? new Array<number>(n).fill(1);
    if (speeds.length !== n || !speeds.every((x) => Number.isFinite(x) && x >= 0)) {
      throw new RangeError(`speeds must be ${n} finite numbers ≥ 0 (this node first)`);
    }
    const { nLayers, nHeads, dFF } = this.cfg;
    const none: Range[] = [];
    return {
      mode: req.mode,
      peers: [...peers],
      n,
      stages: req.mode === "pipeline" ? splitLayers(nLayers, speeds) : none,
      heads: req.mode === "tensor" ? splitHeads(nHeads, speeds) : none,
      cols: req.mode === "tensor" ? splitColumns(dFF, speeds) : none,
    };
  }

  #newSession(id: string, plan: Plan): CoordSession {
    const { seqLen, nLayers, dModel: d } = this.cfg;
    const shard = (): KvShard => new KvShard({ nLayers, d, capacity: seqLen, initialRows: Math.min(seqLen, 16) });
    const untrusted = this.#drawAudit(plan);
    const audit: Audit | null = untrusted === null ? null : {
      untrusted,
      shadow: plan.mode === "dkva" ? null : new KvCache(this.cfg),
      shards: untrusted.map((u) => (u && plan.mode === "dkva" ? shard() : null)),
    };
    return {
      id, wire: wireSession(this.tag, id), plan,
      ids: new Int32Array(seqLen), values: new Float32Array(seqLen), length: 0, planned: 0,
      dropped: new Set(), dropOrder: [],
      cache: plan.mode === "dkva" ? null : new KvCache(this.cfg),
      shard: plan.mode === "dkva" ? shard() : null,
      audit,
      running: false, draining: false, queue: [], ending: false, ended: false,
    };
  }

  /** Whether a new run or session of `plan` is audited: the untrusted flags by participant, or null. */
  #drawAudit(plan: Plan): boolean[] | null {
    const a = this.#audit;
    if (a === undefined || a.fraction === 0 || plan.n === 1) return null;
    const untrusted = [false, ...plan.peers.map((p) => a.untrusted?.(p) ?? true)];
    if (!untrusted.includes(true) || !a.rng.chance(a.fraction)) return null;
    this.stats.audited++;
    return untrusted;
  }

  /** Whether participant i's answers are recomputed in this run. */
  #audits(ctx: Ctx, i: number): boolean {
    return ctx.audit !== null && ctx.audit.untrusted[i] === true && !this.#local(ctx, i);
  }

  /**
   * Compares participant i's answer with the one recomputed here; true (and the peer caught and
   * banned) when it is wrong.
   */
  #wrong(ctx: Ctx, i: number, diff: number, what: string): boolean {
    this.stats.checked++;
    if (diff <= this.#audit!.tolerance) return false;
    const peer = ctx.plan.peers[i - 1]!;
    this.stats.caught++;
    this.#caught.push({ peer, mode: ctx.plan.mode, what, diff });
    this.ban(peer);
    return true;
  }

  /** Drops the banned peers still taking part; true when it dropped any. */
  #dropBanned(ctx: Ctx): boolean {
    if (this.#banned.size === 0) return false;
    let any = false;
    for (let i = 1; i < ctx.plan.n; i++) {
      if (this.#local(ctx, i) || !this.#banned.has(ctx.plan.peers[i - 1]!)) continue;
      this.#drop(ctx, i);
      any = true;
    }
    return any;
  }

  #acquire(full: boolean): Workspace<Float32Array> {
    const pool = full ? this.#pool.full : this.#pool.one;
    return pool.pop() ?? new Workspace(this.cfg, Float32Array, { rows: full ? this.cfg.seqLen : 1 });
  }

  #recycle(ws: Workspace<Float32Array>): void {
    const pool = ws.rows === 1 ? this.#pool.one : this.#pool.full;
    if (pool.length < 4) pool.push(ws);
  }

  #ctx(plan: Plan, wire: string, session: CoordSession | null): Ctx {
    const untrusted = session === null ? this.#drawAudit(plan) : null;
    return {
      plan, wire, session,
      audit: session !== null ? session.audit : untrusted === null ? null : { untrusted, shadow: null, shards: [] },
      dropped: session?.dropped ?? new Set(), dropOrder: session?.dropOrder ?? [],
      roundTrips: 0, rounds: 0, bytesSent: 0, bytesReceived: 0,
    };
  }

  #result(ctx: Ctx, logits: Float32Array, length: number): RunResult {
    const L = this.cfg.nLayers;
    const active = ctx.plan.n - 1 - ctx.dropped.size;
    return {
      logits, length,
      mode: ctx.dropped.size === 0 && ctx.plan.n > 1 ? "FULL" : active > 0 ? "REDUCED" : "SOLO",
      peers: ctx.plan.peers,
      dropped: [...ctx.dropOrder],
      roundTrips: ctx.roundTrips, rounds: ctx.rounds,
      perLayerRoundTrips: ctx.roundTrips / L, perLayerRounds: ctx.rounds / L,
      bytesSent: ctx.bytesSent, bytesReceived: ctx.bytesReceived,
      perLayerBytes: (ctx.bytesSent + ctx.bytesReceived) / L,
    };
  }

  #requestId(): number {
    this.#nextRequest = (this.#nextRequest % 0xffff_ffff) + 1;
    return this.#nextRequest;
  }

  #local(ctx: Ctx, i: number): boolean {
    return i === 0 || ctx.dropped.has(i);
  }

  #drop(ctx: Ctx, i: number): void {
    if (i === 0 || ctx.dropped.has(i)) return;
    ctx.dropped.add(i);
    ctx.dropOrder.push(ctx.plan.peers[i - 1]!);
  }

  /**
   * Sends one wave of requests at once (into ready()); null for none. The run yields the wave to
   * wait for every answer (wave.answers: null for a failed call), after yielding "pause" first if
   * it has its own share to compute meanwhile.
   */
  #send(ctx: Ctx, reqs: readonly { i: number; msg: BrainMessage }[]): Wave | null {
    if (reqs.length === 0) return null;
    const job = this.#current;
    assert(job !== null, "Coordinator: a wave is sent from a running job");
    ctx.rounds++;
    const wave: Wave = { job, answers: new Array<BrainMessage | null>(reqs.length).fill(null), pending: reqs.length };
    reqs.forEach(({ i, msg }, slot) => {
      const peer = ctx.plan.peers[i - 1]!;
      const call = this.#nextCall();
      assert(Number.isInteger(call) && call >= 1 && call <= 0xffff_ffff && !this.#calls.has(call), `Coordinator: call id ${call} is not a fresh u32`);
      ctx.roundTrips++;
      ctx.bytesSent += brainMessageBytes(msg);
      this.stats.calls++;
      this.#calls.set(call, { wave, slot, peer, deadline: this.#now + this.callDeadlineTicks, ctx });
      this.#sends.push({ to: peer, call, msg });
    });
    return wave;
  }

  // -- whole sequences: pipeline and tensor; dkva as a temporary session ---------------------

  *#whole(plan: Plan, ids: Int32Array, values: Float32Array): Generator<Yield, RunResult, void> {
    if (plan.mode === "dkva") {
      this.#temp = (this.#temp + 1) % 0x1_0000_0000;
      const s = this.#newSession(`${this.#id}~${this.#temp}`, plan);
      s.planned = ids.length;
      try {
        return yield* this.#sessionRun(s, ids, values);
      } finally {
        this.#endPeers(s);
      }
    }
    const ctx = this.#ctx(plan, this.tag, null);
    this.#dropBanned(ctx);
    const T = ids.length;
    const ws = this.#acquire(T > 1);
    try {
      embed(this.cfg, this.#mw, ids, values, 0, T, ws.h);
      if (plan.mode === "pipeline") yield* this.#pipeline(ctx, ws, T, 0);
      else yield* this.#tensor(ctx, ws, T, 0);
      return this.#result(ctx, head(this.cfg, this.#params, ws.h, T, ws).slice(), T);
    } finally {
      this.#recycle(ws);
    }
  }

  // -- sessions -------------------------------------------------------------------------------

  *#sessionRun(s: CoordSession, ids: Int32Array, values: Float32Array): Generator<Yield, RunResult, void> {
    if (s.ended) throw new RangeError(`session ${s.id} was ended`);
    const T = ids.length, P = s.length;
    assert(P + T <= this.cfg.seqLen, `session ${s.id} holds ${P} positions; ${T} more exceed seqLen ${this.cfg.seqLen}`);
    s.ids.set(ids, P);
    s.values.set(values, P);
    const ctx = this.#ctx(s.plan, s.wire, s);
    // A peer banned since the last run: dropped before this one, the state of its share rebuilt here.
    if (this.#dropBanned(ctx) && P > 0) {
      if (s.plan.mode === "dkva") this.#rebuildShard(ctx, s, P, -1);
      else this.#replay(s, P);
    }
    const ws = this.#acquire(T > 1 && s.plan.mode !== "dkva");
    try {
      let logits: Float32Array;
      if (s.plan.mode === "dkva") {
        for (let t = P; t < P + T; t++) {
          embedToken(this.cfg, this.#mw, s.ids[t]!, s.values[t]!, t, ws.h, 0);
          yield* this.#dkvaToken(ctx, s, ws, t);
          s.length = t + 1;
        }
        logits = head(this.cfg, this.#params, ws.h, 1, ws).slice();
      } else {
        embed(this.cfg, this.#mw, ids, values, P, T, ws.h);
        if (s.plan.mode === "pipeline") yield* this.#pipeline(ctx, ws, T, P);
        else yield* this.#tensor(ctx, ws, T, P);
        s.length = P + T;
        logits = head(this.cfg, this.#params, ws.h, T, ws).slice();
      }
      return this.#result(ctx, logits, s.length);
    } catch (error) {
      // Only a bug gets here (peers' failures are values); the session's state is unknown: end it.
      s.ended = true;
      if (this.#sessions.get(s.id) === s) this.#sessions.delete(s.id);
      throw error;
    } finally {
      this.#recycle(ws);
    }
  }

  /** Session state after dropping a peer (pipeline, tensor): the local cache of every layer and position replayed. */
  #replay(s: CoordSession, upTo: number): void {
    const ws = this.#acquire(true);
    try {
      forward(this.cfg, this.#params, s.ids.subarray(0, upTo), s.values.subarray(0, upTo), ws, s.cache!);
    } finally {
      this.#recycle(ws);
    }
  }

  /** Pipeline over rows [0, T) of ws.h at positions startPos..: stages in order. */
  *#pipeline(ctx: Ctx, ws: Workspace<Float32Array>, T: number, startPos: number): Generator<Yield, void, void> {
    const { plan, session } = ctx, d = this.cfg.dModel, h = ws.h, acts = ws.acts[0]!;
    for (let i = 0; i < plan.n; i++) {
      const [from, to] = plan.stages[i]!;
      if (from === to) continue;
      if (!this.#local(ctx, i)) {
        const requestId = this.#requestId();
        const sent = h.slice(0, T * d);
        const wave = this.#send(ctx, [{ i, msg: {
          t: "stage-req", session: ctx.wire, requestId, layers: [from, to], startPos,
          hidden: { rows: T, cols: d, data: sent },
        } }])!;
        yield wave;
        const res = wave.answers[0];
        let out = res?.t === "stage-res" && res.requestId === requestId ? matrixOf(res.hidden, T, d) : null;
        if (out !== null && this.#audits(ctx, i)) {
          const want = sent.slice();
          runLayers(this.cfg, this.#mw, from, to, want, T, startPos, session === null ? null : ctx.audit!.shadow, acts);
          if (this.#wrong(ctx, i, answerDiff(out, want), `stage [${from}, ${to}) at position ${startPos}`)) out = null;
        }
        if (out !== null) {
          h.set(out);
          continue;
        }
        this.#drop(ctx, i);
        if (session !== null) this.#replay(session, startPos + T);
      }
      runLayers(this.cfg, this.#mw, from, to, h, T, startPos, session?.cache ?? null, acts);
    }
  }

  /** Tensor parallelism over rows [0, T) of ws.h at positions startPos..: two fan-outs per layer. */
  *#tensor(ctx: Ctx, ws: Workspace<Float32Array>, T: number, startPos: number): Generator<Yield, void, void> {
    const { plan, session } = ctx, cfg = this.cfg, d = cfg.dModel, h = ws.h, acts = ws.acts[0]!;
    const acc = new Float32Array(T * d);
    for (let l = 0; l < cfg.nLayers; l++) {
      const w = this.#mw.layers[l]!;
      const cache = session?.cache ?? null;
      const kv = cache === null ? null : { K: cache.k[l]!, V: cache.v[l]! };
      for (const part of ["attn", "ffn"] as const) {
        const ranges = part === "attn" ? plan.heads : plan.cols;
        const local = (i: number): void => {
          const [r0, r1] = ranges[i]!;
          if (part === "attn") tpAttention(cfg, w, h, T, startPos, r0, r1, kv, acts, acc, true);
          else ffn(cfg, w, h, T, acts, acc, true, r0, r1);
        };
        const input: F32Matrix = { rows: T, cols: d, data: h.slice(0, T * d) };
        const reqs: { i: number; msg: TpRequest }[] = [];
        for (let i = 1; i < plan.n; i++) {
          const [r0, r1] = ranges[i]!;
          if (r0 === r1 || this.#local(ctx, i)) continue;
          reqs.push({ i, msg: {
            t: "tp-req", session: ctx.wire, requestId: this.#requestId(), layer: l, part, input,
            range: [r0, r1], startPos: part === "attn" ? startPos : 0,
          } });
        }
        const wave = this.#send(ctx, reqs);
        if (wave !== null) yield "pause"; // the requests leave; this node's share is computed while peers compute theirs
        acc.fill(0);
        for (let i = 0; i < plan.n; i++) if (this.#local(ctx, i) && ranges[i]![0] < ranges[i]![1]) local(i);
        if (wave !== null) yield wave;
        const partials: Float32Array[] = [];
        const failed: number[] = [];
        reqs.forEach(({ i, msg }, k) => {
          const res = wave!.answers[k];
          const out = res?.t === "tp-res" && res.requestId === msg.requestId ? matrixOf(res.partial, T, d) : null;
          if (out === null || (this.#audits(ctx, i) && this.#wrongTp(ctx, i, msg, out, l))) failed.push(i);
          else partials.push(out);
        });
        if (failed.length > 0) {
          for (const i of failed) this.#drop(ctx, i);
          if (session !== null) this.#replay(session, startPos + T);
          for (const i of failed) local(i);
        }
        const bias = part === "attn" ? w.bo : null;
        for (let r = 0; r < T; r++) {
          for (let j = 0; j < d; j++) {
            const x = r * d + j;
            let sum = acc[x]!;
            for (const p of partials) sum += p[x]!;
            if (bias !== null) sum += bias[j]!;
            h[x] = h[x]! + sum;
          }
        }
      }
    }
  }

  /** Recomputes a tensor share an untrusted peer answered (#wrong). */
  #wrongTp(ctx: Ctx, i: number, msg: TpRequest, out: Float32Array, l: number): boolean {
    const cfg = this.cfg, w = this.#mw.layers[l]!, T = msg.input.rows, [r0, r1] = msg.range;
    const acts = this.#scratch();
    const want = new Float32Array(T * cfg.dModel);
    if (msg.part === "ffn") ffn(cfg, w, msg.input.data, T, acts, want, false, r0, r1);
    else {
      const shadow = ctx.session === null ? null : ctx.audit!.shadow!;
      tpAttention(cfg, w, msg.input.data, T, msg.startPos, r0, r1, shadow === null ? null : { K: shadow.k[l]!, V: shadow.v[l]! }, acts, want, false);
    }
    return this.#wrong(ctx, i, answerDiff(out, want), `${msg.part} [${r0}, ${r1}) of layer ${l} at position ${msg.startPos}`);
  }

  /** Activations for a recomputation (any whole-sequence workspace: its layer-0 scratch). */
  #scratch(): LayerActs {
    this.#auditWs ??= new Workspace(this.cfg, Float32Array, { rows: this.cfg.seqLen });
    return this.#auditWs.acts[0]!;
  }

  // -- dkva ------------------------------------------------------------------------------------

  #owner(pos: number, n: number): number {
    return this.#block === undefined ? assignPositions(pos, n, this.#policy) : assignPositions(pos, n, this.#policy, this.#block);
  }

  /** How many positions ≤ t participant i stores (its partial must see exactly that many). */
  #ownedUpTo(i: number, t: number, n: number): number {
    if (this.#policy === "round-robin") return t < i ? 0 : Math.floor((t - i) / n) + 1;
    const B = this.#block ?? POSITION_BLOCK_DEFAULT;
    const last = Math.floor(t / B);
    if (last < i) return 0;
    const blocks = Math.floor((last - i) / n) + 1;
    return (last - i) % n === 0 ? (blocks - 1) * B + (t - last * B + 1) : blocks * B;
  }

  /**
   * After dropping peers at (layer, position t): the local shard rebuilt from a replay, holding every
   * position the local set now owns — positions < t in every layer, t in layers ≤ layer.
   */
  #rebuildShard(ctx: Ctx, s: CoordSession, t: number, layer: number): void {
    const { nLayers, dModel: d, seqLen } = this.cfg;
    const cache = new KvCache(this.cfg);
    const ws = this.#acquire(true);
    try {
      forward(this.cfg, this.#params, s.ids.subarray(0, t + 1), s.values.subarray(0, t + 1), ws, cache);
    } finally {
      this.#recycle(ws);
    }
    const shard = new KvShard({ nLayers, d, capacity: seqLen, initialRows: Math.min(seqLen, 16) });
    for (let l = 0; l < nLayers; l++) {
      const K = cache.k[l]!, V = cache.v[l]!;
      for (let p = 0; p <= t; p++) {
        if ((p === t && l > layer) || !this.#local(ctx, this.#owner(p, s.plan.n))) continue;
        const r = shard.append(l, p, K.subarray(p * d, (p + 1) * d), V.subarray(p * d, (p + 1) * d));
        assert(r.ok, "rebuildShard: positions ascend");
      }
    }
    s.shard = shard;
  }

  /** One token at position t through every layer, ws.h row 0 holding its embedding. */
  *#dkvaToken(ctx: Ctx, s: CoordSession, ws: Workspace<Float32Array>, t: number): Generator<Yield, void, void> {
    const cfg = this.cfg, { nHeads: H, dModel: d } = cfg, dh = d / H, n = s.plan.n, h = ws.h, acts = ws.acts[0]!;
    const att = acts.att.subarray(0, d);
    for (let l = 0; l < cfg.nLayers; l++) {
      const w = this.#mw.layers[l]!;
      attentionInputs(cfg, w, h, 1, acts);
      const q = acts.q.slice(0, d), k = acts.k.slice(0, d), v = acts.v.slice(0, d);
      const owner = this.#owner(t, n);
      const reqs: { i: number; msg: PartialRequest }[] = [];
      for (let i = 1; i < n; i++) {
        if (this.#local(ctx, i)) continue;
        const base = { t: "partial-req" as const, session: ctx.wire, requestId: this.#requestId(), layer: l, queryPos: t, q };
        reqs.push({ i, msg: owner === i ? { ...base, append: { position: t, k, v } } : base });
      }
      const wave = this.#send(ctx, reqs);
      // An audited peer's shard is mirrored here: the row its append carried.
      const mirror = ctx.audit?.shards[owner];
      if (mirror != null && !this.#local(ctx, owner)) {
        const r = mirror.append(l, t, k, v);
        assert(r.ok, `dkva: mirror append of position ${t} at layer ${l}: ${r.ok ? "" : r.error}`);
      }
      if (wave !== null) yield "pause"; // the shards answer while this node's own shard computes
      if (this.#local(ctx, owner)) {
        const r = s.shard!.append(l, t, k, v);
        assert(r.ok, `dkva: local append of position ${t} at layer ${l}: ${r.ok ? "" : r.error}`);
      }
      let mine = partialAttention(s.shard!, l, q, t, H);
      if (wave !== null) yield wave;
      const partials: AttentionPartial[] = [];
      const failed: number[] = [];
      reqs.forEach(({ i, msg }, j) => {
        const res = wave!.answers[j];
        const p = res?.t === "partial-res" && res.requestId === msg.requestId ? partialOf(res, H, dh, this.#ownedUpTo(i, t, n)) : null;
        const mirrored = ctx.audit?.shards[i];
        if (p === null || (mirrored != null && this.#audits(ctx, i)
          && this.#wrong(ctx, i, partialDiff(p, partialAttention(mirrored, l, q, t, H)), `partial of layer ${l} at position ${t}`))) failed.push(i);
        else partials.push(p);
      });
      if (failed.length > 0) {
        for (const i of failed) this.#drop(ctx, i);
        this.#rebuildShard(ctx, s, t, l);
        mine = partialAttention(s.shard!, l, q, t, H);
      }
      partials.push(mine);
      mergePartials(partials, H, dh, att);
      attentionOutput(cfg, w, acts.att, 1, h);
      ffn(cfg, w, h, 1, acts, h, true);
    }
  }
}

/**
 * How far an answer is from the one recomputed: the largest |got − want| / max(1, |want|) over the
 * elements (0 where both are the same value, infinities included; Infinity for a length mismatch
 * or where only one is finite or NaN).
 */
export function answerDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const a = got[i]!, b = want[i]!;
    if (a === b) continue;
    const diff = Math.abs(a - b) / Math.max(1, Math.abs(b));
    if (!(diff <= worst)) worst = Number.isNaN(diff) ? Infinity : diff;
  }
  return worst;
}

/** answerDiff over a dkva partial's m, l and o. */
function partialDiff(got: AttentionPartial, want: AttentionPartial): number {
  return Math.max(answerDiff(got.m, want.m), answerDiff(got.l, want.l), answerDiff(got.o, want.o));
}

/** The data of a peer's T×d matrix if it has exactly that shape and is finite, else null. */
function matrixOf(m: unknown, rows: number, cols: number): Float32Array | null {
  if (typeof m !== "object" || m === null) return null;
  const x = m as F32Matrix;
  if (x.rows !== rows || x.cols !== cols || !(x.data instanceof Float32Array) || x.data.length !== rows * cols) return null;
  return allFinite(x.data) ? x.data : null;
}

/** A peer's partial if well-formed and consistent with holding `count` visible positions, else null. */
function partialOf(res: { m: unknown; l: unknown; o: unknown }, H: number, dh: number, count: number): AttentionPartial | null {
  const { m, l, o } = res;
  if (!(m instanceof Float64Array) || !(l instanceof Float64Array) || !(o instanceof Float64Array)) return null;
  const p: AttentionPartial = { m, l, o };
  if (checkPartial(p, H, dh, Math.max(count, 1)) !== undefined) return null;
  for (let j = 0; j < H; j++) if ((l[j] === 0) !== (count === 0)) return null;
  return p;
}
