// Work splitting (src/core/brain/partition.ts): coverage without overlap, proportionality within 1,
// stability (zero weights, scaling, determinism) and position-to-shard policies.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  assignPositions, positionsOf, splitColumns, splitHeads, splitLayers, splitRange, type Range,
} from "../../../src/core/brain/partition.ts";

// Weights as measured speeds: integers (zeros included) and doubles far from the subnormal range.
const weight = fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.double({ min: 1e-3, max: 1e300, noNaN: true }));
const weights = fc.array(weight, { minLength: 1, maxLength: 12 });

function assertCovers(ranges: Range[], n: number): void {
  let at = 0;
  for (const [s, e] of ranges) {
    assert.equal(s, at, "contiguous, in order, no gap or overlap");
    assert.ok(e >= s, "no negative part");
    at = e;
  }
  assert.equal(at, n, "parts sum to n");
}

test("partition: splitRange covers [0, n) without overlap, each part within 1 of its quota (property)", () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 1 << 20 }), weights, (n, ws) => {
    const ranges = splitRange(n, ws);
    assert.equal(ranges.length, ws.length);
    assertCovers(ranges, n);
    const total = ws.reduce((a, b) => a + b, 0);
    ranges.forEach(([s, e], i) => {
      const quota = total > 0 ? (n * (ws[i] as number)) / total : n / ws.length;
      assert.ok(Math.abs(e - s - quota) < 1 + 1e-9, `part ${i}: ${e - s} vs quota ${quota}`);
      if (total > 0 && ws[i] === 0) assert.equal(e - s, 0, "a zero weight gets nothing");
    });
  }), { numRuns: 2000 });
});

test("partition: splitRange is stable — deterministic, scale-free, unmoved by zero-weight nodes (property)", () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 100_000 }), weights, fc.integer({ min: -20, max: 20 }), fc.nat(),
    (n, ws, exp, at) => {
      const ranges = splitRange(n, ws);
      assert.deepEqual(splitRange(n, [...ws]), ranges);
      // Scaling every weight by a power of two changes nothing.
      assert.deepEqual(splitRange(n, ws.map((w) => w * 2 ** exp)), ranges);
      // A node of weight 0 inserted anywhere gets an empty range and the others keep theirs.
      if (ws.some((w) => w > 0)) {
        const i = at % (ws.length + 1);
        const withZero = splitRange(n, [...ws.slice(0, i), 0, ...ws.slice(i)]);
        const zero = withZero[i] as Range;
        assert.equal(zero[1] - zero[0], 0);
        assert.deepEqual([...withZero.slice(0, i), ...withZero.slice(i + 1)], ranges);
      }
    }), { numRuns: 2000 });
});

test("partition: equal weights give parts that differ by at most 1; a faster node never gets less", () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 1, max: 64 }), (n, k) => {
    const sizes = splitRange(n, new Array<number>(k).fill(3)).map(([s, e]) => e - s);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, JSON.stringify(sizes));
    assert.deepEqual(splitRange(n, new Array<number>(k).fill(0)), splitRange(n, new Array<number>(k).fill(1)), "all zero = equal");
  }), { numRuns: 500 });
  fc.assert(fc.property(fc.integer({ min: 0, max: 10_000 }), weights, fc.nat(), fc.nat(), (n, ws, a, b) => {
    const i = a % ws.length;
    const j = b % ws.length;
    const sizes = splitRange(n, ws).map(([s, e]) => e - s);
    // Quotas within 1 of the sizes: if w_i ≥ w_j then size_i ≥ size_j − 1.
    if ((ws[i] as number) >= (ws[j] as number)) assert.ok((sizes[i] as number) >= (sizes[j] as number) - 1);
  }), { numRuns: 500 });
});

test("partition: concrete splits", () => {
  assert.deepEqual(splitRange(10, [1, 1, 1]), [[0, 3], [3, 7], [7, 10]]);
  assert.deepEqual(splitRange(12, [1, 2, 3]), [[0, 2], [2, 6], [6, 12]]);
  assert.deepEqual(splitRange(0, [1, 5]), [[0, 0], [0, 0]]);
  assert.deepEqual(splitRange(5, [0, 1, 0]), [[0, 0], [0, 5], [5, 5]]);
  assert.deepEqual(splitHeads(8, 3), [[0, 3], [3, 5], [5, 8]]);
  assert.deepEqual(splitHeads(8, [3, 1]), [[0, 6], [6, 8]]);
  assert.deepEqual(splitLayers(6, [2, 1]), [[0, 4], [4, 6]]);
  assert.deepEqual(splitLayers(2, [100, 1]), [[0, 2], [2, 2]], "a node too slow for a layer gets none");
  assert.throws(() => splitRange(3, []));
  assert.throws(() => splitRange(3, [1, -1]));
  assert.throws(() => splitRange(3, [NaN]));
  assert.throws(() => splitRange(1.5, [1]));
  assert.throws(() => splitHeads(4, 0));
});

test("partition: splitColumns cuts on multiples of align and covers dFF (property)", () => {
  assert.deepEqual(splitColumns(256, 3, 16), [[0, 80], [80, 176], [176, 256]]);
  assert.deepEqual(splitColumns(100, 2, 32), [[0, 64], [64, 100]]);
  fc.assert(fc.property(fc.integer({ min: 0, max: 5000 }), fc.oneof(fc.integer({ min: 1, max: 9 }), weights), fc.integer({ min: 1, max: 64 }),
    (dFF, nodes, align) => {
      const ranges = splitColumns(dFF, nodes, align);
      assertCovers(ranges, dFF);
      for (const [s, e] of ranges) {
        assert.ok(s % align === 0 || s === dFF, `start ${s} aligned to ${align}`);
        assert.ok(e % align === 0 || e === dFF);
      }
    }), { numRuns: 1000 });
});

test("partition: assignPositions — round-robin and dealt blocks cover every position once, balanced (property)", () => {
  assert.deepEqual(Array.from({ length: 7 }, (_, p) => assignPositions(p, 3, "round-robin")), [0, 1, 2, 0, 1, 2, 0]);
  assert.deepEqual(Array.from({ length: 10 }, (_, p) => assignPositions(p, 2, "block", 3)), [0, 0, 0, 1, 1, 1, 0, 0, 0, 1]);
  assert.equal(assignPositions(130, 4, "block"), 2, "default block of 64");
  assert.throws(() => assignPositions(1, 0, "round-robin"));
  assert.throws(() => assignPositions(-1, 2, "round-robin"));
  assert.throws(() => assignPositions(1, 2, "block", 0));
  fc.assert(fc.property(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 1, max: 16 }), fc.constantFrom("round-robin", "block") as fc.Arbitrary<"round-robin" | "block">,
    fc.integer({ min: 1, max: 100 }), (T, shards, policy, block) => {
      const seen = new Array<number>(T).fill(0);
      const counts: number[] = [];
      for (let s = 0; s < shards; s++) {
        const mine = positionsOf(s, 0, T, shards, policy, block);
        counts.push(mine.length);
        for (let i = 1; i < mine.length; i++) assert.ok((mine[i] as number) > (mine[i - 1] as number), "ascending");
        for (const p of mine) seen[p] = (seen[p] as number) + 1;
      }
      assert.ok(seen.every((c) => c === 1), "every position on exactly one shard");
      const unit = policy === "block" ? block : 1;
      assert.ok(Math.max(...counts) - Math.min(...counts) <= unit, `balanced within one block: ${counts.join(",")}`);
    }), { numRuns: 300 });
});
