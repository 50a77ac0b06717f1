// Writers' signatures on shared-folder versions (src/core/collective/sfs.ts, sfs-version.ts;
// docs/protocols/sfs.md, "Signatures"), in the in-memory cluster (sfs-harness.ts): a member that
// announces a version in another node's name (a forged content hash, a forged deletion, a signed
// version changed on the way, a shadow tombstone with nothing below) gets nothing applied and
// nothing fetched, every refusal counted; the real writer's versions still replicate; versions are
// checked only when they would change what is held; and records of the previous, unsigned format
// boot without conflicts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { RecordSigner } from "../../src/core/body/trust.ts";
import { entryToWire, Sfs, type SfsEntry, type SfsSigner, type SfsVersionFields } from "../../src/core/collective/sfs.ts";
import { conflictPath } from "../../src/core/collective/sfs-path.ts";
import type { SfsEntryWire, SfsRecordWire } from "../../src/core/collective/sfs-wire.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { identityOf, infoOf, randomBytes, sha256, SfsCluster, signedEntry, TEST_CONFIG, type SimNode } from "./sfs-harness.ts";

const rng = createRng(4242);

function node(cluster: SfsCluster, i: number): SimNode {
  return cluster.nodes[i] as SimNode;
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && a.length === b.length && sha256(a) === sha256(b);
}

/** The fields of a version, without its key, signature and derivation. */
function fieldsOf(entry: SfsEntry): SfsVersionFields {
  const { pub: _pub, sig: _sig, signedAs: _signedAs, ...fields } = entry;
  return fields;
}

/** A 3-node cluster where node 1 (the victim) wrote `doc.txt` and everyone holds it; node 0 is Mallory. */
function setup(seed: number): { cluster: SfsCluster; mallory: SimNode; victim: SimNode; bystander: SimNode; content: Uint8Array; real: SfsEntry } {
  const cluster = new SfsCluster({ n: 3, seed });
  cluster.run(2);
  cluster.write(1, "doc.txt", randomBytes(rng, 1000));
  cluster.runUntil(() => cluster.converged(), 500, "convergence");
  const content = randomBytes(rng, 3000);
  cluster.write(1, "doc.txt", content);
  cluster.runUntil(() => cluster.converged(), 500, "convergence");
  const real = node(cluster, 1).core.stat("doc.txt")?.entry as SfsEntry;
  return { cluster, mallory: node(cluster, 0), victim: node(cluster, 1), bystander: node(cluster, 2), content, real };
}

/** The version Mallory makes in the victim's name: signed with her key, and with the victim's key beside her signature. */
function forgeries(mallory: SimNode, victim: SimNode, fields: SfsVersionFields): SfsEntryWire[] {
  const own = entryToWire(signedEntry(mallory.identity, fields), true);
  const withVictimKey = [...own.slice(0, 10), victim.identity.publicKey, own[11], own[12]] as SfsEntryWire;
  return [own, withVictimKey];
}

test("attack: a version in another node's name with a forged content hash is not applied, not fetched, and counted; the writer's versions still replicate", () => {
  const { cluster, mallory, victim, bystander, content, real } = setup(40);
  const evil = randomBytes(rng, 2000);
  const info = infoOf(evil, cluster.config.chunkBytes, 5);
  const counter = real.counter + 10;
  const forged = forgeries(mallory, victim, {
    ...fieldsOf(real), counter, size: info.size, sha256: info.sha256, chunks: info.chunkHashes, vv: [[victim.id, counter]],
  });
  // Mallory also serves the evil content, should anyone ask.
  mallory.disk.touch("doc.txt", evil);
  const sentBefore = cluster.sent.length;
  for (const to of [1, 2]) cluster.inject(mallory.id, to, { t: "sfs-entries", e: forged, w: [] });
  cluster.run(200);
  for (const n of [victim, bystander]) {
    assert.equal(n.core.stat("doc.txt")?.entry.counter, real.counter, `node ${n.index} holds the victim's version`);
    assert.ok(sameBytes(n.disk.files.get("doc.txt"), content), `node ${n.index} keeps the victim's content`);
    assert.ok(n.core.clock < counter, "the clock did not move to the forged counter");
  }
  // The bystander checks the signatures; the victim drops versions of its own origin above its
  // clock before that (it never wrote them).
  assert.equal(bystander.core.stats.signatureRefused, 2);
  assert.deepEqual(bystander.signer.refused.sfs, { key: 1, revoked: 0, signature: 1 }, "the node's signer counts by reason (/metrics)");
  assert.equal(victim.core.stats.ownOrigin, 2);
  const fetches = cluster.sent.slice(sentBefore).filter(([, , m]) => m.t === "sfs-get" && m.c === counter);
  assert.deepEqual(fetches, [], "nobody asked for the forged content");
  // The victim's real versions still replicate.
  const next = randomBytes(rng, 1500);
  cluster.write(1, "doc.txt", next);
  cluster.runUntil(() => [victim, bystander].every((n) => sameBytes(n.disk.files.get("doc.txt"), next)), 500, "the victim's new version");
});

