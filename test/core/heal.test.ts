// The guarded-task core (src/core/body/heal.ts, docs/protocols/heal.md): adoption of a dead owner's
// task, and what a peer's record may do ("attack" tests): every record is signed by the owner it
// names, so a record in another node's name, or a signed one changed on the way, is dropped by
// every node and counted; epochs past LIMITS.guardEpochTakenMax are taken only a bounded step at a
// time; and a node's own define, remove and adopt keep room.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Heal, healRecordBody, taskFromWire, taskToWire, type GuardedTask, type GuardedTaskFields, type HealMembership, type HealSigner,
} from "../../src/core/body/heal.ts";
import { RecordSigner } from "../../src/core/body/trust.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import type { GuardedTaskWire } from "../../src/core/wire/messages.ts";
import type { Identity } from "../../src/node/ports.ts";
import { createSimIdentity } from "../../src/sim/identity.ts";

// Four identities (the simulator's stand-in signatures: real keys, cheap signatures), named in id
// order: adoption goes to the lowest id.
const IDENTITIES: Identity[] = [1, 2, 3, 4].map((n) => createSimIdentity(new Uint8Array(32).fill(n))).sort((a, b) => (a.id < b.id ? -1 : 1));
const [ID_A, ID_B, ID_C, ID_M] = IDENTITIES as [Identity, Identity, Identity, Identity];
const A = ID_A.id;
const B = ID_B.id;
const C = ID_C.id;
const CONFIG = { syncTicks: 500, settleTicks: 0 };
const signers = new Map<string, RecordSigner>();

/** The node's signer (one per node, as on a real node: its refusal counts are the node's). */
function signerOf(identity: Identity): RecordSigner {
  let signer = signers.get(identity.id);
  if (signer === undefined) signers.set(identity.id, (signer = new RecordSigner(identity, identity)));
  return signer;
}

/** A membership view: `live` are the others this node sees alive; `gone` those it holds dead. */
function members(live: string[], gone: string[] = []): HealMembership {
  return { liveIds: () => live, liveCount: () => live.length, isGone: (id) => gone.includes(id) };
}

/** A record signed by `writer` (the owner's own record when writer is the owner's identity). */
function record(name: string, command: string, owner: string, epoch: number, writer: Identity, removed = false): GuardedTaskWire {
  const fields: GuardedTaskFields = { name, command, everyTicks: 100, owner, epoch, removed };
  return taskToWire({ ...fields, pub: writer.publicKey, sig: new RecordSigner(writer, writer).sign("heal", healRecordBody(fields)) });
}

function settled(identity: Identity, membership: HealMembership, records: HealSigner = new RecordSigner(identity, identity)): Heal {
  const heal = new Heal(identity.id, records, CONFIG);
  heal.tick(membership);
  heal.ready();
  return heal;
}

/** Delivers every message `from` has to the nodes in `to` (by id), once. */
function deliver(from: Heal, fromId: string, to: Map<string, Heal>): void {
  for (const out of from.ready().messages) to.get(out.to)?.step(fromId, out.reply, out.tasks);
}

test("heal: the lowest-id survivor adopts a dead owner's task one epoch up, signed by itself, and the others take its record", () => {
  const nodes = new Map([[A, settled(ID_A, members([B, C]))], [B, settled(ID_B, members([A, C]))], [C, settled(ID_C, members([A, B]))]]);
  const c = nodes.get(C) as Heal;
  assert.equal(c.define("beat", "ver", 100, members([A, B])), undefined);
  deliver(c, C, nodes);
  for (const id of [A, B]) assert.equal(nodes.get(id)?.get("beat")?.owner, C);
  // C dies: A (the lowest live id) adopts, B does not.
  const view = (id: string): HealMembership => members([A, B].filter((x) => x !== id), [C]);
  for (const id of [A, B]) nodes.get(id)?.tick(view(id));
  const a = nodes.get(A) as Heal;
  const b = nodes.get(B) as Heal;
  assert.deepEqual(a.running().map((t) => [t.name, t.owner, t.epoch]), [["beat", A, 2]]);
  assert.deepEqual(a.get("beat")?.pub, ID_A.publicKey, "the adoption carries the adopter's key");
  assert.deepEqual(b.running(), []);
  deliver(a, A, nodes);
  assert.deepEqual(b.get("beat"), { ...(a.get("beat") as GuardedTask) }, "B holds A's adoption");
  assert.deepEqual(b.stats(), { epochRefused: 0, signatureRefused: 0, ownerRefused: 0, unsignedDropped: 0, roleRefused: 0 });
});

test("attack: a record naming the victim as owner with the maximum epoch is refused — the victim runs nothing and guard rm still works", () => {
  const view = members([B]);
  const victim = settled(ID_A, view);
  victim.step(B, false, [record("pub", "topic pub spam x", A, LIMITS.guardEpochMax, ID_B)]);
  assert.deepEqual(victim.running(), [], "the forged task does not run on the victim");
  assert.equal(victim.get("pub"), undefined);
  assert.equal(victim.stats().epochRefused, 1);
  // The victim's own changes of that name have all the room they need.
  assert.equal(victim.define("pub", "ver", 100, view), undefined);
  assert.equal(victim.remove("pub", view), undefined, "guard rm is not answered 'epoch space exhausted'");
  assert.equal(victim.get("pub")?.removed, true);
});

