// `pk up` / `pk down` with real node processes on loopback (DESIGN.md §8). Acceptance 1: a 3-node
// cluster converges (every node lists 3 alive members) within 5 s. Acceptance 2: a node killed
// with SIGKILL and restarted from its cluster.json argv comes back with the same id and is listed
// by the others. Every test stops its processes and removes its directory, even when it fails.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { alive, clusterDir, pk, readCluster, restartNode, startCluster, status, waitConverged, type Status } from "./cluster-helpers.ts";

test("pk up --detach --nodes 3: every node lists 3 alive members within 5 s (acceptance 1)", async (t) => {
  const dir = clusterDir(t);
  const started = performance.now();
  const up = await pk(["up", "--detach", "--nodes", "3", "--dir", dir]);
  const upMs = performance.now() - started;
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stdout, /started 3 nodes/);
  const cluster = readCluster(dir);
  assert.equal(statSync(join(dir, "cluster.json")).mode & 0o777, 0o600);
  assert.equal(cluster.nodes.length, 3);
  assert.ok(cluster.token.length >= 32);
  for (const node of cluster.nodes) {
    assert.ok(node.pid !== null && alive(node.pid));
    assert.equal(node.argv[0], process.execPath);
    assert.match(node.api, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(node.listen, /^127\.0\.0\.1:\d+$/);
  }
  const statuses = await waitConverged(cluster.nodes.map((node) => node.api), 3, 5_000);
  const convergedMs = performance.now() - started;
  const ids = cluster.nodes.map((node) => node.id).sort();
  for (const s of statuses) {
    assert.deepEqual(s.members.map((m) => m.id).sort(), ids);
    assert.equal(s.mode, "FULL");
  }
  t.diagnostic(`acceptance 1: pk up returned after ${upMs.toFixed(0)} ms; all 3 nodes list 3 alive members ${convergedMs.toFixed(0)} ms after pk up started`);
  console.log(JSON.stringify({ acceptance: 1, upMs: Math.round(upMs), convergedMs: Math.round(convergedMs) }));
  assert.ok(convergedMs <= 5_000, `converged in ${convergedMs} ms`);

  // Running up again on a live cluster says so and leaves it alone.
  const again = await pk(["up", "--detach", "--dir", dir]);
  assert.equal(again.code, 0);
  assert.match(again.stdout, /already running .* 3 of 3 nodes alive/);
  assert.deepEqual(readCluster(dir).nodes.map((n) => n.pid), cluster.nodes.map((n) => n.pid));

  // The shell works non-interactively against the first node.
  const shell = await pk(["shell", "--dir", dir, "-c", "nodes"]);
  assert.equal(shell.code, 0, shell.stderr);
  for (const id of ids) assert.match(shell.stdout, new RegExp(`^${id} `, "m"));
  const bad = await pk(["shell", "--dir", dir, "-c", "frob"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /unknown command "frob"/);
});

test("pk up --nodes 5 then pk down leaves no process behind", async (t) => {
  const dir = clusterDir(t);
  const up = await pk(["up", "--detach", "--nodes", "5", "--dir", dir]);
  assert.equal(up.code, 0, up.stderr);
  const pids = readCluster(dir).nodes.map((node) => node.pid);
  assert.equal(pids.length, 5);
  for (const pid of pids) assert.ok(pid !== null && alive(pid));

  const down = await pk(["down", "--dir", dir]);
  assert.equal(down.code, 0, down.stderr);
  assert.match(down.stdout, /stopped 5 nodes/);
  for (const pid of pids) assert.equal(alive(pid as number), false, `pid ${pid} is gone (ESRCH)`);
  const after = readCluster(dir);
  assert.ok(after.nodes.every((node) => node.pid === null), "pids are removed from cluster.json");
  for (const node of after.nodes) assert.match(readFileSync(join(node.data, "node.log"), "utf8"), /SIGTERM, stopping/);

  const again = await pk(["down", "--dir", dir]);
  assert.equal(again.code, 0, "down is idempotent");
  assert.match(again.stdout, /no node .* was running/);
});

test("a node killed with SIGKILL restarts from its cluster.json argv with the same id (acceptance 2)", async (t) => {
  const restarted: number[] = [];
  const { dir, cluster, apis } = await startCluster(t, 3, restarted);

  const victim = cluster.nodes[1];
  assert.ok(victim !== undefined && victim.pid !== null);
  process.kill(victim.pid, "SIGKILL");
  const deadline = Date.now() + 5_000;
  while (alive(victim.pid)) {
    assert.ok(Date.now() < deadline, "the killed node is gone");
    await sleep(20);
  }
  assert.equal(await status(victim.api), undefined, "its API is down");

  // Restart exactly as recorded, detached, its output appended to its log.
  const child = { pid: restartNode(victim) };
  restarted.push(child.pid);
  const started = performance.now();

  // Same id, and the others see its new incarnation (it really rejoined, not just remembered).
  const statuses = await waitConverged(apis, 3, 10_000, (s) => s.members.some((m) => m.id === victim.id && m.incarnation >= 1));
  t.diagnostic(`acceptance 2: restarted node listed with a new incarnation by all after ${(performance.now() - started).toFixed(0)} ms`);
  for (const s of statuses) {
    const entry: Status["members"][number] | undefined = s.members.find((m) => m.id === victim.id);
    assert.ok(entry !== undefined);
    assert.equal(entry.state, "alive");
    assert.equal(entry.addr, victim.listen);
  }
  assert.equal(statuses[1]?.id, victim.id, "the restarted node has the same id");

  // Record the new pid as an operator would; pk down then stops all three.
  writeFileSync(join(dir, "cluster.json"), JSON.stringify({ ...cluster, nodes: cluster.nodes.map((n) => (n.id === victim.id ? { ...n, pid: child.pid } : n)) }), { mode: 0o600 });
  const down = await pk(["down", "--dir", dir]);
  assert.equal(down.code, 0, down.stderr);
  for (const pid of [child.pid, ...cluster.nodes.map((n) => n.pid as number)]) assert.equal(alive(pid), false, `pid ${pid} is gone`);
});
