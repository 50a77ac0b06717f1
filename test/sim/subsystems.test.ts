// The subsystem contract in whole-cluster simulation: a kind's sender rule is enforced before its
// owner sees the message (dropped and counted as "denied"), and a kind owned twice stops the boot.
import assert from "node:assert/strict";
import test from "node:test";
import { AssertionFailure } from "../../src/core/util/assert.ts";
import { VITALS } from "../../src/node/body/subsystems.ts";
import { SUBSYSTEMS } from "../../src/node/registry.ts";
import type { SubsystemSpec } from "../../src/node/subsystem.ts";
import { SimCluster } from "../../src/sim/cluster.ts";
import { createSimSeal } from "../../src/sim/seal.ts";
import { createSimIdentity } from "../../src/sim/identity.ts";
import { issueCert, signEntry } from "../../src/core/body/trust.ts";
import { encodeMessage } from "../../src/core/wire/codec.ts";
import type { Message } from "../../src/core/wire/messages.ts";

const specs = SUBSYSTEMS as unknown as readonly SubsystemSpec[];

test("sender rules: vital signs only from core members; a contributor's are denied and counted", () => {
  const coreOnly: SubsystemSpec = { ...VITALS, kinds: { vital: "core" } } as unknown as SubsystemSpec;
  const cluster = new SimCluster({
    nodes: 3, seed: 11, roles: ["core", "core", "contributor"],
    subsystems: specs.map((spec) => (spec.name === "vitals" ? coreOnly : spec)),
  });
  cluster.run(1_500);
  const [a, b, c] = cluster.nodes.map((n) => n.kernel) as [typeof cluster.nodes[0]["kernel"], typeof cluster.nodes[0]["kernel"], typeof cluster.nodes[0]["kernel"]];
  assert.equal(a.memberStatuses().filter((m) => m.state === "alive").length, 3, "all three are members");
  assert.equal(a.swim.member(c.id)?.entry.role, "contributor");
  // The core member's vital signs arrive; the contributor's are dropped before the vitals subsystem.
  assert.notEqual(a.vitals.peer(b.id), undefined);
  assert.equal(a.vitals.peer(c.id), undefined);
  assert.ok(a.stats.dropped.denied > 0, "denied drops counted");
  assert.match(a.stats.lastDrop, /^denied: vital from non-core /);
  // The contributor itself accepts everyone's (the rule is about the sender, not the receiver).
  assert.notEqual(c.vitals.peer(a.id), undefined);
  // With the registry's own rule (vital from any member) nothing is denied.
  const plain = new SimCluster({ nodes: 3, seed: 11, roles: ["core", "core", "contributor"] });
  plain.run(1_500);
  const a2 = plain.nodes[0]!.kernel;
  assert.notEqual(a2.vitals.peer(plain.nodes[2]!.kernel.id), undefined);
  assert.equal(a2.stats.dropped.denied, 0);
});

test("sender rules: a key holder no member knows gets only the handshake and an introduction through (issue 13)", () => {
  const cluster = new SimCluster({ nodes: 2, seed: 5 });
  cluster.run(600);
  const a = cluster.nodes[0]!.kernel;
  const b = cluster.nodes[1]!.kernel;
  assert.equal(a.stats.dropped.denied, 0, "members' traffic is never denied");
  assert.equal(a.stats.dropped.unknown, 0, "members are introduced before they speak");
  // A stranger holding the cluster key (the sim seal) but no certificate: only intro packets
  // (the cluster key) can carry anything from it, and those carry the handshake alone.
  const strangerIdentity = createSimIdentity(new Uint8Array(32).fill(3));
  const stranger = strangerIdentity.id;
  const seal = createSimSeal(stranger);
  let counter = 0;
  const intro = (message: Message, channel: "datagram" | "stream"): boolean => a.receive(seal.seal(channel, 1, ++counter, encodeMessage(message)), channel, "10.9.9.9:1");
  const guarded = a.heal.list().length;
  for (const message of [
    { t: "heal", reply: true, tasks: [] },
    { t: "vital", up: 1, load: 0, rss: 0, heap: 0, lag: 0 },
    { t: "ping", seq: 1, sent: 1 },
  ] as Message[]) {
    const before: number = a.stats.dropped.denied;
    intro(message, message.t === "heal" ? "stream" : "datagram");
    assert.equal(a.stats.dropped.denied, before + 1, `${message.t} in an intro packet is denied`);
  }
  assert.equal(a.stats.lastDrop, `denied: ping in an intro packet from ${stranger}`);
  assert.equal(a.vitals.peer(stranger), undefined);
  assert.equal(a.heal.list().length, guarded);
  // Sealed under a pair key it cannot have made: nobody holds its entry, so nothing opens it.
  const unknown = a.stats.dropped.unknown;
  a.receive(seal.seal("datagram", 1, ++counter, encodeMessage({ t: "ping", seq: 2, sent: 1 }), { id: a.id, pub: b.swim.member(a.id)!.entry.pub, epoch: a.epoch }), "datagram", "10.9.9.9:1");
  assert.equal(a.stats.dropped.unknown, unknown + 1);
  // The handshake is let through, and refused by the roster: the stranger's certificate is from
  // an owner key that is not the cluster's (a self-made one), and a member's key is not its own.
  const selfMade = issueCert(strangerIdentity, strangerIdentity.publicKey, { role: "core", issuedMs: 0, expiresMs: 0 });
  const entry = signEntry(strangerIdentity, { id: stranger, addr: "10.9.9.9:1", role: "core", name: "x", incarnation: 0, epoch: 1 }, selfMade);
  const refusals: string[] = [];
  a.events.subscribe((event) => { if (event.type === "join-refused") refusals.push(String(event.data.reason)); });
  const denied = a.stats.dropped.denied;
  intro({ t: "hello", entry }, "datagram");
  intro({ t: "hello", entry: { ...entry, pub: b.swim.member(a.id)!.entry.pub } }, "datagram");
  assert.equal(a.stats.dropped.denied, denied, "the handshake is not denied");
  assert.deepEqual(refusals, ["no valid certificate or signature", "id does not match public key"]);
  assert.equal(a.swim.member(stranger), undefined);
});

