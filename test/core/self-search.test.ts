// The memory's search (src/core/self/bm25.ts, search.ts): BM25 against numbers worked out by hand,
// add/replace/remove, filters that keep k, the ANN path (over-fetch, queued vectors, stale keys, a
// failing port), the extra vector space, hostile arguments, a brute-force reference for the exact
// path (fast-check), and the measured ordering on the retrieval set: hybrid ≥ each signal alone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { Bm25Index } from "../../src/core/self/bm25.ts";
import { EMBED_DIMS, dot, embed, stem } from "../../src/core/self/embed.ts";
import { MemoryIndex, type AnnPort, type SearchMode } from "../../src/core/self/search.ts";
import { createRng } from "../../src/core/util/rng.ts";

const close = (a: number | undefined, b: number, eps = 1e-9): void => assert.ok(a !== undefined && Math.abs(a - b) < eps, `${a} ≠ ${b}`);

test("bm25: scores match the Okapi formula worked out by hand (k1 = 1.2, b = 0.75)", () => {
  const bm = new Bm25Index();
  bm.add("a", "cat sat mat"); // 3 terms
  bm.add("b", "cat cat dog"); // 3 terms
  bm.add("c", "dog barks loudly tonight"); // 4 terms: dog bark loudly tonight
  // N = 3, avgdl = 10/3. idf(cat) = idf(dog) = ln(1 + (3 − 2 + 0.5)/(2 + 0.5)) = ln 1.6 = 0.470004.
  // a, cat (tf 1, |d| 3): 0.470004 · 2.2 / (1 + 1.2 · (0.25 + 0.75 · 0.9)) = 0.490051
  // b, cat (tf 2, |d| 3): 0.470004 · 4.4 / (2 + 1.11) = 0.664957; b, dog (tf 1): 0.490051
  // c, dog (tf 1, |d| 4): 0.470004 · 2.2 / (1 + 1.2 · (0.25 + 0.75 · 1.2)) = 0.434457
  const cat = bm.search("cat", 10);
  assert.deepEqual(cat.map((h) => h.id), ["b", "a"]);
  close(cat[0]?.score, 0.6649569031129379);
  close(cat[1]?.score, 0.4900511774126154);
  const both = bm.search("a cat and a dog", 10);
  assert.deepEqual(both.map((h) => h.id), ["b", "a", "c"]);
  close(both[0]?.score, 1.1550080805255534);
  close(both[2]?.score, 0.4344571362775708);
  // "barking" and "barks" both stem to "bark": idf(bark) = ln(1 + (3 − 1 + 0.5)/(1 + 0.5)) = ln(8/3); score(c) = ln(8/3) · 2.2 / 2.38.
  close(bm.search("barking", 1)[0]?.score, (Math.log(8 / 3) * 2.2) / 2.38);
  assert.equal(bm.documentFrequency("cat"), 2);
  close(bm.score("b", ["cat", "dog"]), 1.1550080805255534);
  assert.equal(bm.score("zzz", ["cat"]), undefined);
  assert.deepEqual(bm.search("the of and", 10), [], "stop words only: nothing");
});

test("bm25: add, replace and remove update the postings in place", () => {
  const bm = new Bm25Index();
  bm.add("x", "blue bike");
  bm.add("y", "red bike");
  assert.equal(bm.size, 2);
  assert.equal(bm.documentFrequency(stem("bike")), 2, "terms are stems (bike → bik)");
  bm.add("x", "green car");
  assert.equal(bm.size, 2);
  assert.equal(bm.documentFrequency(stem("bike")), 1);
  assert.equal(bm.documentFrequency("blue"), 0);
  assert.deepEqual(bm.search("car", 5).map((h) => h.id), ["x"]);
  assert.equal(bm.remove("y"), true);
  assert.equal(bm.remove("y"), false);
  assert.equal(bm.terms, 2, "a term no document holds is dropped");
  bm.remove("x");
  assert.equal(bm.size, 0);
  assert.equal(bm.terms, 0);
  assert.deepEqual(bm.search("car", 5), []);
  // Document numbers are reused without leaking old terms.
  bm.add("z", "car");
  assert.deepEqual(bm.search("car", 5).map((h) => h.id), ["z"]);
  assert.deepEqual(bm.search("blue", 5), []);
});

