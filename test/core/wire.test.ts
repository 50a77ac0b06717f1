import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeHeader, encodeHeader, HEADER_BYTES, TAG_BYTES, type Header } from "../../src/core/wire/envelope.ts";
import { ReplayGuard } from "../../src/core/wire/replay.ts";
import { decodeMessage, encodeMessage } from "../../src/core/wire/codec.ts";
import { entryToWire, type MemberEntry, type Message } from "../../src/core/wire/messages.ts";
import { encode as pack } from "@msgpack/msgpack";

const entry: MemberEntry = {
  id: "0123456789abcdef", pub: new Uint8Array(32).fill(9), addr: "127.0.0.1:7401", role: "core", name: "n1", incarnation: 3,
  epoch: 1_767_225_600_000, cert: new Uint8Array(82).fill(1), sig: new Uint8Array(64).fill(2),
};

test("envelope: header round trip", () => {
  fc.assert(fc.property(
    fc.constantFrom<Header["channel"]>("datagram", "stream"),
    fc.stringMatching(/^[0-9a-f]{16}$/),
    fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    fc.boolean(),
    (channel, sender, epoch, receiver, counter, intro) => {
      const out = new Uint8Array(HEADER_BYTES + TAG_BYTES);
      const header: Header = { version: 2, channel, intro, sender, epoch, receiverEpoch: intro ? 0 : receiver, counter };
      encodeHeader(header, out);
      const decoded = decodeHeader(out);
      assert.deepEqual(decoded, { ok: true, header });
    }));
});

test("envelope: decodeHeader is total on arbitrary bytes", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
    const result = decodeHeader(bytes);
    if (!result.ok) assert.equal(result.reason, "decode");
  }), { numRuns: 5000 });
});

test("replay: each counter is accepted once, inside and beyond the window", () => {
  const guard = new ReplayGuard(64);
  assert.equal(guard.check("a", "datagram", 1, 5), "fresh");
  assert.equal(guard.check("a", "datagram", 1, 5), "replay");
  assert.equal(guard.check("a", "datagram", 1, 3), "fresh", "late but inside the window");
  assert.equal(guard.check("a", "datagram", 1, 3), "replay");
  assert.equal(guard.check("a", "datagram", 1, 200), "fresh");
  assert.equal(guard.check("a", "datagram", 1, 100), "replay", "too old for the window");
  assert.equal(guard.check("a", "stream", 1, 5), "fresh", "channels have separate windows");
  assert.equal(guard.check("a", "datagram", 2, 1), "fresh", "a new epoch resets the window");
  assert.equal(guard.check("a", "datagram", 1, 500), "stale-epoch", "the old epoch is gone");
});

test("replay: matches a set-based model for random arrival orders", () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 400 }), (counters) => {
    const width = 64;
    const guard = new ReplayGuard(width);
    const seen = new Set<number>();
    let top = -1;
    for (const c of counters) {
      const expected = seen.has(c) || (top >= 0 && c <= top - width) ? "replay" : "fresh";
      assert.equal(guard.check("s", "datagram", 7, c), expected, `counter ${c} top ${top}`);
      if (expected === "fresh") {
        seen.add(c);
        top = Math.max(top, c);
      }
    }
  }), { numRuns: 300 });
});

test("replay: the sender table is bounded, least recently heard evicted", () => {
  const guard = new ReplayGuard(32, 3);
  for (const s of ["a", "b", "c", "d"]) guard.check(s, "datagram", 1, 1);
  assert.equal(guard.size, 3);
  assert.equal(guard.check("a", "datagram", 1, 1), "fresh", "a was evicted, so its window restarted");
});

/** JSON with byte arrays as plain arrays, so a Buffer and a Uint8Array of equal bytes compare equal. */
function plain(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v instanceof Uint8Array ? Array.from(v) : (v as { type?: string; data?: unknown })?.type === "Buffer" ? (v as { data: unknown }).data : v));
}

test("codec: messages round trip", () => {
  const messages: Message[] = [
    { t: "hello", entry },
    { t: "welcome", states: [[0, entryToWire(entry)], [1, entry.id, 3, entry.id, entry.sig]] },
    { t: "heal", reply: true, tasks: [["beat", "ver", 100, entry.id, 2, false, entry.pub, entry.sig]] },
    { t: "vital", up: 1, load: 250, rss: 1 << 20, heap: 1 << 19, lag: 1200 },
    { t: "ping", seq: 1, sent: 123456789 },
    { t: "challenge", nonce: new Uint8Array(16).fill(1) },
  ];
  for (const message of messages) {
    const result = decodeMessage(encodeMessage(message));
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(plain(result.message), plain(message));
  }
});

