// The memory's approximate nearest-neighbour index (issue 14; ADR 014): usearch's HNSW over unit
// float32 vectors by inner product, behind the AnnPort that MemoryIndex (src/core/self/search.ts)
// drives. usearch ships prebuilt N-API binaries (linux x64 and arm64, macOS, Windows) in its npm
// tarball; the binary is loaded on first use, not at import, so a machine where it cannot load gets
// an error value (openVectorIndex → { ok: false }) and the node keeps exact search: it builds its
// MemoryIndex without `ann`. usearchStatus() says whether the binary loads, and why not.
//
// Parameters, chosen by measurement (ADR 014: 100,000 embed() vectors of synthetic memories, 512
// dimensions, bench/self.ts's queries — half of them near-copies of a memory, whose top 10 are
// crowded with near-ties — one thread): connectivity (M) 24, expansion_add (efConstruction) 64,
// expansion_search (ef) 96: recall@10 against exact 0.97, ~3,400 queries/s, 0.22 ms per add.
// ef 64 gave 0.956 at ~4,500 queries/s (too near the 0.95 floor); efConstruction 96 cost 55% more
// per add for +0.002; M 32 +0.008 for 15% fewer queries/s and 60% more per add.
// Searches and adds run on the calling thread (threads = 1): the node calls them in bounded
// slices from its tick.
//
// On disk (save/load): the index file as usearch writes it, and beside it PATH.sum, a JSON line
// with the file's length, SHA-256 and dimensions, written after the file is fsynced and renamed
// into place. load() reads the file only when the checksum matches: usearch's loader trusts the
// sizes in the file it reads and aborts the whole process (std::bad_alloc) on a damaged one, so
// a torn or foreign file must never reach it. load() copies the index into memory (usearch's
// load(), not view(): memory-mapped search was 3–4× slower).
import { createHash } from "node:crypto";
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, readSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { AnnPort } from "../core/self/search.ts";

export interface VectorIndexOptions {
  /** Vector length (EMBED_DIMS for the memory's own vectors). */
  readonly dims: number;
  /** HNSW graph degree (usearch `connectivity`, the M of the paper). */
  readonly connectivity: number;
  /** Candidates kept while inserting (`expansion_add`, efConstruction). */
  readonly expansionAdd: number;
  /** Candidates kept while searching (`expansion_search`, ef); at least k is used. */
  readonly expansionSearch: number;
}

export const VECTOR_INDEX_DEFAULTS: Omit<VectorIndexOptions, "dims"> = {
  connectivity: 24,
  expansionAdd: 64,
  expansionSearch: 96,
};

export type VectorIndexResult = { readonly ok: true; readonly index: VectorIndex } | { readonly ok: false; readonly error: string };

interface UsearchIndex {
  add(keys: BigUint64Array, vectors: Float32Array, threads: number): void;
  search(vector: Float32Array, k: number, threads: number): { keys: BigUint64Array; distances: Float32Array };
  remove(keys: BigUint64Array): number | number[];
  contains(keys: BigUint64Array): boolean | boolean[];
  size(): number;
  dimensions(): number;
  save(path: string): void;
  load(path: string): void;
}

interface UsearchModule {
  Index: new (config: {
    dimensions: number; metric: string; quantization: string; connectivity: number; expansion_add: number; expansion_search: number; multi: boolean;
  }) => UsearchIndex;
}

let loaded: { ok: true; module: UsearchModule } | { ok: false; error: string } | undefined;

/** Loads usearch's native binary once; the reason when it cannot be loaded on this machine. */
function usearch(): { ok: true; module: UsearchModule } | { ok: false; error: string } {
  if (loaded !== undefined) return loaded;
  try {
    const module = createRequire(import.meta.url)("usearch") as UsearchModule;
    if (typeof module.Index !== "function") throw new Error("the module has no Index class");
    loaded = { ok: true, module };
  } catch (error) {
    loaded = { ok: false, error: `usearch cannot be loaded on ${process.platform}-${process.arch} (search stays exact): ${error instanceof Error ? error.message : String(error)}` };
  }
  return loaded;
}

/** Whether usearch's binary loads here (and why not). */
export function usearchStatus(): { ok: true } | { ok: false; error: string } {
  const u = usearch();
  return u.ok ? { ok: true } : { ok: false, error: u.error };
}

/** A new, empty index; an error value when usearch cannot load or the options are invalid. */
export function openVectorIndex(dims: number, options: Partial<Omit<VectorIndexOptions, "dims">> = {}): VectorIndexResult {
  const config: VectorIndexOptions = { ...VECTOR_INDEX_DEFAULTS, ...options, dims };
  const problem = checkOptions(config);
  if (problem !== undefined) return { ok: false, error: problem };
  const u = usearch();
  if (!u.ok) return u;
  try {
    return { ok: true, index: new VectorIndex(u.module, config) };
  } catch (error) {
    return { ok: false, error: `usearch: ${error instanceof Error ? error.message : String(error)}` };
  }
}

/**
 * The index saved at `path` (by VectorIndex.save), checked against its PATH.sum before usearch
 * reads a byte of it; an error value when either file is missing, damaged, or of other dimensions
 * (the caller then opens an empty index and lets MemoryIndex.work() fill it).
 */
