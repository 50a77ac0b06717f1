// The sfs core (src/core/collective/sfs.ts) in a 3-node in-memory cluster (sfs-harness.ts), and the
// bounds on what a peer may announce (counters, its own origin, quotas, the disk reserve).
import { test } from "node:test";
import assert from "node:assert/strict";
import { conflictPath, isCanonicalPath, normalizeSharedPath } from "../../src/core/collective/sfs-path.ts";
import { compareVersions, entryToWire, Sfs, SFS_CLOCK_ADOPT_MAX, SFS_COUNTER_MAX, vvRelation, type SfsEntry } from "../../src/core/collective/sfs.ts";
import type { SfsEntryWire } from "../../src/core/collective/sfs-wire.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { RecordSigner } from "../../src/core/body/trust.ts";
import type { Identity } from "../../src/node/ports.ts";
import { identityOf, infoOf, randomBytes, sha256, SfsCluster, signedEntry, TEST_CONFIG, type SimNode } from "./sfs-harness.ts";

const rng = createRng(42);
/** A lone core's identity, a member writing its own (hostile) versions, and their signers. */
const SELF = identityOf(65);
const MALLORY_ID = identityOf(66);
const MALLORY = MALLORY_ID.id;

function signerOf(identity: Identity): RecordSigner {
  return new RecordSigner(identity, identity);
}

function node(cluster: SfsCluster, i: number): SimNode {
  return cluster.nodes[i] as SimNode;
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && a.length === b.length && sha256(a) === sha256(b);
}

test("sfs paths: canonical form, refusals, conflict names", () => {
  assert.deepEqual(normalizeSharedPath("/shared/a//b/./c.txt"), { ok: true, path: "a/b/c.txt" });
  assert.deepEqual(normalizeSharedPath("notes.md"), { ok: true, path: "notes.md" });
  for (const bad of ["/etc/passwd", "../x", "a/../../x", "a/\u0000b", "a\\b", "/shared", "", ".sfs-tmp/t1", "a/.sfs-x", "x".repeat(256)]) {
    assert.equal(normalizeSharedPath(bad).ok, false, JSON.stringify(bad));
  }
  assert.equal(normalizeSharedPath(Array.from({ length: 33 }, () => "d").join("/")).ok, false, "too deep");
  assert.equal(isCanonicalPath("a/b"), true);
  for (const bad of ["a//b", "/a", "a/", "./a", "a/./b", "e\u0301"]) assert.equal(isCanonicalPath(bad), false, JSON.stringify(bad));
  assert.equal(conflictPath("docs/report.txt", "a000000000000001", 7), "docs/report.conflict-a000000000000001-7.txt");
  assert.equal(conflictPath("Makefile", "a000000000000001", 7), "Makefile.conflict-a000000000000001-7");
  const long = conflictPath(`${"n".repeat(250)}.txt`, "a000000000000001", 7) as string;
  assert.ok(long.length <= 255 && long.endsWith("-7.txt"), "a long name is shortened to fit");
});

test("sfs versions: vector relation and total order", () => {
  assert.equal(vvRelation([["a", 2]], [["a", 1]]), 1);
  assert.equal(vvRelation([["a", 1]], [["a", 1], ["b", 2]]), -1);
  assert.equal(vvRelation([["a", 2]], [["b", 1]]), 2);
  assert.equal(vvRelation([["a", 1], ["b", 2]], [["a", 1], ["b", 2]]), 0);
  const e = (counter: number, origin: string, deleted = false): SfsEntry => ({
    path: "p", counter, origin, deleted, dir: false, size: 0, mtimeMs: 0, sha256: deleted ? "" : "0".repeat(64), chunkBytes: 1024, chunks: [], vv: [[origin, counter]],
    pub: new Uint8Array(32), sig: new Uint8Array(64), signedAs: undefined,
  });
  assert.ok(compareVersions(e(2, "a"), e(1, "b")) > 0);
  assert.ok(compareVersions(e(1, "b"), e(1, "a")) > 0, "ties go to the larger origin");
  assert.ok(compareVersions(e(1, "a", true), e(1, "a")) > 0, "a tombstone of the same stamp wins");
});

test("sfs: a file written on one node appears byte-identical on the others", () => {
  const cluster = new SfsCluster({ n: 3, seed: 1 });
  cluster.run(2);
  const content = randomBytes(rng, 10 * 1024 + 17);
  let done = false;
  const op = cluster.write(0, "/shared/docs/a.bin", content);
  cluster.runUntil(() => cluster.converged(), 500, "convergence");
  for (const n of cluster.nodes) {
    assert.ok(sameBytes(n.disk.files.get("docs/a.bin"), content), `node ${n.index} has the file`);
    assert.equal(n.disk.temps.size, 0, `node ${n.index} left no temp file`);
    assert.equal(n.core.stat("docs/a.bin")?.local, "synced");
  }
  done = node(cluster, 0).events.some((e) => e.type === "sfs-local-done" && e.op === op && e.error === undefined);
  assert.ok(done, "the local write reported its end");
  assert.ok(node(cluster, 1).events.some((e) => e.type === "sfs-file-updated" && e.path === "docs/a.bin"));
  // An empty file and a folder travel too.
  cluster.write(1, "empty", new Uint8Array(0));
  cluster.mkdir(2, "folder/sub");
  cluster.runUntil(() => cluster.converged(), 500, "convergence");
  for (const n of cluster.nodes) {
    assert.equal(n.disk.files.get("empty")?.length, 0);
    assert.ok(n.disk.dirs.has("folder/sub"));
  }
});

