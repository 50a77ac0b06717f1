// The code bundle's core (src/core/evolve/bundle.ts, bundle-fetch.ts): packing, the Merkle address,
// TUF-style metadata and its verification — each field tampered, wrong and contributor keys,
// thresholds, rollback, expiry, modified chunks, truncated streams — the multi-peer fetch, and
// fuzz: hostile bytes to every decoder give a refusal, never an exception.
import { test } from "node:test";
import assert from "node:assert/strict";
import { hash } from "node:crypto";
import fc from "fast-check";
import { createIdentityFromSeed } from "../../src/adapters/identity.ts";
import {
  BUNDLE_DEFAULTS, bundleAddress, checkChunk, checkHashList, checkStream, chunkHashes, decodeBundleFile, decodeRoot, decodeTargets, describeStream, encodeBundleFile,
  makeRelease, merkleRoot, packBundle, readTable, rootDocument, signEnvelope, targetsDocument, unpackBundle, verifyRelease,
  type BundleCrypto, type BundleFile, type Release, type RootRole, type Targets, type TrustPoint,
} from "../../src/core/evolve/bundle.ts";
import { BundleFetch, HASH_LIST_INDEX } from "../../src/core/evolve/bundle-fetch.ts";
import { BUNDLE_MESSAGE_SCHEMAS } from "../../src/core/evolve/bundle-wire.ts";
import { decodeMessage, encodeMessage } from "../../src/core/wire/codec.ts";
import { Decoder, Encoder } from "@msgpack/msgpack";

const sha256 = (d: Uint8Array) => new Uint8Array(hash("sha256", d, "buffer"));
const owner = createIdentityFromSeed(new Uint8Array(32).fill(1));
const release2 = createIdentityFromSeed(new Uint8Array(32).fill(2));
const contributor = createIdentityFromSeed(new Uint8Array(32).fill(3));
const crypto: BundleCrypto = { sha256, verify: (p, d, s) => owner.verify(p, d, s) };
const NOW = 1_800_000_000_000;
const DAY = 86_400_000;

function files(seed = 0, big = 200_000): BundleFile[] {
  return [
    { path: "package.json", mode: 0o644, data: new TextEncoder().encode(`{"name":"p-kernel","seed":${seed}}`) },
    { path: "dist/src/cli/main.js", mode: 0o644, data: new Uint8Array(big).map((_, i) => (i * 31 + seed) & 255) },
    { path: "bin/pk.js", mode: 0o755, data: new TextEncoder().encode("#!/usr/bin/env node\n") },
  ];
}

function stream(seed = 0, big = 200_000): Uint8Array {
  const p = packBundle(files(seed, big));
  assert.ok(p.ok);
  return p.value;
}

function made(version = 5, options: { targetsTtl?: number; releaseKeys?: typeof owner[]; s?: Uint8Array } = {}) {
  return makeRelease({
    stream: options.s ?? stream(), version, nowMs: NOW, targetsTtlMs: options.targetsTtl ?? 30 * DAY, rootTtlMs: 365 * DAY, rootVersion: 1, node: ">=22.18", name: "p-kernel test",
    owner, ...(options.releaseKeys === undefined ? {} : { release: options.releaseKeys }),
  }, crypto);
}

const trust: TrustPoint = { owner: owner.publicKey, nowMs: NOW, runningVersion: 0 };

test("bundle: packing is deterministic (order of input files does not matter), unpacks to the same files", () => {
  const a = packBundle(files());
  const b = packBundle([...files()].reverse());
  assert.ok(a.ok && b.ok);
  assert.deepEqual(a.value, b.value);
  const out = unpackBundle(a.value);
  assert.ok(out.ok);
  assert.deepEqual(out.value.map((f) => [f.path, f.mode, f.data.length]), [["bin/pk.js", 0o755, 20], ["dist/src/cli/main.js", 0o644, 200_000], ["package.json", 0o644, 28]]);
  assert.equal(describeStream(a.value, 65536, crypto).chunks, Math.ceil(a.value.length / 65536));
});

