// A memory's value and the memory table's rule (src/core/self/memory-record.ts): round trips,
// the decoder never throws and refuses anything out of bounds (fuzzed), and the rule admits a
// memory only under its writer's key or as a core member's redaction.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { packValue } from "../../src/core/wire/codec.ts";
import { MEMORY_LIMITS, MEMORY_TOPIC, admitMemory, boundText, decodeMemory, encodeMemory, redaction, type MemoryRecord } from "../../src/core/self/memory-record.ts";

const A = "0a9ff840084fa870";
const B = "1b2c3d4e5f607182";
const record: MemoryRecord = { kind: "user", text: "my daughter's piano lesson is on Thursday at five", speaker: "ana", atMs: 1_796_644_518_489, conv: "ana", supersedes: [], by: undefined };

test("memory record: encode then decode gives the record back; a long text is cut, marked, within the bound", () => {
  assert.deepEqual(decodeMemory(encodeMemory(record)), record);
  const merged: MemoryRecord = { ...record, kind: "note", supersedes: [`${A}/mx1.0`, `${B}/mx2.3`], by: "dmn" };
  assert.deepEqual(decodeMemory(encodeMemory(merged)), merged);
  const long = boundText("é".repeat(10_000));
  assert.ok(new TextEncoder().encode(long).length <= MEMORY_LIMITS.textBytesMax);
  assert.ok(long.endsWith(" […]"));
  assert.equal(boundText("short"), "short");
  // A cut never leaves half a character (U+1F600 is 4 bytes).
  assert.ok(!boundText("😀".repeat(3_000)).includes("\uFFFD"));
});

test("memory record: the decoder refuses every malformed value and never throws (fuzz)", () => {
  for (const bad of [
    new Uint8Array(0), new Uint8Array([0xc1]), packValue([2, "user", "x", "a", 1, null, [], null]), packValue([1, "shout", "x", "a", 1, null, [], null]),
    packValue([1, "user", "", "a", 1, null, [], null]), packValue([1, "redacted", "still here", "a", 1, null, [], null]),
    packValue([1, "user", "x", "", 1, null, [], null]), packValue([1, "user", "x", "a\n", 1, null, [], null]), packValue([1, "user", "x", "a", -1, null, [], null]),
    packValue([1, "user", "x", "a", 1.5, null, [], null]), packValue([1, "user", "x", "a", 1, null, ["not a key"], null]),
    packValue([1, "user", "x", "a", 1, null, Array.from({ length: 33 }, (_, i) => `${A}/k${i}`), null]), packValue([1, "user", "x", "a", 1, null, [], ""]),
    packValue([1, "user", "x".repeat(MEMORY_LIMITS.textBytesMax + 1), "a", 1, null, [], null]), packValue({ kind: "user" }),
  ]) assert.equal(decodeMemory(bad), undefined);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
    const decoded = decodeMemory(bytes);
    return decoded === undefined || typeof decoded.text === "string";
  }), { numRuns: 5_000 });
  fc.assert(fc.property(fc.array(fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }), fc.double()), { maxLength: 9 }), (fields) => {
    const decoded = decodeMemory(packValue([1, ...fields.slice(1)]));
    // Whatever decodes re-encodes to a value that decodes the same.
    return decoded === undefined || JSON.stringify(decodeMemory(encodeMemory(decoded))) === JSON.stringify(decoded);
  }), { numRuns: 5_000 });
});

test("memory table's rule: a memory under its writer's key; a redaction by a core member; nothing else", () => {
  const core = (id: string) => id === B;
  const value = encodeMemory(record);
  assert.equal(admitMemory({ topic: MEMORY_TOPIC, key: `${A}/mx.0`, value, origin: A }, core), true);
  assert.equal(admitMemory({ topic: MEMORY_TOPIC, key: `${A}/mx.0`, value, origin: B }, core), false, "another's key, not a redaction");
  const redacted = encodeMemory(redaction(record, B));
  assert.equal(admitMemory({ topic: MEMORY_TOPIC, key: `${A}/mx.0`, value: redacted, origin: B }, core), true, "a core member redacts");
  assert.equal(admitMemory({ topic: MEMORY_TOPIC, key: `${B}/mx.0`, value: encodeMemory(redaction(record, A)), origin: A }, core), false, "a contributor redacts only its own");
  assert.equal(admitMemory({ topic: MEMORY_TOPIC, key: `${A}/mx.0`, value: undefined, origin: A }, core), false, "no deletes");
  assert.equal(admitMemory({ topic: "other", key: `${A}/mx.0`, value, origin: A }, core), false);
  assert.equal(admitMemory({ topic: MEMORY_TOPIC, key: `${A}/MX.0`, value, origin: A }, core), false, "not a memory key");
  assert.equal(admitMemory({ topic: MEMORY_TOPIC, key: `${A}/mx.0`, value: new Uint8Array([1]), origin: A }, core), false);
});
