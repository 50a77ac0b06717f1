// The gossip wire message (src/core/collective/gossip-wire.ts): round trips, exact sizes, refusals,
// and decoding plus stepping that is total on hostile bytes (fuzz), as for every decoder. Rows carry
// their writer's key (32 bytes) and signature (64): the fuzz mixes random ones, rows really signed
// by their origin, and real rows under another origin or with flipped bits.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { encode as pack } from "@msgpack/msgpack";
import { rowWire, type Gossip, type GossipRow } from "../../src/core/collective/gossip.ts";
import { gossipWireError, isGossipWire, packedSize, type GossipDeltaWire, type GossipMessage, type GossipRowWire } from "../../src/core/collective/gossip-wire.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { packValue, unpackValue } from "../../src/core/wire/codec.ts";
import { BASE_MS, core, describe, gid, rowBy, TEST_CONFIG } from "./gossip-harness.ts";

const origin = fc.constantFrom(gid(0), gid(1), gid(2), "fedcba9876543210");
const version = fc.oneof(fc.nat(200), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
/** Rows really signed by origins 0–2 (versions 1–3, some tombstones). */
const SIGNED: GossipRow[] = [];
for (let i = 0; i < 3; i++) {
  for (let v = 1; v <= 3; v++) SIGNED.push(rowBy(i, "t", `k${v}`, v === 2 ? undefined : new Uint8Array([i, v]), BASE_MS + v, 0, v));
}
const randomRow = fc.tuple(version, fc.stringMatching(/^[A-Za-z0-9._/-]{1,64}$/), fc.string({ minLength: 1, maxLength: 40, unit: "grapheme" }),
  fc.option(fc.uint8Array({ maxLength: 300 }), { nil: null }), fc.oneof(fc.nat(1000), fc.constant(BASE_MS)), fc.nat(0xffff_ffff),
  fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 64, maxLength: 64 }));
/** A real signed row, as it is or with one field changed (its key or signature from another row, a byte of either flipped). */
const signedRow: fc.Arbitrary<GossipRowWire> = fc.tuple(fc.constantFrom(...SIGNED), fc.nat(5), fc.nat(63), fc.constantFrom(...SIGNED)).map(([row, change, at, other]) => {
  const [v, topic, key, value, wall, logical, pub, sig] = rowWire(row);
  const flip = (bytes: Uint8Array): Uint8Array => {
    const out = bytes.slice();
    out[at % out.length] = (out[at % out.length] as number) ^ 1;
    return out;
  };
  switch (change) {
    case 1: return [v, topic, key, value, wall, logical, other.pub, sig];
    case 2: return [v, topic, key, value, wall, logical, pub, other.sig];
    case 3: return [v, topic, key, value, wall, logical, flip(pub), sig];
    case 4: return [v, topic, key, value, wall, logical, pub, flip(sig)];
    default: return [v, topic, key, value, wall, logical, pub, sig];
  }
});
const row = fc.oneof(randomRow, signedRow);
/** A group of real signed rows (changed or not) in version order, under any origin: what reaches the signature check. */
const signedGroup: fc.Arbitrary<GossipDeltaWire> = fc.tuple(origin, fc.constantFrom(0, 1), fc.array(signedRow, { maxLength: 3 })).map(([o, from, rows]) => {
  const ordered = rows.filter((r, i) => rows.findIndex((x) => x[0] === r[0]) === i && r[0] > from).sort((a, b) => a[0] - b[0]);
  return [o, from, 3, ordered];
});
const message: fc.Arbitrary<GossipMessage> = fc.record({
  t: fc.constant("gossip" as const),
  h: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const),
  n: fc.nat(0xffff_ffff),
  d: fc.array(fc.tuple(origin, version), { maxLength: 30 }),
  r: fc.array(fc.oneof(fc.tuple(origin, version, version, fc.array(row, { maxLength: 5 })), signedGroup), { maxLength: 5 }),
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
  const pub = new Uint8Array(32);
  const sig = new Uint8Array(64);
  const ok: GossipMessage = { t: "gossip", h: 1, n: 3, d: [[gid(0), 4]], r: [[gid(1), 0, 2, [[2, "t", "k", new Uint8Array([1]), BASE_MS, 0, pub, sig]]]], g: [[gid(2), 5, BASE_MS, 1]] };
  assert.ok(isGossipWire(unpackValue(packValue(ok))));
  const bad: unknown[] = [
    { ...ok, t: "gossip2" },
    { ...ok, h: 4 },
    { ...ok, n: -1 },
    { t: "gossip", h: 0, d: [], r: [], g: [] },
    { ...ok, d: [["XYZ", 1]] },
    { ...ok, d: [[gid(0), -1]] },
    { ...ok, d: [[gid(0), 1, 2]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "bad topic", "k", null, 0, 0, pub, sig]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "", null, 0, 0, pub, sig]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", "not bytes", 0, 0, pub, sig]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", new Uint8Array(61 * 1024), 0, 0, pub, sig]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", null, 0, 2 ** 32, pub, sig]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", null, 0, 0]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", null, 0, 0, pub]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", null, 0, 0, new Uint8Array(31), sig]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", null, 0, 0, new Uint8Array(33), sig]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", null, 0, 0, pub, new Uint8Array(63)]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", null, 0, 0, pub, new Uint8Array(65)]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", null, 0, 0, "pub", sig]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", null, 0, 0, pub, null]]]] },
    { ...ok, r: [[gid(1), 0, 2, [[2, "t", "k", null, 0, 0, pub, sig, 1]]]] },
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
  const g = core(5, createRng(1), { ...TEST_CONFIG, tombstoneGraceTicks: 4 });
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
  // Real rows of origin 1 (a value and a tombstone): mutations hit their keys and signatures too.
  const valid = packValue({
    t: "gossip", h: 1, n: 3, d: [[gid(0), 4], [gid(5), 9]], r: [[gid(1), 0, 3, SIGNED.slice(3, 6).map(rowWire)]],
    g: [[gid(2), 5, BASE_MS, 1]],
  } satisfies GossipMessage);
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(valid.length), (flips, cut) => {
    const mutated = valid.slice(0, Math.max(1, cut));
    for (const [i, v] of flips) if (i < mutated.length) mutated[i] = v;
    step(mutated);
  }), { numRuns: 10_000 });
});

test("gossip wire: schema-valid but hostile messages (any versions, ranges, horizons, keys, signatures) never throw, and only rows their origin signed are taken", () => {
  let resets = 0;
  let forged = 0;
  let taken = 0;
  const genuine = new Set(SIGNED.map(describe));
  fc.assert(fc.property(fc.array(message, { minLength: 1, maxLength: 6 }), (messages) => {
    const g = target();
    for (const m of messages) {
      g.step(gid(1), m);
      g.tick(BASE_MS + 10, [gid(0), gid(1)]);
      g.ready();
    }
    resets += g.stats().resets;
    forged += g.stats().forged;
    for (const r of g.rows()) {
      if (r.origin === g.selfId) continue;
      assert.ok(genuine.has(describe(r)), `a row its origin never signed was taken: ${describe(r)}`);
      taken++;
    }
    // Still a working node: it writes, and its own row wins locally.
    const w = g.publish("t", "k", new Uint8Array([2]));
    assert.ok(w.ok && g.get("t", "k") === w.row);
  }), { numRuns: 500 });
  assert.ok(resets > 0, "hostile horizons reached the reset path");
  assert.ok(forged > 0 && taken > 0, `both paths reached: ${forged} refused, ${taken} signed rows taken`);
});