test("index: add, replace (same id), remove, has, size; every mode finds what it should", () => {
  const index = new MemoryIndex();
  index.add("piano", "My daughter's piano lesson is on Thursday at 5.");
  index.add("pi", "The Raspberry Pi in the garage runs hot in summer.");
  index.add("bins", "Bin day is Tuesday; recycling goes out every other week.");
  assert.equal(index.size, 3);
  for (const mode of ["hybrid", "bm25", "vector"] as SearchMode[]) {
    const hits = index.search("when is the piano lesson", 2, { mode });
    assert.equal(hits[0]?.id, "piano", mode);
    assert.equal(hits[0]?.bm25 === undefined, mode === "vector");
    assert.equal(hits[0]?.vector === undefined, mode === "bm25");
  }
  index.add("piano", "Leo's football practice is on Tuesday.");
  assert.equal(index.size, 3);
  assert.notEqual(index.search("piano lesson", 1, { mode: "bm25" })[0]?.id, "piano", "the old text is gone");
  assert.equal(index.search("football practice", 1)[0]?.id, "piano");
  index.remove("piano");
  index.remove("piano");
  assert.equal(index.has("piano"), false);
  assert.equal(index.size, 2);
  assert.ok(index.search("football practice", 5).every((h) => h.id !== "piano"));
});

test("index: a filter never shrinks the answer below k while k documents match", () => {
  const index = new MemoryIndex();
  for (let i = 0; i < 300; i++) index.add(`m${i}`, `note ${i}: the ${i % 2 === 0 ? "garage" : "kitchen"} light ${i % 7} needs a bulb`);
  const even = (id: string): boolean => Number(id.slice(1)) % 2 === 0;
  const rare = (id: string): boolean => Number(id.slice(1)) % 50 === 0; // 6 documents
  for (const mode of ["hybrid", "bm25", "vector"] as SearchMode[]) {
    const hits = index.search("kitchen light bulb", 20, { mode, filter: even });
    assert.equal(hits.length, 20, mode);
    assert.ok(hits.every((h) => even(h.id)));
    assert.equal(index.search("kitchen light bulb", 20, { mode, filter: rare }).length, 6, mode);
  }
});

/** An in-memory AnnPort: exact underneath, but it can return only its `reach` nearest (a poor approximation) or throw. */
class TestAnn implements AnnPort {
  readonly vectors = new Map<number, Float32Array>();
  reach = Infinity;
  broken = false;
  searches = 0;
  get size(): number {
    return this.vectors.size;
  }
  add(key: number, vector: Float32Array): void {
    if (this.broken) throw new Error("disk full");
    assert.ok(!this.vectors.has(key), "a key is never added twice");
    this.vectors.set(key, Float32Array.from(vector));
  }
  remove(key: number): void {
    this.vectors.delete(key);
  }
  has(key: number): boolean {
    return this.vectors.has(key);
  }
  search(vector: Float32Array, k: number): Array<{ key: number; distance: number }> {
    if (this.broken) throw new Error("index corrupted");
    this.searches++;
    const all = [...this.vectors].map(([key, v]) => ({ key, distance: 1 - dot(v, vector) }));
    all.sort((a, b) => a.distance - b.distance);
    return all.slice(0, Math.min(k, this.reach));
  }
}

function randomVector(seed: number): Float32Array {
  const r = createRng(seed);
  const v = new Float32Array(EMBED_DIMS);
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    v[i] = r.next() - 0.5;
    n += (v[i] as number) ** 2;
  }
  for (let i = 0; i < v.length; i++) v[i] = (v[i] as number) / Math.sqrt(n);
  return v;
}

