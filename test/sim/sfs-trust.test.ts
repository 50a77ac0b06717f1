// Shared-folder versions signed by their writer (issue 13; docs/protocols/sfs.md, "Signatures") in
// whole kernels with the shared folder on: a member that announces versions in another node's name
// — another content hash, a deletion — gets nothing applied and nothing fetched on any node, each
// refusal counted by the node's RecordSigner (pk_records_refused_total{kind="sfs"}); the real
// writer's versions still replicate. The forged messages are handed to the shared folder as the
// kernel would after authenticating them as the attacker's (as in peer-bounds.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { hash } from "node:crypto";
import { entryToWire, sfsVersionBody, type SfsEntry, type SfsVersionFields } from "../../src/core/collective/sfs.ts";
import type { SfsEntryWire } from "../../src/core/collective/sfs-wire.ts";
import type { SharedFolderPart } from "../../src/node/collective/parts.ts";
import type { Kernel } from "../../src/node/kernel.ts";
import { SimCluster } from "../../src/sim/cluster.ts";

const sha256Hex = (bytes: Uint8Array): string => hash("sha256", bytes, "hex");

async function until(c: SimCluster, done: () => boolean, ticks = 3_000): Promise<boolean> {
  for (let i = 0; i <= ticks; i++) {
    if (done()) return true;
    await c.runAsync(1);
  }
  return false;
}

async function write(c: SimCluster, k: Kernel, path: string, bytes: Uint8Array): Promise<void> {
  const folder = k.sharedFolder!;
  let staged: Awaited<ReturnType<typeof folder.files.stageBytes>> | undefined;
  void folder.files.stageBytes(bytes).then((s) => (staged = s));
  assert.ok(await until(c, () => staged !== undefined), "staged");
  const local = folder.core.localWrite(path, staged!.info, staged!.temp);
  assert.ok(local.ok);
  let answer: string | undefined | null = null;
  void folder.wait(local).then((error) => (answer = error));
  assert.ok(await until(c, () => answer !== null), "written");
  assert.equal(answer, undefined);
}

test("attack (sim): versions in another node's name (forged content hash, forged deletion) are applied and fetched nowhere; the writer's still replicate", async () => {
  const c = new SimCluster({ nodes: 3, seed: 91, faults: "none", sharedFolder: true });
  assert.ok(await until(c, () => c.nodes.every((n) => n.kernel.sharedFolder?.booted === true && n.kernel.swim.liveIds().length === 2)), "the cluster formed");
  const [attacker, bystander, victim] = c.nodes.map((n) => n.kernel) as [Kernel, Kernel, Kernel];
  const content = new TextEncoder().encode("the victim's report\n");
  await write(c, victim, "report.txt", content);
  const synced = (k: Kernel, sha: string): boolean => k.sharedFolder!.core.stat("report.txt")?.local === "synced" && k.sharedFolder!.core.stat("report.txt")?.entry.sha256 === sha;
  assert.ok(await until(c, () => c.nodes.every((n) => synced(n.kernel, sha256Hex(content)))), "the report reached every node");
  const real = victim.sharedFolder!.core.stat("report.txt")!.entry;

  // The attacker's versions of the victim's file, in the victim's name, signed with its own key.
  const evil = new TextEncoder().encode("rm -rf everything\n");
  const counter = real.counter + 100;
  const hashOf = sha256Hex(evil);
  const replaced: SfsVersionFields = {
    path: real.path, counter, origin: victim.id, deleted: false, dir: false, size: evil.length, mtimeMs: real.mtimeMs + 1, sha256: hashOf,
    chunkBytes: real.chunkBytes, chunks: [hashOf], vv: [[victim.id, counter]],
  };
  const deleted: SfsVersionFields = { ...replaced, counter: counter + 1, deleted: true, size: 0, sha256: "", chunks: [], vv: [[victim.id, counter + 1]] };
  const forge = (fields: SfsVersionFields, pub: Uint8Array): SfsEntryWire => {
    const entry: SfsEntry = { ...fields, pub, sig: attacker.records.sign("sfs", sfsVersionBody(fields)), signedAs: undefined };
    return entryToWire(entry, true);
  };
  const forged = [replaced, deleted].flatMap((fields) => [forge(fields, attacker.records.publicKey), forge(fields, victim.records.publicKey)]);
  const refusedBefore = bystander.records.refused.sfs.key + bystander.records.refused.sfs.signature;
  for (const k of [bystander, victim]) k.subsystem<SharedFolderPart>("shared-folder").step(attacker.id, { t: "sfs-entries", e: forged, w: [] });
  await c.runAsync(300);
  for (const k of [attacker, bystander, victim]) {
    assert.ok(synced(k, real.sha256), `${k.id} still holds the victim's report`);
    assert.equal(k.sharedFolder!.core.stats.chunksIn, k === victim ? 0 : 1, `${k.id} fetched nothing more`);
  }
  assert.equal(bystander.sharedFolder!.core.stats.signatureRefused, 4);
  assert.equal(bystander.records.refused.sfs.key + bystander.records.refused.sfs.signature - refusedBefore, 4, "counted by the node's signer (/metrics)");
  assert.equal(victim.sharedFolder!.core.stats.ownOrigin, 4, "the victim never wrote them");

  // The victim's own next version replicates as before.
  const next = new TextEncoder().encode("the victim's report, v2\n");
  await write(c, victim, "report.txt", next);
  assert.ok(await until(c, () => c.nodes.every((n) => synced(n.kernel, sha256Hex(next)))), "the victim's new version reached every node");
});

