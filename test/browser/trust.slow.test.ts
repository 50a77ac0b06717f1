// Issue 13, "a web page gets nothing", in a real browser: Debian's Chromium driven by
// playwright-core, against a 3-node cluster of real processes started by `pk up`.
//
// 1. The dashboard works after its one-time login: the URL `pk up` prints logs the browser in
//    (session cookie), the code leaves the address bar, the page lists the 3 members and runs a
//    shell line. The token can be pasted in instead.
// 2. Pages of other origins, in the same browser (which now holds the session cookie), try the
//    shell and the key-value store through http://127.0.0.1:PORT: no-cors fetches, CORS fetches,
//    form POSTs (text/plain, urlencoded) and <script>/<img> inclusion. One page is same-site
//    (http://127.0.0.1:OTHER, where the SameSite=Strict cookie does go along), one cross-site
//    (http://attacker.test:OTHER).
// 3. DNS rebinding: attacker.test resolves to 127.0.0.1 (--host-resolver-rules), so
//    http://attacker.test:PORT/ reaches the node itself; the dashboard must not load there, and
//    the page's same-origin requests must get nothing.
// Then, through the node's own API with the token: no shell command of the attacks ran, no key was
// written, and the secret value never reached a page. Screenshots are kept in a temp folder named
// in the test log. Without a Chromium binary the test is skipped, saying so (unless
// PK_BROWSER_REQUIRED=1, as in CI).
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { basePort, bearer, clusterDir, pk, readCluster, waitConverged } from "../cli/cluster-helpers.ts";

/**
 * What the functions run in the dashboard's page use of the DOM (this project's TypeScript has no
 * DOM library). They are functions, not strings: the dashboard's policy forbids eval.
 */
interface PageGlobals {
  readonly document: {
    readonly cookie: string;
    querySelectorAll(selector: string): { readonly length: number };
    getElementById(id: string): { readonly textContent: string | null } | null;
  };
}