test("index: beyond exactMax it searches the ANN port, scans queued vectors exactly, and work() feeds the port in slices", () => {
  const ann = new TestAnn();
  const index = new MemoryIndex({ ann, exactMax: 50 });
  for (let i = 0; i < 200; i++) index.add(`m${i}`, `memory number ${i}`, randomVector(i));
  assert.equal(ann.size, 0, "add() only queues");
  assert.equal(index.stats().pendingAnn, 200);
  assert.equal(index.work(60), 140);
  assert.equal(ann.size, 60);
  while (index.work(60) > 0);
  assert.equal(ann.size, 200);
  assert.equal(index.stats().path, "ann");
  index.add("late", "a memory added after the index was built", randomVector(999));
  const before = ann.searches;
  const hits = index.search("", 1, { mode: "vector", queryVector: randomVector(999) });
  assert.equal(hits[0]?.id, "late", "a queued vector is found before work() moves it");
  assert.ok(ann.searches > before, "through the port");
  close(hits[0]?.score, dot(randomVector(999), randomVector(999)), 1e-6);
  // Removing takes it out of the port.
  index.work(10);
  assert.equal(ann.size, 201);
  index.remove("late");
  assert.equal(ann.size, 200);
});

test("index: on the ANN path a filter is met by over-fetching, then by the exact scan", () => {
  const ann = new TestAnn();
  const index = new MemoryIndex({ ann, exactMax: 10 });
  for (let i = 0; i < 400; i++) index.add(`m${i}`, `memory ${i}`, randomVector(i));
  index.work(1_000);
  const only = (id: string): boolean => Number(id.slice(1)) % 40 === 0; // 10 documents
  const q = randomVector(12345);
  const reference = [...Array(400).keys()].filter((i) => i % 40 === 0).map((i) => ({ id: `m${i}`, score: dot(randomVector(i), q) }));
  reference.sort((a, b) => b.score - a.score);
  const hits = index.search("", 5, { mode: "vector", queryVector: q, filter: only });
  assert.deepEqual(hits.map((h) => h.id), reference.slice(0, 5).map((r) => r.id));
  ann.reach = 8; // an index that only ever returns its 8 nearest: the filter leaves too few, exact takes over
  const fallback = index.search("", 5, { mode: "vector", queryVector: q, filter: only });
  assert.deepEqual(fallback.map((h) => h.id), reference.slice(0, 5).map((r) => r.id));
  assert.equal(index.search("", 50, { mode: "vector", queryVector: q, filter: only }).length, 10);
});

test("index: an ANN index loaded with the same documents is reused (has), keys nobody claims are dropped", () => {
  const ann = new TestAnn();
  const first = new MemoryIndex({ ann, exactMax: 5 });
  for (let i = 0; i < 30; i++) first.add(`m${i}`, `memory ${i}`, randomVector(i));
  first.work(100);
  // A node restarting with the saved index, but m0..m4 were removed meanwhile.
  const second = new MemoryIndex({ ann, exactMax: 5 });
  for (let i = 5; i < 30; i++) second.add(`m${i}`, `memory ${i}`, randomVector(i));
  assert.equal(second.stats().pendingAnn, 0, "every document was found in the index");
  const hits = second.search("", 3, { mode: "vector", queryVector: randomVector(2) });
  assert.ok(hits.every((h) => Number(h.id.slice(1)) >= 5), "unclaimed keys are never answered");
  assert.ok(second.stats().staleAnnKeys >= 1);
  second.work(100);
  assert.ok(ann.size < 30, "stale keys removed by work()");
  // A changed vector for the same id is a new key: queued, not trusted.
  second.add("m7", "memory 7, rewritten", randomVector(777));
  assert.equal(second.stats().pendingAnn, 1);
});

