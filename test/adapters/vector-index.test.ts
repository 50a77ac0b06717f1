// The usearch-backed AnnPort (src/adapters/vector-index.ts): add/remove/has/search, save and load
// through the checksum (a damaged file is refused before usearch reads it — its loader aborts the
// process on one), and recall@10 against exact search on a few thousand real embeddings, alone and
// under MemoryIndex fed in slices by work().
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EMBED_DIMS, dot, embed } from "../../src/core/self/embed.ts";
import { MemoryIndex } from "../../src/core/self/search.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { loadVectorIndex, openVectorIndex, usearchStatus, type VectorIndex } from "../../src/adapters/vector-index.ts";

const status = usearchStatus();
const skip = status.ok ? false : `usearch does not load here: ${status.error}`;

function open(dims = EMBED_DIMS): VectorIndex {
  const opened = openVectorIndex(dims);
  assert.ok(opened.ok, opened.ok ? "" : opened.error);
  return opened.index;
}

/** Sentences from the retrieval set's words, recombined (seeded): realistic text, many near neighbours. */
function sentences(n: number, seed: number): string[] {
  const set = JSON.parse(readFileSync(new URL("../testdata/self-retrieval.json", import.meta.url), "utf8")) as { memories: { text: string }[]; distractors: { text: string }[] };
  const vocabulary = [...set.memories, ...set.distractors].flatMap((m) => m.text.split(" "));
  const r = createRng(seed);
  return Array.from({ length: n }, () => Array.from({ length: 6 + r.int(8) }, () => vocabulary[r.int(vocabulary.length)]).join(" "));
}

function exactTop(vectors: readonly Float32Array[], q: Float32Array, k: number): { row: number; score: number }[] {
  return vectors.map((v, row) => ({ row, score: dot(v, q) })).sort((a, b) => b.score - a.score).slice(0, k);
}

test("vector index: add, has, search (1 − inner product), remove, size; bad keys and vectors are refused", { skip }, () => {
  const index = open(4);
  assert.equal(index.size, 0);
  assert.deepEqual(index.search(new Float32Array([1, 0, 0, 0]), 3), []);
  index.add(1, new Float32Array([1, 0, 0, 0]));
  index.add(2, new Float32Array([0, 1, 0, 0]));
  index.add(2 ** 53 - 1, new Float32Array([0, 0, 1, 0]));
  assert.equal(index.size, 3);
  assert.equal(index.has(2 ** 53 - 1), true);
  const hits = index.search(new Float32Array([0, 0.8, 0.6, 0]), 2);
  assert.deepEqual(hits.map((h) => h.key), [2, 2 ** 53 - 1]);
  assert.ok(Math.abs((hits[0]?.distance ?? 0) - 0.2) < 1e-6);
  index.remove(2);
  assert.equal(index.has(2), false);
  assert.equal(index.size, 2);
  index.add(2, new Float32Array([0, 1, 0, 0]));
  assert.equal(index.has(2), true, "a removed key may be added again");
  assert.throws(() => index.add(1, new Float32Array([1, 0, 0, 0])), /Duplicate/);
  assert.throws(() => index.add(-1, new Float32Array(4)), RangeError);
  assert.throws(() => index.add(1.5, new Float32Array(4)), RangeError);
  assert.throws(() => index.add(3, new Float32Array(5)), RangeError);
  assert.throws(() => index.search(new Float64Array(4) as unknown as Float32Array, 1), RangeError);
  assert.deepEqual(index.search(new Float32Array(4), 0), []);
  assert.equal(openVectorIndex(0).ok, false);
  assert.equal(openVectorIndex(8, { connectivity: 1 }).ok, false);
});

