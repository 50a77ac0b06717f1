// The guarded-task core (src/core/body/heal.ts, docs/protocols/heal.md): adoption of a dead owner's
// task, and the bounds on what a peer's record may do ("attack" tests): a record naming this node
// as owner that it never wrote is not run and is replaced, epochs past LIMITS.guardEpochTakenMax
// are taken only a bounded step at a time, and a node's own define, remove and adopt keep room.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Heal, taskFromWire, taskToWire, type GuardedTask, type HealMembership } from "../../src/core/body/heal.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import type { GuardedTaskWire } from "../../src/core/wire/messages.ts";

const A = "00000000000000a1";
const B = "00000000000000b2";
const C = "00000000000000c3";
const CONFIG = { syncTicks: 500, settleTicks: 0 };

/** A membership view: `live` are the others this node sees alive; `gone` those it holds dead. */
function members(live: string[], gone: string[] = []): HealMembership {
  return { liveIds: () => live, liveCount: () => live.length, isGone: (id) => gone.includes(id) };
}

function record(name: string, command: string, owner: string, epoch: number, removed = false): GuardedTaskWire {
  return [name, command, 100, owner, epoch, removed];
}

function settled(self: string, membership: HealMembership): Heal {
  const heal = new Heal(self, CONFIG);
  heal.tick(membership);
  heal.ready();
  return heal;
}

/** Delivers every message `from` has to the nodes in `to` (by id), once. */
function deliver(from: Heal, fromId: string, to: Map<string, Heal>, membershipOf: (id: string) => HealMembership): void {
  for (const out of from.ready().messages) to.get(out.to)?.step(fromId, out.reply, out.tasks, membershipOf(out.to));
}

test("heal: the lowest-id survivor adopts a dead owner's task one epoch up, and the others take its record", () => {
  const nodes = new Map([[A, settled(A, members([B, C]))], [B, settled(B, members([A, C]))], [C, settled(C, members([A, B]))]]);
  const c = nodes.get(C) as Heal;
  assert.equal(c.define("beat", "ver", 100, members([A, B])), undefined);
  deliver(c, C, nodes, (id) => members([A, B, C].filter((x) => x !== id)));
  for (const id of [A, B]) assert.equal(nodes.get(id)?.get("beat")?.owner, C);
  // C dies: A (the lowest live id) adopts, B does not.
  const view = (id: string): HealMembership => members([A, B].filter((x) => x !== id), [C]);
  for (const id of [A, B]) nodes.get(id)?.tick(view(id));
  const a = nodes.get(A) as Heal;
  const b = nodes.get(B) as Heal;
  assert.deepEqual(a.running().map((t) => [t.name, t.owner, t.epoch]), [["beat", A, 2]]);
  assert.deepEqual(b.running(), []);
  deliver(a, A, nodes, view);
  assert.deepEqual(b.get("beat"), { ...(a.get("beat") as GuardedTask) }, "B holds A's adoption");
  assert.deepEqual(b.stats(), { epochRefused: 0, ownerRefused: 0 });
});

test("attack: a record naming the victim as owner with the maximum epoch is refused — the victim runs nothing and guard rm still works", () => {
  const view = members([B]);
  const victim = settled(A, view);
  victim.step(B, false, [record("pub", "topic pub spam x", A, LIMITS.guardEpochMax)], view);
  assert.deepEqual(victim.running(), [], "the forged task does not run on the victim");
  assert.equal(victim.get("pub"), undefined);
  assert.equal(victim.stats().epochRefused, 1);
  // The victim's own changes of that name have all the room they need.
  assert.equal(victim.define("pub", "ver", 100, view), undefined);
  assert.equal(victim.remove("pub", view), undefined, "guard rm is not answered 'epoch space exhausted'");
  assert.equal(victim.get("pub")?.removed, true);
});