test("index: an ANN port that throws is dropped; search stays exact and says why", () => {
  const ann = new TestAnn();
  const index = new MemoryIndex({ ann, exactMax: 5 });
  for (let i = 0; i < 20; i++) index.add(`m${i}`, `memory ${i}`, randomVector(i));
  index.work(100);
  ann.broken = true;
  const hits = index.search("", 3, { mode: "vector", queryVector: randomVector(4) });
  assert.equal(hits[0]?.id, "m4");
  const stats = index.stats();
  assert.equal(stats.ann, false);
  assert.equal(stats.path, "exact");
  assert.match(stats.annError ?? "", /corrupted/);
  index.add("m99", "still indexed", randomVector(99));
  assert.equal(index.work(10), 0);
  assert.equal(index.search("", 1, { mode: "vector", queryVector: randomVector(99) })[0]?.id, "m99");
});

test("index: an extra vector space (a mind's embeddings) is fused as a third signal", () => {
  const index = new MemoryIndex();
  const space = "mind:test-768";
  const e = (seed: number): Float32Array => randomVector(seed).subarray(0, 64).map((x) => x * 3);
  index.add("a", "the garage light", undefined, { space, vector: e(1) });
  index.add("b", "the kitchen light", undefined, { space, vector: e(2) });
  index.add("c", "the hallway light");
  const plain = index.search("light", 3);
  const steered = index.search("light", 3, { extraQuery: { space, vector: e(2) } });
  assert.equal(steered[0]?.id, "b");
  assert.ok((steered[0]?.extra ?? 0) > 0);
  assert.equal(plain.find((h) => h.id === "c")?.extra, undefined);
  // Refused: other dimensions in the same space, non-finite values; counted, the document still indexed.
  index.add("d", "the loft light", undefined, { space, vector: new Float32Array(10) });
  index.add("f", "the porch light", undefined, { space, vector: new Float32Array(64).fill(Number.NaN) });
  assert.equal(index.stats().extraRefused, 2);
  assert.equal(index.stats().extra[space], 2);
  assert.ok(index.has("d") && index.has("f"));
  // An extra query of the wrong size is ignored, not an error.
  assert.equal(index.search("light", 5, { extraQuery: { space, vector: new Float32Array(3) } }).length, 5);
  index.remove("a");
  assert.equal(index.stats().extra[space], 1);
});

test("index: hostile arguments never throw", () => {
  const index = new MemoryIndex();
  assert.deepEqual(index.search("anything", 5), []);
  index.add("a", "the garage light");
  index.add("b", 42 as unknown as string);
  index.add("c", "bad vector", new Float32Array(EMBED_DIMS).fill(Number.NaN));
  index.add("d", "short vector", new Float32Array(3));
  assert.equal(index.stats().vectorsRecomputed, 2);
  assert.deepEqual(index.vector("c"), embed("bad vector"));
  for (const k of [Number.NaN, -1, 0, Infinity, 1e12, 2.7]) {
    const hits = index.search("light", k);
    assert.ok(hits.length <= 4);
  }
  assert.equal(index.search("light", 2.7).length, 2);
  assert.equal(index.search("light", Infinity).length, 4, "Infinity: every document, up to kMax");
  assert.ok(index.search(undefined as unknown as string, 3).length <= 3);
  assert.ok(index.search("light", 3, { queryVector: new Float32Array(1) }).length > 0, "a wrong query vector: embed(query) instead");
  assert.ok(index.search("x".repeat(1_000_000), 3).length <= 3);
  assert.equal(index.work(-5), 0);
  const withAnn = new MemoryIndex({ ann: new TestAnn() });
  withAnn.add("a", "one");
  withAnn.add("b", "two");
  assert.equal(withAnn.work(Number.NaN), 2, "NaN moves nothing");
  assert.equal(withAnn.work(Infinity), 0, "Infinity moves everything");
});

