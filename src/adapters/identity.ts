// The node's identity: an Ed25519 key pair (DESIGN.md §5), kept as PKCS#8 PEM in
// `<dataDir>/identity.key` (mode 0600), made on first boot. The node id is the hex of the first
// 8 bytes of SHA-256 of the 32-byte raw public key (docs/protocols/wire.md).
//
// The key file is written crash-safely: a temporary file is written and fsynced, then linked into
// place (which fails if another process made the key meanwhile, so two processes starting on one
// data directory agree on one key; rename is the fallback on file systems without hard links),
// then the directory is fsynced. An existing key file that does not parse is an error, never
// silently replaced: replacing it would change the node's id.
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { hash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from "node:crypto";
import type { Identity } from "../node/ports.ts";
import { assert } from "../core/util/assert.ts";
import { toHex } from "../core/util/bytes.ts";
import { LIMITS } from "../core/util/limits.ts";
import { NODE_ID_BYTES } from "../core/wire/envelope.ts";

export const IDENTITY_FILE = "identity.key";
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
export const SEED_BYTES = 32;
/** Largest identity file read: a PEM Ed25519 key is ~120 bytes. */
const IDENTITY_FILE_BYTES_MAX = LIMITS.disk.identityFileBytesMax;

// DER prefixes for raw Ed25519 keys (RFC 8410): PKCS#8 private key around a 32-byte seed, SPKI
// public key around 32 raw bytes.
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** Loads the node's identity from `dataDir`, making the directory and a new key on first boot. */
export function loadOrCreateIdentity(dataDir: string): Identity {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, IDENTITY_FILE);
  const existing = readKeyFile(path);
  if (existing !== undefined) return identityFromPrivateKey(parsePrivateKey(existing, path));

  const { privateKey } = generateKeyPairSync("ed25519");
  const pem = privateKey.export({ type: "pkcs8", format: "pem" });
  const tmp = join(dataDir, `.${IDENTITY_FILE}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx", 0o600);
  try {
    const bytes = typeof pem === "string" ? Buffer.from(pem, "utf8") : pem;
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (error) {
    const code = errorCode(error);
    if (code === "EEXIST") {
      // Another process made the key between our read and our link: theirs wins, ours is discarded.
      unlinkSync(tmp);
      const raced = readKeyFile(path);
      assert(raced !== undefined, `identity: ${path} exists but could not be read`);
      return identityFromPrivateKey(parsePrivateKey(raced, path));
    }
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS" && code !== "EXDEV") {
      unlinkSync(tmp);
      throw new Error(`identity: cannot install ${path}: ${describe(error)}`, { cause: error });
    }
    // No hard links here (some Android and FAT file systems): fall back to an atomic rename.
    renameSync(tmp, path);
  }
  try {
    unlinkSync(tmp);
  } catch (error) {
    if (errorCode(error) !== "ENOENT") throw error;
  }
  fsyncDirectory(dataDir);
  return identityFromPrivateKey(privateKey);
}

/**
 * A deterministic, in-memory identity from a 32-byte Ed25519 seed (RFC 8032's private key), for
 * the simulator and tests. Nothing is written to disk.
 */
export function createIdentityFromSeed(seed: Uint8Array): Identity {
  assert(seed.length === SEED_BYTES, `createIdentityFromSeed: seed must be ${SEED_BYTES} bytes, got ${seed.length}`);
  const der = Buffer.concat([PKCS8_PREFIX, seed]);
  return identityFromPrivateKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" }));
}

/** An identity around an Ed25519 private KeyObject. */
export function identityFromPrivateKey(privateKey: KeyObject): Identity {
  assert(privateKey.type === "private" && privateKey.asymmetricKeyType === "ed25519", "identity: the key is not an Ed25519 private key");
  const publicKey = rawPublicKey(createPublicKey(privateKey));
  const identity: Identity = {
    id: nodeIdOf(publicKey),
    publicKey,
    sign(data: Uint8Array): Uint8Array {
      return new Uint8Array(sign(null, data, privateKey));
    },
    verify: verifySignature,
    idOf: nodeIdOf,
  };
  DH_KEYS.set(identity, privateKey);
  return identity;
}

// ---- The same key for Diffie–Hellman (the packet seal's pair keys, src/adapters/seal.ts) -------
//
// A node's X25519 key is its Ed25519 key mapped to the Montgomery curve, as libsodium's
// crypto_sign_ed25519_{sk,pk}_to_curve25519 do: the private scalar is the clamped first half of
// SHA-512 of the seed (the scalar Ed25519 itself signs with), the public u = (1 + y) / (1 − y)
// mod 2^255 − 19 for the Edwards y of the public key. So one key, whose hash is the node id, is
// both what signs and what the pair keys derive from: nothing else has to be announced or bound.

const DH_KEYS = new WeakMap<Identity, KeyObject>();
const P = (1n << 255n) - 19n;

/** This identity's X25519 private key (for identities made here; undefined for others). */
export function dhPrivateKeyOf(identity: Identity): KeyObject | undefined {
  const ed = DH_KEYS.get(identity);
  if (ed === undefined) return undefined;
  const jwk = ed.export({ format: "jwk" });
  assert(typeof jwk.d === "string", "identity: the private key has no seed");
  const scalar = hash("sha512", Buffer.from(jwk.d, "base64url"), "buffer").subarray(0, 32);
  scalar[0] = (scalar[0] as number) & 248;
  scalar[31] = ((scalar[31] as number) & 127) | 64;
  return createPrivateKey({ key: { kty: "OKP", crv: "X25519", d: scalar.toString("base64url"), x: montgomeryOf(rawPublicKey(createPublicKey(ed))) }, format: "jwk" });
}

/** The X25519 public key of an Ed25519 public key (base64url), or undefined for an invalid point encoding. */
export function montgomeryOf(edPublicKey: Uint8Array): string {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(edPublicKey[i] as number);
  y &= (1n << 255n) - 1n;
  const u = mod((1n + y) * inverse(mod(1n - y)));
  const out = Buffer.alloc(32);
  let v = u;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out.toString("base64url");
}

/** X25519 public KeyObject for a peer's Ed25519 public key; undefined when it is not a usable point. */
export function dhPublicKeyOf(edPublicKey: Uint8Array): KeyObject | undefined {
  if (edPublicKey.length !== PUBLIC_KEY_BYTES) return undefined;
  try {
    return createPublicKey({ key: { kty: "OKP", crv: "X25519", x: montgomeryOf(edPublicKey) }, format: "jwk" });
  } catch {
    return undefined;
  }
}

function mod(a: bigint): bigint {
  const r = a % P;
  return r < 0n ? r + P : r;
}

/** a^(p−2) mod p (0 maps to 0: y = 1 is the identity point, whose u is 0). */
function inverse(a: bigint): bigint {
  let result = 1n;
  let base = mod(a);
  let e = P - 2n;
  while (e > 0n) {
    if (e & 1n) result = (result * base) % P;
    base = (base * base) % P;
    e >>= 1n;
  }
  return result;
}

/** The node id of a public key: hex of the first 8 bytes of its SHA-256. */
export function nodeIdOf(publicKey: Uint8Array): string {
  // crypto.hash is the one-shot digest: about 3x cheaper than createHash for 32 bytes, and the
  // roster checks one id per newly learned member.
  return toHex(hash("sha256", publicKey, "buffer").subarray(0, NODE_ID_BYTES));
}

/** Ed25519 verification that never throws: malformed keys or signatures are simply false. */
export function verifySignature(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES) return false;
  try {
    const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: "der", type: "spki" });
    return verify(null, data, key, signature);
  } catch {
    return false;
  }
}

function rawPublicKey(publicKey: KeyObject): Uint8Array {
  const jwk = publicKey.export({ format: "jwk" });
  assert(typeof jwk.x === "string", "identity: the public key has no x coordinate");
  const raw = new Uint8Array(Buffer.from(jwk.x, "base64url"));
  assert(raw.length === PUBLIC_KEY_BYTES, `identity: public key of ${raw.length} bytes`);
  return raw;
}

function readKeyFile(path: string): string | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    if (errorCode(error) === "ENOENT") return undefined;
    throw new Error(`identity: cannot read ${path}: ${describe(error)}`, { cause: error });
  }
  if (bytes.length > IDENTITY_FILE_BYTES_MAX) {
    throw new Error(`identity: ${path} is ${bytes.length} bytes, not an Ed25519 key; move it away to make a new identity`);
  }
  return bytes.toString("utf8");
}

function parsePrivateKey(pem: string, path: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: "pem" });
  } catch (error) {
    throw new Error(`identity: ${path} is not a PEM private key (${describe(error)}); move it away to make a new identity`, { cause: error });
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new Error(`identity: ${path} holds a ${key.asymmetricKeyType ?? "unknown"} key, not Ed25519`);
  }
  return key;
}

function fsyncDirectory(dir: string): void {
  // Windows cannot open a directory for fsync; there the rename is as durable as it gets.
  if (process.platform === "win32") return;
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function errorCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error && typeof error.code === "string") return error.code;
  return undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
