// The code bundle (docs/protocols/bundle.md, ADR 020): a node's own code packed into one byte
// stream, cut into fixed chunks, each chunk's SHA-256 a leaf of a Merkle tree whose root is the
// bundle's content address; and TUF-style signed metadata (a `root` role and a `targets` role,
// keys and thresholds, versions that only go up, expiry) rooted in the cluster's owner key.
// Sans-IO: SHA-256 and Ed25519 come through BundleCrypto; time is the caller's `nowMs`.
//
//   stream   = "PKB1" ‖ u32 BE table bytes ‖ table ‖ the files' bytes, in table order
//   table    = MessagePack [[path, mode, size], ...], paths sorted, unique, relative, no "..", no
//              "." segments, no backslash, not under .pk-bundle/; mode 0o644 or 0o755
//   chunk i  = stream[i·chunkBytes, min((i+1)·chunkBytes, length)); its hash SHA-256(chunk)
//   tree     = RFC 6962's shape over the chunk hashes, interior node SHA-256(0x01 ‖ left ‖ right)
//   address  = SHA-256(0x02 ‖ u64 BE length ‖ u32 BE chunkBytes ‖ u32 BE chunks ‖ tree root)
//
//   envelope = MessagePack [signed: bin, [[pub (32), sig (64)], ...]]; each signature is over `signed`
//   root     = signed MessagePack ["p-kernel/bundle-root/v1", version, expiresMs,
//                                  rootKeys[], rootThreshold, targetsKeys[], targetsThreshold]
//   targets  = signed MessagePack ["p-kernel/bundle-targets/v1", version, expiresMs,
//                                  address (32), length, chunks, chunkBytes, node, name]
//
// The owner key is the root of trust: a root document counts only if the owner key signed it (and
// the threshold of its own root keys is met). The root names the keys that may sign targets (the
// release keys; by default the owner key itself) and how many must. Every decoder here takes bytes
// from peers: bounded, total (a refusal value, never an exception).
import { Decoder, Encoder } from "@msgpack/msgpack";
import { bytesEqual, toHex } from "../util/bytes.ts";

/** The bundle's bounds and tunables (hard bounds of the format; a node may lower them). */
export interface BundleConfig {
  /** Bytes per chunk: 64 KiB (ADR 020: small enough that a bad peer wastes little, large enough that per-message cost is noise). */
  readonly chunkBytes: number;
  /** Largest bundle stream accepted (the JavaScript of a node is ~2.5 MB; room to grow). */
  readonly bundleBytesMax: number;
  /** Chunks in a bundle at most: bundleBytesMax / chunkBytes. */
  readonly chunksMax: number;
  /** Files in a bundle. */
  readonly filesMax: number;
  /** UTF-8 bytes of a file's path. */
  readonly pathBytesMax: number;
  /** Bytes of one signed metadata envelope (root or targets). */
  readonly metadataBytesMax: number;
  /** Keys per role, and signatures per envelope. */
  readonly keysMax: number;
  /** Characters of the Node version range and of the release's name. */
  readonly textCharsMax: number;
}

export const BUNDLE_DEFAULTS: BundleConfig = {
  chunkBytes: 64 * 1024,
  bundleBytesMax: 64 * 1024 * 1024,
  chunksMax: 1024,
  filesMax: 20_000,
  pathBytesMax: 512,
  metadataBytesMax: 8 * 1024,
  keysMax: 16,
  textCharsMax: 64,
};

export const BUNDLE_MAGIC = "PKB1";
/** A folder name no bundle may hold: where the installer keeps the bundle's own stream and metadata. */
export const BUNDLE_META_DIR = ".pk-bundle";
const ROOT_TYPE = "p-kernel/bundle-root/v1";
const TARGETS_TYPE = "p-kernel/bundle-targets/v1";
const HASH_BYTES = 32;
const KEY_BYTES = 32;
const SIG_BYTES = 64;
const encoder = new TextEncoder();
/** No maps and no extension types in any bundle document: a forged header cannot make the decoder build one. */
const NO_MAPS = 0;
const NO_EXTENSIONS = 0;
// Plain MessagePack as in the wire codec (no extension types), every length bounded by the largest
// bundle; this file does not import the codec, which imports the message schemas, which import this.
const packer = new Encoder({ ignoreUndefined: true });
const unpacker = new Decoder({
  maxStrLength: BUNDLE_DEFAULTS.bundleBytesMax, maxBinLength: BUNDLE_DEFAULTS.bundleBytesMax, maxArrayLength: BUNDLE_DEFAULTS.filesMax,
  maxMapLength: NO_MAPS, maxExtLength: NO_EXTENSIONS,
});

