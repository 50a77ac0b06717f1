// When `pk up` hands a cluster over (issue 12): formation() on views of the nodes, without
// processes. The real-process side is in up-down.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { formation, settledConfiguration, type NodeLook } from "../../src/cli/main.ts";

const ids = ["aaaa", "bbbb", "cccc"];
const names = new Map([["aaaa", "n1"], ["bbbb", "n2"], ["cccc", "n3"]]);

function look(id: string, options: {
  alive?: readonly string[]; state?: string; term?: number; leader?: string | null;
  voters?: readonly string[]; learners?: readonly string[]; config?: string | undefined;
} = {}): NodeLook {
  const voters = options.voters ?? ids;
  const learners = options.learners ?? [];
  const state = options.state ?? (id === "aaaa" ? "leader" : voters.includes(id) ? "follower" : "learner");
  const config = "config" in options ? options.config : state === "learner" ? undefined : `voters=(${voters.join(" ")})${learners.length > 0 ? ` learners=(${learners.join(" ")})` : ""}`;
  return {
    status: {
      id,
      members: (options.alive ?? ids).map((member) => ({ id: member, state: "alive" })),
      raft: { state, term: options.term ?? 2, leader: options.leader === undefined ? "aaaa" : options.leader, voters, learners },
    },
    config,
  };
}

test("settledConfiguration: the voters the leader grows to (at most 5, odd) and the learners beside them", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 30].map(settledConfiguration), [
    { voters: 1, learners: 0 }, { voters: 1, learners: 1 }, { voters: 3, learners: 0 }, { voters: 3, learners: 1 },
    { voters: 5, learners: 0 }, { voters: 5, learners: 1 }, { voters: 5, learners: 2 }, { voters: 5, learners: 16 },
  ]);
});

test("formation: 3 nodes that see each other, one leader, 3 voters at every voter: formed", () => {
  const result = formation(ids, ids.map((id) => look(id)), names);
  assert.deepEqual(result, { formed: true, summary: "3/3 alive, raft voters 3/3, leader n1 (term 2)" });
});

test("formation: what pk up used to hand over (the founder the only voter, the others learners) is not formed", () => {
  const voters = ["aaaa"];
  const learners = ["bbbb", "cccc"];
  const result = formation(ids, ids.map((id) => look(id, { voters, learners })), names);
  assert.equal(result.formed, false);
  assert.equal(result.summary, "3/3 alive, raft voters 1/3, learners 2/0, leader n1 (term 2)");
  // Learners at term 0 that do not know the leader yet.
  const early = formation(ids, [look("aaaa", { voters, learners }), look("bbbb", { voters, learners, leader: null, term: 0 }), look("cccc", { voters: [], learners: [], leader: null, term: 0 })], names);
  assert.equal(early.formed, false);
  assert.match(early.summary, /raft voters 1\/3, learners 2\/0, leader n1 \(term 2\), 1\/3 follow it/);
});

test("formation: not formed while a node is missing, a member is not alive, the configuration is joint, or a voter lags", () => {
  const notAnswering = formation(ids, [look("aaaa"), look("bbbb"), { status: undefined, config: undefined }], names);
  assert.equal(notAnswering.formed, false);
  assert.match(notAnswering.summary, /^0\/3 alive, 1 not answering, /);

  const suspect = formation(ids, [look("aaaa", { alive: ["aaaa", "bbbb"] }), look("bbbb"), look("cccc")], names);
  assert.equal(suspect.formed, false);
  assert.match(suspect.summary, /^2\/3 alive, /);

  const joint = formation(ids, ids.map((id) => look(id, { config: "voters=(aaaa bbbb cccc)&&(aaaa) autoleave" })), names);
  assert.equal(joint.formed, false);
  assert.match(joint.summary, /raft voters 3\/3 \(changing\)/);

  const lagging = formation(ids, [look("aaaa"), look("bbbb"), look("cccc", { voters: ["aaaa"], learners: ["bbbb", "cccc"], state: "follower" })], names);
  assert.equal(lagging.formed, false, "a voter that has not applied the configuration yet");

  const noLeader = formation(ids, ids.map((id) => look(id, { state: "follower", leader: null })), names);
  assert.deepEqual(noLeader, { formed: false, summary: "3/3 alive, raft: no leader yet" });
});

test("formation: after a restart the newest leader counts (a stale one at a lower term does not)", () => {
  const looks = [look("aaaa", { state: "leader", term: 3, leader: "aaaa" }), look("bbbb", { state: "leader", term: 4, leader: "bbbb" }), look("cccc", { leader: "bbbb", term: 4 })];
  const result = formation(ids, looks, names);
  assert.equal(result.formed, false);
  assert.match(result.summary, /leader n2 \(term 4\), 2\/3 follow it/);
});
