// Issue 13, acceptance 1: each attack the issue saw, on real processes. Two core nodes run as
// child processes (`pk up --detach`); the attacker joined with a contributor invite code and runs
// modified software that seals whatever it likes with its own valid key (test/cli/attacker.ts).
// Every attack here worked before the trust work (the issue lists what each did); each subtest
// shows it no longer does: the victims' state is what it was, they still work, and the refusal is
// counted where an operator can see it (/metrics).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createIdentityFromSeed } from "../../src/adapters/identity.ts";
import { healRecordBody } from "../../src/core/body/heal.ts";
import { encodeGaRow, gaRowMessage } from "../../src/core/brain/ga.ts";
import { claimMessage, issueCert, signEntry } from "../../src/core/body/trust.ts";
import { entryToWire as sfsEntryToWire, SFS_COUNTER_MAX, sfsVersionBody, signedVersion, type SfsEntry } from "../../src/core/collective/sfs-version.ts";
import type { SfsEntryWire } from "../../src/core/collective/sfs-wire.ts";
import { encodeConfChange } from "../../src/core/collective/raft/confchange.ts";
import { message as raftMessage, type Message as RaftMessage } from "../../src/core/collective/raft/types.ts";
import { raftToWire } from "../../src/core/collective/raft/wire.ts";
import { encodeMessage } from "../../src/core/wire/codec.ts";
import { decodeHeader } from "../../src/core/wire/envelope.ts";
import { entryToWire, type GuardedTaskWire } from "../../src/core/wire/messages.ts";
import { GA_TOPIC } from "../../src/node/brain/service.ts";
import { alive, bearer, restartNode, shellLine, type ClusterNode } from "./cluster-helpers.ts";
import { arena, kvPut, metrics, series, statusOf, until, type Arena } from "./attacker.ts";

const DENIED = "pk_packets_dropped_total{reason=\"denied\"}";

/** Sum of a series over the victims. */
async function total(a: Arena, name: string): Promise<number> {
  let sum = 0;
  for (const v of a.victims) sum += series(await metrics(v.api), name);
  return sum;
}

function others(a: Arena, v: ClusterNode): ClusterNode[] {
  return a.victims.filter((n) => n.id !== v.id);
}

/** Every victim answers and holds the others alive, and the cluster still commits a write. */
async function stillWorks(a: Arena, what: string): Promise<void> {
  for (const v of a.victims) {
    assert.ok(v.pid !== null && alive(v.pid), `${what}: victim ${v.id} is still running`);
    const ids = others(a, v).map((o) => o.id);
    await until(`${what}: ${v.id} holds the other victims alive`, async () => (await statusOf(v.api)).members.filter((m) => ids.includes(m.id) && m.state === "alive").length === ids.length);
  }
  await until(`${what}: a write commits`, async () => (await kvPut(a.victims[0]!.api, a.token, `after-${what.replace(/\W+/g, "-")}`, "ok")) === 200);
}

