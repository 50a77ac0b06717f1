// The k best of a stream of (score, id) pairs, in O(n log k) with k slots: a binary heap whose root
// is the worst kept entry. Order: higher score first, then smaller id (so a ranking is a function of
// the set of documents, never of the order they were added or scanned in). NaN scores are ignored.

export interface Ranked {
  readonly id: string;
  readonly score: number;
}

export class TopK {
  readonly #k: number;
  readonly #scores: number[] = [];
  readonly #ids: string[] = [];

  constructor(k: number) {
    this.#k = Math.max(0, Math.floor(k));
  }

  get size(): number {
    return this.#ids.length;
  }

  /** The score an entry must beat to enter once k are held (−Infinity until then). */
  get threshold(): number {
    return this.#ids.length < this.#k ? -Infinity : (this.#scores[0] as number);
  }

  push(score: number, id: string): void {
    if (this.#k === 0 || Number.isNaN(score)) return;
    const n = this.#ids.length;
    if (n < this.#k) {
      this.#scores.push(score);
      this.#ids.push(id);
      this.#up(n);
      return;
    }
    if (!worse(this.#scores[0] as number, this.#ids[0] as string, score, id)) return;
    this.#scores[0] = score;
    this.#ids[0] = id;
    this.#down(0);
  }

  /** The kept entries, best first. */
  sorted(): Ranked[] {
    const out: Ranked[] = this.#ids.map((id, i) => ({ id, score: this.#scores[i] as number }));
    out.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return out;
  }

  #up(at: number): void {
    let i = at;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!worse(this.#scores[i] as number, this.#ids[i] as string, this.#scores[parent] as number, this.#ids[parent] as string)) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(at: number): void {
    const n = this.#ids.length;
    let i = at;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let w = i;
      if (l < n && worse(this.#scores[l] as number, this.#ids[l] as string, this.#scores[w] as number, this.#ids[w] as string)) w = l;
      if (r < n && worse(this.#scores[r] as number, this.#ids[r] as string, this.#scores[w] as number, this.#ids[w] as string)) w = r;
      if (w === i) return;
      this.#swap(i, w);
      i = w;
    }
  }

  #swap(i: number, j: number): void {
    const s = this.#scores[i] as number;
    this.#scores[i] = this.#scores[j] as number;
    this.#scores[j] = s;
    const id = this.#ids[i] as string;
    this.#ids[i] = this.#ids[j] as string;
    this.#ids[j] = id;
  }
}

/** True when (s1, id1) ranks below (s2, id2). */
function worse(s1: number, id1: string, s2: number, id2: string): boolean {
  return s1 < s2 || (s1 === s2 && id1 > id2);
}
