import { test } from "node:test";
import assert from "node:assert/strict";
import { createDecipheriv, diffieHellman, hkdfSync, randomBytes } from "node:crypto";
import fc from "fast-check";
import { createIdentityFromSeed, dhPrivateKeyOf, dhPublicKeyOf } from "../../src/adapters/identity.ts";
import { createSeal, makeToken, tokenFingerprint } from "../../src/adapters/seal.ts";
import { decodeHeader, encodeHeader, HEADER_BYTES, TAG_BYTES, WIRE_VERSION, type Header } from "../../src/core/wire/envelope.ts";
import type { Identity, SealPeer } from "../../src/node/ports.ts";

const ALICE = createIdentityFromSeed(new Uint8Array(32).fill(1));
const BOB = createIdentityFromSeed(new Uint8Array(32).fill(2));
const CAROL = createIdentityFromSeed(new Uint8Array(32).fill(3));
const EPOCH = 1_700_000_000_000;
const BOB_EPOCH = 1_700_000_000_500;

function body(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);
}

function peer(identity: Identity, epoch: number): SealPeer {
  return { id: identity.id, pub: identity.publicKey, epoch };
}

function headerOf(packet: Uint8Array): Header {
  const decoded = decodeHeader(packet);
  assert.ok(decoded.ok, "the header decodes");
  return decoded.header;
}

test("seal: round trip on both channels, any body length, only between the pair", () => {
  const token = makeToken();
  const a = createSeal(token, ALICE);
  const b = createSeal(token, BOB);
  const c = createSeal(token, CAROL);
  for (const channel of ["datagram", "stream"] as const) {
    for (const n of [0, 1, 15, 16, 17, 1000, 70_000]) {
      const packet = a.seal(channel, EPOCH, n + 1, body(n), peer(BOB, BOB_EPOCH));
      assert.equal(packet.length, HEADER_BYTES + n + TAG_BYTES);
      const header = headerOf(packet);
      assert.deepEqual(header, { version: 2, channel, intro: false, sender: ALICE.id, epoch: EPOCH, receiverEpoch: BOB_EPOCH, counter: n + 1 });
      assert.deepEqual(b.open(packet, header, ALICE.publicKey), body(n), `the receiver opens ${n} bytes on ${channel}`);
      // Another member holds the same token and Alice's public key, and still cannot open it.
      assert.equal(c.open(packet, header, ALICE.publicKey), undefined, "a third member cannot open it");
      assert.equal(b.open(packet, header, undefined), undefined, "no key for the sender: no open");
    }
  }
});

test("seal: no member can seal as another (the attack of issue 13: packets under another member's id)", () => {
  const token = makeToken();
  const b = createSeal(token, BOB);
  const c = createSeal(token, CAROL);
  // Carol seals a packet and rewrites the header to name Alice as its sender, at a huge epoch.
  const packet = c.seal("datagram", 2 ** 53 - 1, 1, body(20), peer(BOB, BOB_EPOCH));
  const forged = packet.slice();
  forged.set(Buffer.from(ALICE.id, "hex"), 4);
  assert.equal(b.open(forged, headerOf(forged), ALICE.publicKey), undefined);
  // Carol's own packet opens only as Carol's.
  assert.deepEqual(b.open(packet, headerOf(packet), CAROL.publicKey), body(20));
});

test("seal: a packet sealed for another boot of the receiver, or from another boot of the sender, does not open", () => {
  const token = makeToken();
  const a = createSeal(token, ALICE);
  const b = createSeal(token, BOB);
  const packet = a.seal("stream", EPOCH, 7, body(100), peer(BOB, BOB_EPOCH));
  const header = headerOf(packet);
  assert.deepEqual(b.open(packet, header, ALICE.publicKey), body(100));
  // (The epochs choose the key; the rest of the header is checked as associated data.)
  for (const lie of [{ receiverEpoch: BOB_EPOCH + 1 }, { epoch: EPOCH + 1 }]) {
    assert.equal(b.open(packet, { ...header, ...lie }, ALICE.publicKey), undefined, JSON.stringify(lie));
  }
  assert.equal(b.open(packet, header, BOB.publicKey), undefined, "wrong sender key");
  assert.equal(createSeal(makeToken(), BOB).open(packet, header, ALICE.publicKey), undefined, "another cluster's token");
});

