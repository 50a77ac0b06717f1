// sfs wire schemas (src/core/collective/sfs-wire.ts): round trips, refusals, and fuzz — random and
// mutated bytes never throw, neither in decoding and validation nor in the core that steps them.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Decoder, Encoder } from "@msgpack/msgpack";
import { entryFromWire, entryToWire, Sfs, type SfsEntry } from "../../src/core/collective/sfs.ts";
import { isSfsRecordWire, validateSfsMessage, SFS_WIRE, type SfsEntryWire, type SfsMessage } from "../../src/core/collective/sfs-wire.ts";
import { sha256, TEST_CONFIG } from "./sfs-harness.ts";

const encoder = new Encoder({ ignoreUndefined: true });
// The node's codec settings (src/core/wire/codec.ts).
const decoder = new Decoder({ maxStrLength: 16 << 20, maxBinLength: 16 << 20, maxArrayLength: 100_000, maxMapLength: 64, maxExtLength: 0 });
const A = "a000000000000001";
const B = "a000000000000002";

function decode(bytes: Uint8Array): SfsMessage | undefined {
  try {
    return validateSfsMessage(decoder.decode(bytes));
  } catch {
    return undefined;
  }
}

const content = new Uint8Array(2500).map((_, i) => i * 7);
const entry: SfsEntry = {
  path: "docs/a.bin", counter: 9, origin: A, deleted: false, dir: false, size: content.length, mtimeMs: 1_700_000_000_000,
  sha256: sha256(content), chunkBytes: 1024,
  chunks: [0, 1, 2].map((i) => sha256(content.subarray(i * 1024, i * 1024 + 1024))), vv: [[A, 9], [B, 4]],
};

const valid: SfsMessage[] = [
  { t: "sfs-digest", b: new Uint8Array(SFS_WIRE.buckets * 8).fill(3), n: 12 },
  { t: "sfs-sums", k: Uint8Array.from([1, 7, 255]), s: [["docs/a.bin", 1, 2], ["b", 0xffff_ffff, 0]] },
  { t: "sfs-entries", e: [entryToWire(entry, true)], w: ["x/y"] },
  { t: "sfs-get", p: "docs/a.bin", c: 9, o: A, i: 2 },
  { t: "sfs-chunk", p: "docs/a.bin", c: 9, o: A, i: 2, s: 0, d: content.subarray(2048) },
  { t: "sfs-chunk", p: "docs/a.bin", c: 9, o: A, i: 0, s: 1, d: new Uint8Array(0) },
];

test("sfs wire: messages round trip through MessagePack and the schemas", () => {
  for (const message of valid) {
    const back = decode(encoder.encode(message));
    assert.ok(back !== undefined, message.t);
    assert.equal(JSON.stringify(back, (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v)),
      JSON.stringify(message, (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v)));
  }
  const back = entryFromWire(entryToWire(entry, false));
  assert.deepEqual(back, entry, "an entry survives its tuple form");
  assert.ok(isSfsRecordWire([entryToWire(entry, false), 1, 123]));
  assert.ok(isSfsRecordWire([entryToWire(entry, false), entryToWire(entry, false), -1]));
  assert.equal(isSfsRecordWire([entryToWire(entry, false), 2, 123]), false);
});

