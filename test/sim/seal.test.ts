import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { createSimSeal } from "../../src/sim/seal.ts";
import { decodeHeader, HEADER_BYTES, TAG_BYTES } from "../../src/core/wire/envelope.ts";

const ALICE = "00112233445566aa";
const BOB = "00112233445566bb";

test("createSimSeal: the real envelope layout; open returns the body", () => {
  const seal = createSimSeal(ALICE);
  const body = Uint8Array.from([1, 2, 3, 4, 5]);
  const packet = seal.seal("stream", 7, 42, body);
  assert.equal(packet.length, HEADER_BYTES + body.length + TAG_BYTES);
  const header = decodeHeader(packet);
  assert.deepEqual(header, { ok: true, header: { version: 1, channel: "stream", sender: ALICE, epoch: 7, counter: 42 } });
  assert.deepEqual(createSimSeal(BOB).open(packet, ALICE, 7), body);
  assert.deepEqual(seal.open(seal.seal("datagram", 0, 0, new Uint8Array(0)), ALICE, 0), new Uint8Array(0));
});

test("createSimSeal: headers decode for any channel, epoch and counter (the cached template stays right)", () => {
  const seal = createSimSeal(ALICE);
  fc.assert(
    fc.property(fc.constantFrom("datagram" as const, "stream" as const), fc.maxSafeNat(), fc.maxSafeNat(), (channel, epoch, counter) => {
      const packet = seal.seal(channel, epoch, counter, Uint8Array.of(1));
      assert.deepEqual(decodeHeader(packet), { ok: true, header: { version: 1, channel, sender: ALICE, epoch, counter } });
      assert.deepEqual(seal.open(packet, ALICE, epoch), Uint8Array.of(1));
    }),
    { numRuns: 300 },
  );
});

test("createSimSeal: the tag does not depend on where the packet sits in memory", () => {
  const seal = createSimSeal(ALICE);
  const packet = seal.seal("datagram", 1, 2, Uint8Array.from({ length: 37 }, (_, i) => i));
  for (let shift = 0; shift < 4; shift++) {
    const buffer = new Uint8Array(packet.length + shift);
    buffer.set(packet, shift);
    assert.ok(seal.open(buffer.subarray(shift), ALICE, 1), `offset ${shift}`);
  }
});

test("createSimSeal: any flipped bit, a wrong sender, epoch or cluster key, or a short packet fails to open", () => {
  const seal = createSimSeal(ALICE, { clusterKey: 1 });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), (body, flip) => {
      const packet = seal.seal("datagram", 3, 9, body);
      assert.deepEqual(seal.open(packet, ALICE, 3), body);
      const tampered = packet.slice();
      const bit = flip % (tampered.length * 8);
      tampered[bit >> 3] = (tampered[bit >> 3] as number) ^ (1 << (bit & 7));
      assert.equal(seal.open(tampered, ALICE, 3), undefined);
      assert.equal(seal.open(packet, BOB, 3), undefined);
      assert.equal(seal.open(packet, ALICE, 4), undefined);
      assert.equal(createSimSeal(ALICE, { clusterKey: 2 }).open(packet, ALICE, 3), undefined);
      assert.equal(seal.open(packet.subarray(0, packet.length - 1), ALICE, 3), undefined);
    }),
    { numRuns: 500 },
  );
  assert.equal(seal.open(new Uint8Array(HEADER_BYTES + TAG_BYTES - 1), ALICE, 3), undefined);
  assert.throws(() => createSimSeal("not-an-id"), /hex/);
});
