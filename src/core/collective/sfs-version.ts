// Versions of shared paths (docs/protocols/sfs.md, "Manifest"): the entry, its version vector, the
// total order the manifest keeps the largest of, the entry's compact wire tuple with the checks a
// peer's entry must pass beyond its schema, and the canonical bytes its origin signs. Pure
// functions; the replication is in sfs.ts.
//
// Signatures (docs/protocols/sfs.md, "Signatures"). A version is written by its origin, the node
// whose counter it advanced, and carries the origin's Ed25519 key and signature over
// sfsVersionBody. Two kinds of versions are derived by other nodes from one the origin signed, with
// its stamp: a conflict copy (the loser of a concurrent pair kept at conflictPath) and a shadow
// tombstone (a file with live entries below it). They carry the origin's signature of the version
// they derive from and, in `signedAs`, what of it differs (its path; a shadow's file content), so
// anyone can check both the signature and that the derivation is one the rules make.
import { assert } from "../util/assert.ts";
import { bytesEqual, fromHex, toHex } from "../util/bytes.ts";
import { conflictPath, isCanonicalPath } from "./sfs-path.ts";
import { FLAG_DELETED, FLAG_DIR, FLAG_HAVE, SFS_WIRE, type SfsEntryWire, type SfsSignedAsWire, type SfsStoredEntryWire } from "./sfs-wire.ts";

export type VvItem = readonly [origin: string, counter: number];

/** One version of one path (immutable). Hashes are lowercase hex. */
export interface SfsEntry {
  readonly path: string;
  readonly counter: number;
  readonly origin: string;
  readonly deleted: boolean;
  readonly dir: boolean;
  readonly size: number;
  /** Wall-clock ms of the write on its origin (display, and the age of a tombstone). */
  readonly mtimeMs: number;
  /** SHA-256 of the whole file; "" for directories and tombstones. */
  readonly sha256: string;
  readonly chunkBytes: number;
  readonly chunks: readonly string[];
  /** Version vector, sorted by origin; vv[origin] = counter, every other counter is smaller. */
  readonly vv: readonly VvItem[];
  /** The origin's Ed25519 public key (32 bytes): the origin's id is its SHA-256 prefix. */
  readonly pub: Uint8Array;
  /**
   * The origin's signature (64 bytes) over sfsVersionBody(signedVersion(entry)). Empty only in a
   * version of the previous format read from the store as a base (local state, never sent).
   */
  readonly sig: Uint8Array;
  /** Set on a version derived from the one its origin signed (a conflict copy, a shadow tombstone): what of that one differs. */
  readonly signedAs: SfsSignedAs | undefined;
}

/** The fields of a version its origin signs: all but the key, the signature and `signedAs`. */
export type SfsVersionFields = Omit<SfsEntry, "pub" | "sig" | "signedAs">;

/**
 * What the origin signed of a derived version, where it differs: the live file it derives from, at
 * `path` (a conflict copy's original path; a shadow tombstone's own path, or a conflict copy's
 * original path when the shadowed file was a conflict copy), with its size and hashes.
 */
export interface SfsSignedAs {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
  readonly chunks: readonly string[];
}

/** Largest Lamport counter taken from a peer or written here (LIMITS.sfsWire.counterMax: why 2^48 is there). */
export const SFS_COUNTER_MAX = SFS_WIRE.counterMax;
/** Largest counter the clock takes from a peer's version (LIMITS.sfsWire.clockAdoptMax): the rest is this node's room. */
export const SFS_CLOCK_ADOPT_MAX = SFS_WIRE.clockAdoptMax;

export function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The total order of versions (see the header): > 0 when a is larger. */
export function compareVersions(a: SfsEntry, b: SfsEntry): number {
  return (a.counter - b.counter) || cmpStr(a.origin, b.origin) || (Number(a.deleted) - Number(b.deleted))
    || (Number(a.dir) - Number(b.dir)) || cmpStr(a.sha256, b.sha256) || (a.size - b.size) || (a.chunkBytes - b.chunkBytes)
    || (a.mtimeMs - b.mtimeMs);
}

