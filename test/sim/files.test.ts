// The simulated shared folder (src/sim/files.ts): the SharedFolderPort on a SimDisk. Operations
// settle only when run(now) reaches their due tick, in the order asked; the effects do what the
// real adapter does (temp files, commit by fsync + rename, folders, removes, copies, reads); a
// crash keeps every committed file whole and loses or tears unsynced temp writes, which the boot
// scan deletes; a killed port never settles; the same seed gives the same ticks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createRng } from "../../src/core/util/rng.ts";
import type { SfsCompletion, SfsEffect } from "../../src/core/collective/sfs.ts";
import { SimDisk } from "../../src/sim/disk.ts";
import { SimFiles } from "../../src/sim/files.ts";

const CHUNK = 8;
const text = new TextEncoder();
const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** A port on `disk` with its own tick counter; `settle` runs ticks until the promise settles. */
function port(disk: SimDisk, seed = 1) {
  let now = 0, clock = 1_000;
  const files = new SimFiles(disk, { chunkBytes: CHUNK, clockMs: () => clock, rng: createRng(seed), latencyTicksMax: 3 });
  const settle = async <T>(p: Promise<T>, maxTicks = 50): Promise<{ value?: T; error?: Error; ticks: number }> => {
    let out: { value?: T; error?: Error } | undefined;
    p.then((value) => { out = { value }; }, (error: Error) => { out = { error }; });
    const start = now;
    for (let i = 0; i < maxTicks && out === undefined; i++) {
      now++;
      clock += 10;
      files.run(now);
      await Promise.resolve();
      await Promise.resolve();
    }
    assert.ok(out !== undefined, "settled");
    return { ...out, ticks: now - start };
  };
  const perform = async (effect: SfsEffect): Promise<SfsCompletion> => (await settle(files.perform(effect))).value!;
  return { files, settle, perform, tick: () => now };
}

