// What the Brain takes from others only when a core node vouches for it (issue 13), in the core:
// signed model files (model-file.ts: PKM2 and modelTrustError), signed GA rows judged on local data
// (ga.ts), and contributors' federated updates through the robust rule with a norm bound
// (fedlearn.ts, federated.ts). Real Ed25519 keys (src/adapters/identity.ts) and SHA-256.
import { test } from "node:test";
import assert from "node:assert/strict";
import { hash } from "node:crypto";
import fc from "fast-check";
import { createIdentityFromSeed } from "../../../src/adapters/identity.ts";
import {
  decodeModelFile, encodeModelFile, encodeSignedModelFile, modelSignatureMessage, modelTrustError, type ModelFileHeader, type ModelTrust,
} from "../../../src/core/brain/model-file.ts";
import { applyMutation, decodeGaRow, encodeGaRow, gaRowMessage, judgeMutant, type GaRow } from "../../../src/core/brain/ga.ts";
import { aggregate, deltaNorm } from "../../../src/core/brain/fedlearn.ts";
import { federatedRound, honestClient, nonIidSkew, signFlipClient, type FedClient } from "../../../src/core/brain/federated.ts";
import { generateSensorData } from "../../../src/core/brain/data.ts";
import { initParams, SEED_CONFIG } from "../../../src/core/brain/transformer.ts";
import { createRng } from "../../../src/core/util/rng.ts";
import type { Identity } from "../../../src/node/ports.ts";

const sha256 = (bytes: Uint8Array): Uint8Array => new Uint8Array(hash("sha256", bytes, "buffer"));
const key = (n: number): Identity => createIdentityFromSeed(new Uint8Array(32).fill(n));
const core = key(1);
const contributor = key(2);
const stranger = key(3);

/** The member table of a node: core and contributor known, stranger not. */
function trust(overrides: Partial<ModelTrust> = {}): ModelTrust {
  const members = new Map([[core.id, { pub: core.publicKey, role: "core" }], [contributor.id, { pub: contributor.publicKey, role: "contributor" }]]);
  return {
    sha256,
    publicKeyOf: (id) => members.get(id)?.pub,
    idOf: (pub) => core.idOf(pub),
    verify: (pub, data, sig) => core.verify(pub, data, sig),
    roleOf: (id) => members.get(id)?.role,
    ...overrides,
  };
}

const params = initParams(SEED_CONFIG, createRng(7, 2));
const header = (origin: string): ModelFileHeader => ({ config: SEED_CONFIG, version: 3, tag: "t0123456789abcdef", createdMs: 1_700_000_000_000, origin, kind: "trained" });
const signed = (by: Identity, origin = by.id): Uint8Array => encodeSignedModelFile(header(origin), params, { id: origin, sign: (m) => by.sign(m) }, sha256);

function judged(bytes: Uint8Array, t: ModelTrust = trust()): string | null {
  const d = decodeModelFile(bytes);
  assert.ok(d.ok, d.ok ? "" : d.error);
  return modelTrustError(d, t)?.reason ?? null;
}

test("model file: a file signed by a core member decodes with its signature and is trusted; the signed bytes are PKM1's plus a block", () => {
  const bytes = signed(core);
  const d = decodeModelFile(bytes);
  assert.ok(d.ok);
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), "PKM2");
  assert.deepEqual(d.header, header(core.id));
  assert.deepEqual(d.params, params);
  assert.equal(d.signature?.signer, core.id);
  assert.equal(d.signature?.signature.length, 64);
  const plain = encodeModelFile(header(core.id), params);
  assert.deepEqual(bytes.subarray(4, plain.length), plain.subarray(4), "the body is the unsigned file's, after the magic");
  assert.equal(bytes.length, plain.length + 1 + core.id.length + 64);
  assert.ok(core.verify(core.publicKey, modelSignatureMessage(sha256(bytes.subarray(0, plain.length)), core.id), d.signature!.signature));
  assert.equal(judged(bytes), null);
});

