// Gossip topics inside whole kernels in the simulator (issue 5, kdds + replica): a row published
// on one node reaches every node over lossy links, a delete reaches every node, concurrent writes
// to one key converge to the same winner everywhere, a local subscriber sees remote changes, and a
// restarted node keeps its rows.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SimCluster } from "../../src/sim/cluster.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();

function valueAt(c: SimCluster, i: number, topic: string, key: string): string | undefined {
  const row = c.nodes[i]!.kernel.gossip.get(topic, key);
  return row?.value === undefined ? undefined : text.decode(row.value);
}

function runUntil(c: SimCluster, ticks: number, check: () => boolean): number {
  for (let i = 0; i < ticks; i++) {
    if (check()) return i;
    c.tick();
  }
  assert.fail(`condition not reached within ${ticks} ticks`);
}

test("gossip topics: publish, delete, concurrent writes and subscriptions across 8 kernels on lossy links", (t) => {
  const c = new SimCluster({ nodes: 8, seed: 21, faults: "lossy" });
  runUntil(c, 3_000, () => c.nodes.every((n) => n.kernel.swim.size === 8));
  const subscription = c.nodes[7]!.kernel.gossip.subscribe("sensors");
  assert.ok(subscription !== undefined);
  assert.equal(c.nodes[0]!.kernel.topicPublish("sensors", "temp", utf8.encode("21.5")), undefined);
  // runUntil fails the test past its bound: the row reaches every node within 2,000 ticks.
  const took = runUntil(c, 2_000, () => c.nodes.every((_, i) => valueAt(c, i, "sensors", "temp") === "21.5"));
  t.diagnostic(`the row reached all 8 nodes in ${took} ticks`);
  const changes = subscription.take();
  assert.deepEqual(changes.map((ch) => [ch.key, text.decode(ch.value ?? new Uint8Array())]), [["temp", "21.5"]], "the subscriber on another node saw the remote write");
  // Two nodes write the same key at once: every node keeps the same winner.
  c.nodes[2]!.kernel.topicPublish("sensors", "mode", utf8.encode("a"));
  c.nodes[5]!.kernel.topicPublish("sensors", "mode", utf8.encode("b"));
  runUntil(c, 2_000, () => {
    const seen = c.nodes.map((_, i) => valueAt(c, i, "sensors", "mode"));
    return seen.every((v) => v !== undefined && v === seen[0]);
  });
  // A delete reaches everyone.
  c.nodes[3]!.kernel.topicPublish("sensors", "temp", undefined);
  runUntil(c, 2_000, () => c.nodes.every((_, i) => valueAt(c, i, "sensors", "temp") === undefined));
  assert.equal(c.nodes[6]!.kernel.topicPublish("bad topic!", "k", utf8.encode("v")) !== undefined, true, "a bad topic name is refused");
});

test("gossip topics: a restarted node keeps its rows and its own version", () => {
  const c = new SimCluster({ nodes: 3, seed: 22 });
  runUntil(c, 2_000, () => c.nodes.every((n) => n.kernel.swim.size === 3));
  for (let i = 0; i < 5; i++) c.nodes[1]!.kernel.topicPublish("t", `k${i}`, utf8.encode(`v${i}`));
  runUntil(c, 2_000, () => c.nodes.every((_, i) => valueAt(c, i, "t", "k4") === "v4"));
  c.run(200); // a persist round
  const version = c.nodes[1]!.kernel.gossip.selfVersion;
  c.crash(1);
  c.restart(1);
  assert.ok(c.nodes[1]!.kernel.gossip.selfVersion >= version, "the own version survived the crash");
  c.nodes[1]!.kernel.topicPublish("t", "after", utf8.encode("x"));
  runUntil(c, 2_000, () => c.nodes.every((_, i) => valueAt(c, i, "t", "after") === "x" && valueAt(c, i, "t", "k0") === "v0"));
});
