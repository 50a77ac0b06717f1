// The HTTP API against a real node run in process: real UDP/TCP transport, real SQLite store,
// real sockets for every request. Requests carry the cluster token unless a test says otherwise;
// the trust rules (Host, Origin, credentials, sessions) have their own tests below.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { request } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LOGIN_CODES_MAX, SESSIONS_MAX, startApi } from "../../src/adapters/http.ts";
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

/**
 * One request over a fresh connection; resolves with whatever the server answered. It carries
 * `Authorization: Bearer <token>` unless `auth` is false or the headers hold an Authorization.
 */
function send(method: string, path: string, options: { body?: string | Buffer | undefined; headers?: Record<string, string | number>; base?: string; auth?: boolean } = {}): Promise<Reply> {
  const url = new URL(path, options.base ?? api().api);
  const given = options.headers ?? {};
  const hasAuth = Object.keys(given).some((name) => name.toLowerCase() === "authorization");
  const headers = options.auth === false || hasAuth ? given : { ...given, Authorization: `Bearer ${api().token}` };
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        assert.deepEqual(Object.keys(res.headers).filter((name) => name.startsWith("access-control-")), [], `no CORS headers, ever (${method} ${path})`);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") });
      });
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
  // Its one inline script (the ?login= exchange) loads /app.js; the policy allows it by its hash.
  const inline = /<script type="module">([\s\S]*?)<\/script>/.exec(page.body)?.[1];
  assert.ok(inline !== undefined && inline.includes("import(\"/app.js\")"), "the page's script loads /app.js");
  const hash = (await import("node:crypto")).createHash("sha256").update(inline).digest("base64");
  const policy = String(page.headers["content-security-policy"]);
  assert.match(policy, /default-src 'self'/);
  assert.ok(policy.includes(`script-src 'self' 'sha256-${hash}'`), policy);
  assert.equal(page.headers["x-content-type-options"], "nosniff");
  assert.equal(page.headers["cross-origin-resource-policy"], "same-origin");
  const script = await send("GET", "/app.js");
  assert.equal(script.status, 200);
  assert.match(String(script.headers["content-type"]), /^text\/javascript/);
  assert.match(script.body, /\/v1\/status/);
});