const CHROMIUM = [process.env["PK_CHROMIUM"], "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
  .find((path): path is string => path !== undefined && path !== "" && existsSync(path));

/** The attacker's page: its script tries everything a page can do toward `target` and reports what it saw. */
const ATTACK_PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>attacker</title></head>
<body><h1>a page of another origin</h1><pre id="log"></pre>
<script>
const target = new URLSearchParams(location.search).get("target");
const results = {};
const log = (name, value) => { results[name] = value; document.getElementById("log").textContent += name + ": " + value + "\\n"; };
async function attempt(name, fn) {
  try { log(name, String(await fn())); } catch (error) { log(name, "threw " + error.name + ": " + error.message); }
}
function submitForm(name, action, enctype, fields) {
  return new Promise((resolve) => {
    const frame = document.createElement("iframe");
    frame.name = name;
    document.body.appendChild(frame);
    const form = document.createElement("form");
    form.method = "POST";
    form.action = action;
    form.enctype = enctype;
    form.target = name;
    for (const [key, value] of fields) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = key;
      input.value = value;
      form.appendChild(input);
    }
    document.body.appendChild(form);
    const done = setTimeout(() => resolve("no load event within 5 s"), 5000);
    frame.addEventListener("load", () => { clearTimeout(done); resolve("submitted (the answer is not readable)"); }, { once: true });
    form.submit();
  });
}
function include(tag, url) {
  return new Promise((resolve) => {
    const element = document.createElement(tag);
    element.onload = () => resolve("loaded");
    element.onerror = () => resolve("error");
    element.src = url;
    document.body.appendChild(element);
  });
}
window.attack = async (tag) => {
  const shell = (line) => JSON.stringify({ line });
  await attempt("no-cors POST /v1/shell text/plain", async () => {
    const r = await fetch(target + "/v1/shell", { method: "POST", mode: "no-cors", credentials: "include", headers: { "Content-Type": "text/plain" }, body: shell("topic pub attack " + tag + "-nocors x") });
    return "opaque answer (" + r.type + ")";
  });
  await attempt("no-cors PUT /v1/kv", () => fetch(target + "/v1/kv/pwned-" + tag, { method: "PUT", mode: "no-cors", credentials: "include", body: "x" }).then((r) => r.type));
  await attempt("cors POST /v1/shell json", async () => {
    const r = await fetch(target + "/v1/shell", { method: "POST", credentials: "include", headers: { "Content-Type": "application/json" }, body: shell("topic pub attack " + tag + "-cors x") });
    return r.status + " " + await r.text();
  });
  await attempt("cors GET /v1/kv/secret", async () => { const r = await fetch(target + "/v1/kv/secret", { credentials: "include" }); return r.status + " " + await r.text(); });
  await attempt("cors GET /v1/status", async () => { const r = await fetch(target + "/v1/status", { credentials: "include" }); return r.status + " " + await r.text(); });
  await attempt("form POST /v1/shell text/plain", () => submitForm("f1", target + "/v1/shell", "text/plain", [['{"line":"topic pub attack ' + tag + '-form-text x","pad":"', '"}']]));
  await attempt("form POST /v1/shell urlencoded", () => submitForm("f2", target + "/v1/shell", "application/x-www-form-urlencoded", [["line", "topic pub attack " + tag + "-form-url x"]]));
  await attempt("form POST /v1/login-code", () => submitForm("f3", target + "/v1/login-code", "application/x-www-form-urlencoded", [["x", "y"]]));
  await attempt("script src /v1/kv/secret", () => include("script", target + "/v1/kv/secret"));
  await attempt("img src /v1/kv/secret", () => include("img", target + "/v1/kv/secret"));
  return results;
};
</script></body></html>`;

function serveAttacker(): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if ((req.url ?? "/").startsWith("/?") || req.url === "/") {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      res.end(ATTACK_PAGE);
      return;
    }
    res.writeHead(404).end();
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    resolve({ server, port: typeof address === "object" && address !== null ? address.port : 0 });
  }));
}

async function apiGet(api: string, path: string, token: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`${api}${path}`, { headers: bearer(token), signal: AbortSignal.timeout(5_000) });
  return { status: response.status, text: await response.text() };
}

async function refusedTotal(api: string, reason: string): Promise<number> {
  // GET /metrics is open on loopback: no token needed.
  const text = await (await fetch(`${api}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  return Number(new RegExp(`^pk_http_refused_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? NaN);
}

async function shot(page: Page, shots: string, name: string): Promise<void> {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

test("browser: pages of other origins and DNS rebinding get nothing from 127.0.0.1; the dashboard works after its login", {
  timeout: 120_000,
  // CI (.ci/run) installs Chromium and sets PK_BROWSER_REQUIRED: there, a missing browser fails.
  skip: CHROMIUM === undefined && process.env["PK_BROWSER_REQUIRED"] !== "1" ? "no Chromium binary found (apt-get install chromium, or set PK_CHROMIUM to one)" : false,
}, async (t: TestContext) => {
  assert.ok(CHROMIUM !== undefined, "no Chromium binary found (/usr/bin/chromium, or PK_CHROMIUM), and PK_BROWSER_REQUIRED=1 says the test must run");
  const shots = mkdtempSync(join(tmpdir(), "pk-browser-shots-"));
  t.diagnostic(`screenshots in ${shots}`);
  console.log(`browser trust test: screenshots in ${shots}`);

  const dir = clusterDir(t);
  const up = await pk(["up", "--detach", "--nodes", "3", "--dir", dir, "--base-port", String(basePort())]);
  assert.equal(up.code, 0, up.stderr);
  const cluster = readCluster(dir);
  const apis = cluster.nodes.map((node) => node.api);
  await waitConverged(apis, 3, 15_000);
  const api = apis[0] as string;
  const port = Number(new URL(api).port);
  const loginUrl = /^dashboard: (\S+)/m.exec(up.stdout)?.[1];
  assert.ok(loginUrl !== undefined && loginUrl.startsWith(`${api}/?login=`), `pk up printed the dashboard login: ${up.stdout}`);

  // A secret in the key-value store, which no page may read.
  const secret = `secret-${Math.random().toString(36).slice(2)}`;
  const put = await fetch(`${api}/v1/kv/secret`, { method: "PUT", body: secret, headers: bearer(cluster.token), signal: AbortSignal.timeout(5_000) });
  assert.equal(put.status, 200, await put.text());

  const attacker = await serveAttacker();
  t.after(() => new Promise<void>((resolve) => attacker.server.close(() => resolve())));
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--host-resolver-rules=MAP attacker.test 127.0.0.1"] });
  t.after(() => browser.close());
  const context = await browser.newContext();

  // 1. The dashboard, through the one-time login pk up printed.
  const dashboard = await context.newPage();
  await dashboard.goto(loginUrl);
  await dashboard.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelectorAll("#members tr").length === 3, undefined, { timeout: 15_000 });
  assert.equal(new URL(dashboard.url()).search, "", "the login code left the address bar");
  const cookies = await context.cookies(api);
  const session = cookies.find((cookie) => cookie.name === "pk_session");
  assert.ok(session !== undefined && session.httpOnly && session.sameSite === "Strict", JSON.stringify(cookies));
  assert.equal(await dashboard.evaluate(() => (globalThis as unknown as PageGlobals).document.cookie), "", "the page's script cannot read the session");
  await dashboard.fill("#line", "nodes");
  await dashboard.click("#shell button");
  await dashboard.waitForFunction(() => ((globalThis as unknown as PageGlobals).document.getElementById("output")?.textContent ?? "").split("\n").filter((line) => / alive /.test(line)).length === 3, undefined, { timeout: 10_000 });
  const output = await dashboard.textContent("#output") ?? "";
  for (const node of cluster.nodes) assert.ok(output.includes(node.id), `the shell's "nodes" lists ${node.id}`);
  assert.equal(await dashboard.isHidden("#auth"), true, "no token was asked for");
  await shot(dashboard, shots, "1-dashboard-after-login");
  // The code was single use: opening the same URL again logs nobody in.
  const again = await browser.newContext();
  const reused = await again.newPage();
  await reused.goto(loginUrl);
  await reused.waitForFunction(() => ((globalThis as unknown as PageGlobals).document.getElementById("login-error")?.textContent ?? "") !== "", undefined, { timeout: 10_000 });
  assert.match(await reused.textContent("#login-error") ?? "", /login failed: the login code is unknown, used or expired/);
  // The token pasted in works too.
  await reused.fill("#line", "status");
  await reused.click("#shell button");
  await reused.waitForSelector("#auth", { state: "visible", timeout: 10_000 });
  await reused.fill("#token", cluster.token);
  await reused.click("#auth button");
  await reused.click("#shell button");
  await reused.waitForFunction(() => /^mode +FULL$/m.test((globalThis as unknown as PageGlobals).document.getElementById("output")?.textContent ?? ""), undefined, { timeout: 10_000 });
  await shot(reused, shots, "2-dashboard-token-pasted");
  await again.close();

  // 2. Pages of other origins in the same browser, which holds the session cookie for 127.0.0.1.
  const seen: Record<string, Record<string, string>> = {};
  for (const [tag, origin] of [["samesite", `http://127.0.0.1:${attacker.port}`], ["crosssite", `http://attacker.test:${attacker.port}`]] as const) {
    const before = await refusedTotal(api, "origin");
    const page = await context.newPage();
    await page.goto(`${origin}/?target=${encodeURIComponent(`http://127.0.0.1:${port}`)}`);
    seen[tag] = await page.evaluate(`window.attack(${JSON.stringify(tag)})`) as Record<string, string>;
    await shot(page, shots, `3-attacker-${tag}`);
    await page.close();
    // What the browser let through reached the node, which refused it for its Origin (or, for a
    // same-site page's cookie, its Sec-Fetch-Site): the no-cors POST, the CORS preflight and the
    // two CORS GETs, the three forms.
    const refused = await refusedTotal(api, "origin") - before;
    assert.ok(refused >= 7, `${tag}: the node refused the page's requests by their origin (${refused} refused)`);
  }
  t.diagnostic(`what the attacking pages saw: ${JSON.stringify(seen)}`);
  for (const [tag, results] of Object.entries(seen)) {
    assert.match(results["cors POST /v1/shell json"] ?? "", /^threw TypeError/, `${tag}: no CORS answer to read`);
    assert.match(results["cors GET /v1/kv/secret"] ?? "", /^threw TypeError/, `${tag}: the value is not readable`);
    assert.match(results["cors GET /v1/status"] ?? "", /^threw TypeError/, `${tag}: not even the status is readable`);
    assert.equal(results["script src /v1/kv/secret"], "error", `${tag}: no inclusion as a script`);
    assert.equal(results["img src /v1/kv/secret"], "error", `${tag}: no inclusion as an image`);
  }

  // 3. DNS rebinding: attacker.test is 127.0.0.1, so http://attacker.test:PORT/ reaches the node.
  const rebound = await context.newPage();
  const answer = await rebound.goto(`http://attacker.test:${port}/`);
  assert.equal(answer?.status(), 403, "the dashboard does not load under another name");
  assert.match(await rebound.textContent("body") ?? "", /"code":"forbidden-host"/);
  await shot(rebound, shots, "4-dns-rebinding");
  // The script a rebound page would run: same-origin requests to "its own" server, the node.
  const rebind = await rebound.evaluate(`(async () => {
    const out = {};
    const go = async (name, path, init) => {
      try {
        const r = await fetch(path, init);
        out[name] = r.status + " " + await r.text();
      } catch (error) {
        out[name] = "threw " + error.message;
      }
    };
    await go("shell", "/v1/shell", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ line: "topic pub attack rebind x" }) });
    await go("kv put", "/v1/kv/pwned-rebind", { method: "PUT", body: "x" });
    await go("kv get", "/v1/kv/secret");
    await go("status", "/v1/status");
    await go("login-code", "/v1/login-code", { method: "POST" });
    await go("app.js", "/app.js");
    return out;
  })()`) as Record<string, string>;
  t.diagnostic(`what the rebound page saw: ${JSON.stringify(rebind)}`);
  for (const [name, result] of Object.entries(rebind)) assert.match(result, /^403 .*"forbidden-host"/, `rebinding, ${name}: ${result}`);

  // Through the node's own API, with the token: nothing of the attacks happened, nothing leaked.
  for (const node of apis) {
    const topic = JSON.parse((await apiGet(node, "/v1/topics/attack", cluster.token)).text) as { rows: unknown[] };
    assert.deepEqual(topic.rows, [], `no shell command of the attacks ran (topic "attack" at ${node})`);
  }
  for (const key of ["pwned-samesite", "pwned-crosssite", "pwned-rebind"]) assert.equal((await apiGet(api, `/v1/kv/${key}`, cluster.token)).status, 404, key);
  assert.equal((await apiGet(api, "/v1/kv/secret", cluster.token)).text, secret, "the secret is still there");
  assert.ok(!JSON.stringify([seen, rebind]).includes(secret), "the secret reached no page");

  // And the logged-in dashboard still works.
  await dashboard.bringToFront();
  await dashboard.fill("#line", "kv get secret");
  await dashboard.click("#shell button");
  await dashboard.waitForFunction((value) => ((globalThis as unknown as PageGlobals).document.getElementById("output")?.textContent ?? "").includes(value), secret, { timeout: 10_000 });
  await shot(dashboard, shots, "5-dashboard-still-works");
  await context.close();
});