test("sim files: staged writes, commits, folders, lists, scans, copies, removes — as the real adapter", async () => {
  const disk = new SimDisk();
  const { files, settle, perform } = port(disk);
  const hello = text.encode("hello, simulated world");
  const staged = (await settle(files.stageBytes(hello))).value!;
  assert.equal(staged.info.size, hello.length);
  assert.equal(staged.info.sha256, sha(hello));
  assert.equal(staged.info.chunkHashes.length, Math.ceil(hello.length / CHUNK));
  // A commit makes the parents; the file is then listed, scanned, hashed and read.
  const commit = await perform({ kind: "commit", id: 1, temp: staged.temp, path: "a/b/hello.txt", size: hello.length, sha256: staged.info.sha256, verify: true });
  assert.equal(commit.kind, "commit");
  assert.ok(!("error" in commit && commit.error !== undefined), JSON.stringify(commit));
  assert.deepEqual((await settle(files.read("a/b/hello.txt", 100))).value, hello);
  assert.match(String((await settle(files.read("a/b/hello.txt", 5))).error), /EFBIG/);
  assert.match(String((await settle(files.read("a/missing", 5))).error), /ENOENT/);
  const root = (await settle(files.list(""))).value!;
  assert.deepEqual(root.map((e) => [e.name, e.dir]), [["a", true]]);
  assert.deepEqual((await settle(files.list("a/b"))).value!.map((e) => [e.name, e.dir, e.size]), [["hello.txt", false, hello.length]]);
  const scan = (await settle(files.scan({ cleanTemp: false }))).value!;
  assert.ok(scan.complete);
  assert.deepEqual(scan.items.map((i) => [i.path, i.dir]), [["a", true], ["a/b", true], ["a/b/hello.txt", false]]);
  const hashed = (await settle(files.hashFile("a/b/hello.txt"))).value!;
  assert.equal(hashed.sha256, sha(hello));
  assert.equal(hashed.mtimeMs, commit.kind === "commit" ? commit.mtimeMs : -1);
  // Chunks written into a temp file, then committed; a wrong size or hash fails the commit.
  for (const [k, offset] of [0, 8, 16].entries()) {
    assert.deepEqual(await perform({ kind: "write-chunk", id: 10 + k, temp: "t1", index: k, offset, bytes: hello.subarray(offset, offset + 8) }), { kind: "write-chunk", id: 10 + k });
  }
  assert.match(String((await perform({ kind: "commit", id: 20, temp: "t1", path: "c.txt", size: 3, sha256: sha(hello), verify: false }) as { error?: string }).error), /size/);
  assert.match(String((await perform({ kind: "commit", id: 21, temp: "t1", path: "c.txt", size: hello.length, sha256: "00", verify: true }) as { error?: string }).error), /sha256/);
  assert.equal((await perform({ kind: "commit", id: 22, temp: "t1", path: "c.txt", size: hello.length, sha256: sha(hello), verify: true }) as { error?: string }).error, undefined);
  assert.deepEqual((await perform({ kind: "read-chunk", id: 23, path: "c.txt", offset: 8, length: 8 }) as { bytes?: Uint8Array }).bytes, hello.subarray(8, 16));
  assert.equal((await perform({ kind: "read-chunk", id: 24, path: "nope", offset: 0, length: 8 }) as { bytes?: Uint8Array }).bytes, undefined);
  // Copies, folders and removes.
  const copy = await perform({ kind: "copy", id: 30, from: "c.txt", temp: "t2", chunkBytes: CHUNK });
  assert.equal((copy as { info?: { sha256: string } }).info?.sha256, sha(hello));
  assert.equal((await perform({ kind: "mkdir", id: 31, path: "c.txt" }) as { error?: string }).error, "a file is in the way");
  assert.equal((await perform({ kind: "mkdir", id: 32, path: "d/e" }) as { error?: string }).error, undefined);
  assert.equal((await perform({ kind: "remove", id: 33, path: "a", dir: true }) as { error?: string }).error, "not-empty");
  assert.equal((await perform({ kind: "remove", id: 34, path: "a", dir: false }) as { error?: string }).error, "kind");
  assert.equal((await perform({ kind: "remove", id: 35, path: "a/b/hello.txt", dir: false }) as { error?: string }).error, undefined);
  assert.equal((await perform({ kind: "remove", id: 36, path: "a", dir: true }) as { error?: string }).error, undefined, "only empty folders left");
  assert.equal((await perform({ kind: "remove", id: 37, path: "gone", dir: false }) as { error?: string }).error, undefined, "absent is fine");
  // A leftover empty folder in the way of a commit goes; one holding a file fails it.
  const staged2 = (await settle(files.stageBytes(hello))).value!;
  assert.equal((await perform({ kind: "commit", id: 40, temp: staged2.temp, path: "d", size: hello.length, sha256: sha(hello), verify: false }) as { error?: string }).error, undefined);
  assert.deepEqual((await settle(files.list(""))).value!.map((e) => [e.name, e.dir]), [["c.txt", false], ["d", false]]);
  assert.deepEqual(await perform({ kind: "discard", id: 41, temp: "t2" }), { kind: "discard", id: 41 });
  assert.ok(!disk.names().some((n) => n.includes(".sfs-tmp/t2")));
});

test("sim files: operations settle at their due ticks, in the order asked; the same seed gives the same ticks", async () => {
  const ticksOf = async (seed: number): Promise<number[]> => {
    const disk = new SimDisk();
    const files = new SimFiles(disk, { chunkBytes: CHUNK, clockMs: () => 0, rng: createRng(seed), latencyTicksMax: 5 });
    const order: [number, number][] = [];
    for (let k = 0; k < 20; k++) void files.stageBytes(text.encode(`file ${k}`)).then(() => order.push([k, now]));
    let now = 0;
    assert.equal(files.pending, 20);
    for (now = 1; now <= 200 && files.pending > 0; now++) {
      files.run(now);
      await Promise.resolve();
    }
    await Promise.resolve();
    assert.deepEqual(order.map(([k]) => k), Array.from({ length: 20 }, (_, k) => k), "in the order asked");
    assert.ok(order.every(([, t], i) => i === 0 || t >= order[i - 1]![1]));
    assert.ok(order[0]![1] >= 1, "nothing settles before a tick");
    return order.map(([, t]) => t);
  };
  assert.deepEqual(await ticksOf(3), await ticksOf(3));
  assert.notDeepEqual(await ticksOf(3), await ticksOf(4));
});

