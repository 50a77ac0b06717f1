import { test } from "node:test";
import assert from "node:assert/strict";
import { createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import fc from "fast-check";
import { createSeal, makeToken, tokenFingerprint } from "../../src/adapters/seal.ts";
import { decodeHeader, encodeHeader, HEADER_BYTES, TAG_BYTES, WIRE_VERSION } from "../../src/core/wire/envelope.ts";

const A = "0123456789abcdef";
const B = "fedcba9876543210";
const EPOCH = 1_700_000_000_000;

function body(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);
}

test("seal: round trip on both channels, any body length", () => {
  const token = makeToken();
  const a = createSeal(token, A);
  const b = createSeal(token, B);
  for (const channel of ["datagram", "stream"] as const) {
    for (const n of [0, 1, 15, 16, 17, 1000, 70_000]) {
      const packet = a.seal(channel, EPOCH, n + 1, body(n));
      assert.equal(packet.length, HEADER_BYTES + n + TAG_BYTES);
      const decoded = decodeHeader(packet);
      assert.ok(decoded.ok);
      assert.deepEqual(decoded.header, { version: 1, channel, sender: A, epoch: EPOCH, counter: n + 1 });
      assert.deepEqual(b.open(packet, A, EPOCH), body(n), `another member opens ${n} bytes on ${channel}`);
      assert.deepEqual(a.open(packet, A, EPOCH), body(n), "the sender opens its own packet");
    }
  }
});

test("seal: the body is encrypted, not just authenticated", () => {
  const a = createSeal(makeToken(), A);
  const plain = new TextEncoder().encode("a secret message that must not travel in clear");
  const packet = a.seal("datagram", EPOCH, 1, plain);
  const ciphertext = packet.subarray(HEADER_BYTES, HEADER_BYTES + plain.length);
  assert.notDeepEqual(ciphertext, plain);
});

test("seal: every single-bit flip in header, body or tag fails to open", () => {
  const token = makeToken();
  const a = createSeal(token, A);
  const b = createSeal(token, B);
  const packet = a.seal("datagram", EPOCH, 42, body(24));
  assert.deepEqual(b.open(packet, A, EPOCH), body(24));
  for (let bit = 0; bit < packet.length * 8; bit++) {
    const altered = packet.slice();
    altered[bit >>> 3] = (altered[bit >>> 3] as number) ^ (1 << (bit & 7));
    // Whatever the flipped header now claims, neither the true nor the claimed origin opens it.
    assert.equal(b.open(altered, A, EPOCH), undefined, `bit ${bit} flipped, opened as the true sender`);
    const claimed = decodeHeader(altered);
    if (claimed.ok) {
      assert.equal(b.open(altered, claimed.header.sender, claimed.header.epoch), undefined, `bit ${bit} flipped, opened as claimed`);
    }
  }
});

test("seal: wrong token, sender or epoch fails", () => {
  const a = createSeal(makeToken(), A);
  const other = createSeal(makeToken(), B);
  const packet = a.seal("stream", EPOCH, 7, body(100));
  assert.equal(other.open(packet, A, EPOCH), undefined, "wrong token");
  assert.equal(a.open(packet, B, EPOCH), undefined, "wrong sender");
  assert.equal(a.open(packet, A, EPOCH + 1), undefined, "wrong epoch");
  assert.equal(a.open(packet, "not-an-id", EPOCH), undefined, "malformed sender");
  assert.equal(a.open(packet, A, -1), undefined, "negative epoch");
  assert.equal(a.open(packet, A, Number.NaN), undefined, "NaN epoch");
});

test("seal: different senders (and channels) with the same counter produce different ciphertexts", () => {
  const token = makeToken();
  const a = createSeal(token, A);
  const b = createSeal(token, B);
  const plain = body(64);
  const fromA = a.seal("datagram", EPOCH, 1, plain).subarray(HEADER_BYTES);
  const fromB = b.seal("datagram", EPOCH, 1, plain).subarray(HEADER_BYTES);
  const fromAStream = a.seal("stream", EPOCH, 1, plain).subarray(HEADER_BYTES);
  const fromANextEpoch = a.seal("datagram", EPOCH + 1, 1, plain).subarray(HEADER_BYTES);
  assert.notDeepEqual(fromA, fromB, "two senders share a keystream");
  assert.notDeepEqual(fromA, fromAStream, "two channels of one sender share a keystream");
  assert.notDeepEqual(fromA, fromANextEpoch, "two epochs of one sender share a keystream");
  // The keystreams (ciphertext xor plaintext) must differ in every case, not only the bytes.
  const stream = (c: Uint8Array): Uint8Array => Uint8Array.from(plain, (p, i) => p ^ (c[i] as number));
  assert.notDeepEqual(stream(fromA), stream(fromB));
  assert.notDeepEqual(stream(fromA), stream(fromAStream));
});