test("bundle: paths that could leave the folder, odd modes and duplicates are refused when packing and when reading", () => {
  for (const path of ["../x", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\b", ".pk-bundle/stream.pkb", "C:/x", ""]) {
    const p = packBundle([{ path, mode: 0o644, data: new Uint8Array(1) }]);
    assert.equal(p.ok, false, path);
  }
  assert.equal(packBundle([{ path: "a", mode: 0o777, data: new Uint8Array(1) }]).ok, false);
  assert.equal(packBundle([{ path: "a", mode: 0o644, data: new Uint8Array(1) }, { path: "a", mode: 0o644, data: new Uint8Array(1) }]).ok, false);
  // A hand-made stream with "../evil" in its table.
  const table = new Encoder().encode([["../evil", 0o644, 1]]);
  const s = new Uint8Array(8 + table.length + 1);
  s.set(new TextEncoder().encode("PKB1"));
  new DataView(s.buffer).setUint32(4, table.length);
  s.set(table, 8);
  const r = readTable(s);
  assert.equal(r.ok, false);
  // A file and a folder of the same name.
  const t2 = new Encoder().encode([["a", 0o644, 0], ["a/b", 0o644, 0]]);
  const s2 = new Uint8Array(8 + t2.length);
  s2.set(new TextEncoder().encode("PKB1"));
  new DataView(s2.buffer).setUint32(4, t2.length);
  s2.set(t2, 8);
  assert.equal(readTable(s2).ok, false);
});

test("bundle: truncated or extended streams are refused by the table and by the address", () => {
  const s = stream();
  assert.equal(readTable(s.subarray(0, s.length - 1)).ok, false);
  const longer = new Uint8Array(s.length + 1);
  longer.set(s);
  assert.equal(readTable(longer).ok, false);
  const m = made();
  const cut = checkStream(s.subarray(0, s.length - 1), m.targets, crypto);
  assert.equal(cut.ok, false);
  assert.equal(!cut.ok && cut.reason, "modified");
  assert.ok(checkStream(s, m.targets, crypto).ok);
});

test("bundle: the Merkle root is RFC 6962's shape; the address binds length, chunk size and count", () => {
  const leaves = new Uint8Array(3 * 32).map((_, i) => i);
  const l = (i: number) => leaves.subarray(i * 32, i * 32 + 32);
  const node = (a: Uint8Array, b: Uint8Array) => sha256(new Uint8Array([1, ...a, ...b]));
  assert.deepEqual(merkleRoot(leaves, crypto), node(node(l(0), l(1)), l(2)));
  assert.deepEqual(merkleRoot(leaves.subarray(0, 32), crypto), l(0));
  const s = stream();
  const hashes = chunkHashes(s, 65536, crypto);
  assert.notDeepEqual(bundleAddress(s.length, 65536, hashes, crypto), bundleAddress(s.length - 1, 65536, hashes, crypto));
  assert.notDeepEqual(bundleAddress(s.length, 65536, hashes, crypto), bundleAddress(s.length, 32768, hashes, crypto));
});

test("bundle: a release signed by the owner verifies; the same bytes every time", () => {
  const m = made();
  const v = verifyRelease(m.release, trust, crypto);
  assert.ok(v.ok, !v.ok ? v.detail : "");
  assert.equal(v.value.targets.version, 5);
  assert.equal(v.value.targets.node, ">=22.18");
  assert.deepEqual(v.value.targets.address, m.targets.address);
  assert.deepEqual(made().release, m.release, "Ed25519 is deterministic: same input, same release");
});

function reason(release: Release, t = trust): string {
  const v = verifyRelease(release, t, crypto);
  return v.ok ? "ok" : v.reason;
}

test("bundle: every byte of either signed document, tampered, is refused", () => {
  const m = made();
  for (const which of ["root", "targets"] as const) {
    const bytes = m.release[which];
    let refused = 0;
    for (let i = 0; i < bytes.length; i++) {
      const copy = bytes.slice();
      copy[i] = (copy[i] as number) ^ 0x01;
      const r = reason({ ...m.release, [which]: copy });
      assert.notEqual(r, "ok", `${which} byte ${i} flipped still verifies`);
      refused++;
    }
    assert.equal(refused, bytes.length);
  }
});

test("bundle: each targets field changed and re-signed by a key the root does not name is refused (key); unsigned is refused (unsigned)", () => {
  const m = made();
  const base = decodeTargets(new Decoder().decode(m.release.targets) instanceof Array ? (new Decoder().decode(m.release.targets) as [Uint8Array])[0] : new Uint8Array());
  assert.ok(base.ok);
  const changes: Array<Partial<Targets>> = [{ version: 99 }, { expiresMs: NOW + 999 * DAY }, { address: new Uint8Array(32) }, { node: ">=18" }, { name: "evil" }];
  for (const change of changes) {
    const doc = targetsDocument({ ...base.value, ...change });
    assert.equal(reason({ root: m.release.root, targets: signEnvelope(doc, [contributor]) }), "key", JSON.stringify(Object.keys(change)));
    assert.equal(reason({ root: m.release.root, targets: signEnvelope(doc, []) }), "unsigned");
    // The owner's signature over the old document, moved onto the new one: does not verify.
    const [, sigs] = new Decoder().decode(m.release.targets) as [Uint8Array, unknown[]];
    assert.equal(reason({ root: m.release.root, targets: new Encoder().encode([doc, sigs]) }), "signature");
  }
});

test("bundle: a root not signed by the owner key (a contributor making itself the release key) is refused", () => {
  const m = made();
  const root: RootRole = { version: 2, expiresMs: NOW + DAY, rootKeys: [contributor.publicKey], rootThreshold: 1, targetsKeys: [contributor.publicKey], targetsThreshold: 1 };
  const rogueRoot = signEnvelope(rootDocument(root), [contributor]);
  assert.equal(reason({ root: rogueRoot, targets: m.release.targets }), "key");
  // Naming the owner among its root keys does not help without the owner's signature.
  const withOwner = signEnvelope(rootDocument({ ...root, rootKeys: [owner.publicKey, contributor.publicKey] }), [contributor]);
  assert.equal(reason({ root: withOwner, targets: m.release.targets }), "key");
  assert.equal(reason({ root: signEnvelope(rootDocument(root), []), targets: m.release.targets }), "unsigned");
});

test("bundle: delegation to release keys with a threshold: 2 of 2 needed, one is not enough", () => {
  const m = made(5, { releaseKeys: [owner, release2] });
  assert.equal(reason(m.release), "ok");
  const [doc] = new Decoder().decode(m.release.targets) as [Uint8Array];
  assert.equal(reason({ root: m.release.root, targets: signEnvelope(doc, [release2]) }), "threshold");
  assert.equal(reason({ root: m.release.root, targets: signEnvelope(doc, [release2, contributor]) }), "key");
  // A release key alone (owner not among the targets keys) verifies when the root names it.
  const only = made(5, { releaseKeys: [release2] });
  assert.equal(reason(only.release), "ok");
  const [doc2] = new Decoder().decode(only.release.targets) as [Uint8Array];
  assert.equal(reason({ root: only.release.root, targets: signEnvelope(doc2, [owner]) }), "key", "the owner key signs roots; targets only when the root names it");
});

test("bundle: rollback (older than running, or an older root) and freeze (expired) are refused", () => {
  const m = made(5);
  assert.equal(reason(m.release, { ...trust, runningVersion: 6 }), "older");
  assert.equal(reason(m.release, { ...trust, runningVersion: 5 }), "ok", "the version running itself is not a rollback");
  assert.equal(reason(m.release, { ...trust, rootVersion: 2 }), "older");
  assert.equal(reason(m.release, { ...trust, nowMs: NOW + 31 * DAY }), "expired");
  assert.equal(reason(m.release, { ...trust, nowMs: NOW + 366 * DAY }), "expired");
  assert.equal(reason(made(5, { targetsTtl: 0 }).release), "expired");
});

test("bundle: chunks check against the hash list, the list against the signed address", () => {
  const s = stream();
  const m = made(5, { s });
  assert.ok(checkHashList(m.hashes, m.targets, crypto).ok);
  const badList = m.hashes.slice();
  badList[5] = (badList[5] as number) ^ 1;
  assert.equal(checkHashList(badList, m.targets, crypto).ok, false);
  assert.equal(checkHashList(m.hashes.subarray(32), m.targets, crypto).ok, false);
  for (let i = 0; i < m.targets.chunks; i++) {
    const chunk = s.subarray(i * 65536, (i + 1) * 65536);
    assert.ok(checkChunk(chunk, i, m.targets, m.hashes, crypto).ok);
    const bad = chunk.slice();
    bad[0] = (bad[0] as number) ^ 1;
    const r = checkChunk(bad, i, m.targets, m.hashes, crypto);
    assert.equal(!r.ok && r.reason, "modified");
    assert.equal(checkChunk(chunk.subarray(1), i, m.targets, m.hashes, crypto).ok, false, "a short chunk");
  }
  assert.equal(checkChunk(s.subarray(0, 65536), 1, m.targets, m.hashes, crypto).ok, false, "chunk 0 as chunk 1");
  assert.equal(checkChunk(new Uint8Array(0), -1, m.targets, m.hashes, crypto).ok, false);
  assert.equal(checkChunk(new Uint8Array(0), m.targets.chunks, m.targets, m.hashes, crypto).ok, false);
});

test("bundle: a bundle file round-trips; truncated ones are refused", () => {
  const s = stream();
  const m = made(5, { s });
  const file = encodeBundleFile(m.release, s);
  const back = decodeBundleFile(file);
  assert.ok(back.ok);
  assert.deepEqual(back.value.stream, s);
  for (const cut of [0, 3, 8, 20, m.release.root.length + 10]) assert.equal(decodeBundleFile(file.subarray(0, cut)).ok, false, `cut at ${cut}`);
  const truncated = decodeBundleFile(file.subarray(0, file.length - 100));
  assert.ok(truncated.ok, "the file frame cannot tell a short stream…");
  assert.equal(checkStream(truncated.value.stream, m.targets, crypto).ok, false, "…the address does");
});

/** A fetch over an in-memory network: peers answer honestly, with modified chunks, or never. */
function runFetch(peers: Record<string, "honest" | "modified" | "silent" | "wrong-list">, maxTicks = 5_000) {
  const s = stream(0, 2_000_000);
  const m = made(5, { s });
  const v = verifyRelease(m.release, trust, crypto);
  assert.ok(v.ok);
  const fetch = new BundleFetch(v.value, 0, crypto, { windowPerPeer: 4, requestTimeoutTicks: 20, peerStrikesMax: 3, peersMax: 16 });
  for (const id of Object.keys(peers)) fetch.addPeer(id);
  const refusals: Record<string, number> = {};
  let tick = 0;
  for (; tick < maxTicks && !fetch.done; tick++) {
    for (const r of fetch.tick(tick)) {
      const kind = peers[r.to];
      if (kind === "silent") continue;
      let data = r.index === HASH_LIST_INDEX ? m.hashes.slice() : s.slice(r.index * 65536, (r.index + 1) * 65536);
      if (kind === "modified" && r.index !== HASH_LIST_INDEX) data[0] = (data[0] as number) ^ 0xff;
      if (kind === "wrong-list" && r.index === HASH_LIST_INDEX) data = data.subarray(32);
      const answer = fetch.step(r.to, r.index, 0, data, tick);
      if (answer.kind === "refused") refusals[`${r.to}:${answer.reason}`] = (refusals[`${r.to}:${answer.reason}`] ?? 0) + 1;
    }
  }
  return { fetch, s, refusals, tick };
}

test("bundle fetch: from several honest peers, every chunk once, the stream whole", () => {
  const { fetch, s } = runFetch({ a: "honest", b: "honest", c: "honest" });
  assert.ok(fetch.done);
  assert.deepEqual(fetch.stream(), s);
  const p = fetch.progress(0);
  assert.ok(p.peers.filter((q) => q.received > 0).length >= 2, "more than one peer served");
});

test("bundle fetch: a peer with modified chunks, one with a wrong hash list and a silent one are refused or timed out; the honest one completes it", () => {
  const { fetch, s, refusals } = runFetch({ rogue: "modified", liar: "wrong-list", mute: "silent", good: "honest" });
  assert.ok(fetch.done);
  assert.deepEqual(fetch.stream(), s);
  assert.ok((refusals["rogue:modified"] ?? 0) >= 1, JSON.stringify(refusals));
  const p = fetch.progress(0);
  assert.equal(p.peers.find((q) => q.id === "rogue")?.dropped, true, "dropped after its strikes");
});

test("bundle fetch: with only bad peers it never completes and never keeps a bad chunk", () => {
  const { fetch } = runFetch({ rogue: "modified", mute: "silent" }, 500);
  assert.equal(fetch.done, false);
  assert.equal(fetch.stream(), undefined);
  assert.equal(fetch.progress(0).done, 0);
});

test("bundle fuzz: random and mutated bytes to every decoder give a refusal, never an exception", () => {
  const s = stream();
  const m = made(5, { s });
  const file = encodeBundleFile(m.release, s.subarray(0, 4000));
  const mutate = (base: Uint8Array) => fc.tuple(fc.nat({ max: base.length - 1 }), fc.integer({ min: 1, max: 255 }), fc.nat({ max: base.length })).map(([at, x, cut]) => {
    const c = base.slice(0, Math.max(cut, 1));
    if (at < c.length) c[at] = (c[at] as number) ^ x;
    return c;
  });
  const inputs = fc.oneof(fc.uint8Array({ maxLength: 300 }), mutate(m.release.root), mutate(m.release.targets), mutate(file), mutate(s.subarray(0, 2000)));
  fc.assert(fc.property(inputs, inputs, (a, b) => {
    const r1 = verifyRelease({ root: a, targets: b }, trust, crypto);
    const r2 = verifyRelease({ root: m.release.root, targets: a }, trust, crypto);
    assert.equal(r2.ok && !(r2.value.release.targets.length === m.release.targets.length && r2.value.release.targets.every((x, i) => x === m.release.targets[i])), false);
    void r1;
    readTable(a);
    unpackBundle(b);
    decodeBundleFile(a);
    decodeRoot(a);
    decodeTargets(b);
    checkHashList(a, m.targets, crypto);
    checkChunk(a, 0, m.targets, m.hashes, crypto);
  }), { numRuns: 3000 });
});

test("bundle wire: messages round-trip through the codec; out-of-bound fields are refused; random bytes never throw", () => {
  const address = new Uint8Array(32).fill(7);
  const msgs = [
    { t: "bundle-have" as const, v: 3, n: 5, r: new Uint8Array(10), g: new Uint8Array(20) },
    { t: "bundle-have" as const, v: 0, n: 0 },
    { t: "bundle-get" as const, h: address, i: -1 },
    { t: "bundle-chunk" as const, h: address, i: 3, s: 0 as const, d: new Uint8Array(65536) },
  ];
  for (const msg of msgs) {
    const back = decodeMessage(encodeMessage(msg));
    assert.ok(back.ok, JSON.stringify(msg.t));
    assert.deepEqual(back.message, msg);
  }
  const enc = new Encoder();
  for (const bad of [
    { t: "bundle-get", h: new Uint8Array(31), i: 0 }, { t: "bundle-get", h: address, i: -2 }, { t: "bundle-get", h: address, i: BUNDLE_DEFAULTS.chunksMax },
    { t: "bundle-chunk", h: address, i: 0, s: 3, d: new Uint8Array(1) }, { t: "bundle-chunk", h: address, i: 0, s: 0, d: new Uint8Array(BUNDLE_DEFAULTS.chunkBytes + 1) },
    { t: "bundle-have", v: -1, n: 0 }, { t: "bundle-have", v: 0, n: 0, r: new Uint8Array(BUNDLE_DEFAULTS.metadataBytesMax + 1) },
  ]) assert.equal(decodeMessage(enc.encode(bad)).ok, false, JSON.stringify(bad, (_k, v: unknown) => (v instanceof Uint8Array ? `bytes(${v.length})` : v)));
  assert.ok(Object.keys(BUNDLE_MESSAGE_SCHEMAS).length === 3);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
    decodeMessage(bytes);
  }), { numRuns: 2000 });
});