/** 1 a dominates, -1 b dominates, 0 equal, 2 concurrent. */
export function vvRelation(a: readonly VvItem[], b: readonly VvItem[]): -1 | 0 | 1 | 2 {
  let greater = false;
  let less = false;
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && x[0] < y[0])) {
      greater = true;
      i++;
    } else if (x === undefined || y[0] < x[0]) {
      less = true;
      j++;
    } else {
      if (x[1] > y[1]) greater = true;
      else if (x[1] < y[1]) less = true;
      i++;
      j++;
    }
  }
  return greater && less ? 2 : greater ? 1 : less ? -1 : 0;
}

export function vvMerge(a: readonly VvItem[], b: readonly VvItem[]): VvItem[] {
  const map = new Map<string, number>(a);
  for (const [o, c] of b) map.set(o, Math.max(c, map.get(o) ?? 0));
  return [...map].sort((x, y) => cmpStr(x[0], y[0]));
}

/** The vector of a new version by `origin` at `counter` on top of `vv`; the oldest item goes when full. */
export function vvBump(vv: readonly VvItem[], origin: string, counter: number): VvItem[] {
  const items = vv.filter(([o]) => o !== origin);
  while (items.length >= SFS_WIRE.vvEntriesMax) {
    let drop = 0;
    for (let k = 1; k < items.length; k++) {
      const item = items[k] as VvItem;
      const worst = items[drop] as VvItem;
      if (item[1] < worst[1] || (item[1] === worst[1] && item[0] < worst[0])) drop = k;
    }
    items.splice(drop, 1);
  }
  items.push([origin, counter]);
  return items.sort((x, y) => cmpStr(x[0], y[0]));
}

export function isLiveFile(entry: SfsEntry | undefined): entry is SfsEntry {
  return entry !== undefined && !entry.deleted && !entry.dir;
}

export function isLiveDir(entry: SfsEntry | undefined): boolean {
  return entry !== undefined && !entry.deleted && entry.dir;
}

export function isLive(entry: SfsEntry | undefined): boolean {
  return entry !== undefined && !entry.deleted;
}

export function sameVersion(a: SfsEntry | undefined, b: SfsEntry | undefined): boolean {
  return a !== undefined && b !== undefined && compareVersions(a, b) === 0;
}

export function stampKey(counter: number, origin: string): string {
  return `${counter}/${origin}`;
}

export function chunkCount(size: number, chunkBytes: number): number {
  return Math.ceil(size / chunkBytes);
}

export function flagsOf(entry: Pick<SfsEntry, "deleted" | "dir">): number {
  return (entry.deleted ? FLAG_DELETED : 0) | (entry.dir ? FLAG_DIR : 0);
}

/** The value of a lowercase hex digit's char code (hashes here are lowercase hex: sfs.ts checks them). */
function nibble(code: number): number {
  return code <= 57 ? code - 48 : code - 87;
}

function hexInto(hex: string, out: Uint8Array, offset: number): void {
  for (let i = 0; i < 32; i++) out[offset + i] = (nibble(hex.charCodeAt(i * 2)) << 4) | nibble(hex.charCodeAt(i * 2 + 1));
}

function hashesBytes(chunks: readonly string[]): Uint8Array {
  const out = new Uint8Array(chunks.length * 32);
  chunks.forEach((hex, i) => hexInto(hex, out, i * 32));
  return out;
}

function shaBytes(sha256: string): Uint8Array {
  return sha256 === "" ? new Uint8Array(0) : (fromHex(sha256) as Uint8Array);
}

