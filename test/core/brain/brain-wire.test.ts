// Brain RPC codec (src/core/brain/brain-wire.ts): exact round trips (−Infinity, NaN payloads),
// canonical encoding, refusals, and fuzz — random bytes, truncations and bit flips never throw.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  BRAIN_WIRE, decodeBrainMessage, decodeTensor, encodeBrainMessage, encodeTensor, type BrainMessage, type Tensor,
} from "../../../src/core/brain/brain-wire.ts";
import { toHex } from "../../../src/core/util/bytes.ts";

/** A value with every typed array replaced by its type and raw bytes: equal iff bit-for-bit equal. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (ArrayBuffer.isView(v)
    ? `${v.constructor.name}:${toHex(new Uint8Array(v.buffer, v.byteOffset, v.byteLength))}`
    : v));
}

function decodeOk(bytes: Uint8Array): BrainMessage {
  const r = decodeBrainMessage(bytes);
  assert.ok(r.ok, r.ok ? "" : r.error);
  return r.msg;
}

function errorOf(bytes: Uint8Array, bytesMax?: number): string {
  const r = decodeBrainMessage(bytes, bytesMax === undefined ? undefined : { bytesMax });
  assert.equal(r.ok, false, "should be refused");
  return r.ok ? "" : r.error;
}

/** An f64 NaN with a payload, and a negative f32 NaN with a payload (not the canonical NaN). */
const nan64 = (): Float64Array => {
  const a = new Float64Array(1);
  new DataView(a.buffer).setBigUint64(0, 0x7ff0_0000_dead_beefn, true);
  return a;
};
const nan32 = new Float32Array(Uint32Array.of(0xffc0_1234).buffer);

const f32 = (...xs: number[]): Float32Array => Float32Array.from(xs);
const examples: BrainMessage[] = [
  { t: "partial-req", session: "s1", requestId: 7, layer: 3, queryPos: 1023, q: f32(1, -2, 0.5, 3) },
  { t: "partial-req", session: "séance-✓", requestId: 0xffff_ffff, layer: 0xffff, queryPos: 0, q: f32(1, 2),
    append: { position: 0xffff_ffff, k: f32(-0, Infinity), v: new Float32Array(Uint32Array.of(0xffc0_1234, 0x3f80_0000).buffer) } },
  { t: "partial-res", requestId: 9, m: Float64Array.of(-Infinity, 2.5), l: Float64Array.of(0, 1.0000000000000002),
    o: Float64Array.of(0, 0, 0, Math.PI, -1e-310, Number.MAX_VALUE) },
  { t: "tp-req", session: "x", requestId: 1, layer: 2, part: "attn", input: { rows: 2, cols: 3, data: f32(1, 2, 3, 4, 5, 6) }, range: [0, 2], startPos: 17 },
  { t: "tp-req", session: "x", requestId: 2, layer: 2, part: "ffn", input: { rows: 1, cols: 2, data: f32(1, 2) }, range: [64, 128], startPos: 0 },
  { t: "tp-res", requestId: 1, partial: { rows: 2, cols: 1, data: f32(0.25, -0.25) } },
  { t: "stage-req", session: "sess", requestId: 3, layers: [4, 8], hidden: { rows: 1, cols: 4, data: f32(1, 2, 3, 4) }, startPos: 99 },
  { t: "stage-res", requestId: 3, hidden: { rows: 1, cols: 4, data: f32(4, 3, 2, 1) } },
  { t: "error", requestId: 5, code: "full", message: "KV shard full: layer 1 holds its capacity of 4096 positions" },
  { t: "error", requestId: 0, code: "e", message: "" },
  { t: "end-session", session: "s".repeat(64) },
  { t: "expert-req", requestId: 11, ids: Int32Array.of(0, 3, -1, 2147483647), values: f32(20.5, -0, NaN, 1e-40) },
  { t: "expert-req", requestId: 0, ids: Int32Array.of(2), values: f32(0) },
  { t: "expert-res", requestId: 11, version: 0xffff_ffff, logits: f32(0.1, -3, Infinity) },
  { t: "train-req", requestId: 12, round: 4, epochs: 0xffff, seed: 0xdead_beef, params: new Float32Array(715).map((_, i) => Math.sin(i)) },
  { t: "train-res", requestId: 12, round: 4, n: 0, params: f32(-Infinity, 2) },
];

