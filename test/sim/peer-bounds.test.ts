// What one member holding the cluster's key may do to the others through guarded tasks and gossip
// topics, in whole kernels (issue 13, "Trust"): the forged messages are handed to the subsystems as
// the kernel would after authenticating them as that member's. A guarded task forged in the
// victim's name runs nowhere and is removed everywhere; a forged range of the victim's own gossip
// origin does not stop its writes.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Guard } from "../../src/node/body/guard.ts";
import type { Topics } from "../../src/node/collective/topics.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import { SimCluster } from "../../src/sim/cluster.ts";
import { record, runners, runUntil } from "./body-harness.ts";

test("attack: a guarded task forged in the victim's name (any epoch) runs nowhere, and the victim's removal reaches every node", () => {
  const cluster = new SimCluster({ nodes: 4, seed: 81, faults: "none" });
  cluster.run(1500);
  const attacker = cluster.nodes[0]!.kernel;
  const victim = cluster.nodes[2]!.kernel;
  const events = record(cluster);
  const forged = (epoch: number) => ({ t: "heal" as const, reply: false, tasks: [["pub", "topic pub spam x", 100, victim.id, epoch, false] as [string, string, number, string, number, boolean]] });
  // The attacker tells every other node; at the maximum epoch every node refuses it outright.
  for (const node of cluster.nodes.slice(1)) node.kernel.subsystem<Guard>("guard").step(attacker.id, forged(LIMITS.guardEpochMax));
  cluster.run(300);
  assert.deepEqual(runners(cluster), []);
  for (const node of cluster.nodes) assert.equal(node.kernel.heal.get("pub"), undefined, `node ${node.index} holds nothing`);
  assert.equal(victim.guard("pub", "ver", 100), undefined, "the name stays usable");
  assert.equal(victim.unguard("pub"), undefined, "and removable");
  // Within the epochs peers take, the bystanders believe it; the victim refuses and removes it.
  for (const node of cluster.nodes.slice(1)) node.kernel.subsystem<Guard>("guard").step(attacker.id, forged(50));
  assert.ok(runUntil(cluster, 500, () => cluster.nodes.every((n) => n.kernel.heal.get("pub")?.removed === true && n.kernel.heal.get("pub")?.epoch === 51)) >= 0,
    `every node holds the victim's removal: ${JSON.stringify(cluster.nodes.map((n) => n.kernel.heal.get("pub")))}`);
  assert.deepEqual(runners(cluster), [], "it never ran");
  assert.equal(victim.heal.stats().ownerRefused, 1);
  assert.ok(events.some((e) => e.node === 2 && e.event.type === "guard-refused"), "the victim's event log says so");
});

test("attack: a forged delta of the victim's own gossip origin up to 2^53−1 does not stop its writes, in a whole cluster", () => {
  const cluster = new SimCluster({ nodes: 3, seed: 82, faults: "none" });
  cluster.run(1500);
  const attacker = cluster.nodes[0]!.kernel;
  const victim = cluster.nodes[1]!.kernel;
  assert.equal(victim.topicPublish("t", "before", new TextEncoder().encode("1")), undefined);
  const version = victim.gossip.selfVersion;
  const forged = { t: "gossip" as const, h: 3 as const, n: 0, d: [], r: [[victim.id, 0, Number.MAX_SAFE_INTEGER, []] as [string, number, number, []]], g: [] };
  for (const node of cluster.nodes.slice(1)) node.kernel.subsystem<Topics>("topics").step(attacker.id, forged);
  assert.equal(victim.gossip.selfVersion, version);
  assert.equal(victim.gossip.stats().ownOrigin, 1);
  assert.equal(victim.topicPublish("t", "after", new TextEncoder().encode("2")), undefined, "the victim still writes");
  assert.equal(victim.gossip.selfVersion, version + 1);
  // The bystander dropped the range too (above LIMITS.gossip.versionMax), so the new row reaches it.
  const bystander = cluster.nodes[2]!.kernel;
  assert.equal(bystander.gossip.stats().highVersions, 1);
  assert.ok(runUntil(cluster, 1_000, () => bystander.gossip.get("t", "after") !== undefined) >= 0, "the victim's new row reaches the bystander");
});