/** An entry as it travels. Only signed entries travel (sfs.ts keeps the unsigned ones of the previous format local). */
export function entryToWire(entry: SfsEntry, have: boolean): SfsEntryWire {
  assert(entry.pub.length === 32 && entry.sig.length === 64, "entryToWire: an unsigned version never travels");
  const s = entry.signedAs;
  const signedAs: SfsSignedAsWire = s === undefined ? 0 : [s.path, s.size, shaBytes(s.sha256), hashesBytes(s.chunks)];
  return [
    entry.path, entry.counter, entry.origin, flagsOf(entry) | (have ? FLAG_HAVE : 0), entry.size, entry.mtimeMs, shaBytes(entry.sha256),
    entry.chunkBytes, hashesBytes(entry.chunks), entry.vv.map(([o, c]) => [o, c] as [string, number]), entry.pub, entry.sig, signedAs,
  ];
}

/** An entry as the store keeps it: a version of the previous format (a base, unsigned) in its old 10-tuple. */
export function entryToStoredWire(entry: SfsEntry): SfsStoredEntryWire {
  if (entry.sig.length > 0) return entryToWire(entry, false);
  return [
    entry.path, entry.counter, entry.origin, flagsOf(entry), entry.size, entry.mtimeMs, shaBytes(entry.sha256), entry.chunkBytes,
    hashesBytes(entry.chunks), entry.vv.map(([o, c]) => [o, c] as [string, number]),
  ];
}

/** The chunk hashes in `hashes` (32 bytes each) as hex, or undefined when they are not the ones `size` at `chunkBytes` needs. */
function chunksOf(size: number, chunkBytes: number, sha: Uint8Array, hashes: Uint8Array): string[] | undefined {
  const n = chunkCount(size, chunkBytes);
  if (sha.length !== 32 || size > SFS_WIRE.fileBytesMax || n > SFS_WIRE.chunksMax || hashes.length !== n * 32) return undefined;
  const chunks: string[] = [];
  for (let i = 0; i < n; i++) chunks.push(toHex(hashes.subarray(i * 32, i * 32 + 32)));
  return chunks;
}

/**
 * A peer's (or the store's) entry, checked beyond its schema; a string says why it was refused:
 * "counter" for a counter above SFS_COUNTER_MAX (in the stamp or the vector). Its signature is not
 * checked here (sfs.ts does, when the entry would change what is held); a derived entry's
 * derivation is: a conflict copy must sit at the conflict path of what its origin signed, with the
 * same content, and a shadow tombstone at that path or its conflict path. An entry of the previous
 * format (the store's 10-tuple) comes with an empty key and signature.
 */
export function entryFromWire(wire: SfsStoredEntryWire): SfsEntry | "path" | "entry" | "counter" {
  const [path, counter, origin, flags, size, mtimeMs, sha, chunkBytes, hashes, vvWire] = wire;
  if (!isCanonicalPath(path)) return "path";
  const deleted = (flags & FLAG_DELETED) !== 0;
  const dir = (flags & FLAG_DIR) !== 0;
  let chunks: string[] = [];
  if (deleted || dir) {
    if (size !== 0 || sha.length !== 0 || hashes.length !== 0) return "entry";
  } else {
    const live = chunksOf(size, chunkBytes, sha, hashes);
    if (live === undefined) return "entry";
    chunks = live;
  }
  if (vvWire.length === 0) return "entry";
  let own = false;
  for (let i = 0; i < vvWire.length; i++) {
    const [o, c] = vvWire[i] as [string, number];
    if (i > 0 && !((vvWire[i - 1] as [string, number])[0] < o)) return "entry";
    if (c > SFS_COUNTER_MAX) return "counter";
    if (o === origin) {
      if (c !== counter) return "entry";
      own = true;
    } else if (c >= counter) return "entry";
  }
  if (!own) return "entry";
  const unsigned = new Uint8Array(0);
  const pub = wire.length === 13 ? wire[10].slice() : unsigned;
  const sig = wire.length === 13 ? wire[11].slice() : unsigned;
  let signedAs: SfsSignedAs | undefined;
  const signedWire = wire.length === 13 ? wire[12] : 0;
  if (signedWire !== 0) {
    const [signedPath, signedSize, signedSha, signedHashes] = signedWire;
    const signedChunks = chunksOf(signedSize, chunkBytes, signedSha, signedHashes);
    if (!isCanonicalPath(signedPath)) return "path";
    if (signedChunks === undefined || dir) return "entry";
    const copyPath = conflictPath(signedPath, origin, counter);
    if (deleted ? path !== signedPath && path !== copyPath : path !== copyPath || size !== signedSize || !bytesEqual(sha, signedSha) || !bytesEqual(hashes, signedHashes)) {
      return "entry";
    }
    signedAs = { path: signedPath, size: signedSize, sha256: toHex(signedSha), chunks: signedChunks };
  }
  return {
    path, counter, origin, deleted, dir, size, mtimeMs, sha256: sha.length === 0 ? "" : toHex(sha), chunkBytes, chunks,
    vv: vvWire.map(([o, c]) => [o, c] as const), pub, sig, signedAs,
  };
}

