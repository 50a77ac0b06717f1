// What a node keeps of the cluster's trust in its data folder (docs/adr/012-trust.md):
//
//   owner.pub   the cluster owner's Ed25519 public key, 32 raw bytes (every node)
//   cert.bin    this node's certificate, 82 bytes (src/core/body/trust.ts)
//   owner.key   the owner's private key, PKCS#8 PEM, mode 0600 (core nodes that keep it only)
//
// A node gets its certificate in one of three ways: it founds a cluster (a new owner key is made,
// and the node certifies itself core); it is given the owner key (`--owner-key FILE`: it certifies
// itself in the role it asks for, and keeps the key only if that role is core); or it redeems an
// invite code on a core node (src/node/body/invites.ts writes what it received here). Files are
// written crash-safely (temporary file, fsync, rename, directory fsync) and never replaced by a
// node that cannot read them: a broken file is an error, because replacing it changes who the
// node is to the cluster.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import { createPrivateKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { CERT_BYTES, decodeCert, issueCert, type Signer } from "../core/body/trust.ts";
import type { Role } from "../core/wire/messages.ts";
import type { Identity, NodeTrust } from "../node/ports.ts";
import { identityFromPrivateKey } from "./identity.ts";
import { LIMITS } from "../core/util/limits.ts";

export const OWNER_PUB_FILE = "owner.pub";
export const OWNER_KEY_FILE = "owner.key";
export const CERT_FILE = "cert.bin";
/** Largest owner key file read (the identity key's bound: a PEM Ed25519 key is ~120 bytes). */
const KEY_FILE_BYTES_MAX = LIMITS.disk.identityFileBytesMax;

export class TrustFileError extends Error {}

export interface TrustOptions {
  /** The node founds a new cluster (it joins no one): with no owner key yet, it makes one. */
  readonly found: boolean;
  /** A file holding the owner key (PKCS#8 PEM), given by `--owner-key`. */
  readonly ownerKeyFile?: string | undefined;
  /** The role asked for (default core); a node's existing certificate decides. */
  readonly role?: Role | undefined;
  readonly nowMs?: () => number;
}

/** The trust of the node in `dataDir`, making what is missing as TrustOptions says. */
export function loadTrust(dataDir: string, identity: Identity, options: TrustOptions): NodeTrust {
  const role = options.role ?? "core";
  const nowMs = options.nowMs ?? Date.now;
  const ownerKeyPath = join(dataDir, OWNER_KEY_FILE);
  let owner: Signer | undefined = readOwnerKey(ownerKeyPath);
  const given = options.ownerKeyFile === undefined ? undefined : readOwnerKey(options.ownerKeyFile);
  if (options.ownerKeyFile !== undefined && given === undefined) throw new TrustFileError(`--owner-key ${options.ownerKeyFile}: no such file`);
  if (owner !== undefined && given !== undefined && !same(owner.publicKey, given.publicKey)) {
    throw new TrustFileError(`--owner-key ${options.ownerKeyFile} is not the owner key this node already keeps (${ownerKeyPath})`);
  }
  owner ??= given;
  const ownerPub = readFixed(join(dataDir, OWNER_PUB_FILE), 32);
  if (ownerPub !== undefined && owner !== undefined && !same(ownerPub, owner.publicKey)) {
    throw new TrustFileError(`the owner key is not this cluster's: ${join(dataDir, OWNER_PUB_FILE)} names another owner`);
  }
  const cert = readFixed(join(dataDir, CERT_FILE), CERT_BYTES);
  if (cert !== undefined && ownerPub !== undefined) {
    const granted = decodeCert(cert);
    if (granted === undefined) throw new TrustFileError(`${join(dataDir, CERT_FILE)} is not a certificate`);
    if (options.role !== undefined && granted.role !== options.role) {
      throw new TrustFileError(`this node's certificate grants the role ${granted.role}; --role ${options.role} needs a new certificate (an invite code for that role)`);
    }
    return owner !== undefined && granted.role === "core" ? { owner: ownerPub, cert, ownerKey: owner } : { owner: ownerPub, cert };
  }
  if (owner === undefined && !options.found) {
    throw new TrustFileError("this node has no certificate for the cluster it joins: start it with an invite code (`pk invite` on a core node) or with the cluster's owner key (--owner-key FILE)");
  }
  const signer = owner ?? makeOwnerKey(ownerKeyPath);
  const issued = issueCert(signer, identity.publicKey, { role, issuedMs: Math.floor(nowMs()), expiresMs: 0 });
  if (role === "core" && given !== undefined) writeDurably(ownerKeyPath, Buffer.from(readFileSync(options.ownerKeyFile as string)), 0o600);
  saveGrant(dataDir, signer.publicKey, issued);
  return role === "core" ? { owner: signer.publicKey, cert: issued, ownerKey: signer } : { owner: signer.publicKey, cert: issued };
}

/** Writes what an invite (or the owner key) granted: the owner's public key, then the certificate. */
export function saveGrant(dataDir: string, ownerPub: Uint8Array, cert: Uint8Array): void {
  writeDurably(join(dataDir, OWNER_PUB_FILE), ownerPub, 0o644);
  writeDurably(join(dataDir, CERT_FILE), cert, 0o644);
}

/**
 * Gives the node in `dataDir` the owner key kept in `ownerDir` (made there first if absent): what
 * `pk up` does for its core nodes, so each certifies itself and can issue invites.
 */
export function provisionOwnerKey(ownerDir: string, dataDir: string): void {
  const source = join(ownerDir, OWNER_KEY_FILE);
  const owner = readOwnerKey(source) ?? makeOwnerKey(source);
  const target = join(dataDir, OWNER_KEY_FILE);
  const there = readOwnerKey(target);
  if (there === undefined) writeDurably(target, readFileSync(source), 0o600);
  else if (!same(there.publicKey, owner.publicKey)) throw new TrustFileError(`${target} holds another cluster's owner key`);
}

function makeOwnerKey(path: string): Signer {
  const { privateKey } = generateKeyPairSync("ed25519");
  const pem = privateKey.export({ type: "pkcs8", format: "pem" });
  writeDurably(path, Buffer.from(typeof pem === "string" ? pem : pem.toString("utf8"), "utf8"), 0o600);
  return identityFromPrivateKey(privateKey);
}

function readOwnerKey(path: string): Identity | undefined {
  let text: Buffer;
  try {
    text = readFileSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new TrustFileError(`cannot read the owner key ${path}: ${(error as Error).message}`);
  }
  if (text.length > KEY_FILE_BYTES_MAX) throw new TrustFileError(`${path} is ${text.length} bytes: not an owner key`);
  try {
    return identityFromPrivateKey(createPrivateKey({ key: text, format: "pem" }));
  } catch (error) {
    throw new TrustFileError(`${path} is not an Ed25519 private key (PKCS#8 PEM): ${(error as Error).message}`);
  }
}

function readFixed(path: string, bytes: number): Uint8Array | undefined {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new TrustFileError(`cannot read ${path}: ${(error as Error).message}`);
  }
  if (data.length !== bytes) throw new TrustFileError(`${path} holds ${data.length} bytes, not ${bytes}`);
  return new Uint8Array(data);
}

/** Temporary file, fsync, rename over `path`, fsync of the directory. */
export function writeDurably(path: string, data: Uint8Array, mode: number): void {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const fd = openSync(tmp, "wx", mode);
  try {
    let written = 0;
    while (written < data.length) written += writeSync(fd, data, written, data.length - written);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(join(path, ".."), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