test("attack: a deletion in another node's name (a tombstone, or the victim's signature on its file reused as a tombstone) is not applied", () => {
  const { cluster, mallory, victim, bystander, content, real } = setup(41);
  const counter = real.counter + 1;
  const tombstone: SfsVersionFields = { ...fieldsOf(real), counter, deleted: true, size: 0, sha256: "", chunks: [], vv: [[victim.id, counter]] };
  const reused = entryToWire({ ...real, deleted: true, size: 0, sha256: "", chunks: [] }, false);
  for (const to of [1, 2]) cluster.inject(mallory.id, to, { t: "sfs-entries", e: [...forgeries(mallory, victim, tombstone), reused], w: [] });
  cluster.run(200);
  for (const n of [victim, bystander]) {
    assert.equal(n.core.stat("doc.txt")?.entry.deleted, false, `node ${n.index}: not deleted`);
    assert.ok(sameBytes(n.disk.files.get("doc.txt"), content), `node ${n.index}: the file stays on the disk`);
  }
  assert.equal(bystander.core.stats.signatureRefused, 3);
  assert.deepEqual([victim.core.stats.ownOrigin, victim.core.stats.signatureRefused], [2, 1]);
  // The victim's own removal goes through.
  cluster.remove(1, "doc.txt");
  cluster.runUntil(() => cluster.nodes.every((n) => !n.disk.files.has("doc.txt")), 500, "the victim's removal");
});

test("attack: a signed version changed on the way (path, counter, mtime) is refused; one that changes nothing held costs no check", () => {
  const { cluster, mallory, bystander, real } = setup(42);
  const wire = entryToWire(real, true);
  const changed: SfsEntryWire[] = [
    ["other.txt", ...wire.slice(1)] as SfsEntryWire,
    [wire[0], wire[1] + 5, wire[2], wire[3], wire[4], wire[5], wire[6], wire[7], wire[8], [[wire[2], wire[1] + 5]], wire[10], wire[11], wire[12]],
    [...wire.slice(0, 9), [[mallory.id, 1], [wire[2], wire[1]]], ...wire.slice(10)] as SfsEntryWire,
    [...wire.slice(0, 5), wire[5] + 1, ...wire.slice(6)] as SfsEntryWire,
  ];
  cluster.inject(mallory.id, 2, { t: "sfs-entries", e: changed, w: [] });
  assert.equal(bystander.core.stat("other.txt"), undefined);
  assert.equal(bystander.core.stat("doc.txt")?.entry.counter, real.counter);
  assert.equal(bystander.core.stats.signatureRefused, 3, "the higher mtime at an equal stamp, and the new path and counter, are refused");
  assert.equal(bystander.core.stats.badEntries, 0);
  // The vector with an extra item at the same stamp is older in the order (a smaller mtime is
  // too): nothing it would change, so it costs no check. Neither does the real one again.
  cluster.inject(mallory.id, 2, { t: "sfs-entries", e: [wire], w: [] });
  assert.equal(bystander.core.stats.signatureRefused, 3);
});

test("attack: a shadow tombstone made of another node's signed file is refused where nothing is below it; a copy anywhere but its conflict name is malformed", () => {
  const { cluster, mallory, bystander, content, real } = setup(43);
  const signedAs = { path: real.path, size: real.size, sha256: real.sha256, chunks: real.chunks };
  const shadow = entryToWire({ ...real, deleted: true, size: 0, sha256: "", chunks: [], signedAs }, false);
  const misplaced = entryToWire({ ...real, path: "elsewhere.txt", signedAs }, true);
  cluster.inject(mallory.id, 2, { t: "sfs-entries", e: [shadow, misplaced], w: [] });
  cluster.run(100);
  assert.equal(bystander.core.stat("doc.txt")?.entry.deleted, false);
  assert.ok(sameBytes(bystander.disk.files.get("doc.txt"), content));
  assert.equal(bystander.core.stats.shadowRefused, 1);
  assert.equal(bystander.core.stats.badEntries, 1);
  assert.equal(bystander.core.stat("elsewhere.txt"), undefined);
  // A copy at its conflict name carries the writer's own content and signature: any node that
  // holds the content may derive it, so it is taken (docs/protocols/sfs.md, "Signatures").
  const copy = entryToWire({ ...real, path: conflictPath(real.path, real.origin, real.counter) as string, signedAs }, true);
  cluster.inject(mallory.id, 2, { t: "sfs-entries", e: [copy], w: [] });
  assert.equal(bystander.core.stat(copy[0])?.entry.origin, real.origin);
  assert.equal(bystander.core.stats.signatureRefused, 0);
});

