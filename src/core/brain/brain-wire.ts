// Brain RPC payloads on the wire (docs/protocols/brain.md): a compact little-endian binary encoding
// for the tensors that distributed inference moves between nodes. Not MessagePack or JSON: floats
// travel as their IEEE-754 bytes, so f64 is lossless and −Infinity (the m of an empty attention
// shard) and NaN payloads survive bit for bit; tensors are copied once, not boxed number by number.
//
// A message is
//
//   u8 version (1) | u8 kind | fields of the kind, in order | nothing after
//
// integers little-endian; str8 = u8 length + UTF-8 bytes, str16 = u16 length + UTF-8 bytes; a
// tensor is a TENSOR FRAME:
//
//   u8 dtype (1 f32, 2 f64, 3 i32) | u8 rank (0..4) | u32 dim × rank | u32 byteLength | data
//
// with byteLength = product(dims) × element size (4 or 8), elements little-endian, no padding.
//
//   kind 1 partial-req   str8 session | u32 requestId | u16 layer | u32 queryPos | u8 flags (bit 0: append)
//                        | q f32[d] | if append: u32 position | k f32[d] | v f32[d]
//        DKVA: the shard's partial softmax for query row q (all heads) at global position queryPos
//        over its positions ≤ queryPos of `layer`; with `append`, the shard first stores the K/V row
//        of `position` (decode: the new token's row goes to the shard that owns it).
//   kind 2 partial-res   u32 requestId | m f64[H] | l f64[H] | o f64[H, dh]
//        Per head: max score (−Infinity when the shard saw nothing), Σ exp(s − m), and the
//        unnormalised Σ exp(s − m)·v (src/core/brain/dkva.ts).
//   kind 3 tp-req        str8 session | u32 requestId | u16 layer | u8 part (0 attn, 1 ffn)
//                        | u32 rangeStart | u32 rangeEnd | u32 startPos | input f32[T, d]
//        Megatron-style tensor parallelism: apply the receiver's slice [rangeStart, rangeEnd) —
//        attention heads for "attn", FFN hidden columns for "ffn" — of `layer` to the T input rows
//        (already normalised); for "attn" the rows are positions startPos..startPos+T−1 and their K/V
//        are appended to the receiver's cache for its heads (startPos is 0 and unused for "ffn").
//   kind 4 tp-res        u32 requestId | partial f32[T, d]
//        The receiver's partial sum of the row-parallel output projection; the caller adds them up.
//   kind 5 stage-req     str8 session | u32 requestId | u16 layerFrom | u16 layerTo | u32 startPos | hidden f32[T, d]
//        Pipeline: run layers [layerFrom, layerTo) on hidden rows at positions startPos.., caching K/V.
//   kind 6 stage-res     u32 requestId | hidden f32[T, d]
//   kind 7 error         u32 requestId | str8 code | str16 message
//        The request failed (e.g. "full", "session", "shape", "busy"); requestId 0 when not tied to one.
//   kind 8 end-session   str8 session
//        Forget the session's KV cache and state.
//   kind 9 expert-req    u32 requestId | ids i32[T] | values f32[T]
//        Mixture of experts: classify this input (T ≤ 4,096 tokens) with your own local expert model.
//   kind 10 expert-res   u32 requestId | u32 version | logits f32[C]
//        The expert's logits (C ≤ 65,536) and the version of the model that produced them.
//   kind 11 train-req    u32 requestId | u32 round | u16 epochs | u32 seed | params f32[P]
//        Federated learning: start from these global params, train `epochs` passes over your local
//        data (shuffled from `seed`), answer with your params.
//   kind 12 train-res    u32 requestId | u32 round | u32 n | params f32[P]
//        The locally trained params of `round` and n, the number of examples they were trained on.
//
// Limits: the whole message ≤ bytesMax (64 MiB by default; a stream frame is at most 16 MiB anyway,
// LIMITS.frameBytesMax); session and code 1–64 UTF-8 bytes, error message 0–1,024; rank ≤ 4; every
// field has its dtype and rank (vectors rank 1, o and matrices rank 2), no empty vector or matrix,
// and k, v have q's length, l has m's, o has m's length rows; expert ids and values 1..4,096 long
// and of one length, logits 1..65,536. Values are bits: finiteness, token ids in the vocabulary and
// params of the receiver's model size are the receiver's checks (docs/protocols/brain.md).
// Decoding is total: any input gives { ok: false, error } or a message, never an exception, and it
// never allocates more than the input's size. The encoding is canonical: a decoded message encodes
// back to the same bytes.
import { assert, assertNever } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";

