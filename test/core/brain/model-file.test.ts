// The Brain's weights as a file (src/core/brain/model-file.ts): exact round trips, the documented
// layout, one specific refusal per check, and fuzz — random bytes, truncations, bit flips and header
// mutations never throw, and whatever decodes re-encodes to the same bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  MODEL_FILE, decodeModelFile, encodeModelFile, modelHeaderError, type ModelFileHeader,
} from "../../../src/core/brain/model-file.ts";
import { initParams, paramCount, SEED_CONFIG, type ModelConfig } from "../../../src/core/brain/transformer.ts";
import { createRng } from "../../../src/core/util/rng.ts";
import { toHex } from "../../../src/core/util/bytes.ts";

const BIG_CONFIG: ModelConfig = { vocab: 16, seqLen: 32, dModel: 64, nHeads: 4, dFF: 128, nLayers: 2, nClasses: 5 };

const seedHeader: ModelFileHeader = {
  config: SEED_CONFIG, version: 1, tag: "0123456789abcdef", createdMs: 1_700_000_000_000, origin: "node-a", kind: "init",
};
const fullHeader: ModelFileHeader = {
  config: BIG_CONFIG, version: 42, tag: "tag.with-ünïcödé", createdMs: 0, origin: "n".repeat(64), kind: "evolved",
  metrics: { heldOutAccuracy: 0.875, baselineAccuracy: 1 / 3, trainAccuracy: 0.9, loss: 0.31, examples: 500, epochs: 2, rounds: 20, generations: 7 },
  lineage: { base: 41, mutations: [{ seed: 0, sigma: 0 }, { seed: 0xffff_ffff, sigma: 0.02 }] },
};

/** Bits of a Float32Array, for exact comparison (−0 and all). */
const bits = (a: Float32Array): string => toHex(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));

function decodeOk(bytes: Uint8Array): { header: ModelFileHeader; params: Float32Array } {
  const r = decodeModelFile(bytes);
  assert.ok(r.ok, r.ok ? "" : r.error);
  return r;
}

function errorOf(bytes: Uint8Array, maxBytes?: number): string {
  const r = decodeModelFile(bytes, maxBytes === undefined ? {} : { maxBytes });
  assert.equal(r.ok, false, "should be refused");
  return r.ok ? "" : r.error;
}

/** A file assembled by hand: any header text, padding bytes and parameter bytes. */
function rawFile(headerText: string, paramBytes: Uint8Array, pad?: number[]): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const padding = pad ?? new Array<number>((4 - ((8 + json.length) % 4)) % 4).fill(0);
  const out = new Uint8Array(8 + json.length + padding.length + paramBytes.length);
  out.set([0x50, 0x4b, 0x4d, 0x31]);
  new DataView(out.buffer).setUint32(4, json.length, true);
  out.set(json, 8);
  out.set(padding, 8 + json.length);
  out.set(paramBytes, 8 + json.length + padding.length);
  return out;
}

const paramsOf = (cfg: ModelConfig, seed = 1): Float32Array => initParams(cfg, createRng(seed), 0.5);
const bytesOf = (p: Float32Array): Uint8Array => new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
const seedParams = paramsOf(SEED_CONFIG);
const seedBytes = bytesOf(seedParams);

test("model file: the seed model and a bigger one round trip exactly and re-encode to the same bytes", () => {
  for (const [header, params] of [[seedHeader, seedParams.slice()], [fullHeader, paramsOf(BIG_CONFIG, 2)]] as const) {
    params[0] = -0;
    const bytes = encodeModelFile(header, params);
    const back = decodeOk(bytes);
    assert.deepEqual(back.header, header);
    assert.equal(back.params.length, paramCount(header.config));
    assert.equal(bits(back.params), bits(params), "parameters bit for bit");
    assert.ok(Object.is(back.params[0], -0));
    assert.deepEqual(encodeModelFile(back.header, back.params), bytes);
    assert.ok(back.params.buffer !== bytes.buffer, "the params are a copy, not a view of the input");
  }
  assert.equal(paramCount(BIG_CONFIG), 70_533);
});