test("sfs: a delete reaches every node, and a folder removed recursively", () => {
  const cluster = new SfsCluster({ n: 3, seed: 2 });
  cluster.run(2);
  cluster.write(0, "a.txt", randomBytes(rng, 3000));
  cluster.write(0, "d/x", randomBytes(rng, 100));
  cluster.write(0, "d/e/y", randomBytes(rng, 100));
  cluster.runUntil(() => cluster.converged(), 500, "convergence");
  cluster.remove(1, "a.txt");
  cluster.runUntil(() => cluster.converged(), 500, "delete convergence");
  for (const n of cluster.nodes) {
    assert.equal(n.disk.files.has("a.txt"), false, `node ${n.index} removed a.txt`);
    assert.equal(n.core.stat("a.txt")?.entry.deleted, true, "a tombstone is kept");
  }
  assert.throws(() => cluster.remove(2, "d"), /not empty/);
  cluster.remove(2, "d", true);
  cluster.runUntil(() => cluster.converged(), 500, "recursive delete convergence");
  for (const n of cluster.nodes) {
    assert.deepEqual([...n.disk.files.keys()], [], `node ${n.index} has no files left`);
    assert.deepEqual([...n.disk.dirs], [], `node ${n.index} has no folders left`);
  }
});

test("sfs: concurrent writes converge to one winner everywhere and the loser is kept under its conflict name", () => {
  for (const seed of [3, 4, 5]) {
    const cluster = new SfsCluster({ n: 3, seed, jitter: 3 });
    cluster.run(2);
    const base = randomBytes(rng, 2000);
    cluster.write(2, "shared.txt", base);
    cluster.runUntil(() => cluster.converged(), 500, "convergence");
    const a = randomBytes(rng, 5000);
    const b = randomBytes(rng, 4000);
    cluster.write(0, "shared.txt", a);
    cluster.write(1, "shared.txt", b);
    cluster.runUntil(() => cluster.converged(), 1000, "conflict convergence");
    const e0 = node(cluster, 0).core.stat("shared.txt")?.entry as SfsEntry;
    const winnerIsA = e0.origin === node(cluster, 0).id;
    const [winner, loser, loserNode] = winnerIsA ? [a, b, node(cluster, 1)] : [b, a, node(cluster, 0)];
    // Same counter on both sides (each saw the same history): the larger origin id wins.
    assert.equal(e0.origin, node(cluster, 1).id, "ties go to the larger origin id");
    const keptName = conflictPath("shared.txt", loserNode.id, e0.counter) as string;
    for (const n of cluster.nodes) {
      assert.ok(sameBytes(n.disk.files.get("shared.txt"), winner), `seed ${seed} node ${n.index}: the winner`);
      assert.ok(sameBytes(n.disk.files.get(keptName), loser), `seed ${seed} node ${n.index}: the loser under ${keptName}`);
      assert.equal(n.disk.files.size, 2);
    }
    assert.ok(cluster.nodes.some((n) => n.events.some((e) => e.type === "sfs-conflict" && e.kept === keptName)));
  }
});

test("sfs: a file on one node and a folder of the same name on another keep both", () => {
  const cluster = new SfsCluster({ n: 3, seed: 6 });
  cluster.run(2);
  const file = randomBytes(rng, 1500);
  const inner = randomBytes(rng, 700);
  cluster.write(0, "a", file);
  cluster.write(1, "a/b", inner);
  cluster.runUntil(() => cluster.converged(), 1000, "convergence");
  const kept = conflictPath("a", node(cluster, 0).id, node(cluster, 0).core.stat("a")?.entry.counter as number) as string;
  for (const n of cluster.nodes) {
    assert.ok(sameBytes(n.disk.files.get("a/b"), inner), `node ${n.index}: the folder's file`);
    assert.ok(sameBytes(n.disk.files.get(kept), file), `node ${n.index}: the file under ${kept}`);
    assert.equal(n.core.stat("a")?.entry.deleted, true);
  }
});

test("sfs: a chunk whose hash does not match is refused and fetched again", () => {
  const cluster = new SfsCluster({ n: 3, seed: 7 });
  cluster.run(2);
  let corrupted = 0;
  cluster.tamper = (_from, _to, message) => {
    if (message.t !== "sfs-chunk" || message.s !== 0 || corrupted >= 3) return message;
    corrupted++;
    const d = message.d.slice();
    d[0] = (d[0] as number) ^ 0xff;
    return { ...message, d };
  };
  const content = randomBytes(rng, 8 * 1024);
  cluster.write(0, "f.bin", content);
  cluster.runUntil(() => cluster.converged(), 1000, "convergence");
  assert.equal(corrupted, 3);
  const bad = node(cluster, 1).core.stats.badChunks + node(cluster, 2).core.stats.badChunks;
  assert.equal(bad, 3, "every corrupted chunk was refused");
  for (const n of cluster.nodes) assert.ok(sameBytes(n.disk.files.get("f.bin"), content));
});