test("seal: intro packets open under the cluster key alone, and are marked as such", () => {
  const token = makeToken();
  const a = createSeal(token, ALICE);
  const packet = a.seal("datagram", EPOCH, 3, body(30));
  const header = headerOf(packet);
  assert.equal(header.intro, true);
  assert.equal(header.receiverEpoch, 0);
  assert.deepEqual(createSeal(token, CAROL).open(packet, header, undefined), body(30));
  assert.equal(createSeal(makeToken(), CAROL).open(packet, header, undefined), undefined);
  // Marked intro or not is authenticated: the same bytes read as a pair packet do not open.
  assert.equal(createSeal(token, BOB).open(packet, { ...header, intro: false }, ALICE.publicKey), undefined);
});

test("seal: the body is encrypted, not just authenticated", () => {
  const a = createSeal(makeToken(), ALICE);
  const plain = new TextEncoder().encode("a secret message that must not travel in clear");
  for (const packet of [a.seal("datagram", EPOCH, 1, plain), a.seal("datagram", EPOCH, 2, plain, peer(BOB, 1))]) {
    assert.notDeepEqual(packet.subarray(HEADER_BYTES, HEADER_BYTES + plain.length), plain);
  }
});

test("seal: every single-bit flip in header, body or tag fails to open", () => {
  const token = makeToken();
  const a = createSeal(token, ALICE);
  const b = createSeal(token, BOB);
  const packet = a.seal("datagram", EPOCH, 42, body(24), peer(BOB, BOB_EPOCH));
  assert.deepEqual(b.open(packet, headerOf(packet), ALICE.publicKey), body(24));
  for (let bit = 0; bit < packet.length * 8; bit++) {
    const altered = packet.slice();
    altered[bit >>> 3] = (altered[bit >>> 3] as number) ^ (1 << (bit & 7));
    const claimed = decodeHeader(altered);
    if (!claimed.ok) continue;
    for (const pub of [ALICE.publicKey, CAROL.publicKey, undefined]) {
      assert.equal(b.open(altered, claimed.header, pub), undefined, `bit ${bit} flipped`);
    }
  }
});

test("seal: different receivers, senders, channels and epochs never share a keystream", () => {
  const token = makeToken();
  const a = createSeal(token, ALICE);
  const c = createSeal(token, CAROL);
  const plain = body(64);
  const stream = (packet: Uint8Array): Uint8Array => Uint8Array.from(plain, (p, i) => p ^ (packet[HEADER_BYTES + i] as number));
  const base = stream(a.seal("datagram", EPOCH, 1, plain, peer(BOB, BOB_EPOCH)));
  for (const other of [
    a.seal("datagram", EPOCH, 1, plain, peer(CAROL, BOB_EPOCH)),
    c.seal("datagram", EPOCH, 1, plain, peer(BOB, BOB_EPOCH)),
    a.seal("stream", EPOCH, 1, plain, peer(BOB, BOB_EPOCH)),
    a.seal("datagram", EPOCH + 1, 1, plain, peer(BOB, BOB_EPOCH)),
    a.seal("datagram", EPOCH, 1, plain, peer(BOB, BOB_EPOCH + 1)),
    a.seal("datagram", EPOCH, 1, plain),
  ]) assert.notDeepEqual(stream(other), base);
});

