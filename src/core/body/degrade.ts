// degrade (DESIGN.md §7, Body): the mode every layer reads, from how many members are alive.
// FULL needs a quorum-capable cluster (≥ 3 alive), REDUCED is a pair, SOLO is the last node.
import { assert } from "../util/assert.ts";

export type Mode = "FULL" | "REDUCED" | "SOLO";

/** The cluster mode for `aliveCount` alive members, this node included (so at least 1). */
export function modeOf(aliveCount: number): Mode {
  assert(Number.isInteger(aliveCount) && aliveCount >= 1, `modeOf: alive count must be a positive integer, got ${aliveCount}`);
  if (aliveCount >= 3) return "FULL";
  if (aliveCount === 2) return "REDUCED";
  return "SOLO";
}