test("codec: invalid messages are refused with a reason, never thrown", () => {
  const wire = entryToWire(entry);
  const bad: unknown[] = [
    { t: "nope" },
    { t: "ping", seq: -1, sent: 0 },
    { t: "hello", entry: ["XYZ", ...wire.slice(1)] },
    { t: "hello", entry: [wire[0], new Uint8Array(31), ...wire.slice(2)] },
    { t: "hello", entry },
    { t: "hello", entry: [...wire, "extra"] },
    { t: "swim-gossip", updates: new Array(33).fill([0, wire]) },
    { t: "heal", reply: false, tasks: [["bad name!", "ver", 100, entry.id, 1, false, entry.pub, entry.sig]] },
    { t: "heal", reply: false, tasks: [["beat", "ver", 0, entry.id, 1, false, entry.pub, entry.sig]] },
    // A guarded task's key is exactly 32 bytes and its signature 64; an unsigned record is refused.
    { t: "heal", reply: false, tasks: [["beat", "ver", 100, entry.id, 1, false]] },
    { t: "heal", reply: false, tasks: [["beat", "ver", 100, entry.id, 1, false, new Uint8Array(31), entry.sig]] },
    { t: "heal", reply: false, tasks: [["beat", "ver", 100, entry.id, 1, false, new Uint8Array(33), entry.sig]] },
    { t: "heal", reply: false, tasks: [["beat", "ver", 100, entry.id, 1, false, entry.pub, new Uint8Array(63)]] },
    { t: "heal", reply: false, tasks: [["beat", "ver", 100, entry.id, 1, false, entry.pub, new Uint8Array(65)]] },
    { t: "heal", reply: false, tasks: [["beat", "ver", 100, entry.id, 1, false, entry.pub, entry.sig, "extra"]] },
    { t: "heal", reply: false, tasks: [["beat", "ver", 100, entry.id, 1, false, "pub", entry.sig]] },
    { t: "vital", up: 1, load: -1, rss: 0, heap: 0, lag: 0 },
    { t: "hello", entry: [wire[0], wire[1], "no-port", ...wire.slice(3)] },
    [1, 2, 3],
    "string",
    null,
  ];
  for (const value of bad) {
    const result = decodeMessage(pack(value));
    assert.equal(result.ok, false, JSON.stringify(value));
  }
});

test("codec: decodeMessage is total on random and mutated bytes (fuzz)", () => {
  const valid = encodeMessage({ t: "swim-gossip", updates: [[0, entryToWire(entry)], [2, entry.id, 1, entry.id, entry.sig]] });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
    decodeMessage(bytes);
  }), { numRuns: 20_000 });
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(valid.length), (flips, cut) => {
    const mutated = valid.slice(0, Math.max(1, cut));
    for (const [i, v] of flips) if (i < mutated.length) mutated[i] = v;
    const result = decodeMessage(mutated);
    if (result.ok) assert.ok(typeof result.message.t === "string");
  }), { numRuns: 20_000 });
});

test("codec: heal records with their writer's key and signature decode only at their exact sizes, and mutated ones never throw (fuzz)", () => {
  const valid = encodeMessage({ t: "heal", reply: false, tasks: [["beat", "ver", 100, entry.id, 2, false, entry.pub, entry.sig], ["job", "topic pub t k v", 5, entry.id, 7, true, entry.pub, entry.sig]] });
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(valid.length), (flips, cut) => {
    const mutated = valid.slice(0, Math.max(1, cut));
    for (const [i, v] of flips) if (i < mutated.length) mutated[i] = v;
    const result = decodeMessage(mutated);
    if (result.ok && result.message.t === "heal") {
      for (const task of result.message.tasks) assert.ok(task[6].length === 32 && task[7].length === 64, "a decoded record has a 32-byte key and a 64-byte signature");
    }
  }), { numRuns: 20_000 });
  fc.assert(fc.property(fc.nat(40), fc.nat(100), (pubLength, sigLength) => {
    const result = decodeMessage(pack({ t: "heal", reply: false, tasks: [["beat", "ver", 100, entry.id, 2, false, new Uint8Array(pubLength), new Uint8Array(sigLength)]] }));
    assert.equal(result.ok, pubLength === 32 && sigLength === 64);
  }), { numRuns: 2_000 });
});
