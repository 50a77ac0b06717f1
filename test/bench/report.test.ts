// bench/report.ts on real benchmark output: runs of `npm run bench -- raft` (p-kernel and etcd)
// and `npm run bench -- swim` (p-kernel and serf) recorded in test/fixtures/bench/, as bench/run.ts
// saves them, become one self-contained HTML page with the peers side by side.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findComparisons, readSavedRun, renderReport, run } from "../../bench/report.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/bench/", import.meta.url));

test("the recorded raft and swim runs give p-kernel side by side with etcd and serf", () => {
  const raft = readSavedRun(join(FIXTURES, "raft.json"));
  const swim = readSavedRun(join(FIXTURES, "swim.json"));
  assert.ok(typeof raft !== "string" && typeof swim !== "string");
  const raftComparisons = findComparisons(raft.result);
  const levels = raftComparisons.find((c) => c.path === "levels");
  assert.ok(levels !== undefined, JSON.stringify(raftComparisons.map((c) => c.path)));
  assert.equal(levels.peer, "etcd");
  assert.equal(levels.kind, "series");
  assert.equal(levels.xName, "clients");
  assert.ok(levels.points.length >= 2);
  assert.ok(levels.measures.includes("opsPerSec") && levels.measures.includes("p99Ms"), levels.measures.join(", "));
  const swimComparisons = findComparisons(swim.result);
  assert.ok(swimComparisons.some((c) => c.peer === "serf" && c.selfKey === "pkernel"), JSON.stringify(swimComparisons.map((c) => [c.path, c.peer])));
});

test("npm run bench -- report writes one self-contained page with an SVG chart per measure", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pk-bench-report-"));
  try {
    copyFileSync(join(FIXTURES, "raft.json"), join(dir, "raft.json"));
    copyFileSync(join(FIXTURES, "swim.json"), join(dir, "swim.json"));
    writeFileSync(join(dir, "broken.json"), "{ not json");
    const out = join(dir, "page", "report.html");
    const summary = await run(["--in", dir, "--out", out]) as { html: string; benchmarks: Array<{ bench: string; comparisons: string[] }>; skipped: string[] };
    assert.equal(summary.html, out);
    assert.deepEqual(summary.benchmarks.map((b) => b.bench), ["raft", "swim"]);
    assert.equal(summary.skipped.length, 1);
    assert.match(summary.skipped[0]!, /broken\.json: not JSON/);
    const html = readFileSync(out, "utf8");
    assert.match(html, /^<!doctype html>/);
    assert.ok(!/\b(src|href)="(https?:)?\/\//.test(html) && !/<script|<link|@import|url\(/i.test(html), "no external resource, no script");
    const charts = html.match(/<svg /g)?.length ?? 0;
    assert.ok(charts >= 4, `${charts} charts`);
    assert.match(html, /p-kernel and etcd — levels/);
    assert.match(html, /p-kernel and serf/);
    assert.match(html, /<polyline fill="none" stroke="#2563eb"/);
    assert.match(html, /<polyline fill="none" stroke="#ea580c"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the page escapes everything that comes from the files", () => {
  const hostile = "<script>alert(1)</script>";
  const html = renderReport([{ bench: hostile, args: [hostile], savedAt: hostile, result: { [hostile]: 1, levels: [{ clients: hostile, pk: { [hostile]: 2 }, etcd: { [hostile]: 3 } }] } }], [hostile], "now");
  assert.ok(!html.includes("<script>"));
  assert.ok(html.includes("&lt;script&gt;alert(1)&lt;/script&gt;"));
});