test("vector index: save and load through the checksum; damaged, missing or foreign files are refused", { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), "pk-vindex-"));
  try {
    const index = open();
    const vectors = sentences(300, 1).map((t) => embed(t));
    vectors.forEach((v, i) => index.add(1000 + i, v));
    const path = join(dir, "memory.usearch");
    assert.deepEqual(index.save(path), { ok: true });
    const loaded = loadVectorIndex(path, EMBED_DIMS);
    assert.ok(loaded.ok, loaded.ok ? "" : loaded.error);
    assert.equal(loaded.index.size, 300);
    assert.ok(loaded.index.has(1000) && loaded.index.has(1299) && !loaded.index.has(999));
    const q = embed("the garage light needs a new bulb");
    assert.deepEqual(loaded.index.search(q, 10), index.search(q, 10));

    assert.match(loadVectorIndex(path, 256).ok ? "" : (loadVectorIndex(path, 256) as { error: string }).error, /256-dimension/);
    assert.equal(loadVectorIndex(join(dir, "absent.usearch"), EMBED_DIMS).ok, false);
    // One byte changed in the middle: refused by the checksum, the process still alive.
    const bytes = readFileSync(path);
    bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] as number) ^ 0xff;
    writeFileSync(path, bytes);
    const flipped = loadVectorIndex(path, EMBED_DIMS);
    assert.equal(flipped.ok, false);
    assert.match(flipped.ok ? "" : flipped.error, /checksum/);
    // Torn (a crash mid-write) and garbage under a forged length: refused the same way.
    truncateSync(path, 100);
    assert.equal(loadVectorIndex(path, EMBED_DIMS).ok, false);
    writeFileSync(path, Buffer.alloc(4096, 0x41));
    writeFileSync(`${path}.sum`, JSON.stringify({ bytes: 4096, sha256: "0".repeat(64), dims: EMBED_DIMS }));
    assert.equal(loadVectorIndex(path, EMBED_DIMS).ok, false);
    writeFileSync(`${path}.sum`, "not json");
    assert.equal(loadVectorIndex(path, EMBED_DIMS).ok, false);
    // Saving again over it works.
    assert.deepEqual(index.save(path), { ok: true });
    assert.equal(loadVectorIndex(path, EMBED_DIMS).ok, true);
    assert.equal(index.save(join(dir, "no", "such", "dir", "x")).ok, false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("vector index: recall@10 against exact search ≥ 0.95 on 4,000 embeddings", { skip }, () => {
  const vectors = sentences(4_000, 2).map((t) => embed(t));
  const index = open();
  vectors.forEach((v, i) => index.add(i, v));
  const queries = sentences(200, 3).map((t) => embed(t));
  let recall = 0;
  for (const q of queries) {
    const exact = exactTop(vectors, q, 10);
    const floor = (exact[9] as { score: number }).score - 1e-6;
    const found = index.search(q, 10);
    recall += found.filter((h) => dot(vectors[h.key] as Float32Array, q) >= floor).length / 10;
  }
  recall /= queries.length;
  assert.ok(recall >= 0.95, `recall@10 ${recall}`);
});

test("vector index: under MemoryIndex (fed by work() in slices) vector search keeps recall@10 ≥ 0.95 and filters keep k", { skip }, () => {
  const texts = sentences(3_000, 4);
  const vectors = texts.map((t) => embed(t));
  const index = new MemoryIndex({ ann: open(), exactMax: 500 });
  texts.forEach((t, i) => index.add(`m${i}`, t, vectors[i]));
  let slices = 0;
  while (index.work(256) > 0) slices++;
  assert.ok(slices >= 10);
  assert.equal(index.stats().path, "ann");
  assert.equal(index.stats().annSize, 3_000);
  const queries = sentences(150, 5).map((t) => embed(t));
  let recall = 0;
  for (const q of queries) {
    const exact = exactTop(vectors, q, 10);
    const floor = (exact[9] as { score: number }).score - 1e-6;
    const found = index.search("", 10, { mode: "vector", queryVector: q });
    recall += found.filter((h) => dot(vectors[Number(h.id.slice(1))] as Float32Array, q) >= floor).length / 10;
    const filtered = index.search("", 10, { mode: "vector", queryVector: q, filter: (id) => Number(id.slice(1)) % 97 === 0 });
    assert.equal(filtered.length, 10);
  }
  assert.ok(recall / queries.length >= 0.95, `recall@10 ${recall / queries.length}`);
  // Removing from the index removes from the HNSW.
  for (let i = 0; i < 100; i++) index.remove(`m${i}`);
  assert.equal(index.stats().annSize, 2_900);
  assert.ok(index.search("", 20, { mode: "vector", queryVector: vectors[5] as Float32Array }).every((h) => Number(h.id.slice(1)) >= 100));
});
