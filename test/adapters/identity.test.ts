import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createIdentityFromSeed, IDENTITY_FILE, loadOrCreateIdentity } from "../../src/adapters/identity.ts";

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "pk-identity-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("identity: same data directory gives the same id across loads", (t) => {
  const dir = join(tempDir(t), "nested", "data");
  const first = loadOrCreateIdentity(dir);
  const second = loadOrCreateIdentity(dir);
  assert.match(first.id, /^[0-9a-f]{16}$/);
  assert.equal(second.id, first.id);
  assert.deepEqual(second.publicKey, first.publicKey);
  assert.equal(first.publicKey.length, 32);
  assert.equal(first.id, createHash("sha256").update(first.publicKey).digest("hex").slice(0, 16));
  assert.equal(first.idOf(first.publicKey), first.id);
  // A signature made after reloading verifies under the key from the first load.
  const data = new TextEncoder().encode("same key");
  assert.ok(first.verify(first.publicKey, data, second.sign(data)));
  // No temporary files are left behind.
  assert.deepEqual(readdirSync(dir), [IDENTITY_FILE]);
});

test("identity: different directories give different ids", (t) => {
  const root = tempDir(t);
  assert.notEqual(loadOrCreateIdentity(join(root, "a")).id, loadOrCreateIdentity(join(root, "b")).id);
});

test("identity: key file is PKCS#8 PEM with mode 0600", { skip: process.platform === "win32" }, (t) => {
  const dir = tempDir(t);
  loadOrCreateIdentity(dir);
  const path = join(dir, IDENTITY_FILE);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.match(readFileSync(path, "utf8"), /^-----BEGIN PRIVATE KEY-----\n/);
});

test("identity: sign and verify", (t) => {
  const me = loadOrCreateIdentity(tempDir(t));
  const other = createIdentityFromSeed(new Uint8Array(32).fill(1));
  const data = randomBytes(200);
  const signature = me.sign(data);
  assert.equal(signature.length, 64);
  assert.ok(me.verify(me.publicKey, data, signature));
  assert.ok(other.verify(me.publicKey, data, signature), "anyone verifies with the public key");
  assert.equal(me.verify(other.publicKey, data, signature), false, "wrong key");
  const altered = Buffer.from(data);
  altered[0] = (altered[0] as number) ^ 1;
  assert.equal(me.verify(me.publicKey, altered, signature), false, "altered data");
  for (let bit = 0; bit < 64 * 8; bit += 7) {
    const bad = signature.slice();
    bad[bit >>> 3] = (bad[bit >>> 3] as number) ^ (1 << (bit & 7));
    assert.equal(me.verify(me.publicKey, data, bad), false, `signature bit ${bit}`);
  }
});

test("identity: verify of garbage is false, never a throw", () => {
  const me = createIdentityFromSeed(new Uint8Array(32).fill(2));
  const data = new Uint8Array([1, 2, 3]);
  const good = me.sign(data);
  assert.equal(me.verify(new Uint8Array(0), data, good), false);
  assert.equal(me.verify(new Uint8Array(31), data, good), false);
  assert.equal(me.verify(new Uint8Array(33), data, good), false);
  assert.equal(me.verify(new Uint8Array(32).fill(0xff), data, good), false, "not a curve point");
  assert.equal(me.verify(me.publicKey, data, new Uint8Array(0)), false);
  assert.equal(me.verify(me.publicKey, data, new Uint8Array(63)), false);
  assert.equal(me.verify(me.publicKey, data, new Uint8Array(64).fill(0xff)), false);
  for (let i = 0; i < 200; i++) {
    assert.equal(me.verify(randomBytes(32), randomBytes(i), randomBytes(64)), false);
  }
});

test("identity: from a seed is deterministic (RFC 8032 test vector 1)", () => {
  const seed = Buffer.from("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "hex");
  const a = createIdentityFromSeed(seed);
  const b = createIdentityFromSeed(seed);
  assert.equal(a.id, b.id);
  assert.equal(Buffer.from(a.publicKey).toString("hex"), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  assert.equal(
    Buffer.from(a.sign(new Uint8Array(0))).toString("hex"),
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  );
  assert.throws(() => createIdentityFromSeed(new Uint8Array(31)), /32 bytes/);
});

test("identity: a corrupt key file is an error, not a silent new identity", (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, IDENTITY_FILE), "not a key", { mode: 0o600 });
  assert.throws(() => loadOrCreateIdentity(dir), /not a PEM private key/);
  assert.equal(readFileSync(join(dir, IDENTITY_FILE), "utf8"), "not a key", "the file is left alone");
});