function packValue(value: unknown): Uint8Array {
  return packer.encode(value);
}

/** Undefined when the bytes are not one MessagePack value. */
function unpackValue(bytes: Uint8Array): unknown {
  try {
    return unpacker.decode(bytes);
  } catch {
    return undefined;
  }
}

/** SHA-256 and Ed25519, from the node (node:crypto) or a test. */
export interface BundleCrypto {
  sha256(data: Uint8Array): Uint8Array;
  verify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
}

/** A key that signs metadata (the owner key, a release key). */
export interface BundleSigner {
  readonly publicKey: Uint8Array;
  sign(data: Uint8Array): Uint8Array;
}

export interface BundleFile {
  /** Relative, "/"-separated. */
  readonly path: string;
  /** 0o644 or 0o755. */
  readonly mode: number;
  readonly data: Uint8Array;
}

export interface FileEntry {
  readonly path: string;
  readonly mode: number;
  readonly size: number;
}

/** Why a bundle, its metadata or a chunk is refused. */
export type BundleRefusal =
  | "malformed" // bytes that do not decode, or fields out of bounds
  | "unsigned" // no signature at all
  | "key" // signed, but not by a key the trusted root names for the role (a contributor's, a stranger's)
  | "threshold" // fewer valid signatures from the role's keys than its threshold
  | "signature" // a signature by a named key that does not verify: the document was changed
  | "older" // a version lower than what this node runs or already accepted (rollback)
  | "expired" // past its expiry (freeze)
  | "modified"; // a chunk, the chunk-hash list or the stream that does not match the signed address

export type Verdict<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: BundleRefusal; readonly detail: string };

function refuse<T>(reason: BundleRefusal, detail: string): Verdict<T> {
  return { ok: false, reason, detail };
}

// ---------------------------------------------------------------------------------------------
// The stream

/** Why a path may not be in a bundle; undefined when it may. */
export function badPath(path: string, config: BundleConfig = BUNDLE_DEFAULTS): string | undefined {
  if (path.length === 0) return "empty path";
  if (encoder.encode(path).length > config.pathBytesMax) return `path over ${config.pathBytesMax} bytes`;
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) return "absolute path";
  if (path.includes("\\") || path.includes("\0")) return "backslash or NUL in path";
  const parts = path.split("/");
  if (parts.some((p) => p === "" || p === "." || p === "..")) return "empty, . or .. segment";
  if (parts[0] === BUNDLE_META_DIR) return `${BUNDLE_META_DIR}/ is the installer's`;
  return undefined;
}

function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Packs files into a stream: sorted by path, so the same files always give the same bytes. */
export function packBundle(files: readonly BundleFile[], config: BundleConfig = BUNDLE_DEFAULTS): Verdict<Uint8Array> {
  if (files.length > config.filesMax) return refuse("malformed", `${files.length} files, over ${config.filesMax}`);
  const sorted = [...files].sort((a, b) => comparePaths(a.path, b.path));
  for (let i = 0; i < sorted.length; i++) {
    const f = sorted[i] as BundleFile;
    const bad = badPath(f.path, config);
    if (bad !== undefined) return refuse("malformed", `${f.path}: ${bad}`);
    if (f.mode !== 0o644 && f.mode !== 0o755) return refuse("malformed", `${f.path}: mode ${f.mode.toString(8)}`);
    if (i > 0 && sorted[i - 1]?.path === f.path) return refuse("malformed", `${f.path} twice`);
  }
  const table = packValue(sorted.map((f) => [f.path, f.mode, f.data.length]));
  const length = 8 + table.length + sorted.reduce((n, f) => n + f.data.length, 0);
  if (length > config.bundleBytesMax) return refuse("malformed", `${length} bytes, over ${config.bundleBytesMax}`);
  const out = new Uint8Array(length);
  out.set(encoder.encode(BUNDLE_MAGIC), 0);
  new DataView(out.buffer).setUint32(4, table.length);
  out.set(table, 8);
  let at = 8 + table.length;
  for (const f of sorted) {
    out.set(f.data, at);
    at += f.data.length;
  }
  return { ok: true, value: out };
}

