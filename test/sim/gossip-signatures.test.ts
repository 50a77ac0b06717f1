// Gossip rows signed by their writer, in whole kernels (issue 13, "claims about others carry their
// author's signature"; src/core/collective/gossip.ts "Signatures"). A member relaying rows under
// another member's origin — forged value, forged tombstone, another row's signature, its own key —
// has them taken by no node, counted on each (gossip stats and pk_records_refused_total{kind="row"});
// the victim's real rows still reach everyone. A node whose store holds rows of the older, unsigned
// form boots, signs its own again, drops the others' (counted) and fetches them again signed. The
// forged messages are handed to the topics subsystem as the kernel would after authenticating them
// as the attacker's (test/sim/peer-bounds.test.ts does the same).
import { test } from "node:test";
import assert from "node:assert/strict";
import { makeRow, rowBody, type GossipRow } from "../../src/core/collective/gossip.ts";
import type { GossipRowWire } from "../../src/core/collective/gossip-wire.ts";
import { packValue, unpackValue } from "../../src/core/wire/codec.ts";
import type { MessageOf } from "../../src/core/wire/messages.ts";
import type { Topics } from "../../src/node/collective/topics.ts";
import { SimCluster } from "../../src/sim/cluster.ts";
import { runUntil } from "./body-harness.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();

function valueAt(c: SimCluster, i: number, topic: string, key: string): string | undefined {
  const value = c.nodes[i]!.kernel.gossip.get(topic, key)?.value;
  return value === undefined ? undefined : text.decode(value);
}

test("attack: rows relayed under another member's origin (forged value, forged tombstone, another row's signature, the attacker's own key) are taken by no kernel; the victim's rows still arrive", () => {
  const c = new SimCluster({ nodes: 4, seed: 91, faults: "none" });
  c.run(1500);
  const attacker = c.nodes[0]!.kernel;
  const victim = c.nodes[1]!.kernel;
  assert.equal(victim.topicPublish("cfg", "leader", utf8.encode("node-a")), undefined);
  assert.equal(victim.topicPublish("cfg", "quota", utf8.encode("10")), undefined);
  assert.ok(runUntil(c, 1_000, () => c.nodes.every((_, i) => valueAt(c, i, "cfg", "quota") === "10")) >= 0, "the victim's rows spread");
  const real1 = victim.gossip.get("cfg", "leader") as GossipRow;
  const real2 = victim.gossip.get("cfg", "quota") as GossipRow;
  const later = real2.wall + 1_000;
  const forgedByAttacker = makeRow("cfg", "leader", utf8.encode("attacker"), later, 0, victim.id, 3);
  const forgeries: GossipRowWire[] = [
    [3, "cfg", "leader", utf8.encode("attacker"), later, 0, real1.pub, new Uint8Array(64).fill(9)],
    [3, "cfg", "leader", null, later, 0, real1.pub, real1.sig],
    [3, "cfg", "quota", utf8.encode("1000000"), real2.wall, real2.logical, real2.pub, real2.sig],
    [3, "cfg", "leader", utf8.encode("attacker"), later, 0, attacker.records.publicKey, attacker.records.sign("row", rowBody(forgedByAttacker))],
  ];
  const bystanders = [2, 3];
  for (const forged of forgeries) {
    const message: MessageOf<"gossip"> = { t: "gossip", h: 3, n: 0, d: [], r: [[victim.id, 2, 3, [forged]]], g: [] };
    for (const i of bystanders) c.nodes[i]!.kernel.subsystem<Topics>("topics").step(attacker.id, message);
  }
  c.run(300);
  for (let i = 0; i < 4; i++) {
    assert.equal(valueAt(c, i, "cfg", "leader"), "node-a", `node ${i}`);
    assert.equal(valueAt(c, i, "cfg", "quota"), "10", `node ${i}`);
  }
  for (const i of bystanders) {
    const kernel = c.nodes[i]!.kernel;
    assert.equal(kernel.gossip.stats().forged, 4, `node ${i} counted the four`);
    assert.deepEqual(kernel.records.refused.row, { key: 1, revoked: 0, signature: 3 }, `node ${i}'s pk_records_refused_total{kind="row"}`);
  }
  assert.equal(victim.topicPublish("cfg", "leader", utf8.encode("node-b")), undefined);
  assert.equal(victim.gossip.selfVersion, 3, "the version the forgeries claimed");
  assert.ok(runUntil(c, 1_000, () => c.nodes.every((_, i) => valueAt(c, i, "cfg", "leader") === "node-b")) >= 0, "the victim's real row 3 reaches every node");
});

test("store: a node restarted on rows of the older, unsigned form boots, signs its own again and fetches the others' again signed", () => {
  const c = new SimCluster({ nodes: 3, seed: 92, faults: "none" });
  c.run(1500);
  assert.equal(c.nodes[1]!.kernel.topicPublish("t", "mine", utf8.encode("1")), undefined);
  assert.equal(c.nodes[2]!.kernel.topicPublish("t", "theirs", utf8.encode("2")), undefined);
  assert.ok(runUntil(c, 1_000, () => c.nodes.every((_, i) => valueAt(c, i, "t", "mine") === "1" && valueAt(c, i, "t", "theirs") === "2")) >= 0);
  c.run(200); // a persist round: node 1's copy of node 2's row is in its store
  // Rewrite node 1's stored rows in the 7-field form an older version wrote (no key, no signature).
  const store = c.nodes[1]!.kernel.ports.store;
  const rows = store.scan("gossip/row/");
  assert.equal(rows.length, 2);
  store.write(rows.map(([key, value]) => ({ key, value: packValue((unpackValue(value) as unknown[]).slice(0, 7)) })), { durable: true });
  c.crash(1);
  c.restart(1);
  const node = c.nodes[1]!.kernel;
  assert.equal(valueAt(c, 1, "t", "mine"), "1", "its own row, signed again");
  assert.equal(node.gossip.stats().resigned, 1);
  assert.equal(node.gossip.stats().unsignedDropped, 1, "node 2's row could not be: dropped and counted");
  assert.equal(valueAt(c, 1, "t", "theirs"), undefined);
  assert.ok(runUntil(c, 1_000, () => valueAt(c, 1, "t", "theirs") === "2") >= 0, "fetched again, signed");
  c.run(200);
  for (const [key, value] of node.ports.store.scan("gossip/row/")) assert.equal((unpackValue(value) as unknown[]).length, 9, `${key} stored signed`);
  for (const i of [0, 2]) assert.equal(c.nodes[i]!.kernel.gossip.stats().forged, 0, "its re-signed row is no forgery to the others");
});
