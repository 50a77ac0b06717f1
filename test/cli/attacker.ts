// The arena for attacks on real processes (issue 13, acceptance 1): three core nodes started by
// `pk up --detach` (child processes with the owner key, real UDP and TCP), and an attacker that
// joined the way any stranger's machine does — with a contributor invite code from `invite` — and
// then runs modified software: a node in this test process whose extra subsystem sends whatever
// messages it likes, sealed with its own valid key, to the victims.
import { type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Channel } from "../../src/core/wire/envelope.ts";
import type { Message } from "../../src/core/wire/messages.ts";
import { SUBSYSTEMS } from "../../src/node/registry.ts";
import { runNode, type RunningNode } from "../../src/node/run.ts";
import { defineSubsystem, type SubsystemContext, type SubsystemSpec } from "../../src/node/subsystem.ts";
import { bearer, shellLine, startCluster, type Cluster, type ClusterNode, type Status } from "./cluster-helpers.ts";

/** The attacker's own subsystem: no kinds of its own, only the node's outbox. */
export class AttackerPart {
  readonly ctx: SubsystemContext;
  constructor(ctx: SubsystemContext) {
    this.ctx = ctx;
  }
  #stopped = false;
  send(to: string, channel: Channel, message: Message): void {
    assert.ok(!this.#stopped, "the attacker's node has stopped");
    this.ctx.send(to, channel, message);
  }
  stop(): void {
    this.#stopped = true;
  }
}

export const ATTACKER = defineSubsystem({ name: "attacker", kinds: {}, create: (ctx) => new AttackerPart(ctx) });

export interface StatusBody extends Status {
  raft: { state: string; term: number; leader: string | null; voters: string[]; learners: string[]; commitIndex: number };
  members: Array<Status["members"][number] & { role: string; name: string }>;
}

export interface Arena {
  readonly dir: string;
  readonly cluster: Cluster;
  readonly token: string;
  readonly victims: readonly ClusterNode[];
  readonly attacker: RunningNode;
  readonly part: AttackerPart;
  /** Pids of victims restarted by a test, killed at its end like the ones cluster.json records. */
  readonly extraPids: number[];
}

/** Until `ok()` holds, polled every 50 ms; fails naming `what` after `ms`. */
export async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    assert.ok(Date.now() < deadline, `timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

export async function statusOf(api: string): Promise<StatusBody> {
  const response = await fetch(`${api}/v1/status`, { signal: AbortSignal.timeout(20_000) });
  assert.equal(response.status, 200);
  return await response.json() as StatusBody;
}

/** Every series of /metrics by its full name with labels, e.g. `pk_packets_dropped_total{reason="denied"}`. */
export async function metrics(api: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${api}/metrics`, { signal: AbortSignal.timeout(20_000) })).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const space = line.lastIndexOf(" ");
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

export function series(all: Map<string, number>, name: string): number {
  const value = all.get(name);
  assert.ok(value !== undefined, `/metrics has ${name}`);
  return value;
}

/** PUT /v1/kv/KEY with the token: the status code (200 when the cluster can still write). */
export async function kvPut(api: string, token: string, key: string, value: string): Promise<number> {
  const response = await fetch(`${api}/v1/kv/${encodeURIComponent(key)}`, {
    method: "PUT", headers: { ...bearer(token), "Content-Type": "application/octet-stream" }, body: value, signal: AbortSignal.timeout(20_000),
  });
  await response.arrayBuffer();
  return response.status;
}

/**
 * Three core nodes (`pk up --detach --nodes 3`), and the attacker: an invited contributor running the
 * registry's subsystems plus ATTACKER, in this process. Resolves once both victims hold it alive.
 */
export async function arena(t: TestContext, extra: readonly SubsystemSpec[] = []): Promise<Arena> {
  const extraPids: number[] = [];
  const { dir, cluster, apis } = await startCluster(t, 3, extraPids);
  const token = cluster.token;
  // The nodes' own idle work (the DMN: GA generations, training the seed model, consolidating
  // memories) would change the model and the memory under the checks; it is not under test here.
  for (const api of apis) {
    const off = await shellLine(api, "dmn off", token);
    assert.ok(off.ok, off.output);
  }
  const invite = await shellLine(apis[0] as string, "invite --role contributor --ttl 10m", token);
  assert.ok(invite.ok, invite.output);
  const code = invite.output.split("\n")[0] as string;
  const data = mkdtempSync(join(tmpdir(), "pk-attacker-"));
  const attacker = await runNode({
    data, name: "mallory", env: {}, invite: code, discover: false,
    subsystems: [...SUBSYSTEMS, ATTACKER, ...extra] as unknown as readonly SubsystemSpec[],
  });
  t.after(async () => {
    await attacker.stop();
    rmSync(data, { recursive: true, force: true });
  });
  assert.equal(attacker.kernel.self.role, "contributor");
  attacker.kernel.dmn.clock.enabled = false;
  for (const api of apis) {
    await until("the victims hold the attacker alive", async () => (await statusOf(api)).members.some((m) => m.id === attacker.id && m.state === "alive"));
  }
  await until("the attacker knows every victim", () => cluster.nodes.every((n) => attacker.kernel.swim.member(n.id)?.state === "alive"));
  return { dir, cluster, token, victims: cluster.nodes, attacker, part: attacker.kernel.subsystem<AttackerPart>("attacker"), extraPids };
}

/** The cluster token as the data folder keeps it (for tests that read it like `pk shell` does). */
export function tokenOf(node: ClusterNode): string {
  return readFileSync(join(node.data, "token"), "utf8").trim();
}
