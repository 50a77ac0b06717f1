// The Brain's weights as a file (docs/protocols/brain.md, "Model file"). A node keeps its model in the
// replicated shared folder (MODEL_FILE.path); every node reloads it when it changes, so the decoder
// faces untrusted bytes — from a buggy or hostile peer, or a torn or corrupted replica.
//
//   "PKM1" | u32 headerLength | header: UTF-8 JSON, headerLength bytes | zero padding to a multiple
//   of 4 | params: f32 × paramCount(header.config), little-endian | nothing after
//
// The parameters start on a 4-byte boundary of the file, so a reader could map them in place.
//
// The header (ModelFileHeader) is checked strictly: an unknown key at any level is refused (a format
// change gets a new magic, and a node that cannot read a newer file keeps the model it runs), every
// number is finite and in range, and the JSON must be exactly what the encoder writes — JSON.stringify
// of the fields in the documented order, no whitespace, no duplicate key. So the encoding is
// canonical: a file that decodes re-encodes to the same bytes, and two nodes that accept the same
// bytes agree on what they say. The model config is checked by configError (transformer.ts), the
// parameter count against paramCount(config), and every parameter must be finite.
//
// decodeModelFile never throws and never allocates more than the input's size (plus the header's
// parse, bounded by MODEL_FILE.headerBytesMax). encodeModelFile refuses (AssertionFailure) a header
// or parameters that the decoder would refuse: writing one is a bug in the writer.
//
// Signed files (issue 13). A node runs only a model a core node published: the writer signs the file
// with its Ed25519 identity. A signed file has the magic "PKM2" and the same layout, followed by a
// signature block:
//
//   ... params | u8 signerLength (1..64) | signer: UTF-8 node id | signature: 64 bytes
//
// The signature is over modelSignatureMessage(SHA-256(content), signer), content being every byte
// before the block (magic included). The signer must be the header's `origin`. The decoder only
// splits the block off; modelTrustError judges it against the membership the node knows: the
// signer's public key (from its member entry) must map to the signer id, the signature must verify,
// and the signer's role must be core. Hashing and Ed25519 are the caller's (injected): the core
// does no cryptography of its own.
import { assert } from "../util/assert.ts";
import { LIMITS } from "../util/limits.ts";
import { configError, paramCount, type ModelConfig } from "./transformer.ts";
import { signerRefusal, type MemberTrust, type SignerRefusal } from "./trust.ts";

export const MODEL_FILE = {
  magic: "PKM1",
  /** Where a node keeps the cluster's model. */
  path: "/shared/brain/model.pkm",
  /** bytesMax, headerBytesMax, stringMax, mutationsMax, versionMax (LIMITS.modelFile). */
  ...LIMITS.modelFile,
} as const;

/** "restored": an earlier version's weights published again, when its successor lost held-out accuracy (a model rollback). */
export const MODEL_KINDS = ["init", "trained", "federated", "evolved", "restored"] as const;
export type ModelKind = (typeof MODEL_KINDS)[number];

export interface ModelMetrics {
  heldOutAccuracy?: number;
  baselineAccuracy?: number;
  trainAccuracy?: number;
  loss?: number;
  examples?: number;
  epochs?: number;
  rounds?: number;
  generations?: number;
}

/** One GA mutation (ga.ts): params + sigma·N(0, I) from seed. */
export interface ModelMutation {
  /** u32. */
  seed: number;
  /** Finite, ≥ 0. */
  sigma: number;
}

export interface ModelLineage {
  /** The version this model was derived from. */
  base?: number;
  /** Mutations applied to `base`, in order (at most MODEL_FILE.mutationsMax). */
  mutations?: ModelMutation[];
}

export interface ModelFileHeader {
  config: ModelConfig;
  /** 1..2^32−1, integer. */
  version: number;
  /** weightsTag of the model; 1..64 UTF-16 code units. */
  tag: string;
  /** Wall-clock creation time in ms since the epoch (the writer's clock); a safe integer ≥ 0. */
  createdMs: number;
  /** Node id of the writer; 1..64 UTF-16 code units. */
  origin: string;
  kind: ModelKind;
  metrics?: ModelMetrics;
  lineage?: ModelLineage;
}

/** The signature block of a signed (PKM2) file. */
export interface ModelSignature {
  /** Node id of the signer (the header's origin in a valid file). */
  readonly signer: string;
  /** The 64-byte Ed25519 signature (a copy). */
  readonly signature: Uint8Array;
  /** The signed content: the file before the block (a view into the decoder's input). */
  readonly content: Uint8Array;
}

