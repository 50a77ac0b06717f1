// Distributed KV attention (src/core/brain/dkva.ts): the shard store, the partial softmax, and the
// exact log-sum-exp merge against single-node attention — for contiguous, round-robin, uneven and
// empty shards, large scores, prefill with causal masks by global position, and any merge order.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { createRng, type Rng } from "../../../src/core/util/rng.ts";
import {
  checkPartial, combine, emptyPartial, fullAttention, KvShard, mergePartials, normalize, partialAttention,
  type AttentionPartial,
} from "../../../src/core/brain/dkva.ts";

type Policy = "contiguous" | "uneven" | "round-robin" | "random" | "with-empty" | "all-but-one-empty";

/** Which shard holds each global position 0..T−1. */
function assignment(rng: Rng, T: number, shards: number, policy: Policy): number[] {
  switch (policy) {
    case "contiguous":
      return Array.from({ length: T }, (_, t) => Math.min(shards - 1, Math.floor((t * shards) / T)));
    case "uneven": {
      const cuts = Array.from({ length: shards - 1 }, () => rng.int(T + 1)).sort((a, b) => a - b);
      return Array.from({ length: T }, (_, t) => cuts.filter((c) => c <= t).length);
    }
    case "round-robin":
      return Array.from({ length: T }, (_, t) => t % shards);
    case "random":
      return Array.from({ length: T }, () => rng.int(shards));
    case "with-empty": // shard 0 never gets a position
      return Array.from({ length: T }, () => (shards === 1 ? 0 : 1 + rng.int(shards - 1)));
    case "all-but-one-empty": {
      const only = rng.int(shards);
      return Array.from({ length: T }, () => only);
    }
  }
}

/** Random K, V (T×d) in [−1, 1] and q scaled so that the largest |score| over all heads is `scoreMax`; all f32. */
function data(rng: Rng, T: number, d: number, nHeads: number, scoreMax: number): { K: Float32Array; V: Float32Array; q: Float32Array } {
  const u = (): number => rng.next() * 2 - 1;
  const K = Float32Array.from({ length: T * d }, u);
  const V = Float32Array.from({ length: T * d }, u);
  const q0 = Float64Array.from({ length: d }, u);
  const dh = d / nHeads;
  let top = 0;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      let s = 0;
      for (let i = 0; i < dh; i++) s += (q0[h * dh + i] as number) * (K[t * d + h * dh + i] as number);
      top = Math.max(top, Math.abs(s / Math.sqrt(dh)));
    }
  }
  const q = Float32Array.from(q0, (x) => (x * scoreMax) / Math.max(top, 1e-12));
  return { K, V, q };
}

function shardsFor(K: Float32Array, V: Float32Array, d: number, owner: number[], shards: number, layer = 0, nLayers = 1): KvShard[] {
  const out = Array.from({ length: shards }, () => new KvShard({ nLayers, d, capacity: Math.max(2, owner.length), initialRows: 2 }));
  owner.forEach((s, t) => {
    const r = (out[s] as KvShard).append(layer, t, K.subarray(t * d, (t + 1) * d), V.subarray(t * d, (t + 1) * d));
    assert.ok(r.ok, r.ok ? "" : r.error);
  });
  return out;
}

/** max |a − b| / max |b| (the error relative to the output's scale). */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs((a[i] as number) - (b[i] as number)));
    scale = Math.max(scale, Math.abs(b[i] as number));
  }
  return scale === 0 ? diff : diff / scale;
}

function mergedAt(shards: KvShard[], q: Float32Array, pos: number, nHeads: number, out: Float32Array | Float64Array, layer = 0): { emptyHeads: number } {
  const d = q.length;
  const partials = shards.map((s) => partialAttention(s, layer, q, pos, nHeads));
  for (const p of partials) assert.equal(checkPartial(p, nHeads, d / nHeads), undefined);
  return mergePartials(partials, nHeads, d / nHeads, out);
}

