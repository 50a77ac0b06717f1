// The real Store: a key-value table in SQLite (node:sqlite) in WAL mode (docs/adr/003-storage.md).
//
//   kv(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID
//
// A batch is one `BEGIN IMMEDIATE … COMMIT` transaction, so it applies whole or not at all. In WAL
// mode a commit appends the batch's pages and a commit record to the -wal file; with
// `synchronous=FULL` SQLite fsyncs the WAL before COMMIT returns, so a durable batch survives a
// crash of the process or the machine once write() returns. Other batches run with
// `synchronous=NORMAL`: they survive a process crash (the bytes are in the OS page cache) but a
// power loss may lose the newest of them — never an older one while keeping a newer one, because
// the WAL is replayed in order up to the first frame whose checksum fails, and a durable commit
// fsyncs every frame before it too. That is the Store port's contract: every durable batch and a
// prefix of the others.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { performance } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import type { Store, StoreWrite } from "../node/ports.ts";
import { LIMITS } from "../core/util/limits.ts";

export type StoreErrorCode =
  | "STORE_VALUE_TOO_LARGE"
  | "STORE_BAD_ARGUMENT"
  | "STORE_OPEN_FAILED"
  | "STORE_WRITE_FAILED"
  | "STORE_CORRUPT"
  | "STORE_CLOSED";

/** A Store failure with a machine-readable code; `cause` holds the underlying SQLite error. */
export class StoreError extends Error {
  override name = "StoreError";
  readonly code: StoreErrorCode;

  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Milliseconds to wait for a lock held by another connection before failing (SQLITE_BUSY). */
const BUSY_TIMEOUT_MS = 5000;

type Synchronous = "FULL" | "NORMAL";

class SqliteStore implements Store {
  readonly #path: string;
  readonly #db: DatabaseSync;
  readonly #get: StatementSync;
  readonly #put: StatementSync;
  readonly #delete: StatementSync;
  readonly #scan: StatementSync;
  readonly #scanAll: StatementSync;
  #synchronous: Synchronous;
  #closed = false;
  /** Started by the first writeAsync that goes to it. */
  #diskThread: DiskThread | undefined;
  readonly #inlineCommitMsMax: number;
  /** writeAsync commits on this thread while commits are quick (#observe), else on the disk thread. */
  #inline = true;
  /** Moving average of the last commits' milliseconds (on either thread); 0 before the first. */
  #commitMs = 0;

  constructor(path: string, db: DatabaseSync, inlineCommitMsMax: number) {
    this.#path = path;
    this.#db = db;
    this.#inlineCommitMsMax = inlineCommitMsMax;
    this.#get = db.prepare("SELECT value FROM kv WHERE key = ?");
    this.#put = db.prepare(PUT_SQL);
    this.#delete = db.prepare(DELETE_SQL);
    // A range scan from the prefix on, stopped by the caller at the first key without the prefix.
    // (A fixed upper bound such as prefix + "\uffff" would miss keys whose next character is above
    // U+FFFF: SQLite compares TEXT as UTF-8 bytes, and those encode as 0xF0… > 0xEF 0xBF 0xBF.)
    this.#scan = db.prepare("SELECT key, value FROM kv WHERE key >= ? ORDER BY key LIMIT ?");
    this.#scanAll = db.prepare("SELECT key, value FROM kv ORDER BY key LIMIT ?");
    this.#synchronous = "NORMAL";
    db.exec("PRAGMA synchronous = NORMAL");
  }

  get(key: string): Uint8Array | undefined {
    this.#assertOpen("get");
    const row = this.#get.get(key);
    if (row === undefined) return undefined;
    return asBytes(row["value"], key);
  }

  scan(prefix: string, limit?: number): Array<[string, Uint8Array]> {
    this.#assertOpen("scan");
    const bound = limit ?? Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(bound) || bound < 0) {
      throw new StoreError("STORE_BAD_ARGUMENT", `scan: limit must be a non-negative integer, got ${String(limit)}`);
    }
    const out: Array<[string, Uint8Array]> = [];
    if (bound === 0) return out;
    const rows = prefix === "" ? this.#scanAll.iterate(bound) : this.#scan.iterate(prefix, bound);
    for (const row of rows) {
      const key = row["key"];
      if (typeof key !== "string" || !key.startsWith(prefix)) break;
      out.push([key, asBytes(row["value"], key)]);
    }
    return out;
  }

