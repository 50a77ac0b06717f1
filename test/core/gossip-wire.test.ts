// The gossip wire message (src/core/collective/gossip-wire.ts): round trips, exact sizes, refusals,
// and decoding plus stepping that is total on hostile bytes (fuzz), as for every decoder.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { encode as pack } from "@msgpack/msgpack";
import { Gossip } from "../../src/core/collective/gossip.ts";
import { gossipWireError, isGossipWire, packedSize, type GossipMessage } from "../../src/core/collective/gossip-wire.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { packValue, unpackValue } from "../../src/core/wire/codec.ts";
import { BASE_MS, gid, TEST_CONFIG } from "./gossip-harness.ts";

const origin = fc.constantFrom(gid(0), gid(1), gid(2), "fedcba9876543210");
const version = fc.oneof(fc.nat(200), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const row = fc.tuple(version, fc.stringMatching(/^[A-Za-z0-9._/-]{1,64}$/), fc.string({ minLength: 1, maxLength: 40, unit: "grapheme" }),
  fc.option(fc.uint8Array({ maxLength: 300 }), { nil: null }), fc.oneof(fc.nat(1000), fc.constant(BASE_MS)), fc.nat(0xffff_ffff));
const message: fc.Arbitrary<GossipMessage> = fc.record({
  t: fc.constant("gossip" as const),
  h: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const),
  n: fc.nat(0xffff_ffff),
  d: fc.array(fc.tuple(origin, version), { maxLength: 30 }),
  r: fc.array(fc.tuple(origin, version, version, fc.array(row, { maxLength: 5 })), { maxLength: 5 }),
  g: fc.array(fc.tuple(origin, version, version, fc.nat(0xffff_ffff)), { maxLength: 3 }),
});

/** JSON with byte arrays as plain arrays. */
function plain(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v instanceof Uint8Array ? Array.from(v) : v));
}

test("gossip wire: messages round trip through the codec, and packedSize is the encoded size", () => {
  fc.assert(fc.property(message, (m) => {
    const bytes = packValue(m);
    assert.equal(packedSize(m), bytes.length);
    const back = unpackValue(bytes);
    assert.ok(isGossipWire(back), gossipWireError(back));
    assert.equal(plain(back), plain(m));
  }), { numRuns: 2000 });
});

test("gossip wire: malformed messages are refused with a reason", () => {
  const ok: GossipMessage = { t: "gossip", h: 1, n: 3, d: [[gid(0), 4]], r: [[gid(1), 0, 2, [[2, "t", "k", new Uint8Array([1]), BASE_MS, 0]]]], g: [[gid(2), 5, BASE_MS, 1]] };
  assert.ok(isGossipWire(unpackValue(packValue(ok))));
  const bad: unknown[] = [
    { ...ok, t: "gossip2" },
    { ...ok, h: 4 },
    { ...ok, n: -1 },
    { t: "gossip", h: 0, d: [], r: [], g: [] },
    { ...ok, d: [["XYZ", 1]] },
    { ...ok, d: [[gid(0), -1]] },
    { ...ok, d: [[gid(0), 1, 2]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "bad topic", "k", null, 0, 0]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "", null, 0, 0]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", "not bytes", 0, 0]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", new Uint8Array(61 * 1024), 0, 0]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", null, 0, 2 ** 32]]]] },
    { ...ok, g: [[gid(2), 5, 1.5, 1]] },
    { ...ok, d: new Array(1025).fill([gid(0), 1]) },
    [1, 2, 3],
    null,
  ];
  for (const value of bad) {
    const decoded = unpackValue(pack(value));
    assert.equal(isGossipWire(decoded), false, plain(value));
    assert.ok(gossipWireError(decoded) !== undefined);
  }
});

/** A core with some state, to step hostile input into; a 4-tick grace period makes it honour horizons (resets) at once. */
function target(): Gossip {
  const g = new Gossip(gid(5), createRng(1), { ...TEST_CONFIG, tombstoneGraceTicks: 4 });
  g.tick(BASE_MS, [gid(0), gid(1)]);
  g.publish("t", "k", new Uint8Array([1]));
  g.delete("t", "gone");
  return g;
}

test("gossip wire: decoding and stepping are total on random and mutated bytes (fuzz)", () => {
  const g = target();
  const step = (bytes: Uint8Array): void => {
    const value = unpackValue(bytes);
    if (isGossipWire(value)) {
      g.step(gid(0), value);
      g.ready();
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => step(bytes)), { numRuns: 10_000 });
  const valid = packValue({
    t: "gossip", h: 1, n: 3, d: [[gid(0), 4], [gid(5), 9]], r: [[gid(1), 0, 2, [[1, "t", "k", new Uint8Array([1]), BASE_MS, 0], [2, "t", "j", null, BASE_MS, 1]]]],
    g: [[gid(2), 5, BASE_MS, 1]],
  } satisfies GossipMessage);
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(valid.length), (flips, cut) => {
    const mutated = valid.slice(0, Math.max(1, cut));
    for (const [i, v] of flips) if (i < mutated.length) mutated[i] = v;
    step(mutated);
  }), { numRuns: 10_000 });
});

test("gossip wire: schema-valid but hostile messages (any versions, ranges, horizons) never throw", () => {
  let resets = 0;
  fc.assert(fc.property(fc.array(message, { minLength: 1, maxLength: 6 }), (messages) => {
    const g = target();
    for (const m of messages) {
      g.step(gid(1), m);
      g.tick(BASE_MS + 10, [gid(0), gid(1)]);
      g.ready();
    }
    resets += g.stats().resets;
    // Still a working node: it writes, and its own row wins locally.
    const w = g.publish("t", "k", new Uint8Array([2]));
    assert.ok(w.ok && g.get("t", "k") === w.row);
  }), { numRuns: 500 });
  assert.ok(resets > 0, "hostile horizons reached the reset path");
});