test("seal: matches the documented construction (wire.md)", () => {
  const token = makeToken();
  const packet = createSeal(token, ALICE).seal("stream", EPOCH, 99, body(50), peer(BOB, BOB_EPOCH));
  const clusterKey = Buffer.from(hkdfSync("sha256", Buffer.from(token), Buffer.from("p-kernel/v1/cluster"), Buffer.alloc(0), 32));
  // X25519 of Bob's private key and Alice's public key, both the Ed25519 identities on the Montgomery curve.
  const shared = diffieHellman({ privateKey: dhPrivateKeyOf(BOB)!, publicKey: dhPublicKeyOf(ALICE.publicKey)! });
  const [lo, hi] = ALICE.id < BOB.id ? [ALICE.id, BOB.id] : [BOB.id, ALICE.id];
  const pairKey = Buffer.from(hkdfSync("sha256", shared, clusterKey, Buffer.concat([Buffer.from("p-kernel/v2/pair"), Buffer.from(lo, "hex"), Buffer.from(hi, "hex")]), 32));
  const epochs = Buffer.alloc(16);
  epochs.writeBigUInt64BE(BigInt(EPOCH), 0);
  epochs.writeBigUInt64BE(BigInt(BOB_EPOCH), 8);
  const packetKey = Buffer.from(hkdfSync("sha256", pairKey, Buffer.alloc(0), Buffer.concat([Buffer.from("p-kernel/v2/packet"), Buffer.from(ALICE.id, "hex"), epochs]), 32));
  const nonce = Buffer.alloc(12);
  nonce[3] = 1; // flags: stream, not intro
  nonce.writeBigUInt64BE(99n, 4);
  const decipher = createDecipheriv("chacha20-poly1305", packetKey, nonce, { authTagLength: 16 });
  decipher.setAAD(packet.subarray(0, HEADER_BYTES), { plaintextLength: 50 });
  decipher.setAuthTag(packet.subarray(packet.length - 16));
  const plain = Buffer.concat([decipher.update(packet.subarray(HEADER_BYTES, packet.length - 16)), decipher.final()]);
  assert.deepEqual(new Uint8Array(plain), body(50));
});

test("seal: open never throws on arbitrary bytes", () => {
  const token = makeToken();
  const b = createSeal(token, BOB);
  const valid = createSeal(token, ALICE).seal("datagram", EPOCH, 5, body(10), peer(BOB, BOB_EPOCH));
  const header = headerOf(valid);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), fc.boolean(), fc.uint8Array({ minLength: 0, maxLength: 40 }), (bytes, keepHeader, pub) => {
    const packet = keepHeader && bytes.length >= HEADER_BYTES + TAG_BYTES
      ? Uint8Array.from(bytes, (x, i) => (i < HEADER_BYTES ? (valid[i] as number) : x))
      : bytes;
    assert.equal(b.open(packet, header, ALICE.publicKey), undefined);
    assert.equal(b.open(packet, header, pub), undefined, "a malformed or low-order key is a failed open, not a throw");
  }), { numRuns: 2000 });
  assert.equal(b.open(new Uint8Array(0), header, ALICE.publicKey), undefined);
  assert.equal(b.open(valid.subarray(0, HEADER_BYTES + TAG_BYTES - 1), header, ALICE.publicKey), undefined);
  assert.equal(b.open(valid, header, new Uint8Array(32)), undefined, "the all-zero (low-order) key");
});

test("seal: refuses bad configuration and out-of-range header fields", () => {
  assert.throws(() => createSeal("", ALICE), /token is empty/);
  const foreign = { ...ALICE };
  assert.throws(() => createSeal(makeToken(), foreign), /no X25519 key/);
  const a = createSeal(makeToken(), ALICE);
  assert.throws(() => a.seal("datagram", -1, 1, body(1)), /epoch/);
  assert.throws(() => a.seal("datagram", 1, 2 ** 53, body(1)), /counter/);
});