test("attack: a record naming another node as owner, signed by the relaying member, is taken by no node and counted; guard rm still works", () => {
  const view = members([B, C]);
  const victimSigner = signerOf(ID_A);
  const bystanderSigner = new RecordSigner(ID_C, ID_C);
  const victim = settled(ID_A, view, victimSigner);
  const bystander = settled(ID_C, members([A, B]), bystanderSigner);
  // Mallory (B here) writes a record naming the victim, with her own key, and with the victim's key
  // but her own signature.
  const withOwnKey = record("pub", "topic pub spam x", A, 7, ID_B);
  const withVictimKey: GuardedTaskWire = [...withOwnKey.slice(0, 6) as [string, string, number, string, number, boolean], ID_A.publicKey, withOwnKey[7]];
  for (const node of [victim, bystander]) node.step(B, false, [withOwnKey, withVictimKey]);
  for (const node of [victim, bystander]) {
    assert.equal(node.get("pub"), undefined, "nobody holds it");
    assert.deepEqual(node.running(), [], "nobody runs it");
    assert.equal(node.stats().signatureRefused, 2);
  }
  assert.equal(victim.stats().ownerRefused, 2, "the victim counts records in its name");
  assert.equal(bystander.stats().ownerRefused, 0);
  assert.deepEqual(bystanderSigner.refused.heal, { key: 1, revoked: 0, signature: 1 }, "the node's signer counts by reason (/metrics)");
  const ready = victim.ready();
  assert.deepEqual(ready.events.map((e) => e.type), ["guard-refused", "guard-refused"], "the victim's event log says so");
  assert.deepEqual(ready.changed, [], "nothing stored");
  assert.deepEqual(ready.messages, [], "nothing answered: the forgery landed nowhere");
  // The name stays the victim's to use.
  assert.equal(victim.define("pub", "ver", 100, view), undefined);
  assert.equal(victim.remove("pub", view), undefined);
  assert.equal(victim.get("pub")?.removed, true);
});

test("attack: a valid signature reused on a changed record (command, owner, epoch, removal) is refused; the signed one is still taken", () => {
  const view = members([A, B]);
  const node = settled(ID_C, view);
  const good = record("beat", "ver", B, 3, ID_B);
  const changed: GuardedTaskWire[] = [
    ["beat", "rm -r /shared/x", 100, B, 4, false, good[6], good[7]],
    ["beat", "ver", 100, A, 3, false, good[6], good[7]],
    ["beat", "ver", 100, B, 9, false, good[6], good[7]],
    ["beat", "ver", 100, B, 3, true, good[6], good[7]],
    ["beat", "ver", 50, B, 3, false, good[6], good[7]],
  ];
  node.step(B, false, changed);
  assert.equal(node.get("beat"), undefined);
  assert.equal(node.stats().signatureRefused, changed.length);
  // The rest of a message is still applied: the good record next to a forged one.
  node.step(A, false, [changed[0] as GuardedTaskWire, good]);
  assert.deepEqual([node.get("beat")?.owner, node.get("beat")?.command, node.get("beat")?.epoch], [B, "ver", 3]);
  assert.equal(node.stats().signatureRefused, changed.length + 1);
});

test("attack: a forged record over a task this node owns is not run; its own definition stays", () => {
  const view = members([B]);
  const victim = settled(ID_A, view);
  assert.equal(victim.define("beat", "ver", 100, view), undefined);
  victim.ready();
  victim.step(B, false, [record("beat", "rm -r /shared/x", A, 5, ID_B)]);
  assert.deepEqual(victim.running().map((t) => [t.command, t.epoch, t.owner]), [["ver", 1, A]]);
  assert.equal(victim.stats().ownerRefused, 1);
});

test("heal: a record this node signed and then lost (its store) comes back as its own when a peer relays it", () => {
  const view = members([B]);
  const before = settled(ID_A, view);
  assert.equal(before.define("beat", "ver", 100, view), undefined);
  const signed = taskToWire(before.get("beat") as GuardedTask);
  const after = settled(ID_A, view);
  after.step(B, false, [signed]);
  assert.deepEqual(after.running().map((t) => [t.name, t.command, t.owner]), [["beat", "ver", A]]);
  assert.equal(after.stats().signatureRefused, 0);
});

test("heal: a record is checked only when it would change what is held; a table relayed again costs no signature check", () => {
  let checks = 0;
  const real = new RecordSigner(ID_C, ID_C);
  const counting: HealSigner = {
    publicKey: real.publicKey,
    sign: (kind, body) => real.sign(kind, body),
    check: (kind, writer, pub, body, signature) => {
      checks++;
      return real.check(kind, writer, pub, body, signature);
    },
  };
  const node = settled(ID_C, members([A, B]), counting);
  const table = [record("one", "ver", A, 2, ID_A), record("two", "ver", B, 5, ID_B)];
  node.step(A, false, table);
  assert.equal(checks, 2);
  node.step(B, false, table);
  node.step(B, false, [record("one", "ver", A, 1, ID_A)]);
  assert.equal(checks, 2, "held or older: nothing to check");
  assert.equal(node.list().length, 2);
});

