// The Self layer's memory inside whole kernels in the simulator (issue 14): a memory written on one
// node reaches every node, survives a crash of every node (durable before it was acknowledged,
// restored before any sync), a redaction spreads, superseded memories stay but leave recall, and a
// row under another node's key is refused by every node.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SimCluster } from "../../src/sim/cluster.ts";
import { encodeMemory, MEMORY_TOPIC } from "../../src/core/self/memory-record.ts";

function runUntil(c: SimCluster, ticks: number, check: () => boolean): number {
  for (let i = 0; i < ticks; i++) {
    if (check()) return i;
    c.tick();
  }
  assert.fail(`condition not reached within ${ticks} ticks`);
}

function formed(c: SimCluster, n: number): void {
  runUntil(c, 3_000, () => c.nodes.every((node) => node.kernel.swim.size === n));
}

test("memory: a memory reaches every node at once (pushed), is found by search everywhere, and survives every node crashing", (t) => {
  const c = new SimCluster({ nodes: 3, seed: 141 });
  formed(c, 3);
  const a = c.nodes[0]!.kernel;
  const told = a.remember({ text: "my daughter's piano lesson is on Thursday at five", speaker: "ana", kind: "user", conv: "ana" });
  assert.ok("id" in told, JSON.stringify(told));
  a.remember({ text: "the garage Raspberry Pi runs hot in summer", speaker: "ana", kind: "note" });
  // Pushed to every live peer (3 nodes ≤ the fanout): a round trip, not a gossip period.
  const took = runUntil(c, 100, () => c.nodes.every((n) => n.kernel.memory.get(told.id) !== undefined));
  t.diagnostic(`reached all 3 nodes in ${took} ticks`);
  const hits = c.nodes[2]!.kernel.memory.search("when does my kid have music class", 3);
  assert.equal(hits[0]?.memory.id, told.id, "a paraphrase finds it on another node");
  // Every node crashes (torn writes) right after the acknowledgement, with no persist round.
  for (let i = 0; i < 3; i++) c.crash(i);
  for (let i = 0; i < 3; i++) c.restart(i);
  for (const node of c.nodes) {
    const held = node.kernel.memory.get(told.id);
    assert.ok(held !== undefined || node.index !== 0, "the writer restores its acknowledged memory before any sync");
  }
  formed(c, 3);
  runUntil(c, 2_000, () => c.nodes.every((n) => n.kernel.memory.get(told.id)?.text === "my daughter's piano lesson is on Thursday at five"));
});

test("memory: redaction spreads to every node, superseded memories leave recall but stay, and stat counts them", () => {
  const c = new SimCluster({ nodes: 3, seed: 142 });
  formed(c, 3);
  const [a, b] = [c.nodes[0]!.kernel, c.nodes[1]!.kernel];
  const secret = a.remember({ text: "the wifi password is hunter2", speaker: "bo" });
  const old = a.remember({ text: "the backup runs at 2 am", speaker: "bo" });
  assert.ok("id" in secret && "id" in old);
  runUntil(c, 200, () => c.nodes.every((n) => n.kernel.memory.get(old.id) !== undefined && n.kernel.memory.get(secret.id) !== undefined));
  // A core member other than the writer redacts.
  assert.equal(b.redactMemory(secret.id), undefined);
  const newer = b.remember({ text: "the backup now runs at 3 am", speaker: "bo", supersedes: [old.id] });
  assert.ok("id" in newer);
  runUntil(c, 500, () => c.nodes.every((n) => n.kernel.memory.get(secret.id)?.kind === "redacted" && n.kernel.memory.get(old.id)?.supersededBy.includes(newer.id) === true));
  for (const node of c.nodes) {
    const m = node.kernel.memory;
    assert.equal(m.get(secret.id)!.text, "", "no text left anywhere");
    assert.ok(!m.search("wifi password", 5).some((h) => h.memory.id === secret.id), "a redacted memory is not recalled");
    assert.deepEqual(m.search("when does the backup run", 5).map((h) => h.memory.id), [newer.id], "only the current memory is recalled (the one other left)");
    assert.ok(m.get(old.id) !== undefined, "the superseded memory is kept");
    assert.equal(m.stats().redacted, 1);
    assert.equal(m.stats().superseded, 1);
  }
  assert.match(b.redactMemory(secret.id) ?? "", /already redacted/);
  assert.match(b.redactMemory("0000000000000000/x") ?? "", /no memory/);
});

test("memory: a row under another node's key, a malformed value or a delete is refused by the table on every node", () => {
  const c = new SimCluster({ nodes: 3, seed: 143 });
  formed(c, 3);
  const a = c.nodes[0]!.kernel;
  const victim = c.nodes[1]!.kernel.id;
  const topics = a.memory.topics;
  const forged = encodeMemory({ kind: "note", text: "I never said this", speaker: "eve", atMs: 1, conv: undefined, supersedes: [], by: undefined });
  // A node's own table refuses its writes under another node's key (every node applies the same rule to peers' rows).
  assert.match(topics.publish(MEMORY_TOPIC, `${victim}/1.0`, forged) ?? "", /does not take/);
  assert.match(topics.publish(MEMORY_TOPIC, `${a.id}/1.0`, new Uint8Array([1, 2, 3])) ?? "", /does not take/);
  assert.match(topics.publish("other", `${a.id}/1.0`, forged) ?? "", /does not take/);
  assert.ok(a.memory.stats().refused >= 3);
  assert.equal(a.memory.size, 0);
});