test("model file: the layout is as documented — magic, u32 LE header length, JSON, zero padding, f32 LE", () => {
  const sizes = new Set<number>();
  for (let len = 1; len <= 8; len++) {
    const header: ModelFileHeader = { ...seedHeader, origin: "o".repeat(len) };
    const bytes = encodeModelFile(header, seedParams);
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), "PKM1");
    const h = view.getUint32(4, true);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + h));
    assert.equal(text, JSON.stringify({
      config: { vocab: 4, seqLen: 4, dModel: 8, nHeads: 2, dFF: 16, nLayers: 1, nClasses: 3 },
      version: 1, tag: "0123456789abcdef", createdMs: 1_700_000_000_000, origin: "o".repeat(len), kind: "init",
    }));
    const at = 8 + h + ((4 - ((8 + h) % 4)) % 4);
    sizes.add((8 + h) % 4);
    assert.equal(at % 4, 0);
    assert.ok(bytes.subarray(8 + h, at).every((b) => b === 0), "zero padding");
    assert.equal(bytes.length, at + 4 * 715);
    assert.equal(view.getFloat32(at, true), seedParams[0]);
    assert.equal(view.getFloat32(bytes.length - 4, true), seedParams[714]);
  }
  assert.equal(sizes.size, 4, "every padding length 0..3 was exercised");
  assert.equal(MODEL_FILE.path, "/shared/brain/model.pkm");
});

