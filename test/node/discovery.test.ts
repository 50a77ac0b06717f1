// Zero-configuration discovery (issue 5, acceptance 5): nodes started with no --join, sharing only
// their token, find each other by multicast beacon on loopback and form one cluster (one founder,
// the others join it), in real node processes' code run in this process with real sockets. The
// beacon port is the test's own, so other clusters on the machine are not heard.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { runNode, type RunningNode } from "../../src/node/run.ts";
import { startBeacon } from "../../src/adapters/beacon.ts";

const dir = mkdtempSync(join(tmpdir(), "pk-discover-"));
const nodes: RunningNode[] = [];
after(async () => {
  for (const node of nodes) await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

const PORT = 17_000 + (process.pid % 2_000);

test("two nodes with no --join find each other by beacon and form one Raft cluster", { timeout: 30_000 }, async () => {
  const env = { PK_TOKEN: "discovery-test-token" };
  // One person's machines: they share the token and the cluster's owner key (a stranger's node
  // would need an invite code instead: the token alone grants nothing).
  const ownerKey = join(dir, "owner.key");
  writeFileSync(ownerKey, generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  const started = performance.now();
  // Started together: both listen before deciding; the lower id founds and the other joins it.
  const results = await Promise.allSettled(["a", "b"].map((name) => runNode({ data: join(dir, name), name, env, discover: true, discoverPort: PORT, ownerKey })));
  for (const result of results) if (result.status === "fulfilled") nodes.push(result.value);
  for (const result of results) if (result.status === "rejected") throw result.reason;
  const [a, b] = nodes as [RunningNode, RunningNode];
  for (;;) {
    const views = [a, b].map((node) => node.kernel.memberStatuses().filter((m) => m.state === "alive").length);
    const confs = [a, b].map((node) => node.kernel.consensus.status().conf);
    const voters = [...new Set(confs.flatMap((conf) => [...conf.voters, ...conf.learners]))];
    if (views.every((v) => v === 2) && confs.every((conf) => conf.voters.length + conf.learners.length === 2) && voters.length === 2) break;
    assert.ok(performance.now() - started < 20_000, `no single cluster after 20 s: members ${views}, confs ${JSON.stringify(confs)}`);
    await sleep(50);
  }
  const leaders = [a, b].filter((node) => node.kernel.consensus.isLeader);
  assert.equal(leaders.length, 1, "one leader");
  // One cluster: a write through either node is read through the other.
  const written = await new Promise<string>((resolve) => b.kernel.kvPut("found", new TextEncoder().encode("yes"), (o) => resolve(o.code)));
  assert.equal(written, "ok");
  const read = await new Promise<string>((resolve) => a.kernel.kvGet("found", (o) => resolve(o.code === "ok" ? new TextDecoder().decode(o.value) : o.code)));
  assert.equal(read, "yes");
});

test("beacons of another cluster (another token) and malformed ones are ignored", async () => {
  const port = PORT + 1;
  const mine = await startBeacon({ fingerprint: "aaaaaaaa", id: "0123456789abcdef", addr: "127.0.0.1:1", port, interface: "127.0.0.1" });
  const theirs = await startBeacon({ fingerprint: "bbbbbbbb", id: "fedcba9876543210", addr: "127.0.0.1:2", port, interface: "127.0.0.1" });
  const twin = await startBeacon({ fingerprint: "aaaaaaaa", id: "00000000000000aa", addr: "127.0.0.1:3", port, interface: "127.0.0.1" });
  await sleep(1_300);
  assert.deepEqual(mine.peers().map((p) => p.id), ["00000000000000aa"]);
  assert.ok(mine.stats.ignored >= 1, "the other cluster's beacons were ignored");
  await Promise.all([mine.close(), theirs.close(), twin.close()]);
});
