// Gossip rows signed by their writer (src/core/collective/gossip.ts "Signatures", issue 13): the
// signed bytes cover every field; a member relaying rows under another origin — a forged value, a
// forged tombstone, a real signature on another row, its own signature under the victim's origin —
// gets them applied nowhere and counted, while the real origin's rows still arrive; rows that change
// nothing are not checked; a bad row does not stop the rest of a message; a store of the older
// version (unsigned rows) boots; and the largest row, with its signature, still fits a datagram.
// The attack runs use real Ed25519 (createIdentityFromSeed), the rest the stand-in signatures.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { RecordSigner } from "../../src/core/body/trust.ts";
import {
  Gossip, GOSSIP_DEFAULTS, makeRow, rowBody, rowBytesMax, rowWire, signRow, type GossipConfig, type GossipRow, type GossipSigner,
} from "../../src/core/collective/gossip.ts";
import type { GossipMessage, GossipRowWire } from "../../src/core/collective/gossip-wire.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { packValue } from "../../src/core/wire/codec.ts";
import { BASE_MS, bytes, core, deltaOf, describe, gid, GossipNet, identityOf, rowBy, signerOf, TEST_CONFIG } from "./gossip-harness.ts";

const text = new TextDecoder();

test("row bytes: every field of a row is in what its writer signs (topic, key, value or tombstone, stamp, origin, version)", () => {
  const field = fc.record({
    topic: fc.constantFrom("t", "t2", "tt"), key: fc.constantFrom("k", "k\u0000", "kk", "é"),
    value: fc.option(fc.uint8Array({ maxLength: 3 }), { nil: undefined }), wall: fc.constantFrom(0, 1, 2 ** 32, BASE_MS),
    logical: fc.nat(2), origin: fc.constantFrom(gid(0), gid(1)), version: fc.constantFrom(1, 2, 2 ** 32 + 1),
  });
  fc.assert(fc.property(field, field, (a, b) => {
    const ra = makeRow(a.topic, a.key, a.value, a.wall, a.logical, a.origin, a.version);
    const rb = makeRow(b.topic, b.key, b.value, b.wall, b.logical, b.origin, b.version);
    const same = describe(ra) === describe(rb);
    assert.equal(Buffer.from(rowBody(ra)).equals(Buffer.from(rowBody(rb))), same, `${describe(ra)} / ${describe(rb)}`);
  }), { numRuns: 3000 });
  // An empty value and a tombstone differ; topic and key boundaries cannot be moved.
  assert.notDeepEqual(rowBody(makeRow("t", "k", new Uint8Array(0), 1, 0, gid(0), 1)), rowBody(makeRow("t", "k", undefined, 1, 0, gid(0), 1)));
  assert.notDeepEqual(rowBody(makeRow("ab", "c", undefined, 1, 0, gid(0), 1)), rowBody(makeRow("a", "bc", undefined, 1, 0, gid(0), 1)));
  // A real Ed25519 signature over them verifies for its writer, for no other origin, on no other row.
  const real = signerOf(0, true);
  const row = signRow(real, makeRow("t", "k", bytes("v"), BASE_MS, 0, gid(0), 1));
  assert.equal(row.pub.length, 32);
  assert.equal(row.sig.length, 64);
  assert.equal(real.check("row", gid(0), row.pub, rowBody(row), row.sig), undefined);
  assert.equal(real.check("row", gid(1), row.pub, rowBody(row), row.sig), "key");
  assert.equal(real.check("row", gid(0), row.pub, rowBody({ ...row, version: 2 }), row.sig), "signature");
});

/** The rows a test sends, as one group of `origin` at hop 3. */
function group(origin: string, from: number, upto: number, rows: readonly GossipRowWire[]): GossipMessage {
  return { t: "gossip", h: 3, n: 0, d: [], r: [[origin, from, upto, [...rows]]], g: [] };
}