test("model file: each check refuses its bad input with a specific error", () => {
  const good = encodeModelFile(seedHeader, seedParams);
  const text = JSON.stringify(seedHeader);
  assert.ok(decodeModelFile(rawFile(text, seedBytes)).ok, "the hand-built file is right");
  assert.deepEqual(rawFile(text, seedBytes), good);
  const withHeader = (h: unknown): Uint8Array => rawFile(JSON.stringify(h), seedBytes);
  const headerError = (h: unknown): string => errorOf(withHeader(h));

  // Size, magic, lengths.
  assert.equal(errorOf(good, good.length - 1), `oversize: ${good.length} bytes > ${good.length - 1}`);
  assert.ok(decodeModelFile(good, { maxBytes: good.length }).ok);
  assert.match(errorOf(new Uint8Array(0)), /^truncated: 0 bytes/);
  assert.match(errorOf(good.subarray(0, 7)), /^truncated: 7 bytes/);
  assert.match(errorOf(Uint8Array.of(0x50, 0x4b, 0x4d, 0x33, ...good.subarray(4))), /^bad magic/);
  assert.match(errorOf(Uint8Array.of(0x50, 0x4b, 0x4d, 0x32, ...good.subarray(4))), /^signature: missing/, "PKM2 is the signed format: its block is required");
  const lengthPatched = (n: number): Uint8Array => {
    const copy = good.slice();
    new DataView(copy.buffer).setUint32(4, n, true);
    return copy;
  };
  assert.match(errorOf(lengthPatched(MODEL_FILE.headerBytesMax + 1)), /^header: 1048577 bytes > 1048576$/);
  assert.equal(errorOf(lengthPatched(good.length - 7)), `truncated: header of ${good.length - 7} bytes, ${good.length - 8} left`);
  assert.match(errorOf(lengthPatched(10)), /^header: not JSON$/);
  assert.match(errorOf(rawFile("\"ab\"", seedBytes).map((b, i) => (i === 9 ? 0xff : b))), /^header: not valid UTF-8$/);
  assert.match(errorOf(rawFile("{", seedBytes)), /^header: not JSON$/);
  assert.match(errorOf(rawFile("", seedBytes)), /^header: not JSON$/);

  // Header shape.
  assert.match(headerError([seedHeader]), /^header: the header must be an object, got an array$/);
  assert.match(headerError(null), /^header: the header must be an object, got null$/);
  assert.match(headerError(7), /^header: the header must be an object, got 7$/);
  assert.match(headerError({ ...seedHeader, extra: 1 }), /^header: unknown key "extra"$/);
  assert.match(errorOf(rawFile(text.replace("{", "{\"__proto__\":{},"), seedBytes)), /^header: unknown key "__proto__"$/);
  for (const key of ["config", "version", "tag", "createdMs", "origin", "kind"] as const) {
    const h: Record<string, unknown> = { ...seedHeader };
    delete h[key];
    assert.match(headerError(h), new RegExp(`^header: missing ${key}$`));
  }
  assert.match(headerError({ ...seedHeader, config: { ...SEED_CONFIG, dropout: 0.1 } }), /^header: config: unknown key "dropout"$/);
  assert.match(headerError({ ...seedHeader, config: { ...SEED_CONFIG, nHeads: 3 } }), /^header: model config: dModel \(8\) must be a multiple of nHeads \(3\)$/);
  assert.match(headerError({ ...seedHeader, config: { ...SEED_CONFIG, vocab: 0 } }), /^header: model config: vocab must be a positive integer/);
  assert.match(headerError({ ...seedHeader, config: "seed" }), /^header: model config must be an object$/);
  assert.match(headerError({ ...seedHeader, config: { ...SEED_CONFIG, nLayers: 1024, dModel: 4096, dFF: 8192 } }), /exceed the bound 268435456/);
  for (const version of [0, 1.5, 2 ** 32, -1, "1"]) assert.match(headerError({ ...seedHeader, version }), /^header: version must be an integer 1\.\.4294967295/);
  assert.ok(decodeModelFile(withHeader({ ...seedHeader, version: 2 ** 32 - 1 })).ok);
  for (const tag of ["", "t".repeat(65), 5, "\ud800"]) assert.match(headerError({ ...seedHeader, tag }), /^header: tag must be a well-formed string/);
  assert.ok(decodeModelFile(withHeader({ ...seedHeader, tag: "t".repeat(64) })).ok);
  for (const createdMs of [-1, 0.5, 2 ** 53, "now"]) assert.match(headerError({ ...seedHeader, createdMs }), /^header: createdMs must be a safe integer >= 0/);
  for (const origin of ["", "o".repeat(65), null]) assert.match(headerError({ ...seedHeader, origin }), /^header: origin must be a well-formed string/);
  for (const kind of ["final", "", 1]) assert.match(headerError({ ...seedHeader, kind }), /^header: kind must be one of init, trained, federated, evolved/);

  // Metrics and lineage.
  assert.match(headerError({ ...seedHeader, metrics: [] }), /^header: metrics must be an object, got an array$/);
  assert.match(headerError({ ...seedHeader, metrics: { accuracy: 1 } }), /^header: metrics: unknown key "accuracy"$/);
  assert.match(headerError({ ...seedHeader, metrics: { loss: "0.3" } }), /^header: metrics\.loss must be a finite number, got "0\.3"$/);
  assert.match(headerError({ ...seedHeader, metrics: { loss: null } }), /^header: metrics\.loss must be a finite number, got null$/);
  // JSON cannot write Infinity, but 1e400 parses to it.
  assert.match(errorOf(rawFile(`${text.slice(0, -1)},"metrics":{"loss":1e400}}`, seedBytes)),
    /^header: metrics\.loss must be a finite number, got Infinity$/);
  assert.ok(decodeModelFile(withHeader({ ...seedHeader, metrics: {} })).ok, "an empty metrics object is fine");
  assert.match(headerError({ ...seedHeader, lineage: 3 }), /^header: lineage must be an object, got 3$/);
  assert.match(headerError({ ...seedHeader, lineage: { parent: 1 } }), /^header: lineage: unknown key "parent"$/);
  assert.match(headerError({ ...seedHeader, lineage: { base: 0 } }), /^header: lineage\.base must be a version/);
  assert.match(headerError({ ...seedHeader, lineage: { mutations: {} } }), /^header: lineage\.mutations must be an array, got object$/);
  const mutations = (n: number): unknown[] => Array.from({ length: n }, (_, i) => ({ seed: i, sigma: 0.01 }));
  assert.ok(decodeModelFile(withHeader({ ...seedHeader, lineage: { base: 1, mutations: mutations(MODEL_FILE.mutationsMax) } })).ok);
  assert.match(headerError({ ...seedHeader, lineage: { mutations: mutations(MODEL_FILE.mutationsMax + 1) } }), /^header: lineage\.mutations: 10001 entries > 10000$/);
  assert.match(headerError({ ...seedHeader, lineage: { mutations: [{ seed: 1, sigma: 0 }, 5] } }), /^header: lineage\.mutations\[1\] must be an object, got 5$/);
  assert.match(headerError({ ...seedHeader, lineage: { mutations: [{ seed: 1, sigma: 0, rng: "x" }] } }), /^header: lineage\.mutations\[0\]: unknown key "rng"$/);
  for (const seed of [-1, 2 ** 32, 0.5, "1"]) assert.match(headerError({ ...seedHeader, lineage: { mutations: [{ seed, sigma: 0 }] } }), /^header: lineage\.mutations\[0\]\.seed must be a u32/);
  for (const sigma of [-0.1, "0"]) assert.match(headerError({ ...seedHeader, lineage: { mutations: [{ seed: 1, sigma }] } }), /^header: lineage\.mutations\[0\]\.sigma must be finite and >= 0/);
  assert.match(headerError({ ...seedHeader, lineage: { mutations: [{ seed: 1 }] } }), /sigma must be finite and >= 0, got undefined/);

  // Canonical form: key order, whitespace, duplicate keys, number spelling.
  const reordered = { version: 1, config: SEED_CONFIG, tag: seedHeader.tag, createdMs: seedHeader.createdMs, origin: "node-a", kind: "init" };
  assert.match(headerError(reordered), /^header: not in canonical form/);
  assert.match(errorOf(rawFile(JSON.stringify(seedHeader, null, 1), seedBytes)), /^header: not in canonical form/);
  assert.match(errorOf(rawFile(text.replace("\"version\":1", "\"version\":2,\"version\":1"), seedBytes)), /^header: not in canonical form/);
  assert.match(errorOf(rawFile(text.replace("\"version\":1", "\"version\":1.0"), seedBytes)), /^header: not in canonical form/);

  // Padding and parameters.
  // A header whose end needs 3 bytes of padding.
  const padText = [1, 2, 3, 4].map((n) => JSON.stringify({ ...seedHeader, origin: "o".repeat(n) }))
    .find((t) => (8 + new TextEncoder().encode(t).length) % 4 === 1) ?? "";
  const padded = rawFile(padText, seedBytes);
  const padAt = 8 + new TextEncoder().encode(padText).length;
  assert.ok(decodeModelFile(padded).ok);
  assert.match(errorOf(padded.map((b, i) => (i === padAt ? 1 : b))), /^padding: not zero$/);
  assert.match(errorOf(padded.map((b, i) => (i === padAt + 2 ? 0x80 : b))), /^padding: not zero$/);
  assert.match(errorOf(padded.subarray(0, padAt + 1)), /^truncated: padding needs 3 bytes, 1 left$/);
  assert.match(errorOf(padded.subarray(0, padAt)), /^truncated: padding needs 3 bytes, 0 left$/);
  assert.match(errorOf(padded.subarray(0, padAt + 3)), /^params: 0 bytes, the model needs 715 × 4 = 2860$/);
  assert.match(errorOf(rawFile(text, seedBytes.subarray(4))), /^params: 2856 bytes, the model needs 715 × 4 = 2860$/);
  assert.match(errorOf(rawFile(text, Uint8Array.of(...seedBytes, 0, 0, 0, 0))), /^params: 2864 bytes, the model needs 715 × 4 = 2860$/);
  assert.match(errorOf(rawFile(text, seedBytes.subarray(1))), /^params: 2859 bytes/);
  assert.match(errorOf(rawFile(text, new Uint8Array(0))), /^params: 0 bytes/);
  for (const [at, value, shown] of [[0, NaN, "NaN"], [714, Infinity, "Infinity"], [300, -Infinity, "-Infinity"]] as const) {
    const p = seedParams.slice();
    p[at] = value;
    assert.equal(errorOf(rawFile(text, bytesOf(p))), `params[${at}] is ${shown}: every parameter must be finite`);
  }
  const maxFinite = seedParams.slice();
  maxFinite[0] = 3.4028234663852886e38;
  assert.ok(decodeModelFile(rawFile(text, bytesOf(maxFinite))).ok, "the largest f32 is finite");
});