test("attacks by an invited contributor on three real core nodes: none takes, each is counted (issue 13)", { timeout: 240_000 }, async (t) => {
  const a = await arena(t);
  const [v1, v2] = a.victims as [ClusterNode, ClusterNode, ClusterNode];
  const mallory = a.attacker.id;
  const voters = a.victims.map((v) => v.id).sort();
  await until("the three core nodes vote and the contributor is a learner", async () => {
    const s = await statusOf(v1.api);
    return s.raft.leader !== null && [...s.raft.voters].sort().join() === voters.join() && s.raft.learners.includes(mallory);
  });
  const before = await statusOf(v1.api);

  await t.test("raft: a proposal to reset the configuration to the attacker, votes, appends and a learner's replies at term +1000 — all denied", async () => {
    const leader = before.raft.leader;
    assert.ok(leader !== null);
    const term = before.raft.term;
    const reset = encodeConfChange({ changes: [], transition: "auto", reset: { voters: [mallory], epoch: 1_000_000 } });
    const conf = [{ term: 0, index: 0, type: "conf" as const, data: reset }];
    const attacks: RaftMessage[] = [
      raftMessage({ type: "prop", to: leader, from: mallory, entries: conf }),
      // Forwarded "for" a core node: the sender is still a contributor.
      raftMessage({ type: "prop", to: leader, from: leader === v1.id ? v2.id : v1.id, entries: conf }),
      raftMessage({ type: "vote", to: leader, from: mallory, term: term + 1000, logTerm: term + 1000, index: 1e9 }),
      raftMessage({ type: "prevote", to: leader, from: mallory, term: term + 1000, logTerm: term + 1000, index: 1e9 }),
      raftMessage({ type: "timeout-now", to: leader, from: mallory, term }),
      // A learner's own replies, at a term it cannot have learnt (the leader would step down).
      raftMessage({ type: "app-resp", to: leader, from: mallory, term: term + 1000, index: 1e9 }),
      raftMessage({ type: "heartbeat-resp", to: leader, from: mallory, term: term + 1000 }),
    ];
    const follower = leader === v1.id ? v2.id : v1.id;
    attacks.push(raftMessage({ type: "app", to: follower, from: mallory, term: term + 1000, entries: conf, commit: 1e6 }));
    attacks.push(raftMessage({ type: "heartbeat", to: follower, from: mallory, term: term + 1000, commit: 1e6 }));
    const denied = await total(a, DENIED);
    for (const m of attacks) a.part.send(m.to, "stream", raftToWire(m));
    await until("every raft attack is denied", async () => (await total(a, DENIED)) >= denied + attacks.length);
    await stillWorks(a, "raft");
    const after = await statusOf(v1.api);
    assert.deepEqual([...after.raft.voters].sort(), voters, "the voters are the three core nodes");
    assert.equal(after.raft.leader, leader, "the leader did not change");
    assert.equal(after.raft.term, term, "no term was raised");
  });

  await t.test("swim: accusations at incarnation 0xffffffff, forged leaves and deaths — no crash, no one is taken for dead or gone", async () => {
    const identity = a.attacker.kernel.ports.identity;
    const signed = (code: 1 | 2 | 3, id: string, incarnation: number, from: string): [1 | 2 | 3, string, number, string, Uint8Array] =>
      [code, id, incarnation, from, identity.sign(claimMessage({ leave: code === 3, id, incarnation, from }))];
    const refusedOf = async (v: ClusterNode): Promise<{ signature: number; leave: number }> => {
      const m = await metrics(v.api);
      return { signature: series(m, "pk_records_refused_total{kind=\"claim\",reason=\"signature\"}"), leave: series(m, "pk_records_refused_total{kind=\"claim\",reason=\"leave\"}") };
    };
    const before = await Promise.all(a.victims.map(refusedOf));
    // A claim is judged against the incarnation the receiver holds (one below it is old news,
    // dropped unchecked), so each receiver gets claims about a member at its own view of it, and
    // each member is the subject at one receiver only. The accusations of the receivers themselves
    // come after: a member refuting one raises its incarnation, and its alive news may reach
    // another receiver before the attacker's packet does.
    const views = await Promise.all(a.victims.map((v) => statusOf(v.api)));
    a.victims.forEach((v, i) => {
      const o = a.victims[(i + 1) % a.victims.length] as ClusterNode;
      const third = a.victims[(i + 2) % a.victims.length] as ClusterNode;
      const at = views[i]?.members.find((m) => m.id === o.id)?.incarnation ?? 0;
      a.part.send(v.id, "datagram", {
        t: "swim-gossip",
        updates: [
          // The attacker's own signed accusations of another, at its incarnation and far above it
          // (a contributor's "dead" is a suspicion).
          signed(2, o.id, at, mallory), signed(1, o.id, 0xffffffff, mallory),
          // A leave in the member's name, and one by the attacker: only the member says it left.
          signed(3, o.id, at, o.id), signed(3, o.id, at, mallory),
          // A death in a core member's name, signed by the attacker.
          signed(2, o.id, at, third.id),
        ],
      });
    });
    // Polled while the news spreads and is refuted: nobody is ever held dead or gone.
    const noneDeadOrGone = async (): Promise<void> => {
      for (const v of a.victims) {
        for (const m of (await statusOf(v.api)).members) assert.ok(m.state === "alive" || m.state === "suspect", `${v.id} holds ${m.id} ${m.state}`);
      }
    };
    await until("forged claims (a leave and a death in others' names) and leaves said by another counted on every victim", async () => {
      await noneDeadOrGone();
      const after = await Promise.all(a.victims.map(refusedOf));
      return after.every((r, i) => r.signature >= (before[i]?.signature ?? 0) + 2 && r.leave >= (before[i]?.leave ?? 0) + 1);
    });
    // The attacker's accusation of the receiver itself at the end of the incarnation space.
    for (const v of a.victims) a.part.send(v.id, "datagram", { t: "swim-gossip", updates: [signed(2, v.id, 0xffffffff, mallory)] });
    const deadline = Date.now() + 2_000;
    while (Date.now() < deadline) await noneDeadOrGone();
    await stillWorks(a, "swim");
    for (const v of a.victims) {
      const s = await statusOf(v.api);
      for (const m of s.members) assert.ok(m.incarnation < 1_000, `${m.id}'s incarnation is ${m.incarnation}: accusations above what the member signed are clamped`);
      assert.deepEqual([...s.raft.voters].sort(), voters, "no voter was removed");
    }
  });

  await t.test("swim: an alive entry for a fresh key claiming core, and the attacker claiming core for itself — refused and counted", async () => {
    const ghost = createIdentityFromSeed(new Uint8Array(32).fill(0x66));
    const fakeOwner = createIdentityFromSeed(new Uint8Array(32).fill(0x77));
    const fakeCert = issueCert(fakeOwner, ghost.publicKey, { role: "core", issuedMs: Date.now(), expiresMs: 0 });
    const ghostEntry = signEntry(ghost, { id: ghost.id, addr: "127.0.0.1:9", role: "core", name: "ghost", incarnation: 1, epoch: Date.now() }, fakeCert);
    const self = a.attacker.kernel.self;
    const promoted = signEntry(a.attacker.kernel.ports.identity, { id: self.id, addr: self.addr, role: "core", name: self.name, incarnation: self.incarnation + 5, epoch: self.epoch }, self.cert);
    const certRefusals = await total(a, "pk_records_refused_total{kind=\"entry\",reason=\"cert\"}");
    const roleRefusals = await total(a, "pk_records_refused_total{kind=\"entry\",reason=\"role\"}");
    for (const v of a.victims) a.part.send(v.id, "datagram", { t: "swim-gossip", updates: [[0, entryToWire(ghostEntry)], [0, entryToWire(promoted)]] });
    await until("both refusals are counted on every victim", async () =>
      (await total(a, "pk_records_refused_total{kind=\"entry\",reason=\"cert\"}")) >= certRefusals + a.victims.length
      && (await total(a, "pk_records_refused_total{kind=\"entry\",reason=\"role\"}")) >= roleRefusals + a.victims.length);
    for (const v of a.victims) {
      const s = await statusOf(v.api);
      assert.ok(!s.members.some((m) => m.id === ghost.id), "the fresh key is no member");
      assert.equal(s.members.find((m) => m.id === mallory)?.role, "contributor", "the attacker is still a contributor");
    }
    await stillWorks(a, "alive");
  });

  await t.test("wire: a packet under another member's id, and one at epoch 2^53−1 — neither opens; the member is still heard", async () => {
    const identity = a.attacker.kernel.ports.identity;
    const seal = a.attacker.kernel.ports.seal;
    const pub = a.attacker.kernel.swim.keyOf(v1.id);
    const epoch = a.attacker.kernel.swim.epochOf(v1.id);
    assert.ok(pub !== undefined && epoch !== undefined);
    const body = encodeMessage({ t: "ping", seq: 1, sent: 1 });
    // Sealed by the attacker for v1 at the largest epoch, then its sender id rewritten to v2's.
    const forged = seal.seal("datagram", Number.MAX_SAFE_INTEGER, 1, body, { id: v1.id, pub, epoch });
    forged.set(Buffer.from(v2.id, "hex"), 4);
    const header = decodeHeader(forged);
    assert.ok(header.ok && header.header.sender === v2.id && header.header.epoch === Number.MAX_SAFE_INTEGER);
    // The same for a stream frame's sender field is covered by the tag alike; one datagram suffices.
    const dropped = async (): Promise<number> => {
      const m = await metrics(v1.api);
      return series(m, "pk_packets_dropped_total{reason=\"auth\"}") + series(m, "pk_packets_dropped_total{reason=\"replay\"}") + series(m, "pk_packets_dropped_total{reason=\"unknown\"}");
    };
    const droppedBefore = await dropped();
    const socket = createSocket("udp4");
    const [host, port] = v1.listen.split(":");
    await new Promise<void>((resolve, reject) => socket.send(forged, Number(port), host, (error) => (error ? reject(error) : resolve())));
    socket.close();
    await until("the forged packet is dropped", async () => (await dropped()) >= droppedBefore + 1);
    assert.equal(identity.id, mallory);
    // v2 is still heard: its packets keep arriving and it stays alive for some SWIM periods.
    const heard = series(await metrics(v1.api), "pk_packets_total{channel=\"datagram\",direction=\"in\"}");
    await sleep(1_500);
    assert.ok(series(await metrics(v1.api), "pk_packets_total{channel=\"datagram\",direction=\"in\"}") > heard);
    await stillWorks(a, "epoch");
  });

  await t.test("transport: 300 idle TCP connections and a forged 16 MiB frame — the members still talk; both are refused and counted", async () => {
    const [host, portText] = v1.listen.split(":");
    const port = Number(portText);
    const refused = async (): Promise<number> => {
      const m = await metrics(v1.api);
      let sum = 0;
      for (const reason of ["connections", "per-address", "unauthenticated", "first-frame-size", "first-frame-deadline", "evicted"]) sum += series(m, `pk_transport_refused_total{reason="${reason}"}`);
      return sum;
    };
    const refusedBefore = await refused();
    const sockets: Socket[] = [];
    for (let i = 0; i < 300; i++) {
      const s = connect({ host, port });
      s.on("error", () => undefined);
      sockets.push(s);
    }
    t.after(() => {
      for (const s of sockets) s.destroy();
    });
    await sleep(500);
    // The 16 MiB frame: a length prefix and the start of its bytes; nothing of it may be buffered.
    const big = connect({ host, port });
    const closed = new Promise<void>((resolve) => big.once("close", () => resolve()));
    big.on("error", () => undefined);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(16 * 1024 * 1024);
    big.write(Buffer.concat([prefix, Buffer.alloc(64 * 1024, 0x5a)]));
    await closed;
    // The members' own stream traffic (a forwarded write through the follower) still flows.
    await stillWorks(a, "connections");
    assert.ok(await kvPut(v2.api, a.token, "through-the-follower", "ok") === 200);
    assert.ok((await refused()) >= refusedBefore + 1, "refusals are counted");
    for (const s of sockets) s.destroy();
  });

  await t.test("http: a DNS-rebinding Host, a foreign Origin and no credential cannot run a shell line on a real node", async () => {
    const url = new URL(v1.api);
    const post = (headers: Record<string, string>): Promise<number> => new Promise((resolve, reject) => {
      const req = request({ host: url.hostname, port: Number(url.port), path: "/v1/shell", method: "POST", headers: { "Content-Type": "application/json", ...headers } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end(JSON.stringify({ line: "write /shared/pwned yes" }));
    });
    assert.equal(await post({ Host: `attacker.example:${url.port}`, Authorization: `Bearer ${a.token}` }), 403);
    assert.equal(await post({ Host: url.host, Origin: "http://attacker.example", Authorization: `Bearer ${a.token}` }), 403);
    assert.equal(await post({ Host: url.host }), 401);
    assert.equal(await post({ Host: url.host, Authorization: `Bearer ${a.token}` }), 200, "the owner's own request still works");
  });

  await t.test("heal: records in a core node's name at the largest epoch, and one owned by the contributor — run nowhere, counted; guard rm still works", async () => {
    assert.ok((await shellLine(v1.api, "guard canary 3600 vital", a.token)).ok);
    await until("the canary is on every victim", async () => (await Promise.all(a.victims.map((v) => statusOf(v.api)))).every((s) => (s.guarded ?? []).some((g) => g.name === "canary")));
    const records = a.attacker.kernel.records;
    const signed = (task: { name: string; command: string; everyTicks: number; owner: string; epoch: number; removed: boolean }): GuardedTaskWire =>
      [task.name, task.command, task.everyTicks, task.owner, task.epoch, task.removed, records.publicKey, records.sign("heal", healRecordBody(task))];
    const forged = [
      // In v1's name (the attacker's key is not v1's), run every tick, at the end of the epoch space.
      signed({ name: "pwned", command: "topic pub pwned owned yes", everyTicks: 1, owner: v1.id, epoch: 0xffffffff, removed: false }),
      // The canary removed in v1's name, one epoch up.
      signed({ name: "canary", command: "vital", everyTicks: 3600 * 10, owner: v1.id, epoch: 1_000, removed: true }),
      // The attacker's own task: signed by its owner, but a contributor defines none.
      signed({ name: "mine", command: "topic pub pwned mine yes", everyTicks: 1, owner: mallory, epoch: 1, removed: false }),
    ];
    const refused = async (): Promise<number> => {
      let sum = 0;
      for (const reason of ["epoch", "signature", "role"]) sum += await total(a, `pk_guard_records_refused_total{reason="${reason}"}`);
      return sum;
    };
    const before = await refused();
    for (const v of a.victims) a.part.send(v.id, "stream", { t: "heal", reply: false, tasks: forged });
    await until("every forged record is refused on every victim", async () => (await refused()) >= before + forged.length * a.victims.length);
    await sleep(1_000);
    for (const v of a.victims) {
      const s = await statusOf(v.api);
      assert.deepEqual((s.guarded ?? []).map((g) => g.name), ["canary"], `${v.id} holds only the canary`);
      const rows = await (await fetch(`${v.api}/v1/topics/pwned`, { headers: bearer(a.token) })).json() as { rows: unknown[] };
      assert.equal(rows.rows.length, 0, "no forged task ran anywhere");
    }
    assert.ok((await shellLine(v2.api, "guard rm canary", a.token)).ok);
    await until("the removal reaches every victim", async () => (await Promise.all(a.victims.map((v) => statusOf(v.api)))).every((s) => (s.guarded ?? []).length === 0));
  });

  await t.test("gossip: a delta claiming a core node's own origin up to 2^53−1, and a range hiding another's rows — its writes still go everywhere", async () => {
    const [v3] = a.victims.filter((v) => v.id !== v1.id && v.id !== v2.id) as [ClusterNode];
    a.part.send(v1.id, "datagram", { t: "gossip", h: 3, n: 0, d: [], r: [[v1.id, 0, Number.MAX_SAFE_INTEGER, []]], g: [] });
    a.part.send(v1.id, "datagram", { t: "gossip", h: 3, n: 0, d: [], r: [[v2.id, 0, Number.MAX_SAFE_INTEGER - 1, []]], g: [[v2.id, Number.MAX_SAFE_INTEGER - 1, Date.now(), 0]] });
    await sleep(500);
    assert.ok((await shellLine(v1.api, "topic pub after own yes", a.token)).ok, "the victim still writes its topics");
    assert.ok((await shellLine(v2.api, "topic pub after other yes", a.token)).ok);
    for (const v of [v1, v2, v3]) {
      await until(`both rows reach ${v.id}`, async () => {
        const body = await (await fetch(`${v.api}/v1/topics/after`, { headers: bearer(a.token) })).json() as { rows: Array<{ key: string; origin: string }> };
        return body.rows.some((r) => r.key === "own" && r.origin === v1.id) && body.rows.some((r) => r.key === "other" && r.origin === v2.id);
      });
    }
  });

  await t.test("sfs: a folder at counter 2^48 does not make writes report success while nothing reaches the manifest; the model file cannot be replaced; 40 files of 4 GiB get only the quota", async () => {
    const records = a.attacker.kernel.records;
    const entry = (fields: Omit<SfsEntry, "pub" | "sig" | "signedAs">): SfsEntryWire => {
      const unsigned: SfsEntry = { ...fields, pub: records.publicKey, sig: new Uint8Array(64), signedAs: undefined };
      return sfsEntryToWire({ ...unsigned, sig: records.sign("sfs", sfsVersionBody(signedVersion(unsigned))) }, fields.dir === false);
    };
    a.part.send(v1.id, "stream", { t: "sfs-entries", e: [entry({ path: "pinned", counter: SFS_COUNTER_MAX, origin: mallory, deleted: false, dir: true, size: 0, mtimeMs: 1, sha256: "", chunkBytes: 1024, chunks: [], vv: [[mallory, SFS_COUNTER_MAX]] })], w: [] });
    await sleep(500);
    const wrote = await shellLine(v1.api, "write /shared/after-pinned.txt still-written", a.token);
    assert.ok(wrote.ok, wrote.output);
    for (const v of a.victims) {
      await until(`the write reaches ${v.id}`, async () => (await shellLine(v.api, "cat /shared/after-pinned.txt", a.token)).output.includes("still-written"));
    }
    const chunkBytes = 4 * 1024 * 1024;
    const size = 4 * 1024 * 1024 * 1024;
    const hashes = Array.from({ length: size / chunkBytes }, () => "ab".repeat(32));
    for (let k = 0; k < 40; k += 10) {
      const e = Array.from({ length: 10 }, (_, j) => entry({ path: `huge/${k + j}.bin`, counter: k + j + 1, origin: mallory, deleted: false, dir: false, size, mtimeMs: 1, sha256: "cd".repeat(32), chunkBytes, chunks: hashes, vv: [[mallory, k + j + 1]] }));
      a.part.send(v1.id, "stream", { t: "sfs-entries", e, w: [] });
    }
    // The model file, in the contributor's own (signed) name: /shared/brain/ is core members' only.
    a.part.send(v1.id, "stream", { t: "sfs-entries", e: [entry({ path: "brain/model.pkm", counter: 1_000, origin: mallory, deleted: true, dir: false, size: 0, mtimeMs: 1, sha256: "", chunkBytes: 1024, chunks: [], vv: [[mallory, 1_000]] })], w: [] });
    await until("v1 refused the contributor's model file", async () => /core-only folders [1-9]/.test((await shellLine(v1.api, "sfs status", a.token)).output));
    assert.equal((await shellLine(v1.api, "sfs stat /shared/brain/model.pkm", a.token)).output, "no such file in the manifest");
    await until("v1 refused what is over the quota", async () => /refused\s+quota (2[4-9]|[3-9][0-9])/.test((await shellLine(v1.api, "sfs status", a.token)).output));
    const listed = (await shellLine(v1.api, "sfs list huge/", a.token)).output.split("\n").filter((line) => line.startsWith("huge/"));
    assert.ok(listed.length <= 16, `only 64 GiB of the attacker's files wait to be fetched (${listed.length} listed)`);
    await stillWorks(a, "sfs");
  });

  await t.test("brain: a GA mutation the contributor signed is followed nowhere; the model in use stays", async () => {
    const init = await shellLine(v1.api, "dtr init seed 7", a.token);
    assert.ok(init.ok, init.output);
    const tagOf = async (v: ClusterNode): Promise<string> => /tag (\S+)/.exec((await shellLine(v.api, "dtr stat", a.token)).output)?.[1] ?? "";
    const tag = await tagOf(v1);
    for (const v of a.victims) await until(`${v.id} uses the core node's model`, async () => (await tagOf(v)) === tag);
    // The model file reaches the attacker through the shared folder (the sfs subtest's files, which
    // nobody can serve, wait beside it without holding the fetch places).
    await until("the attacker has it too", () => a.attacker.kernel.brain.model.tag === tag);
    const identity = a.attacker.kernel.ports.identity;
    const fields = { seed: 12345, sigma: 0.5, tag: "f".repeat(16), loss: 0, origin: mallory };
    const row = encodeGaRow({ ...fields, signature: identity.sign(gaRowMessage(tag, fields)) });
    const untrusted = async (): Promise<number> => total(a, "pk_brain_ga_rows_total{outcome=\"untrusted\"}");
    const before = await untrusted();
    // A contributor may write gossip rows of its own; the Brain follows GA rows only from core members.
    assert.equal(a.attacker.kernel.topicPublish(GA_TOPIC, tag, row), undefined);
    await until("every victim refuses the row for its signer", async () => (await untrusted()) >= before + a.victims.length);
    for (const v of a.victims) assert.equal(await tagOf(v), tag, `${v.id} keeps the model in use`);
  });

  await t.test("replay: packets the attacker sent before a victim's restart are refused after it (stale epoch), counted", async () => {
    const transport = a.attacker.kernel.ports.transport;
    const captured: Uint8Array[] = [];
    const send = transport.send.bind(transport);
    transport.send = (to, channel, packet) => {
      if (to === v2.listen && channel === "datagram") {
        const h = decodeHeader(packet);
        if (h.ok && !h.header.intro && captured.length < 50) captured.push(packet.slice());
      }
      send(to, channel, packet);
    };
    await until("some of the attacker's packets to v2 are captured", () => captured.length >= 10);
    transport.send = send;
    assert.ok(v2.pid !== null);
    process.kill(v2.pid, "SIGKILL");
    await until("v2 is gone", () => !alive(v2.pid as number));
    (v2 as { pid: number | null }).pid = restartNode(v2);
    a.extraPids.push(v2.pid as number);
    await until("v2 is back", async () => (await statusOf(v2.api).catch(() => undefined)) !== undefined).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; its log ends: ${readFileSync(join(v2.data, "node.log"), "utf8").slice(-2_000)}`);
    });
    await stillWorks(a, "restart");
    const replays = series(await metrics(v2.api), "pk_packets_dropped_total{reason=\"replay\"}");
    const socket = createSocket("udp4");
    const [host, port] = v2.listen.split(":");
    for (const packet of captured) await new Promise<void>((resolve, reject) => socket.send(packet, Number(port), host, (error) => (error ? reject(error) : resolve())));
    socket.close();
    await until("every replayed packet is dropped as a replay", async () => series(await metrics(v2.api), "pk_packets_dropped_total{reason=\"replay\"}") >= replays + captured.length);
    await stillWorks(a, "replay");
  });
});