/** The file table of a stream, checked (paths, modes, sizes adding up to the stream's length). */
export function readTable(stream: Uint8Array, config: BundleConfig = BUNDLE_DEFAULTS): Verdict<{ files: FileEntry[]; dataStart: number }> {
  if (stream.length < 8 || stream.length > config.bundleBytesMax) return refuse("malformed", `a stream of ${stream.length} bytes`);
  if (!bytesEqual(stream.subarray(0, 4), encoder.encode(BUNDLE_MAGIC))) return refuse("malformed", "not a bundle stream (magic)");
  const tableBytes = new DataView(stream.buffer, stream.byteOffset, stream.byteLength).getUint32(4);
  if (tableBytes > stream.length - 8) return refuse("malformed", "the file table runs past the stream");
  const table = unpackValue(stream.subarray(8, 8 + tableBytes));
  if (!Array.isArray(table) || table.length > config.filesMax) return refuse("malformed", "the file table is not a list within bounds");
  const files: FileEntry[] = [];
  let total = 0;
  for (const row of table as unknown[]) {
    if (!Array.isArray(row) || row.length !== 3) return refuse("malformed", "a file row is not [path, mode, size]");
    const [path, mode, size] = row as unknown[];
    if (typeof path !== "string") return refuse("malformed", "a path is not a string");
    const bad = badPath(path, config);
    if (bad !== undefined) return refuse("malformed", `${JSON.stringify(path.slice(0, 80))}: ${bad}`);
    if (mode !== 0o644 && mode !== 0o755) return refuse("malformed", `${path}: mode`);
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0 || size > stream.length) return refuse("malformed", `${path}: size`);
    const previous = files[files.length - 1];
    if (previous !== undefined && comparePaths(previous.path, path) >= 0) return refuse("malformed", `${path}: paths not sorted and unique`);
    total += size;
    files.push({ path, mode, size });
  }
  // A file and a folder of the same name ("a" and "a/b") cannot both be installed.
  const names = new Set(files.map((f) => f.path));
  for (const f of files) {
    const parts = f.path.split("/");
    for (let i = 1; i < parts.length; i++) if (names.has(parts.slice(0, i).join("/"))) return refuse("malformed", `${f.path}: under a file`);
  }
  if (8 + tableBytes + total !== stream.length) return refuse("malformed", "the files' sizes do not add up to the stream's length");
  return { ok: true, value: { files, dataStart: 8 + tableBytes } };
}

/** The files of a stream, as views into it. */
export function unpackBundle(stream: Uint8Array, config: BundleConfig = BUNDLE_DEFAULTS): Verdict<BundleFile[]> {
  const table = readTable(stream, config);
  if (!table.ok) return table;
  let at = table.value.dataStart;
  const out: BundleFile[] = [];
  for (const f of table.value.files) {
    out.push({ path: f.path, mode: f.mode, data: stream.subarray(at, at + f.size) });
    at += f.size;
  }
  return { ok: true, value: out };
}

// ---------------------------------------------------------------------------------------------
// Chunks and the Merkle tree

export function chunkCount(length: number, chunkBytes: number): number {
  return Math.ceil(length / chunkBytes);
}

/** The hashes of every chunk, concatenated (32 bytes each). */
export function chunkHashes(stream: Uint8Array, chunkBytes: number, crypto: Pick<BundleCrypto, "sha256">): Uint8Array {
  const n = chunkCount(stream.length, chunkBytes);
  const out = new Uint8Array(n * HASH_BYTES);
  for (let i = 0; i < n; i++) out.set(crypto.sha256(stream.subarray(i * chunkBytes, (i + 1) * chunkBytes)), i * HASH_BYTES);
  return out;
}

/** RFC 6962's tree hash over the leaves (32 bytes each), with a 0x01 prefix on interior nodes. */
export function merkleRoot(leaves: Uint8Array, crypto: Pick<BundleCrypto, "sha256">): Uint8Array {
  const n = leaves.length / HASH_BYTES;
  if (n === 0) return crypto.sha256(new Uint8Array(0));
  const node = (from: number, to: number): Uint8Array => {
    if (to - from === 1) return leaves.subarray(from * HASH_BYTES, to * HASH_BYTES);
    let k = 1;
    while (k * 2 < to - from) k *= 2;
    const joined = new Uint8Array(1 + 2 * HASH_BYTES);
    joined[0] = 1;
    joined.set(node(from, from + k), 1);
    joined.set(node(from + k, to), 1 + HASH_BYTES);
    return crypto.sha256(joined);
  };
  return node(0, n);
}