test("model file: the encoder refuses what the decoder would refuse", () => {
  const bad: [ModelFileHeader, Float32Array, RegExp][] = [
    [{ ...seedHeader, version: 0 }, seedParams, /version/],
    [{ ...seedHeader, tag: "" }, seedParams, /tag/],
    [{ ...seedHeader, config: { ...SEED_CONFIG, nHeads: 3 } }, seedParams, /nHeads/],
    [{ ...seedHeader, metrics: { loss: NaN } }, seedParams, /metrics\.loss/],
    [{ ...seedHeader, lineage: { mutations: [{ seed: 1, sigma: -1 }] } }, seedParams, /sigma/],
    [{ ...seedHeader, kind: "other" as "init" }, seedParams, /kind/],
    [{ ...seedHeader, extra: 1 } as ModelFileHeader, seedParams, /unknown key "extra"/],
    [seedHeader, seedParams.subarray(1), /714 parameters, the model needs 715/],
    [seedHeader, Float32Array.from(seedParams, (x, i) => (i === 5 ? NaN : x)), /params\[5\] is NaN/],
  ];
  for (const [header, params, error] of bad) assert.throws(() => encodeModelFile(header, params), error);
  assert.equal(modelHeaderError(seedHeader), null);
  assert.equal(modelHeaderError(fullHeader), null);
  // Keys the caller wrote in another order are written canonically, and decode to the same header.
  const shuffled = { lineage: fullHeader.lineage, kind: "evolved", metrics: { epochs: 2, loss: 0.31 }, origin: "o", createdMs: 5, tag: "t",
    version: 3, config: { nClasses: 5, nLayers: 2, dFF: 128, nHeads: 4, dModel: 64, seqLen: 32, vocab: 16 } } as ModelFileHeader;
  const back = decodeOk(encodeModelFile(shuffled, paramsOf(BIG_CONFIG))).header;
  assert.deepEqual(back, shuffled);
  assert.deepEqual(Object.keys(back), ["config", "version", "tag", "createdMs", "origin", "kind", "metrics", "lineage"]);
});

