// Invites on real nodes (issue 13, acceptance 2): a node started with nothing but an invite code
// redeems it with the code's core node for a certificate of the granted role, joins, and in the
// contributor role never votes; the code works once; a joiner with neither a code nor the owner
// key is refused before it sends anything.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { decodeCert } from "../../src/core/body/trust.ts";
import { decodeInvite, type Invites } from "../../src/node/body/invites.ts";
import { NodeStartError, runNode, type RunningNode } from "../../src/node/run.ts";

const dir = mkdtempSync(join(tmpdir(), "pk-invite-"));
const nodes: RunningNode[] = [];
after(async () => {
  for (const node of nodes.reverse()) await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await sleep(50);
  }
}

test("an invite code lets one node in with its role, once; a contributor never votes", { timeout: 60_000 }, async () => {
  const seed = await runNode({ data: join(dir, "seed"), name: "seed", env: {}, discover: false });
  nodes.push(seed);
  await until("the seed leads its one-node Raft", () => seed.kernel.consensus.isLeader);
  const invites = seed.kernel.subsystem<Invites>("invites");
  const { code } = await invites.create("contributor", 60_000);
  const decoded = decodeInvite(code);
  assert.ok(typeof decoded !== "string", "the code decodes");
  assert.equal(decoded.seed.id, seed.id);

  const guest = await runNode({ data: join(dir, "guest"), name: "guest", env: {}, invite: code, discover: false });
  nodes.push(guest);
  assert.equal(guest.kernel.swim.self.role, "contributor", "the role is the granted one");
  assert.equal(decodeCert(guest.kernel.swim.self.cert)?.role, "contributor");
  await until("the seed sees the guest alive", () => seed.kernel.swim.member(guest.id)?.state === "alive");
  assert.equal(seed.kernel.swim.member(guest.id)?.entry.role, "contributor");
  // The leader adds it as a learner and never promotes it.
  await until("the guest is a learner", () => seed.kernel.consensus.status().conf.learners.includes(guest.id));
  await sleep(1_500);
  assert.ok(!seed.kernel.consensus.status().conf.voters.includes(guest.id), "a contributor is never a voter");
  assert.equal(invites.stats.granted, 1);

  // The same code a second time, from another machine: refused, and the node does not start.
  await assert.rejects(runNode({ data: join(dir, "thief"), name: "thief", env: {}, invite: code, discover: false }), (error: unknown) => {
    assert.ok(error instanceof NodeStartError);
    assert.match(error.message, /already used/);
    return true;
  });
  assert.ok(invites.stats.refused >= 1);

  // A node with the token but neither a code nor the owner key is refused before it sends anything.
  const token = (await import("node:fs")).readFileSync(join(dir, "seed", "token"), "utf8").trim();
  await assert.rejects(runNode({ data: join(dir, "stranger"), name: "stranger", env: {}, token, join: [seed.listen], discover: false }), /no certificate/);
});