test("dkva: KvShard stores rows by ascending global position, bounded, with failures as values", () => {
  const shard = new KvShard({ nLayers: 2, d: 4, capacity: 5, initialRows: 1 });
  const row = (x: number): Float32Array => Float32Array.from([x, x + 1, x + 2, x + 3]);
  for (const p of [3, 7, 8, 20]) assert.deepEqual(shard.append(1, p, row(p), row(-p)), { ok: true });
  assert.deepEqual([...shard.positions(1)], [3, 7, 8, 20]);
  assert.deepEqual([...shard.positions(0)], []);
  const view = shard.view(1);
  assert.equal(view.count, 4);
  assert.deepEqual([...view.k.subarray(4, 8)], [7, 8, 9, 10]);
  assert.deepEqual([...view.v.subarray(12, 16)], [-20, -19, -18, -17]);

  const fail = (r: ReturnType<KvShard["append"]>): string => (r.ok ? "ok" : r.reason);
  assert.equal(fail(shard.append(1, 20, row(0), row(0))), "order", "a duplicate position is refused");
  assert.equal(fail(shard.append(1, 5, row(0), row(0))), "order", "positions ascend");
  assert.equal(fail(shard.append(2, 1, row(0), row(0))), "layer");
  assert.equal(fail(shard.append(-1, 1, row(0), row(0))), "layer");
  assert.equal(fail(shard.append(0, 1, new Float32Array(3), row(0))), "shape");
  assert.equal(fail(shard.append(0, 1.5, row(0), row(0))), "position");
  assert.equal(fail(shard.append(0, 2 ** 32, row(0), row(0))), "position");
  assert.equal(fail(shard.append(1, 21, row(0), row(0))), "ok");
  const full = shard.append(1, 22, row(0), row(0));
  assert.equal(fail(full), "full");
  assert.match(full.ok ? "" : full.error, /capacity of 5/);
  assert.equal(shard.count(1), 5, "a refused append stores nothing");

  shard.truncate(8);
  assert.deepEqual([...shard.positions(1)], [3, 7]);
  assert.equal(fail(shard.append(1, 8, row(8), row(8))), "ok", "after truncate the sequence can be replayed");
  assert.ok(shard.bytes() >= 5 * 4 * 4 * 2, "memory grew for five rows");
  assert.ok(shard.bytes() <= 2 * (5 * 4 * 4 * 2 + 5 * 4), "never beyond capacity");
  shard.clear();
  assert.deepEqual([...shard.positions(1)], []);
  assert.equal(shard.bytes(), 2 * (4 * 4 * 2 + 4), "clear gives the grown memory back");
});

test("dkva: one shard holding everything equals single-node attention; position 0 attends only to itself", () => {
  const rng = createRng(1);
  const { K, V, q } = data(rng, 50, 16, 4, 6);
  const [shard] = shardsFor(K, V, 16, Array.from({ length: 50 }, () => 0), 1);
  for (const pos of [0, 1, 17, 49, 200]) {
    const p = partialAttention(shard as KvShard, 0, q, pos, 4);
    assert.ok(relErr(normalize(p), fullAttention(K, V, q, pos, 4)) < 1e-14, `pos ${pos}`);
  }
  assert.deepEqual([...fullAttention(K, V, q, 0, 4)], [...V.subarray(0, 16)], "softmax over one position is that row");
  const none = partialAttention(shard as KvShard, 0, q, -1, 4);
  assert.deepEqual([...none.l], [0, 0, 0, 0]);
  assert.deepEqual([...none.m], [-Infinity, -Infinity, -Infinity, -Infinity]);
});

