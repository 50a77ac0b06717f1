// The dashboard's server side against a real node run in process (real transport, store and
// sockets): GET /v1/dashboard (credential, shape, bounded lists) and the static files (the
// allow-list: the page, its stylesheet and icon, and uPlot from node_modules; nothing else of web/
// or node_modules). The page itself is tested in a browser (test/browser/dashboard.slow.test.ts).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { STATIC_PATHS } from "../../src/adapters/http.ts";
import { DASHBOARD_DEFAULTS } from "../../src/node/dashboard-routes.ts";
import { runNode, type RunningNode } from "../../src/node/run.ts";

let dir = "";
let node: RunningNode | undefined;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "pk-dashboard-"));
  node = await runNode({ data: join(dir, "a"), name: "alpha", env: {} });
});

after(async () => {
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function api(): RunningNode {
  assert.ok(node !== undefined, "node started");
  return node;
}

async function get(path: string, auth = true): Promise<Response> {
  return await fetch(new URL(path, api().api), { headers: auth ? { Authorization: `Bearer ${api().token}` } : {}, signal: AbortSignal.timeout(10_000) });
}

interface Snapshot {
  id: string;
  raft: { term: number; leader: string | null; commit: number; kv: { keys: number; bytes: number; first: Array<{ key: string; revision: number; bytes: number }> } };
  topics: { items: Array<{ name: string; keys: number }>; total: number };
  sharedFolder: unknown;
  brain: { model: { version: number; kind: string }; inferences: Record<string, number>; rounds: { items: unknown[]; total: number }; ga: { enabled: boolean } };
  minds: { items: unknown[]; total: number };
  memory: { memories: number };
  programs: { items: unknown[]; total: number };
  rollouts: { items: unknown[]; total: number; model: unknown };
  evolve: { log: unknown[]; pending: { items: unknown[]; total: number } };
}

test("GET /v1/dashboard needs a credential, takes only GET, and answers every part of the snapshot", async () => {
  assert.equal((await get("/v1/dashboard", false)).status, 401);
  const post = await fetch(new URL("/v1/dashboard", api().api), { method: "POST", headers: { Authorization: `Bearer ${api().token}` }, signal: AbortSignal.timeout(10_000) });
  assert.equal(post.status, 405);
  const reply = await get("/v1/dashboard");
  assert.equal(reply.status, 200);
  assert.equal(reply.headers.get("cache-control"), "no-store");
  const s = await reply.json() as Snapshot;
  assert.equal(s.id, api().id);
  // No part failed on a fresh node: each is its data, not {error}.
  for (const [name, part] of Object.entries(s)) {
    if (typeof part === "object" && part !== null) assert.ok(!("error" in part), `${name}: ${JSON.stringify(part)}`);
  }
  assert.ok(Number.isInteger(s.raft.term) && Number.isInteger(s.raft.commit) && (s.raft.leader === null || s.raft.leader === api().id), JSON.stringify(s.raft));
  assert.equal(typeof s.brain.model.version, "number");
  assert.deepEqual(Object.keys(s.brain.inferences).sort(), ["dkva", "local", "moe", "pipeline", "remote", "tensor"]);
  assert.deepEqual(s.programs, { items: [], total: 0 });
  assert.deepEqual(s.rollouts.items, []);
  assert.ok(Array.isArray(s.evolve.log));
});

test("GET /v1/dashboard: the KV keys listed keep to their bound and the total is told", async () => {
  const count = DASHBOARD_DEFAULTS.kvKeysMax + 5;
  for (let i = 0; i < count; i++) {
    const put = await fetch(new URL(`/v1/kv/dash/${String(i).padStart(3, "0")}`, api().api), { method: "PUT", body: `value ${i}`, headers: { Authorization: `Bearer ${api().token}` }, signal: AbortSignal.timeout(10_000) });
    assert.equal(put.status, 200, await put.text());
  }
  const s = await (await get("/v1/dashboard")).json() as Snapshot;
  assert.equal(s.raft.kv.keys, count);
  assert.equal(s.raft.kv.first.length, DASHBOARD_DEFAULTS.kvKeysMax);
  assert.deepEqual(s.raft.kv.first[0], { key: "dash/000", revision: s.raft.kv.first[0]?.revision, bytes: "value 0".length });
  assert.ok(s.raft.commit >= count, `commit ${s.raft.commit}`);
});

test("the static files: the page's own and uPlot's, with the page's headers; nothing else of web/ or node_modules", async () => {
  const types: Record<string, RegExp> = {
    "/": /^text\/html/, "/app.js": /^text\/javascript/, "/style.css": /^text\/css/, "/favicon.svg": /^image\/svg\+xml/,
    "/vendor/uplot.js": /^text\/javascript/, "/vendor/uplot.css": /^text\/css/,
  };
  assert.deepEqual([...STATIC_PATHS].sort(), Object.keys(types).sort());
  for (const [path, type] of Object.entries(types)) {
    // Open without a credential on loopback, like the page itself.
    const reply = await get(path, false);
    assert.equal(reply.status, 200, path);
    assert.match(String(reply.headers.get("content-type")), type, path);
    assert.equal(reply.headers.get("x-content-type-options"), "nosniff", path);
    assert.match(String(reply.headers.get("content-security-policy")), /script-src 'self'( 'sha256-[^']+')*; /, path);
    assert.ok((await reply.arrayBuffer()).byteLength > 0, path);
  }
  const page = await (await get("/", false)).text();
  for (const path of ["/vendor/uplot.js", "/vendor/uplot.css", "/style.css", "/app.js"]) assert.ok(page.includes(`"${path}"`), `the page loads ${path}`);
  // Anything else is a route: without a credential 401, with one 404.
  for (const path of ["/web/app.js", "/vendor/uPlot.esm.js", "/vendor/", "/node_modules/uplot/package.json", "/vendor/%2e%2e/package.json", "/index.html/../package.json"]) {
    assert.equal((await get(path, false)).status, 401, path);
    assert.equal((await get(path)).status, 404, path);
  }
});

test("an open dashboard is monitoring, not foreground load: GET /v1/dashboard leaves the request count alone, a KV read adds to it", async () => {
  const stats = api().kernel.stats;
  const before = stats.requests;
  for (let i = 0; i < 3; i++) assert.equal((await get("/v1/dashboard")).status, 200);
  assert.equal(stats.requests, before, "the DMN still sees an idle node");
  assert.equal((await get("/v1/kv/no-such-key")).status, 404);
  assert.equal(stats.requests, before + 1, "a user's request is counted");
});
