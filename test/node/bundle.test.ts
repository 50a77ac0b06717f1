// The bundle subsystem on real nodes in this process (real UDP/TCP, SQLite, DATA/bundles/ on disk),
// issue 16 acceptance 3: a rogue member — a contributor that joined with an invite code and runs
// modified software — serves a modified bundle, advertises an unsigned one, one signed by its own
// key, an older version and an expired one; each is refused and counted by reason and peer, and the
// victim's fetch completes from the honest peers, verified, installed in DATA/bundles/<address>/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, hash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { BundleFiles } from "../../src/adapters/bundle-files.ts";
import { provisionOwnerKey } from "../../src/adapters/trust-files.ts";
import { identityFromPrivateKey, createIdentityFromSeed } from "../../src/adapters/identity.ts";
import { HASH_LIST_INDEX } from "../../src/core/evolve/bundle-fetch.ts";
import {
  chunkLength, encodeBundleFile, makeRelease, packBundle, rootDocument, signEnvelope, type Release, type Targets,
} from "../../src/core/evolve/bundle.ts";
import { toHex } from "../../src/core/util/bytes.ts";
import type { MessageOf } from "../../src/core/wire/messages.ts";
import type { Invites } from "../../src/node/body/invites.ts";
import { BUNDLE, type BundlePart } from "../../src/node/evolve/bundle.ts";
import { SUBSYSTEMS } from "../../src/node/registry.ts";
import { runNode, type RunningNode } from "../../src/node/run.ts";
import { defineSubsystem, type Subsystem, type SubsystemContext, type SubsystemSpec } from "../../src/node/subsystem.ts";

const sha256 = (d: Uint8Array) => new Uint8Array(hash("sha256", d, "buffer"));
const DAY = 86_400_000;

