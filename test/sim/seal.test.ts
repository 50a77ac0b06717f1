import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { createSimSeal } from "../../src/sim/seal.ts";
import { decodeHeader, HEADER_BYTES, TAG_BYTES, type Header } from "../../src/core/wire/envelope.ts";

const ALICE = "00112233445566aa";
const BOB = "00112233445566bb";
const CAROL = "00112233445566cc";
const KEY = new Uint8Array(32).fill(5);
const TO_BOB = { id: BOB, pub: KEY, epoch: 11 };

function headerOf(packet: Uint8Array): Header {
  const decoded = decodeHeader(packet);
  assert.ok(decoded.ok);
  return decoded.header;
}

test("createSimSeal: the real envelope layout; open returns the body to the receiver only", () => {
  const seal = createSimSeal(ALICE);
  const body = Uint8Array.from([1, 2, 3, 4, 5]);
  const packet = seal.seal("stream", 7, 42, body, TO_BOB);
  assert.equal(packet.length, HEADER_BYTES + body.length + TAG_BYTES);
  const header = headerOf(packet);
  assert.deepEqual(header, { version: 2, channel: "stream", intro: false, sender: ALICE, epoch: 7, receiverEpoch: 11, counter: 42 });
  assert.deepEqual(createSimSeal(BOB).open(packet, header, KEY), body);
  assert.equal(createSimSeal(CAROL).open(packet, header, KEY), undefined, "another node cannot open it");
  assert.equal(createSimSeal(BOB).open(packet, header, undefined), undefined, "nor can the receiver without the sender's key");
  const intro = seal.seal("datagram", 0, 0, new Uint8Array(0));
  assert.deepEqual(createSimSeal(CAROL).open(intro, headerOf(intro), undefined), new Uint8Array(0), "an intro packet opens for anyone with the cluster key");
});

test("createSimSeal: headers decode for any channel, epochs and counter (the cached template stays right)", () => {
  const seal = createSimSeal(ALICE);
  const bob = createSimSeal(BOB);
  fc.assert(
    fc.property(fc.constantFrom("datagram" as const, "stream" as const), fc.maxSafeNat(), fc.maxSafeNat(), fc.maxSafeNat(), (channel, epoch, receiverEpoch, counter) => {
      const packet = seal.seal(channel, epoch, counter, Uint8Array.of(1), { id: BOB, pub: KEY, epoch: receiverEpoch });
      const header = headerOf(packet);
      assert.deepEqual(header, { version: 2, channel, intro: false, sender: ALICE, epoch, receiverEpoch, counter });
      assert.deepEqual(bob.open(packet, header, KEY), Uint8Array.of(1));
    }),
    { numRuns: 300 },
  );
});

test("createSimSeal: the tag does not depend on where the packet sits in memory", () => {
  const seal = createSimSeal(ALICE);
  const packet = seal.seal("datagram", 1, 2, Uint8Array.from({ length: 37 }, (_, i) => i), TO_BOB);
  for (let shift = 0; shift < 4; shift++) {
    const buffer = new Uint8Array(packet.length + shift);
    buffer.set(packet, shift);
    const moved = buffer.subarray(shift);
    assert.ok(createSimSeal(BOB).open(moved, headerOf(moved), KEY), `offset ${shift}`);
  }
});

test("createSimSeal: any flipped bit, a wrong sender, receiver, epoch or cluster key, or a short packet fails to open", () => {
  const seal = createSimSeal(ALICE, { clusterKey: 1 });
  const bob = createSimSeal(BOB, { clusterKey: 1 });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), (body, flip) => {
      const packet = seal.seal("datagram", 3, 9, body, TO_BOB);
      const header = headerOf(packet);
      assert.deepEqual(bob.open(packet, header, KEY), body);
      const tampered = packet.slice();
      const bit = flip % (tampered.length * 8);
      tampered[bit >> 3] = (tampered[bit >> 3] as number) ^ (1 << (bit & 7));
      assert.equal(bob.open(tampered, header, KEY), undefined);
      assert.equal(bob.open(packet, { ...header, sender: CAROL }, KEY), undefined);
      assert.equal(bob.open(packet, { ...header, epoch: 4 }, KEY), undefined);
      assert.equal(createSimSeal(CAROL, { clusterKey: 1 }).open(packet, header, KEY), undefined);
      assert.equal(createSimSeal(BOB, { clusterKey: 2 }).open(packet, header, KEY), undefined);
      assert.equal(bob.open(packet.subarray(0, packet.length - 1), header, KEY), undefined);
    }),
    { numRuns: 500 },
  );
  assert.equal(bob.open(new Uint8Array(HEADER_BYTES + TAG_BYTES - 1), headerOf(seal.seal("datagram", 1, 1, new Uint8Array(0))), KEY), undefined);
  assert.throws(() => createSimSeal("not-an-id"), /hex/);
});
