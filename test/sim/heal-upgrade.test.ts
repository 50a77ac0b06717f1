// Guarded-task records of the previous, unsigned format in a node's store (docs/protocols/heal.md,
// "Trust"), in whole kernels: the node boots, signs its own records again (and runs them, and every
// node takes them), drops another owner's record (counted), and gets that one back, signed, from
// its owner by sync.
import { test } from "node:test";
import assert from "node:assert/strict";
import { packValue } from "../../src/core/wire/codec.ts";
import { SimCluster } from "../../src/sim/cluster.ts";
import { SimStore } from "../../src/sim/disk.ts";
import { runUntil } from "./body-harness.ts";

test("heal: unsigned records in a node's store — its own signed again and taken everywhere, another owner's dropped and synced back signed", () => {
  const cluster = new SimCluster({ nodes: 3, seed: 92, faults: "none" });
  cluster.run(1500);
  const owner = cluster.nodes[0]!.kernel;
  assert.equal(owner.guard("keep", "ver", 100), undefined);
  cluster.run(300);
  const node = cluster.nodes[2]!;
  const id = node.kernel.id;
  cluster.crash(2);
  // What the previous format stored: 6-tuples, no key, no signature.
  const store = SimStore.recover(node.disk);
  store.write([
    { key: "heal/task/keep", value: packValue(["keep", "ver", 100, owner.id, 1, false]) },
    { key: "heal/task/mine", value: packValue(["mine", "ver", 100, id, 3, false]) },
  ], { durable: true });
  store.close();
  cluster.network.partition([node.address], cluster.nodes.filter((n) => n !== node).map((n) => n.address));
  cluster.restart(2);
  const kernel = node.kernel;
  assert.equal(kernel.heal.get("keep"), undefined, "another owner's unsigned record is dropped");
  assert.equal(kernel.heal.stats().unsignedDropped, 1);
  const mine = kernel.heal.get("mine");
  assert.deepEqual([mine?.owner, mine?.epoch, mine?.pub], [id, 3, node.identity.publicKey], "its own is signed again");
  cluster.network.heal();
  assert.ok(runUntil(cluster, 3000, () => cluster.nodes.every((n) => n.kernel.heal.get("mine")?.owner === id && n.kernel.heal.get("keep")?.owner === owner.id)) >= 0,
    "every node holds both records, signed by their owners");
  for (const n of cluster.nodes) assert.equal(n.kernel.heal.stats().signatureRefused, 0);
  assert.ok(kernel.guardStatuses().some((s) => s.task.name === "mine" && s.running !== undefined), "and the node runs its own");
});