test("sfs: a holder killed mid-transfer leaves no partial file anywhere; the transfer completes from another holder", () => {
  const cluster = new SfsCluster({ n: 3, seed: 8 });
  cluster.run(2);
  const content = randomBytes(rng, 64 * 1024);
  // Node 2 is cut off while node 1 fetches the file from node 0.
  cluster.blocked.add("0>2").add("2>0").add("1>2").add("2>1");
  cluster.write(0, "big.bin", content);
  cluster.runUntil(() => sameBytes(node(cluster, 1).disk.files.get("big.bin"), content) && node(cluster, 1).core.pendingCount === 0, 1000, "node 1 has the file");
  // Atomicity: whenever a node shows the file, it is the whole file.
  cluster.afterTick = () => {
    for (const n of cluster.nodes) {
      const shown = n.disk.files.get("big.bin");
      if (shown !== undefined) assert.ok(sameBytes(shown, content), `node ${n.index} shows a partial big.bin at tick ${cluster.now}`);
    }
  };
  cluster.blocked.clear();
  cluster.runUntil(() => (node(cluster, 2).core.stat("big.bin")?.progress?.written ?? 0) >= 8, 500, "node 2 started fetching");
  const fromZero = cluster.sent.filter(([from, to, m]) => from === 2 && to === 0 && m.t === "sfs-get").length;
  assert.ok(fromZero > 0, "node 2 asked node 0 for chunks");
  cluster.kill(0);
  cluster.runUntil(() => sameBytes(node(cluster, 2).disk.files.get("big.bin"), content), 2000, "node 2 completes from node 1");
  assert.ok(node(cluster, 2).core.stats.timeouts > 0, "requests to the dead node timed out and moved");
  assert.equal(node(cluster, 2).disk.temps.size, 0);
  // The dead node restarts: no temp survives, its disk and manifest are intact.
  cluster.restart(0);
  cluster.afterTick = undefined;
  cluster.runUntil(() => cluster.converged(), 1000, "convergence after restart");
});

test("sfs: a node killed while fetching shows no partial file and finishes after restart", () => {
  const cluster = new SfsCluster({ n: 3, seed: 9 });
  cluster.run(2);
  const content = randomBytes(rng, 40 * 1024);
  cluster.write(0, "x.bin", content);
  cluster.runUntil(() => (node(cluster, 1).core.stat("x.bin")?.progress?.written ?? 0) >= 10, 500, "node 1 fetching");
  cluster.kill(1);
  assert.equal(node(cluster, 1).disk.files.has("x.bin"), false, "no partial file under its name");
  assert.ok(node(cluster, 1).disk.temps.size > 0, "the partial content sits in the temp folder");
  cluster.runUntil(() => sameBytes(node(cluster, 2).disk.files.get("x.bin"), content), 1000, "node 2 unaffected");
  cluster.restart(1);
  assert.equal(node(cluster, 1).disk.temps.size, 0, "the boot scan cleared the temp folder");
  cluster.runUntil(() => cluster.converged(), 1000, "convergence after restart");
  assert.ok(sameBytes(node(cluster, 1).disk.files.get("x.bin"), content));
});

test("sfs: a move is copied locally on the other nodes, not fetched again", () => {
  const cluster = new SfsCluster({ n: 3, seed: 10 });
  cluster.run(2);
  const content = randomBytes(rng, 20 * 1024);
  cluster.write(0, "old/name.bin", content);
  cluster.runUntil(() => cluster.converged(), 500, "convergence");
  const chunksBefore = node(cluster, 1).core.stats.chunksIn;
  // mv = stage a copy under the new name, then remove the old one.
  const moved = node(cluster, 0).disk.files.get("old/name.bin") as Uint8Array;
  cluster.write(0, "new/name.bin", moved);
  cluster.remove(0, "old/name.bin");
  cluster.runUntil(() => cluster.converged(), 500, "convergence after move");
  for (const n of cluster.nodes) {
    assert.ok(sameBytes(n.disk.files.get("new/name.bin"), content));
    assert.equal(n.disk.files.has("old/name.bin"), false);
    assert.equal(n.disk.dirs.has("old"), false, "the emptied implicit folder went too");
  }
  assert.equal(node(cluster, 1).core.stats.chunksIn, chunksBefore, "no chunk crossed the network");
  assert.ok(node(cluster, 1).core.stats.localCopies >= 1);
});

test("sfs: files changed while a node was down are found by the boot scan", () => {
  const cluster = new SfsCluster({ n: 3, seed: 11 });
  cluster.run(2);
  cluster.write(0, "keep.txt", randomBytes(rng, 500));
  cluster.write(0, "edit.txt", randomBytes(rng, 500));
  cluster.write(0, "gone.txt", randomBytes(rng, 500));
  cluster.runUntil(() => cluster.converged(), 500, "convergence");
  cluster.kill(2);
  const edited = randomBytes(rng, 900);
  const disk = node(cluster, 2).disk;
  disk.touch("edit.txt", edited);
  disk.files.delete("gone.txt");
  disk.touch("new.txt", randomBytes(rng, 10));
  cluster.restart(2);
  cluster.runUntil(() => cluster.converged(), 500, "convergence after restart");
  for (const n of cluster.nodes) {
    assert.ok(sameBytes(n.disk.files.get("edit.txt"), edited), `node ${n.index}: the edit`);
    assert.equal(n.disk.files.has("gone.txt"), false, `node ${n.index}: the delete`);
    assert.ok(n.disk.files.has("new.txt"), `node ${n.index}: the new file`);
  }
  assert.equal(node(cluster, 2).core.stats.conflicts, 0);
});

