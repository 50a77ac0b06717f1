// The Body layer's long simulator runs (full tier only): no false death in a simulated hour of 100
// nodes with stalls and 10% loss, and exactly one copy of a guarded task once a partition heals.
// The rest of the Body layer in the simulator is body.test.ts. Fixed seeds; a failure names its seed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SimCluster } from "../../src/sim/cluster.ts";
import { PROBE_TICKS, record, runners } from "./body-harness.ts";

test("swim: stalled nodes (2 probe periods, once a minute) and 10% loss give no false death in a simulated hour (n = 100)", { timeout: 600_000 }, (t) => {
  const seed = 77;
  const cluster = new SimCluster({
    nodes: 100, seed, faults: "none", clockSkew: false,
    // Vital signs are not what this test is about: one round a minute keeps the run short.
    kernel: { vital: { periodTicks: 6000, fanout: 4, historyMax: 10 } },
  });
  cluster.run(3000);
  assert.notEqual(cluster.result().convergedAtTick, null, `seed ${seed}: not converged`);
  cluster.network.setFaults({ lossRate: 0.1 });
  const events = record(cluster);
  const hour = 360_000;
  const stallers = [3, 31, 59, 87];
  for (let tick = 0; tick < hour; tick += 100) {
    // Each staller freezes for two probe periods once a minute, at its own offset.
    for (const [k, index] of stallers.entries()) {
      if ((tick + k * 1500) % 6000 === 0) cluster.stall(index, 2 * PROBE_TICKS);
    }
    cluster.run(100);
  }
  const deaths = events.filter((e) => e.event.type === "member-dead");
  const suspicions = events.filter((e) => e.event.type === "member-suspect").length;
  const refutations = events.filter((e) => e.event.type === "member-refuted" && e.event.data["id"] === cluster.nodes[e.node]?.kernel.id).length;
  t.diagnostic(`seed ${seed}: 1 simulated hour, n=100, 10% loss, ${stallers.length} stallers: suspicions ${suspicions}, refutations ${refutations}, deaths ${deaths.length}`);
  assert.equal(deaths.length, 0, `seed ${seed}: false deaths: ${JSON.stringify(deaths.slice(0, 5))}`);
  for (const node of cluster.nodes) assert.equal(node.kernel.swim.size, 100, `seed ${seed}: node ${node.index} lost members`);
});

// Slow for a bad reason: once the partition heals, the minority's regenerated configuration and the
// majority's leader exchange a stream of small messages that grows every heartbeat (about 80 s of
// CPU for the two seeds). Back to body.test.ts once that is fixed.
test("heal: when a partition heals, exactly one copy keeps running", () => {
  for (const seed of [71, 72]) {
    const cluster = new SimCluster({ nodes: 6, seed, faults: "none" });
    cluster.run(1500);
    assert.equal(cluster.nodes[1]?.kernel.guard("job", "ver", 100), undefined);
    cluster.run(300);
    const addresses = cluster.nodes.map((n) => n.address);
    // Node 1 (the owner) ends up on the small side; the other side declares it dead and adopts.
    cluster.network.partition(addresses.slice(0, 2), addresses.slice(2));
    cluster.run(8000);
    const during = runners(cluster);
    assert.equal(during.length, 2, `seed ${seed}: one copy per side during the partition: ${JSON.stringify(during)}`);
    cluster.network.heal();
    cluster.run(6000);
    assert.equal(runners(cluster).length, 1, `seed ${seed}: copies after the heal: ${JSON.stringify(runners(cluster))}`);
    const records = new Set(cluster.nodes.map((n) => JSON.stringify(n.kernel.heal.get("job"))));
    assert.equal(records.size, 1, `seed ${seed}: every node holds the same record`);
  }
});