export const BRAIN_WIRE = {
  version: 1,
  /** bytesMax, sessionBytesMax, codeBytesMax, messageBytesMax, rankMax, expertTokensMax, logitsMax (LIMITS.brainWire). */
  ...LIMITS.brainWire,
} as const;

export type DType = "f32" | "f64" | "i32";
export type Tensor =
  | { dtype: "f32"; shape: number[]; data: Float32Array }
  | { dtype: "f64"; shape: number[]; data: Float64Array }
  | { dtype: "i32"; shape: number[]; data: Int32Array };

/** A row-major f32 matrix: T rows of d. */
export interface F32Matrix {
  rows: number;
  cols: number;
  data: Float32Array;
}

export interface KvAppend {
  position: number;
  k: Float32Array;
  v: Float32Array;
}

export interface PartialRequest {
  t: "partial-req";
  session: string;
  requestId: number;
  layer: number;
  queryPos: number;
  q: Float32Array;
  append?: KvAppend;
}
export interface PartialResponse {
  t: "partial-res";
  requestId: number;
  m: Float64Array;
  l: Float64Array;
  /** H·dh values, head h at [h·dh, (h+1)·dh). */
  o: Float64Array;
}
export interface TpRequest {
  t: "tp-req";
  session: string;
  requestId: number;
  layer: number;
  part: "attn" | "ffn";
  input: F32Matrix;
  /** [start, end): heads for "attn", FFN columns for "ffn"; start < end. */
  range: readonly [number, number];
  startPos: number;
}
export interface TpResponse {
  t: "tp-res";
  requestId: number;
  partial: F32Matrix;
}
export interface StageRequest {
  t: "stage-req";
  session: string;
  requestId: number;
  /** [from, to); from < to. */
  layers: readonly [number, number];
  hidden: F32Matrix;
  startPos: number;
}
export interface StageResponse {
  t: "stage-res";
  requestId: number;
  hidden: F32Matrix;
}
export interface ErrorResponse {
  t: "error";
  requestId: number;
  code: string;
  message: string;
}
export interface EndSession {
  t: "end-session";
  session: string;
}
/** Mixture of experts: classify this input with your own local expert model. */
export interface ExpertRequest {
  t: "expert-req";
  requestId: number;
  /** Token ids, 1..BRAIN_WIRE.expertTokensMax of them. */
  ids: Int32Array;
  /** One value per token (values.length === ids.length). */
  values: Float32Array;
}
export interface ExpertResponse {
  t: "expert-res";
  requestId: number;
  /** The version of the expert model that answered (u32). */
  version: number;
  /** 1..BRAIN_WIRE.logitsMax logits. */
  logits: Float32Array;
}
/** Federated learning: train locally starting from these global params. */
export interface TrainRequest {
  t: "train-req";
  requestId: number;
  round: number;
  /** u16. */
  epochs: number;
  seed: number;
  params: Float32Array;
}
export interface TrainResponse {
  t: "train-res";
  requestId: number;
  round: number;
  /** Examples the params were trained on (u32). */
  n: number;
  params: Float32Array;
}

export type BrainMessage =
  | PartialRequest | PartialResponse | TpRequest | TpResponse | StageRequest | StageResponse | ErrorResponse | EndSession
  | ExpertRequest | ExpertResponse | TrainRequest | TrainResponse;

