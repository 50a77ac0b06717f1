// The memory's search index (issue 14; ADR 014): hybrid BM25 + vector retrieval over documents
// (id, text, vector), updated one document at a time.
//
// - BM25 (bm25.ts) over the text's stemmed content words.
// - Vectors: embed(text) by default (embed.ts), or a vector the caller stored. Nearest neighbours
//   by inner product (cosine: the vectors are unit length), found exactly — a flat Float32Array
//   matrix scanned with a k-slot heap — while the index holds at most `exactMax` documents or the
//   ANN index lags; beyond, through the AnnPort (usearch's HNSW on a real node,
//   src/adapters/vector-index.ts), its candidates scored again exactly here.
// - Optionally a second vector space per document (`extra`: a mind's embeddings), searched exactly.
// - Hybrid: each list's best `candidates` documents are pooled, every pooled document is scored by
//   every signal (its BM25 score computed for it if BM25 did not list it, its cosine likewise), and
//   the fused score is a weighted sum of the normalised signals: 0.5 · BM25 / (the query's BM25
//   bound) + 1 · cosine (+ 1 · the extra space's cosine / the pool's best). On the retrieval set it
//   beat reciprocal-rank fusion by 5 points of recall@5 and each signal alone (ADR 014).
//
// The ANN index is fed in bounded slices: add() only queues a vector, work(budget) moves at most
// `budget` of them into the index (the node calls it from its tick). Searches on the ANN path also
// scan the queued vectors exactly, so a document is findable the moment it is added. Keys in the
// ANN index are a 53-bit hash of (id, vector), so an index saved to disk and loaded again is
// recognised document by document (AnnPort.has) instead of being rebuilt; keys the index holds that
// no document claims (memories removed while it was on disk) are removed when a search meets them.
//
// A failing AnnPort (it throws) is dropped and search stays exact; stats().annError says why.
import { Bm25Index, BM25_DEFAULTS, type Bm25Config } from "./bm25.ts";
import { EMBED_DIMS, dotAt, embed, fmix32, hash32 } from "./embed.ts";
import { TopK, type Ranked } from "./top-k.ts";

/** An approximate nearest-neighbour index over unit vectors by inner product. Keys are safe integers in [0, 2^53). */
export interface AnnPort {
  readonly size: number;
  add(key: number, vector: Float32Array): void;
  remove(key: number): void;
  /** Up to k nearest keys, nearest first; distance = 1 − inner product. */
  search(vector: Float32Array, k: number): Array<{ key: number; distance: number }>;
  /** Whether the index holds key (an index loaded from disk): such documents are not added again. */
  has?(key: number): boolean;
}

export interface SearchHit {
  readonly id: string;
  /** The ranking score: the fused score (hybrid), the BM25 score (bm25) or the cosine (vector). */
  readonly score: number;
  /** Its BM25 score for the query (hybrid and bm25 modes). */
  readonly bm25: number | undefined;
  /** Its cosine with the query's vector (hybrid and vector modes). */
  readonly vector: number | undefined;
  /** Its cosine in the extra space, when the search asked for one and the document has a vector there. */
  readonly extra: number | undefined;
}

export type SearchMode = "hybrid" | "bm25" | "vector";

export interface SearchOptions {
  /** Only documents for which it returns true (a speaker's, current ones); k of them come back whenever k exist. */
  readonly filter?: (id: string) => boolean;
  readonly mode?: SearchMode;
  /** The query's vector, when the caller has it (default embed(query)). */
  readonly queryVector?: Float32Array;
  /** The query in an extra vector space (a mind's embedding of it), fused as a third list (hybrid). */
  readonly extraQuery?: { readonly space: string; readonly vector: Float32Array };
}

export interface ExtraVector {
  readonly space: string;
  readonly vector: Float32Array;
}

export interface MemoryIndexConfig {
  /** Vector search is exact up to this many documents, through the ANN index beyond. */
  readonly exactMax: number;
  /** Largest k a search returns. */
  readonly kMax: number;
  /** Documents taken from each list into the hybrid pool (at least k). */
  readonly candidates: number;
  /** Weights of the normalised BM25, vector and extra-space scores in the hybrid score. */
  readonly weightBm25: number;
  readonly weightVector: number;
  readonly weightExtra: number;
  /** "score": the weighted sum described above (the default, measured best); "rrf": reciprocal-rank fusion, weight / (rrfK + rank). */
  readonly fusion: "score" | "rrf";
  readonly rrfK: number;
  /** The ANN is asked for overFetch × n neighbours, and 4× more per round (at most annRounds) while a filter leaves fewer than n. */
  readonly overFetch: number;
  readonly annRounds: number;
  /** On the ANN path the queued vectors are scanned exactly; with more than this queued, search is exact. */
  readonly pendingScanMax: number;
  /** Dimensions an extra space may have. */
  readonly extraDimsMax: number;
  /** Extra spaces held (a mind's model is one space). */
  readonly extraSpacesMax: number;
  readonly bm25: Bm25Config;
}