test("dkva: merged partials equal full attention for T up to 1024, d 8..64, 1..8 heads, every shard layout", (t) => {
  const rng = createRng(2024);
  const policies: Policy[] = ["contiguous", "uneven", "round-robin", "random", "with-empty", "all-but-one-empty"];
  const configs: [number, number, number][] = [[1, 8, 1], [7, 8, 2], [64, 16, 4], [200, 32, 8], [1024, 64, 8], [1024, 8, 1], [513, 64, 2]];
  let worst64 = 0;
  let worst32 = 0;
  let worstAt1024 = 0;
  let worst64At1024 = 0;
  for (const [T, d, nHeads] of configs) {
    for (const policy of policies) {
      const shards = 1 + rng.int(6) + (policy === "with-empty" ? 1 : 0);
      const { K, V, q } = data(rng, T, d, nHeads, 30);
      const nodes = shardsFor(K, V, d, assignment(rng, T, shards, policy), shards);
      for (const pos of [T - 1, rng.int(T), Math.floor(T / 3)]) {
        const reference = fullAttention(K, V, q, pos, nHeads);
        const o64 = new Float64Array(d);
        const o32 = new Float32Array(d);
        assert.equal(mergedAt(nodes, q, pos, nHeads, o64).emptyHeads, 0);
        mergedAt(nodes, q, pos, nHeads, o32);
        const e64 = relErr(o64, reference);
        const e32 = relErr(o32, reference);
        worst64 = Math.max(worst64, e64);
        worst32 = Math.max(worst32, e32);
        if (T === 1024) {
          worstAt1024 = Math.max(worstAt1024, e32);
          worst64At1024 = Math.max(worst64At1024, e64);
        }
        assert.ok(e32 <= 1e-6, `T ${T} d ${d} H ${nHeads} ${policy} pos ${pos}: relative error ${e32}`);
        assert.ok(e64 <= 1e-12, `T ${T} d ${d} H ${nHeads} ${policy} pos ${pos}: f64 relative error ${e64}`);
      }
    }
  }
  t.diagnostic(`max relative error: f64 output ${worst64.toExponential(2)}, f32 output ${worst32.toExponential(2)}, at T=1024 ${worst64At1024.toExponential(2)} (f64 output) and ${worstAt1024.toExponential(2)} (f32 output)`);
});

test("dkva: f32 storage stays within 1e-6 of an f64 reference on f64 data at moderate scores", (t) => {
  const rng = createRng(77);
  let worst = 0;
  for (const [T, d, nHeads] of [[1024, 64, 8], [1024, 16, 2], [300, 8, 1]] as const) {
    const u = (): number => rng.next() * 2 - 1;
    const K64 = Float64Array.from({ length: T * d }, u);
    const V64 = Float64Array.from({ length: T * d }, u);
    const q64 = Float64Array.from({ length: d }, () => u() * 2);
    const nodes = shardsFor(Float32Array.from(K64), Float32Array.from(V64), d, assignment(rng, T, 4, "uneven"), 4);
    const out = new Float64Array(d);
    mergePartials(nodes.map((s) => partialAttention(s, 0, q64, T - 1, nHeads)), nHeads, d / nHeads, out);
    const e = relErr(out, fullAttention(K64, V64, q64, T - 1, nHeads));
    worst = Math.max(worst, e);
    assert.ok(e <= 1e-6, `T ${T} d ${d}: ${e}`);
  }
  t.diagnostic(`max relative error vs f64 data: ${worst.toExponential(2)}`);
});

test("dkva: scores far beyond f32 exp range merge without overflow or underflow", () => {
  assert.equal(Math.fround(Math.exp(100)), Infinity, "naive exp of these scores overflows in f32");
  const rng = createRng(5);
  for (const scoreMax of [30, 100, 1000]) {
    const T = 300;
    const d = 16;
    const { K, V, q } = data(rng, T, d, 2, scoreMax);
    const nodes = shardsFor(K, V, d, assignment(rng, T, 5, "random"), 5);
    const out = new Float64Array(d);
    mergedAt(nodes, q, T - 1, 2, out);
    assert.ok(out.every(Number.isFinite), `scoreMax ${scoreMax}`);
    assert.ok(relErr(out, fullAttention(K, V, q, T - 1, 2)) <= 1e-12, `scoreMax ${scoreMax}`);
  }
  // One shard's scores are all ~1000 below another's: its weight underflows to exactly 0, harmlessly.
  const d = 4;
  const near = new KvShard({ nLayers: 1, d, capacity: 4 });
  const far = new KvShard({ nLayers: 1, d, capacity: 4 });
  const q = Float32Array.from([1, 0, 0, 0]);
  near.append(0, 0, Float32Array.from([2, 0, 0, 0]), Float32Array.from([1, 2, 3, 4]));
  far.append(0, 1, Float32Array.from([-2000, 0, 0, 0]), Float32Array.from([9, 9, 9, 9]));
  const out = new Float32Array(d);
  mergedAt([far, near], q, 5, 1, out);
  assert.deepEqual([...out], [1, 2, 3, 4]);
});

