// The sfs file adapter (src/adapters/sfs-files.ts) on real temp folders: chunked hashing, atomic
// commit, hidden temp files, path and link refusals, crashes of a writer process killed with
// SIGKILL, and three cores replicating a 50 MB file through it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, hash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SharedFiles, TEMP_DIR } from "../../src/adapters/sfs-files.ts";
import { Sfs, SFS_DEFAULTS, type SfsEffect } from "../../src/core/collective/sfs.ts";
import type { SfsMessage } from "../../src/core/collective/sfs-wire.ts";
import { CHUNK_BYTES, fileSha256 } from "./fixtures/sfs-content.ts";

const WRITER = join(import.meta.dirname, "fixtures", "sfs-writer.ts");
const MiB = 1024 * 1024;

function tempDataDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "pk-sfs-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function sha(bytes: Uint8Array): string {
  return hash("sha256", bytes, "hex");
}

function chunkHashes(bytes: Uint8Array, chunkBytes: number): string[] {
  const out: string[] = [];
  for (let offset = 0; offset < bytes.length; offset += chunkBytes) out.push(sha(bytes.subarray(offset, offset + chunkBytes)));
  return out;
}

test("sfs files: staged writes commit atomically; temp files are hidden; hashes are chunked", async (t) => {
  const data = tempDataDir(t);
  const files = await SharedFiles.open(data, { chunkBytes: 1024 });
  t.after(() => files.close());
  assert.equal(statSync(files.root).mode & 0o777, 0o700);
  assert.equal(statSync(files.tempDir).mode & 0o777, 0o700);
  const bytes = randomBytes(5000);
  const { temp, info } = await files.stageBytes(bytes);
  assert.equal(info.size, 5000);
  assert.equal(info.sha256, sha(bytes));
  assert.deepEqual(info.chunkHashes, chunkHashes(bytes, 1024));
  assert.deepEqual(await files.list(""), [], "a staged file is not visible");
  const done = await files.perform({ kind: "commit", id: 1, temp, path: "docs/a.bin", size: 5000, sha256: info.sha256, verify: false });
  assert.equal("error" in done ? done.error : undefined, undefined);
  assert.deepEqual((await files.list("")).map((e) => [e.name, e.dir]), [["docs", true]]);
  assert.deepEqual(Buffer.from(await files.read("docs/a.bin", 1 << 20)), bytes);
  assert.deepEqual(await files.hashFile("docs/a.bin"), { ...info, mtimeMs: (done as { mtimeMs: number }).mtimeMs });
  assert.deepEqual(readdirSync(files.tempDir), []);
  // Copy (cp, and the core's local copy) hashes on the way.
  const copy = await files.stageCopy("docs/a.bin");
  assert.equal(copy.info.sha256, info.sha256);
  await files.discardStaged(copy.temp);
  const scan = await files.scan({ cleanTemp: false });
  assert.deepEqual(scan.items.map((i) => i.path), ["docs", "docs/a.bin"], "the temp folder never shows");
  // A commit whose content does not match is refused and leaves the old file.
  const other = await files.stageBytes(randomBytes(5000));
  const bad = await files.perform({ kind: "commit", id: 2, temp: other.temp, path: "docs/a.bin", size: 5000, sha256: info.sha256, verify: true });
  assert.match((bad as { error?: string }).error ?? "", /sha256/);
  assert.equal(sha(await files.read("docs/a.bin", 1 << 20)), info.sha256);
  // An empty file needs no temp.
  const empty = await files.perform({ kind: "commit", id: 3, temp: "t-empty", path: "empty", size: 0, sha256: sha(new Uint8Array(0)), verify: true });
  assert.equal((empty as { error?: string }).error, undefined);
  assert.equal(statSync(join(files.root, "empty")).size, 0);
});