test("attack: a member relaying rows under another origin (forged value, forged tombstone, another row's signature, its own key) gets them applied nowhere; the real rows still arrive (real Ed25519)", () => {
  const net = new GossipNet({ n: 4, seed: 101, realSignatures: true });
  net.run(3);
  const [victim, attacker] = [0, 1];
  const V = net.ids[victim] as string;
  const v = net.nodes[victim]!;
  const k1 = v.publish("cfg", "leader", bytes("node-a"));
  const k2 = v.publish("cfg", "quota", bytes("10"));
  assert.ok(k1.ok && k2.ok);
  net.runUntil(() => net.converged(), 500, "the victim's rows spread");
  const real1 = k1.row;
  const real2 = k2.row;
  const later = BASE_MS + net.now * 10 + 50;
  const attackerKey = identityOf(attacker, true);
  // Every forgery claims the victim's next versions (3, 4...), stamped later than its real rows, so each would win if believed.
  const forgeries: Record<string, GossipRowWire> = {
    // A value under the victim's key, with a signature that is not the victim's (random bytes).
    value: [3, "cfg", "leader", bytes("attacker"), later, 0, real1.pub, new Uint8Array(64).fill(7)],
    // A tombstone for the victim's key, signed with the signature of the victim's real row for it.
    tombstone: [3, "cfg", "leader", null, later, 0, real1.pub, real1.sig],
    // The victim's real signature of row 2, on a row that changes the value (same version, same stamp).
    reused: [3, "cfg", "quota", bytes("1000000"), real2.wall, real2.logical, real2.pub, real2.sig],
    // A row the attacker really signed with its own key, claiming the victim's origin.
    ownKey: (() => {
      const row = makeRow("cfg", "leader", bytes("attacker"), later, 0, V, 3);
      return [3, "cfg", "leader", bytes("attacker"), later, 0, attackerKey.publicKey, new RecordSigner(attackerKey, attackerKey).sign("row", rowBody(row))];
    })(),
  };
  for (const [name, forged] of Object.entries(forgeries)) {
    for (const to of [2, 3]) net.inject(attacker, to, group(V, 2, 3, [forged]));
    for (let i = 0; i < 4; i++) {
      const g = net.nodes[i]!;
      assert.equal(text.decode(g.get("cfg", "leader")?.value), "node-a", `${name}: node ${i} keeps the victim's value`);
      assert.equal(text.decode(g.get("cfg", "quota")?.value), "10", `${name}: node ${i}`);
      assert.equal(g.watermark(V), 2, `${name}: node ${i}'s watermark for the victim stays below the refused row`);
    }
  }
  for (const to of [2, 3]) {
    assert.equal(net.nodes[to]!.stats().forged, 4, `node ${to} counted the four`);
    assert.deepEqual(net.signers[to]!.refused.row, { key: 1, revoked: 0, signature: 3 }, `node ${to}'s signer counted them by reason`);
  }
  // The victim's real next rows still arrive everywhere (the refused rows did not move any watermark).
  const k3 = v.publish("cfg", "leader", bytes("node-b"));
  assert.ok(k3.ok && k3.row.version === 3);
  net.runUntil(() => net.nodes.every((g) => text.decode(g.get("cfg", "leader")?.value) === "node-b"), 500, "the victim's real row 3");
  assert.ok(net.converged());
  // And once taken, a late forgery of an older version is not even looked at.
  const checks = net.signers[2]!.refused.row.signature;
  net.inject(attacker, 2, group(V, 2, 3, [forgeries.value as GossipRowWire]));
  assert.equal(net.signers[2]!.refused.row.signature, checks);
  assert.equal(text.decode(net.nodes[2]!.get("cfg", "leader")?.value), "node-b");
});