test("index: the ranking depends on the documents, not on the order they were added", () => {
  const texts = ["the garage light", "the kitchen light", "light in the loft", "garage door", "the light is off", "lights"];
  const forward = new MemoryIndex();
  const backward = new MemoryIndex();
  texts.forEach((t, i) => forward.add(`t${i}`, t));
  [...texts].reverse().forEach((t, i) => backward.add(`t${texts.length - 1 - i}`, t));
  for (const mode of ["hybrid", "bm25", "vector"] as SearchMode[]) {
    assert.deepEqual(forward.search("garage light", 6, { mode }), backward.search("garage light", 6, { mode }), mode);
  }
});

test("index: exact vector search equals a brute-force reference under any adds, replaces, removes and filters", () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant("add" as const), id: fc.integer({ min: 0, max: 40 }), seed: fc.integer({ min: 0, max: 1_000_000 }) }),
    fc.record({ kind: fc.constant("remove" as const), id: fc.integer({ min: 0, max: 40 }) }),
  );
  fc.assert(fc.property(fc.array(op, { maxLength: 120 }), fc.integer({ min: 0, max: 1_000_000 }), fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 4 }),
    (ops, qseed, k, modulo) => {
      const index = new MemoryIndex();
      const live = new Map<string, Float32Array>();
      for (const o of ops) {
        const id = `d${o.id}`;
        if (o.kind === "add") {
          const v = randomVector(o.seed);
          index.add(id, `doc ${o.id}`, v);
          live.set(id, v);
        } else {
          index.remove(id);
          live.delete(id);
        }
      }
      assert.equal(index.size, live.size);
      const q = randomVector(qseed);
      const filter = (id: string): boolean => Number(id.slice(1)) % modulo === 0;
      const reference = [...live].filter(([id]) => filter(id)).map(([id, v]) => ({ id, score: dot(v, q) }));
      reference.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1));
      const got = index.search("", k, { mode: "vector", queryVector: q, filter }).map((h) => ({ id: h.id, score: h.score }));
      assert.deepEqual(got, reference.slice(0, k));
    }), { numRuns: 200 });
});

interface RetrievalSet {
  readonly memories: readonly { id: string; text: string }[];
  readonly distractors: readonly { id: string; text: string }[];
  readonly queries: readonly { query: string; relevant: string; split: string; style: string }[];
}

test("retrieval set: hybrid recall@5 and MRR at least those of BM25 alone and of the vector alone", () => {
  const set = JSON.parse(readFileSync(new URL("../testdata/self-retrieval.json", import.meta.url), "utf8")) as RetrievalSet;
  assert.ok(set.memories.length >= 220 && set.queries.length >= 220 && set.distractors.length >= 200);
  const ids = new Set([...set.memories, ...set.distractors].map((m) => m.id));
  assert.equal(ids.size, set.memories.length + set.distractors.length, "ids are unique");
  assert.ok(set.queries.every((q) => set.memories.some((m) => m.id === q.relevant)), "every query names a memory");
  const index = new MemoryIndex();
  for (const m of [...set.memories, ...set.distractors]) index.add(m.id, m.text);
  const measure = (mode: SearchMode): { recall5: number; mrr: number } => {
    let recall5 = 0;
    let mrr = 0;
    for (const q of set.queries) {
      const rank = index.search(q.query, 10, { mode }).findIndex((h) => h.id === q.relevant);
      if (rank >= 0 && rank < 5) recall5++;
      if (rank >= 0) mrr += 1 / (rank + 1);
    }
    return { recall5: recall5 / set.queries.length, mrr: mrr / set.queries.length };
  };
  const hybrid = measure("hybrid");
  const bm25 = measure("bm25");
  const vector = measure("vector");
  const line = `hybrid ${JSON.stringify(hybrid)}, bm25 ${JSON.stringify(bm25)}, vector ${JSON.stringify(vector)}`;
  assert.ok(hybrid.recall5 >= bm25.recall5 && hybrid.recall5 >= vector.recall5, line);
  assert.ok(hybrid.mrr >= bm25.mrr && hybrid.mrr >= vector.mrr, line);
  assert.ok(vector.recall5 > bm25.recall5, `the vector is better at paraphrase than BM25: ${line}`);
});