test("seal: matches the documented construction (wire.md)", () => {
  const token = makeToken();
  const packet = createSeal(token, A).seal("stream", EPOCH, 99, body(50));
  const clusterKey = Buffer.from(hkdfSync("sha256", Buffer.from(token), Buffer.from("p-kernel/v1/cluster"), Buffer.alloc(0), 32));
  const info = Buffer.concat([Buffer.from("p-kernel/v1/sender"), Buffer.from(A, "hex"), Buffer.alloc(8)]);
  info.writeBigUInt64BE(BigInt(EPOCH), info.length - 8);
  const senderKey = Buffer.from(hkdfSync("sha256", clusterKey, Buffer.alloc(0), info, 32));
  const nonce = Buffer.alloc(12);
  nonce[3] = 1; // stream
  nonce.writeBigUInt64BE(99n, 4);
  const decipher = createDecipheriv("chacha20-poly1305", senderKey, nonce, { authTagLength: 16 });
  decipher.setAAD(packet.subarray(0, HEADER_BYTES), { plaintextLength: 50 });
  decipher.setAuthTag(packet.subarray(packet.length - 16));
  const plain = Buffer.concat([decipher.update(packet.subarray(HEADER_BYTES, packet.length - 16)), decipher.final()]);
  assert.deepEqual(new Uint8Array(plain), body(50));
});

test("seal: open never throws on arbitrary bytes", () => {
  const token = makeToken();
  const a = createSeal(token, A);
  const valid = a.seal("datagram", EPOCH, 5, body(10));
  fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), fc.boolean(), (bytes, keepHeader) => {
    const packet = keepHeader && bytes.length >= HEADER_BYTES + TAG_BYTES
      ? Uint8Array.from(bytes, (x, i) => (i < HEADER_BYTES ? (valid[i] as number) : x))
      : bytes;
    assert.equal(a.open(packet, A, EPOCH), undefined);
  }), { numRuns: 2000 });
  assert.equal(a.open(new Uint8Array(0), A, EPOCH), undefined);
  assert.equal(a.open(valid.subarray(0, HEADER_BYTES + TAG_BYTES - 1), A, EPOCH), undefined);
});

test("seal: refuses bad configuration and out-of-range header fields", () => {
  assert.throws(() => createSeal("", A), /token is empty/);
  assert.throws(() => createSeal(makeToken(), "ABCDEF0123456789"), /lowercase hex/);
  const a = createSeal(makeToken(), A);
  assert.throws(() => a.seal("datagram", -1, 1, body(1)), /epoch/);
  assert.throws(() => a.seal("datagram", 1, 2 ** 53, body(1)), /counter/);
});

/** A packet that claims to come from `sender` but was made without the cluster key. */
function forged(sender: string, epoch: number): Uint8Array {
  const packet = randomBytes(HEADER_BYTES + 16 + TAG_BYTES);
  encodeHeader({ version: WIRE_VERSION, channel: "datagram", sender, epoch, counter: 1 }, packet);
  return new Uint8Array(packet.buffer, packet.byteOffset, packet.length);
}

test("seal: forged packets from invented senders neither enter the key cache nor evict real peers", () => {
  const token = makeToken();
  const a = createSeal(token, A);
  const b = createSeal(token, B, { keysMax: 1024 });
  const first = a.seal("datagram", EPOCH, 1, body(8));
  assert.deepEqual(b.open(first, A, EPOCH), body(8));
  assert.deepEqual(b.stats, { cachedKeys: 1, keyDerivations: 1 });

  // Ten times the cache's bound of forged (sender, epoch) pairs.
  for (let i = 0; i < 10_000; i++) {
    const sender = randomBytes(8).toString("hex");
    const epoch = i % 3 === 0 ? EPOCH : i;
    assert.equal(b.open(forged(sender, epoch), sender, epoch), undefined);
  }
  // A forged packet in the name of the real sender fails too and leaves its key alone.
  assert.equal(b.open(forged(A, EPOCH), A, EPOCH), undefined);
  assert.equal(b.stats.cachedKeys, 1, "only the authenticated sender's key is cached");
  const derivations = b.stats.keyDerivations;
  assert.equal(derivations, 1 + 10_000, "a miss costs one derivation, into a temporary");

  // The legitimate sender's key is still cached (no new derivation) and its packets still open.
  assert.deepEqual(b.open(a.seal("datagram", EPOCH, 2, body(9)), A, EPOCH), body(9));
  assert.deepEqual(b.open(first, A, EPOCH), body(8));
  assert.equal(b.stats.keyDerivations, derivations, "A's key was a cache hit");
});

test("seal: the key cache stays bounded by authenticated senders, evicting the least recently used", () => {
  const token = makeToken();
  const receiver = createSeal(token, B, { keysMax: 4 });
  const senders = Array.from({ length: 6 }, (_, i) => `00000000000000${(i + 16).toString(16)}`);
  for (const sender of senders) {
    const packet = createSeal(token, sender).seal("stream", EPOCH, 1, body(4));
    assert.deepEqual(receiver.open(packet, sender, EPOCH), body(4));
  }
  assert.deepEqual(receiver.stats, { cachedKeys: 4, keyDerivations: 6 });
  // The newest four are cached; the oldest was evicted and is derived again on its next packet.
  const newest = senders[5] as string;
  const oldest = senders[0] as string;
  receiver.open(createSeal(token, newest).seal("stream", EPOCH, 2, body(4)), newest, EPOCH);
  assert.equal(receiver.stats.keyDerivations, 6);
  receiver.open(createSeal(token, oldest).seal("stream", EPOCH, 2, body(4)), oldest, EPOCH);
  assert.equal(receiver.stats.keyDerivations, 7);
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
