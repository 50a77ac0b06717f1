// The address a node tells its peers (--advertise): a wildcard listen address is no address a peer
// can send to, so a node listening on one must be told what to advertise, and refuses to start
// otherwise; with --advertise, its member entry (and so every peer's view of it) carries that
// address while the sockets stay bound to the wildcard.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isWildcardHost, NodeStartError, runNode, type RunningNode } from "../../src/node/run.ts";

const BIN = fileURLToPath(new URL("../../bin/pk.js", import.meta.url));

interface Status {
  id: string;
  members: Array<{ id: string; addr: string; state: string }>;
}

async function status(api: string): Promise<Status> {
  const response = await fetch(`${api}/v1/status`, { signal: AbortSignal.timeout(2_000) });
  assert.equal(response.status, 200);
  return await response.json() as Status;
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "pk-advertise-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A TCP port the OS just had free on every interface (the node binds UDP and TCP on it next). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen({ host: "0.0.0.0", port: 0 }, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

test("wildcard hosts are recognised in every spelling", () => {
  for (const host of ["0.0.0.0", "::", "::0", "0:0:0:0:0:0:0:0", "0::0"]) assert.ok(isWildcardHost(host), host);
  for (const host of ["127.0.0.1", "::1", "10.0.0.0", "localhost", "fe80::", "0.0.0.1"]) assert.ok(!isWildcardHost(host), host);
});

test("a wildcard --listen without --advertise refuses to start and says what to pass", async (t) => {
  const dir = tempDir(t);
  for (const listen of ["0.0.0.0:7401", "[::]:7401"]) {
    const data = join(dir, "n");
    await assert.rejects(runNode({ data, listen, env: {} }), (error: unknown) => {
      assert.ok(error instanceof NodeStartError);
      assert.match(error.message, /binds every interface/);
      assert.match(error.message, /pass --advertise HOST:7401 /);
      assert.ok(!error.message.includes("\n"), "one line");
      return true;
    });
    assert.ok(!existsSync(data), "nothing was created");
  }
  await assert.rejects(runNode({ data: join(dir, "n"), listen: "0.0.0.0:0", advertise: "0.0.0.0:7401", env: {} }), /not the wildcard/);
  await assert.rejects(runNode({ data: join(dir, "n"), listen: "0.0.0.0:0", advertise: "10.0.0.5:0", env: {} }), /--advertise must be HOST:PORT/);
  await assert.rejects(runNode({ data: join(dir, "n"), listen: "0.0.0.0:0", advertise: "10.0.0.5", env: {} }), /--advertise must be HOST:PORT/);
});

test("pk node --listen 0.0.0.0:PORT without --advertise exits 1 with a one-line error", async (t) => {
  const dir = tempDir(t);
  const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "node", "--data", join(dir, "n"), "--listen", "0.0.0.0:7401"], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on("data", (chunk: Buffer) => { stderr += chunk.toString(); });
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stdout, "");
  assert.match(result.stderr, /^pk node: --listen 0\.0\.0\.0:7401 binds every interface, .*pass --advertise HOST:7401 .*\n$/);
  assert.equal(result.stderr.split("\n").length, 2, "exactly one line");
});

test("with --advertise, the node binds the wildcard and its member address is the advertised one", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pk-advertise-"));
  const nodes: RunningNode[] = [];
  t.after(async () => {
    for (const node of nodes.reverse()) await node.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  let a: RunningNode | undefined;
  let port = 0;
  for (let attempt = 1; a === undefined; attempt++) {
    port = await freePort();
    try {
      a = await runNode({ data: join(dir, "a"), name: "alpha", listen: `0.0.0.0:${port}`, advertise: `127.0.0.1:${port}`, env: {} });
    } catch (error) {
      // Another process took the port between freePort() and the bind: try another.
      if (attempt >= 5 || !/EADDRINUSE/.test(String(error))) throw error;
    }
  }
  const first = a;
  nodes.push(first);
  const advertised = `127.0.0.1:${port}`;
  assert.equal(first.listen, `0.0.0.0:${port}`);
  assert.equal(first.advertise, advertised);
  const self = (await status(first.api)).members.find((member) => member.id === first.id);
  assert.equal(self?.addr, advertised, "/v1/status lists the node at its advertised address");

  // A peer joining through the advertised address reaches the wildcard sockets and learns that address.
  const token = readFileSync(join(dir, "a", "token"), "utf8").trim();
  // The founder made the cluster's owner key; a machine of the same owner certifies itself with it.
  const b = await runNode({ data: join(dir, "b"), name: "beta", join: [advertised], token, env: {}, ownerKey: join(dir, "a", "owner.key") });
  nodes.push(b);
  assert.equal(b.advertise, b.listen, "without --advertise a concrete listen address is advertised");
  const deadline = Date.now() + 10_000;
  for (;;) {
    const seen = (await status(b.api)).members.find((member) => member.id === first.id);
    if (seen?.state === "alive") {
      assert.equal(seen.addr, advertised);
      break;
    }
    assert.ok(Date.now() < deadline, `b lists a as alive (saw ${JSON.stringify(seen)})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});