test("dkva: empty shards are skipped; a head with no visible position is zero and reported", () => {
  const d = 8;
  const nHeads = 2;
  const rng = createRng(9);
  const { K, V, q } = data(rng, 10, d, nHeads, 5);
  // Shard 0 holds 0..4, shard 1 holds 5..9, shard 2 nothing.
  const nodes = shardsFor(K, V, d, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1], 3);
  const out = new Float32Array(d);
  // At position 3 shard 1 sees nothing (causal by global position): its partial is empty.
  const p1 = partialAttention(nodes[1] as KvShard, 0, q, 3, nHeads);
  assert.deepEqual([...p1.l], [0, 0]);
  assert.equal(mergedAt(nodes, q, 3, nHeads, out).emptyHeads, 0);
  assert.ok(relErr(out, fullAttention(K, V, q, 3, nHeads)) < 1e-6);
  // Only the empty shards answer: zero output, both heads reported.
  out.fill(7);
  const r = mergePartials([emptyPartial(nHeads, 4), partialAttention(nodes[2] as KvShard, 0, q, 9, nHeads)], nHeads, 4, out);
  assert.deepEqual(r, { emptyHeads: 2 });
  assert.deepEqual([...out], new Array(d).fill(0));
  assert.deepEqual(mergePartials([], nHeads, 4, out), { emptyHeads: 2 });
  // One head empty in one partial, the other head empty in another.
  const a = partialAttention(nodes[0] as KvShard, 0, q, 9, nHeads);
  const b = partialAttention(nodes[1] as KvShard, 0, q, 9, nHeads);
  a.m[1] = -Infinity; a.l[1] = 0; a.o.fill(0, 4, 8);
  b.m[0] = -Infinity; b.l[0] = 0; b.o.fill(0, 0, 4);
  const o = new Float64Array(d);
  assert.deepEqual(mergePartials([a, b], nHeads, 4, o), { emptyHeads: 0 });
  assert.deepEqual([...o], [...normalize(a).subarray(0, 4), ...normalize(b).subarray(4, 8)]);
});

test("dkva: prefill — every query row of a sequence, causal by global position, matches single-node attention", () => {
  const rng = createRng(31);
  for (const policy of ["round-robin", "uneven", "with-empty"] as const) {
    const T = 96;
    const d = 32;
    const nHeads = 4;
    const nLayers = 2;
    const u = (): number => rng.next() * 2 - 1;
    // Layer 1 gets its own K/V; the query rows are a T×d matrix.
    const K = Float32Array.from({ length: T * d }, () => u() * 3);
    const V = Float32Array.from({ length: T * d }, u);
    const Q = Float32Array.from({ length: T * d }, () => u() * 3);
    const nodes = shardsFor(K, V, d, assignment(rng, T, 4, policy), 4, 1, nLayers);
    const out = new Float64Array(d);
    for (let row = 0; row < T; row++) {
      const q = Q.subarray(row * d, (row + 1) * d);
      mergedAt(nodes, q, row, nHeads, out, 1);
      assert.ok(relErr(out, fullAttention(K, V, q, row, nHeads)) <= 1e-12, `${policy} row ${row}`);
    }
    assert.equal(mergedAt(nodes, Q.subarray(0, d), T - 1, nHeads, out, 0).emptyHeads, nHeads, "layer 0 holds nothing");
  }
});