test("sim files: a crash keeps committed files whole, loses or tears unsynced temp writes (the boot scan deletes them); a dead port never settles", async () => {
  for (let seed = 1; seed <= 20; seed++) {
    const disk = new SimDisk();
    const before = port(disk, seed);
    const old = text.encode("the old content, committed");
    const staged = (await before.settle(before.files.stageBytes(old))).value!;
    await before.perform({ kind: "commit", id: 1, temp: staged.temp, path: "f.txt", size: old.length, sha256: sha(old), verify: false });
    // A new version arrives chunk by chunk; the power goes before its commit.
    const fresh = text.encode("the new content, never committed");
    for (let k = 0; k * 8 < fresh.length; k++) {
      await before.perform({ kind: "write-chunk", id: 2 + k, temp: "incoming", index: k, offset: 8 * k, bytes: fresh.subarray(8 * k, 8 * k + 8) });
    }
    let settled = false;
    void before.files.perform({ kind: "commit", id: 9, temp: "incoming", path: "f.txt", size: fresh.length, sha256: sha(fresh), verify: true }).then(() => { settled = true; });
    disk.crash(createRng(seed, 7), { tornProbability: 0.5 });
    before.files.run(before.tick() + 10);
    await Promise.resolve();
    assert.equal(settled, false, "the operation of a dead process never completes");
    assert.ok(before.files.stats.dropped >= 1);
    // The new process: the committed file is whole; the temp is gone after the boot scan.
    const after = port(disk, seed);
    const scan = (await after.settle(after.files.scan({ cleanTemp: true }))).value!;
    assert.deepEqual(scan.items.map((i) => i.path), ["f.txt"]);
    assert.deepEqual((await after.settle(after.files.read("f.txt", 100))).value, old);
    assert.ok(!disk.names().some((n) => n.startsWith("shared/.sfs-tmp/")));
  }
});

test("sim files: freeBytes is the capacity less every file on the simulated disk (temp files and the store included)", async () => {
  const disk = new SimDisk();
  let now = 0;
  const files = new SimFiles(disk, { chunkBytes: CHUNK, clockMs: () => 1_000, rng: createRng(3), capacityBytes: 10_000 });
  const settle = async <T>(p: Promise<T>): Promise<T> => {
    let out: { value: T } | undefined;
    void p.then((value) => { out = { value }; });
    for (let i = 0; i < 20 && out === undefined; i++) {
      files.run(++now);
      await Promise.resolve();
      await Promise.resolve();
    }
    assert.ok(out !== undefined, "settled");
    return out.value;
  };
  assert.equal(await settle(files.freeBytes()), 10_000);
  const staged = await settle(files.stageBytes(new Uint8Array(3_000)));
  disk.open("store/log").write(0, new Uint8Array(1_000));
  assert.equal(await settle(files.freeBytes()), 6_000);
  await settle(files.perform({ kind: "commit", id: 1, temp: staged.temp, path: "big.bin", size: 3_000, sha256: sha(new Uint8Array(3_000)), verify: true }));
  assert.equal(await settle(files.freeBytes()), 6_000, "a commit renames: no more space used");
  disk.open("store/more").write(0, new Uint8Array(20_000));
  assert.equal(await settle(files.freeBytes()), 0, "never below zero");
});
