// The HTTP API against a real node run in process: real UDP/TCP transport, real SQLite store,
// real sockets for every request.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { request } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startApi } from "../../src/adapters/http.ts";
import { nodeApi } from "../../src/node/api.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import { createNodeShell } from "../../src/node/commands.ts";
import { runNode, type RunningNode } from "../../src/node/run.ts";

let dir = "";
let node: RunningNode | undefined;
const extra: RunningNode[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "pk-http-"));
  node = await runNode({ data: join(dir, "a"), name: "alpha", env: {} });
});

after(async () => {
  for (const n of extra) await n.stop();
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function api(): RunningNode {
  assert.ok(node !== undefined, "node started");
  return node;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request over a fresh connection; resolves with whatever the server answered. */
function send(method: string, path: string, options: { body?: string | Buffer | undefined; headers?: Record<string, string | number>; base?: string } = {}): Promise<Reply> {
  const url = new URL(path, options.base ?? api().api);
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: options.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

function json(reply: Reply): Record<string, unknown> {
  assert.match(String(reply.headers["content-type"]), /^application\/json/);
  return JSON.parse(reply.body) as Record<string, unknown>;
}

function assertError(reply: Reply, status: number, code: string): void {
  assert.equal(reply.status, status, reply.body);
  const body = json(reply) as { error?: { code?: unknown; message?: unknown } };
  assert.equal(body.error?.code, code);
  assert.equal(typeof body.error?.message, "string");
  assert.ok(String(body.error?.message).length > 0);
}

test("boot: data dir 0700, token file 0600 made when none was given", () => {
  assert.equal(statSync(join(dir, "a")).mode & 0o777, 0o700);
  assert.equal(statSync(join(dir, "a", "token")).mode & 0o777, 0o600);
  assert.ok(statSync(join(dir, "a", "state.db")).isFile());
});

test("GET /v1/status has the contract's shape", async () => {
  const reply = await send("GET", "/v1/status");
  assert.equal(reply.status, 200);
  const status = json(reply);
  assert.equal(status["id"], api().id);
  assert.equal(status["name"], "alpha");
  assert.equal(status["role"], "core");
  assert.equal(status["mode"], "SOLO");
  assert.equal(typeof status["uptimeMs"], "number");
  // A node started without --join founds a cluster: it is its only voter (entry 1 of its log).
  const raft = status["raft"] as Record<string, unknown>;
  assert.deepEqual(Object.keys(raft).sort(), ["appliedIndex", "commitIndex", "confEpoch", "leader", "learners", "state", "term", "voters"]);
  assert.deepEqual(raft["voters"], [api().id]);
  assert.deepEqual(raft["learners"], []);
  assert.ok(["leader", "follower", "candidate"].includes(String(raft["state"])));
  assert.ok((raft["commitIndex"] as number) >= 1);
  const members = status["members"] as Array<Record<string, unknown>>;
  const vital = members[0]?.["vital"] as Record<string, number>;
  assert.deepEqual(members.map((m) => ({ ...m, vital: undefined })), [{ id: api().id, addr: api().listen, state: "alive", incarnation: 0, name: "alpha", role: "core", lastHeardMs: 0, vital: undefined }]);
  assert.deepEqual(Object.keys(vital).sort(), ["ageMs", "heapUsedBytes", "load1", "loopDelayP99Ms", "rssBytes", "uptimeMs"]);
  assert.ok(vital["rssBytes"] as number > 0, "the node's own vital signs are sampled from boot");
  assert.deepEqual(status["guarded"], []);
});

test("POST /v1/shell runs a line", async () => {
  const ok = json(await send("POST", "/v1/shell", { body: JSON.stringify({ line: "status" }), headers: { "Content-Type": "application/json" } }));
  assert.equal(ok["ok"], true);
  assert.match(String(ok["output"]), new RegExp(`^id +${api().id}$`, "m"));
  assert.match(String(ok["output"]), /^loop delay +p50 /m, "the host's event-loop delay is reported");
  const bad = json(await send("POST", "/v1/shell", { body: JSON.stringify({ line: "nope" }), headers: { "Content-Type": "application/json; charset=utf-8" } }));
  assert.equal(bad["ok"], false);
  assert.match(String(bad["output"]), /^unknown command "nope"\nusage: /);
});

test("GET /metrics has the four drop reasons and the pk_ series", async () => {
  const reply = await send("GET", "/metrics");
  assert.equal(reply.status, 200);
  assert.match(String(reply.headers["content-type"]), /^text\/plain/);
  for (const reason of ["auth", "decode", "replay", "oversize"]) {
    assert.match(reply.body, new RegExp(`^pk_packets_dropped_total\\{reason="${reason}"\\} \\d+$`, "m"));
  }
  assert.match(reply.body, /^pk_packets_total\{channel="datagram",direction="in"\} \d+$/m);
  assert.match(reply.body, /^pk_bytes_total\{channel="stream",direction="out"\} \d+$/m);
  assert.match(reply.body, /^pk_members\{state="alive"\} 1$/m);
  assert.match(reply.body, /^pk_brain_inferences_total\{mode="tensor"\} 0$/m);
  assert.match(reply.body, /^pk_brain_calls_total\{outcome="timeout"\} 0$/m);
  assert.match(reply.body, /^pk_brain_fallbacks_total\{state="REDUCED"\} 0$/m);
  assert.match(reply.body, /^pk_mesh_routes 0$/m);
  assert.match(reply.body, /^pk_members\{state="dead"\} 0$/m);
  assert.match(reply.body, /^pk_ticks_total [1-9]\d*$/m);
  assert.match(reply.body, /^process_resident_memory_bytes \d+/m);
});

test("errors are JSON with fitting statuses", async () => {
  assertError(await send("GET", "/nope"), 404, "NOT_FOUND");
  const wrongMethod = await send("DELETE", "/v1/status");
  assertError(wrongMethod, 405, "METHOD_NOT_ALLOWED");
  assert.equal(wrongMethod.headers["allow"], "GET, HEAD");
  const getShell = await send("GET", "/v1/shell");
  assertError(getShell, 405, "METHOD_NOT_ALLOWED");
  assert.equal(getShell.headers["allow"], "POST");
  const jsonHeaders = { "Content-Type": "application/json" };
  assertError(await send("POST", "/v1/shell", { body: "{\"line\": ", headers: jsonHeaders }), 400, "BAD_JSON");
  assertError(await send("POST", "/v1/shell", { body: "{}", headers: jsonHeaders }), 400, "BAD_REQUEST");
  assertError(await send("POST", "/v1/shell", { body: "[1]", headers: jsonHeaders }), 400, "BAD_REQUEST");
  assertError(await send("POST", "/v1/shell", { body: "{\"line\": 3}", headers: jsonHeaders }), 400, "BAD_REQUEST");
  assertError(await send("POST", "/v1/shell", { body: "line=status", headers: { "Content-Type": "application/x-www-form-urlencoded" } }), 415, "UNSUPPORTED_MEDIA_TYPE");
  assertError(await send("POST", "/v1/shell", { body: "{\"line\":\"status\"}" }), 415, "UNSUPPORTED_MEDIA_TYPE");
  assertError(await send("POST", "/v1/kv/x"), 405, "METHOD_NOT_ALLOWED");
  assertError(await send("GET", "/v1/kv/%zz"), 400, "BAD_KEY");
  assertError(await send("PUT", `/v1/kv/${"k".repeat(600)}`, { body: "v" }), 400, "BAD_KEY");
});

/** PUT until the single-node cluster has elected itself (503 NO_LEADER until then). */
async function putWhenLed(path: string, body: string): Promise<Reply> {
  for (let i = 0; i < 100; i++) {
    const reply = await send("PUT", path, { body });
    if (reply.status !== 503) return reply;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail("no leader within 2 s");
}

test("/v1/kv: put, linearizable get, compare-and-set, delete; /v1/topics lists the keys", async () => {
  const put = json(await putWhenLed("/v1/kv/some/key", "v1"));
  assert.equal(put["key"], "some/key");
  assert.ok((put["revision"] as number) > 1);
  const got = await send("GET", "/v1/kv/some/key");
  assert.equal(got.status, 200);
  assert.equal(got.body, "v1");
  assert.equal(got.headers["x-revision"], String(put["revision"]));
  assertError(await send("PUT", "/v1/kv/some/key?cas=v0", { body: "v2" }), 409, "CAS_FAILED");
  assertError(await send("PUT", "/v1/kv/absent?cas=x", { body: "v2" }), 409, "CAS_FAILED");
  assert.equal((await send("PUT", "/v1/kv/some/key?cas=v1", { body: "v2" })).status, 200);
  assert.equal((await send("GET", "/v1/kv/some/key")).body, "v2");
  const topics = json(await send("GET", "/v1/topics")) as { topics: Array<{ name: string; class: string; bytes: number }> };
  assert.deepEqual(topics.topics.map((topic) => [topic.name, topic.class, topic.bytes]), [["some/key", "consensus", 2]]);
  assert.equal((await send("DELETE", "/v1/kv/some/key")).status, 200);
  assertError(await send("GET", "/v1/kv/some/key"), 404, "NOT_FOUND");
  assertError(await send("DELETE", "/v1/kv/some/key"), 404, "NOT_FOUND");
  assertError(await send("PUT", "/v1/kv/big", { body: Buffer.alloc(64 * 1024 + 1, 0x61) }), 413, "PAYLOAD_TOO_LARGE");
});

test("413: a body over the bound is refused, declared or streamed", async () => {
  const big = Buffer.alloc(LIMITS.httpBodyBytesMax + 1, 0x20);
  assertError(await send("POST", "/v1/shell", { body: big, headers: { "Content-Type": "application/json", "Content-Length": big.length } }), 413, "PAYLOAD_TOO_LARGE");
  // Chunked, no Content-Length: the server counts and stops reading.
  assertError(await send("POST", "/v1/shell", { body: big, headers: { "Content-Type": "application/json", "Transfer-Encoding": "chunked" } }), 413, "PAYLOAD_TOO_LARGE");
  // Just under the bound is read (and is then merely bad JSON).
  const fits = Buffer.alloc(LIMITS.httpBodyBytesMax, 0x20);
  assertError(await send("POST", "/v1/shell", { body: fits, headers: { "Content-Type": "application/json" } }), 400, "BAD_JSON");
});

test("malformed HTTP gets a JSON 400 and the node stays up", async () => {
  const raw = await new Promise<string>((resolve, reject) => {
    const url = new URL(api().api);
    const socket = connect(Number(url.port), url.hostname, () => socket.write("GARBAGE \x01\x02 HTTP/9\r\n\r\n"));
    let text = "";
    socket.on("data", (chunk) => { text += chunk.toString("latin1"); });
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
  });
  assert.match(raw, /^HTTP\/1\.1 400 /);
  assert.match(raw, /"code":"BAD_REQUEST"/);
  assert.equal((await send("GET", "/v1/status")).status, 200);
});

test("GET / serves the dashboard", async () => {
  const page = await send("GET", "/");
  assert.equal(page.status, 200);
  assert.match(String(page.headers["content-type"]), /^text\/html/);
  assert.match(page.body, /<script type="module" src="\/app\.js">/);
  assert.match(String(page.headers["content-security-policy"]), /default-src 'self'/);
  const script = await send("GET", "/app.js");
  assert.equal(script.status, 200);
  assert.match(String(script.headers["content-type"]), /^text\/javascript/);
  assert.match(script.body, /\/v1\/status/);
});

test("GET /v1/events streams the backlog, then live events; a second node joins", async () => {
  const url = new URL("/v1/events", api().api);
  const seen: Array<{ seq: number; type: string; data: Record<string, unknown> }> = [];
  const controller = new AbortController();
  const response = await fetch(url, { signal: controller.signal });
  assert.equal(response.status, 200);
  assert.match(String(response.headers.get("content-type")), /^text\/event-stream/);
  assert.ok(response.body !== null);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const readUntil = async (predicate: () => boolean): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (!predicate()) {
      assert.ok(Date.now() < deadline, `events so far: ${seen.map((e) => e.type).join(", ")}`);
      const { value, done } = await reader.read();
      assert.equal(done, false, "stream ended early");
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split("\n").find((line) => line.startsWith("data: "));
        if (data !== undefined) seen.push(JSON.parse(data.slice(6)) as (typeof seen)[number]);
      }
    }
  };
  await readUntil(() => seen.some((event) => event.type === "kernel-started"));
  assert.equal(seen[0]?.data["id"], api().id);

  const token = (await import("node:fs")).readFileSync(join(dir, "a", "token"), "utf8").trim();
  const b = await runNode({ data: join(dir, "b"), name: "beta", join: [api().listen], token, env: {} });
  extra.push(b);
  await readUntil(() => seen.some((event) => event.type === "member-alive" && event.data["id"] === b.id));
  controller.abort();
  await reader.cancel().catch(() => undefined);

  const deadline = Date.now() + 5_000;
  for (;;) {
    const status = json(await send("GET", "/v1/status"));
    if (status["mode"] === "REDUCED") {
      assert.deepEqual((status["members"] as Array<{ id: string }>).map((m) => m.id).sort(), [api().id, b.id].sort());
      break;
    }
    assert.ok(Date.now() < deadline, "b shows up in a's status");
    await new Promise((r) => setTimeout(r, 50));
  }
});

test("gossip topics over HTTP: a stream on one node sees a write and a delete made through another node's API", async () => {
  const b = extra[0];
  assert.ok(b !== undefined, "the previous test started node b");
  const controller = new AbortController();
  const response = await fetch(new URL("/v1/topics/sensors/events", api().api), { signal: controller.signal });
  assert.equal(response.status, 200);
  assert.ok(response.body !== null);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const seen: Array<{ key: string; value: string | null; deleted: boolean; origin: string }> = [];
  let buffer = "";
  const readUntil = async (predicate: () => boolean): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (!predicate()) {
      assert.ok(Date.now() < deadline, `changes so far: ${JSON.stringify(seen)}`);
      const { value, done } = await reader.read();
      assert.equal(done, false);
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const data = buffer.slice(0, end).split("\n").find((line) => line.startsWith("data: "));
        buffer = buffer.slice(end + 2);
        if (data !== undefined) seen.push(JSON.parse(data.slice(6)) as (typeof seen)[number]);
      }
    }
  };
  const put = await send("PUT", "/v1/topics/sensors/temp", { body: "21.5", base: b.api });
  assert.equal(put.status, 200, put.body);
  await readUntil(() => seen.some((c) => c.key === "temp" && c.value === "21.5" && c.origin === b.id));
  const rows = json(await send("GET", "/v1/topics/sensors")) as { rows: Array<{ key: string; value: string }> };
  assert.deepEqual(rows.rows.map((r) => [r.key, r.value]), [["temp", "21.5"]]);
  assert.equal((await send("DELETE", "/v1/topics/sensors/temp", { base: b.api })).status, 200);
  await readUntil(() => seen.some((c) => c.key === "temp" && c.deleted));
  controller.abort();
  await reader.cancel().catch(() => undefined);
  assertError(await send("PUT", "/v1/topics/bad%20topic/k", { body: "x" }), 400, "BAD_REQUEST");
  assertError(await send("PUT", "/v1/topics/t/k", { body: Buffer.alloc(513, 0x61) }), 413, "PAYLOAD_TOO_LARGE");
});

test("off loopback the API needs the bearer token", async () => {
  const n = api();
  const shell = createNodeShell(n.kernel);
  await assert.rejects(startApi({ node: nodeApi(n.kernel, shell), host: "0.0.0.0", port: 0, token: undefined }), /refusing to serve the API on non-loopback address 0\.0\.0\.0 without a cluster token/);
  const open = await startApi({ node: nodeApi(n.kernel, shell), host: "0.0.0.0", port: 0, token: n.token });
  try {
    const base = `http://127.0.0.1:${open.port}`;
    assertError(await send("GET", "/v1/status", { base }), 401, "UNAUTHORIZED");
    assertError(await send("GET", "/metrics", { base, headers: { Authorization: "Bearer wrong" } }), 401, "UNAUTHORIZED");
    assertError(await send("POST", "/v1/shell", { base, body: "{\"line\":\"ps\"}", headers: { "Content-Type": "application/json" } }), 401, "UNAUTHORIZED");
    assert.equal((await send("GET", "/v1/status", { base, headers: { Authorization: `Bearer ${n.token}` } })).status, 200);
    assert.equal((await send("GET", "/", { base })).status, 200, "the dashboard page itself holds no secret");
  } finally {
    await open.close();
  }
});
