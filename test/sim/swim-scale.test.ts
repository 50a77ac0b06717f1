// The SWIM scale scenario (src/sim/swim-scale.ts; acceptance 2 of the SWIM issue) at a size a unit
// test affords: the load per member per probe period stays within 1.5× of n = 10's, a join reaches
// every member within 2·ln n periods, a crash is dead everywhere within the suspicion minimum plus
// 2·ln n, nobody else dies. n = 10,000 is run by `pk sim --scenario swim-scale --nodes 10000`
// (40 s and 2.8 GB on the 2-core development machine; see the scenario's header). Every assertion
// message carries the seed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { runSwimScale, runSwimScaleOnce, SWIM_SCALE_BOUNDS } from "../../src/sim/swim-scale.ts";

const pk = fileURLToPath(new URL("../../bin/pk.js", import.meta.url));
const execFileAsync = promisify(execFile);

interface ScaleJson {
  scenario: string;
  seed: number;
  nodes: number;
  messagesPerMemberPerPeriod: { n10: number; nN: number; ratio: number };
  dissemination: { periods: number; c: number; log: string };
  deadEverywhere: { periods: number; c: number };
  deadEverywherePeriods: number;
  falseDeaths: number;
  largestDatagramBytes: number;
  error?: string;
}

test("swim-scale: n = 400 against n = 10, load ratio, dissemination and death within bounds", () => {
  for (const seed of [1, 2]) {
    const report = runSwimScale({ nodes: 400, seed });
    const r = report.result as unknown as ScaleJson;
    console.log(`swim-scale n=400 seed ${seed}: messages/member/period ${r.messagesPerMemberPerPeriod.n10} (n=10) vs ` +
      `${r.messagesPerMemberPerPeriod.nN}, ratio ${r.messagesPerMemberPerPeriod.ratio}; join everywhere ${r.dissemination.periods} periods ` +
      `(c = ${r.dissemination.c}, ln); crash dead everywhere ${r.deadEverywherePeriods} periods`);
    assert.ok(report.ok, `seed ${seed}: ${r.error}`);
    assert.ok(r.messagesPerMemberPerPeriod.ratio <= SWIM_SCALE_BOUNDS.loadRatioMax, `seed ${seed}: ratio ${r.messagesPerMemberPerPeriod.ratio}`);
    assert.ok(r.dissemination.c <= SWIM_SCALE_BOUNDS.disseminationCMax, `seed ${seed}: c ${r.dissemination.c}`);
    assert.ok(r.deadEverywhere.c <= SWIM_SCALE_BOUNDS.deadEverywhereCMax, `seed ${seed}: dead c ${r.deadEverywhere.c}`);
    assert.equal(r.falseDeaths, 0, `seed ${seed}`);
    assert.ok(r.largestDatagramBytes <= 1200, `seed ${seed}`);
  }
});

test("swim-scale: the same seed gives the same run", () => {
  const strip = ({ wallSeconds: _w, setupSeconds: _s, heapMB: _h, arrayBuffersMB: _a, rssMB: _r, ...rest }: ReturnType<typeof runSwimScaleOnce>) => rest;
  const a = strip(runSwimScaleOnce(150, 5, 10));
  const b = strip(runSwimScaleOnce(150, 5, 10));
  assert.deepEqual(a, b, "seed 5");
});

test("swim-scale: pk sim --scenario swim-scale prints the JSON and exits 0", { timeout: 120_000 }, async () => {
  const { stdout } = await execFileAsync(process.execPath, [pk, "sim", "--scenario", "swim-scale", "--nodes", "200", "--seed", "3", "--json"], { maxBuffer: 1 << 20 });
  const r = JSON.parse(stdout) as ScaleJson;
  assert.equal(r.scenario, "swim-scale");
  assert.equal(r.nodes, 200);
  assert.equal(r.seed, 3);
  assert.ok(r.messagesPerMemberPerPeriod.ratio <= SWIM_SCALE_BOUNDS.loadRatioMax, "seed 3");
  assert.equal(r.dissemination.log, "ln");
});