test("sfs: bad paths from a peer are refused and counted", () => {
  const cluster = new SfsCluster({ n: 3, seed: 12 });
  cluster.run(2);
  const target = node(cluster, 1);
  const peer = node(cluster, 0).id;
  const good = entryToWire(signedEntry(node(cluster, 0).identity, {
    path: "ok.txt", counter: 5, origin: peer, deleted: false, dir: false, size: 3, mtimeMs: 1, sha256: sha256(new Uint8Array(3)),
    chunkBytes: 1024, chunks: [sha256(new Uint8Array(3))], vv: [[peer, 5]],
  }), true);
  const bad = ["../../etc/passwd", "/etc/passwd", "a//b", "./a", "a/../b", ".sfs-tmp/t1", "a\u0000b", "x/", "a\\b"];
  const entries: SfsEntryWire[] = bad.map((p) => [p, ...good.slice(1)] as SfsEntryWire);
  cluster.inject(peer, 1, { t: "sfs-entries", e: entries, w: bad });
  cluster.inject(peer, 1, { t: "sfs-get", p: "../x", c: 1, o: peer, i: 0 });
  cluster.inject(peer, 1, { t: "sfs-chunk", p: "/etc/shadow", c: 1, o: peer, i: 0, s: 0, d: new Uint8Array(4) });
  cluster.inject(peer, 1, { t: "sfs-sums", k: Uint8Array.from([0]), s: [["../y", 1, 2]] });
  assert.equal(target.core.stats.badPaths, bad.length * 2 + 3);
  assert.equal(target.core.size, 0, "nothing entered the manifest");
  // Malformed entries (chunk list not matching the size, vector without the origin) are refused too.
  const wrongChunks = [...good] as SfsEntryWire;
  wrongChunks[4] = 5000;
  const noOrigin = [...good] as SfsEntryWire;
  noOrigin[9] = [["b000000000000000", 4]];
  cluster.inject(peer, 1, { t: "sfs-entries", e: [wrongChunks, noOrigin], w: [] });
  assert.equal(target.core.stats.badEntries, 2);
  cluster.inject(peer, 1, { t: "sfs-entries", e: [good], w: [] });
  assert.equal(target.core.size, 1, "a good entry is taken");
});

test("sfs: bounds — manifest size, requests in flight per peer and in all, message sizes", () => {
  const cluster = new SfsCluster({ n: 3, seed: 13, config: { filesMax: 40, inflightPerPeer: 2, requestsMax: 3, entriesBytesMax: 2000, sumsBytesMax: 600 } });
  cluster.run(2);
  for (let k = 0; k < 30; k++) cluster.write(k % 3, `f${k}.bin`, randomBytes(rng, 3000 + k));
  cluster.runUntil(() => cluster.converged(), 3000, "convergence");
  assert.ok(cluster.maxOutstandingPerPeer <= 2, `per peer ${cluster.maxOutstandingPerPeer}`);
  assert.ok(cluster.maxOutstandingTotal <= 3, `total ${cluster.maxOutstandingTotal}`);
  const batches = cluster.sent.filter(([, , message]) => message.t === "sfs-entries" && message.e.length > 1);
  assert.ok(batches.length > 0, "some sfs-entries message carried several entries");
  for (const [, , , bytes] of batches) assert.ok(bytes <= 2000 * 1.2, `sfs-entries of ${bytes} bytes`);
  // The manifest is full at 40 entries: more new paths are refused and counted, nothing breaks.
  // The 15 writes are staged before any commits, so all are accepted; the last 5 find the manifest
  // full (counting the new paths being committed) before their commit: refused, nothing written.
  const n0 = node(cluster, 0);
  for (let k = 30; k < 45; k++) {
    const { temp, info } = n0.disk.stage(randomBytes(rng, 10), 1024);
    assert.ok(n0.core.localWrite(`g${k}`, info, temp).ok);
  }
  cluster.run(300);
  assert.equal(n0.core.stats.full, 5, "the 5 paths past the bound were counted");
  for (const n of cluster.nodes) {
    assert.equal(n.core.size, 40, `node ${n.index} holds ${n.core.size} entries`);
    for (let k = 40; k < 45; k++) assert.equal(n.core.stat(`g${k}`), undefined, `node ${n.index}: g${k} is not in the manifest`);
  }
  for (let k = 40; k < 45; k++) assert.equal(n0.disk.files.has(`g${k}`), false, `g${k} was not written to the disk either`);
  assert.equal(n0.events.filter((e) => e.type === "sfs-local-done" && e.error?.startsWith("the shared folder is full") === true).length, 5, "each refused write says why");
  // Once the manifest is full, a new path is refused at once.
  const { temp, info } = n0.disk.stage(randomBytes(rng, 10), 1024);
  assert.equal(n0.core.localWrite("g99", info, temp).ok, false, "a new path into a full manifest");
  // Files beyond the size bound are refused locally.
  const big = cluster.nodes[0]?.core.localWrite("huge", { ...infoOf(new Uint8Array(1), 1024, 1), size: 5 * 1024 * 1024 });
  assert.equal(big?.ok, false);
});