test("heal: unsigned records from the store (the previous format) — this node's own are signed again and stored, others' dropped and counted", () => {
  const unsigned = new Uint8Array(0);
  const node = new Heal(A, signerOf(ID_A), CONFIG);
  node.restore([
    { name: "mine", command: "ver", everyTicks: 100, owner: A, epoch: 4, removed: false, pub: unsigned, sig: unsigned },
    { name: "theirs", command: "ver", everyTicks: 100, owner: B, epoch: 2, removed: false, pub: unsigned, sig: unsigned },
    taskFromWire(record("signed", "ver", B, 3, ID_B)),
  ]);
  assert.deepEqual(node.list().map((t) => t.name), ["mine", "signed"]);
  assert.equal(node.stats().unsignedDropped, 1);
  const mine = node.get("mine") as GuardedTask;
  assert.equal(new RecordSigner(ID_B, ID_B).check("heal", A, mine.pub, healRecordBody(mine), mine.sig), undefined, "signed again by this node");
  assert.deepEqual(node.ready().changed.map((t) => t.name), ["mine"], "and stored again in the new format");
});

test("attack: epochs past LIMITS.guardEpochTakenMax are taken only guardEpochStepMax above the held record; adoption still works above it", () => {
  const taken = LIMITS.guardEpochTakenMax;
  const step = LIMITS.guardEpochStepMax;
  const view = members([B, C]);
  const node = settled(ID_A, view);
  node.step(B, false, [record("job", "ver", B, taken, ID_B)]);
  assert.equal(node.get("job")?.epoch, taken, "up to the bound, taken as it comes");
  node.step(B, false, [record("job", "ver", B, taken + step + 1, ID_B)]);
  assert.equal(node.get("job")?.epoch, taken, "a jump past the step is refused");
  node.step(B, false, [record("job", "ver", B, taken + step, ID_B)]);
  assert.equal(node.get("job")?.epoch, taken + step, "a bounded step is taken");
  node.step(B, false, [record("new", "ver", B, taken + 1, ID_B)]);
  assert.equal(node.get("new"), undefined, "a name not held starts at most at the bound");
  assert.equal(node.stats().epochRefused, 2);
  // B dies: A adopts at one above, and C (which held the same record) takes the adoption.
  const other = settled(ID_C, members([A, B]));
  other.step(B, false, [record("job", "ver", B, taken, ID_B)]);
  other.step(B, false, [taskToWire(node.get("job") as GuardedTask)]);
  assert.equal(other.get("job")?.epoch, taken + step);
  node.tick(members([C], [B]));
  assert.deepEqual(node.running().map((t) => [t.owner, t.epoch]), [[A, taken + step + 1]]);
  const adoption = node.ready().messages.find((m) => m.to === C);
  assert.ok(adoption !== undefined);
  other.step(A, false, adoption.tasks);
  assert.equal(other.get("job")?.owner, A);
});

test("heal: a record of an unknown writer (ID_M, never a member here) verifies all the same: its key is its id", () => {
  const node = settled(ID_A, members([B]));
  node.step(B, false, [record("far", "ver", ID_M.id, 2, ID_M)]);
  assert.equal(node.get("far")?.owner, ID_M.id);
});

test("attack: a contributor's guarded tasks are taken by no node that knows its role, it defines and adopts none, and a core survivor adopts instead", () => {
  // A is a contributor (the lowest id); B and C are core.
  const roles = new Map([[A, "contributor" as const], [B, "core" as const], [C, "core" as const]]);
  const view = (self: string, gone: string[] = []): HealMembership => ({
    ...members([A, B, C].filter((x) => x !== self && !gone.includes(x)), gone), roleOf: (id) => roles.get(id),
  });
  const contributor = settled(ID_A, view(A));
  assert.match(contributor.define("job", "kv put x 1", 100, view(A)) ?? "", /contributor/);
  assert.equal(contributor.get("job"), undefined);
  // Its own signed record, relayed to a core node that knows its role: dropped and counted.
  const b = settled(ID_B, view(B));
  b.step(A, false, [record("job", "invite --role core", A, 2, ID_A)], view(B));
  assert.equal(b.get("job"), undefined);
  assert.equal(b.stats().roleRefused, 1);
  // C defines a task and dies: the contributor, the lowest live id, adopts nothing; B does.
  const c = settled(ID_C, view(C));
  assert.equal(c.define("beat", "ver", 100, view(C)), undefined);
  const definition = c.ready().messages[0]?.tasks ?? [];
  for (const node of [contributor, b]) node.step(C, false, definition, view(node === b ? B : A));
  contributor.tick(view(A, [C]));
  b.tick(view(B, [C]));
  assert.deepEqual(contributor.running(), []);
  assert.equal(contributor.get("beat")?.owner, C, "the contributor adopted nothing");
  assert.deepEqual(b.running().map((t) => [t.name, t.owner]), [["beat", B]], "the lowest-id core survivor adopts");
});