/** The content address: the tree root bound to the stream's length, chunk size and count. */
export function bundleAddress(length: number, chunkBytes: number, hashes: Uint8Array, crypto: Pick<BundleCrypto, "sha256">): Uint8Array {
  const head = new Uint8Array(1 + 8 + 4 + 4 + HASH_BYTES);
  const view = new DataView(head.buffer);
  head[0] = 2;
  view.setUint32(1, Math.floor(length / 2 ** 32));
  view.setUint32(5, length >>> 0);
  view.setUint32(9, chunkBytes);
  view.setUint32(13, hashes.length / HASH_BYTES);
  head.set(merkleRoot(hashes, crypto), 17);
  return crypto.sha256(head);
}

/** A stream's chunk hashes and address. */
export function describeStream(stream: Uint8Array, chunkBytes: number, crypto: Pick<BundleCrypto, "sha256">): { hashes: Uint8Array; address: Uint8Array; chunks: number } {
  const hashes = chunkHashes(stream, chunkBytes, crypto);
  return { hashes, address: bundleAddress(stream.length, chunkBytes, hashes, crypto), chunks: hashes.length / HASH_BYTES };
}

/**
 * Checks a chunk-hash list (from any peer) against the signed targets: the right count, and the
 * address it gives is the signed one. Once it passes, each chunk is checked against its entry.
 */
export function checkHashList(list: Uint8Array, targets: Targets, crypto: Pick<BundleCrypto, "sha256">): Verdict<Uint8Array> {
  if (list.length !== targets.chunks * HASH_BYTES) return refuse("modified", `a hash list of ${list.length} bytes for ${targets.chunks} chunks`);
  if (!bytesEqual(bundleAddress(targets.length, targets.chunkBytes, list, crypto), targets.address)) return refuse("modified", "the hash list does not give the signed address");
  return { ok: true, value: list.slice() };
}

/** The length chunk `index` of a bundle has. */
export function chunkLength(targets: Targets, index: number): number {
  return Math.min(targets.chunkBytes, targets.length - index * targets.chunkBytes);
}

/** Checks one chunk against the verified hash list. */
export function checkChunk(data: Uint8Array, index: number, targets: Targets, hashes: Uint8Array, crypto: Pick<BundleCrypto, "sha256">): Verdict<true> {
  if (!Number.isSafeInteger(index) || index < 0 || index >= targets.chunks) return refuse("malformed", `chunk ${index} of ${targets.chunks}`);
  if (data.length !== chunkLength(targets, index)) return refuse("modified", `chunk ${index} is ${data.length} bytes, not ${chunkLength(targets, index)}`);
  if (!bytesEqual(crypto.sha256(data), hashes.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES))) return refuse("modified", `chunk ${index} does not match its signed hash`);
  return { ok: true, value: true };
}

/** Checks a whole stream against the signed targets (a bundle file, a bundle on disk). */
export function checkStream(stream: Uint8Array, targets: Targets, crypto: Pick<BundleCrypto, "sha256">): Verdict<Uint8Array> {
  if (stream.length !== targets.length) return refuse("modified", `the stream is ${stream.length} bytes, the metadata says ${targets.length}`);
  const { address, hashes } = describeStream(stream, targets.chunkBytes, crypto);
  if (!bytesEqual(address, targets.address)) return refuse("modified", "the stream does not give the signed address");
  return { ok: true, value: hashes };
}

// ---------------------------------------------------------------------------------------------
// Metadata

export interface RootRole {
  readonly version: number;
  readonly expiresMs: number;
  readonly rootKeys: readonly Uint8Array[];
  readonly rootThreshold: number;
  readonly targetsKeys: readonly Uint8Array[];
  readonly targetsThreshold: number;
}