export function loadVectorIndex(path: string, dims: number, options: Partial<Omit<VectorIndexOptions, "dims">> = {}): VectorIndexResult {
  const opened = openVectorIndex(dims, options);
  if (!opened.ok) return opened;
  let sum: { bytes: number; sha256: string; dims: number };
  try {
    sum = JSON.parse(readFileSync(`${path}.sum`, "utf8")) as typeof sum;
  } catch (error) {
    return { ok: false, error: `no usable checksum beside ${path} (${error instanceof Error ? error.message : String(error)})` };
  }
  if (typeof sum !== "object" || sum === null || typeof sum.sha256 !== "string" || !Number.isSafeInteger(sum.bytes) || sum.dims !== dims) {
    return { ok: false, error: `${path}.sum does not describe a ${dims}-dimension index` };
  }
  let bytes: number;
  try {
    bytes = statSync(path).size;
  } catch (error) {
    return { ok: false, error: `cannot read ${path}: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (bytes !== sum.bytes) return { ok: false, error: `${path} has ${bytes} bytes, its checksum says ${sum.bytes}` };
  if (sha256File(path) !== sum.sha256) return { ok: false, error: `${path} does not match its checksum (torn or changed)` };
  try {
    opened.index.native.load(path);
  } catch (error) {
    return { ok: false, error: `usearch could not load ${path}: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (opened.index.native.dimensions() !== dims) return { ok: false, error: `${path} holds ${opened.index.native.dimensions()}-dimension vectors, not ${dims}` };
  return opened;
}

export class VectorIndex implements AnnPort {
  readonly dims: number;
  readonly options: VectorIndexOptions;
  /** The usearch index (for loading; everything else goes through the AnnPort methods). */
  readonly native: UsearchIndex;
  readonly #key = new BigUint64Array(1);

  constructor(module: UsearchModule, options: VectorIndexOptions) {
    this.dims = options.dims;
    this.options = options;
    this.native = new module.Index({
      dimensions: options.dims, metric: "ip", quantization: "f32", connectivity: options.connectivity,
      expansion_add: options.expansionAdd, expansion_search: options.expansionSearch, multi: false,
    });
  }

  get size(): number {
    return this.native.size();
  }

  /** Adds a vector under a key not held (throws on a held key, a key that is not a safe integer ≥ 0, or a vector of other length). */
  add(key: number, vector: Float32Array): void {
    this.#check(vector);
    this.native.add(this.#keyOf(key), vector, 1);
  }

  remove(key: number): void {
    this.native.remove(this.#keyOf(key));
  }

  has(key: number): boolean {
    const held = this.native.contains(this.#keyOf(key));
    return Array.isArray(held) ? held[0] === true : held;
  }

  /** Up to k nearest keys, nearest first; distance = 1 − inner product. */
  search(vector: Float32Array, k: number): Array<{ key: number; distance: number }> {
    this.#check(vector);
    const n = Math.floor(k);
    if (!(n > 0) || this.size === 0) return [];
    const found = this.native.search(vector, n, 1);
    const out: Array<{ key: number; distance: number }> = [];
    for (let i = 0; i < found.keys.length; i++) out.push({ key: Number(found.keys[i]), distance: found.distances[i] as number });
    return out;
  }

  /**
   * Writes the index to `path` (through PATH.tmp, fsynced, renamed) and then its checksum to
   * PATH.sum (the same way). A crash between the two leaves a file that load() refuses, never one
   * it trusts wrongly. Synchronous: about a second per 100k vectors of 512 dimensions.
   */
  save(path: string): { ok: true } | { ok: false; error: string } {
    const tmp = `${path}.tmp`;
    try {
      this.native.save(tmp);
      fsyncPath(tmp);
      const sum = JSON.stringify({ bytes: statSync(tmp).size, sha256: sha256File(tmp), dims: this.dims, size: this.size });
      if (existsSync(`${path}.sum`)) unlinkSync(`${path}.sum`);
      renameSync(tmp, path);
      writeFileSync(`${path}.sum.tmp`, `${sum}\n`);
      fsyncPath(`${path}.sum.tmp`);
      renameSync(`${path}.sum.tmp`, `${path}.sum`);
      return { ok: true };
    } catch (error) {
      return { ok: false, error: `could not save the vector index to ${path}: ${error instanceof Error ? error.message : String(error)}` };
    }
  }

  #keyOf(key: number): BigUint64Array {
    if (!Number.isSafeInteger(key) || key < 0) throw new RangeError(`vector index key ${key} is not a safe integer ≥ 0`);
    this.#key[0] = BigInt(key);
    return this.#key;
  }

  #check(vector: Float32Array): void {
    if (!(vector instanceof Float32Array) || vector.length !== this.dims) {
      throw new RangeError(`vector index takes Float32Array vectors of ${this.dims} values`);
    }
  }
}

function checkOptions(o: VectorIndexOptions): string | undefined {
  const ok = (x: number, lo: number, hi: number): boolean => Number.isSafeInteger(x) && x >= lo && x <= hi;
  if (!ok(o.dims, 1, 65_536)) return `vector index dimensions must be 1..65536, not ${o.dims}`;
  if (!ok(o.connectivity, 2, 256)) return `connectivity must be 2..256, not ${o.connectivity}`;
  if (!ok(o.expansionAdd, 1, 4_096) || !ok(o.expansionSearch, 1, 4_096)) return "expansions must be 1..4096";
  return undefined;
}

function sha256File(path: string): string {
  const hash = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const buffer = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

function fsyncPath(path: string): void {
  const fd = openSync(path, "r+");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
