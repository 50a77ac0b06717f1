import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { diskThreadStats, openStore, StoreError } from "../../src/adapters/store.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import type { StoreWrite } from "../../src/node/ports.ts";

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

function tempPath(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "pk-store-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, "sub", "state.db");
}

test("store: put, get, overwrite, delete", (t) => {
  const store = openStore(tempPath(t));
  t.after(() => store.close());
  assert.equal(store.get("a"), undefined);
  store.write([{ key: "a", value: bytes("one") }], { durable: false });
  assert.deepEqual(store.get("a"), bytes("one"));
  store.write([{ key: "a", value: bytes("two") }], { durable: true });
  assert.deepEqual(store.get("a"), bytes("two"));
  store.write([{ key: "empty", value: new Uint8Array(0) }], { durable: false });
  assert.deepEqual(store.get("empty"), new Uint8Array(0), "an empty value is a value, not a delete");
  store.write([{ key: "a", value: undefined }], { durable: true });
  assert.equal(store.get("a"), undefined);
  store.write([{ key: "never-there", value: undefined }], { durable: false });
  store.write([], { durable: true });
  assert.deepEqual(store.scan(""), [["empty", new Uint8Array(0)]]);
});

test("store: a batch applies in order and atomically", (t) => {
  const store = openStore(tempPath(t));
  t.after(() => store.close());
  store.write([
    { key: "x", value: bytes("1") },
    { key: "y", value: bytes("2") },
    { key: "x", value: bytes("3") },
    { key: "y", value: undefined },
  ], { durable: true });
  assert.deepEqual(store.get("x"), bytes("3"), "later writes in a batch win");
  assert.equal(store.get("y"), undefined);

  const big = new Uint8Array(LIMITS.storeValueBytesMax + 1);
  assert.throws(
    () => store.write([{ key: "p", value: bytes("new") }, { key: "q", value: big }], { durable: true }),
    (error: unknown) => error instanceof StoreError && error.code === "STORE_VALUE_TOO_LARGE" && /storeValueBytesMax/.test(error.message),
  );
  assert.equal(store.get("p"), undefined, "no part of a refused batch is applied");
  const notBytes = "text" as unknown as Uint8Array;
  assert.throws(
    () => store.write([{ key: "p", value: bytes("new") }, { key: "r", value: notBytes }], { durable: false }),
    (error: unknown) => error instanceof StoreError && error.code === "STORE_BAD_ARGUMENT",
  );
  assert.equal(store.get("p"), undefined);
  // The bound itself is accepted.
  store.write([{ key: "q", value: new Uint8Array(LIMITS.storeValueBytesMax) }], { durable: false });
  assert.equal(store.get("q")?.length, LIMITS.storeValueBytesMax);
});

test("store: a batch failing inside SQLite is rolled back whole", (t) => {
  const path = tempPath(t);
  const store = openStore(path);
  t.after(() => store.close());
  store.write([{ key: "before", value: bytes("kept") }], { durable: true });
  // Make the second insert of a batch fail inside the transaction with a trigger.
  const side = new DatabaseSync(path);
  side.exec("CREATE TRIGGER refuse BEFORE INSERT ON kv WHEN NEW.key = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END");
  side.close();
  assert.throws(
    () => store.write([{ key: "first", value: bytes("1") }, { key: "poison", value: bytes("2") }], { durable: true }),
    (error: unknown) => error instanceof StoreError && error.code === "STORE_WRITE_FAILED" && /poisoned/.test(error.message),
  );
  assert.equal(store.get("first"), undefined, "the first half of the failed batch was rolled back");
  store.write([{ key: "after", value: bytes("ok") }], { durable: false });
  assert.deepEqual(store.get("after"), bytes("ok"), "the store still works after a failed batch");
});

test("store: scan returns prefix matches in key order, bounded by limit", (t) => {
  const store = openStore(tempPath(t));
  t.after(() => store.close());
  const keys = ["m/b", "m/a", "m/c", "m", "n/a", "l/z", "m/\u{1F600}", "m/\uffff", "m0"];
  store.write(keys.map((key) => ({ key, value: bytes(key) })), { durable: false });
  const scanned = store.scan("m/");
  assert.deepEqual(scanned.map(([key]) => key), ["m/a", "m/b", "m/c", "m/\uffff", "m/\u{1F600}"]);
  for (const [key, value] of scanned) assert.deepEqual(value, bytes(key));
  assert.deepEqual(store.scan("m/", 2).map(([key]) => key), ["m/a", "m/b"]);
  assert.deepEqual(store.scan("m/", 0), []);
  assert.deepEqual(store.scan("zz"), []);
  assert.equal(store.scan("").length, keys.length);
  assert.equal(store.scan("", 3).length, 3);
  assert.throws(() => store.scan("m/", -1), (error: unknown) => error instanceof StoreError && error.code === "STORE_BAD_ARGUMENT");
});