test("dkva: any permutation and any tree of combine gives the same result (property, f64)", () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 8 }), fc.constantFrom(1, 2, 4), fc.integer(), fc.constantFrom<Policy>("random", "uneven", "with-empty", "round-robin"),
    fc.double({ min: 0.5, max: 40, noNaN: true }),
    (T, shards, nHeads, seed, policy, scoreMax) => {
      const rng = createRng(seed);
      const d = nHeads * 4;
      const { K, V, q } = data(rng, T, d, nHeads, scoreMax);
      const nodes = shardsFor(K, V, d, assignment(rng, T, shards, policy), shards);
      const pos = rng.int(T);
      const partials = nodes.map((s) => partialAttention(s, 0, q, pos, nHeads));
      const reference = new Float64Array(d);
      mergePartials(partials, nHeads, 4, reference);

      // A random permutation merged flat.
      const perm = partials.map((_, i) => i);
      for (let i = perm.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [perm[i], perm[j]] = [perm[j] as number, perm[i] as number];
      }
      const flat = new Float64Array(d);
      mergePartials(perm.map((i) => partials[i] as AttentionPartial), nHeads, 4, flat);
      assert.ok(relErr(flat, reference) <= 1e-12);

      // A random binary tree of combine (random pairs joined until one is left), with empty partials mixed in.
      const pool: AttentionPartial[] = [...partials, emptyPartial(nHeads, 4)];
      while (pool.length > 1) {
        const i = rng.int(pool.length);
        const a = pool.splice(i, 1)[0] as AttentionPartial;
        const j = rng.int(pool.length);
        const b = pool.splice(j, 1)[0] as AttentionPartial;
        pool.push(rng.chance(0.5) ? combine(a, b) : combine(b, a));
      }
      const tree = normalize(pool[0] as AttentionPartial);
      assert.ok(relErr(tree, reference) <= 1e-12);
      assert.ok(relErr(tree, fullAttention(K, V, q, pos, nHeads)) <= 1e-12);
    }), { numRuns: 300 });
});

test("dkva: combine has the empty partial as identity and is commutative bit for bit", () => {
  const rng = createRng(3);
  const { K, V, q } = data(rng, 40, 8, 2, 12);
  const [a, b] = shardsFor(K, V, 8, assignment(rng, 40, 2, "random"), 2).map((s) => partialAttention(s, 0, q, 39, 2)) as [AttentionPartial, AttentionPartial];
  const e = emptyPartial(2, 4);
  for (const x of [combine(a, e), combine(e, a)]) assert.deepEqual(x, a);
  assert.deepEqual(combine(a, b), combine(b, a));
  assert.deepEqual(combine(e, e), e);
});

test("dkva: checkPartial refuses malformed partials from a peer", () => {
  const good = partialAttention(shardsFor(Float32Array.of(1, 0), Float32Array.of(3, 4), 2, [0], 1)[0] as KvShard, 0, Float32Array.of(1, 1), 0, 1);
  assert.equal(checkPartial(good, 1, 2), undefined);
  assert.equal(checkPartial(emptyPartial(2, 3), 2, 3), undefined);
  const bad: [string, AttentionPartial][] = [
    ["sizes", { m: new Float64Array(2), l: new Float64Array(1), o: new Float64Array(2) }],
    ["m NaN", { m: Float64Array.of(NaN), l: Float64Array.of(1), o: new Float64Array(2) }],
    ["m +Inf", { m: Float64Array.of(Infinity), l: Float64Array.of(1), o: new Float64Array(2) }],
    ["l < 1", { m: Float64Array.of(0), l: Float64Array.of(0.5), o: new Float64Array(2) }],
    ["l negative", { m: Float64Array.of(0), l: Float64Array.of(-1), o: new Float64Array(2) }],
    ["o NaN", { m: Float64Array.of(0), l: Float64Array.of(1), o: Float64Array.of(0, NaN) }],
    ["empty with m", { m: Float64Array.of(3), l: Float64Array.of(0), o: new Float64Array(2) }],
    ["empty with o", { m: Float64Array.of(-Infinity), l: Float64Array.of(0), o: Float64Array.of(1, 0) }],
  ];
  for (const [name, p] of bad) assert.notEqual(checkPartial(p, 1, 2), undefined, name);
  assert.notEqual(checkPartial({ m: Float64Array.of(0), l: Float64Array.of(11), o: new Float64Array(2) }, 1, 2, 10), undefined, "l above the positions bound");
});
