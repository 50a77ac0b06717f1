// An incremental Okapi BM25 index (issue 14; ADR 014): documents are added and removed by id and
// the postings are updated in place, so an add costs its own terms and nothing is ever rebuilt.
//
// Score of a document d for a query Q (each distinct query term once):
//
//   score(d, Q) = Σ_{t ∈ Q} idf(t) · tf(t, d) · (k1 + 1) / (tf(t, d) + k1 · (1 − b + b · |d| / avgdl))
//   idf(t)      = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5))
//
// N documents, n(t) of them containing t, |d| the number of terms of d, avgdl the mean of |d|.
// The idf is Lucene's, which is never negative (a term in more than half of the documents still
// counts a little). k1 = 1.2 (how fast repeated terms saturate) and b = 0.75 (how much a long
// document is discounted), the usual values; on the retrieval set of ADR 014 the neighbours
// (k1 0.9–1.5, b 0.5–0.9) changed recall@5 by under a point. Terms come from embed.ts's tokens():
// stemmed, stop words left out.
import { tokens } from "./embed.ts";
import { TopK } from "./top-k.ts";

export interface Bm25Config {
  readonly k1: number;
  readonly b: number;
}

export const BM25_DEFAULTS: Bm25Config = { k1: 1.2, b: 0.75 };

export interface Bm25Hit {
  readonly id: string;
  readonly score: number;
}

export class Bm25Index {
  readonly #k1: number;
  readonly #b: number;
  /** term → (document number → term frequency). */
  readonly #postings = new Map<string, Map<number, number>>();
  /** id → document number, and back. */
  readonly #numbers = new Map<string, number>();
  readonly #ids: (string | undefined)[] = [];
  /** document number → its distinct terms (to remove it), and its length in terms. */
  readonly #terms: (readonly string[] | undefined)[] = [];
  readonly #lengths: number[] = [];
  /** Document numbers free for reuse. */
  readonly #free: number[] = [];
  #totalLength = 0;

  constructor(config: Bm25Config = BM25_DEFAULTS) {
    this.#k1 = config.k1;
    this.#b = config.b;
  }

  get size(): number {
    return this.#numbers.size;
  }

  /** Distinct terms held. */
  get terms(): number {
    return this.#postings.size;
  }

  has(id: string): boolean {
    return this.#numbers.has(id);
  }

  /** Indexes a document's text under id (a held id is replaced). */
  add(id: string, text: string): void {
    this.addTerms(id, tokens(text));
  }

  /** Indexes a document given as its terms (already tokenised). */
  addTerms(id: string, terms: readonly string[]): void {
    this.remove(id);
    const n = this.#free.pop() ?? this.#ids.length;
    const tf = new Map<string, number>();
    for (const t of terms) tf.set(t, (tf.get(t) ?? 0) + 1);
    for (const [t, count] of tf) {
      let posting = this.#postings.get(t);
      if (posting === undefined) {
        posting = new Map();
        this.#postings.set(t, posting);
      }
      posting.set(n, count);
    }
    this.#numbers.set(id, n);
    this.#ids[n] = id;
    this.#terms[n] = [...tf.keys()];
    this.#lengths[n] = terms.length;
    this.#totalLength += terms.length;
  }

  remove(id: string): boolean {
    const n = this.#numbers.get(id);
    if (n === undefined) return false;
    for (const t of this.#terms[n] ?? []) {
      const posting = this.#postings.get(t);
      if (posting === undefined) continue;
      posting.delete(n);
      if (posting.size === 0) this.#postings.delete(t);
    }
    this.#totalLength -= this.#lengths[n] ?? 0;
    this.#numbers.delete(id);
    this.#ids[n] = undefined;
    this.#terms[n] = undefined;
    this.#lengths[n] = 0;
    this.#free.push(n);
    return true;
  }

  /** The distinct terms of a query, in order. */
  static queryTerms(query: string): string[] {
    return [...new Set(tokens(query))];
  }

  /**
   * The k best documents for a query (score > 0), best first; ties by id. `filter` is applied
   * before ranking, so k matching documents come back whenever k match at least one term.
   */
  search(query: string, k: number, filter?: (id: string) => boolean): Bm25Hit[] {
    return this.searchTerms(Bm25Index.queryTerms(query), k, filter);
  }

  searchTerms(terms: readonly string[], k: number, filter?: (id: string) => boolean): Bm25Hit[] {
    if (k <= 0 || this.size === 0) return [];
    const scores = new Map<number, number>();
    const avgdl = this.#totalLength / this.size || 1;
    for (const t of terms) {
      const posting = this.#postings.get(t);
      if (posting === undefined) continue;
      const idf = this.#idf(posting.size);
      for (const [n, tf] of posting) {
        scores.set(n, (scores.get(n) ?? 0) + this.#termScore(idf, tf, this.#lengths[n] ?? 0, avgdl));
      }
    }
    const top = new TopK(k);
    for (const [n, score] of scores) {
      const id = this.#ids[n];
      if (id === undefined || score < top.threshold || (filter !== undefined && !filter(id))) continue;
      top.push(score, id);
    }
    return top.sorted();
  }

  /** The BM25 score of one document for the given query terms (0 when it matches none, undefined when not held). */
  score(id: string, terms: readonly string[]): number | undefined {
    const n = this.#numbers.get(id);
    if (n === undefined) return undefined;
    const avgdl = this.#totalLength / this.size || 1;
    let score = 0;
    for (const t of terms) {
      const posting = this.#postings.get(t);
      const tf = posting?.get(n);
      if (posting === undefined || tf === undefined) continue;
      score += this.#termScore(this.#idf(posting.size), tf, this.#lengths[n] ?? 0, avgdl);
    }
    return score;
  }

  /**
   * The score no document can reach for these terms: Σ idf(t) · (k1 + 1) over the terms held (a
   * document containing every term, infinitely often). score / bound is in [0, 1): how much of the
   * query a document matches, on a scale that does not depend on the other documents' scores.
   */
  bound(terms: readonly string[]): number {
    let sum = 0;
    for (const t of terms) {
      const posting = this.#postings.get(t);
      if (posting !== undefined) sum += this.#idf(posting.size) * (this.#k1 + 1);
    }
    return sum;
  }

  /** Documents holding a term (its document frequency). */
  documentFrequency(term: string): number {
    return this.#postings.get(term)?.size ?? 0;
  }

  #idf(df: number): number {
    return Math.log(1 + (this.size - df + 0.5) / (df + 0.5));
  }

  #termScore(idf: number, tf: number, length: number, avgdl: number): number {
    return (idf * tf * (this.#k1 + 1)) / (tf + this.#k1 * (1 - this.#b + (this.#b * length) / avgdl));
  }
}