export interface Targets {
  /** The bundle's version: it only goes up. */
  readonly version: number;
  readonly expiresMs: number;
  /** The content address (bundleAddress). */
  readonly address: Uint8Array;
  readonly length: number;
  readonly chunks: number;
  readonly chunkBytes: number;
  /** The Node version range the code needs (package.json's engines.node). */
  readonly node: string;
  /** A name for people (e.g. "p-kernel 0.1.0"). */
  readonly name: string;
}

/** A release as it travels: the two signed envelopes. */
export interface Release {
  readonly root: Uint8Array;
  readonly targets: Uint8Array;
}

/** A release that verified: its documents and its address in hex. */
export interface VerifiedRelease {
  readonly release: Release;
  readonly root: RootRole;
  readonly targets: Targets;
  readonly id: string;
}

interface Envelope {
  readonly signed: Uint8Array;
  readonly signatures: ReadonlyArray<readonly [Uint8Array, Uint8Array]>;
}

function isUint(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isBytes(value: unknown, length: number): value is Uint8Array {
  return value instanceof Uint8Array && value.length === length;
}

function isText(value: unknown, config: BundleConfig): value is string {
  return typeof value === "string" && value.length <= config.textCharsMax;
}

function decodeEnvelope(bytes: Uint8Array, config: BundleConfig): Verdict<Envelope> {
  if (bytes.length > config.metadataBytesMax) return refuse("malformed", `metadata of ${bytes.length} bytes, over ${config.metadataBytesMax}`);
  const value = unpackValue(bytes);
  if (!Array.isArray(value) || value.length !== 2) return refuse("malformed", "metadata is not [signed, signatures]");
  const [signed, sigs] = value as unknown[];
  if (!(signed instanceof Uint8Array)) return refuse("malformed", "the signed part is not bytes");
  if (!Array.isArray(sigs) || sigs.length > config.keysMax) return refuse("malformed", "signatures are not a list within bounds");
  const signatures: Array<readonly [Uint8Array, Uint8Array]> = [];
  for (const s of sigs as unknown[]) {
    if (!Array.isArray(s) || s.length !== 2 || !isBytes(s[0], KEY_BYTES) || !isBytes(s[1], SIG_BYTES)) return refuse("malformed", "a signature is not [key (32), signature (64)]");
    signatures.push([s[0], s[1]]);
  }
  return { ok: true, value: { signed, signatures } };
}

function decodeKeys(value: unknown, config: BundleConfig): Uint8Array[] | undefined {
  if (!Array.isArray(value) || value.length === 0 || value.length > config.keysMax) return undefined;
  const keys = value as unknown[];
  if (!keys.every((k) => isBytes(k, KEY_BYTES))) return undefined;
  const hex = new Set(keys.map((k) => toHex(k as Uint8Array)));
  return hex.size === keys.length ? (keys as Uint8Array[]) : undefined;
}

/** The root document's fields (no signature check). */
export function decodeRoot(signed: Uint8Array, config: BundleConfig = BUNDLE_DEFAULTS): Verdict<RootRole> {
  const value = unpackValue(signed);
  if (!Array.isArray(value) || value.length !== 7 || value[0] !== ROOT_TYPE) return refuse("malformed", "not a root document");
  const [, version, expiresMs, rk, rt, tk, tt] = value as unknown[];
  const rootKeys = decodeKeys(rk, config);
  const targetsKeys = decodeKeys(tk, config);
  if (!isUint(version) || !isUint(expiresMs) || rootKeys === undefined || targetsKeys === undefined) return refuse("malformed", "root: version, expiry or keys out of bounds");
  if (!isUint(rt) || rt < 1 || rt > rootKeys.length || !isUint(tt) || tt < 1 || tt > targetsKeys.length) return refuse("malformed", "root: a threshold out of range");
  return { ok: true, value: { version, expiresMs, rootKeys, rootThreshold: rt, targetsKeys, targetsThreshold: tt } };
}

/** The targets document's fields (no signature check). */
export function decodeTargets(signed: Uint8Array, config: BundleConfig = BUNDLE_DEFAULTS): Verdict<Targets> {
  const value = unpackValue(signed);
  if (!Array.isArray(value) || value.length !== 9 || value[0] !== TARGETS_TYPE) return refuse("malformed", "not a targets document");
  const [, version, expiresMs, address, length, chunks, chunkBytes, node, name] = value as unknown[];
  if (!isUint(version) || !isUint(expiresMs) || !isBytes(address, HASH_BYTES) || !isUint(length) || !isUint(chunks) || !isUint(chunkBytes)) {
    return refuse("malformed", "targets: a field out of bounds");
  }
  if (!isText(node, config) || !isText(name, config)) return refuse("malformed", "targets: node or name too long");
  if (chunkBytes < 1 || chunkBytes > config.chunkBytes || length > config.bundleBytesMax || chunks > config.chunksMax || chunks !== chunkCount(length, chunkBytes)) {
    return refuse("malformed", "targets: length, chunk size and chunk count disagree or exceed the bounds");
  }
  return { ok: true, value: { version, expiresMs, address: address.slice(), length, chunks, chunkBytes, node, name } };
}

/** Signs a document with every signer (each a key the role names). */
export function signEnvelope(signed: Uint8Array, signers: readonly BundleSigner[]): Uint8Array {
  return packValue([signed, signers.map((s) => [s.publicKey, s.sign(signed)])]);
}

export function rootDocument(root: RootRole): Uint8Array {
  return packValue([ROOT_TYPE, root.version, root.expiresMs, root.rootKeys, root.rootThreshold, root.targetsKeys, root.targetsThreshold]);
}

export function targetsDocument(targets: Targets): Uint8Array {
  return packValue([TARGETS_TYPE, targets.version, targets.expiresMs, targets.address, targets.length, targets.chunks, targets.chunkBytes, targets.node, targets.name]);
}

/**
 * Counts the valid signatures of `keys` on an envelope and judges them against `threshold`:
 * none at all is `unsigned`; a signature by a named key that fails is `signature` (the document
 * was changed); too few while some came from keys the role does not name is `key`; else `threshold`.
 */
function checkSignatures(env: Envelope, keys: readonly Uint8Array[], threshold: number, crypto: BundleCrypto, what: string, must?: Uint8Array): Verdict<true> {
  if (env.signatures.length === 0) return refuse("unsigned", `${what}: no signature`);
  const named = new Set(keys.map(toHex));
  const good = new Set<string>();
  let strangers = 0;
  for (const [pub, sig] of env.signatures) {
    const hex = toHex(pub);
    if (!named.has(hex)) {
      strangers++;
      continue;
    }
    if (!crypto.verify(pub, env.signed, sig)) return refuse("signature", `${what}: a signature by ${hex.slice(0, 16)} does not verify`);
    good.add(hex);
  }
  if (must !== undefined && !good.has(toHex(must))) return refuse("key", `${what}: not signed by the owner key`);
  if (good.size < threshold) {
    return refuse(strangers > 0 ? "key" : "threshold", `${what}: ${good.size} valid signatures of ${threshold} needed${strangers > 0 ? `, ${strangers} by keys it does not trust` : ""}`);
  }
  return { ok: true, value: true };
}

export interface TrustPoint {
  /** The cluster's owner key (DATA/owner.pub): the root of trust. */
  readonly owner: Uint8Array;
  readonly nowMs: number;
  /** The bundle version this node runs (0: a development checkout); lower ones are a rollback. */
  readonly runningVersion: number;
  /** The highest root version this node accepted; a lower root is a rollback. */
  readonly rootVersion?: number;
}

/** Verifies a release from anyone: the root by the owner key, the targets by the root's release keys, versions and expiry. */
export function verifyRelease(release: Release, trust: TrustPoint, crypto: BundleCrypto, config: BundleConfig = BUNDLE_DEFAULTS): Verdict<VerifiedRelease> {
  const rootEnv = decodeEnvelope(release.root, config);
  if (!rootEnv.ok) return rootEnv;
  const root = decodeRoot(rootEnv.value.signed, config);
  if (!root.ok) return root;
  const rootSigned = checkSignatures(rootEnv.value, root.value.rootKeys, root.value.rootThreshold, crypto, "root", trust.owner);
  if (!rootSigned.ok) return rootSigned;
  if (root.value.expiresMs <= trust.nowMs) return refuse("expired", `root v${root.value.version} expired`);
  if (root.value.version < (trust.rootVersion ?? 0)) return refuse("older", `root v${root.value.version} is older than the accepted v${trust.rootVersion ?? 0}`);
  const targetsEnv = decodeEnvelope(release.targets, config);
  if (!targetsEnv.ok) return targetsEnv;
  const targets = decodeTargets(targetsEnv.value.signed, config);
  if (!targets.ok) return targets;
  const targetsSigned = checkSignatures(targetsEnv.value, root.value.targetsKeys, root.value.targetsThreshold, crypto, "targets");
  if (!targetsSigned.ok) return targetsSigned;
  if (targets.value.expiresMs <= trust.nowMs) return refuse("expired", `targets v${targets.value.version} expired`);
  if (targets.value.version < trust.runningVersion) return refuse("older", `bundle v${targets.value.version} is older than the running v${trust.runningVersion}`);
  return { ok: true, value: { release: { root: release.root.slice(), targets: release.targets.slice() }, root: root.value, targets: targets.value, id: toHex(targets.value.address) } };
}

// ---------------------------------------------------------------------------------------------
// A bundle file: what `pk bundle` writes.
//
//   file = "PKBF" ‖ u32 BE root bytes ‖ root envelope ‖ u32 BE targets bytes ‖ targets envelope ‖ stream

const FILE_MAGIC = "PKBF";

export function encodeBundleFile(release: Release, stream: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 + release.root.length + 4 + release.targets.length + stream.length);
  const view = new DataView(out.buffer);
  out.set(encoder.encode(FILE_MAGIC), 0);
  let at = 4;
  view.setUint32(at, release.root.length);
  out.set(release.root, at + 4);
  at += 4 + release.root.length;
  view.setUint32(at, release.targets.length);
  out.set(release.targets, at + 4);
  at += 4 + release.targets.length;
  out.set(stream, at);
  return out;
}