export type BrainDecodeResult = { ok: true; msg: BrainMessage } | { ok: false; error: string };
export type TensorDecodeResult = { ok: true; tensor: Tensor } | { ok: false; error: string };

export interface BrainWireOptions {
  /** Largest accepted input; default BRAIN_WIRE.bytesMax. */
  bytesMax?: number;
}

const KIND = {
  "partial-req": 1, "partial-res": 2, "tp-req": 3, "tp-res": 4, "stage-req": 5, "stage-res": 6, "error": 7, "end-session": 8,
  "expert-req": 9, "expert-res": 10, "train-req": 11, "train-res": 12,
} as const;
const DTYPE_CODE = { f32: 1, f64: 2, i32: 3 } as const;
const DTYPE_SIZE = { f32: 4, f64: 8, i32: 4 } as const;
const FLAG_APPEND = 1;

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------------------------------------
// Encoding. Messages come from our own code: a field out of range is a bug (AssertionFailure).

class Writer {
  readonly #parts: Uint8Array[] = [];
  #size = 0;

  #scalar(bytes: number, write: (view: DataView) => void): void {
    const part = new Uint8Array(bytes);
    write(new DataView(part.buffer));
    this.#push(part);
  }

  #push(part: Uint8Array): void {
    this.#parts.push(part);
    this.#size += part.length;
  }

  u8(x: number): void {
    assert(Number.isInteger(x) && x >= 0 && x <= 0xff, `brain-wire: ${x} is not a u8`);
    this.#scalar(1, (v) => v.setUint8(0, x));
  }

  u16(x: number): void {
    assert(Number.isInteger(x) && x >= 0 && x <= 0xffff, `brain-wire: ${x} is not a u16`);
    this.#scalar(2, (v) => v.setUint16(0, x, true));
  }

  u32(x: number): void {
    assert(Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff, `brain-wire: ${x} is not a u32`);
    this.#scalar(4, (v) => v.setUint32(0, x, true));
  }

  str(s: string, lengthBytes: 1 | 2, min: number, max: number, what: string): void {
    assert(s.isWellFormed(), `brain-wire: ${what} is not well-formed Unicode`);
    const bytes = utf8.encode(s);
    assert(bytes.length >= min && bytes.length <= max, `brain-wire: ${what} has ${bytes.length} UTF-8 bytes, not ${min}..${max}`);
    if (lengthBytes === 1) this.u8(bytes.length);
    else this.u16(bytes.length);
    this.#push(bytes);
  }

  tensor(t: Tensor): void {
    assert(t.shape.length <= BRAIN_WIRE.rankMax, `brain-wire: rank ${t.shape.length} > ${BRAIN_WIRE.rankMax}`);
    let count = 1;
    for (const dim of t.shape) {
      assert(Number.isInteger(dim) && dim >= 0 && dim <= 0xffff_ffff, `brain-wire: dimension ${dim} is not a u32`);
      count *= dim;
    }
    assert(count === t.data.length, `brain-wire: shape [${t.shape.join(", ")}] does not hold ${t.data.length} values`);
    const byteLength = t.data.byteLength;
    assert(byteLength <= 0xffff_ffff, "brain-wire: tensor over 4 GiB");
    this.u8(DTYPE_CODE[t.dtype]);
    this.u8(t.shape.length);
    for (const dim of t.shape) this.u32(dim);
    this.u32(byteLength);
    const raw = new Uint8Array(t.data.buffer, t.data.byteOffset, byteLength);
    this.#push(HOST_LITTLE_ENDIAN ? raw : swapped(raw, DTYPE_SIZE[t.dtype]));
  }

  vector32(x: Float32Array, what: string): void {
    assert(x.length >= 1, `brain-wire: ${what} is empty`);
    this.tensor({ dtype: "f32", shape: [x.length], data: x });
  }

  vector64(x: Float64Array, what: string): void {
    assert(x.length >= 1, `brain-wire: ${what} is empty`);
    this.tensor({ dtype: "f64", shape: [x.length], data: x });
  }

  vectorI32(x: Int32Array, what: string): void {
    assert(x.length >= 1, `brain-wire: ${what} is empty`);
    this.tensor({ dtype: "i32", shape: [x.length], data: x });
  }

  matrix(x: F32Matrix, what: string): void {
    assert(x.rows >= 1 && x.cols >= 1, `brain-wire: ${what} is ${x.rows}×${x.cols}`);
    this.tensor({ dtype: "f32", shape: [x.rows, x.cols], data: x.data });
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.#size);
    let at = 0;
    for (const part of this.#parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
}

/** Element-wise byte reversal (big-endian hosts only: the wire is little-endian). */
function swapped(raw: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += size) for (let j = 0; j < size; j++) out[i + j] = raw[i + size - 1 - j] as number;
  return out;
}