export const MEMORY_INDEX_DEFAULTS: MemoryIndexConfig = {
  exactMax: 20_000,
  kMax: 1_000,
  candidates: 64,
  weightBm25: 0.5,
  weightVector: 1,
  weightExtra: 1,
  fusion: "score",
  rrfK: 60,
  overFetch: 4,
  annRounds: 3,
  pendingScanMax: 4_096,
  extraDimsMax: 8_192,
  extraSpacesMax: 4,
  bm25: BM25_DEFAULTS,
};

export interface MemoryIndexStats {
  readonly docs: number;
  /** An ANN index is attached and working. */
  readonly ann: boolean;
  readonly annSize: number;
  /** Vectors waiting for work() to move them into the ANN index. */
  readonly pendingAnn: number;
  /** How a vector search would run now. */
  readonly path: "exact" | "ann";
  readonly exactMax: number;
  /** Why the ANN index was dropped (it threw), if it was. */
  readonly annError: string | undefined;
  /** ANN keys met in results that no document claims (removed from the index). */
  readonly staleAnnKeys: number;
  readonly terms: number;
  readonly dims: number;
  /** Documents per extra space. */
  readonly extra: Readonly<Record<string, number>>;
  /** Vectors given to add() that were unusable (wrong length, not finite) and replaced by embed(text). */
  readonly vectorsRecomputed: number;
  /** Extra vectors refused (wrong dimensions for their space, not finite, too many spaces). */
  readonly extraRefused: number;
}

export class MemoryIndex {
  readonly #config: MemoryIndexConfig;
  readonly #bm25: Bm25Index;
  readonly #main = new VectorSpace(EMBED_DIMS);
  readonly #extra = new Map<string, VectorSpace>();
  #ann: AnnPort | undefined;
  #annError: string | undefined;
  /** id → its key in the ANN index, and back; pending: ids (in order) whose vector is not in the index yet. */
  readonly #keyOf = new Map<string, number>();
  readonly #idOf = new Map<number, string>();
  readonly #pending = new Set<string>();
  /** Keys met in the index that no document claims, to remove in work(). */
  readonly #stale = new Set<number>();
  #staleSeen = 0;
  #recomputed = 0;
  #extraRefused = 0;

  constructor(options: { ann?: AnnPort; exactMax?: number; config?: Partial<MemoryIndexConfig> } = {}) {
    this.#config = { ...MEMORY_INDEX_DEFAULTS, ...options.config, ...(options.exactMax === undefined ? {} : { exactMax: options.exactMax }) };
    this.#bm25 = new Bm25Index(this.#config.bm25);
    this.#ann = options.ann;
  }

  get size(): number {
    return this.#main.size;
  }

  has(id: string): boolean {
    return this.#main.has(id);
  }