test("brain wire: example messages round trip exactly, and re-encode to the same bytes", () => {
  for (const msg of examples) {
    const bytes = encodeBrainMessage(msg);
    assert.equal(bytes[0], BRAIN_WIRE.version);
    const back = decodeOk(bytes);
    assert.equal(canonical(back), canonical(msg), msg.t);
    assert.deepEqual(encodeBrainMessage(back), bytes);
  }
});

test("brain wire: −Infinity and NaN payloads survive bit for bit; a partial response is what JSON cannot carry", () => {
  const o = new Float64Array(4);
  o.set(nan64(), 1);
  const msg: BrainMessage = { t: "partial-res", requestId: 1, m: Float64Array.of(-Infinity, 0), l: Float64Array.of(0, 1), o };
  const back = decodeOk(encodeBrainMessage(msg));
  assert.ok(back.t === "partial-res");
  assert.equal(back.m[0], -Infinity);
  assert.equal(new DataView(back.o.buffer, back.o.byteOffset).getBigUint64(8, true), 0x7ff0_0000_dead_beefn);
  assert.equal(JSON.stringify([-Infinity, NaN]), "[null,null]", "why floats do not travel as JSON");
  const q = new Float32Array(2);
  q.set(nan32, 0);
  const req = decodeOk(encodeBrainMessage({ t: "partial-req", session: "a", requestId: 1, layer: 0, queryPos: 0, q }));
  assert.ok(req.t === "partial-req");
  assert.equal(new Uint32Array(req.q.buffer, req.q.byteOffset, 2)[0], 0xffc0_1234, "f32 NaN payload kept");
});

test("brain wire: the layout is little-endian and as documented", () => {
  const bytes = encodeBrainMessage({ t: "tp-res", requestId: 0x0102_0304, partial: { rows: 1, cols: 2, data: f32(1, -2) } });
  assert.equal(toHex(bytes), [
    "01", "04", "04030201", // version, kind 4, requestId
    "01", "02", "01000000", "02000000", "08000000", // f32, rank 2, [1, 2], 8 bytes
    "0000803f", "000000c0", // 1, −2
  ].join(""));
  assert.equal(toHex(encodeBrainMessage({ t: "end-session", session: "ab" })), "01" + "08" + "02" + "6162");
  assert.equal(toHex(encodeBrainMessage({ t: "expert-req", requestId: 1, ids: Int32Array.of(-2), values: f32(1) })), [
    "01", "09", "01000000", // version, kind 9, requestId
    "03", "01", "01000000", "04000000", "feffffff", // ids: i32, rank 1, [1], 4 bytes, −2
    "01", "01", "01000000", "04000000", "0000803f", // values: f32 [1], 1
  ].join(""));
  assert.equal(toHex(encodeBrainMessage({ t: "expert-res", requestId: 2, version: 0x0a0b_0c0d, logits: f32(-2) })),
    "01" + "0a" + "02000000" + "0d0c0b0a" + "01" + "01" + "01000000" + "04000000" + "000000c0");
  assert.equal(toHex(encodeBrainMessage({ t: "train-req", requestId: 3, round: 4, epochs: 0x0102, seed: 5, params: f32(1) })),
    "01" + "0b" + "03000000" + "04000000" + "0201" + "05000000" + "01" + "01" + "01000000" + "04000000" + "0000803f");
  assert.equal(toHex(encodeBrainMessage({ t: "train-res", requestId: 3, round: 4, n: 6, params: f32(1) })),
    "01" + "0c" + "03000000" + "04000000" + "06000000" + "01" + "01" + "01000000" + "04000000" + "0000803f");
});

/** Arbitrary bit patterns, NaNs and infinities included. */
const f32Of = (n: number): fc.Arbitrary<Float32Array> =>
  fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: n, maxLength: n }).map((a) => new Float32Array(Uint32Array.from(a).buffer));
const i32Of = (n: number): fc.Arbitrary<Int32Array> =>
  fc.array(fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff }), { minLength: n, maxLength: n }).map((a) => Int32Array.from(a));