test("attack: a forged row of a third origin inside a message does not stop the message's other groups, and a refused row stops only its own group", () => {
  const g = core(5, createRng(1));
  g.tick(BASE_MS, [gid(1)]);
  const good1 = rowBy(2, "t", "a", bytes("a1"), BASE_MS, 0, 1);
  const bad2 = makeRow("t", "b", bytes("evil"), BASE_MS, 1, gid(2), 2, good1.pub, good1.sig);
  const good3 = rowBy(2, "t", "c", bytes("c3"), BASE_MS, 2, 3);
  const other = rowBy(3, "t", "d", bytes("d1"), BASE_MS, 0, 1);
  g.step(gid(1), {
    t: "gossip", h: 3, n: 0, d: [], g: [],
    r: [[gid(2), 0, 3, [good1, bad2, good3].map(rowWire)], [gid(3), 0, 1, [rowWire(other)]]],
  });
  assert.equal(text.decode(g.get("t", "a")?.value), "a1", "the row before the forgery is taken");
  assert.equal(g.get("t", "b"), undefined, "the forgery is not");
  assert.equal(g.get("t", "c"), undefined, "the group stops at the forgery: its rows come again from others");
  assert.equal(g.watermark(gid(2)), 1);
  assert.equal(text.decode(g.get("t", "d")?.value), "d1", "the next group is applied");
  assert.equal(g.stats().forged, 1);
  // The real rows 2 and 3, from an honest peer, are taken.
  g.step(gid(4), deltaOf([rowBy(2, "t", "b", bytes("b2"), BASE_MS, 1, 2), good3], 1));
  assert.equal(text.decode(g.get("t", "b")?.value), "b2");
  assert.equal(text.decode(g.get("t", "c")?.value), "c3");
});

/** A signer that counts its checks (RecordSigner underneath). */
function counting(inner: RecordSigner): GossipSigner & { checks: number } {
  const out = {
    checks: 0,
    publicKey: inner.publicKey,
    sign: (kind: "row", body: Uint8Array) => inner.sign(kind, body),
    check: (kind: "row", writer: string, pub: Uint8Array, body: Uint8Array, sig: Uint8Array) => {
      out.checks++;
      return inner.check(kind, writer, pub, body, sig);
    },
  };
  return out;
}

test("cost: only rows that change the table are checked; duplicates, anti-entropy repeats and rows older than the one held are free", () => {
  const signer = counting(signerOf(5));
  const g = new Gossip(gid(5), signer, createRng(1), TEST_CONFIG);
  g.tick(BASE_MS, []);
  const base = signer.checks; // the constructor's own check of its key
  const r1 = rowBy(2, "t", "k", bytes("1"), BASE_MS, 0, 1);
  const r2 = rowBy(2, "t", "k", bytes("2"), BASE_MS, 1, 2);
  g.step(gid(1), deltaOf([r1, r2]));
  assert.equal(signer.checks - base, 2, "r1 is new (checked), r2 beats it (checked)");
  const afterFirst = signer.checks;
  // The same delta again, twice, and as anti-entropy repeats from other peers: nothing to check.
  for (const from of [gid(1), gid(3), gid(4)]) g.step(from, deltaOf([r1, r2]));
  assert.equal(signer.checks, afterFirst, "duplicates are free");
  // A row of another origin older than the row held for its key: free, and it only moves that origin's watermark.
  const old = rowBy(3, "t", "k", bytes("old"), BASE_MS - 1_000, 0, 1);
  g.step(gid(1), deltaOf([old]));
  assert.equal(signer.checks, afterFirst, "a row losing to the held one is not checked");
  assert.equal(g.watermark(gid(3)), 1);
  assert.equal(text.decode(g.get("t", "k")?.value), "2");
});