test("sfs: a peer's entries for a full manifest are dropped and counted", () => {
  const core = new Sfs(SELF.id, { ...TEST_CONFIG, filesMax: 5 }, signerOf(SELF));
  const peer = identityOf(67).id;
  const entries: SfsEntryWire[] = [];
  for (let k = 0; k < 10; k++) entries.push(dirEntry(`p${k}`, k + 1, identityOf(67)));
  core.step(peer, { t: "sfs-entries", e: entries, w: [] });
  assert.equal(core.size, 5);
  assert.equal(core.stats.full, 5);
});

test("sfs: tombstones are forgotten after the grace period", () => {
  const cluster = new SfsCluster({ n: 3, seed: 14, config: { tombstoneMs: 2_000, gcTicks: 50 } });
  cluster.run(2);
  cluster.write(0, "t.txt", randomBytes(rng, 10));
  cluster.runUntil(() => cluster.converged(), 500, "convergence");
  cluster.remove(0, "t.txt");
  cluster.runUntil(() => cluster.converged(), 500, "delete convergence");
  cluster.run(400); // 4 s of wall clock at 10 ms per tick
  for (const n of cluster.nodes) {
    assert.equal(n.core.stat("t.txt"), undefined, `node ${n.index} forgot the tombstone`);
    assert.equal(n.store.has("t.txt"), false, "and its record");
  }
});

test("sfs: random writes, removes, partitions and restarts converge, with only whole written content on any disk", () => {
  const paths = ["a", "b.txt", "d/c", "d/e/f", "d", "d/e"];
  // SFS_SEEDS=1000 for a longer soak.
  const seeds = Number(process.env.SFS_SEEDS ?? 40);
  for (let seed = 100; seed < 100 + seeds; seed++) {
    const r = createRng(seed);
    const cluster = new SfsCluster({ n: 3, seed, jitter: 2 });
    const written = new Set<string>();
    cluster.afterTick = () => {
      for (const n of cluster.nodes) for (const [p, bytes] of n.disk.files) assert.ok(written.has(sha256(bytes)), `seed ${seed}: ${p} on node ${n.index} is no written content`);
    };
    cluster.run(2);
    for (let step = 0; step < 40; step++) {
      const i = r.int(3);
      const n = node(cluster, i);
      const path = paths[r.int(paths.length)] as string;
      const roll = r.int(10);
      if (!n.alive) {
        if (roll < 3) cluster.restart(i);
      } else if (roll < 5) {
        const bytes = randomBytes(r, r.int(4000));
        written.add(sha256(bytes));
        const { temp, info } = n.disk.stage(bytes, cluster.config.chunkBytes);
        if (!n.core.localWrite(path, info, temp).ok) n.disk.temps.delete(temp); // the adapter drops a refused staging
      } else if (roll < 6) {
        n.core.localRemove(path, true);
      } else if (roll < 7) {
        n.core.localMkdir(path);
      } else if (roll < 8) {
        const j = (i + 1 + r.int(2)) % 3;
        cluster.blocked.add(`${i}>${j}`).add(`${j}>${i}`);
      } else if (roll < 9) {
        cluster.blocked.clear();
      } else if (cluster.nodes.filter((x) => x.alive).length > 1) {
        cluster.kill(i);
      }
      cluster.run(r.int(15));
    }
    cluster.blocked.clear();
    for (const n of cluster.nodes) if (!n.alive) cluster.restart(n.index);
    try {
      cluster.runUntil(() => cluster.converged(), 3000, `seed ${seed} convergence`);
    } catch (error) {
      for (const n of cluster.nodes) {
        console.log(n.index, n.alive, [...n.disk.files.keys()].sort(), [...n.disk.dirs].sort(), [...n.disk.temps.keys()]);
        console.log(n.core.list("", 100, true).map((v) => `${v.entry.path} ${v.entry.counter}/${v.entry.origin.slice(-1)} ${v.entry.deleted ? "del" : v.entry.dir ? "dir" : "file"} ${v.local} base=${v.base === undefined ? "-" : `${v.base.counter}/${v.base.origin.slice(-1)}${v.base.deleted ? "del" : v.base.dir ? "dir" : "file"}`}`).join("\n"));
      }
      throw error;
    }
    for (const n of cluster.nodes) {
      assert.deepEqual([...n.disk.temps.keys()], [], `seed ${seed}: node ${n.index} left temp files`);
      // Honest nodes' versions, conflict copies and shadow tombstones all verify.
      assert.equal(n.core.stats.signatureRefused, 0, `seed ${seed}: node ${n.index} refused an honest signature`);
      assert.deepEqual(n.signer.refused.sfs, { key: 0, revoked: 0, signature: 0 });
    }
  }
});