test("a message kind owned by two subsystems stops the kernel at boot", () => {
  const twice: SubsystemSpec = { name: "vitals-again", kinds: { vital: "member" }, create: () => ({}) } as unknown as SubsystemSpec;
  assert.throws(() => new SimCluster({ nodes: 1, seed: 1, subsystems: [...specs, twice] }), (error: unknown) => {
    assert.ok(error instanceof AssertionFailure);
    assert.match(error.message, /message kind vital owned by vitals and vitals-again/);
    return true;
  });
});

test("raft grants (issue 13): no member's proposal can reset the configuration; a contributor can neither propose nor vote", async () => {
  const { encodeConfChange } = await import("../../src/core/collective/raft/confchange.ts");
  const { raftToWire } = await import("../../src/core/collective/raft/wire.ts");
  const { message } = await import("../../src/core/collective/raft/types.ts");
  const cluster = new SimCluster({ nodes: 3, seed: 21, roles: ["core", "core", "contributor"] });
  cluster.run(3_000);
  const kernels = cluster.nodes.map((n) => n.kernel);
  const leader = kernels.find((k) => k.consensus.status().role === "leader");
  assert.ok(leader !== undefined, "a leader was elected");
  const voters = leader.consensus.status().conf.voters;
  const contributor = kernels[2]!;
  const core = kernels.find((k) => k !== leader && k !== contributor)!;
  // What each of them could send the leader: a forwarded prop whose entry resets the voters to itself.
  let counter = 0;
  const forge = (from: typeof leader, type: "prop" | "vote" | "timeout-now"): void => {
    const reset = encodeConfChange({ changes: [{ type: "add-learner", node: from.id }], transition: "auto", reset: { voters: [from.id], epoch: 9 } });
    const m = type === "prop"
      ? message({ type, from: from.id, to: leader.id, entries: [{ term: 0, index: 0, type: "conf", data: reset }] })
      : message({ type, from: from.id, to: leader.id, term: leader.consensus.status().term + 5 });
    const to = { id: leader.id, pub: from.swim.member(leader.id)!.entry.pub, epoch: leader.epoch };
    leader.receive(createSimSeal(from.id).seal("stream", 2 ** 50, ++counter, encodeMessage(raftToWire(m)), to), "stream", "sim");
  };
  const denied = leader.stats.dropped.denied;
  forge(core, "prop");
  assert.match(leader.stats.lastDrop, /^denied: raft prop with a configuration change from /);
  forge(contributor, "prop");
  assert.match(leader.stats.lastDrop, /^denied: raft prop from non-core /);
  forge(contributor, "vote");
  assert.match(leader.stats.lastDrop, /^denied: raft vote from non-core /);
  forge(contributor, "timeout-now");
  assert.equal(leader.stats.dropped.denied, denied + 4);
  cluster.run(1_000);
  assert.deepEqual(leader.consensus.status().conf.voters, voters, "the voters did not change");
  assert.equal(leader.consensus.status().role, "leader");
  // A contributor's own write is refused at once with a clear answer (the leader would refuse it anyway).
  const outcome = await new Promise<{ code: string; detail?: string }>((resolve) => contributor.consensus.put("k", new Uint8Array([1]), resolve));
  assert.equal(outcome.code, "forbidden");
  assert.match(outcome.detail ?? "", /contributor/);
});
