// The store's disk thread (store.ts, DiskThread): its own SQLite connection to the node's database,
// synchronous=FULL, committing the batches it is sent one by one, in order, and answering each once
// it is durable. Nothing else runs here.
import { DatabaseSync } from "node:sqlite";
import { parentPort, workerData } from "node:worker_threads";
import { commitBatch, DELETE_SQL, PUT_SQL } from "./store.ts";

const { path, busyTimeoutMs } = workerData as { path: string; busyTimeoutMs: number };
const db = new DatabaseSync(path, { timeout: busyTimeoutMs });
db.exec("PRAGMA journal_mode = WAL");
db.exec("PRAGMA synchronous = FULL");
db.exec("PRAGMA fullfsync = ON");
const put = db.prepare(PUT_SQL);
const remove = db.prepare(DELETE_SQL);

parentPort?.on("message", (message: { id?: number; batch?: Array<[string, Uint8Array | null]>; close?: boolean }) => {
  if (message.close === true) {
    db.close();
    parentPort?.close();
    return;
  }
  const { id, batch } = message;
  if (id === undefined || batch === undefined) return;
  try {
    commitBatch(db, put, remove, batch.map(([key, value]) => ({ key, value: value ?? undefined })), path);
    parentPort?.postMessage({ id });
  } catch (error) {
    parentPort?.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
});