async function until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    assert.ok(Date.now() < deadline, `timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

type Forgery = "unsigned" | "contributor" | "older" | "expired";

/** The rogue's bundle subsystem: owns the bundle kinds in its node, and lies with them. */
class RogueBundle implements Subsystem<"bundle-have" | "bundle-get" | "bundle-chunk"> {
  readonly ctx: SubsystemContext;
  real: { release: Release; stream: Uint8Array; targets: Targets; hashes: Uint8Array; version: number } | undefined;
  forged = new Map<Forgery, Release>();
  served = 0;
  constructor(ctx: SubsystemContext) {
    this.ctx = ctx;
  }
  tick(tick: number): void {
    const real = this.real;
    if (real === undefined || tick % 20 !== 0) return;
    for (const id of this.ctx.members.liveIds()) this.ctx.send(id, "stream", { t: "bundle-have", v: 0, n: real.version, r: real.release.root, g: real.release.targets });
  }
  step(from: string, m: MessageOf<"bundle-have" | "bundle-get" | "bundle-chunk">): void {
    const real = this.real;
    if (m.t !== "bundle-get" || real === undefined) return;
    let d: Uint8Array;
    if (m.i === HASH_LIST_INDEX) d = real.hashes; // honest list: the lie is in the chunks
    else {
      const start = m.i * real.targets.chunkBytes;
      d = real.stream.slice(start, start + chunkLength(real.targets, m.i));
      d[d.length >> 1] = (d[d.length >> 1] as number) ^ 0x5a;
    }
    this.served++;
    this.ctx.send(from, "stream", { t: "bundle-chunk", h: m.h, i: m.i, s: 0, d });
  }
  forge(kind: Forgery, to: string): void {
    const r = this.forged.get(kind);
    assert.ok(r !== undefined);
    this.ctx.send(to, "stream", { t: "bundle-have", v: 0, n: 9, r: r.root, g: r.targets });
  }
}

const ROGUE = defineSubsystem({ name: "bundle", kinds: BUNDLE.kinds, create: (ctx) => new RogueBundle(ctx) });

function files(version: number): Array<{ path: string; mode: number; data: Uint8Array }> {
  return [
    { path: "package.json", mode: 0o644, data: new TextEncoder().encode(`{"name":"p-kernel","version":"0.${version}.0"}`) },
    { path: "dist/src/cli/main.js", mode: 0o644, data: new Uint8Array(1_500_000).map((_, i) => (i * 131 + version * 7 + (i >> 9)) & 255) },
    { path: "bin/pk.js", mode: 0o755, data: new TextEncoder().encode("#!/usr/bin/env node\n") },
  ];
}

test("bundle: a rogue contributor's modified chunks and forged, unsigned, older and expired releases are refused and counted; the fetch completes from honest peers", { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pk-bundle-"));
  const nodes: RunningNode[] = [];
  t.after(async () => {
    for (const n of nodes.reverse()) await n.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const a = await runNode({ data: join(dir, "a"), name: "a", env: {}, discover: false });
  nodes.push(a);
  await until("a leads", () => a.kernel.consensus.isLeader);
  const ownerKey = join(dir, "a", "owner.key");
  const owner = identityFromPrivateKey(createPrivateKey({ key: readFileSync(ownerKey), format: "pem" }));
  const b = await runNode({ data: join(dir, "b"), name: "b", env: {}, discover: false, join: [a.listen], token: a.token, ownerKey });
  nodes.push(b);
  const { code } = await a.kernel.subsystem<Invites>("invites").create("contributor", 60_000);
  const m = await runNode({
    data: join(dir, "m"), name: "mallory", env: {}, discover: false, invite: code,
    subsystems: SUBSYSTEMS.map((s) => (s.name === "bundle" ? ROGUE : s)) as unknown as readonly SubsystemSpec[],
  });
  nodes.push(m);
  assert.equal(m.kernel.self.role, "contributor");
  const d = await runNode({ data: join(dir, "d"), name: "d", env: {}, discover: false, join: [a.listen], token: a.token, ownerKey });
  nodes.push(d);
  const all = [a, b, m, d];
  await until("every node holds every other alive", () => all.every((x) => all.every((y) => x === y || x.kernel.swim.member(y.id)?.state === "alive")));

  // The release: v2 signed by the owner key; and the rogue's forgeries.
  const nowMs = Date.now();
  const stream = (v: number) => {
    const p = packBundle(files(v));
    assert.ok(p.ok);
    return p.value;
  };
  const release = (v: number, signer = owner, ttl = 30 * DAY) => makeRelease({
    stream: stream(v), version: v, nowMs, targetsTtlMs: ttl, rootTtlMs: 365 * DAY, rootVersion: 1, node: ">=22.18", name: `test v${v}`, owner: signer,
  }, { sha256 });
  const v2 = release(2);
  const v2stream = stream(2);
  const id = toHex(v2.targets.address);
  const rogue = m.kernel.subsystem<RogueBundle>("bundle");
  const stranger = createIdentityFromSeed(new Uint8Array(32).fill(9));
  const contributorSigned = makeRelease({ ...{ stream: stream(9), version: 9, nowMs, targetsTtlMs: DAY, rootTtlMs: DAY, rootVersion: 1, node: ">=22.18", name: "evil" }, owner: stranger }, { sha256 });
  rogue.forged.set("unsigned", { root: signEnvelope(rootDocument({ version: 1, expiresMs: nowMs + DAY, rootKeys: [owner.publicKey], rootThreshold: 1, targetsKeys: [owner.publicKey], targetsThreshold: 1 }), []), targets: v2.release.targets });
  rogue.forged.set("contributor", contributorSigned.release);
  rogue.forged.set("older", release(1).release);
  rogue.forged.set("expired", release(3, owner, -1).release);

  // The rogue advertises the real v2 first, alone: d (and the others) start fetching from it.
  rogue.real = { release: v2.release, stream: v2stream, targets: v2.targets, hashes: v2.hashes, version: 2 };
  const part = (n: RunningNode) => n.kernel.subsystem<BundlePart>("bundle");
  await until("d fetches v2 from the rogue", () => part(d).fetch?.release.id === id);
  await until("d refuses the rogue's modified chunks and drops it", () => (part(d).refusals.get("modified")?.get(m.id) ?? 0) >= 3, 20_000);
  assert.equal(part(d).fetch?.done, false, "nothing from the rogue completes it");

  // Honest peers get the bundle (a file `pk bundle` would write), verified on the way in.
  for (const n of [a, b]) {
    const added = await part(n).add(encodeBundleFile(v2.release, v2stream));
    assert.ok(!("error" in added), JSON.stringify(added));
    assert.equal(added.version, 2);
  }
  assert.deepEqual(await part(a).add(encodeBundleFile(rogue.forged.get("contributor") as Release, stream(9))), { error: "key: root: not signed by the owner key" });

  // The forgeries, one at a time (a peer's adverts are verified at most every 50 ticks).
  const reasons: Record<Forgery, string> = { unsigned: "unsigned", contributor: "key", older: "older", expired: "expired" };
  for (const kind of ["unsigned", "contributor", "older", "expired"] as const) {
    await until(`d counts the ${kind} release`, () => {
      if ((part(d).refusals.get(reasons[kind] as never)?.get(m.id) ?? 0) >= 1) return true;
      rogue.forge(kind, d.id);
      return false;
    }, 15_000);
  }

  await until("d completes v2 from the honest peers", () => part(d).ready()?.id === id, 30_000);
  const ready = part(d).ready();
  assert.ok(ready !== undefined);
  assert.equal(ready.version, 2);
  assert.equal(ready.path, join(dir, "d", "bundles", id));
  assert.deepEqual(new Uint8Array(readFileSync(join(ready.path, "dist/src/cli/main.js"))), files(2)[1]?.data);
  assert.ok(existsSync(join(ready.path, ".pk-bundle", "stream.pkb")));
  const progress = part(d).fetch?.progress(d.kernel.tickCount);
  assert.ok(progress !== undefined && progress.done === progress.chunks);
  const served = progress.peers.filter((p) => p.received > 0 && p.id !== m.id).map((p) => p.id).sort();
  assert.ok(served.length >= 1 && served.every((p) => p === a.id || p === b.id), `served by honest peers: ${served.join(", ")}`);
  assert.equal(progress.peers.find((p) => p.id === m.id)?.dropped, true);
  // Counted by reason and peer, and nothing counted against the honest ones.
  for (const [reason, byPeer] of part(d).refusals) for (const peer of byPeer.keys()) assert.equal(peer, m.id, `${reason} counted against ${peer}`);
  const metrics = await (await fetch(`${d.api}/metrics`)).text();
  for (const reason of ["modified", "unsigned", "key", "older", "expired"]) assert.match(metrics, new RegExp(`pk_bundle_refusals_total\\{reason="${reason}",peer="${m.id}"\\} [1-9]`));
  assert.match(metrics, /pk_bundle_version\{which="ready"\} 2/);
  const events = d.kernel.events.since(0).map((e) => e.type);
  assert.ok(events.includes("bundle-ready"), events.join(","));
  const status = part(d).status();
  if (process.env["PK_SHOW"] !== undefined) process.stdout.write(`${status}\n`);
  assert.match(status, /ready\s+v2 at /);
  assert.ok(rogue.served >= 3);
});

test("bundle: a node started from a bundle (DATA/bundles/current) runs its version; an older bundle is refused, a newer one is ready", { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pk-bundle-run-"));
  const running: RunningNode[] = [];
  t.after(async () => {
    for (const n of running) await n.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  // The owner key as `pk up` provides it; the bundles put in place as the rollout would, before the node starts.
  mkdirSync(join(dir, "a"), { mode: 0o700 });
  provisionOwnerKey(dir, join(dir, "a"));
  const owner = identityFromPrivateKey(createPrivateKey({ key: readFileSync(join(dir, "a", "owner.key")), format: "pem" }));
  const nowMs = Date.now();
  const make = (v: number) => {
    const p = packBundle(files(v));
    assert.ok(p.ok);
    return { made: makeRelease({ stream: p.value, version: v, nowMs, targetsTtlMs: DAY, rootTtlMs: DAY, rootVersion: 1, node: ">=22.18", name: `v${v}`, owner }, { sha256 }), stream: p.value };
  };
  const [v1, v2, v3] = [make(1), make(2), make(3)];
  const store = new BundleFiles(join(dir, "a"));
  const id2 = toHex(v2.made.targets.address);
  await store.install(id2, v2.made.release, v2.stream);
  writeFileSync(join(dir, "a", "bundles", "current"), `${id2}\n`);
  const a = await runNode({ data: join(dir, "a"), name: "a", env: {}, discover: false });
  running.push(a);
  const part = a.kernel.subsystem<BundlePart>("bundle");
  await until("the bundles read", () => part.running.version === 2);
  assert.equal(part.running.id, id2);
  assert.equal(part.ready(), undefined, "nothing newer than what runs");
  const older = await part.add(encodeBundleFile(v1.made.release, v1.stream));
  assert.ok("error" in older && /^older: bundle v1 is older than the running v2/.test(older.error), JSON.stringify(older));
  const newer = await part.add(encodeBundleFile(v3.made.release, v3.stream));
  assert.ok(!("error" in newer));
  assert.equal(part.ready()?.version, 3);
  await until("bundle-ready announced", () => a.kernel.events.since(0).some((e) => e.type === "bundle-ready" && e.data["version"] === 3));
});