const f64Of = (n: number): fc.Arbitrary<Float64Array> =>
  fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 2 * n, maxLength: 2 * n }).map((a) => new Float64Array(Uint32Array.from(a).buffer));
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const utf8Len = (s: string): number => new TextEncoder().encode(s).length;
const sessionArb = fc.string({ unit: "binary", minLength: 1, maxLength: 16 }).filter((s) => utf8Len(s) >= 1 && utf8Len(s) <= 64);
const matrixArb = fc.tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 6 }))
  .chain(([rows, cols]) => f32Of(rows * cols).map((data) => ({ rows, cols, data })));
const rangeArb = (max: number): fc.Arbitrary<readonly [number, number]> =>
  fc.tuple(fc.integer({ min: 0, max }), fc.integer({ min: 0, max })).filter(([a, b]) => a !== b).map(([a, b]) => [Math.min(a, b), Math.max(a, b)] as const);

const messageArb: fc.Arbitrary<BrainMessage> = fc.oneof(
  fc.tuple(sessionArb, u32, u16, u32, fc.integer({ min: 1, max: 16 }), fc.boolean(), u32).chain(([session, requestId, layer, queryPos, d, withAppend, position]) =>
    fc.tuple(f32Of(d), f32Of(d), f32Of(d)).map(([q, k, v]): BrainMessage => (withAppend
      ? { t: "partial-req", session, requestId, layer, queryPos, q, append: { position, k, v } }
      : { t: "partial-req", session, requestId, layer, queryPos, q }))),
  fc.tuple(u32, fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 8 })).chain(([requestId, H, dh]) =>
    fc.tuple(f64Of(H), f64Of(H), f64Of(H * dh)).map(([m, l, o]): BrainMessage => ({ t: "partial-res", requestId, m, l, o }))),
  fc.record({
    t: fc.constant("tp-req" as const), session: sessionArb, requestId: u32, layer: u16, part: fc.constantFrom("attn" as const, "ffn" as const),
    input: matrixArb, range: rangeArb(0xffff_ffff), startPos: u32,
  }),
  fc.record({ t: fc.constant("tp-res" as const), requestId: u32, partial: matrixArb }),
  fc.record({ t: fc.constant("stage-req" as const), session: sessionArb, requestId: u32, layers: rangeArb(0xffff), hidden: matrixArb, startPos: u32 }),
  fc.record({ t: fc.constant("stage-res" as const), requestId: u32, hidden: matrixArb }),
  fc.record({
    t: fc.constant("error" as const), requestId: u32,
    code: fc.string({ unit: "binary", minLength: 1, maxLength: 16 }).filter((s) => utf8Len(s) >= 1),
    message: fc.string({ unit: "binary", maxLength: 256 }),
  }),
  fc.record({ t: fc.constant("end-session" as const), session: sessionArb }),
  fc.tuple(u32, fc.oneof(fc.integer({ min: 1, max: 12 }), fc.constant(BRAIN_WIRE.expertTokensMax))).chain(([requestId, T]) =>
    fc.tuple(i32Of(T), f32Of(T)).map(([ids, values]): BrainMessage => ({ t: "expert-req", requestId, ids, values }))),
  fc.record({ t: fc.constant("expert-res" as const), requestId: u32, version: u32, logits: fc.integer({ min: 1, max: 10 }).chain(f32Of) }),
  fc.record({ t: fc.constant("train-req" as const), requestId: u32, round: u32, epochs: u16, seed: u32, params: fc.integer({ min: 1, max: 40 }).chain(f32Of) }),
  fc.record({ t: fc.constant("train-res" as const), requestId: u32, round: u32, n: u32, params: fc.integer({ min: 1, max: 40 }).chain(f32Of) }),
);

test("brain wire: arbitrary messages round trip bit for bit (property)", () => {
  fc.assert(fc.property(messageArb, (msg) => {
    const bytes = encodeBrainMessage(msg);
    const back = decodeOk(bytes);
    assert.equal(canonical(back), canonical(msg));
    assert.deepEqual(encodeBrainMessage(back), bytes);
  }), { numRuns: 2000 });
});

