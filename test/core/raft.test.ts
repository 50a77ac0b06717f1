import { test } from "node:test";
import assert from "node:assert/strict";
import { Network } from "./raft-harness.ts";

test("raft: three nodes elect one leader and replicate", () => {
  const net = Network.of(3);
  net.campaign("1");
  assert.equal(net.leader(), "1");
  for (let i = 0; i < 10; i++) net.propose("1", `v${i}`);
  for (const id of ["1", "2", "3"]) {
    net.tick(id, 0);
  }
  // heartbeat to spread commit
  net.tick("1", 2);
  for (const id of ["1", "2", "3"]) assert.deepEqual(net.appliedTexts(id), Array.from({ length: 10 }, (_, i) => `v${i}`), id);
});

test("raft: leader isolated, new leader elected, old one rejoins", () => {
  const net = Network.of(3);
  net.campaign("1");
  net.propose("1", "a");
  net.isolate("1");
  for (let i = 0; i < 30 && net.raft("2").role !== "leader" && net.raft("3").role !== "leader"; i++) { net.tick("2"); net.tick("3"); }
  const lead = net.raft("2").role === "leader" ? "2" : "3";
  assert.equal(net.raft(lead).role, "leader");
  net.propose(lead, "b");
  // old leader steps down by check quorum
  net.tick("1", 30);
  assert.notEqual(net.raft("1").role, "leader");
  net.recover();
  net.tick(lead, 3);
  assert.deepEqual(net.appliedTexts("1"), ["a", "b"]);
});

test("raft: read index on leader and follower", () => {
  const net = Network.of(3);
  net.campaign("1");
  net.propose("1", "x");
  net.raft("1").readIndex(new Uint8Array([1]));
  net.send();
  net.raft("2").readIndex(new Uint8Array([2]));
  net.send();
});
