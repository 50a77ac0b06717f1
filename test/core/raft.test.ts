import { test } from "node:test";
import assert from "node:assert/strict";
import { RAFT_DEFAULTS } from "../../src/core/collective/raft/raft.ts";
import { ids, Network } from "./raft-harness.ts";

test("raft: three nodes elect one leader and replicate", () => {
  const net = Network.of(3);
  net.campaign("1");
  assert.equal(net.leader(), "1");
  for (let i = 0; i < 10; i++) net.propose("1", `v${i}`);
  const expected = Array.from({ length: 10 }, (_, i) => `v${i}`);
  for (const id of ids(3)) assert.deepEqual(net.appliedTexts(id), expected, id);
  // One leader, and it stays the only one: for two election timeouts every node ticks, and the
  // leader's heartbeats keep the followers from campaigning. Nothing is applied twice.
  const term = net.raft("1").term;
  for (let round = 0; round < 2 * RAFT_DEFAULTS.electionTicks; round++) for (const id of ids(3)) net.tick(id);
  for (const id of ids(3)) {
    assert.equal(net.raft(id).role, id === "1" ? "leader" : "follower", id);
    assert.equal(net.raft(id).lead, "1", id);
    assert.equal(net.raft(id).term, term, `${id}: no election happened`);
    assert.deepEqual(net.appliedTexts(id), expected, id);
  }
});

test("raft: leader isolated, new leader elected, old one rejoins", () => {
  const net = Network.of(3);
  net.campaign("1");
  net.propose("1", "a");
  net.isolate("1");
  for (let i = 0; i < 30 && net.raft("2").role !== "leader" && net.raft("3").role !== "leader"; i++) { net.tick("2"); net.tick("3"); }
  const lead = net.raft("2").role === "leader" ? "2" : "3";
  assert.equal(net.raft(lead).role, "leader");
  assert.ok(net.raft(lead).term > net.raft("1").term, "the new leader's term is newer");
  net.propose(lead, "b");
  // old leader steps down by check quorum
  net.tick("1", 30);
  assert.notEqual(net.raft("1").role, "leader");
  net.recover();
  net.tick(lead, 3);
  assert.equal(net.raft("1").lead, lead);
  assert.deepEqual(net.appliedTexts("1"), ["a", "b"]);
});

test("raft: read index on leader and follower", () => {
  const net = Network.of(3);
  net.campaign("1");
  net.propose("1", "x");
  const commit = net.raft("1").log.committed;
  assert.equal(commit, 2, "the leader's empty entry and x");
  // On the leader the read state comes back at once (after a heartbeat round confirms the lead);
  // on a follower it comes back through the leader. Both carry their context and the commit index.
  net.raft("1").readIndex(new Uint8Array([1]));
  net.send();
  assert.deepEqual(net.node("1").readStates, [{ index: commit, context: new Uint8Array([1]) }]);
  net.raft("2").readIndex(new Uint8Array([2]));
  net.send();
  assert.deepEqual(net.node("2").readStates, [{ index: commit, context: new Uint8Array([2]) }]);
  assert.deepEqual(net.node("3").readStates, [], "no read state where none was asked");
  assert.equal(net.node("1").readStates.length, 1, "the follower's read is answered to the follower, not the leader");
});

test("raft: a forwarded proposal carrying a configuration reset is refused by the leader (issue 13: one prop made the attacker the only voter)", async () => {
  const { encodeConfChange } = await import("../../src/core/collective/raft/confchange.ts");
  const { message } = await import("../../src/core/collective/raft/types.ts");
  const net = Network.of(3);
  net.campaign("1");
  net.propose("1", "a");
  const before = net.raft("1").status().conf;
  // What a member sends: a `prop` whose one entry is a conf entry resetting the voters to itself.
  // (Its change list is not empty: an empty one outside a joint configuration is refused anyway.)
  const reset = encodeConfChange({ changes: [{ type: "add-learner", node: "3" }], transition: "auto", reset: { voters: ["3"], epoch: 99 } });
  net.send(message({ type: "prop", from: "3", to: "1", entries: [{ term: 0, index: 0, type: "conf", data: reset }] }));
  net.propose("1", "b");
  for (const id of ids(3)) {
    assert.deepEqual(net.raft(id).status().conf.voters, before.voters, `${id}: the voters did not change`);
    assert.deepEqual(net.appliedTexts(id), ["a", "b"], id);
  }
  assert.equal(net.raft("1").role, "leader");
  // Regeneration, the one legitimate source of a reset, still works (it never goes through propose).
  net.isolate("1");
  net.raft("2").forceNewConfiguration(encodeConfChange({ changes: [], transition: "auto", reset: { voters: ["2"], epoch: 1 } }));
  net.drain("2");
  net.campaign("2");
  assert.equal(net.raft("2").role, "leader");
  assert.deepEqual(net.raft("2").status().conf.voters, ["2"]);
});

test("raft: pardoned ticks (a frozen host catching up) start no election and no check-quorum; a leader with lease reads refuses the pardon", () => {
  for (const readOnly of ["safe", "lease"] as const) {
    const net = Network.of(3, { readOnly });
    net.campaign("1");
    const term = net.raft("1").term;
    // Isolated, so nothing resets the clocks: only the pardon keeps them still.
    net.isolate("1");
    const ticks = 4 * RAFT_DEFAULTS.electionTicks;
    for (const id of ids(3)) net.raft(id).pardon(ticks);
    for (const id of ids(3)) net.tick(id, ticks);
    assert.equal(net.raft("2").term, term, `${readOnly}: a pardoned follower did not campaign`);
    assert.equal(net.raft("2").role, "follower");
    // The leader's lease is wall time: with lease reads it steps down by check-quorum regardless.
    assert.equal(net.raft("1").role === "leader", readOnly === "safe", `${readOnly}: ${net.raft("1").role}`);
    // The pardon is used up: unpardoned ticks count again.
    for (let i = 0; i < ticks; i++) for (const id of ["2", "3"]) net.tick(id);
    assert.ok(net.raft("2").term > term || net.raft("3").term > term, `${readOnly}: the followers campaign once the pardon is spent`);
  }
});