test("brain wire: malformed and out-of-bounds messages are refused with a reason", () => {
  const valid = encodeBrainMessage(examples[0] as BrainMessage);
  const withAppend = encodeBrainMessage(examples[1] as BrainMessage);
  const patched = (bytes: Uint8Array, at: number, ...values: number[]): Uint8Array => {
    const copy = bytes.slice();
    values.forEach((v, i) => (copy[at + i] = v));
    return copy;
  };
  assert.match(errorOf(valid, valid.length - 1), /oversize/);
  assert.ok(decodeBrainMessage(valid, { bytesMax: valid.length }).ok);
  assert.match(errorOf(new Uint8Array(0)), /truncated/);
  assert.match(errorOf(patched(valid, 0, 2)), /version 2/);
  assert.match(errorOf(patched(valid, 1, 0)), /unknown kind 0/);
  assert.match(errorOf(patched(valid, 1, 13)), /unknown kind 13/);
  assert.match(errorOf(Uint8Array.of(...valid, 0)), /1 bytes after/);
  assert.match(errorOf(valid.subarray(0, valid.length - 1)), /truncated/);
  // partial-req: [1, 1, len 2, "s1", requestId 4, layer 2, queryPos 4, flags 1 at 15, q tensor at 16]
  assert.match(errorOf(patched(valid, 15, 2)), /unknown flags/);
  assert.match(errorOf(patched(valid, 15, 1)), /truncated/, "append flag without the append");
  assert.match(errorOf(patched(valid, 16, 4)), /unknown dtype/);
  assert.match(errorOf(patched(valid, 16, 2)), /not 16 bytes/, "f64 with an f32's byte length");
  assert.match(errorOf(patched(valid, 17, 5)), /rank 5/);
  assert.match(errorOf(patched(valid, 18, 5)), /shape \[5\] of f32 is not 16 bytes/);
  assert.match(errorOf(patched(valid, 22, 20)), /truncated|not 20 bytes/);
  assert.match(errorOf(patched(valid, 2, 0)), /session: 0 bytes/);
  assert.match(errorOf(patched(valid, 2, 65)), /session: 65 bytes/);
  assert.match(errorOf(patched(valid, 3, 0xff)), /not valid UTF-8/);
  // The k of the append must have q's length.
  const shortK = encodeBrainMessage({ t: "partial-req", session: "a", requestId: 1, layer: 0, queryPos: 0, q: f32(1, 2), append: { position: 1, k: f32(1, 2), v: f32(1, 2) } });
  // [1, 1, 1, "a", requestId 4, layer 2, queryPos 4, flags, q (18 bytes), position 4, k: dtype, rank, dim at 39, byteLength at 43]
  const kDimAt = 2 + 2 + 4 + 2 + 4 + 1 + (1 + 1 + 4 + 4 + 8) + 4 + 2;
  const bad = patched(shortK, kDimAt, 1);
  bad[kDimAt + 4] = 4;
  assert.match(errorOf(bad), /k: 1 values, expected 2/);
  assert.ok(decodeBrainMessage(withAppend).ok);
  // A vector field given as a matrix, a zero-length vector, a partial whose l or o do not fit m.
  const head = [1, 1, 1, 0x61, ...new Array<number>(4 + 2 + 4 + 1).fill(0)];
  const rank2q = encodeBrainMessage({ t: "tp-res", requestId: 1, partial: { rows: 1, cols: 4, data: f32(1, 2, 3, 4) } });
  assert.ok(decodeBrainMessage(Uint8Array.of(...head, 1, 1, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0)).ok, "the hand-built header is right");
  assert.match(errorOf(Uint8Array.of(...head, ...rank2q.subarray(6))), /q: must be a non-empty f32 vector/);
  assert.match(errorOf(Uint8Array.of(...head, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)), /q: must be a non-empty f32 vector/);
  assert.match(errorOf(Uint8Array.of(...head, 3, 1, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0)), /q: must be a non-empty f32 vector/, "i32 is not f32");
  const res = (H: number, lH: number, rows: number, dh: number): Uint8Array => {
    const vec = (n: number): number[] => [2, 1, n, 0, 0, 0, n * 8, 0, 0, 0, ...new Array<number>(n * 8).fill(0)];
    return Uint8Array.of(1, 2, 0, 0, 0, 0, ...vec(H), ...vec(lH), 2, 2, rows, 0, 0, 0, dh, 0, 0, 0, rows * dh * 8, 0, 0, 0, ...new Array<number>(rows * dh * 8).fill(0));
  };
  assert.ok(decodeBrainMessage(res(2, 2, 2, 3)).ok);
  assert.match(errorOf(res(2, 1, 2, 3)), /l: 1 values, expected 2/);
  assert.match(errorOf(res(2, 2, 3, 3)), /o: must be f64 \[2, dh\]/);
  assert.match(errorOf(res(2, 2, 2, 0)), /o: must be f64/);
  // tp-req part and empty ranges; stage-req empty layer range.
  const tp = encodeBrainMessage(examples[3] as BrainMessage);
  assert.match(errorOf(patched(tp, 2 + 2 + 4 + 2, 2)), /part 2/);
  assert.match(errorOf(patched(tp, 2 + 2 + 4 + 2 + 1 + 4, 0)), /range: \[0, 0\) is empty/);
  const stage = encodeBrainMessage(examples[6] as BrainMessage);
  assert.match(errorOf(patched(stage, 2 + 5 + 4, 8)), /layers: \[8, 8\) is empty/);
  const err = encodeBrainMessage({ t: "error", requestId: 1, code: "c", message: "m" });
  assert.match(errorOf(patched(err, 2 + 4 + 2, 0x01, 0x04)), /message: 1025 bytes/);
  assert.match(errorOf(patched(err, 2 + 4, 0)), /code: 0 bytes/);
});