test("store: data persists across close and reopen; WAL mode", (t) => {
  const path = tempPath(t);
  const first = openStore(path);
  first.write([{ key: "durable", value: bytes("d") }], { durable: true });
  first.write([{ key: "lazy", value: bytes("l") }], { durable: false });
  first.close();
  first.close(); // idempotent
  assert.throws(() => first.get("durable"), (error: unknown) => error instanceof StoreError && error.code === "STORE_CLOSED");

  const second = openStore(path);
  t.after(() => second.close());
  assert.deepEqual(second.get("durable"), bytes("d"));
  assert.deepEqual(second.get("lazy"), bytes("l"));
  const probe = new DatabaseSync(path, { readOnly: true });
  assert.equal(probe.prepare("PRAGMA journal_mode").get()?.["journal_mode"], "wal");
  probe.close();
});

test("store: opening something that is not a database fails with a clear error", (t) => {
  const path = tempPath(t);
  assert.throws(() => openStore(join(path, "..", "..")), (error: unknown) => error instanceof StoreError && error.code === "STORE_OPEN_FAILED");
});

test("store: writeAsync commits the batches queued during a commit together, answers each in order, all durable", async (t) => {
  const path = tempPath(t);
  // Every commit on the disk thread (after the first, which measures the disk here).
  const store = openStore(path, { inlineCommitMsMax: 0 });
  t.after(() => store.close());
  const batches = 300;
  const answered: number[] = [];
  // All handed over in one turn: the disk thread starts with the first and finds the others queued.
  const done = Array.from({ length: batches }, (_, n) => new Promise<void>((resolve, reject) => {
    const writes: StoreWrite[] = [{ key: `k/${String(n).padStart(4, "0")}`, value: bytes(`v${n}`) }, { key: "last", value: bytes(String(n)) }];
    // Every 10th batch deletes what the one before wrote: order inside a merged commit matters.
    if (n % 10 === 9) writes.push({ key: `k/${String(n - 1).padStart(4, "0")}`, value: undefined });
    store.writeAsync(writes, (error) => {
      if (error !== undefined) return reject(error);
      answered.push(n);
      resolve();
    });
  }));
  await Promise.all(done);
  assert.deepEqual(answered, Array.from({ length: batches }, (_, n) => n), "answered in the order written");
  const stats = diskThreadStats(store);
  assert.equal(stats.batches, batches - 1, "the first on this thread, every other on the disk thread");
  assert.ok(stats.commits >= 1 && stats.commits < stats.batches, `${stats.commits} commits for ${stats.batches} batches: queued batches were merged`);
  t.diagnostic(`${batches} batches in ${stats.commits} commits`);
  // Reopened from the file (another connection): every batch is there, deletes after their puts.
  const again = openStore(path);
  try {
    assert.deepEqual(again.get("last"), bytes(String(batches - 1)));
    assert.equal(again.scan("k/").length, batches - batches / 10);
    assert.equal(again.get("k/0008"), undefined);
    assert.deepEqual(again.get("k/0009"), bytes("v9"));
  } finally {
    again.close();
  }
});

test("store: writeAsync commits on the calling thread while commits are quick, on the disk thread once they are slow", async (t) => {
  const write = (store: ReturnType<typeof openStore>, n: number): { sync: boolean; done: Promise<void> } => {
    let sync = true;
    let answered = false;
    const done = new Promise<void>((resolve, reject) => {
      store.writeAsync([{ key: `k/${n}`, value: bytes(String(n)) }], (error, synced) => {
        if (error !== undefined) return reject(error);
        // A commit on the calling thread carries its batch alone.
        if (!answered && sync) assert.equal(synced, true, `batch ${n}: committed alone`);
        answered = true;
        resolve();
      });
    });
    sync = answered;
    return { sync, done };
  };
  // Quick enough always: every batch is durable when writeAsync returns, no thread is started.
  const here = openStore(tempPath(t), { inlineCommitMsMax: Number.POSITIVE_INFINITY });
  t.after(() => here.close());
  for (let n = 0; n < 20; n++) {
    const w = write(here, n);
    assert.equal(w.sync, true, `batch ${n} answered before writeAsync returned`);
    await w.done;
  }
  assert.deepEqual(diskThreadStats(here), { batches: 0, commits: 0 });
  // Never quick enough: the first commit measures the disk here, every later one goes to the thread.
  const there = openStore(tempPath(t), { inlineCommitMsMax: 0 });
  t.after(() => there.close());
  const results = Array.from({ length: 20 }, (_, n) => write(there, n));
  await Promise.all(results.map((w) => w.done));
  assert.deepEqual(results.map((w) => w.sync), [true, ...Array.from({ length: 19 }, () => false)]);
  assert.equal(diskThreadStats(there).batches, 19);
  for (let n = 0; n < 20; n++) assert.deepEqual(there.get(`k/${n}`), bytes(String(n)));
});