export type ModelFileDecodeResult =
  | { ok: true; header: ModelFileHeader; params: Float32Array; signature?: ModelSignature }
  | { ok: false; error: string };

export interface ModelFileOptions {
  /** Largest accepted input; default MODEL_FILE.bytesMax. */
  maxBytes?: number;
}

// Key orders: the canonical JSON lists the keys in exactly these orders.
const HEADER_KEYS = ["config", "version", "tag", "createdMs", "origin", "kind", "metrics", "lineage"] as const;
const CONFIG_KEYS = ["vocab", "seqLen", "dModel", "nHeads", "dFF", "nLayers", "nClasses"] as const;
const METRIC_KEYS = [
  "heldOutAccuracy", "baselineAccuracy", "trainAccuracy", "loss", "examples", "epochs", "rounds", "generations",
] as const;
const LINEAGE_KEYS = ["base", "mutations"] as const;
const MUTATION_KEYS = ["seed", "sigma"] as const;

const MAGIC = Uint8Array.of(0x50, 0x4b, 0x4d, 0x31); // "PKM1"
const MAGIC_SIGNED = Uint8Array.of(0x50, 0x4b, 0x4d, 0x32); // "PKM2"
/** Bytes of an Ed25519 signature. */
export const MODEL_SIGNATURE_BYTES = 64;
/** Bytes of a signer id in the signature block, at most (a node id has 16). */
const SIGNER_BYTES_MAX = LIMITS.modelFile.stringMax;
/** Domain of the signed message: a model signature can be taken for nothing else. */
const SIGNATURE_DOMAIN = "p-kernel model file signature v1\u0000";
const PREFIX_BYTES = 8;
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------------------------------------
// Header shape

type Obj = Record<string, unknown>;