test("brain wire: malformed expert and training messages are refused with a reason", () => {
  /** A rank-1 frame of dtype 1 (f32) or 3 (i32) holding `values`. */
  const frame = (dtype: number, values: number[]): Uint8Array => {
    const out = new Uint8Array(10 + 4 * values.length);
    const view = new DataView(out.buffer);
    view.setUint8(0, dtype);
    view.setUint8(1, 1);
    view.setUint32(2, values.length, true);
    view.setUint32(6, 4 * values.length, true);
    values.forEach((x, i) => (dtype === 3 ? view.setInt32(10 + 4 * i, x, true) : view.setFloat32(10 + 4 * i, x, true)));
    return out;
  };
  const cat = (...parts: (Uint8Array | number[])[]): Uint8Array => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  const expertReq = (ids: number[], values: number[], idsType = 3, valuesType = 1): Uint8Array =>
    cat([1, 9, 7, 0, 0, 0], frame(idsType, ids), frame(valuesType, values));
  const ok = decodeOk(expertReq([1, 2], [0.5, 1.5]));
  assert.ok(ok.t === "expert-req" && ok.requestId === 7 && [...ok.ids].join() === "1,2" && [...ok.values].join() === "0.5,1.5", "the hand-built frame is right");
  assert.match(errorOf(expertReq([1, 2], [0.5])), /values: 1 values, expected 2/);
  assert.match(errorOf(expertReq([1, 2], [0.5, 1.5, 2])), /values: 3 values, expected 2/);
  assert.match(errorOf(expertReq([1, 2], [1, 2], 1)), /ids: must be a non-empty i32 vector/, "f32 is not i32");
  assert.match(errorOf(expertReq([1, 2], [1, 2], 3, 3)), /values: must be a non-empty f32 vector/, "i32 is not f32");
  assert.match(errorOf(expertReq([], [])), /ids: must be a non-empty i32 vector/);
  const tooMany = new Array<number>(BRAIN_WIRE.expertTokensMax + 1).fill(0);
  assert.match(errorOf(expertReq(tooMany, tooMany)), /ids: 4097 values > 4096/);
  const most = tooMany.slice(1);
  assert.ok(decodeBrainMessage(expertReq(most, most)).ok, "4,096 tokens are fine");
  // ids as a [1, 2] matrix
  assert.match(errorOf(cat([1, 9, 0, 0, 0, 0, 3, 2, 1, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0], new Uint8Array(8), frame(1, [1, 2]))),
    /ids: must be a non-empty i32 vector/);

  const expertRes = (logits: number): Uint8Array => cat([1, 10, 1, 0, 0, 0, 9, 0, 0, 0], frame(1, new Array<number>(logits).fill(0)));
  const res = decodeOk(expertRes(3));
  assert.ok(res.t === "expert-res" && res.version === 9 && res.logits.length === 3);
  assert.match(errorOf(expertRes(0)), /logits: must be a non-empty f32 vector/);
  assert.ok(decodeBrainMessage(expertRes(BRAIN_WIRE.logitsMax)).ok);
  assert.match(errorOf(expertRes(BRAIN_WIRE.logitsMax + 1)), /logits: 65537 values > 65536/);
  assert.match(errorOf(expertRes(3).subarray(0, 9)), /truncated: version/);

  const trainReq = encodeBrainMessage({ t: "train-req", requestId: 1, round: 2, epochs: 3, seed: 4, params: f32(1, 2, 3) });
  assert.match(errorOf(trainReq.subarray(0, 2 + 4 + 4 + 1)), /truncated: epochs/);
  assert.match(errorOf(trainReq.subarray(0, 2 + 4 + 4 + 2 + 3)), /truncated: seed/);
  const f64Params = cat(trainReq.subarray(0, 16), encodeTensor({ dtype: "f64", shape: [3], data: Float64Array.of(1, 2, 3) }));
  assert.match(errorOf(f64Params), /params: must be a non-empty f32 vector/);
  const trainRes = encodeBrainMessage({ t: "train-res", requestId: 1, round: 2, n: 3, params: f32(1) });
  assert.match(errorOf(trainRes.subarray(0, 2 + 4 + 4 + 3)), /truncated: n/);
  assert.match(errorOf(cat(trainRes.subarray(0, 14), frame(1, []))), /params: must be a non-empty f32 vector/);
  assert.match(errorOf(cat(trainRes, [0])), /1 bytes after/);
});