test("model file: unsigned, signed by a contributor, by a stranger, by a key that is not the signer's, or altered after signing — each refused for its reason", () => {
  assert.equal(judged(encodeModelFile(header(core.id), params)), "unsigned");
  assert.equal(judged(signed(contributor)), "role");
  assert.equal(judged(signed(stranger)), "unknown-signer");
  // The contributor signs in the core node's name: the signature does not verify under the core's key.
  assert.equal(judged(signed(contributor, core.id)), "signature");
  // A member table whose key for the signer does not map to its id.
  assert.equal(judged(signed(core), trust({ publicKeyOf: () => contributor.publicKey })), "key");
  // A member whose role is not known yet is no core member.
  assert.equal(judged(signed(core), trust({ roleOf: () => undefined })), "role");
  // One parameter changed by its last bit after signing (still finite, still a valid file).
  const altered = signed(core);
  const at = altered.length - 1 - core.id.length - 64 - 4;
  altered[at] = altered[at]! ^ 1;
  assert.equal(judged(altered), "signature");
  // A block naming another signer than the header's origin.
  const other = signed(core);
  const idAt = other.length - 64 - core.id.length;
  other.set(new TextEncoder().encode(contributor.id), idAt);
  assert.equal(judged(other), "origin");
});

test("model file: the signature block is checked strictly — missing, truncated, bytes after it, a bad signer length or UTF-8", () => {
  const good = signed(core);
  const body = good.length - 1 - core.id.length - 64;
  const err = (bytes: Uint8Array): string => {
    const d = decodeModelFile(bytes);
    assert.equal(d.ok, false);
    return d.ok ? "" : d.error;
  };
  assert.match(err(good.subarray(0, body)), /^signature: missing/);
  assert.match(err(good.subarray(0, good.length - 1)), /^signature: truncated/);
  assert.match(err(Uint8Array.of(...good, 0)), /^signature: 1 bytes after the block/);
  const zero = good.slice();
  zero[body] = 0;
  assert.match(err(zero), /^signature: a signer id of 0 bytes/);
  const long = good.slice();
  long[body] = 65;
  assert.match(err(long), /^signature: a signer id of 65 bytes/);
  const utf = good.slice();
  utf[body + 1] = 0xff;
  assert.match(err(utf), /^signature: the signer id is not valid UTF-8/);
});

test("model file: no single bit flip of a signed file yields a file that is both decoded and trusted (property)", () => {
  const good = signed(core);
  fc.assert(fc.property(fc.integer({ min: 0, max: good.length * 8 - 1 }), (bit) => {
    const bytes = good.slice();
    bytes[bit >> 3] = bytes[bit >> 3]! ^ (1 << (bit & 7));
    const d = decodeModelFile(bytes);
    return !d.ok || modelTrustError(d, trust()) !== null;
  }), { numRuns: 3000, seed: 13 });
});

const row = (by: Identity, fromTag: string, over: Partial<GaRow> = {}): GaRow => {
  const unsigned = { seed: 12345, sigma: 0.01, tag: "after0123456789a", loss: 0.42, origin: by.id, ...over };
  return { ...unsigned, signature: by.sign(gaRowMessage(fromTag, unsigned)), ...over };
};

test("ga rows: round trip; the signature binds the row to the weights it starts from; malformed rows are refused, never thrown", () => {
  const r = row(core, "from0123456789ab");
  assert.deepEqual(decodeGaRow(encodeGaRow(r)), r);
  const verifies = (fromTag: string, x: GaRow): boolean => core.verify(core.publicKey, gaRowMessage(fromTag, x), x.signature);
  assert.ok(verifies("from0123456789ab", r));
  assert.equal(verifies("other0123456789a", r), false, "replayed under another key of the topic");
  assert.equal(verifies("from0123456789ab", { ...r, seed: 12346 }), false);
  assert.equal(verifies("from0123456789ab", { ...r, origin: contributor.id }), false);
  assert.match(String(decodeGaRow(Uint8Array.of(1, 2, 3))), /^malformed row/);
  assert.match(String(decodeGaRow(encodeGaRow({ ...r, sigma: 0 }))), /sigma/);
  assert.match(String(decodeGaRow(encodeGaRow({ ...r, signature: new Uint8Array(63) }))), /signature/);
  assert.match(String(decodeGaRow(encodeGaRow({ ...r, origin: "" }))), /origin/);
  assert.match(String(decodeGaRow(encodeGaRow({ ...r, loss: NaN }))), /loss/);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
    const d = decodeGaRow(bytes);
    return typeof d === "string" || d.signature.length === 64;
  }), { numRuns: 2000, seed: 14 });
});

