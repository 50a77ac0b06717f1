// Gossip topics inside whole kernels in the simulator (issue 5, kdds + replica): a row published
// on one node reaches every node over lossy links, a delete reaches every node, concurrent writes
// to one key converge to the same winner everywhere, a local subscriber sees remote changes, a
// restarted node keeps its rows, and an HTTP write is answered only once it is durable.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ApiTools } from "../../src/adapters/http.ts";
import { topicRoutes } from "../../src/node/collective/routes.ts";
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

test("gossip topics: an HTTP PUT or DELETE of a row answers only after the row and the node's version are durably written", async () => {
  const c = new SimCluster({ nodes: 2, seed: 23 });
  runUntil(c, 2_000, () => c.nodes.every((n) => n.kernel.swim.size === 2));
  const kernel = c.nodes[0]!.kernel;
  // A store that records the order: each durable batch's keys, and each answer.
  const log: string[] = [];
  const store = kernel.ports.store;
  const write = store.write.bind(store);
  store.write = (batch, options) => {
    write(batch, options);
    if (options.durable) log.push(`durable ${batch.map((w) => w.key).join(" ")}`);
  };
  const route = topicRoutes(kernel).find((r) => r.path === "/v1/topics/");
  assert.ok(route !== undefined);
  const tools: ApiTools = {
    methods: () => undefined,
    readRawBody: () => Promise.resolve(utf8.encode("21.5")),
    readJsonBody: () => Promise.resolve(undefined),
    sendJson: (_res, status, body) => log.push(`answer ${status} ${JSON.stringify(body)}`),
    openStream: () => undefined,
    toJson: (value) => JSON.stringify(value),
  };
  const request = async (method: string, key: string): Promise<void> => {
    const path = `/v1/topics/sensors/${key}`;
    await route.handle({ method } as IncomingMessage, {} as ServerResponse, tools, path, path);
  };
  await request("PUT", "temp");
  const rowKey = "gossip/row/sensors\u0000temp";
  const durable = log.findIndex((line) => line.startsWith("durable") && line.split(" ").includes(rowKey) && line.split(" ").includes("gossip/self"));
  const answer = log.findIndex((line) => line.startsWith("answer 200"));
  assert.ok(durable >= 0, `the row and the version were written durably: ${JSON.stringify(log)}`);
  assert.ok(durable < answer, `before the answer: ${JSON.stringify(log)}`);
  // The same for a delete, whose tombstone row is the write.
  log.length = 0;
  await request("DELETE", "temp");
  assert.match(log[0] ?? "", /^durable .*gossip\/row\/sensors\u0000temp/);
  assert.match(log[1] ?? "", /^answer 200 .*"deleted":true/);
  // A crash right after an answer keeps the write: it is restored from the disk alone.
  await request("PUT", "humidity");
  c.network.partition([c.nodes[0]!.address], [c.nodes[1]!.address]);
  c.crash(0);
  c.restart(0);
  assert.equal(valueAt(c, 0, "sensors", "humidity"), "21.5", "the acknowledged row survived the crash");
});

test("gossip topics: a node restarted with a wiped store loses no write to its old versions: peers take its first write", () => {
  const c = new SimCluster({ nodes: 3, seed: 24 });
  runUntil(c, 2_000, () => c.nodes.every((n) => n.kernel.swim.size === 3));
  for (let i = 0; i < 5; i++) c.nodes[1]!.kernel.topicPublish("t", `k${i}`, utf8.encode(`v${i}`));
  runUntil(c, 2_000, () => c.nodes.every((_, i) => valueAt(c, i, "t", "k4") === "v4"));
  const old = c.nodes[1]!.kernel.gossip.selfVersion;
  c.crash(1);
  const disk = c.nodes[1]!.disk;
  for (const name of disk.names()) disk.remove(name);
  c.restart(1);
  const reborn = c.nodes[1]!.kernel;
  // Written at once, before it has heard from anyone, at a version its peers already hold.
  assert.equal(reborn.topicPublish("t", "after", utf8.encode("x")), undefined);
  runUntil(c, 2_000, () => c.nodes.every((_, i) => valueAt(c, i, "t", "after") === "x"));
  assert.ok(reborn.gossip.selfVersion > old, `it moved above its old versions (${reborn.gossip.selfVersion} > ${old})`);
  assert.equal(reborn.gossip.stats().renumbers, 1);
  assert.equal(valueAt(c, 0, "t", "k3"), "v3", "the others keep its old rows");
  // Its moved version is durable: a crash now does not take it back to its old versions.
  const moved = reborn.gossip.selfVersion;
  c.crash(1);
  c.restart(1);
  assert.ok(c.nodes[1]!.kernel.gossip.selfVersion >= moved);
});
