// The Body layer on real node processes (issue 3, acceptance 4 and 5): a guarded task survives the
// `kill -9` of its owner on exactly one survivor, promptly after the death is declared; a node
// killed and restarted restores its state from disk before it talks to anyone, and refutes the
// death the others hold against it. Vital signs reach every member.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { alive, restartNode, shellLine, startCluster, status, waitConverged, type Status } from "./cluster-helpers.ts";

test("heal and persist with real processes: kill -9 of a guarded task's owner, then its restart", { timeout: 120_000 }, async (t) => {
  const restarted: number[] = [];
  const { cluster, apis } = await startCluster(t, 3, restarted);

  // Vital signs: within a few seconds every node shows every member's.
  await waitFor(10_000, async () => {
    const all = await Promise.all(apis.map(status));
    return all.every((s) => s !== undefined && s.members.every((m) => m.vital !== null && m.vital.rssBytes > 0));
  }, "vital signs of every member at every node");
  const vital = await shellLine(apis[0] as string, "vital");
  assert.ok(vital.ok);
  for (const node of cluster.nodes) assert.match(vital.output, new RegExp(`^${node.id} `, "m"));

  const owner = cluster.nodes[2];
  assert.ok(owner !== undefined && owner.pid !== null);
  const defined = await shellLine(owner.api, "guard beat 0.2 ver");
  assert.ok(defined.ok, defined.output);
  await waitFor(5_000, async () => {
    const all = await Promise.all(apis.map(status));
    return all.every((s) => s?.guarded?.some((g) => g.name === "beat" && g.owner === owner.id) === true);
  }, "the guarded task replicated to every node");
  assert.deepEqual(await runners(apis), [owner.id]);
  const before = (await status(owner.api))?.members.find((m) => m.id === owner.id)?.incarnation ?? -1;

  process.kill(owner.pid, "SIGKILL");
  const killedAt = performance.now();
  const survivors = apis.slice(0, 2);
  let declaredAt: number | undefined;
  let adoptedAt: number | undefined;
  let adopter: string | undefined;
  while (adoptedAt === undefined) {
    assert.ok(performance.now() - killedAt < 30_000, "adopted within 30 s of the kill");
    const all = await Promise.all(survivors.map(status));
    if (declaredAt === undefined && all.some((s) => s?.members.find((m) => m.id === owner.id)?.state === "dead")) declaredAt = performance.now();
    const running = all.filter((s) => s?.guarded?.some((g) => g.name === "beat" && g.runningHere));
    if (running.length > 0) {
      assert.equal(running.length, 1, "one survivor adopts");
      adoptedAt = performance.now();
      adopter = running[0]?.id;
    }
    await sleep(10);
  }
  assert.ok(declaredAt !== undefined, "the death was declared before the task moved");
  t.diagnostic(`heal: dead declared ${(declaredAt - killedAt).toFixed(0)} ms after kill -9; task running on one survivor ${(adoptedAt - declaredAt).toFixed(0)} ms after that`);
  assert.ok(adoptedAt - declaredAt <= 1_000, `running ${adoptedAt - declaredAt} ms after the death was declared`);
  // It stays on exactly one node.
  for (let i = 0; i < 10; i++) {
    assert.deepEqual(await runners(survivors), [adopter]);
    await sleep(100);
  }
  const ps = await shellLine(apis[cluster.nodes.findIndex((n) => n.id === adopter)] as string, "ps");
  assert.match(ps.output, /guard:beat +guarded +running/);

  // persist: restart the old owner. Its first event says what it restored from disk, before any
  // packet: the members and the guarded task.
  const pid = restartNode(owner);
  restarted.push(pid);
  await waitFor(10_000, async () => (await status(owner.api)) !== undefined, "the restarted node's API");
  const first = await firstEvent(owner.api);
  assert.equal(first.type, "kernel-started");
  assert.equal(first.data["members"], 3, "members restored before any traffic");
  assert.equal(first.data["guarded"], 1, "the guarded task restored before any traffic");
  assert.ok((first.data["incarnation"] as number) > before);
  // The others held it dead; it refutes and is alive everywhere again with a higher incarnation,
  // and it does not take the task back (it was adopted at a higher epoch).
  await waitConverged(apis, 3, 15_000, (s: Status) => s.members.every((m) => m.state === "alive"));
  const seen = await Promise.all(apis.map(status));
  for (const s of seen) assert.ok((s?.members.find((m) => m.id === owner.id)?.incarnation ?? -1) > before);
  await sleep(500);
  assert.deepEqual(await runners(apis), [adopter], "the adopter keeps the task after the old owner returns");
  const persisted = await shellLine(owner.api, "persist list");
  assert.match(persisted.output, /^guarded +1 /m);
  assert.ok(alive(pid));
});

async function runners(apis: readonly string[]): Promise<string[]> {
  const all = await Promise.all(apis.map(status));
  return all.filter((s) => s?.guarded?.some((g) => g.name === "beat" && g.runningHere) === true).map((s) => s?.id ?? "");
}

/** The first event the node published (kernel-started), read from the start of /v1/events. */
async function firstEvent(api: string): Promise<{ type: string; data: Record<string, unknown> }> {
  const controller = new AbortController();
  const response = await fetch(`${api}/v1/events`, { signal: controller.signal });
  assert.ok(response.body !== null);
  const reader = response.body.getReader();
  let text = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
      const match = /^data: (.*)$/m.exec(text);
      if (match !== null) return JSON.parse(match[1] as string) as { type: string; data: Record<string, unknown> };
    }
  } finally {
    controller.abort();
  }
  assert.fail("no event");
}

async function waitFor<T>(timeoutMs: number, check: () => Promise<T | false | undefined>, what: string): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const result = await check();
    if (result !== false && result !== undefined) return result;
    assert.ok(performance.now() < deadline, `timed out waiting for ${what}`);
    await sleep(20);
  }
}