test("sfs: a rescan while the node works does not take a file committed meanwhile for a deletion", () => {
  const cluster = new SfsCluster({ n: 3, seed: 15 });
  cluster.run(2);
  const n2 = node(cluster, 2);
  const mark = n2.core.scanMark();
  const listing = n2.disk.listing(); // taken before the file arrives
  const content = randomBytes(rng, 3000);
  cluster.write(0, "late.bin", content);
  cluster.runUntil(() => cluster.converged(), 500, "convergence");
  const { rehash } = n2.core.reconcile(listing, true, mark);
  assert.deepEqual(rehash, []);
  cluster.run(50);
  for (const n of cluster.nodes) assert.ok(sameBytes(n.disk.files.get("late.bin"), content), `node ${n.index} still has the file`);
});

test("sfs: requests to a peer declared gone move at once, without waiting for the timeout", () => {
  const cluster = new SfsCluster({ n: 3, seed: 16, config: { requestTimeoutTicks: 100_000 } });
  cluster.run(2);
  const content = randomBytes(rng, 64 * 1024);
  cluster.blocked.add("0>2").add("2>0").add("1>2").add("2>1");
  cluster.write(0, "big.bin", content);
  cluster.runUntil(() => sameBytes(node(cluster, 1).disk.files.get("big.bin"), content) && node(cluster, 1).core.pendingCount === 0, 1000, "node 1 has the file");
  cluster.blocked.clear();
  cluster.runUntil(() => (node(cluster, 2).core.stat("big.bin")?.progress?.written ?? 0) >= 4, 500, "node 2 fetching");
  cluster.kill(0);
  cluster.gone.add(0);
  node(cluster, 2).core.peerGone(node(cluster, 0).id);
  cluster.runUntil(() => sameBytes(node(cluster, 2).disk.files.get("big.bin"), content), 500, "node 2 completes from node 1");
  assert.equal(node(cluster, 2).core.stats.timeouts, 0);
});

test("sfs: after a partition, every node's last concurrent write of a path survives on every node (path or conflict copy)", () => {
  const seeds = Number(process.env.SFS_SEEDS ?? 40);
  let checked = 0;
  for (let seed = 500; seed < 500 + seeds; seed++) {
    const r = createRng(seed);
    const cluster = new SfsCluster({ n: 3, seed, jitter: 2 });
    cluster.run(2);
    const start = randomBytes(r, 1000);
    cluster.write(0, "x/doc.txt", start);
    cluster.runUntil(() => cluster.converged(), 500, `seed ${seed} start`);
    for (const a of [0, 1, 2]) for (const b of [0, 1, 2]) if (a !== b) cluster.blocked.add(`${a}>${b}`);
    const last = new Map<number, string | undefined>();
    for (let step = 0; step < 12; step++) {
      const i = r.int(3);
      const n = node(cluster, i);
      if (r.int(4) === 0) {
        if (n.core.localRemove("x/doc.txt").ok) last.set(i, undefined);
      } else {
        const bytes = randomBytes(r, 1 + r.int(3000));
        const { temp, info } = n.disk.stage(bytes, cluster.config.chunkBytes);
        if (n.core.localWrite("x/doc.txt", info, temp).ok) last.set(i, sha256(bytes));
        else n.disk.temps.delete(temp);
      }
      cluster.run(1 + r.int(5));
    }
    cluster.run(20);
    cluster.blocked.clear();
    cluster.runUntil(() => cluster.converged(), 3000, `seed ${seed} convergence`);
    for (const n of cluster.nodes) {
      const held = new Set([...n.disk.files.values()].map(sha256));
      for (const [writer, content] of last) {
        if (content === undefined) continue;
        assert.ok(held.has(content), `seed ${seed}: node ${n.index} lost node ${writer}'s last write`);
        checked++;
      }
    }
  }
  assert.ok(checked >= seeds, `only ${checked} last writes checked over ${seeds} seeds`);
});

// ---- Bounds on what a peer may announce ("attack" tests; docs/protocols/sfs.md, "Bounds on peers")

/** A folder version signed by its origin `writer`. */
function dirEntry(path: string, counter: number, writer: Identity = MALLORY_ID): SfsEntryWire {
  const origin = writer.id;
  return entryToWire(signedEntry(writer, { path, counter, origin, deleted: false, dir: true, size: 0, mtimeMs: 1, sha256: "", chunkBytes: 1024, chunks: [], vv: [[origin, counter]] }), false);
}

function localDone(n: SimNode, op: number): { error?: string } | undefined {
  return n.events.find((e) => e.type === "sfs-local-done" && e.op === op) as { error?: string } | undefined;
}