test("brain wire: the encoder refuses what it must not send", () => {
  const q = f32(1, 2);
  const bad: BrainMessage[] = [
    { t: "end-session", session: "" },
    { t: "end-session", session: "é".repeat(33) },
    { t: "end-session", session: "\ud800" },
    { t: "partial-req", session: "a", requestId: -1, layer: 0, queryPos: 0, q },
    { t: "partial-req", session: "a", requestId: 0, layer: 0x10000, queryPos: 0, q },
    { t: "partial-req", session: "a", requestId: 0, layer: 0, queryPos: 1.5, q },
    { t: "partial-req", session: "a", requestId: 0, layer: 0, queryPos: 0, q: new Float32Array(0) },
    { t: "partial-req", session: "a", requestId: 0, layer: 0, queryPos: 0, q, append: { position: 0, k: f32(1), v: q } },
    { t: "partial-res", requestId: 0, m: Float64Array.of(0, 0), l: Float64Array.of(1), o: new Float64Array(2) },
    { t: "partial-res", requestId: 0, m: Float64Array.of(0, 0), l: Float64Array.of(1, 1), o: new Float64Array(3) },
    { t: "tp-res", requestId: 0, partial: { rows: 2, cols: 2, data: q } },
    { t: "tp-req", session: "a", requestId: 0, layer: 0, part: "ffn", input: { rows: 1, cols: 2, data: q }, range: [3, 3], startPos: 0 },
    { t: "stage-req", session: "a", requestId: 0, layers: [0, 0x10000], hidden: { rows: 1, cols: 2, data: q }, startPos: 0 },
    { t: "error", requestId: 0, code: "", message: "" },
    { t: "error", requestId: 0, code: "c", message: "x".repeat(1025) },
    { t: "expert-req", requestId: 0, ids: new Int32Array(0), values: new Float32Array(0) },
    { t: "expert-req", requestId: 0, ids: Int32Array.of(1, 2), values: f32(1) },
    { t: "expert-req", requestId: 0, ids: new Int32Array(4097), values: new Float32Array(4097) },
    { t: "expert-res", requestId: 0, version: -1, logits: f32(1) },
    { t: "expert-res", requestId: 0, version: 1, logits: new Float32Array(0) },
    { t: "expert-res", requestId: 0, version: 1, logits: new Float32Array(65537) },
    { t: "train-req", requestId: 0, round: 0, epochs: 0x10000, seed: 0, params: q },
    { t: "train-req", requestId: 0, round: 0, epochs: 1, seed: 2 ** 32, params: q },
    { t: "train-req", requestId: 0, round: 0, epochs: 1, seed: 0, params: new Float32Array(0) },
    { t: "train-res", requestId: 0, round: 0, n: 1.5, params: q },
    { t: "train-res", requestId: 0, round: 0, n: 1, params: new Float32Array(0) },
  ];
  for (const msg of bad) assert.throws(() => encodeBrainMessage(msg), /brain-wire/, canonical(msg).slice(0, 100));
});