  write(batch: readonly StoreWrite[], options: { durable: boolean }): void {
    this.#assertOpen("write");
    checkBatch(batch);
    if (batch.length === 0) return;
    const wanted: Synchronous = options.durable ? "FULL" : "NORMAL";
    if (wanted !== this.#synchronous) {
      this.#db.exec(`PRAGMA synchronous = ${wanted}`);
      this.#synchronous = wanted;
    }
    commitBatch(this.#db, this.#put, this.#delete, batch, this.#path);
  }

  writeAsync(batch: readonly StoreWrite[], done: (error?: Error, synced?: boolean) => void): void {
    this.#assertOpen("writeAsync");
    checkBatch(batch);
    if (this.#path === ":memory:") {
      // An in-memory database cannot be shared with a thread: write here, answer in a later turn.
      let failure: Error | undefined;
      try {
        this.write(batch, { durable: true });
      } catch (error) {
        failure = error as Error;
      }
      setImmediate(() => done(failure));
      return;
    }
    // A quick commit (a fast disk) costs less than the two thread hand-overs of the disk thread, which
    // on a busy machine each wait for a core: commit here and answer at once. Once commits are slow
    // (an SD card, a phone, a saturated disk) they go to the disk thread, so the event loop keeps
    // serving packets and requests during the fsync; back here when they are quick again. Never
    // while the thread holds batches: they become durable in the order given.
    if (this.#inline && (this.#diskThread === undefined || this.#diskThread.idle)) {
      const started = performance.now();
      let failure: Error | undefined;
      try {
        this.write(batch, { durable: true });
      } catch (error) {
        failure = error as Error;
      }
      this.#observe(performance.now() - started);
      done(failure, true);
      return;
    }
    this.#diskThread ??= new DiskThread(this.#path, (ms) => this.#observe(ms));
    this.#diskThread.write(batch, done);
  }

  #observe(ms: number): void {
    this.#commitMs = this.#commitMs === 0 ? ms : this.#commitMs + DISK_THREAD_DEFAULTS.commitMsWeight * (ms - this.#commitMs);
    if (this.#inline && this.#commitMs > this.#inlineCommitMsMax) this.#inline = false;
    else if (!this.#inline && this.#commitMs < this.#inlineCommitMsMax / 2) this.#inline = true;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#diskThread?.close();
    this.#db.close();
  }

  diskThreadStats(): DiskThreadStats {
    return this.#diskThread?.stats ?? { batches: 0, commits: 0 };
  }

  /** Whether writeAsync commits on the calling thread now, and the commits' moving average. */
  get commitMode(): { readonly inline: boolean; readonly commitMs: number } {
    return { inline: this.#inline, commitMs: this.#commitMs };
  }

  #assertOpen(operation: string): void {
    if (this.#closed) throw new StoreError("STORE_CLOSED", `${operation}: store ${this.#path} is closed`);
  }
}

export interface StoreOptions {
  /**
   * writeAsync commits on the calling thread while the moving average of commits stays at or under
   * this many milliseconds, on the disk thread above it (back under half of it).
   * 0: always the disk thread (after a first commit here); Infinity: never.
   */
  readonly inlineCommitMsMax?: number;
}

/**
 * Opens (creating if needed, with its parent directory) the store at `path`. Throws StoreError
 * STORE_OPEN_FAILED when the file cannot be opened or the file system cannot hold a WAL.
 */
export function openStore(path: string, options: StoreOptions = {}): Store {
  const inMemory = path === ":memory:";
  let db: DatabaseSync;
  try {
    if (!inMemory) mkdirSync(dirname(path), { recursive: true });
    db = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS });
  } catch (error) {
    throw new StoreError("STORE_OPEN_FAILED", `open: cannot open store ${path}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  try {
    const mode = db.prepare("PRAGMA journal_mode = WAL").get()?.["journal_mode"];
    if (!inMemory && mode !== "wal") {
      throw new Error(`the file system refused WAL mode (journal_mode is ${String(mode)})`);
    }
    // macOS only: fsync() does not flush the drive's cache there, F_FULLFSYNC does. A no-op elsewhere.
    db.exec("PRAGMA fullfsync = ON");
    db.exec("PRAGMA checkpoint_fullfsync = ON");
    db.exec("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID");
    return new SqliteStore(path, db, options.inlineCommitMsMax ?? DISK_THREAD_DEFAULTS.inlineCommitMsMax);
  } catch (error) {
    db.close();
    if (error instanceof StoreError) throw error;
    throw new StoreError("STORE_OPEN_FAILED", `open: cannot prepare store ${path}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

function checkBatch(batch: readonly StoreWrite[]): void {
  for (const { key, value } of batch) {
    if (typeof key !== "string") throw new StoreError("STORE_BAD_ARGUMENT", `write: key ${String(key)} is not a string`);
    if (value !== undefined && !(value instanceof Uint8Array)) {
      throw new StoreError("STORE_BAD_ARGUMENT", `write: value for key ${JSON.stringify(key.slice(0, 80))} is not a Uint8Array`);
    }
    if (value !== undefined && value.length > LIMITS.storeValueBytesMax) {
      throw new StoreError(
        "STORE_VALUE_TOO_LARGE",
        `write: value for key ${JSON.stringify(key.slice(0, 80))} is ${value.length} bytes, over LIMITS.storeValueBytesMax (${LIMITS.storeValueBytesMax})`,
      );
    }
  }
}

/** One batch as one transaction: all of it or none. Shared by the store and its disk thread. */
export function commitBatch(db: DatabaseSync, put: StatementSync, remove: StatementSync, batch: readonly StoreWrite[], path: string): void {
  try {
    db.exec("BEGIN IMMEDIATE");
    for (const { key, value } of batch) {
      if (value === undefined) remove.run(key);
      else put.run(key, value);
    }
    db.exec("COMMIT");
  } catch (error) {
    // SQLite may already have rolled back (e.g. on SQLITE_FULL); only roll back an open one.
    if (db.isTransaction) {
      try {
        db.exec("ROLLBACK");
      } catch {
        // The original error is the one worth reporting.
      }
    }
    throw new StoreError(
      "STORE_WRITE_FAILED",
      `write: batch of ${batch.length} to ${path} failed: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}

export const PUT_SQL = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
export const DELETE_SQL = "DELETE FROM kv WHERE key = ?";

/** Bounds of the disk thread's group commit (store-worker.ts) and of writeAsync's choice of thread. */
export const DISK_THREAD_DEFAULTS = {
  /** writeAsync commits on the calling thread while commits average at most this many ms (StoreOptions). */
  inlineCommitMsMax: 2,
  /** Weight of the newest commit in the moving average. */
  commitMsWeight: 0.2,
  /** Batches already queued that join one commit, at most. */
  mergeBatchesMax: 1_024,
  /** Stop adding queued batches to a commit once it holds this many bytes of keys and values. */
  mergeBytesMax: 32 * 1024 * 1024,
} as const;

/** What the event loop sends the disk thread: a batch to commit, or close. */
export interface DiskThreadRequest {
  readonly id?: number;
  readonly batch?: Array<[string, Uint8Array | null]>;
  readonly close?: boolean;
}

/** The disk thread's answer: these batches (in the order sent) are durable, or failed together. */
export interface DiskThreadReply {
  readonly ids: readonly number[];
  readonly error?: string;
  /** Milliseconds the commit took. */
  readonly ms: number;
}

/** What a store's disk thread did so far (for tests and benchmarks); zeros before its first write. */
export interface DiskThreadStats {
  /** Batches handed to writeAsync. */
  readonly batches: number;
  /** Commits (transactions, each one fsync) that made them durable. */
  readonly commits: number;
}

/** The disk thread's counters of a store from openStore (zeros for another Store). */
export function diskThreadStats(store: Store): DiskThreadStats {
  return store instanceof SqliteStore ? store.diskThreadStats() : { batches: 0, commits: 0 };
}

/**
 * The disk thread behind writeAsync: a worker with its own connection to the same database file
 * (WAL mode lets it write while this thread reads), synchronous=FULL, taking batches in order;
 * those that queued up during an fsync are committed together (store-worker.ts: group commit).
 * The fsync blocks that thread, not the event loop, so the node keeps handling packets and
 * requests while its log becomes durable (docs/adr/007-raft.md).
 */
class DiskThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, (error?: Error, synced?: boolean) => void>();
  #next = 0;
  #commits = 0;

  constructor(path: string, onCommit: (ms: number) => void) {
    const script = new URL(import.meta.url.endsWith(".ts") ? "./store-worker.ts" : "./store-worker.js", import.meta.url);
    this.#worker = new Worker(script, { workerData: { path, busyTimeoutMs: BUSY_TIMEOUT_MS } });
    this.#worker.unref();
    this.#worker.on("message", (reply: DiskThreadReply) => {
      this.#commits++;
      onCommit(reply.ms);
      for (const [i, id] of reply.ids.entries()) {
        const done = this.#pending.get(id);
        if (done === undefined) continue;
        this.#pending.delete(id);
        done(reply.error === undefined ? undefined : new StoreError("STORE_WRITE_FAILED", reply.error), i === reply.ids.length - 1);
      }
    });
    this.#worker.on("error", (error) => this.#failAll(error));
    this.#worker.on("exit", (code) => {
      if (this.#pending.size > 0) this.#failAll(new StoreError("STORE_WRITE_FAILED", `the disk thread exited with code ${code}`));
    });
  }

  write(batch: readonly StoreWrite[], done: (error?: Error, synced?: boolean) => void): void {
    const id = ++this.#next;
    this.#pending.set(id, done);
    const request: DiskThreadRequest = { id, batch: batch.map(({ key, value }) => [key, value ?? null]) };
    this.#worker.postMessage(request);
  }

  get stats(): DiskThreadStats {
    return { batches: this.#next, commits: this.#commits };
  }

  /** No batch handed over is still unanswered. */
  get idle(): boolean {
    return this.#pending.size === 0;
  }

  /** Batches already handed over are finished by the thread before it closes its connection. */
  close(): void {
    this.#worker.postMessage({ close: true });
  }

  #failAll(error: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const done of pending) done(error);
  }
}

function asBytes(value: unknown, key: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  // Only this module writes the table, and only BLOBs: anything else is a corrupt or foreign file.
  throw new StoreError("STORE_CORRUPT", `store: value for key ${JSON.stringify(key.slice(0, 80))} is not a BLOB`);
}
