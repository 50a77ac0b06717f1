// The raft-lin sweep CI runs (full tier only: about 30 s): seeds 0..199 of src/sim/raft-lin.ts, even
// seeds on 3 nodes, odd on 5 (`pk sim --scenario raft-lin --seed 0 --seeds 200` runs the same;
// `pk sim --scenario raft-lin --seeds N --seed S` runs more). Every history must be linearizable
// and every node must end with the same map. The regression seeds, replay and the command are
// raft-lin.test.ts (fast tier).
import { test } from "node:test";
import assert from "node:assert/strict";
import { runRaftLin } from "../../src/sim/raft-lin.ts";
import { explain } from "./raft-lin-report.ts";

const CI_SEEDS = 200;

function runSeeds(nodes: 3 | 5, seeds: readonly number[], t: { diagnostic(message: string): void }): void {
  const started = performance.now();
  const failures: string[] = [];
  const sum = { ops: 0, ok: 0, unknown: 0, failed: 0, leaderChanges: 0, crashes: 0, partitions: 0, checkerMs: 0, checkerMsMax: 0 };
  for (const seed of seeds) {
    const { ok, result: r } = runRaftLin({ seed, nodes });
    if (!ok) failures.push(explain(r));
    sum.ops += r.ops;
    sum.ok += r.ok;
    sum.unknown += r.unknown;
    sum.failed += r.failed;
    sum.leaderChanges += r.leaderChanges;
    sum.crashes += r.crashes;
    sum.partitions += r.partitions;
    sum.checkerMs += r.checkerMs;
    sum.checkerMsMax = Math.max(sum.checkerMsMax, r.checkerMs);
  }
  const n = seeds.length;
  const avg = (x: number) => (x / n).toFixed(1);
  t.diagnostic(`${n} seeds on ${nodes} nodes in ${((performance.now() - started) / 1000).toFixed(1)} s: per seed ${avg(sum.ops)} operations ` +
    `(${avg(sum.ok)} ok, ${avg(sum.unknown)} unknown; ${avg(sum.failed)} refused), ${avg(sum.leaderChanges)} leader changes, ` +
    `${avg(sum.crashes)} crashes, ${avg(sum.partitions)} partitions; checker ${avg(sum.checkerMs)} ms (max ${sum.checkerMsMax})`);
  assert.equal(failures.length, 0, `${failures.length} of ${n} seeds failed:\n${failures.join("\n\n")}`);
}

const evenSeeds = Array.from({ length: CI_SEEDS / 2 }, (_, i) => 2 * i);
const oddSeeds = Array.from({ length: CI_SEEDS / 2 }, (_, i) => 2 * i + 1);

test(`raft-lin: ${CI_SEEDS / 2} seeds on 3 nodes, every history linearizable, every node the same map`, { timeout: 300_000 }, (t) => {
  runSeeds(3, evenSeeds, t);
});

test(`raft-lin: ${CI_SEEDS / 2} seeds on 5 nodes, every history linearizable, every node the same map`, { timeout: 300_000 }, (t) => {
  runSeeds(5, oddSeeds, t);
});
