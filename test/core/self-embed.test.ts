// The local embedding (src/core/self/embed.ts): the same bits everywhere (golden checksums of the
// vectors of fixed texts: a platform that computes any value differently fails here), the shape
// and unit length, the tokenizer and stemmer, and any input — empty, huge, broken Unicode — read
// within the documented caps without throwing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { EMBED_DIMS, EMBED_PARAMS, EMBED_VERSION, STOP_WORDS, dot, embed, hash32, stem, tokens, words } from "../../src/core/self/embed.ts";

/** SHA-256 of the vector's float32 bytes, little-endian (the same on any host). */
function checksum(v: Float32Array): string {
  const bytes = new Uint8Array(v.length * 4);
  const view = new DataView(bytes.buffer);
  v.forEach((x, i) => view.setFloat32(i * 4, x, true));
  return createHash("sha256").update(bytes).digest("hex").slice(0, 16);
}

function norm(v: Float32Array): number {
  return Math.sqrt(dot(v, v));
}

const GOLDEN: [string, string][] = [
  ["My daughter's piano lesson is on Thursday at 5.", "a4189358b2e2cff9"],
  ["The Raspberry Pi in the garage runs hot in summer and throttles above 80 degrees.", "b0b29d06a4f787e1"],
  ["when does my kid have music class?", "578f325ffc7a0320"],
  ["Ｆｕｌｌ－ｗｉｄｔｈ ＰＩＡＮＯ, café naïve Ærøskøbing 東京タワー 🎹 don't", "322cc9df29b692a2"],
  ["", "e5a00aa9991ac8a5"],
];

test("embed: golden checksums — the same float32 bits on every platform", () => {
  assert.equal(EMBED_VERSION, "pk-embed-1/512", "a new version needs new golden checksums (and stored vectors are recomputed)");
  for (const [text, sum] of GOLDEN) assert.equal(checksum(embed(text)), sum, `embed(${JSON.stringify(text)})`);
  // The hash behind it, against an independent implementation (Python integers, FNV-1a over the
  // UTF-16 code units, then fmix32).
  assert.equal(hash32(""), 0xab3e7c0b);
  assert.equal(hash32("a"), 0x1a80b1b3);
});

test("embed: EMBED_DIMS float32 values of unit length; the zero vector for a text without words", () => {
  assert.ok(EMBED_DIMS >= 256 && (EMBED_DIMS & (EMBED_DIMS - 1)) === 0, "a power of two of at least 256");
  for (const text of ["piano", "The NAS backs up the photos every night at 2 am.", "5", "東京"]) {
    const v = embed(text);
    assert.ok(v instanceof Float32Array);
    assert.equal(v.length, EMBED_DIMS);
    assert.ok(Math.abs(norm(v) - 1) < 1e-6, `${text}: norm ${norm(v)}`);
  }
  for (const text of ["", "   ", "?!.,;:", "\u0000\u0001", "—"]) assert.equal(norm(embed(text)), 0, JSON.stringify(text));
});

test("embed: case, NFKC width forms and apostrophes do not change the vector", () => {
  assert.deepEqual(embed("PIANO Lesson"), embed("piano lesson"));
  assert.deepEqual(embed("ｐｉａｎｏ ｌｅｓｓｏｎ"), embed("piano lesson"));
  assert.deepEqual(embed("Emma’s piano"), embed("Emma's piano"));
  assert.deepEqual(embed("don't"), embed("dont"));
});

test("embed: texts about the same thing are nearer than unrelated ones", () => {
  const memory = embed("My daughter's piano lesson is on Thursday at 5.");
  const paraphrase = embed("when does my kid have music class?");
  const reworded = embed("what day is the piano lesson?");
  const unrelated = embed("The router's admin page is at 192.168.1.1.");
  assert.ok(dot(memory, reworded) > dot(memory, unrelated) + 0.1, `${dot(memory, reworded)} vs ${dot(memory, unrelated)}`);
  // Through the concept groups only: kid ~ daughter, music ~ piano, class ~ lesson.
  assert.ok(dot(memory, paraphrase) > dot(memory, unrelated) + 0.1, `${dot(memory, paraphrase)} vs ${dot(memory, unrelated)}`);
});

test("tokens: stems of content words, stop words left out; words split letters from digits", () => {
  assert.deepEqual(words("Leo's Pi4 can't run"), ["leo", "pi", "4", "cant", "run"]);
  assert.deepEqual(tokens("My daughter's piano lessons are on Thursdays"), ["daughter", "piano", "lesson", "thursday"]);
  assert.deepEqual(tokens("the and of to"), []);
  for (const w of ["the", "my", "when", "does"]) assert.ok(STOP_WORDS.has(w));
  const cases: [string, string][] = [
    ["lessons", "lesson"], ["classes", "class"], ["parties", "party"], ["boxes", "box"], ["running", "run"],
    ["planned", "plan"], ["driving", "driv"], ["drives", "driv"], ["family", "family"], ["happily", "happi"],
    ["bus", "bus"], ["glasses", "glass"], ["studied", "study"], ["naïve", "naïve"], ["need", "need"],
  ];
  for (const [word, expected] of cases) assert.equal(stem(word), expected, word);
});

test("embed: a huge text is read up to its caps (the result is that of its first inputChars units)", () => {
  const unit = "The backup job copies the photos to the external drive every night. ";
  const huge = unit.repeat(Math.ceil((4 * 1024 * 1024) / unit.length));
  assert.deepEqual(embed(huge), embed(huge.slice(0, EMBED_PARAMS.inputChars)));
  assert.equal(words("a ".repeat(EMBED_PARAMS.inputChars)).length, EMBED_PARAMS.inputWords);
  // A high surrogate left alone at the cut is dropped, not kept half.
  const cutEmoji = `${"x".repeat(EMBED_PARAMS.inputChars - 1)}🎹tail`;
  assert.deepEqual(embed(cutEmoji), embed("x".repeat(EMBED_PARAMS.inputChars - 1)));
  // NFKC that lengthens the text (U+FDFA is 18 characters in NFKC) is cut again.
  assert.equal(norm(embed("\ufdfa".repeat(EMBED_PARAMS.inputChars))) > 0, true);
});

test("embed: any string — lone surrogates, controls, marks, every plane — gives finite values of norm 0 or 1", () => {
  fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 300 }), fc.string({ unit: "grapheme-composite", maxLength: 80 }), (a, b) => {
    for (const text of [a, b, a + b]) {
      const v = embed(text);
      assert.equal(v.length, EMBED_DIMS);
      for (const x of v) assert.ok(Number.isFinite(x));
      const n = norm(v);
      assert.ok(n === 0 || Math.abs(n - 1) < 1e-6, `norm ${n}`);
      assert.deepEqual(embed(text), v, "deterministic");
      for (const t of tokens(text)) assert.ok(t.length > 0);
    }
  }), { numRuns: 300 });
  // Not a string at all (a caller's bug through `any`): the zero vector, not an exception.
  assert.equal(norm(embed(undefined as unknown as string)), 0);
  assert.equal(norm(embed(42 as unknown as string)), 0);
});