test("sfs: a shadow tombstone reaches a node that missed the file once an entry below it (even a tombstone) is held there", () => {
  const cluster = new SfsCluster({ n: 3, seed: 77 });
  cluster.run(2);
  for (const [i, j] of [[0, 1], [0, 2], [1, 2]]) cluster.blocked.add(`${i}>${j}`).add(`${j}>${i}`);
  const file = randomBytes(rng, 100);
  cluster.write(0, "a", file);
  cluster.write(1, "a/b", randomBytes(rng, 100));
  cluster.run(50);
  cluster.blocked.delete("0>1");
  cluster.blocked.delete("1>0");
  cluster.runUntil(() => node(cluster, 0).core.stat("a")?.entry.deleted === true && node(cluster, 1).core.stat("a")?.entry.deleted === true, 500, "the shadow");
  cluster.remove(1, "a/b");
  cluster.run(200);
  // Node 2 never held the file "a" nor anything below it: the shadow is refused until a/b's
  // tombstone is there, then taken, and the three converge.
  cluster.blocked.clear();
  cluster.runUntil(() => cluster.converged(), 1000, "convergence");
  const kept = conflictPath("a", node(cluster, 0).id, node(cluster, 2).core.stat("a")?.entry.counter as number) as string;
  for (const n of cluster.nodes) {
    assert.equal(n.core.stat("a")?.entry.deleted, true);
    assert.ok(sameBytes(n.disk.files.get(kept), file), `node ${n.index}: the file under ${kept}`);
    assert.equal(n.core.stats.signatureRefused, 0);
  }
});

test("sfs: a version is checked only when it would change what is held", () => {
  const writer = identityOf(80);
  const reader = identityOf(81);
  const real = new RecordSigner(reader, reader);
  let checks = 0;
  const counting: SfsSigner = {
    publicKey: real.publicKey,
    sign: (kind, body) => real.sign(kind, body),
    check: (kind, origin, pub, body, signature) => {
      checks++;
      return real.check(kind, origin, pub, body, signature);
    },
  };
  const core = new Sfs(reader.id, TEST_CONFIG, counting);
  const dir = (path: string, counter: number): SfsEntryWire => entryToWire(signedEntry(writer, {
    path, counter, origin: writer.id, deleted: false, dir: true, size: 0, mtimeMs: 1, sha256: "", chunkBytes: 1024, chunks: [], vv: [[writer.id, counter]],
  }), false);
  const table = [dir("x", 3), dir("y", 4)];
  core.step(writer.id, { t: "sfs-entries", e: table, w: [] });
  assert.equal(checks, 2);
  core.step(writer.id, { t: "sfs-entries", e: table, w: [] });
  core.step(writer.id, { t: "sfs-entries", e: [dir("x", 2)], w: [] });
  assert.equal(checks, 2, "held or older (and dominated): nothing to check");
  assert.equal(core.size, 2);
});

/** What the previous format stored: the same records without key, signature and derivation (10-tuples). */
function unsignedRecord(record: SfsRecordWire): SfsRecordWire {
  const [entry, base, mtime] = record;
  return [entry.slice(0, 10) as SfsRecordWire[0], typeof base === "number" ? base : base.slice(0, 10) as SfsRecordWire[0], mtime];
}

test("sfs: records of the previous, unsigned format — own versions signed again, others' dropped and counted, their files neither re-announced nor fetched", () => {
  const cluster = new SfsCluster({ n: 3, seed: 44 });
  cluster.run(2);
  const a = randomBytes(rng, 2500);
  const b = randomBytes(rng, 1200);
  cluster.write(0, "a.txt", a);
  cluster.write(1, "b.txt", b);
  cluster.mkdir(1, "dir");
  cluster.runUntil(() => cluster.converged(), 500, "convergence");
  // The upgrade: every node stops, its store is what the previous format wrote, and it boots again.
  for (const n of cluster.nodes) cluster.kill(n.index);
  for (const n of cluster.nodes) for (const [path, record] of n.store) n.store.set(path, unsignedRecord(record));
  // Node 2 changed a.txt (another node's file) while it was down.
  const edited = randomBytes(rng, 700);
  node(cluster, 2).disk.touch("a.txt", edited);
  for (const n of cluster.nodes) cluster.restart(n.index);
  assert.deepEqual(cluster.nodes.map((n) => n.core.stats.unsignedDropped), [2, 1, 3], "each node dropped the others' records");
  for (const n of cluster.nodes) {
    for (const [path, record] of n.store) {
      const entry = n.core.stat(path)?.entry;
      if (entry?.origin === n.id) assert.equal(record[0].length, 13, `node ${n.index}: its own ${path} is stored signed again`);
    }
  }
  cluster.runUntil(() => cluster.converged(), 1000, "convergence after the upgrade");
  for (const n of cluster.nodes) {
    assert.equal(n.core.stats.conflicts, 0, `node ${n.index}: no conflict copies`);
    assert.equal(n.core.stats.signatureRefused, 0);
    assert.equal(n.core.stat("b.txt")?.entry.origin, node(cluster, 1).id, "b.txt is still node 1's version");
    assert.ok(sameBytes(n.disk.files.get("b.txt"), b));
    assert.ok(sameBytes(n.disk.files.get("a.txt"), edited), `node ${n.index}: node 2's edit, built on node 0's version, wins without a conflict`);
    assert.ok(n.core.stat("dir")?.entry.dir === true);
  }
  // Only node 2's edit crossed the network (one chunk): the files the disks held were taken as they were.
  assert.deepEqual(cluster.nodes.map((n) => n.core.stats.chunksIn), [1, 1, 0]);
});
