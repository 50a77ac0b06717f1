// How the Brain's work is split across nodes: contiguous ranges proportional to weights (measured
// node speed, research/anchors-brain.md §1.8: placement by speed, not memory) for Megatron-style
// tensor parallelism (heads, FFN columns) and pipeline stages (layers), and which shard stores the
// K/V of a global position for distributed KV attention (dkva.ts).
//
// Ranges are half-open [start, end). splitRange uses cumulative rounding: boundary k is
// round(n · W_k / W) where W_k is the sum of the first k weights. So every boundary is within ½ of
// its ideal place, every part is within 1 of its quota n·w_i/W (strictly), parts never go negative,
// a zero weight gets an empty part without moving any other boundary, equal weights give parts that
// differ by at most 1, and the result depends only on the inputs.
import { assert } from "../util/assert.ts";

export type Range = readonly [start: number, end: number];

/** Contiguous ranges covering [0, n) in order, proportional to `weights` (≥ 0, finite; all zero = equal). */
export function splitRange(n: number, weights: readonly number[]): Range[] {
  assert(Number.isSafeInteger(n) && n >= 0, `splitRange: n must be a non-negative integer, got ${n}`);
  assert(weights.length >= 1, "splitRange: needs at least one weight");
  for (const w of weights) assert(Number.isFinite(w) && w >= 0, `splitRange: weights must be finite and ≥ 0, got ${w}`);
  // Relative to the largest weight, so huge weights cannot overflow the sum.
  const top = Math.max(...weights);
  const ws = top > 0 ? weights.map((w) => w / top) : weights.map(() => 1);
  let total = 0;
  for (const w of ws) total += w;
  const ranges: Range[] = [];
  let prefix = 0;
  let start = 0;
  for (let i = 0; i < ws.length; i++) {
    prefix += ws[i] as number;
    const ideal = (n * prefix) / total;
    const end = i === ws.length - 1 ? n : Math.min(n, Math.max(start, Math.floor(ideal + 0.5)));
    ranges.push([start, end]);
    start = end;
  }
  return ranges;
}

/** `nodes` as a count (equal shares) or as per-node weights. */
function weightsOf(nodes: number | readonly number[]): readonly number[] {
  if (typeof nodes !== "number") return nodes;
  assert(Number.isInteger(nodes) && nodes >= 1, `partition: node count must be a positive integer, got ${nodes}`);
  return new Array<number>(nodes).fill(1);
}

/** Attention heads per node for tensor parallelism: each node owns whole heads [start, end). */
export function splitHeads(nHeads: number, nodes: number | readonly number[]): Range[] {
  return splitRange(nHeads, weightsOf(nodes));
}

/**
 * FFN hidden columns per node (column-parallel first matrix, row-parallel second): the split is in
 * units of `align` columns (default 1) so each part starts on a multiple of `align`; the last unit
 * may be short when dFF is not a multiple of it.
 */
export function splitColumns(dFF: number, nodes: number | readonly number[], align = 1): Range[] {
  assert(Number.isInteger(align) && align >= 1, `splitColumns: align must be a positive integer, got ${align}`);
  assert(Number.isSafeInteger(dFF) && dFF >= 0, `splitColumns: dFF must be a non-negative integer, got ${dFF}`);
  const units = Math.ceil(dFF / align);
  return splitRange(units, weightsOf(nodes)).map(([s, e]) => [Math.min(dFF, s * align), Math.min(dFF, e * align)] as const);
}

/**
 * Pipeline stages: contiguous layer ranges proportional to measured speeds, so each stage's time
 * (layers / speed) is about equal. A node too slow for a layer of its own gets an empty range.
 */
export function splitLayers(nLayers: number, speeds: readonly number[]): Range[] {
  return splitRange(nLayers, speeds);
}

export type PositionPolicy = "round-robin" | "block";

/** Default block size of the "block" policy, in positions. */
export const POSITION_BLOCK_DEFAULT = 64;

/**
 * The shard (0..shardCount−1) that stores the K/V of global `position`. "round-robin": position mod
 * shardCount. "block": blocks of `blockSize` consecutive positions dealt round-robin
 * (⌊position / blockSize⌋ mod shardCount) — contiguous runs keep a shard's rows local, dealing them
 * keeps growth balanced; blockSize 1 is round-robin, blockSize ≥ T/shardCount is one block each.
 */
export function assignPositions(position: number, shardCount: number, policy: PositionPolicy, blockSize = POSITION_BLOCK_DEFAULT): number {
  assert(Number.isSafeInteger(position) && position >= 0, `assignPositions: position must be a non-negative integer, got ${position}`);
  assert(Number.isInteger(shardCount) && shardCount >= 1, `assignPositions: shardCount must be a positive integer, got ${shardCount}`);
  switch (policy) {
    case "round-robin":
      return position % shardCount;
    case "block":
      assert(Number.isSafeInteger(blockSize) && blockSize >= 1, `assignPositions: blockSize must be a positive integer, got ${blockSize}`);
      return Math.floor(position / blockSize) % shardCount;
  }
}

/** The positions in [from, to) that `shard` stores under the policy, ascending. */
export function positionsOf(shard: number, from: number, to: number, shardCount: number, policy: PositionPolicy, blockSize = POSITION_BLOCK_DEFAULT): number[] {
  assert(Number.isInteger(shard) && shard >= 0 && shard < shardCount, `positionsOf: shard ${shard} is outside [0, ${shardCount})`);
  const out: number[] = [];
  for (let p = Math.max(0, from); p < to; p++) if (assignPositions(p, shardCount, policy, blockSize) === shard) out.push(p);
  return out;
}