test("restore: a store of the older version (unsigned rows) boots; own rows are signed again, another origin's are dropped with a count and fetched again signed", () => {
  const net = new GossipNet({ n: 3, seed: 103 });
  net.run(3);
  assert.ok(net.nodes[1]!.publish("t", "b1", bytes("from 1")).ok && net.nodes[1]!.publish("t", "b2", bytes("from 1")).ok);
  assert.ok(net.nodes[2]!.publish("t", "c1", bytes("from 2")).ok);
  net.runUntil(() => net.converged(), 500, "spread");
  // Node 1 restarts from a store written before rows were signed: every row without key and signature.
  const old = net.nodes[1]!;
  const strip = (r: GossipRow): GossipRow => makeRow(r.topic, r.key, r.value, r.wall, r.logical, r.origin, r.version);
  const stored = old.rows().map(strip);
  assert.ok(stored.length === 3 && stored.every((r) => r.sig.length === 0));
  const reborn = core(1, createRng(7));
  reborn.restore(stored, old.watermarks());
  const ready = reborn.ready();
  assert.equal(reborn.stats().resigned, 2, "its own two rows, signed again");
  assert.deepEqual(ready.changed.map((r) => r.key).sort(), ["b1", "b2"], "and handed out to be written back");
  for (const r of ready.changed) assert.equal(signerOf(2).check("row", gid(1), r.pub, rowBody(r), r.sig), undefined, "they verify");
  assert.equal(reborn.stats().unsignedDropped, 1, "node 2's row could not be: dropped, counted");
  assert.deepEqual(ready.forgotten.map((r) => r.key), ["c1"], "and handed out to delete from the store");
  assert.equal(reborn.get("t", "c1"), undefined);
  assert.equal(reborn.watermark(gid(2)), 0, "with its origin's watermark, so it is fetched again");
  assert.equal(reborn.selfVersion, 2);
  net.nodes[1] = reborn;
  net.runUntil(() => text.decode(reborn.get("t", "c1")?.value) === "from 2", 500, "node 2's row fetched again, signed");
  net.runUntil(() => net.converged(), 500, "convergence");
  assert.equal(net.nodes[0]!.stats().forged + net.nodes[2]!.stats().forged, 0, "the re-signed rows are no forgeries to the others");
});

test("budget: the largest row a config admits, with its key and signature, travels in one datagram (it may take the digest reserve)", () => {
  const topic = "t".repeat(64);
  const key = "k".repeat(GOSSIP_DEFAULTS.keyBytesMax - 3);
  const net = new GossipNet({ n: 3, seed: 107, config: { ...TEST_CONFIG } satisfies GossipConfig });
  net.run(3);
  for (let i = 0; i < 8; i++) assert.ok(net.nodes[0]!.publish(topic, `${key}${i.toString().padStart(3, "0")}`, new Uint8Array(GOSSIP_DEFAULTS.valueBytesMax).fill(i)).ok);
  // The others also hold origins to ask about, so answers want their digest reserve.
  for (let i = 1; i < 3; i++) assert.ok(net.nodes[i]!.publish("x", "y", bytes(`${i}`)).ok);
  net.runUntil(() => net.converged(), 3_000, "convergence of 8 largest rows");
  const row = net.nodes[1]!.rows().find((r) => r.topic === topic) as GossipRow;
  // The largest size but for its version (1 byte, not 9) and logical counter (1, not 5).
  assert.equal(packValue(rowWire(row)).length, rowBytesMax(GOSSIP_DEFAULTS) - 12);
  const withRows = net.sent.filter((s) => s.message.r.some((d) => d[3].length > 0)).map((s) => s.bytes);
  assert.ok(Math.max(...withRows) <= GOSSIP_DEFAULTS.budgetBytes, `largest ${Math.max(...withRows)}`);
  // 8 priority entries (27 bytes) and 2 horizons (41) are the answer's digest reserve: such a row does not fit beside it.
  const reserve = GOSSIP_DEFAULTS.priorityEntriesMax * 27 + GOSSIP_DEFAULTS.horizonsPerMessageMax * 41;
  assert.ok(withRows.some((b) => b > GOSSIP_DEFAULTS.budgetBytes - reserve), "a message's first row took the digest reserve");
});