function session(w: Writer, s: string): void {
  w.str(s, 1, 1, BRAIN_WIRE.sessionBytesMax, "session");
}

function range(w: Writer, r: readonly [number, number], u16: boolean, what: string): void {
  assert(r[0] < r[1], `brain-wire: ${what} [${r[0]}, ${r[1]}) is empty`);
  if (u16) { w.u16(r[0]); w.u16(r[1]); } else { w.u32(r[0]); w.u32(r[1]); }
}

/** Encodes a message. The result's length is the caller's to check against its transport bound. */
export function encodeBrainMessage(msg: BrainMessage): Uint8Array {
  const w = new Writer();
  w.u8(BRAIN_WIRE.version);
  w.u8(KIND[msg.t]);
  switch (msg.t) {
    case "partial-req": {
      session(w, msg.session);
      w.u32(msg.requestId);
      w.u16(msg.layer);
      w.u32(msg.queryPos);
      w.u8(msg.append === undefined ? 0 : FLAG_APPEND);
      w.vector32(msg.q, "q");
      if (msg.append !== undefined) {
        const d = msg.q.length;
        assert(msg.append.k.length === d && msg.append.v.length === d, "brain-wire: append k and v must have q's length");
        w.u32(msg.append.position);
        w.vector32(msg.append.k, "k");
        w.vector32(msg.append.v, "v");
      }
      break;
    }
    case "partial-res": {
      const H = msg.m.length;
      assert(H >= 1 && msg.l.length === H && msg.o.length % H === 0 && msg.o.length > 0,
        `brain-wire: partial sizes m ${H}, l ${msg.l.length}, o ${msg.o.length}`);
      w.u32(msg.requestId);
      w.vector64(msg.m, "m");
      w.vector64(msg.l, "l");
      w.tensor({ dtype: "f64", shape: [H, msg.o.length / H], data: msg.o });
      break;
    }
    case "tp-req":
      session(w, msg.session);
      w.u32(msg.requestId);
      w.u16(msg.layer);
      w.u8(msg.part === "attn" ? 0 : 1);
      range(w, msg.range, false, "range");
      w.u32(msg.startPos);
      w.matrix(msg.input, "input");
      break;
    case "tp-res":
      w.u32(msg.requestId);
      w.matrix(msg.partial, "partial");
      break;
    case "stage-req":
      session(w, msg.session);
      w.u32(msg.requestId);
      range(w, msg.layers, true, "layers");
      w.u32(msg.startPos);
      w.matrix(msg.hidden, "hidden");
      break;
    case "stage-res":
      w.u32(msg.requestId);
      w.matrix(msg.hidden, "hidden");
      break;
    case "error":
      w.u32(msg.requestId);
      w.str(msg.code, 1, 1, BRAIN_WIRE.codeBytesMax, "code");
      w.str(msg.message, 2, 0, BRAIN_WIRE.messageBytesMax, "message");
      break;
    case "end-session":
      session(w, msg.session);
      break;
    case "expert-req": {
      const T = msg.ids.length;
      assert(T <= BRAIN_WIRE.expertTokensMax, `brain-wire: ${T} expert tokens > ${BRAIN_WIRE.expertTokensMax}`);
      assert(msg.values.length === T, `brain-wire: ${T} ids but ${msg.values.length} values`);
      w.u32(msg.requestId);
      w.vectorI32(msg.ids, "ids");
      w.vector32(msg.values, "values");
      break;
    }
    case "expert-res":
      assert(msg.logits.length <= BRAIN_WIRE.logitsMax, `brain-wire: ${msg.logits.length} logits > ${BRAIN_WIRE.logitsMax}`);
      w.u32(msg.requestId);
      w.u32(msg.version);
      w.vector32(msg.logits, "logits");
      break;
    case "train-req":
      w.u32(msg.requestId);
      w.u32(msg.round);
      w.u16(msg.epochs);
      w.u32(msg.seed);
      w.vector32(msg.params, "params");
      break;
    case "train-res":
      w.u32(msg.requestId);
      w.u32(msg.round);
      w.u32(msg.n);
      w.vector32(msg.params, "params");
      break;
    default:
      assertNever(msg);
  }
  return w.finish();
}

