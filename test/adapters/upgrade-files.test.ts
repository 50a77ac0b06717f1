// The supervisor's files in DATA/bundles/ (src/adapters/upgrade-files.ts, docs/protocols/upgrade.md):
// a trial records previous/pending/current, a confirm keeps the new code, a rollback restores the
// previous one (or none: the supervisor's own code) and records the failure; the failed list is
// bounded and skips damaged lines; nothing but a bundle address is believed from current/previous.
import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UpgradeFiles } from "../../src/adapters/upgrade-files.ts";
import { LIMITS } from "../../src/core/util/limits.ts";

const A = "a".repeat(64), B = "b".repeat(64), C = "c".repeat(64);

test("upgrade files: trial, confirm, rollback to a bundle and to the supervisor's own code; failed is bounded", (t) => {
  const data = mkdtempSync(join(tmpdir(), "pk-upgrade-files-"));
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const files = new UpgradeFiles(data);
  assert.equal(files.current(), undefined);
  assert.equal(files.pending(), undefined);

  // From the supervisor's own code into A, kept.
  files.beginTrial({ id: A, version: 1, mode: "FULL", atMs: 10 });
  assert.equal(files.current(), A);
  assert.equal(files.previous(), undefined);
  assert.deepEqual(files.pending(), { id: A, version: 1, mode: "FULL", atMs: 10 });
  files.confirm();
  assert.equal(files.pending(), undefined);
  assert.equal(files.current(), A);

  // From A into B, rolled back to A.
  files.beginTrial({ id: B, version: 2, mode: "FULL", atMs: 20 });
  assert.equal(files.previous(), A);
  files.rollBack(B, "the new code exited (exit code 1)", 30);
  assert.equal(files.current(), A);
  assert.equal(files.pending(), undefined);
  assert.deepEqual(files.failed(), [{ id: B, reason: "the new code exited (exit code 1)", atMs: 30 }]);

  // A rollback to the supervisor's own code removes current.
  const fresh = new UpgradeFiles(mkdtempSync(join(tmpdir(), "pk-upgrade-files-")));
  t.after(() => rmSync(join(fresh.dir, ".."), { recursive: true, force: true }));
  fresh.beginTrial({ id: C, version: 3, mode: "REDUCED", atMs: 1 });
  fresh.rollBack(C, "not healthy within 90 s of its start", 2);
  assert.equal(fresh.current(), undefined);
  assert.equal(existsSync(join(fresh.dir, "current")), false);

  // No temporary files left behind.
  assert.deepEqual(readdirSync(files.dir).filter((n) => n.includes(".tmp")), []);

  // Damaged lines are skipped; the list keeps the newest failedMax; a reason is cut.
  appendFileSync(join(files.dir, "failed"), "{not json\n{\"id\":\"zz\",\"reason\":\"x\",\"atMs\":1}\n");
  assert.equal(files.failed().length, 1);
  for (let i = 0; i < LIMITS.evolve.upgrade.failedMax + 5; i++) files.recordFailed(i.toString(16).padStart(64, "0"), "x".repeat(1_000), i);
  const failed = files.failed();
  assert.equal(failed.length, LIMITS.evolve.upgrade.failedMax);
  assert.equal(failed.at(-1)?.atMs, LIMITS.evolve.upgrade.failedMax + 4);
  assert.equal(failed[0]?.reason.length, LIMITS.evolve.upgrade.reasonCharsMax);

  // current holds an address or nothing: anything else is not believed.
  writeFileSync(join(files.dir, "current"), "../../etc\n");
  assert.equal(files.current(), undefined);
  writeFileSync(join(files.dir, "pending"), "{\"id\":\"../x\",\"version\":1,\"mode\":\"FULL\",\"atMs\":1}\n");
  assert.equal(files.pending(), undefined);
});
