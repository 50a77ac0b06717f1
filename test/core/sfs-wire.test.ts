// sfs wire schemas (src/core/collective/sfs-wire.ts): round trips, refusals, and fuzz — random and
// mutated bytes never throw, neither in decoding and validation nor in the core that steps them;
// an entry's key and signature decode only at their exact sizes (32, 64 bytes).
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Decoder, Encoder } from "@msgpack/msgpack";
import { RecordSigner } from "../../src/core/body/trust.ts";
import { entryFromWire, entryToWire, Sfs, type SfsEntry } from "../../src/core/collective/sfs.ts";
import { conflictPath } from "../../src/core/collective/sfs-path.ts";
import { isSfsRecordWire, validateSfsMessage, SFS_WIRE, type SfsEntryWire, type SfsMessage } from "../../src/core/collective/sfs-wire.ts";
import { identityOf, sha256, signedEntry, TEST_CONFIG } from "./sfs-harness.ts";

const encoder = new Encoder({ ignoreUndefined: true });
// The node's codec settings (src/core/wire/codec.ts).
const decoder = new Decoder({ maxStrLength: 16 << 20, maxBinLength: 16 << 20, maxArrayLength: 100_000, maxMapLength: 64, maxExtLength: 0 });
const ID_A = identityOf(1);
const ID_B = identityOf(2);
const A = ID_A.id;
const B = ID_B.id;

function decode(bytes: Uint8Array): SfsMessage | undefined {
  try {
    return validateSfsMessage(decoder.decode(bytes));
  } catch {
    return undefined;
  }
}

const content = new Uint8Array(2500).map((_, i) => i * 7);
const entry: SfsEntry = signedEntry(ID_A, {
  path: "docs/a.bin", counter: 9, origin: A, deleted: false, dir: false, size: content.length, mtimeMs: 1_700_000_000_000,
  sha256: sha256(content), chunkBytes: 1024,
  chunks: [0, 1, 2].map((i) => sha256(content.subarray(i * 1024, i * 1024 + 1024))), vv: [[A, 9], [B, 4]],
});
/** The same version kept as a conflict copy, and a shadow tombstone of it: derived, with A's signature. */
const signedAs = { path: entry.path, size: entry.size, sha256: entry.sha256, chunks: entry.chunks };
const copy: SfsEntry = { ...entry, path: conflictPath(entry.path, A, 9) as string, signedAs };
const shadow: SfsEntry = { ...entry, deleted: true, size: 0, sha256: "", chunks: [], signedAs };

const valid: SfsMessage[] = [
  { t: "sfs-digest", b: new Uint8Array(SFS_WIRE.buckets * 8).fill(3), n: 12 },
  { t: "sfs-sums", k: Uint8Array.from([1, 7, 255]), s: [["docs/a.bin", 1, 2], ["b", 0xffff_ffff, 0]] },
  { t: "sfs-entries", e: [entryToWire(entry, true), entryToWire(copy, true), entryToWire(shadow, false)], w: ["x/y"] },
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
  for (const version of [entry, copy, shadow]) assert.deepEqual(entryFromWire(entryToWire(version, false)), version, "an entry survives its tuple form");
  assert.ok(isSfsRecordWire([entryToWire(entry, false), 1, 123]));
  assert.ok(isSfsRecordWire([entryToWire(entry, false), entryToWire(entry, false), -1]));
  assert.equal(isSfsRecordWire([entryToWire(entry, false), 2, 123]), false);
  // The store also reads records of the previous format (unsigned 10-tuples); the wire never does.
  const unsigned = entryToWire(entry, false).slice(0, 10);
  assert.ok(isSfsRecordWire([unsigned, 1, 123]));
  assert.ok(isSfsRecordWire([entryToWire(entry, false), unsigned, 123]));
  assert.equal(decode(encoder.encode({ t: "sfs-entries", e: [unsigned], w: [] })), undefined);
  const back = entryFromWire(unsigned as SfsEntryWire);
  assert.ok(typeof back !== "string" && back.sig.length === 0 && back.pub.length === 0);
});