test("GET /v1/events streams the backlog, then live events; a second node joins", async () => {
  const url = new URL("/v1/events", api().api);
  const seen: Array<{ seq: number; type: string; data: Record<string, unknown> }> = [];
  const controller = new AbortController();
  const response = await fetch(url, { signal: controller.signal, headers: { Authorization: `Bearer ${api().token}` } });
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
  // A machine of the same owner: it certifies itself with the founder's owner key.
  const b = await runNode({ data: join(dir, "b"), name: "beta", join: [api().listen], token, env: {}, ownerKey: join(dir, "a", "owner.key") });
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
  const response = await fetch(new URL("/v1/topics/sensors/events", api().api), { signal: controller.signal, headers: { Authorization: `Bearer ${api().token}` } });
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

test("off loopback every route but the dashboard's files needs the bearer token", async () => {
  const n = api();
  const shell = createNodeShell(n.kernel);
  await assert.rejects(startApi({ node: nodeApi(n.kernel, shell), host: "0.0.0.0", port: 0, token: "" }), /refusing to serve the API on 0\.0\.0\.0 without a cluster token/);
  const open = await startApi({ node: nodeApi(n.kernel, shell), host: "0.0.0.0", port: 0, token: n.token });
  try {
    const base = `http://127.0.0.1:${open.port}`;
    assertError(await send("GET", "/v1/status", { base, auth: false }), 401, "UNAUTHORIZED");
    assertError(await send("GET", "/metrics", { base, auth: false }), 401, "UNAUTHORIZED");
    assertError(await send("GET", "/metrics", { base, headers: { Authorization: "Bearer wrong" } }), 401, "UNAUTHORIZED");
    assertError(await send("POST", "/v1/shell", { base, auth: false, body: "{\"line\":\"ps\"}", headers: { "Content-Type": "application/json" } }), 401, "UNAUTHORIZED");
    assert.equal((await send("GET", "/v1/status", { base })).status, 200);
    assert.equal((await send("GET", "/", { base, auth: false })).status, 200, "the dashboard page itself holds no secret");
    // A wildcard bind answers to this machine's addresses (with its port), not to other names.
    assert.equal((await send("GET", "/v1/status", { base, headers: { Host: `localhost:${open.port}` } })).status, 200);
    assertError(await send("GET", "/v1/status", { base, headers: { Host: `192.0.2.1:${open.port}` } }), 403, "forbidden-host");
  } finally {
    await open.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Trust: Host, Origin, credentials, sessions (docs/protocols/http.md, "HTTP API trust")

function port(): number {
  return Number(new URL(api().api).port);
}

/** The value of the pk_session cookie an answer set. */
function sessionCookie(reply: Reply): string {
  const header = reply.headers["set-cookie"];
  const line = Array.isArray(header) ? header[0] : header;
  const value = /^pk_session=([^;]*);/.exec(line ?? "")?.[1];
  assert.ok(value !== undefined && value !== "", `a session cookie in ${JSON.stringify(header)}`);
  return value;
}

async function loginCode(): Promise<{ code: string; url: string; expiresInS: number }> {
  const reply = await send("POST", "/v1/login-code");
  assert.equal(reply.status, 200, reply.body);
  return json(reply) as { code: string; url: string; expiresInS: number };
}

function login(body: unknown): Promise<Reply> {
  return send("POST", "/v1/login", { auth: false, body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
}

async function refusedCount(reason: string): Promise<number> {
  const metrics = (await send("GET", "/metrics")).body;
  const match = new RegExp(`^pk_http_refused_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(metrics);
  assert.ok(match !== null, `pk_http_refused_total{reason="${reason}"} is exported`);
  return Number(match[1]);
}

const shellBody = { body: JSON.stringify({ line: "status" }), headers: { "Content-Type": "application/json" } };

test("trust: a Host that is not this API's gets 403 forbidden-host on every path, the dashboard's files too (DNS rebinding)", async () => {
  const before = await refusedCount("host");
  const hostile = [`attacker.example:${port()}`, "attacker.example", `127.0.0.1:${port() === 1 ? 2 : 1}`, `localhost.:${port()}`, `127.0.0.1.attacker.example:${port()}`, "a b", `[::1]:${port()}x`];
  for (const host of hostile) {
    for (const [method, path] of [["GET", "/"], ["GET", "/index.html"], ["GET", "/app.js"], ["GET", "/v1/status"], ["GET", "/metrics"], ["POST", "/v1/shell"], ["GET", "/v1/kv/x"], ["POST", "/v1/login-code"], ["GET", "/nope"]] as const) {
      // The token does not help: a rebound page never has it, and the rule is about the name.
      const reply = await send(method, path, { headers: { Host: host, ...(method === "POST" ? shellBody.headers : {}) }, ...(method === "POST" ? { body: shellBody.body } : {}) });
      assertError(reply, 403, "forbidden-host");
      assert.ok(!reply.body.includes("<html"), "no page is served");
    }
  }
  assert.equal(await refusedCount("host"), before + hostile.length * 9, "each refusal is counted");
  // The names of this API do work: loopback names with its port.
  for (const host of [`127.0.0.1:${port()}`, `localhost:${port()}`, `LOCALHOST:${port()}`, `[::1]:${port()}`]) {
    assert.equal((await send("GET", "/", { headers: { Host: host } })).status, 200, host);
    assert.equal((await send("POST", "/v1/shell", { ...shellBody, headers: { ...shellBody.headers, Host: host } })).status, 200, host);
  }
});

test("trust: a present Origin must be http:// and a name of this API, else 403 forbidden-origin (even with the token)", async () => {
  const before = await refusedCount("origin");
  const foreign = ["http://attacker.example", `http://attacker.example:${port()}`, "null", `https://127.0.0.1:${port()}`, "http://127.0.0.1:1", `http://127.0.0.1:${port()}/path`, `http://user@127.0.0.1:${port()}`, "", "file://"];
  for (const origin of foreign) {
    assertError(await send("POST", "/v1/shell", { ...shellBody, headers: { ...shellBody.headers, Origin: origin } }), 403, "forbidden-origin");
    assertError(await send("GET", "/v1/status", { headers: { Origin: origin } }), 403, "forbidden-origin");
  }
  assert.equal(await refusedCount("origin"), before + 2 * foreign.length);
  for (const origin of [`http://127.0.0.1:${port()}`, `http://localhost:${port()}`]) {
    assert.equal((await send("POST", "/v1/shell", { ...shellBody, headers: { ...shellBody.headers, Origin: origin } })).status, 200, origin);
  }
  // A cross-origin preflight is refused outright and never answered with CORS headers (send checks).
  assertError(await send("OPTIONS", "/v1/shell", { auth: false, headers: { Origin: "http://attacker.example", "Access-Control-Request-Method": "POST" } }), 403, "forbidden-origin");
});

test("trust: on loopback only GET /v1/status, /metrics and the dashboard's files are open; the rest needs a credential (401)", async () => {
  const before = await refusedCount("credential");
  const closed: Array<[string, string, string | undefined, string | undefined]> = [
    ["POST", "/v1/shell", "{\"line\":\"topic pub x y z\"}", "application/json"],
    // The bodies of simple requests (a form or a no-cors fetch) are refused for want of a credential.
    ["POST", "/v1/shell", "{\"line\":\"topic pub x y z\"}", "text/plain"],
    ["POST", "/v1/shell", "line=topic+pub+x+y+z", "application/x-www-form-urlencoded"],
    ["GET", "/v1/kv/x", undefined, undefined],
    ["PUT", "/v1/kv/x", "v", "text/plain"],
    ["DELETE", "/v1/kv/x", undefined, undefined],
    ["GET", "/v1/topics", undefined, undefined],
    ["GET", "/v1/topics/sensors", undefined, undefined],
    ["PUT", "/v1/topics/t/k", "v", "text/plain"],
    ["GET", "/v1/events", undefined, undefined],
    ["POST", "/v1/infer", "{}", "application/json"],
    ["POST", "/v1/login-code", undefined, undefined],
    ["GET", "/nope", undefined, undefined],
  ];
  for (const [method, path, body, type] of closed) {
    const reply = await send(method, path, { auth: false, body, headers: type === undefined ? {} : { "Content-Type": type } });
    assertError(reply, 401, "UNAUTHORIZED");
    assert.match(String(reply.headers["www-authenticate"]), /^Bearer /);
    assertError(await send(method, path, { body, headers: { Authorization: `Bearer ${api().token}x`, ...(type === undefined ? {} : { "Content-Type": type }) } }), 401, "UNAUTHORIZED");
    assertError(await send(method, path, { auth: false, body, headers: { Cookie: "pk_session=made-up", ...(type === undefined ? {} : { "Content-Type": type }) } }), 401, "UNAUTHORIZED");
  }
  assert.equal(await refusedCount("credential"), before + 3 * closed.length);
  assert.equal((await send("GET", "/v1/status", { auth: false })).status, 200);
  assert.equal((await send("GET", "/metrics", { auth: false })).status, 200);
  assert.equal((await send("GET", "/app.js", { auth: false })).status, 200);
  // Nothing of the attempts above happened.
  assertError(await send("GET", "/v1/kv/x"), 404, "NOT_FOUND");
  const topics = json(await send("GET", "/v1/topics")) as { topics: Array<{ name: string }> };
  assert.ok(!topics.topics.some((topic) => topic.name === "x" || topic.name === "t"), JSON.stringify(topics));
});

test("trust: a one-time login code (bearer only) gives one session cookie, HttpOnly and SameSite=Strict; it works once", async () => {
  const { code, url, expiresInS } = await loginCode();
  assert.match(code, /^[A-Za-z0-9_-]{32}$/);
  assert.equal(url, `http://127.0.0.1:${port()}/?login=${code}`);
  assert.equal(expiresInS, 300);
  const first = await login({ code });
  assert.equal(first.status, 200, first.body);
  const setCookie = String(first.headers["set-cookie"]);
  assert.match(setCookie, /^pk_session=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=\d+$/);
  assert.ok(sessionCookie(first) !== code, "the session is not the code");
  assertError(await login({ code }), 401, "BAD_LOGIN");
  assertError(await login({ code: "x".repeat(32) }), 401, "BAD_LOGIN");
  assertError(await login({ token: `${api().token}x` }), 401, "BAD_LOGIN");
  assert.equal((await login({ token: api().token })).status, 200, "the cluster token logs in too");
  // Bad bodies: JSON only (no form or text/plain login), one string field.
  for (const body of [{}, { code: 3 }, { code: "a", token: "b" }, { code: "c".repeat(257) }, [code], "code"]) assertError(await login(body), 400, "BAD_REQUEST");
  assertError(await send("POST", "/v1/login", { auth: false, body: `code=${code}`, headers: { "Content-Type": "application/x-www-form-urlencoded" } }), 415, "UNSUPPORTED_MEDIA_TYPE");
  assertError(await send("GET", "/v1/login", { auth: false }), 405, "METHOD_NOT_ALLOWED");
  // Only the bearer token makes codes: a session cannot.
  const cookie = sessionCookie(await login({ code: (await loginCode()).code }));
  assertError(await send("POST", "/v1/login-code", { auth: false, headers: { Cookie: `pk_session=${cookie}` } }), 401, "UNAUTHORIZED");
});

test("trust: the session cookie is a credential for the dashboard's own requests, not for another origin's or site's", async () => {
  const cookie = `pk_session=${sessionCookie(await login({ code: (await loginCode()).code }))}`;
  const self = `http://127.0.0.1:${port()}`;
  const ok = json(await send("POST", "/v1/shell", { auth: false, body: JSON.stringify({ line: "status" }), headers: { "Content-Type": "application/json", Cookie: cookie, Origin: self, "Sec-Fetch-Site": "same-origin" } }));
  assert.equal(ok["ok"], true);
  assert.equal((await send("GET", "/v1/topics", { auth: false, headers: { Cookie: `other=1; ${cookie}` } })).status, 200, "among other cookies, without Origin");
  assert.equal((await send("GET", "/v1/status", { auth: false, headers: { Cookie: cookie, "Sec-Fetch-Site": "none" } })).status, 200, "a typed address");
  // Another origin, or another site of this machine (another port), cannot use it.
  assertError(await send("POST", "/v1/shell", { auth: false, body: JSON.stringify({ line: "topic pub x y z" }), headers: { "Content-Type": "application/json", Cookie: cookie, Origin: "http://attacker.example" } }), 403, "forbidden-origin");
  for (const site of ["same-site", "cross-site"]) {
    assertError(await send("POST", "/v1/shell", { auth: false, ...shellBody, headers: { ...shellBody.headers, Cookie: cookie, "Sec-Fetch-Site": site } }), 403, "forbidden-origin");
    assertError(await send("GET", "/v1/kv/x", { auth: false, headers: { Cookie: cookie, "Sec-Fetch-Site": site } }), 403, "forbidden-origin");
  }
  // Logging out ends the session.
  const out = await send("POST", "/v1/logout", { auth: false, headers: { Cookie: cookie, Origin: self } });
  assert.equal(out.status, 200);
  assert.match(String(out.headers["set-cookie"]), /^pk_session=; .*Max-Age=0/);
  assertError(await send("GET", "/v1/topics", { auth: false, headers: { Cookie: cookie } }), 401, "UNAUTHORIZED");
});

test("trust: sessions and login codes are bounded; the oldest goes first", async () => {
  const codes = [];
  for (let i = 0; i <= LOGIN_CODES_MAX; i++) codes.push((await loginCode()).code);
  assertError(await login({ code: codes[0] }), 401, "BAD_LOGIN");
  const cookies = [sessionCookie(await login({ code: codes[1] }))];
  for (let i = 0; i < SESSIONS_MAX; i++) cookies.push(sessionCookie(await login({ token: api().token })));
  assertError(await send("GET", "/v1/topics", { auth: false, headers: { Cookie: `pk_session=${cookies[0]}` } }), 401, "UNAUTHORIZED");
  assert.equal((await send("GET", "/v1/topics", { auth: false, headers: { Cookie: `pk_session=${cookies[1]}` } })).status, 200);
  assert.equal((await send("GET", "/v1/topics", { auth: false, headers: { Cookie: `pk_session=${cookies.at(-1)}` } })).status, 200);
});

test("trust: --public-name adds names to Host and Origin; a bad one is refused at start", async () => {
  const n = api();
  const shell = createNodeShell(n.kernel);
  await assert.rejects(startApi({ node: nodeApi(n.kernel, shell), host: "127.0.0.1", port: 0, token: n.token, publicNames: ["bad name"] }), /public name must be HOST or HOST:PORT/);
  await assert.rejects(runNode({ data: join(dir, "c"), env: {}, publicNames: ["http://x"] }), /--public-name must be HOST or HOST:PORT/);
  const named = await startApi({ node: nodeApi(n.kernel, shell), host: "127.0.0.1", port: 0, token: n.token, publicNames: ["pk.example.test", "proxy.example.test:8080"] });
  try {
    const base = `http://127.0.0.1:${named.port}`;
    for (const host of [`pk.example.test:${named.port}`, "proxy.example.test:8080", `PK.example.test:${named.port}`]) {
      assert.equal((await send("POST", "/v1/shell", { base, ...shellBody, headers: { ...shellBody.headers, Host: host, Origin: `http://${host}` } })).status, 200, host);
    }
    assertError(await send("GET", "/", { base, headers: { Host: "pk.example.test:8080" } }), 403, "forbidden-host");
    assertError(await send("GET", "/", { base, headers: { Host: "proxy.example.test" } }), 403, "forbidden-host");
    assertError(await send("GET", "/v1/status", { base, headers: { Origin: "http://proxy.example.test" } }), 403, "forbidden-origin");
    const code = json(await send("POST", "/v1/login-code", { base, headers: { Host: "proxy.example.test:8080" } }));
    assert.match(String(code["url"]), /^http:\/\/proxy\.example\.test:8080\/\?login=/, "the login URL names the host asked");
  } finally {
    await named.close();
  }
});
