// Versions of shared paths (docs/protocols/sfs.md, "Manifest"): the entry, its version vector, the
// total order the manifest keeps the largest of, and the entry's compact wire tuple with the checks
// a peer's entry must pass beyond its schema. Pure functions; the replication is in sfs.ts.
import { fromHex, toHex } from "../util/bytes.ts";
import { isCanonicalPath } from "./sfs-path.ts";
import { FLAG_DELETED, FLAG_DIR, FLAG_HAVE, SFS_WIRE, type SfsEntryWire } from "./sfs-wire.ts";

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

export function flagsOf(entry: SfsEntry): number {
  return (entry.deleted ? FLAG_DELETED : 0) | (entry.dir ? FLAG_DIR : 0);
}

function hexInto(hex: string, out: Uint8Array, offset: number): void {
  for (let i = 0; i < 32; i++) out[offset + i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
}

export function entryToWire(entry: SfsEntry, have: boolean): SfsEntryWire {
  const hashes = new Uint8Array(entry.chunks.length * 32);
  entry.chunks.forEach((hex, i) => hexInto(hex, hashes, i * 32));
  const sha = entry.sha256 === "" ? new Uint8Array(0) : (fromHex(entry.sha256) as Uint8Array);
  return [
    entry.path, entry.counter, entry.origin, flagsOf(entry) | (have ? FLAG_HAVE : 0), entry.size, entry.mtimeMs, sha,
    entry.chunkBytes, hashes, entry.vv.map(([o, c]) => [o, c] as [string, number]),
  ];
}

/**
 * A peer's (or the store's) entry, checked beyond its schema; a string says why it was refused:
 * "counter" for a counter above SFS_COUNTER_MAX (in the stamp or the vector).
 */
export function entryFromWire(wire: SfsEntryWire): SfsEntry | "path" | "entry" | "counter" {
  const [path, counter, origin, flags, size, mtimeMs, sha, chunkBytes, hashes, vvWire] = wire;
  if (!isCanonicalPath(path)) return "path";
  const deleted = (flags & FLAG_DELETED) !== 0;
  const dir = (flags & FLAG_DIR) !== 0;
  const chunks: string[] = [];
  if (deleted || dir) {
    if (size !== 0 || sha.length !== 0 || hashes.length !== 0) return "entry";
  } else {
    const n = chunkCount(size, chunkBytes);
    if (sha.length !== 32 || size > SFS_WIRE.fileBytesMax || n > SFS_WIRE.chunksMax || hashes.length !== n * 32) return "entry";
    for (let i = 0; i < n; i++) chunks.push(toHex(hashes.subarray(i * 32, i * 32 + 32)));
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
  return {
    path, counter, origin, deleted, dir, size, mtimeMs, sha256: sha.length === 0 ? "" : toHex(sha), chunkBytes, chunks,
    vv: vvWire.map(([o, c]) => [o, c] as const),
  };
}
