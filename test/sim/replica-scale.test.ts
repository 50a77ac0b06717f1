// The gossip-topic scale scenario (src/sim/replica-scale.ts; issue 5, acceptance 1) at sizes a unit
// test affords: n = 100 (three seeds) and n = 1,000 (one seed, ~2 s), 5% loss. n = 10,000 is run by
// `pk sim --scenario replica-scale --nodes 10000` (20 s, 2.7 GB RSS on the 2-core machine).
//
// Bounds (REPLICA_SCALE_BOUNDS), from measurements with margin:
//  - c = periods to reach every node / log2(n) ≤ 1.5. Measured over 12 seeds × 5 writes at n = 100:
//    worst 7.2 periods (c = 1.085), typical 5–6; n = 1,000, 3 seeds × 5 writes: worst 9.4 (c = 0.95);
//    n = 10,000: 10.7 (c = 0.80). The additive constant (a write waits up to one period for the
//    writer's next exchange, four hops under 5% loss) weighs most at small n, hence the margin.
//  - mean bytes per node per period ≤ 2,000: measured 527 (n = 100), 529 (1,000), 530 (10,000)
//    at steady state, 558–575 while a write spreads: one SYN digest of 24 entries and a few answers.
//  - peak bytes of one node in one period ≤ 17 datagrams (one SYN and at most repliesPerPeriodMax
//    answers): measured ≤ 1,855 (n = 100), 1,729 (1,000), 2,119 (10,000).
// Growth from n = 100 to n = 1,000 is asserted directly: steady bytes within 5%.
import { test } from "node:test";
import assert from "node:assert/strict";
import { REPLICA_SCALE_BOUNDS, runReplicaScale, runReplicaScaleOnce } from "../../src/sim/replica-scale.ts";
import { runReplicaScaleCommand } from "../../src/sim/replica-scale-cli.ts";

interface Load { bytesMean: number; bytesMax: number; messagesMean: number; periods: number }
interface ScaleJson {
  scenario: string;
  seed: number;
  nodes: number;
  origins: number;
  periodsToAll: number;
  writePeriods: number[];
  c: number;
  log: string;
  steady: Load;
  spreading: Load;
  largestMessageBytes: number;
  error?: string;
}

function check(r: ScaleJson, ok: boolean): void {
  const tag = `seed ${r.seed} n = ${r.nodes}`;
  assert.ok(ok, `${tag}: ${r.error}`);
  assert.ok(r.c <= REPLICA_SCALE_BOUNDS.cMax, `${tag}: c ${r.c}`);
  for (const load of [r.steady, r.spreading]) {
    assert.ok(load.periods > 0, tag);
    assert.ok(load.bytesMean <= REPLICA_SCALE_BOUNDS.bytesPerNodePerPeriodMax, `${tag}: ${load.bytesMean} bytes per node per period`);
    assert.ok(load.bytesMax <= REPLICA_SCALE_BOUNDS.bytesPerNodePeriodPeakMax, `${tag}: peak ${load.bytesMax}`);
  }
  assert.ok(r.largestMessageBytes <= 1200, tag);
}

test("replica-scale: n = 100 and n = 1,000 under 5% loss, a write everywhere within c·log2 n periods, bytes per node bounded", () => {
  const small: ScaleJson[] = [];
  for (const seed of [1, 2, 3]) {
    const report = runReplicaScale({ nodes: 100, seed });
    const r = report.result as unknown as ScaleJson;
    check(r, report.ok);
    small.push(r);
  }
  const report = runReplicaScale({ nodes: 1000, seed: 1 });
  const large = report.result as unknown as ScaleJson;
  check(large, report.ok);
  assert.equal(large.origins, 1000);
  for (const r of [...small, large]) {
    console.log(`replica-scale n=${r.nodes} seed ${r.seed}: write everywhere in ${r.writePeriods.join(", ")} periods (c = ${r.c}, log2); ` +
      `bytes/node/period steady ${r.steady.bytesMean} (peak ${r.steady.bytesMax}), spreading ${r.spreading.bytesMean} (peak ${r.spreading.bytesMax})`);
  }
  const ratio = large.steady.bytesMean / (small[0] as ScaleJson).steady.bytesMean;
  assert.ok(ratio <= 1.05, `steady bytes grew ${ratio}× from n = 100 to n = 1,000`);
});

test("replica-scale: the same seed gives the same run", () => {
  const strip = ({ wallSeconds: _w, setupSeconds: _s, heapMB: _h, rssMB: _r, ...rest }: ReturnType<typeof runReplicaScaleOnce>) => rest;
  assert.deepEqual(strip(runReplicaScaleOnce({ nodes: 120, seed: 5, writes: 2 })), strip(runReplicaScaleOnce({ nodes: 120, seed: 5, writes: 2 })), "seed 5");
});

test("replica-scale: the command prints the JSON and exits 0; bad options exit 2", () => {
  let out = "";
  let err = "";
  const code = runReplicaScaleCommand({ nodes: "150", seed: "3", json: true }, (t) => { out += t; }, (t) => { err += t; });
  assert.equal(code, 0, err);
  const r = JSON.parse(out) as ScaleJson;
  assert.equal(r.scenario, "replica-scale");
  assert.equal(r.nodes, 150);
  assert.equal(r.seed, 3);
  assert.equal(r.log, "log2");
  assert.equal(runReplicaScaleCommand({ nodes: "1" }, () => {}, () => {}), 2);
  assert.equal(runReplicaScaleCommand({ nodes: "10", loss: "0.9" }, () => {}, () => {}), 2);
});