test("brain wire: tensor frames of every dtype and rank 0..4 round trip; bad frames are refused", () => {
  const tensors: Tensor[] = [
    { dtype: "f32", shape: [], data: f32(3) },
    { dtype: "f64", shape: [3], data: Float64Array.of(-Infinity, NaN, 1e-320) },
    { dtype: "i32", shape: [2, 2], data: Int32Array.of(-2147483648, 2147483647, 0, -1) },
    { dtype: "f32", shape: [1, 2, 3], data: new Float32Array(6).map((_, i) => i / 3) },
    { dtype: "f64", shape: [2, 1, 1, 2], data: Float64Array.of(1, 2, 3, 4) },
    { dtype: "i32", shape: [0, 5], data: new Int32Array(0) },
  ];
  for (const t of tensors) {
    const bytes = encodeTensor(t);
    const r = decodeTensor(bytes);
    assert.ok(r.ok, r.ok ? "" : r.error);
    assert.equal(canonical(r.tensor), canonical(t));
  }
  const frame = encodeTensor({ dtype: "f32", shape: [4], data: f32(1, 2, 3, 4) });
  const r = decodeTensor(frame, { bytesMax: frame.length - 1 });
  assert.ok(!r.ok && /oversize/.test(r.error));
  const lying = frame.slice();
  lying[6] = 12; // byteLength 12 for 4 f32 values
  const r2 = decodeTensor(lying);
  assert.ok(!r2.ok && /not 12 bytes/.test(r2.error));
  const huge = Uint8Array.of(2, 4, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 64);
  const r3 = decodeTensor(huge);
  assert.ok(!r3.ok && /is not 1073741824 bytes/.test(r3.error), "a forged shape cannot make the decoder allocate");
  assert.equal(BRAIN_WIRE.bytesMax, 64 * 1024 * 1024);
  assert.throws(() => encodeTensor({ dtype: "f32", shape: [3], data: f32(1, 2) }), /brain-wire/);
  assert.throws(() => encodeTensor({ dtype: "f32", shape: [1, 1, 1, 1, 1], data: f32(1) }), /brain-wire/);
});

/** Decoding never throws, never reports an internal error, and whatever it accepts is canonical. */
function decodeSafely(bytes: Uint8Array): void {
  const r = decodeBrainMessage(bytes);
  if (!r.ok) {
    assert.equal(typeof r.error, "string");
    assert.doesNotMatch(r.error, /^internal/);
    return;
  }
  assert.deepEqual(encodeBrainMessage(r.msg), bytes, "an accepted input re-encodes to itself");
}

test("brain wire: random bytes never throw (fuzz)", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => decodeSafely(bytes)), { numRuns: 3000 });
  // Past the header: a valid version and kind, then noise.
  fc.assert(fc.property(fc.integer({ min: 1, max: 13 }), fc.uint8Array({ maxLength: 300 }), (kind, rest) =>
    decodeSafely(Uint8Array.of(1, kind, ...rest))), { numRuns: 3000 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
    const r = decodeTensor(bytes);
    if (!r.ok) assert.doesNotMatch(r.error, /^internal/);
  }), { numRuns: 2000 });
});

test("brain wire: truncations and bit flips of valid encodings never throw (fuzz)", () => {
  fc.assert(fc.property(messageArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 }))), fc.option(fc.nat(), { nil: undefined }),
    (msg, flips, cut) => {
      const bytes = encodeBrainMessage(msg);
      for (const [at, bit] of flips) bytes[at % bytes.length] = (bytes[at % bytes.length] as number) ^ (1 << bit);
      decodeSafely(cut === undefined ? bytes : bytes.subarray(0, cut % (bytes.length + 1)));
    }), { numRuns: 3000 });
  // Every prefix of every example is refused.
  for (const msg of examples) {
    const bytes = encodeBrainMessage(msg);
    for (let n = 0; n < bytes.length; n++) assert.equal(decodeBrainMessage(bytes.subarray(0, n)).ok, false, `${msg.t} cut at ${n}`);
  }
});
