// Trust in whole-cluster simulation (issue 13): a member revoked through the consensus store is
// refused by every node — its packets no longer open, SWIM finds it dead, its entries are not
// believed again, and it leaves the Raft configuration — deterministic by seed.
import assert from "node:assert/strict";
import test from "node:test";
import type { Invites } from "../../src/node/body/invites.ts";
import { SimCluster } from "../../src/sim/cluster.ts";

test("revoke: every node stops believing a revoked member, and its voter seat is replaced", async () => {
  const cluster = new SimCluster({ nodes: 4, seed: 31 });
  await cluster.runAsync(3_000);
  const kernels = cluster.nodes.map((n) => n.kernel);
  const leader = kernels.find((k) => k.consensus.isLeader);
  assert.ok(leader !== undefined, "a leader");
  const victim = kernels.find((k) => k !== leader && k.consensus.status().conf.voters.includes(k.id)) ?? kernels.find((k) => k !== leader)!;
  let done = false;
  void leader.subsystem<Invites>("invites").revoke(victim.id).then(() => { done = true; });
  await cluster.runAsync(200);
  assert.ok(done, "the revocation was committed");
  await cluster.runAsync(6_000);
  for (const k of kernels) {
    if (k === victim) continue;
    const seen = k.swim.member(victim.id);
    assert.ok(seen === undefined || seen.state === "dead", `${k.id} holds the revoked member ${seen?.state}`);
    assert.ok(k.stats.dropped.unknown > 0, "its packets were dropped");
    assert.ok(!k.consensus.status().conf.voters.includes(victim.id), "it holds no voter seat");
  }
  const survivors = kernels.filter((k) => k !== victim);
  assert.ok(survivors.every((k) => k.memberStatuses().filter((m) => m.state === "alive").length === 3), "the other three see each other alive");
});

test("a stream frame over the transport's first-frame bound goes behind a small one that authenticates its connection", async () => {
  const { LIMITS } = await import("../../src/core/util/limits.ts");
  const { decodeHeader } = await import("../../src/core/wire/envelope.ts");
  const cluster = new SimCluster({ nodes: 3, seed: 5 });
  await cluster.runAsync(3_000);
  const leader = cluster.nodes.map((n) => n.kernel).find((k) => k.consensus.isLeader);
  assert.ok(leader !== undefined);
  const sent: Array<{ to: string; bytes: number; counter: number }> = [];
  const transport = leader.ports.transport as { send: (to: string, channel: "datagram" | "stream", packet: Uint8Array) => void };
  const send = transport.send.bind(transport);
  transport.send = (to, channel, packet) => {
    const header = decodeHeader(packet);
    if (channel === "stream" && header.ok) sent.push({ to, bytes: packet.length, counter: header.header.counter });
    send(to, channel, packet);
  };
  const value = new Uint8Array(Math.min(200_000, LIMITS.kv.valueBytesMax)).fill(7);
  let answer = "";
  leader.consensus.put("big", value, (outcome) => { answer = outcome.code; });
  await cluster.runAsync(300);
  assert.equal(answer, "ok");
  const big = sent.map((s, i) => ({ ...s, i })).filter((s) => s.bytes > LIMITS.net.firstFrameBytesMax);
  assert.ok(big.length >= 2, `the entry went to both followers in frames over the bound (${big.length})`);
  for (const frame of big) {
    const before = sent[frame.i - 1];
    assert.ok(before !== undefined && before.to === frame.to && before.bytes <= LIMITS.net.firstFrameBytesMax && before.counter === frame.counter - 1, "a small frame to the same node just before it");
  }
});