/** A packet that claims to come from `sender` but was made with no key at all. */
function forged(sender: string, epoch: number): Uint8Array {
  const packet = randomBytes(HEADER_BYTES + 16 + TAG_BYTES);
  encodeHeader({ version: WIRE_VERSION, channel: "datagram", intro: false, sender, epoch, receiverEpoch: BOB_EPOCH, counter: 1 }, packet);
  return new Uint8Array(packet.buffer, packet.byteOffset, packet.length);
}

test("seal: forged packets neither enter the key cache nor evict real peers", () => {
  const token = makeToken();
  const a = createSeal(token, ALICE);
  const b = createSeal(token, BOB, { keysMax: 1024 });
  const first = a.seal("datagram", EPOCH, 1, body(8), peer(BOB, BOB_EPOCH));
  assert.deepEqual(b.open(first, headerOf(first), ALICE.publicKey), body(8));
  assert.equal(b.stats.cachedKeys, 1);
  const afterFirst = b.stats.keyDerivations;
  // Forged packets in the names of many senders (under keys a member could announce), and of Alice.
  for (let i = 0; i < 2_000; i++) {
    const identity = i % 2 === 0 ? ALICE : CAROL;
    const packet = forged(identity.id, EPOCH + (i % 7));
    assert.equal(b.open(packet, headerOf(packet), identity.publicKey), undefined);
  }
  assert.equal(b.stats.cachedKeys, 1, "only the authenticated sender's keys are cached");
  // The legitimate sender's key is still cached and its packets still open, with no new derivation.
  const derivations = b.stats.keyDerivations;
  assert.ok(derivations > afterFirst, "forged packets cost derivations into temporaries");
  const second = a.seal("datagram", EPOCH, 2, body(9), peer(BOB, BOB_EPOCH));
  assert.deepEqual(b.open(second, headerOf(second), ALICE.publicKey), body(9));
  assert.equal(b.stats.keyDerivations, derivations, "Alice's keys were a cache hit");
});

test("seal: the key cache stays bounded, evicting the least recently used peer", () => {
  const token = makeToken();
  const receiver = createSeal(token, BOB, { keysMax: 4 });
  const senders = Array.from({ length: 6 }, (_, i) => createIdentityFromSeed(new Uint8Array(32).fill(40 + i)));
  for (const sender of senders) {
    const packet = createSeal(token, sender).seal("stream", EPOCH, 1, body(4), peer(BOB, BOB_EPOCH));
    assert.deepEqual(receiver.open(packet, headerOf(packet), sender.publicKey), body(4));
  }
  assert.equal(receiver.stats.cachedKeys, 4);
  const newest = senders[5] as Identity;
  const oldest = senders[0] as Identity;
  const before = receiver.stats.keyDerivations;
  const again = createSeal(token, newest).seal("stream", EPOCH, 2, body(4), peer(BOB, BOB_EPOCH));
  receiver.open(again, headerOf(again), newest.publicKey);
  assert.equal(receiver.stats.keyDerivations, before, "the newest peer's keys are cached");
  const back = createSeal(token, oldest).seal("stream", EPOCH, 2, body(4), peer(BOB, BOB_EPOCH));
  receiver.open(back, headerOf(back), oldest.publicKey);
  assert.ok(receiver.stats.keyDerivations > before, "the oldest was evicted and derived again");
  assert.equal(receiver.stats.cachedKeys, 4);
});

test("tokens: 32 random bytes in base64url, fingerprints short and stable", () => {
  const t1 = makeToken();
  const t2 = makeToken();
  assert.match(t1, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(t1, "base64url").length, 32);
  assert.notEqual(t1, t2);
  assert.match(tokenFingerprint(t1), /^[0-9a-f]{8}$/);
  // Stable: a fixed token has the same fingerprint in every process and release (discovery
  // beacons carry it, and people compare it across machines).
  assert.equal(tokenFingerprint("A".repeat(43)), "0363b9fc");
  assert.notEqual(tokenFingerprint(t1), tokenFingerprint(t2));
  assert.ok(!t1.includes(tokenFingerprint(t1)));
});