test("attack: an entry with counter 2^48 no longer makes write answer success while nothing reaches the manifest", () => {
  const cluster = new SfsCluster({ n: 3, seed: 30 });
  cluster.run(2);
  const victim = node(cluster, 1);
  cluster.inject(MALLORY, 1, { t: "sfs-entries", e: [dirEntry("pinned", SFS_COUNTER_MAX)], w: [] });
  assert.equal(victim.core.stat("pinned")?.entry.counter, SFS_COUNTER_MAX, "a counter up to the bound is kept");
  assert.ok(victim.core.clock <= SFS_CLOCK_ADOPT_MAX, "but the clock does not follow it past the adoption bound");
  const content = randomBytes(rng, 5);
  const op = cluster.write(1, "after.txt", content);
  cluster.runUntil(() => localDone(victim, op) !== undefined, 50, "the write's answer");
  assert.equal(localDone(victim, op)?.error, undefined, "the write succeeded");
  const entry = victim.core.stat("after.txt")?.entry;
  assert.ok(entry !== undefined && entry.origin === victim.id && entry.counter <= SFS_COUNTER_MAX, "and its version is in the manifest");
  cluster.runUntil(() => cluster.nodes.every((n) => sameBytes(n.disk.files.get("after.txt"), content)), 500, "the write reaches every node");
  // The pinned path itself cannot take a version above the bound: its removal fails with the
  // reason before anything leaves the disk, rather than reporting done.
  cluster.runUntil(() => victim.disk.dirs.has("pinned"), 100, "the folder is made");
  const [rmOp] = cluster.remove(1, "pinned");
  cluster.runUntil(() => localDone(victim, rmOp as number) !== undefined, 50, "the removal's answer");
  assert.match(localDone(victim, rmOp as number)?.error ?? "", /cannot take a new version: a version there holds counter 281474976710656/);
  assert.ok(victim.disk.dirs.has("pinned"), "nothing was removed");
  assert.ok(victim.core.stats.localRefused >= 1);
});

test("attack: counters above SFS_COUNTER_MAX, and entries of this node's own origin above its clock, are dropped and counted", () => {
  const core = new Sfs(SELF.id, TEST_CONFIG, signerOf(SELF));
  core.step(MALLORY, { t: "sfs-entries", e: [dirEntry("high", SFS_COUNTER_MAX + 1)], w: [] });
  assert.equal(core.stats.highCounters, 1);
  assert.equal(core.stat("high"), undefined);
  core.step(MALLORY, { t: "sfs-entries", e: [dirEntry("forged", 1_000, SELF)], w: [] });
  assert.equal(core.stats.ownOrigin, 1, "a version of ours we never wrote");
  assert.equal(core.stat("forged"), undefined);
  assert.equal(core.clock, 0);
  // Our own versions at or below our clock (a conflict copy another node derived) are taken.
  core.step(MALLORY, { t: "sfs-entries", e: [dirEntry("other", 5)], w: [] });
  core.step(MALLORY, { t: "sfs-entries", e: [dirEntry("mine.conflict", 3, SELF)], w: [] });
  assert.ok(core.stat("mine.conflict") !== undefined);
});

test("attack: a peer announcing thousands of 4 GiB files gets only its quota into the manifest; the rest is refused and counted", () => {
  const core = new Sfs(SELF.id, TEST_CONFIG, signerOf(SELF));
  const chunkBytes = 4 * 1024 * 1024;
  const size = 4 * 1024 * 1024 * 1024;
  const hashes = Array.from({ length: size / chunkBytes }, () => "ab".repeat(32));
  const huge = (k: number): SfsEntryWire => entryToWire(signedEntry(MALLORY_ID, {
    path: `huge/${k}.bin`, counter: k + 1, origin: MALLORY, deleted: false, dir: false, size, mtimeMs: 1, sha256: "cd".repeat(32), chunkBytes, chunks: hashes, vv: [[MALLORY, k + 1]],
  }), true);
  for (let k = 0; k < 40; k += 10) core.step(MALLORY, { t: "sfs-entries", e: Array.from({ length: 10 }, (_, j) => huge(k + j)), w: [] });
  const fit = Math.floor(TEST_CONFIG.originBytesMax / size);
  assert.equal(fit, 16, "64 GiB of 4 GiB files");
  assert.deepEqual(core.usage(MALLORY), { files: fit, bytes: fit * size });
  assert.equal(core.stats.quotaRefused, 40 - fit);
  assert.equal(core.list("huge/", 1000).length, fit, "only the quota waits to be fetched");
  // Entries of no size count too: at most originFilesMax of them.
  const dirs = Array.from({ length: TEST_CONFIG.originFilesMax + 50 }, (_, k) => dirEntry(`d${k}`, 100 + k));
  core.step(MALLORY, { t: "sfs-entries", e: dirs, w: [] });
  assert.equal(core.usage(MALLORY).files, TEST_CONFIG.originFilesMax);
  assert.equal(core.stats.quotaRefused, 40 - fit + 50 + fit);
  // Another origin is not held back by it.
  core.step(identityOf(67).id, { t: "sfs-entries", e: [dirEntry("theirs", 9, identityOf(67))], w: [] });
  assert.ok(core.stat("theirs") !== undefined);
});