/** Encodes one tensor frame on its own. */
export function encodeTensor(t: Tensor): Uint8Array {
  const w = new Writer();
  w.tensor(t);
  return w.finish();
}

// ---------------------------------------------------------------------------------------------
// Decoding. Every byte is hostile: a malformed input is a WireError, caught at the top.

class WireError extends Error {}

class Reader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #at = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  #need(n: number, what: string): number {
    const at = this.#at;
    if (n > this.#bytes.length - at) throw new WireError(`truncated: ${what} needs ${n} bytes at offset ${at}, ${this.#bytes.length - at} left`);
    this.#at = at + n;
    return at;
  }

  u8(what: string): number {
    return this.#view.getUint8(this.#need(1, what));
  }

  u16(what: string): number {
    return this.#view.getUint16(this.#need(2, what), true);
  }

  u32(what: string): number {
    return this.#view.getUint32(this.#need(4, what), true);
  }

  str(lengthBytes: 1 | 2, min: number, max: number, what: string): string {
    const n = lengthBytes === 1 ? this.u8(what) : this.u16(what);
    if (n < min || n > max) throw new WireError(`${what}: ${n} bytes, not ${min}..${max}`);
    const at = this.#need(n, what);
    try {
      return utf8Strict.decode(this.#bytes.subarray(at, at + n));
    } catch {
      throw new WireError(`${what}: not valid UTF-8`);
    }
  }

  tensor(what: string): Tensor {
    const code = this.u8(what);
    const dtype: DType | undefined = code === 1 ? "f32" : code === 2 ? "f64" : code === 3 ? "i32" : undefined;
    if (dtype === undefined) throw new WireError(`${what}: unknown dtype ${code}`);
    const rank = this.u8(what);
    if (rank > BRAIN_WIRE.rankMax) throw new WireError(`${what}: rank ${rank} > ${BRAIN_WIRE.rankMax}`);
    const shape: number[] = [];
    let count = 1;
    for (let i = 0; i < rank; i++) {
      const dim = this.u32(what);
      shape.push(dim);
      count *= dim;
    }
    const byteLength = this.u32(what);
    const size = DTYPE_SIZE[dtype];
    if (count * size !== byteLength) throw new WireError(`${what}: shape [${shape.join(", ")}] of ${dtype} is not ${byteLength} bytes`);
    const at = this.#need(byteLength, what);
    // slice copies into a fresh, aligned buffer; the element count is already bounded by the input.
    const raw = HOST_LITTLE_ENDIAN ? this.#bytes.slice(at, at + byteLength) : swapped(this.#bytes.subarray(at, at + byteLength), size);
    switch (dtype) {
      case "f32": return { dtype, shape, data: new Float32Array(raw.buffer, 0, count) };
      case "f64": return { dtype, shape, data: new Float64Array(raw.buffer, 0, count) };
      case "i32": return { dtype, shape, data: new Int32Array(raw.buffer, 0, count) };
    }
  }

  vector32(what: string, length?: number): Float32Array {
    const t = this.tensor(what);
    if (t.dtype !== "f32" || t.shape.length !== 1 || t.data.length === 0) throw new WireError(`${what}: must be a non-empty f32 vector`);
    if (length !== undefined && t.data.length !== length) throw new WireError(`${what}: ${t.data.length} values, expected ${length}`);
    return t.data;
  }

  vector64(what: string, length?: number): Float64Array {
    const t = this.tensor(what);
    if (t.dtype !== "f64" || t.shape.length !== 1 || t.data.length === 0) throw new WireError(`${what}: must be a non-empty f64 vector`);
    if (length !== undefined && t.data.length !== length) throw new WireError(`${what}: ${t.data.length} values, expected ${length}`);
    return t.data;
  }

  vectorI32(what: string, lengthMax: number): Int32Array {
    const t = this.tensor(what);
    if (t.dtype !== "i32" || t.shape.length !== 1 || t.data.length === 0) throw new WireError(`${what}: must be a non-empty i32 vector`);
    if (t.data.length > lengthMax) throw new WireError(`${what}: ${t.data.length} values > ${lengthMax}`);
    return t.data;
  }

  matrix(what: string): F32Matrix {
    const t = this.tensor(what);
    if (t.dtype !== "f32" || t.shape.length !== 2 || t.data.length === 0) throw new WireError(`${what}: must be a non-empty f32 matrix`);
    return { rows: t.shape[0] as number, cols: t.shape[1] as number, data: t.data };
  }

  range(u16: boolean, what: string): [number, number] {
    const start = u16 ? this.u16(what) : this.u32(what);
    const end = u16 ? this.u16(what) : this.u32(what);
    if (!(start < end)) throw new WireError(`${what}: [${start}, ${end}) is empty`);
    return [start, end];
  }

  end(): void {
    if (this.#at !== this.#bytes.length) throw new WireError(`${this.#bytes.length - this.#at} bytes after the message`);
  }
}

function readMessage(r: Reader): BrainMessage {
  const version = r.u8("version");
  if (version !== BRAIN_WIRE.version) throw new WireError(`version ${version} is not supported`);
  const kind = r.u8("kind");
  switch (kind) {
    case KIND["partial-req"]: {
      const session = r.str(1, 1, BRAIN_WIRE.sessionBytesMax, "session");
      const requestId = r.u32("requestId");
      const layer = r.u16("layer");
      const queryPos = r.u32("queryPos");
      const flags = r.u8("flags");
      if ((flags & ~FLAG_APPEND) !== 0) throw new WireError(`unknown flags ${flags}`);
      const q = r.vector32("q");
      if ((flags & FLAG_APPEND) === 0) return { t: "partial-req", session, requestId, layer, queryPos, q };
      const position = r.u32("position");
      const k = r.vector32("k", q.length);
      const v = r.vector32("v", q.length);
      return { t: "partial-req", session, requestId, layer, queryPos, q, append: { position, k, v } };
    }
    case KIND["partial-res"]: {
      const requestId = r.u32("requestId");
      const m = r.vector64("m");
      const l = r.vector64("l", m.length);
      const o = r.tensor("o");
      if (o.dtype !== "f64" || o.shape.length !== 2 || o.shape[0] !== m.length || o.data.length === 0) {
        throw new WireError(`o: must be f64 [${m.length}, dh]`);
      }
      return { t: "partial-res", requestId, m, l, o: o.data };
    }
    case KIND["tp-req"]: {
      const session = r.str(1, 1, BRAIN_WIRE.sessionBytesMax, "session");
      const requestId = r.u32("requestId");
      const layer = r.u16("layer");
      const partCode = r.u8("part");
      if (partCode > 1) throw new WireError(`part ${partCode} is neither attn (0) nor ffn (1)`);
      const range = r.range(false, "range");
      const startPos = r.u32("startPos");
      const input = r.matrix("input");
      return { t: "tp-req", session, requestId, layer, part: partCode === 0 ? "attn" : "ffn", input, range, startPos };
    }
    case KIND["tp-res"]: {
      const requestId = r.u32("requestId");
      return { t: "tp-res", requestId, partial: r.matrix("partial") };
    }
    case KIND["stage-req"]: {
      const session = r.str(1, 1, BRAIN_WIRE.sessionBytesMax, "session");
      const requestId = r.u32("requestId");
      const layers = r.range(true, "layers");
      const startPos = r.u32("startPos");
      return { t: "stage-req", session, requestId, layers, hidden: r.matrix("hidden"), startPos };
    }
    case KIND["stage-res"]: {
      const requestId = r.u32("requestId");
      return { t: "stage-res", requestId, hidden: r.matrix("hidden") };
    }
    case KIND.error: {
      const requestId = r.u32("requestId");
      const code = r.str(1, 1, BRAIN_WIRE.codeBytesMax, "code");
      const message = r.str(2, 0, BRAIN_WIRE.messageBytesMax, "message");
      return { t: "error", requestId, code, message };
    }
    case KIND["end-session"]:
      return { t: "end-session", session: r.str(1, 1, BRAIN_WIRE.sessionBytesMax, "session") };
    case KIND["expert-req"]: {
      const requestId = r.u32("requestId");
      const ids = r.vectorI32("ids", BRAIN_WIRE.expertTokensMax);
      const values = r.vector32("values", ids.length);
      return { t: "expert-req", requestId, ids, values };
    }
    case KIND["expert-res"]: {
      const requestId = r.u32("requestId");
      const version = r.u32("version");
      const logits = r.vector32("logits");
      if (logits.length > BRAIN_WIRE.logitsMax) throw new WireError(`logits: ${logits.length} values > ${BRAIN_WIRE.logitsMax}`);
      return { t: "expert-res", requestId, version, logits };
    }
    case KIND["train-req"]: {
      const requestId = r.u32("requestId");
      const round = r.u32("round");
      const epochs = r.u16("epochs");
      const seed = r.u32("seed");
      return { t: "train-req", requestId, round, epochs, seed, params: r.vector32("params") };
    }
    case KIND["train-res"]: {
      const requestId = r.u32("requestId");
      const round = r.u32("round");
      const n = r.u32("n");
      return { t: "train-res", requestId, round, n, params: r.vector32("params") };
    }
    default:
      throw new WireError(`unknown kind ${kind}`);
  }
}

function total<T>(bytes: Uint8Array, options: BrainWireOptions | undefined, read: (r: Reader) => T): { ok: true; value: T } | { ok: false; error: string } {
  const bytesMax = options?.bytesMax ?? BRAIN_WIRE.bytesMax;
  if (bytes.length > bytesMax) return { ok: false, error: `oversize: ${bytes.length} bytes > ${bytesMax}` };
  try {
    const r = new Reader(bytes);
    const value = read(r);
    r.end();
    return { ok: true, value };
  } catch (error) {
    // A WireError is a malformed input; anything else would be a bug here, still not the peer's
    // to crash us with. Tests assert that no "internal" error is ever produced.
    if (error instanceof WireError) return { ok: false, error: error.message };
    return { ok: false, error: `internal: ${String(error).slice(0, 120)}` };
  }
}

/** Decodes a message; never throws. */
export function decodeBrainMessage(bytes: Uint8Array, options?: BrainWireOptions): BrainDecodeResult {
  const r = total(bytes, options, readMessage);
  return r.ok ? { ok: true, msg: r.value } : r;
}

/** Decodes one tensor frame on its own (the whole input); never throws. */
export function decodeTensor(bytes: Uint8Array, options?: BrainWireOptions): TensorDecodeResult {
  const r = total(bytes, options, (reader) => reader.tensor("tensor"));
  return r.ok ? { ok: true, tensor: r.value } : r;
}