/** Decoding never throws, never reports an internal error, and whatever it accepts is canonical. */
function decodeSafely(bytes: Uint8Array): void {
  const r = decodeModelFile(bytes);
  if (!r.ok) {
    assert.equal(typeof r.error, "string");
    assert.doesNotMatch(r.error, /^internal/);
    return;
  }
  assert.deepEqual(encodeModelFile(r.header, r.params), bytes, "an accepted input re-encodes to itself");
}

const tinyConfig: ModelConfig = { vocab: 1, seqLen: 1, dModel: 1, nHeads: 1, dFF: 1, nLayers: 1, nClasses: 1 };
const tinyParams = new Float32Array(paramCount(tinyConfig)).map((_, i) => i / 7);

test("model file: random bytes never throw (fuzz)", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => decodeSafely(bytes)), { numRuns: 2000 });
  // Past the magic: a header length, then noise.
  fc.assert(fc.property(fc.integer({ min: 0, max: 400 }), fc.uint8Array({ maxLength: 400 }), (n, rest) => {
    const bytes = new Uint8Array(8 + rest.length);
    bytes.set([0x50, 0x4b, 0x4d, 0x31]);
    new DataView(bytes.buffer).setUint32(4, n, true);
    bytes.set(rest, 8);
    decodeSafely(bytes);
  }), { numRuns: 2000 });
});