test("sfs wire: a derived entry must be derivable from what its origin signed", () => {
  const wire = entryToWire(copy, false);
  const signedWire = wire[12] as Exclude<SfsEntryWire[12], 0>;
  const bad: SfsEntryWire[] = [
    // A copy somewhere else than the conflict name of the signed path.
    [...wire.slice(0, 12), [conflictPath("other.bin", A, 9) as string, ...signedWire.slice(1)]] as SfsEntryWire,
    ["docs/elsewhere.bin", ...wire.slice(1)] as SfsEntryWire,
    // A copy whose content is not the signed one's.
    [...wire.slice(0, 12), [signedWire[0], signedWire[1], new Uint8Array(32).fill(1), signedWire[3]]] as SfsEntryWire,
    // A shadow tombstone at another path, and a derived folder.
    [...entryToWire({ ...shadow, path: "docs/b.bin" }, false)] as SfsEntryWire,
    [...entryToWire({ ...shadow, deleted: false, dir: true }, false)] as SfsEntryWire,
  ];
  for (const value of bad) assert.equal(entryFromWire(value), "entry");
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
    // The origin's key is exactly 32 bytes and its signature 64; an unsigned entry is refused.
    { t: "sfs-entries", e: [wire.slice(0, 10)], w: [] },
    { t: "sfs-entries", e: [[...wire.slice(0, 10), new Uint8Array(31), wire[11], 0]], w: [] },
    { t: "sfs-entries", e: [[...wire.slice(0, 10), new Uint8Array(33), wire[11], 0]], w: [] },
    { t: "sfs-entries", e: [[...wire.slice(0, 10), wire[10], new Uint8Array(63), 0]], w: [] },
    { t: "sfs-entries", e: [[...wire.slice(0, 10), wire[10], new Uint8Array(65), 0]], w: [] },
    { t: "sfs-entries", e: [[...wire.slice(0, 10), wire[10], wire[11], 1]], w: [] },
    { t: "sfs-entries", e: [[...wire.slice(0, 10), wire[10], wire[11], ["a", 1, new Uint8Array(31), new Uint8Array(0)]]], w: [] },
    { t: "sfs-sums", k: new Uint8Array(300), s: [] },
    { t: "sfs-nope" },
    [1, 2],
    null,
  ];
  for (const value of bad) assert.equal(decode(encoder.encode(value)), undefined, JSON.stringify(value, (_k, v: unknown) => (v instanceof Uint8Array ? `bytes(${v.length})` : v)).slice(0, 120));
});

/** Steps a validated message into a fresh core with one file; nothing may throw. */
function stepSafely(message: SfsMessage): void {
  const core = new Sfs(B, TEST_CONFIG, new RecordSigner(ID_B, ID_B));
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
    fc.constantFrom(ID_A.publicKey, ID_B.publicKey, new Uint8Array(32), new Uint8Array(31)),
    fc.oneof(fc.constant(entry.sig), fc.uint8Array({ minLength: 63, maxLength: 65 })),
    fc.oneof(fc.constant(0), fc.constant(entryToWire(copy, false)[12]), fc.tuple(fc.constantFrom("docs/a.bin", "a", "../x"), fc.integer({ min: 0, max: 5000 }),
      fc.constantFrom(new Uint8Array(32), new Uint8Array(0)), fc.uint8Array({ maxLength: 200 }))),
  );
  fc.assert(fc.property(fc.array(arbEntry, { maxLength: 6 }), (entries) => {
    const message = validateSfsMessage({ t: "sfs-entries", e: entries, w: [] });
    if (message === undefined || message.t !== "sfs-entries") return;
    for (const e of message.e) entryFromWire(e as SfsEntryWire);
    stepSafely(message);
  }), { numRuns: 3000 });
});
