// What one member holding the cluster's key may do to the others through guarded tasks and gossip
// topics, in whole kernels (issue 13, "Trust"): the forged messages are handed to the subsystems as
// the kernel would after authenticating them as that member's. A guarded task forged in the
// victim's name, or the victim's signed record changed on the way, is held and run nowhere; a forged
// range of the victim's own gossip origin does not stop its writes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { healRecordBody, taskToWire, type GuardedTask } from "../../src/core/body/heal.ts";
import type { GuardedTaskWire } from "../../src/core/wire/messages.ts";
import type { Guard } from "../../src/node/body/guard.ts";
import type { Topics } from "../../src/node/collective/topics.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import { SimCluster } from "../../src/sim/cluster.ts";
import { record, runners, runUntil } from "./body-harness.ts";

test("attack: a guarded task forged in the victim's name (its key or the attacker's, any epoch) runs nowhere, is held nowhere, and is counted", () => {
  const cluster = new SimCluster({ nodes: 4, seed: 81, faults: "none" });
  cluster.run(1500);
  const attacker = cluster.nodes[0]!.kernel;
  const victim = cluster.nodes[2]!.kernel;
  const events = record(cluster);
  const fields = (epoch: number) => ({ name: "pub", command: "topic pub spam x", everyTicks: 100, owner: victim.id, epoch, removed: false });
  // Signed by the attacker (its own key, or the victim's key beside the attacker's signature).
  const forged = (epoch: number, pub: Uint8Array) => ({
    t: "heal" as const, reply: false, tasks: [taskToWire({ ...fields(epoch), pub, sig: attacker.records.sign("heal", healRecordBody(fields(epoch))) })],
  });
  const refusedBefore = cluster.nodes.map((n) => n.kernel.records.refused.heal.key + n.kernel.records.refused.heal.signature);
  for (const epoch of [LIMITS.guardEpochMax, 50]) {
    for (const pub of [attacker.records.publicKey, victim.records.publicKey]) {
      for (const node of cluster.nodes.slice(1)) node.kernel.subsystem<Guard>("guard").step(attacker.id, forged(epoch, pub));
    }
  }
  cluster.run(300);
  assert.deepEqual(runners(cluster), []);
  for (const node of cluster.nodes) assert.equal(node.kernel.heal.get("pub"), undefined, `node ${node.index} holds nothing`);
  for (const node of cluster.nodes.slice(1)) {
    assert.equal(node.kernel.heal.stats().signatureRefused, 2, `node ${node.index} refused both records within the epochs it takes`);
    assert.equal(node.kernel.records.refused.heal.key + node.kernel.records.refused.heal.signature - (refusedBefore[node.index] as number), 2, "and its signer counted them (/metrics)");
  }
  assert.equal(victim.heal.stats().ownerRefused, 2);
  assert.ok(events.some((e) => e.node === 2 && e.event.type === "guard-refused"), "the victim's event log says so");
  assert.equal(victim.guard("pub", "ver", 100), undefined, "the name stays usable");
  assert.ok(runUntil(cluster, 500, () => cluster.nodes.every((n) => n.kernel.heal.get("pub")?.owner === victim.id)) >= 0, "the victim's own record reaches every node");
  assert.equal(victim.unguard("pub"), undefined, "and removable");
  assert.ok(runUntil(cluster, 500, () => cluster.nodes.every((n) => n.kernel.heal.get("pub")?.removed === true)) >= 0, "the removal reaches every node");
});

test("attack: the victim's signed record relayed with a changed command and epoch, or turned into a removal, is taken by no node", () => {
  const cluster = new SimCluster({ nodes: 4, seed: 83, faults: "none" });
  cluster.run(1500);
  const attacker = cluster.nodes[0]!.kernel;
  const victim = cluster.nodes[2]!.kernel;
  assert.equal(victim.guard("beat", "ver", 100), undefined);
  assert.ok(runUntil(cluster, 500, () => cluster.nodes.every((n) => n.kernel.heal.get("beat") !== undefined)) >= 0);
  const real = victim.heal.get("beat") as GuardedTask;
  const wire = taskToWire(real);
  const changed: GuardedTaskWire[] = [
    [wire[0], "topic pub spam x", wire[2], wire[3], wire[4] + 1, wire[5], wire[6], wire[7]],
    [wire[0], wire[1], wire[2], victim.id, wire[4], true, wire[6], wire[7]],
  ];
  for (const node of cluster.nodes.slice(1)) node.kernel.subsystem<Guard>("guard").step(attacker.id, { t: "heal", reply: false, tasks: changed });
  cluster.run(300);
  for (const node of cluster.nodes) {
    const held = node.kernel.heal.get("beat");
    assert.deepEqual([held?.command, held?.epoch, held?.removed], ["ver", real.epoch, false], `node ${node.index} holds the victim's record`);
  }
  assert.deepEqual(runners(cluster), [2], "only the victim runs it");
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

test("attack: a contributor defines no guarded task, and its own signed records are taken by no core node (they would run on a core survivor)", () => {
  const cluster = new SimCluster({ nodes: 3, seed: 84, faults: "none", roles: ["core", "core", "contributor"] });
  cluster.run(1500);
  const contributor = cluster.nodes[2]!.kernel;
  assert.match(contributor.guard("job", "ver", 100) ?? "", /contributor/);
  const fields = { name: "job", command: "invite --role core", everyTicks: 100, owner: contributor.id, epoch: 1, removed: false };
  const own = taskToWire({ ...fields, pub: contributor.records.publicKey, sig: contributor.records.sign("heal", healRecordBody(fields)) });
  for (const node of cluster.nodes.slice(0, 2)) node.kernel.subsystem<Guard>("guard").step(contributor.id, { t: "heal", reply: false, tasks: [own] });
  cluster.run(300);
  for (const node of cluster.nodes) assert.equal(node.kernel.heal.get("job"), undefined, `node ${node.index} holds nothing`);
  for (const node of cluster.nodes.slice(0, 2)) assert.equal(node.kernel.heal.stats().roleRefused, 1);
});