test("attack: a record naming this node as owner that it never wrote is not run, and a removal one epoch above replaces it everywhere", () => {
  const view = members([B, C]);
  const victim = settled(A, view);
  const bystander = settled(C, members([A, B]));
  const forged = record("pub", "topic pub spam x", A, 7);
  // The bystander takes the forgery (it cannot tell): it believes the victim runs it.
  bystander.step(B, false, [forged]);
  assert.equal(bystander.get("pub")?.owner, A);
  victim.step(B, false, [forged], view);
  assert.deepEqual(victim.running(), [], "not run");
  assert.deepEqual(victim.get("pub"), { name: "pub", command: "topic pub spam x", everyTicks: 100, owner: A, epoch: 8, removed: true });
  assert.equal(victim.stats().ownerRefused, 1);
  const ready = victim.ready();
  assert.deepEqual(ready.events, [{ type: "guard-refused", name: "pub", from: B, epoch: 7, command: "topic pub spam x" }]);
  assert.deepEqual(ready.changed.map((t) => [t.name, t.epoch, t.removed]), [["pub", 8, true]], "the removal is stored");
  assert.deepEqual(ready.messages.map((m) => m.to).sort(), [B, C], "and told to every live member");
  const toC = ready.messages.find((m) => m.to === C);
  assert.ok(toC !== undefined);
  bystander.step(A, toC.reply, toC.tasks);
  assert.equal(bystander.get("pub")?.removed, true, "the bystander drops the forgery");
  // Sent again (a replay in a later sync), the forgery loses to the removal.
  victim.step(B, false, [forged], view);
  assert.equal(victim.stats().ownerRefused, 1);
});

test("attack: a forged record over a task this node owns is not run; its own definition comes back one epoch above", () => {
  const view = members([B]);
  const victim = settled(A, view);
  assert.equal(victim.define("beat", "ver", 100, view), undefined);
  victim.ready();
  victim.step(B, false, [record("beat", "rm -r /shared/x", A, 5)], view);
  assert.deepEqual(victim.running().map((t) => [t.command, t.epoch, t.owner]), [["ver", 6, A]]);
  assert.deepEqual(victim.ready().messages.map((m) => taskFromWire(m.tasks[0] as GuardedTaskWire).command), ["ver"]);
});

test("attack: epochs past LIMITS.guardEpochTakenMax are taken only guardEpochStepMax above the held record; adoption still works above it", () => {
  const taken = LIMITS.guardEpochTakenMax;
  const step = LIMITS.guardEpochStepMax;
  const view = members([B, C]);
  const node = settled(A, view);
  node.step(B, false, [record("job", "ver", B, taken)], view);
  assert.equal(node.get("job")?.epoch, taken, "up to the bound, taken as it comes");
  node.step(B, false, [record("job", "ver", B, taken + step + 1)], view);
  assert.equal(node.get("job")?.epoch, taken, "a jump past the step is refused");
  node.step(B, false, [record("job", "ver", B, taken + step)], view);
  assert.equal(node.get("job")?.epoch, taken + step, "a bounded step is taken");
  node.step(B, false, [record("new", "ver", B, taken + 1)], view);
  assert.equal(node.get("new"), undefined, "a name not held starts at most at the bound");
  assert.equal(node.stats().epochRefused, 2);
  // B dies: A adopts at one above, and C (which held the same record) takes the adoption.
  const other = settled(C, members([A, B]));
  other.step(B, false, [record("job", "ver", B, taken)]);
  other.step(B, false, [taskToWire(node.get("job") as GuardedTask)]);
  assert.equal(other.get("job")?.epoch, taken + step);
  node.tick(members([C], [B]));
  assert.deepEqual(node.running().map((t) => [t.owner, t.epoch]), [[A, taken + step + 1]]);
  const adoption = node.ready().messages.find((m) => m.to === C);
  assert.ok(adoption !== undefined);
  other.step(A, false, adoption.tasks);
  assert.equal(other.get("job")?.owner, A);
});