/** The version its origin signed: the entry itself, or for a derived one the live file it derives from. */
export function signedVersion(entry: SfsEntry): SfsVersionFields {
  const s = entry.signedAs;
  if (s === undefined) return entry;
  return { ...entry, path: s.path, deleted: false, dir: false, size: s.size, sha256: s.sha256, chunks: s.chunks };
}

const encoder = new TextEncoder();

function writeU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, Math.floor(value / 0x1_0000_0000));
  view.setUint32(at + 4, value >>> 0);
}

/**
 * The canonical bytes of a version, which its origin signs (RecordSigner prefixes "p-kernel/v1/sfs"):
 *
 *   path length (u16 BE) ‖ path (UTF-8) ‖ counter (u64 BE) ‖ origin (8 bytes)
 *   ‖ flags (u8: bit 0 deleted, bit 1 folder) ‖ size (u64 BE) ‖ mtimeMs (u64 BE)
 *   ‖ sha256 length (u8: 0 or 32) ‖ sha256 ‖ chunkBytes (u32 BE) ‖ chunk count (u32 BE) ‖ chunk hashes (32 each)
 *   ‖ vector length (u8) ‖ (origin (8 bytes) ‖ counter (u64 BE)) per item
 *
 * Every field that defines the version (and its place in the total order) is in it; the schema
 * bounds them (path ≤ 1,024 bytes, ≤ 4,096 chunks, ≤ 32 items), so the prefixes fit.
 */
export function sfsVersionBody(version: SfsVersionFields): Uint8Array {
  const path = encoder.encode(version.path);
  const sha = shaBytes(version.sha256);
  const length = 2 + path.length + 8 + 8 + 1 + 8 + 8 + 1 + sha.length + 4 + 4 + version.chunks.length * 32 + 1 + version.vv.length * 16;
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  let at = 0;
  view.setUint16(at, path.length);
  at += 2;
  out.set(path, at);
  at += path.length;
  writeU64(view, at, version.counter);
  at += 8;
  out.set(fromHex(version.origin) ?? new Uint8Array(8), at);
  at += 8;
  out[at++] = flagsOf(version);
  writeU64(view, at, version.size);
  at += 8;
  writeU64(view, at, version.mtimeMs);
  at += 8;
  out[at++] = sha.length;
  out.set(sha, at);
  at += sha.length;
  view.setUint32(at, version.chunkBytes);
  at += 4;
  view.setUint32(at, version.chunks.length);
  at += 4;
  for (const hex of version.chunks) {
    hexInto(hex, out, at);
    at += 32;
  }
  out[at++] = version.vv.length;
  for (const [o, c] of version.vv) {
    out.set(fromHex(o) ?? new Uint8Array(8), at);
    at += 8;
    writeU64(view, at, c);
    at += 8;
  }
  return out;
}