function isPlainObject(x: unknown): x is Obj {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** The first own key of `o` not in `known`, as JSON (for an error message), or null. */
function unknownKey(o: Obj, known: readonly string[]): string | null {
  for (const key of Object.keys(o)) if (!known.includes(key)) return JSON.stringify(key.slice(0, 40));
  return null;
}

function has(o: Obj, key: string): boolean {
  return Object.hasOwn(o, key);
}

function isU32(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff;
}

function isVersion(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 1 && x <= MODEL_FILE.versionMax;
}

function shortString(x: unknown): x is string {
  return typeof x === "string" && x.length >= 1 && x.length <= MODEL_FILE.stringMax && x.isWellFormed();
}

function show(x: unknown): string {
  if (typeof x === "string") return JSON.stringify(x.slice(0, 40));
  if (typeof x === "number") return String(x);
  if (x === null) return "null";
  return Array.isArray(x) ? "an array" : typeof x;
}

function metricsError(m: unknown): string | null {
  if (!isPlainObject(m)) return `metrics must be an object, got ${show(m)}`;
  const extra = unknownKey(m, METRIC_KEYS);
  if (extra !== null) return `metrics: unknown key ${extra}`;
  for (const key of METRIC_KEYS) {
    if (has(m, key) && !(typeof m[key] === "number" && Number.isFinite(m[key]))) return `metrics.${key} must be a finite number, got ${show(m[key])}`;
  }
  return null;
}

function lineageError(l: unknown): string | null {
  if (!isPlainObject(l)) return `lineage must be an object, got ${show(l)}`;
  const extra = unknownKey(l, LINEAGE_KEYS);
  if (extra !== null) return `lineage: unknown key ${extra}`;
  if (has(l, "base") && !isVersion(l.base)) return `lineage.base must be a version (integer 1..${MODEL_FILE.versionMax}), got ${show(l.base)}`;
  if (has(l, "mutations")) {
    const ms = l.mutations;
    if (!Array.isArray(ms)) return `lineage.mutations must be an array, got ${show(ms)}`;
    if (ms.length > MODEL_FILE.mutationsMax) return `lineage.mutations: ${ms.length} entries > ${MODEL_FILE.mutationsMax}`;
    for (let i = 0; i < ms.length; i++) {
      const m: unknown = ms[i];
      if (!isPlainObject(m)) return `lineage.mutations[${i}] must be an object, got ${show(m)}`;
      const extraM = unknownKey(m, MUTATION_KEYS);
      if (extraM !== null) return `lineage.mutations[${i}]: unknown key ${extraM}`;
      if (!isU32(m.seed)) return `lineage.mutations[${i}].seed must be a u32, got ${show(m.seed)}`;
      if (!(typeof m.sigma === "number" && Number.isFinite(m.sigma) && m.sigma >= 0)) {
        return `lineage.mutations[${i}].sigma must be finite and >= 0, got ${show(m.sigma)}`;
      }
    }
  }
  return null;
}

/** Why `h` is not a valid model file header, or null when it is. Safe on untrusted input. */
export function modelHeaderError(h: unknown): string | null {
  if (!isPlainObject(h)) return `the header must be an object, got ${show(h)}`;
  const extra = unknownKey(h, HEADER_KEYS);
  if (extra !== null) return `unknown key ${extra}`;
  for (const key of ["config", "version", "tag", "createdMs", "origin", "kind"] as const) {
    if (!has(h, key)) return `missing ${key}`;
  }
  if (isPlainObject(h.config)) {
    const extraC = unknownKey(h.config, CONFIG_KEYS);
    if (extraC !== null) return `config: unknown key ${extraC}`;
  }
  const cfgError = configError(h.config);
  if (cfgError !== null) return cfgError;
  if (!isVersion(h.version)) return `version must be an integer 1..${MODEL_FILE.versionMax}, got ${show(h.version)}`;
  if (!shortString(h.tag)) return `tag must be a well-formed string of 1..${MODEL_FILE.stringMax} characters, got ${show(h.tag)}`;
  const t = h.createdMs;
  if (!(typeof t === "number" && Number.isSafeInteger(t) && t >= 0)) return `createdMs must be a safe integer >= 0, got ${show(t)}`;
  if (!shortString(h.origin)) return `origin must be a well-formed string of 1..${MODEL_FILE.stringMax} characters, got ${show(h.origin)}`;
  if (!(MODEL_KINDS as readonly unknown[]).includes(h.kind)) return `kind must be one of ${MODEL_KINDS.join(", ")}, got ${show(h.kind)}`;
  if (has(h, "metrics")) {
    const e = metricsError(h.metrics);
    if (e !== null) return e;
  }
  if (has(h, "lineage")) {
    const e = lineageError(h.lineage);
    if (e !== null) return e;
  }
  return null;
}

/** A fresh copy of a valid header with its keys in canonical order (what the JSON holds). */
function canonicalHeader(h: ModelFileHeader): ModelFileHeader {
  const pick = <K extends string>(o: Readonly<Partial<Record<K, unknown>>>, keys: readonly K[]): Record<K, unknown> => {
    const out = {} as Record<K, unknown>;
    for (const key of keys) if (Object.hasOwn(o, key)) out[key] = o[key];
    return out;
  };
  const out: ModelFileHeader = {
    config: pick(h.config, CONFIG_KEYS) as unknown as ModelConfig,
    version: h.version,
    tag: h.tag,
    createdMs: h.createdMs,
    origin: h.origin,
    kind: h.kind,
  };
  if (h.metrics !== undefined) out.metrics = pick(h.metrics, METRIC_KEYS) as ModelMetrics;
  if (h.lineage !== undefined) {
    const lineage: ModelLineage = {};
    if (h.lineage.base !== undefined) lineage.base = h.lineage.base;
    if (h.lineage.mutations !== undefined) lineage.mutations = h.lineage.mutations.map((m) => ({ seed: m.seed, sigma: m.sigma }));
    out.lineage = lineage;
  }
  return out;
}

function firstNonFinite(params: Float32Array): number {
  for (let i = 0; i < params.length; i++) if (!Number.isFinite(params[i])) return i;
  return -1;
}

function padding(headerBytes: number): number {
  return (4 - ((PREFIX_BYTES + headerBytes) % 4)) % 4;
}

/** Element-wise byte reversal of 4-byte elements (big-endian hosts only: the file is little-endian). */
function swapped32(raw: Uint8Array): Uint8Array {
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 4) for (let j = 0; j < 4; j++) out[i + j] = raw[i + 3 - j] as number;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** The model file of `header` and `params`; throws AssertionFailure on anything the decoder would refuse. */
export function encodeModelFile(header: ModelFileHeader, params: Float32Array): Uint8Array {
  return encodeBody(header, params, MAGIC, 0);
}

/** What a model file's signer signs: the domain, the SHA-256 of the content (32 bytes), the signer id. */
export function modelSignatureMessage(contentSha256: Uint8Array, signer: string): Uint8Array {
  assert(contentSha256.length === 32, `model-file: a SHA-256 has 32 bytes, got ${contentSha256.length}`);
  const domain = utf8.encode(SIGNATURE_DOMAIN);
  const id = utf8.encode(signer);
  const out = new Uint8Array(domain.length + 32 + id.length);
  out.set(domain, 0);
  out.set(contentSha256, domain.length);
  out.set(id, domain.length + 32);
  return out;
}

/** The writer's side of a signature: its id (the header's origin) and its Ed25519 key. */
export interface ModelSigner {
  readonly id: string;
  sign(message: Uint8Array): Uint8Array;
}

/**
 * A signed (PKM2) model file: the body, then the signature block by `signer`, whose id must be the
 * header's origin. Throws AssertionFailure on anything the decoder would refuse.
 */
export function encodeSignedModelFile(header: ModelFileHeader, params: Float32Array, signer: ModelSigner, sha256: (bytes: Uint8Array) => Uint8Array): Uint8Array {
  assert(signer.id === header.origin, `model-file: signer ${signer.id} is not the header's origin ${header.origin}`);
  const id = utf8.encode(signer.id);
  assert(id.length >= 1 && id.length <= SIGNER_BYTES_MAX, `model-file: signer id of ${id.length} bytes`);
  const block = 1 + id.length + MODEL_SIGNATURE_BYTES;
  const out = encodeBody(header, params, MAGIC_SIGNED, block);
  const contentEnd = out.length - block;
  const signature = signer.sign(modelSignatureMessage(sha256(out.subarray(0, contentEnd)), signer.id));
  assert(signature.length === MODEL_SIGNATURE_BYTES, `model-file: a signature of ${signature.length} bytes`);
  out[contentEnd] = id.length;
  out.set(id, contentEnd + 1);
  out.set(signature, contentEnd + 1 + id.length);
  return out;
}

function encodeBody(header: ModelFileHeader, params: Float32Array, magic: Uint8Array, trailer: number): Uint8Array {
  const err = modelHeaderError(header);
  assert(err === null, `model-file: ${err ?? ""}`);
  const n = paramCount(header.config);
  assert(params.length === n, `model-file: ${params.length} parameters, the model needs ${n}`);
  const bad = firstNonFinite(params);
  assert(bad < 0, `model-file: params[${bad}] is ${params[bad]}`);
  const json = utf8.encode(JSON.stringify(canonicalHeader(header)));
  assert(json.length <= MODEL_FILE.headerBytesMax, `model-file: header of ${json.length} bytes > ${MODEL_FILE.headerBytesMax}`);
  const paramsAt = PREFIX_BYTES + json.length + padding(json.length);
  const total = paramsAt + 4 * n + trailer;
  assert(total <= MODEL_FILE.bytesMax, `model-file: ${total} bytes > ${MODEL_FILE.bytesMax}`);
  const out = new Uint8Array(total);
  out.set(magic, 0);
  new DataView(out.buffer).setUint32(4, json.length, true);
  out.set(json, PREFIX_BYTES);
  const raw = new Uint8Array(params.buffer, params.byteOffset, params.byteLength);
  out.set(HOST_LITTLE_ENDIAN ? raw : swapped32(raw), paramsAt);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

function decode(bytes: Uint8Array, maxBytes: number): ModelFileDecodeResult {
  const fail = (error: string): ModelFileDecodeResult => ({ ok: false, error });
  if (bytes.length > maxBytes) return fail(`oversize: ${bytes.length} bytes > ${maxBytes}`);
  if (bytes.length < PREFIX_BYTES) return fail(`truncated: ${bytes.length} bytes, the magic and header length need ${PREFIX_BYTES}`);
  const signed = bytes[3] === MAGIC_SIGNED[3];
  const magic = signed ? MAGIC_SIGNED : MAGIC;
  for (let i = 0; i < magic.length; i++) if (bytes[i] !== magic[i]) return fail("bad magic: not a PKM1 or PKM2 model file");
  const headerBytes = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
  if (headerBytes > MODEL_FILE.headerBytesMax) return fail(`header: ${headerBytes} bytes > ${MODEL_FILE.headerBytesMax}`);
  if (headerBytes > bytes.length - PREFIX_BYTES) return fail(`truncated: header of ${headerBytes} bytes, ${bytes.length - PREFIX_BYTES} left`);
  const jsonBytes = bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerBytes);
  let text: string;
  try {
    text = utf8Strict.decode(jsonBytes);
  } catch {
    return fail("header: not valid UTF-8");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return fail("header: not JSON");
  }
  const err = modelHeaderError(parsed);
  if (err !== null) return fail(`header: ${err}`);
  const header = canonicalHeader(parsed as ModelFileHeader);
  if (JSON.stringify(header) !== text) return fail("header: not in canonical form (JSON.stringify of the fields in order)");

  const padAt = PREFIX_BYTES + headerBytes;
  const paramsAt = padAt + padding(headerBytes);
  if (paramsAt > bytes.length) return fail(`truncated: padding needs ${paramsAt - padAt} bytes, ${bytes.length - padAt} left`);
  for (let i = padAt; i < paramsAt; i++) if (bytes[i] !== 0) return fail("padding: not zero");
  const n = paramCount(header.config);
  const paramsEnd = paramsAt + 4 * n;
  const paramBytes = bytes.length - paramsAt;
  if (signed ? paramBytes < 4 * n : paramBytes !== 4 * n) return fail(`params: ${paramBytes} bytes, the model needs ${n} × 4 = ${4 * n}`);
  let signature: ModelSignature | undefined;
  if (signed) {
    const block = signatureBlock(bytes, paramsEnd);
    if (typeof block === "string") return fail(`signature: ${block}`);
    signature = block;
  }
  // slice copies into a fresh, aligned buffer whose size the input already bounds.
  const raw = HOST_LITTLE_ENDIAN ? bytes.slice(paramsAt, paramsEnd) : swapped32(bytes.subarray(paramsAt, paramsEnd));
  const params = new Float32Array(raw.buffer, 0, n);
  const bad = firstNonFinite(params);
  if (bad >= 0) return fail(`params[${bad}] is ${params[bad]}: every parameter must be finite`);
  return signature === undefined ? { ok: true, header, params } : { ok: true, header, params, signature };
}

/** The signature block at `at` (it must end the file), or why not. */
function signatureBlock(bytes: Uint8Array, at: number): ModelSignature | string {
  if (at >= bytes.length) return "missing (a PKM2 file ends with its signature block)";
  const idBytes = bytes[at] as number;
  if (idBytes < 1 || idBytes > SIGNER_BYTES_MAX) return `a signer id of ${idBytes} bytes (1..${SIGNER_BYTES_MAX})`;
  const end = at + 1 + idBytes + MODEL_SIGNATURE_BYTES;
  if (end > bytes.length) return `truncated: the block needs ${end - at} bytes, ${bytes.length - at} left`;
  if (end < bytes.length) return `${bytes.length - end} bytes after the block`;
  let signer: string;
  try {
    signer = utf8Strict.decode(bytes.subarray(at + 1, at + 1 + idBytes));
  } catch {
    return "the signer id is not valid UTF-8";
  }
  return { signer, signature: bytes.slice(at + 1 + idBytes, end), content: bytes.subarray(0, at) };
}

/** What a node knows to judge a model file's signature: hashing, and its members (trust.ts). */
export interface ModelTrust extends MemberTrust {
  sha256(bytes: Uint8Array): Uint8Array;
}

export type ModelTrustRefusal = "unsigned" | "origin" | SignerRefusal;

/**
 * Whether a decoded model file may be run: signed (PKM2) by its origin, a member whose entry's
 * public key maps to that id, with a signature that verifies, and whose role is core. Null when it
 * may; else the refusal and a message. Never throws on a file from a peer.
 */
export function modelTrustError(
  file: { readonly header: ModelFileHeader; readonly signature?: ModelSignature }, trust: ModelTrust,
): { reason: ModelTrustRefusal; error: string } | null {
  const sig = file.signature;
  if (sig === undefined) return { reason: "unsigned", error: "unsigned: only a model signed by a core node is run" };
  if (sig.signer !== file.header.origin) {
    return { reason: "origin", error: `signed by ${JSON.stringify(sig.signer.slice(0, 40))}, not by its origin ${JSON.stringify(file.header.origin.slice(0, 40))}` };
  }
  return signerRefusal(trust, sig.signer, modelSignatureMessage(trust.sha256(sig.content), sig.signer), sig.signature);
}

/** Decodes a model file (PKM1, or PKM2 with its signature block split off); never throws. */
export function decodeModelFile(bytes: Uint8Array, options?: ModelFileOptions): ModelFileDecodeResult {
  try {
    return decode(bytes, options?.maxBytes ?? MODEL_FILE.bytesMax);
  } catch (error) {
    // Nothing above throws on any input; this keeps a bug here from crashing the node. Tests assert
    // that no "internal" error is ever produced.
    return { ok: false, error: `internal: ${String(error).slice(0, 120)}` };
  }
}