test("sfs wire: out-of-bounds messages are refused", () => {
  const wire = entryToWire(entry, false);
  const bad: unknown[] = [
    { t: "sfs-digest", b: new Uint8Array(10), n: 1 },
    { t: "sfs-get", p: "a", c: 0, o: A, i: 0 },
    { t: "sfs-get", p: "a", c: 1, o: "zz", i: 0 },
    { t: "sfs-get", p: "a", c: 1, o: A, i: SFS_WIRE.chunksMax },
    { t: "sfs-get", p: "", c: 1, o: A, i: 0 },
    { t: "sfs-chunk", p: "a", c: 1, o: A, i: 0, s: 3, d: new Uint8Array(0) },
    { t: "sfs-chunk", p: "a", c: 1, o: A, i: 0, s: 0, d: new Uint8Array(SFS_WIRE.chunkBytesMax + 1) },
    { t: "sfs-entries", e: [[...wire.slice(0, 3), 8, ...wire.slice(4)]], w: [] },
    { t: "sfs-entries", e: [[...wire.slice(0, 7), 100, ...wire.slice(8)]], w: [] },
    { t: "sfs-entries", e: [[...wire.slice(0, 9), new Array(SFS_WIRE.vvEntriesMax + 1).fill([A, 1])]], w: [] },
    { t: "sfs-entries", e: [wire], w: ["x".repeat(2000)] },
    { t: "sfs-entries", e: [[...wire, "extra"]], w: [] },
    { t: "sfs-sums", k: new Uint8Array(300), s: [] },
    { t: "sfs-nope" },
    [1, 2],
    null,
  ];
  for (const value of bad) assert.equal(decode(encoder.encode(value)), undefined, JSON.stringify(value, (_k, v: unknown) => (v instanceof Uint8Array ? `bytes(${v.length})` : v)).slice(0, 120));
});

/** Steps a validated message into a fresh core with one file; nothing may throw. */
function stepSafely(message: SfsMessage): void {
  const core = new Sfs(B, TEST_CONFIG);
  core.localWrite(entry.path, { size: entry.size, sha256: entry.sha256, chunkBytes: 1024, chunkHashes: entry.chunks, mtimeMs: 1 });
  core.tick({ liveIds: () => [A] }, 1_700_000_000_000);
  core.step(A, message, message.t === "sfs-chunk" && message.s === 0 ? sha256(message.d) : undefined);
  core.tick({ liveIds: () => [A] }, 1_700_000_000_010);
  core.ready();
}

test("sfs wire: random bytes never throw (fuzz)", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
    const message = decode(bytes);
    if (message !== undefined) stepSafely(message);
  }), { numRuns: 5000 });
});

test("sfs wire: mutated valid messages never throw, and what validates steps safely (fuzz)", () => {
  const encoded = valid.map((m) => encoder.encode(m));
  fc.assert(fc.property(
    fc.integer({ min: 0, max: encoded.length - 1 }),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
    fc.option(fc.nat(), { nil: undefined }),
    (which, flips, cut) => {
      const bytes = (encoded[which] as Uint8Array).slice();
      for (const [at, value] of flips) bytes[at % bytes.length] = value;
      const message = decode(cut === undefined ? bytes : bytes.subarray(0, cut % (bytes.length + 1)));
      if (message !== undefined) stepSafely(message);
    }), { numRuns: 5000 });
});

test("sfs wire: arbitrary schema-valid entries are checked by the core without throwing (fuzz)", () => {
  const hex16 = fc.stringMatching(/^[0-9a-f]{16}$/);
  const arbEntry = fc.tuple(
    fc.oneof(fc.constantFrom("a", "d/x.txt", "../x", "/abs", "a//b", ".sfs-tmp/t", "a\u0000b"), fc.string({ minLength: 1, maxLength: 40 })),
    fc.integer({ min: 1, max: 50 }), fc.constantFrom(A, B), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 5000 }),
    fc.nat(), fc.constantFrom(new Uint8Array(0), new Uint8Array(32)), fc.integer({ min: 1024, max: 4096 }),
    fc.uint8Array({ maxLength: 200 }), fc.array(fc.tuple(fc.oneof(hex16, fc.constantFrom(A, B)), fc.integer({ min: 1, max: 60 })), { maxLength: 4 }),
  );
  fc.assert(fc.property(fc.array(arbEntry, { maxLength: 6 }), (entries) => {
    const message = validateSfsMessage({ t: "sfs-entries", e: entries, w: [] });
    if (message === undefined || message.t !== "sfs-entries") return;
    for (const e of message.e) entryFromWire(e as SfsEntryWire);
    stepSafely(message);
  }), { numRuns: 3000 });
});