export function decodeBundleFile(bytes: Uint8Array, config: BundleConfig = BUNDLE_DEFAULTS): Verdict<{ release: Release; stream: Uint8Array }> {
  if (bytes.length < 12 || !bytesEqual(bytes.subarray(0, 4), encoder.encode(FILE_MAGIC))) return refuse("malformed", "not a bundle file (magic)");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const rootBytes = view.getUint32(4);
  if (rootBytes > config.metadataBytesMax || 8 + rootBytes + 4 > bytes.length) return refuse("malformed", "the root metadata runs past the file");
  const targetsBytes = view.getUint32(8 + rootBytes);
  const start = 12 + rootBytes + targetsBytes;
  if (targetsBytes > config.metadataBytesMax || start > bytes.length) return refuse("malformed", "the targets metadata runs past the file");
  if (bytes.length - start > config.bundleBytesMax) return refuse("malformed", "the stream is over the bound");
  return {
    ok: true,
    value: { release: { root: bytes.subarray(8, 8 + rootBytes), targets: bytes.subarray(12 + rootBytes, start) }, stream: bytes.subarray(start) },
  };
}

export interface MakeRelease {
  readonly stream: Uint8Array;
  readonly version: number;
  readonly nowMs: number;
  /** How long the targets stay valid (freeze protection). */
  readonly targetsTtlMs: number;
  readonly rootTtlMs: number;
  readonly rootVersion: number;
  readonly node: string;
  readonly name: string;
  /** The owner key: signs the root. */
  readonly owner: BundleSigner;
  /** The release keys the root names for targets, and that sign them; default the owner key alone. */
  readonly release?: readonly BundleSigner[];
  readonly chunkBytes?: number;
}

/** Signs a stream as a release: the root (owner) delegating targets to the release keys. */
export function makeRelease(input: MakeRelease, crypto: Pick<BundleCrypto, "sha256">): { release: Release; targets: Targets; hashes: Uint8Array } {
  const chunkBytes = input.chunkBytes ?? BUNDLE_DEFAULTS.chunkBytes;
  const signers = input.release ?? [input.owner];
  const root: RootRole = {
    version: input.rootVersion, expiresMs: input.nowMs + input.rootTtlMs, rootKeys: [input.owner.publicKey], rootThreshold: 1,
    targetsKeys: signers.map((s) => s.publicKey), targetsThreshold: signers.length,
  };
  const { address, hashes, chunks } = describeStream(input.stream, chunkBytes, crypto);
  const targets: Targets = {
    version: input.version, expiresMs: input.nowMs + input.targetsTtlMs, address, length: input.stream.length, chunks, chunkBytes, node: input.node, name: input.name,
  };
  return { release: { root: signEnvelope(rootDocument(root), [input.owner]), targets: signEnvelope(targetsDocument(targets), signers) }, targets, hashes };
}