test("attack: files nobody can serve do not keep the fetch places — a file written after them still reaches every node, and they still wait", () => {
  const cluster = new SfsCluster({ n: 3, seed: 33 });
  cluster.run(2);
  const { transfersMax, chunkBytes, retryTicks } = cluster.config;
  // Within its quota, signed by its origin, "held" by it — but no node holds their content: before,
  // each took one of the transfersMax places for good (a stall kept its place), and no file written
  // after them was ever fetched.
  const chunks = Array.from({ length: 4 }, () => "ab".repeat(32));
  const junk = Array.from({ length: 4 * transfersMax }, (_, k) => entryToWire(signedEntry(MALLORY_ID, {
    path: `junk/${k}.bin`, counter: k + 1, origin: MALLORY, deleted: false, dir: false, size: chunks.length * chunkBytes, mtimeMs: 1, sha256: "cd".repeat(32),
    chunkBytes, chunks, vv: [[MALLORY, k + 1]],
  }), true));
  for (const n of cluster.nodes) cluster.inject(MALLORY, n.index, { t: "sfs-entries", e: junk, w: [] });
  cluster.runUntil(() => cluster.nodes.every((n) => n.core.stats.stalls >= junk.length), 10 * retryTicks, "every node tried each of them and found no holder");
  const content = randomBytes(rng, 3 * chunkBytes);
  cluster.write(0, "after.bin", content);
  cluster.runUntil(() => cluster.nodes.every((n) => sameBytes(n.disk.files.get("after.bin"), content)), 2 * retryTicks, "the file written after them on every node");
  for (const n of cluster.nodes) {
    const views = n.core.list("junk/", 1000);
    assert.equal(views.length, junk.length, "they stay in the manifest");
    assert.ok(views.every((v) => v.local === "waiting" || v.local === "fetching"), "and wait for a holder");
  }
  // They are tried again, less and less often (the wait doubles per failure up to 64 retryTicks), never dropped.
  const receiver = node(cluster, 1);
  const stalls = receiver.core.stats.stalls;
  cluster.run(128 * retryTicks);
  const more = receiver.core.stats.stalls - stalls;
  // Waits of 1, 2, 4, … 64 retry periods: at most 8 tries each in 128 periods (a fixed wait would make over 60).
  assert.ok(more >= junk.length && more <= 8 * junk.length, `each tried again, at most 8 times in 128 retry periods (${more} stalls for ${junk.length} files)`);
});

test("sfs: this node's own quota refuses a local write before it touches the disk", () => {
  const cluster = new SfsCluster({ n: 2, seed: 31, config: { originBytesMax: 3000 } });
  cluster.run(2);
  const n0 = node(cluster, 0);
  cluster.write(0, "a.bin", randomBytes(rng, 2000));
  cluster.runUntil(() => n0.core.stat("a.bin")?.local === "synced", 50, "the first write");
  const { temp, info } = n0.disk.stage(randomBytes(rng, 2000), 1024);
  const result = n0.core.localWrite("b.bin", info, temp);
  assert.equal(result.ok, false);
  assert.match(result.ok ? "" : result.error, /quota/);
  assert.equal(n0.disk.files.has("b.bin"), false);
  // Replacing its own file by a smaller one is fine.
  cluster.write(0, "a.bin", randomBytes(rng, 1000));
  cluster.runUntil(() => n0.core.stat("a.bin")?.entry.size === 1000, 50, "the smaller version");
});

test("sfs: a fetch that would leave less than the disk reserve free waits (counted, shown) and proceeds once space is measured free", () => {
  const cluster = new SfsCluster({ n: 2, seed: 32, config: { diskReserveBytes: 10_000 } });
  cluster.run(2);
  const receiver = node(cluster, 1);
  receiver.core.diskFree(12_000);
  const content = randomBytes(rng, 5_000);
  cluster.write(0, "big.bin", content);
  cluster.runUntil(() => receiver.core.stats.diskRefused > 0, 200, "the fetch put off");
  cluster.run(50);
  const view = receiver.core.stat("big.bin");
  assert.equal(view?.local, "waiting");
  assert.equal(view.diskWait, true, "shown as waiting for disk space");
  assert.equal(receiver.disk.files.has("big.bin"), false);
  assert.equal(receiver.core.stats.chunksIn, 0, "nothing was fetched");
  receiver.core.diskFree(1_000_000);
  cluster.runUntil(() => sameBytes(receiver.disk.files.get("big.bin"), content), 200, "fetched once there is room");
  assert.equal(receiver.core.stat("big.bin")?.diskWait, false);
});

test("sfs: a folder only core members write — a contributor's versions there are dropped and counted, its own local change refused; a core origin's are taken", () => {
  const reserved = (origin: string, path: string): string | undefined => (path.startsWith("brain/") && origin !== SELF.id && origin === MALLORY ? "only core nodes write /shared/brain/" : undefined);
  const core = new Sfs(SELF.id, TEST_CONFIG, signerOf(SELF), reserved);
  core.step(MALLORY, { t: "sfs-entries", e: [dirEntry("brain/model.pkm", 5), dirEntry("elsewhere", 6)], w: [] });
  assert.equal(core.stat("brain/model.pkm"), undefined, "the contributor's version there is not taken");
  assert.ok(core.stat("elsewhere") !== undefined, "elsewhere it writes");
  assert.equal(core.stats.reservedRefused, 1);
  const other = identityOf(67);
  core.step(other.id, { t: "sfs-entries", e: [dirEntry("brain/model.pkm", 7, other)], w: [] });
  assert.ok(core.stat("brain/model.pkm") !== undefined, "a core origin's is");
  const contributor = new Sfs(MALLORY, TEST_CONFIG, signerOf(MALLORY_ID), reserved);
  const made = contributor.localMkdir("brain/mine");
  assert.ok(!made.ok && /only core nodes write/.test(made.error), "refused before it touches the disk");
});