test("sfs files: removes, folders, and refusals of bad paths and links", async (t) => {
  const data = tempDataDir(t);
  const files = await SharedFiles.open(data, { chunkBytes: 1024 });
  t.after(() => files.close());
  const made = await files.perform({ kind: "mkdir", id: 1, path: "a/b/c" });
  assert.equal((made as { error?: string }).error, undefined);
  writeFileSync(join(files.root, "a", "f"), "x");
  assert.deepEqual(await files.perform({ kind: "remove", id: 2, path: "a", dir: true }), { kind: "remove", id: 2, error: "not-empty" });
  assert.ok(existsSync(join(files.root, "a", "f")), "a folder with a file stays whole");
  assert.deepEqual(await files.perform({ kind: "remove", id: 3, path: "a/f", dir: false }), { kind: "remove", id: 3 });
  assert.deepEqual(await files.perform({ kind: "remove", id: 4, path: "a", dir: true }), { kind: "remove", id: 4 });
  assert.equal(existsSync(join(files.root, "a")), false, "a folder of empty folders goes");
  assert.deepEqual(await files.perform({ kind: "remove", id: 5, path: "a", dir: false }), { kind: "remove", id: 5 }, "absent is fine");
  // A file in the way of a folder, a folder with a file in the way of a file.
  writeFileSync(join(files.root, "plain"), "x");
  assert.match((await files.perform({ kind: "mkdir", id: 6, path: "plain/sub" }) as { error?: string }).error ?? "", /in the way/);
  // Paths that are not canonical never reach the disk.
  for (const path of ["../escape", "/etc/passwd", "a//b", ".sfs-tmp/x"]) {
    const result = await files.perform({ kind: "mkdir", id: 7, path });
    assert.ok((result as { error?: string }).error !== undefined, path);
  }
  assert.ok((await files.perform({ kind: "write-chunk", id: 8, temp: "../../x", index: 0, offset: 0, bytes: new Uint8Array(1) }) as { error?: string }).error !== undefined);
  // A link inside /shared/ pointing out of it is not followed.
  const outside = mkdtempSync(join(tmpdir(), "pk-sfs-outside-"));
  t.after(() => rmSync(outside, { recursive: true, force: true }));
  symlinkSync(outside, join(files.root, "link"));
  const staged = await files.stageBytes(new Uint8Array([1, 2, 3]));
  const escaped = await files.perform({ kind: "commit", id: 9, temp: staged.temp, path: "link/x", size: 3, sha256: sha(new Uint8Array([1, 2, 3])), verify: false });
  assert.match((escaped as { error?: string }).error ?? "", /link/);
  assert.deepEqual(readdirSync(outside), [], "nothing was written outside /shared/");
  assert.deepEqual(await files.perform({ kind: "read-chunk", id: 10, path: "link/x", offset: 0, length: 3 }), { kind: "read-chunk", id: 10 });
  assert.ok((await files.perform({ kind: "mkdir", id: 11, path: "link/y" }) as { error?: string }).error !== undefined);
  assert.deepEqual(readdirSync(outside), []);
  const scan = await files.scan({ cleanTemp: false });
  assert.equal(scan.skipped, 1, "the link is left out of the scan");
});

test("sfs files: a 50 MB file written in 1 MiB chunks, committed and hashed", async (t) => {
  const data = tempDataDir(t);
  const files = await SharedFiles.open(data, { chunkBytes: MiB });
  t.after(() => files.close());
  const size = 50 * MiB;
  const bytes = randomBytes(size);
  const wholeSha = sha(bytes);
  const chunks = size / MiB;
  let id = 0;
  const started = performance.now();
  // Up to 8 chunk writes in flight, as the core would issue them.
  for (let i = 0; i < chunks; i += 8) {
    const batch: Promise<unknown>[] = [];
    for (let k = i; k < Math.min(chunks, i + 8); k++) {
      batch.push(files.perform({ kind: "write-chunk", id: ++id, temp: "t1", index: k, offset: k * MiB, bytes: bytes.subarray(k * MiB, (k + 1) * MiB) }));
    }
    await Promise.all(batch);
    assert.equal((await files.scan({ cleanTemp: false })).items.length, 0, "nothing visible while the chunks are written");
  }
  const written = performance.now();
  const done = await files.perform({ kind: "commit", id: ++id, temp: "t1", path: "big.bin", size, sha256: wholeSha, verify: true });
  const committed = performance.now();
  assert.equal((done as { error?: string }).error, undefined);
  const info = await files.hashFile("big.bin");
  const hashed = performance.now();
  assert.equal(info.sha256, wholeSha);
  assert.equal(info.chunkHashes.length, 50);
  assert.equal(info.chunkHashes[7], sha(bytes.subarray(7 * MiB, 8 * MiB)));
  assert.equal(createHash("sha256").update(readFileSync(join(files.root, "big.bin"))).digest("hex"), wholeSha, "byte-identical on disk");
  t.diagnostic(`50 MB: chunk writes ${(written - started).toFixed(0)} ms, commit with fsync and verify ${(committed - written).toFixed(0)} ms, hash in chunks ${(hashed - committed).toFixed(0)} ms`);
});

/** Spawns the writer; SIGKILLs it when `killWhen` says so for a stdout line; resolves with the lines seen. */
function runWriter(dataDir: string, mode: "chunks" | "commit", chunks: number, killWhen: (line: string) => boolean): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, dataDir, mode, String(chunks)], { stdio: ["ignore", "pipe", "pipe"] });
    const lines: string[] = [];
    let pending = "";
    let stderr = "";
    let killed = false;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`writer did not reach the kill point; stdout ${lines.slice(-3).join(" | ")}; stderr ${stderr}`));
    }, 30_000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (data: string) => {
      pending += data;
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        lines.push(line);
        if (!killed && killWhen(line)) {
          killed = true;
          child.kill("SIGKILL");
        }
      }
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (data: string) => {
      if (stderr.length < 10_000) stderr += data;
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (signal !== "SIGKILL") reject(new Error(`writer exited by itself (code ${code}); stderr ${stderr}`));
      else resolve(lines);
    });
  });
}

