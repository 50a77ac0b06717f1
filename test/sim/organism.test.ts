// `pk sim --scenario organism` (src/sim/organism.ts): the shared folder and the Brain in a
// whole-cluster simulation, for a few seeds — a file reaches every node; distributed inference in
// every mode equals local inference within 1e-5 and is FULL; after a crash it is REDUCED (the dead
// node dropped) and still equal, and a file written then reaches the live nodes; the restarted
// node holds both files and the model; the same seed prints the same JSON, through the CLI too.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ORGANISM_TOLERANCE, runOrganism, type ModeReport } from "../../src/sim/organism.ts";

const pk = fileURLToPath(new URL("../../bin/pk.js", import.meta.url));
const execFileAsync = promisify(execFile);
const MODES = ["pipeline", "tensor", "dkva"] as const;

type Result = Record<string, unknown> & {
  full: Record<string, { whole: ModeReport; session: ModeReport }>;
  crash: { node: string; peers: string[]; fileReplicatedAt: number | null; runs: Record<string, { whole: ModeReport; session: ModeReport }> };
  restart: { rejoinedAt: number | null; filesAt: number | null; modelLoadedAt: number | null; full: Record<string, ModeReport> };
};

function allAre(r: ModeReport, states: readonly string[], runs: number): void {
  assert.equal(r.states.length, runs);
  assert.ok(r.states.every((s) => states.includes(s)), JSON.stringify(r.states));
  assert.ok(r.maxAbsDiff <= ORGANISM_TOLERANCE, `max |Δlogit| ${r.maxAbsDiff}`);
  assert.ok(r.roundTrips > 0, "the peers did work");
}

const fellBack: string[] = [];
for (const seed of [1, 2, 3]) {
  test(`organism, seed ${seed}: the file reaches every node; inference equals local, FULL, then REDUCED across a crash; the node comes back whole`, async (t) => {
    const report = await runOrganism({ seed });
    const r = report.result as Result;
    t.diagnostic(`formed at ${String(r.formedAt)}, file at ${JSON.stringify(r.file)}, model ${JSON.stringify(r.model)}, crash at ${JSON.stringify((r.crash as { at?: number }).at)}, trace ${String(r.traceHash)}`);
    assert.deepEqual(r.failures, []);
    assert.ok(report.ok);
    for (const mode of MODES) {
      allAre(r.full[mode]!.whole, ["FULL"], 3);
      allAre(r.full[mode]!.session, ["FULL"], 2);
      assert.deepEqual(r.full[mode]!.whole.dropped, []);
      // The whole sequences start right after the crash, the dead node among their peers: it is
      // dropped (SOLO if it was the only peer SWIM held alive then). The scenario itself checks the
      // sessions against the peers they started with.
      allAre(r.crash.runs[mode]!.whole, ["REDUCED", "SOLO"], 3);
      assert.deepEqual(r.crash.runs[mode]!.whole.dropped, [r.crash.node]);
      fellBack.push(...r.crash.runs[mode]!.whole.states, ...r.crash.runs[mode]!.session.states);
      allAre(r.restart.full[mode]!, ["FULL"], 3);
    }
    assert.equal(r.full.pipeline!.whole.maxAbsDiff, 0, "a pipeline runs the same kernels in the same order: bit-identical");
    assert.ok(r.crash.peers.includes(r.crash.node));
    assert.ok(r.crash.fileReplicatedAt !== null);
    assert.ok(r.restart.rejoinedAt !== null && r.restart.filesAt !== null && r.restart.modelLoadedAt !== null);
  });
}

test("organism: over the seeds, the fallback kept a survivor (REDUCED), not only SOLO", () => {
  assert.ok(fellBack.filter((s) => s === "REDUCED").length >= 10, JSON.stringify(fellBack));
});

test("organism: the same seed gives the same JSON, in process and through `pk sim --scenario organism --json`", async () => {
  const a = JSON.stringify((await runOrganism({ seed: 4 })).result);
  const b = JSON.stringify((await runOrganism({ seed: 4 })).result);
  assert.equal(a, b);
  const other = JSON.stringify((await runOrganism({ seed: 5 })).result);
  assert.notEqual(other, a);
  const { stdout } = await execFileAsync(process.execPath, [pk, "sim", "--scenario", "organism", "--nodes", "3", "--seed", "4", "--json"], { maxBuffer: 1 << 22 });
  assert.equal(stdout, `${a}\n`);
  const usage = await execFileAsync(process.execPath, [pk, "sim", "--scenario", "organism", "--ticks", "5"]).then(() => undefined, (error: unknown) => error as { code?: number; stderr: string });
  assert.equal(usage?.code, 2);
  assert.match(usage!.stderr, /not for --scenario organism/);
});