test("attack (sim): files a member announces and nobody can serve keep no node's fetch places; a file written after them reaches every node", async () => {
  const c = new SimCluster({ nodes: 3, seed: 92, faults: "none", sharedFolder: true });
  assert.ok(await until(c, () => c.nodes.every((n) => n.kernel.sharedFolder?.booted === true && n.kernel.swim.liveIds().length === 2)), "the cluster formed");
  const [attacker, writer, bystander] = c.nodes.map((n) => n.kernel) as [Kernel, Kernel, Kernel];
  const { transfersMax, chunkBytes } = writer.sharedFolder!.core.config;
  // Its own versions, signed and within its quota, announced as held: it answers every request
  // for their chunks with a miss. Before, each took one of a node's transfersMax places for good.
  const chunks = Array.from({ length: 4 }, (_, i) => sha256Hex(new Uint8Array([i])));
  const junk = Array.from({ length: 4 * transfersMax }, (_, k): SfsEntryWire => {
    const fields: SfsVersionFields = {
      path: `junk/${k}.bin`, counter: k + 1, origin: attacker.id, deleted: false, dir: false, size: chunks.length * chunkBytes, mtimeMs: 1,
      sha256: sha256Hex(new Uint8Array([k])), chunkBytes, chunks, vv: [[attacker.id, k + 1]],
    };
    return entryToWire({ ...fields, pub: attacker.records.publicKey, sig: attacker.records.sign("sfs", sfsVersionBody(fields)), signedAs: undefined }, true);
  });
  for (const k of [writer, bystander]) k.subsystem<SharedFolderPart>("shared-folder").step(attacker.id, { t: "sfs-entries", e: junk, w: [] });
  assert.ok(await until(c, () => [writer, bystander].every((k) => k.sharedFolder!.core.stats.stalls >= transfersMax)), "the victims tried them and found no holder");
  const content = new TextEncoder().encode("written after the junk\n");
  await write(c, writer, "after.txt", content);
  const synced = (k: Kernel): boolean => k.sharedFolder!.core.stat("after.txt")?.local === "synced";
  assert.ok(await until(c, () => c.nodes.every((n) => synced(n.kernel))), "the file written after them reached every node");
  for (const k of [writer, bystander]) assert.equal(k.sharedFolder!.core.list("junk/", 1000).length, junk.length, "the junk is still in the manifest, waiting");
});