  /**
   * Indexes a document (the same id again replaces it). `vector` defaults to embed(text); one of
   * the wrong length or not finite is replaced by embed(text) (counted). `extra` adds the
   * document's vector in another space (refused, and counted, when its dimensions differ from
   * that space's first vector's or it is not finite).
   */
  add(id: string, text: string, vector?: Float32Array, extra?: ExtraVector): void {
    const body = typeof text === "string" ? text : "";
    let v = vector;
    if (v !== undefined && !usable(v, EMBED_DIMS)) {
      v = undefined;
      this.#recomputed++;
    }
    const main = v ?? embed(body);
    this.remove(id);
    this.#bm25.add(id, body);
    this.#main.set(id, main);
    if (extra !== undefined) this.#addExtra(id, extra);
    if (this.#ann !== undefined) this.#queueAnn(id, main);
  }

  remove(id: string): void {
    if (!this.#main.has(id)) return;
    this.#bm25.remove(id);
    this.#main.delete(id);
    for (const space of this.#extra.values()) space.delete(id);
    const key = this.#keyOf.get(id);
    if (key === undefined) return;
    this.#keyOf.delete(id);
    this.#idOf.delete(key);
    if (this.#pending.delete(id)) return;
    const ann = this.#ann;
    if (ann !== undefined) this.#annTry(() => ann.remove(key));
  }

  /** Moves up to `budget` queued vectors into the ANN index (and drops stale keys); how many remain queued. */
  work(budget: number): number {
    const ann = this.#ann;
    if (ann === undefined) return 0;
    let left = budget > 0 ? Math.min(Math.floor(budget), Number.MAX_SAFE_INTEGER) : 0;
    for (const key of this.#stale) {
      if (left === 0) break;
      this.#stale.delete(key);
      if (!this.#annTry(() => ann.remove(key))) return 0;
      left--;
    }
    for (const id of this.#pending) {
      if (left === 0) break;
      const key = this.#keyOf.get(id);
      const vector = this.#main.vector(id);
      this.#pending.delete(id);
      if (key === undefined || vector === undefined) continue;
      if (!this.#annTry(() => ann.add(key, vector))) return 0;
      left--;
    }
    return this.#pending.size;
  }

  search(query: string, k: number, options: SearchOptions = {}): SearchHit[] {
    const n = k > 0 ? Math.min(this.#config.kMax, Math.floor(k)) : 0;
    if (n === 0 || this.size === 0) return [];
    const text = typeof query === "string" ? query : "";
    const mode = options.mode ?? "hybrid";
    const filter = options.filter;
    if (mode === "bm25") {
      return this.#bm25.search(text, n, filter).map((h) => ({ id: h.id, score: h.score, bm25: h.score, vector: undefined, extra: undefined }));
    }
    const q = options.queryVector !== undefined && usable(options.queryVector, EMBED_DIMS) ? options.queryVector : embed(text);
    if (mode === "vector") {
      return this.#vectorTop(q, n, filter).map((h) => ({ id: h.id, score: h.score, bm25: undefined, vector: h.score, extra: undefined }));
    }
    // Hybrid: pool each list's best, score every pooled document by every signal, fuse.
    const pool = Math.max(n, this.#config.candidates);
    const terms = Bm25Index.queryTerms(text);
    const ids = new Set<string>();
    for (const h of this.#bm25.searchTerms(terms, pool, filter)) ids.add(h.id);
    for (const h of this.#vectorTop(q, pool, filter)) ids.add(h.id);
    const space = options.extraQuery === undefined ? undefined : this.#extra.get(options.extraQuery.space);
    const eq = options.extraQuery?.vector;
    const withExtra = space !== undefined && eq !== undefined && usable(eq, space.dims);
    if (withExtra) for (const h of space.top(eq, pool, filter)) ids.add(h.id);
    const rows: Signals[] = [];
    let bestExtra = 0;
    for (const id of ids) {
      const extra = withExtra ? space.score(id, eq) : undefined;
      rows.push({ id, bm25: this.#bm25.score(id, terms) ?? 0, vector: this.#main.score(id, q) ?? 0, extra });
      if (extra !== undefined) bestExtra = Math.max(bestExtra, extra);
    }
    const fused = this.#config.fusion === "rrf" ? this.#rrf(rows) : this.#weighted(rows, this.#bm25.bound(terms), bestExtra);
    const top = new TopK(n);
    for (let i = 0; i < rows.length; i++) top.push(fused[i] as number, (rows[i] as Signals).id);
    const byId = new Map(rows.map((r) => [r.id, r]));
    return top.sorted().map((h) => {
      const r = byId.get(h.id) as Signals;
      return { id: h.id, score: h.score, bm25: r.bm25, vector: r.vector, extra: r.extra };
    });
  }

  /**
   * Normalised score fusion: wB · bm25 / bound + wV · cosine + wE · extra / (largest extra in the
   * pool). BM25 over its query's bound is the share of the query a document matches, on a scale
   * that does not move with the other documents (dividing by the pool's best instead promotes the
   * best of a set of poor lexical matches: 1.6 points of recall@5 worse on the set at its best
   * weight). Our own vector is unit length, its cosine used as it is; a mind's embedding has its
   * own scale, so it is divided by the pool's best.
   */
  #weighted(rows: readonly Signals[], bound: number, bestExtra: number): number[] {
    const c = this.#config;
    return rows.map((r) => {
      let score = (bound > 0 ? (c.weightBm25 * r.bm25) / bound : 0) + c.weightVector * r.vector;
      if (r.extra !== undefined && bestExtra > 0) score += (c.weightExtra * r.extra) / bestExtra;
      return score;
    });
  }

  /** Reciprocal-rank fusion: Σ weight / (rrfK + rank), rank from 1 in each signal's order over the pool (BM25: documents scoring > 0). */
  #rrf(rows: readonly Signals[]): number[] {
    const c = this.#config;
    const ranks = (value: (r: Signals) => number | undefined): Map<string, number> => {
      const held = rows.filter((r) => value(r) !== undefined);
      held.sort((a, b) => (value(b) as number) - (value(a) as number) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      return new Map(held.map((r, i) => [r.id, i + 1]));
    };
    const rb = ranks((r) => (r.bm25 > 0 ? r.bm25 : undefined));
    const rv = ranks((r) => r.vector);
    const re = ranks((r) => r.extra);
    return rows.map((r) => {
      const b = rb.get(r.id);
      const v = rv.get(r.id);
      const e = re.get(r.id);
      return (b === undefined ? 0 : c.weightBm25 / (c.rrfK + b)) + (v === undefined ? 0 : c.weightVector / (c.rrfK + v))
        + (e === undefined ? 0 : c.weightExtra / (c.rrfK + e));
    });
  }

  stats(): MemoryIndexStats {
    const extra: Record<string, number> = {};
    for (const [name, space] of this.#extra) extra[name] = space.size;
    return {
      docs: this.size,
      ann: this.#ann !== undefined,
      annSize: this.#ann === undefined ? 0 : this.#annSize(),
      pendingAnn: this.#pending.size,
      path: this.#annUsable() ? "ann" : "exact",
      exactMax: this.#config.exactMax,
      annError: this.#annError,
      staleAnnKeys: this.#staleSeen,
      terms: this.#bm25.terms,
      dims: EMBED_DIMS,
      extra,
      vectorsRecomputed: this.#recomputed,
      extraRefused: this.#extraRefused,
    };
  }

  /** The vector held for a document (a view: copy it to keep it). */
  vector(id: string): Float32Array | undefined {
    return this.#main.vector(id);
  }

  /** The nearest documents to q (cosine), exactly or through the ANN index. */
  #vectorTop(q: Float32Array, n: number, filter?: (id: string) => boolean): Ranked[] {
    if (!this.#annUsable()) return this.#main.top(q, n, filter);
    const ann = this.#ann as AnnPort;
    const annSize = this.#annSize();
    let fetch = Math.min(annSize, n * this.#config.overFetch);
    for (let round = 0; round < this.#config.annRounds && fetch > 0; round++) {
      const found = this.#annCall(() => ann.search(q, fetch));
      if (found === undefined) break;
      const top = new TopK(n);
      let kept = 0;
      for (const { key } of found) {
        const id = this.#idOf.get(key);
        if (id === undefined || this.#pending.has(id)) {
          if (id === undefined && !this.#stale.has(key)) {
            this.#stale.add(key);
            this.#staleSeen++;
          }
          continue;
        }
        if (filter !== undefined && !filter(id)) continue;
        kept++;
        top.push(this.#main.score(id, q) ?? -Infinity, id);
      }
      // The queued vectors are not in the index yet: scan them exactly.
      for (const id of this.#pending) {
        if (filter !== undefined && !filter(id)) continue;
        kept++;
        top.push(this.#main.score(id, q) ?? -Infinity, id);
      }
      // Done when k passed, or when the port returned every vector it holds (nothing more to find).
      if (kept >= n || found.length >= annSize) return top.sorted();
      if (fetch >= annSize) break;
      fetch = Math.min(annSize, fetch * 4);
    }
    return this.#main.top(q, n, filter);
  }

  #annUsable(): boolean {
    return this.#ann !== undefined && this.size > this.#config.exactMax && this.#pending.size <= this.#config.pendingScanMax;
  }

  #annSize(): number {
    const ann = this.#ann;
    if (ann === undefined) return 0;
    return this.#annCall(() => ann.size) ?? 0;
  }

  #queueAnn(id: string, vector: Float32Array): void {
    let key = annKey(id, vector, 0);
    for (let salt = 1; this.#idOf.has(key); salt++) key = annKey(id, vector, salt);
    this.#keyOf.set(id, key);
    this.#idOf.set(key, id);
    this.#stale.delete(key);
    const ann = this.#ann;
    const held = ann?.has === undefined ? false : this.#annCall(() => ann.has?.(key) === true);
    if (held !== true) this.#pending.add(id);
  }

  #addExtra(id: string, extra: ExtraVector): void {
    const c = this.#config;
    let space = this.#extra.get(extra.space);
    const v = extra.vector;
    const dims = space?.dims ?? (v instanceof Float32Array ? v.length : 0);
    if (typeof extra.space !== "string" || dims === 0 || dims > c.extraDimsMax || !usable(v, dims)) {
      this.#extraRefused++;
      return;
    }
    if (space === undefined) {
      if (this.#extra.size >= c.extraSpacesMax) {
        this.#extraRefused++;
        return;
      }
      space = new VectorSpace(dims);
      this.#extra.set(extra.space, space);
    }
    space.set(id, v);
  }

  /** Runs a call on the ANN port; false if it threw (the port is then dropped). */
  #annTry(call: () => void): boolean {
    let ok = false;
    this.#annCall(() => {
      call();
      ok = true;
    });
    return ok;
  }

  /** Runs a call on the ANN port; if it throws, the port is dropped (search stays exact) and undefined returned. */
  #annCall<T>(call: () => T): T | undefined {
    if (this.#ann === undefined) return undefined;
    try {
      return call();
    } catch (error) {
      this.#annError = error instanceof Error ? error.message : String(error);
      this.#ann = undefined;
      this.#pending.clear();
      this.#stale.clear();
      this.#keyOf.clear();
      this.#idOf.clear();
      return undefined;
    }
  }
}

interface Signals {
  readonly id: string;
  readonly bm25: number;
  readonly vector: number;
  readonly extra: number | undefined;
}

/** A vector of `dims` finite values. */
function usable(v: unknown, dims: number): v is Float32Array {
  if (!(v instanceof Float32Array) || v.length !== dims) return false;
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return false;
  return true;
}

/** A document's key in the ANN index: 53 bits of a hash of its id, its vector's bits and a salt (for a collision). */
export function annKey(id: string, vector: Float32Array, salt: number): number {
  let h = hash32(`${salt.toString(36)}:${id}`);
  let g = hash32(`${id}:${salt.toString(36)}`);
  const bits = new Uint32Array(vector.buffer, vector.byteOffset, vector.length);
  for (let i = 0; i < bits.length; i++) {
    h = Math.imul(h ^ (bits[i] as number), 0x01000193);
    g = Math.imul(g ^ (bits[i] as number), 0x5bd1e995);
    g ^= g >>> 15;
  }
  h = fmix32(h);
  g = fmix32(g);
  return (g & 0x1fffff) * 0x1_0000_0000 + h;
}

/** Vectors of one dimension in a flat, growing Float32Array; a removed row is filled by the last. */
class VectorSpace {
  readonly dims: number;
  #data: Float32Array;
  #ids: string[] = [];
  readonly #rowOf = new Map<string, number>();

  constructor(dims: number) {
    this.dims = dims;
    this.#data = new Float32Array(dims * 64);
  }

  get size(): number {
    return this.#ids.length;
  }

  has(id: string): boolean {
    return this.#rowOf.has(id);
  }

  set(id: string, v: Float32Array): void {
    let row = this.#rowOf.get(id);
    if (row === undefined) {
      row = this.#ids.length;
      if ((row + 1) * this.dims > this.#data.length) {
        const grown = new Float32Array(Math.max(this.#data.length * 2, (row + 1) * this.dims));
        grown.set(this.#data);
        this.#data = grown;
      }
      this.#ids.push(id);
      this.#rowOf.set(id, row);
    }
    this.#data.set(v.subarray(0, this.dims), row * this.dims);
  }

  delete(id: string): void {
    const row = this.#rowOf.get(id);
    if (row === undefined) return;
    const last = this.#ids.length - 1;
    if (row !== last) {
      const moved = this.#ids[last] as string;
      this.#data.copyWithin(row * this.dims, last * this.dims, (last + 1) * this.dims);
      this.#ids[row] = moved;
      this.#rowOf.set(moved, row);
    }
    this.#ids.pop();
    this.#rowOf.delete(id);
    if (this.#data.length > 1024 * this.dims && this.#ids.length * this.dims * 4 < this.#data.length) {
      this.#data = this.#data.slice(0, this.#data.length / 2);
    }
  }

  vector(id: string): Float32Array | undefined {
    const row = this.#rowOf.get(id);
    return row === undefined ? undefined : this.#data.subarray(row * this.dims, (row + 1) * this.dims);
  }

  score(id: string, q: Float32Array): number | undefined {
    const row = this.#rowOf.get(id);
    return row === undefined ? undefined : dotAt(this.#data, row * this.dims, q, this.dims);
  }

  /** The n rows nearest q by inner product (ties by id), among those the filter keeps. */
  top(q: Float32Array, n: number, filter?: (id: string) => boolean): Ranked[] {
    const top = new TopK(n);
    const dims = this.dims;
    const data = this.#data;
    const ids = this.#ids;
    for (let row = 0; row < ids.length; row++) {
      const score = dotAt(data, row * dims, q, dims);
      if (score < top.threshold) continue;
      const id = ids[row] as string;
      if (filter !== undefined && !filter(id)) continue;
      top.push(score, id);
    }
    return top.sorted();
  }
}