test("ga: a mutation from elsewhere is accepted only when it scores at least as well here", () => {
  const p = Float32Array.from([1, 2, 3]);
  const loss = (x: Float32Array): number => -x.reduce((s, v) => s + v * v, 0);
  const down = Float32Array.from([0.5, 2, 3]);
  const up = Float32Array.from([1.5, 2, 3]);
  assert.deepEqual(judgeMutant(p, down, loss), { accepted: true, before: -14, after: -13.25 });
  assert.equal(judgeMutant(p, up, loss).accepted, false);
  assert.equal(judgeMutant(p, p.slice(), loss).accepted, true, "as well is enough");
  assert.equal(judgeMutant(p, Float32Array.from([NaN, 0, 0]), loss).accepted, false);
  const mutant = applyMutation(p, { seed: 9, sigma: 0.1 });
  assert.equal(judgeMutant(p, mutant, () => NaN).accepted, false, "a scorer that cannot score accepts nothing");
});

test("fedlearn: a contributor's update far longer than the core updates' is rejected as norm; a core one is not; none to compare with, none rejected", () => {
  const global = new Float32Array(8);
  const honest = (k: number): Float32Array => Float32Array.from({ length: 8 }, (_, i) => 0.1 * Math.sin(i + k));
  const boosted = Float32Array.from(honest(9), (x) => -10 * x);
  const updates = [honest(1), honest(2), honest(3), boosted].map((params) => ({ params, n: 100 }));
  const median = [1, 2, 3].map((k) => deltaNorm(global, honest(k))).sort((a, b) => a - b)[1]!;
  assert.ok(deltaNorm(global, boosted) > 4 * median);

  const r = aggregate(updates, { global, core: [true, true, false, false], contributorNormRatio: 4 });
  assert.ok(r.ok);
  assert.deepEqual(r.rejected, [{ index: 3, reason: "norm" }]);
  assert.deepEqual(r.accepted, [0, 1, 2]);
  assert.notEqual(r.rule, "fedavg", "a contributor still takes part: the robust rule");
  // The same update from a core node is trusted (FedAvg), and without the option nothing is rejected.
  const asCore = aggregate(updates, { global, core: [true, true, true, true], contributorNormRatio: 4 });
  assert.ok(asCore.ok && asCore.rejected.length === 0 && asCore.rule === "fedavg");
  const off = aggregate(updates, { global, core: [true, true, false, false] });
  assert.ok(off.ok && off.rejected.length === 0);
  // No core update in the round: nothing to measure against, only the robust rule.
  const noCore = aggregate(updates, { global, core: [false, false, false, false], contributorNormRatio: 4 });
  assert.ok(noCore.ok && noCore.rejected.length === 0 && noCore.rule !== "fedavg");
  // Non-finite contributors are rejected whatever the ratio; a bad ratio is the caller's mistake.
  const nan = aggregate([...updates.slice(0, 3), { params: Float32Array.of(NaN, 0, 0, 0, 0, 0, 0, 0), n: 5 }], { global, core: [true, true, false, false], contributorNormRatio: 4 });
  assert.ok(nan.ok);
  assert.deepEqual(nan.rejected, [{ index: 3, reason: "non-finite" }]);
  assert.throws(() => aggregate(updates, { global, core: [true, true, false, false], contributorNormRatio: 0 }), RangeError);
});

test("federated: a boosted contributor (sign flip ×10) is dropped by the norm bound and the round equals the honest participants' robust aggregate", () => {
  const cfg = SEED_CONFIG;
  const global = initParams(cfg, createRng(3, 2));
  const data = (i: number) => generateSensorData(createRng(100 + i, 1), 300, { skew: nonIidSkew(i) });
  const clients: FedClient[] = [0, 1, 2].map((i) => honestClient({ id: `h${i}`, core: i < 2, cfg, data: data(i), seed: 10 + i }));
  const attacker = signFlipClient({ id: "x", core: false, base: honestClient({ id: "x", core: false, cfg, data: data(3), seed: 20 }), scale: 10 });
  const r = federatedRound(cfg, global, [...clients, attacker], { round: 1, contributorNormRatio: 4 });
  assert.ok(r.ok);
  assert.deepEqual(r.rejected, [{ id: "x", reason: "norm" }]);
  const honestOnly = federatedRound(cfg, global, clients, { round: 1 });
  assert.deepEqual(r.params, honestOnly.params, "the attacker left no trace");
  assert.equal(r.rule, "median");
  // Without the bound it is outvoted per coordinate but still shifts the result.
  const unbounded = federatedRound(cfg, global, [...clients, attacker], { round: 1 });
  assert.deepEqual(unbounded.rejected, []);
  assert.notDeepEqual(unbounded.params, honestOnly.params);
});