test("model file: truncations and bit flips of valid files never throw (fuzz)", () => {
  const files = [encodeModelFile({ ...fullHeader, config: tinyConfig }, tinyParams), encodeModelFile(seedHeader, seedParams)];
  fc.assert(fc.property(fc.constantFrom(...files), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), { maxLength: 4 }),
    fc.option(fc.nat(), { nil: undefined }), (file, flips, cut) => {
      const bytes = file.slice();
      for (const [at, bit] of flips) bytes[at % bytes.length] = (bytes[at % bytes.length] as number) ^ (1 << bit);
      decodeSafely(cut === undefined ? bytes : bytes.subarray(0, cut % (bytes.length + 1)));
    }), { numRuns: 3000 });
  // Every prefix of a valid file is refused.
  const small = files[0] as Uint8Array;
  for (let n = 0; n < small.length; n++) assert.equal(decodeModelFile(small.subarray(0, n)).ok, false, `cut at ${n}`);
});

test("model file: mutated headers never throw; the ones accepted are valid (fuzz)", () => {
  const base: Record<string, unknown> = JSON.parse(JSON.stringify({ ...fullHeader, config: tinyConfig }));
  const paramBytes = bytesOf(tinyParams);
  const keys = ["config", "version", "tag", "createdMs", "origin", "kind", "metrics", "lineage", "__proto__", "extra"];
  const value = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.double(), fc.integer(), fc.constantFrom(tinyConfig, 1, 2 ** 32, -0, ""));
  const edit = fc.oneof(
    fc.record({ op: fc.constant("delete" as const), key: fc.constantFrom(...keys) }),
    fc.record({ op: fc.constant("set" as const), key: fc.constantFrom(...keys), value }),
    fc.record({ op: fc.constant("nested" as const), key: fc.constantFrom("config", "metrics", "lineage"), sub: fc.string({ maxLength: 16 }), value }),
  );
  let accepted = 0;
  fc.assert(fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), fc.boolean(), (edits, pretty) => {
    const h: Record<string, unknown> = structuredClone(base);
    for (const e of edits) {
      if (e.op === "delete") delete h[e.key];
      else if (e.op === "set") Object.defineProperty(h, e.key, { value: e.value, enumerable: true, writable: true, configurable: true });
      else {
        const inner = h[e.key];
        const obj: Record<string, unknown> = typeof inner === "object" && inner !== null ? { ...(inner as Record<string, unknown>) } : {};
        Object.defineProperty(obj, e.sub, { value: e.value, enumerable: true, writable: true, configurable: true });
        h[e.key] = obj;
      }
    }
    const text = JSON.stringify(h, null, pretty ? 1 : undefined) ?? "";
    const r = decodeModelFile(rawFile(text, paramBytes));
    if (r.ok) {
      accepted++;
      assert.equal(modelHeaderError(JSON.parse(text)), null);
      assert.deepEqual(encodeModelFile(r.header, r.params), rawFile(text, paramBytes));
    } else {
      assert.doesNotMatch(r.error, /^internal/);
      assert.match(r.error, /^(header|params|padding|truncated)/);
    }
  }), { numRuns: 2000 });
  assert.ok(accepted > 0, "some mutations (e.g. another valid version or metric) are accepted");
});
