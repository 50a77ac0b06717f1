// Acceptance: "kill -9 of a node in the middle of durable writes loses no write it acknowledged as
// durable". A child process writes durable batches in a loop and acknowledges each on stdout after
// write() returns; we SIGKILL it mid-stream, reopen the database and check every acknowledged batch
// is there, whole. Five kills in a row on one database, each run continuing where the last stopped;
// then the same through writeAsync, whose disk thread commits the batches queued during an fsync
// together (group commit), with many batches in flight at the kill.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "../../src/adapters/store.ts";
import { keyOf, valueOf } from "./fixtures/store-values.ts";

const WRITER = join(import.meta.dirname, "fixtures", "store-writer.ts");
const ASYNC_WRITER = join(import.meta.dirname, "fixtures", "store-async-writer.ts");
const KILLS = 5;
const ACKS_BEFORE_KILL_MIN = 200;
const RUN_TIMEOUT_MS = 20_000;

interface Run {
  readonly firstAck: number;
  readonly lastAck: number;
  readonly acks: number;
}

/** Starts the writer, waits for `acksWanted` acknowledgements, SIGKILLs it, resolves once it died. */
function runAndKill(writer: string, path: string, acksWanted: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writer, path], { stdio: ["ignore", "pipe", "pipe"] });
    let pending = "";
    let stderr = "";
    let firstAck = -1;
    let lastAck = -1;
    let acks = 0;
    let killed = false;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`writer made ${acks} acks in ${RUN_TIMEOUT_MS} ms; stderr: ${stderr}`));
    }, RUN_TIMEOUT_MS);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        const match = /^ack (\d+)$/.exec(line);
        if (match === null) continue;
        const n = Number(match[1]);
        if (firstAck < 0) firstAck = n;
        else if (n !== lastAck + 1) reject(new Error(`acks out of order: ${lastAck} then ${n}`));
        lastAck = n;
        acks++;
        if (!killed && acks >= acksWanted) {
          killed = true;
          child.kill("SIGKILL");
        }
      }
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      if (stderr.length < 10_000) stderr += chunk;
    });
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (signal !== "SIGKILL") reject(new Error(`writer exited by itself (code ${code}, signal ${signal}); stderr: ${stderr}`));
      else resolve({ firstAck, lastAck, acks });
    });
  });
}

async function killAndCheck(t: { after: (fn: () => void) => void; diagnostic: (message: string) => void }, writer: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pk-store-crash-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "state.db");
  const decoder = new TextDecoder();
  let acknowledged = 0; // every batch up to this one was acknowledged durable
  let unacknowledged = 0;

  for (let kill = 0; kill < KILLS; kill++) {
    const run = await runAndKill(writer, path, ACKS_BEFORE_KILL_MIN + Math.floor(Math.random() * 150));
    assert.ok(run.acks >= ACKS_BEFORE_KILL_MIN, `run ${kill}: only ${run.acks} acks`);
    // Each run continues from the store's last batch, which is at least the last acknowledged one.
    assert.ok(run.firstAck > acknowledged, `run ${kill}: restarted at ${run.firstAck}, after ack ${acknowledged}`);
    acknowledged = run.lastAck;

    const store = openStore(path);
    try {
      const lastBytes = store.get("meta/last");
      assert.ok(lastBytes !== undefined, `run ${kill}: meta/last missing`);
      const last = Number(decoder.decode(lastBytes));
      assert.ok(last >= acknowledged, `run ${kill}: store ends at batch ${last}, but ${acknowledged} was acknowledged`);
      unacknowledged += last - acknowledged;
      for (let n = 1; n <= last; n++) {
        const value = store.get(keyOf(n));
        assert.ok(value !== undefined, `run ${kill}: batch ${n} lost (acknowledged up to ${acknowledged}, store at ${last})`);
        assert.deepEqual(value, valueOf(n), `run ${kill}: batch ${n} has the wrong value`);
      }
      // Atomic batches: nothing of the batch after meta/last's may exist.
      assert.equal(store.get(keyOf(last + 1)), undefined, `run ${kill}: half of batch ${last + 1} survived`);
      assert.equal(store.scan("k/").length, last);
    } finally {
      store.close();
    }
  }
  t.diagnostic(`${KILLS} kills, ${acknowledged} acknowledged batches kept, ${unacknowledged} unacknowledged batches also survived`);
}

test("store: kill -9 in the middle of durable writes loses no acknowledged write", { timeout: 120_000 }, async (t) => {
  await killAndCheck(t, WRITER);
});

test("store: kill -9 in the middle of writeAsync's group commits loses no acknowledged write and keeps a prefix", { timeout: 120_000 }, async (t) => {
  await killAndCheck(t, ASYNC_WRITER);
});