test("sfs files: a writer killed with SIGKILL mid-write leaves no visible file; the boot scan clears the temp folder", async (t) => {
  const data = tempDataDir(t);
  const lines = await runWriter(data, "chunks", 40, (line) => line === "chunk 6");
  assert.ok(lines.includes("chunk 6"));
  const shared = join(data, "shared");
  assert.deepEqual(readdirSync(shared), [TEMP_DIR], "only the temp folder");
  assert.ok(readdirSync(join(shared, TEMP_DIR)).length > 0, "the partial file sits in the temp folder");
  const files = await SharedFiles.open(data, { chunkBytes: CHUNK_BYTES });
  t.after(() => files.close());
  const scan = await files.scan({ cleanTemp: true });
  assert.deepEqual(scan.items, []);
  assert.deepEqual(readdirSync(files.tempDir), [], "the boot scan emptied the temp folder");
});

test("sfs files: a writer killed at its commit leaves either no file or the whole file", async (t) => {
  for (let round = 0; round < 3; round++) {
    const data = tempDataDir(t);
    // Kill at "committing" (before the rename, mostly) or once the commit reported (after it).
    const lines = await runWriter(data, "commit", 8, (line) => (round < 2 ? line === "committing" : line.startsWith("committed")));
    const path = join(data, "shared", "big.bin");
    if (round === 2) assert.ok(existsSync(path), "killed after the commit reported: the file is there");
    if (existsSync(path)) {
      assert.equal(createHash("sha256").update(readFileSync(path)).digest("hex"), fileSha256(8), `round ${round}: a visible file is whole`);
    } else {
      assert.ok(!lines.some((l) => l.startsWith("committed")), `round ${round}: a reported commit is durable`);
    }
    const files = await SharedFiles.open(data, { chunkBytes: CHUNK_BYTES });
    await files.scan({ cleanTemp: true });
    assert.deepEqual(readdirSync(files.tempDir), []);
    await files.close();
  }
});

test("sfs files: three cores replicate a 50 MB file through real folders, and a delete reaches all", async (t) => {
  const ids = ["b000000000000001", "b000000000000002", "b000000000000003"];
  const config = { ...SFS_DEFAULTS, syncTicks: 20 };
  const nodes = await Promise.all(ids.map(async (id) => {
    const data = tempDataDir(t);
    mkdirSync(data, { recursive: true });
    const files = await SharedFiles.open(data, { chunkBytes: config.chunkBytes });
    return { id, core: new Sfs(id, config), files, data };
  }));
  t.after(() => Promise.all(nodes.map((n) => n.files.close())));
  const membership = (self: string) => ({ liveIds: () => ids.filter((id) => id !== self) });
  let failure: unknown;
  const flush = (i: number): void => {
    const node = nodes[i] as (typeof nodes)[number];
    while (node.core.hasReady()) {
      const ready = node.core.ready();
      for (const effect of ready.effects) perform(i, effect);
      for (const { to, message } of ready.messages) setImmediate(() => deliver(ids.indexOf(to), node.id, message));
    }
  };
  const perform = (i: number, effect: SfsEffect): void => {
    const node = nodes[i] as (typeof nodes)[number];
    node.files.perform(effect).then((done) => {
      node.core.complete(done);
      flush(i);
    }).catch((error: unknown) => (failure ??= error));
  };
  const deliver = (i: number, from: string, message: SfsMessage): void => {
    const node = nodes[i] as (typeof nodes)[number];
    try {
      node.core.step(from, message, message.t === "sfs-chunk" && message.s === 0 ? sha(message.d) : undefined);
      flush(i);
    } catch (error) {
      failure ??= error;
    }
  };
  const ticker = setInterval(() => {
    nodes.forEach((node, i) => {
      node.core.tick(membership(node.id), Date.now());
      flush(i);
    });
  }, 10);
  t.after(() => clearInterval(ticker));
  const waitFor = async (what: string, pred: () => boolean, ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (failure !== undefined) throw failure;
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const first = nodes[0] as (typeof nodes)[number];
  const bytes = randomBytes(50 * MiB);
  const started = performance.now();
  const { temp, info } = await first.files.stageBytes(bytes);
  const staged = performance.now();
  const result = first.core.localWrite("media/big.bin", info, temp);
  assert.ok(result.ok);
  flush(0);
  await waitFor("replication", () => nodes.every((n) => n.core.stat("media/big.bin")?.local === "synced" && n.core.pendingCount === 0), 60_000);
  const replicated = performance.now();
  for (const node of nodes) {
    const path = join(node.files.root, "media", "big.bin");
    assert.equal(createHash("sha256").update(readFileSync(path)).digest("hex"), info.sha256, `${node.id} holds it byte-identical`);
    assert.deepEqual(readdirSync(node.files.tempDir), [], `${node.id} left no temp file`);
  }
  t.diagnostic(`50 MB: staged and hashed in ${(staged - started).toFixed(0)} ms, on all 3 nodes ${(replicated - staged).toFixed(0)} ms later`);
  const removed = nodes[1]?.core.localRemove("media", true);
  assert.ok(removed?.ok);
  flush(1);
  await waitFor("delete", () => nodes.every((n) => !existsSync(join(n.files.root, "media")) && n.core.pendingCount === 0), 10_000);
});
