// The store's disk thread (store.ts, DiskThread): its own SQLite connection to the node's database,
// synchronous=FULL, committing the batches it is sent in order and answering each once it is
// durable. Nothing else runs here.
//
// Group commit that adapts to the disk: the batches that arrived while the last commit was being
// fsynced are committed together, as one transaction with one fsync, and answered together. On a
// fast disk each batch gets its own commit; the slower the fsync, the more each one carries, with no
// timer and no tuning. The merged transaction applies whole or not at all, which keeps the Store's
// contract (every acknowledged batch, and a prefix of the others, survives a crash).
import { performance } from "node:perf_hooks";
import { DatabaseSync } from "node:sqlite";
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import type { StoreWrite } from "../node/ports.ts";
import { commitBatch, DELETE_SQL, DISK_THREAD_DEFAULTS, PUT_SQL, type DiskThreadReply, type DiskThreadRequest } from "./store.ts";

const { path, busyTimeoutMs } = workerData as { path: string; busyTimeoutMs: number };
const db = new DatabaseSync(path, { timeout: busyTimeoutMs });
db.exec("PRAGMA journal_mode = WAL");
db.exec("PRAGMA synchronous = FULL");
db.exec("PRAGMA fullfsync = ON");
const put = db.prepare(PUT_SQL);
const remove = db.prepare(DELETE_SQL);
const port = parentPort;

port?.on("message", (first: DiskThreadRequest) => {
  if (port === null) return;
  const ids: number[] = [];
  const writes: StoreWrite[] = [];
  let bytes = 0;
  let close = false;
  let message: DiskThreadRequest | undefined = first;
  // What is already queued joins this commit, up to the bounds; the rest waits for the next one.
  while (message !== undefined) {
    if (message.close === true) {
      close = true;
      break;
    }
    if (message.id !== undefined && message.batch !== undefined) {
      ids.push(message.id);
      for (const [key, value] of message.batch) {
        writes.push({ key, value: value ?? undefined });
        bytes += key.length + (value?.length ?? 0);
      }
    }
    if (ids.length >= DISK_THREAD_DEFAULTS.mergeBatchesMax || bytes >= DISK_THREAD_DEFAULTS.mergeBytesMax) break;
    message = receiveMessageOnPort(port)?.message as DiskThreadRequest | undefined;
  }
  if (ids.length > 0) {
    let reply: DiskThreadReply;
    const started = performance.now();
    try {
      commitBatch(db, put, remove, writes, path);
      reply = { ids, ms: performance.now() - started };
    } catch (error) {
      reply = { ids, error: error instanceof Error ? error.message : String(error), ms: performance.now() - started };
    }
    port.postMessage(reply);
  }
  if (close) {
    db.close();
    port.close();
  }
});
