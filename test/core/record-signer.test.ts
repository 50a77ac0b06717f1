// Writers' signatures on relayed records (src/core/body/trust.ts RecordSigner), with real Ed25519.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createIdentityFromSeed } from "../../src/adapters/identity.ts";
import { RecordSigner } from "../../src/core/body/trust.ts";

const alice = createIdentityFromSeed(new Uint8Array(32).fill(1));
const mallory = createIdentityFromSeed(new Uint8Array(32).fill(2));
const body = new TextEncoder().encode("topic\0key\0value");

test("records: a writer's record verifies anywhere; another key, another body, another kind or a revoked writer does not, each counted", () => {
  const revoked = new Set<string>();
  const writer = new RecordSigner(alice, alice);
  const reader = new RecordSigner(mallory, mallory, { revoked: (id) => revoked.has(id), keysMax: 2 });
  const signature = writer.sign("row", body);
  assert.equal(reader.check("row", alice.id, alice.publicKey, body, signature), undefined);
  assert.equal(reader.check("row", alice.id, alice.publicKey, body, signature), undefined, "again, from the remembered key");
  // Mallory signs as Alice: her key is not Alice's id.
  assert.equal(reader.check("row", alice.id, mallory.publicKey, body, mallory.sign(body)), "key");
  const changed = body.slice();
  changed[0] = (changed[0] as number) ^ 1;
  assert.equal(reader.check("row", alice.id, alice.publicKey, changed, signature), "signature");
  assert.equal(reader.check("sfs", alice.id, alice.publicKey, body, signature), "signature", "a row's signature is no shared-folder version's");
  assert.equal(reader.check("rollout", alice.id, alice.publicKey, body, signature), "signature", "nor a rollout record's");
  assert.equal(reader.check("row", alice.id, alice.publicKey, body, signature.subarray(0, 63)), "signature");
  revoked.add(alice.id);
  assert.equal(reader.check("row", alice.id, alice.publicKey, body, signature), "revoked");
  assert.deepEqual(reader.refused, { row: { key: 1, revoked: 1, signature: 2 }, sfs: { key: 0, revoked: 0, signature: 1 }, heal: { key: 0, revoked: 0, signature: 0 }, rollout: { key: 0, revoked: 0, signature: 1 } });
});

test("records: the remembered keys are bounded; a forgotten one is only hashed again", () => {
  const reader = new RecordSigner(mallory, mallory, { keysMax: 1 });
  const bob = createIdentityFromSeed(new Uint8Array(32).fill(3));
  for (const who of [alice, bob, alice]) {
    assert.equal(reader.check("heal", who.id, who.publicKey, body, new RecordSigner(who, who).sign("heal", body)), undefined);
  }
});
