// Who a member is and what it was granted (docs/protocols/trust.md, docs/adr/012-trust.md). Sans-IO:
// the signatures come through a port (the node's Ed25519 identity; the simulator's stand-in).
//
// The cluster has an owner key. A node's role is granted by a certificate the owner key signed:
//
//   cert (82 bytes) = version (1) ‖ role (1: 0 core, 1 contributor) ‖ issued ms (u64 BE)
//                     ‖ expires ms (u64 BE, 0 = never) ‖ owner signature (64)
//   signed message  = "p-kernel/v1/cert" ‖ owner public key ‖ subject public key ‖ bytes 0..17 of cert
//
// A member's alive entry (address, role, name, incarnation, boot epoch) is signed by the member
// itself, so nobody can say where another member lives, which incarnation it is at or what it
// may do:
//
//   signed message  = "p-kernel/v1/alive" ‖ id (8) ‖ incarnation (u32 BE) ‖ epoch (u64 BE)
//                     ‖ role (1) ‖ address length (1) ‖ address ‖ name length (1) ‖ name
//
// A relayed entry that does not verify is dropped and counted by whoever relays it to us.
//
// A claim about another member's state (SWIM's suspect, dead and left news) is signed by whoever
// makes it, and relayed with that signature:
//
//   signed message  = "p-kernel/v1/claim" ‖ kind (1: 0 accuse, 1 leave) ‖ subject id (8)
//                     ‖ incarnation (u32 BE) ‖ accuser id (8)
//
// Only a member itself can say it left; an accusation (suspect or dead) is evidence against the
// subject at that incarnation, and only a core member's makes it dead (swim.ts).
import { fromHex } from "../util/bytes.ts";
import { LIMITS } from "../util/limits.ts";
import type { MemberEntry, Role } from "../wire/messages.ts";

export const CERT_BYTES = 82;
export const SIGNATURE_BYTES = 64;
const CERT_VERSION = 1;
const CERT_SIGNED_BYTES = CERT_BYTES - SIGNATURE_BYTES;
const CERT_CONTEXT = new TextEncoder().encode("p-kernel/v1/cert");
const ALIVE_CONTEXT = new TextEncoder().encode("p-kernel/v1/alive");
const CLAIM_CONTEXT = new TextEncoder().encode("p-kernel/v1/claim");
const ROLES: readonly Role[] = ["core", "contributor"];
const encoder = new TextEncoder();

/** The signature checks trust needs (the node's Identity port has them). */
export interface TrustCrypto {
  verify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
  idOf(publicKey: Uint8Array): string;
}

/** What signs: the owner key for certificates, a node's identity for its own entries. */
export interface Signer {
  readonly publicKey: Uint8Array;
  sign(data: Uint8Array): Uint8Array;
}

export interface Certificate {
  readonly role: Role;
  readonly issuedMs: number;
  /** 0: never expires. */
  readonly expiresMs: number;
}

/** The certificate's fields, or undefined when the bytes are not a version-1 certificate. */
export function decodeCert(cert: Uint8Array): Certificate | undefined {
  if (cert.length !== CERT_BYTES || cert[0] !== CERT_VERSION) return undefined;
  const role = ROLES[cert[1] as number];
  if (role === undefined) return undefined;
  const view = new DataView(cert.buffer, cert.byteOffset, CERT_BYTES);
  const issuedMs = readU64(view, 2);
  const expiresMs = readU64(view, 10);
  if (issuedMs === undefined || expiresMs === undefined) return undefined;
  return { role, issuedMs, expiresMs };
}

/** A certificate for `subject` in `role`, signed by the owner key. */
export function issueCert(owner: Signer, subject: Uint8Array, cert: Certificate): Uint8Array {
  const out = new Uint8Array(CERT_BYTES);
  out[0] = CERT_VERSION;
  out[1] = ROLES.indexOf(cert.role);
  const view = new DataView(out.buffer);
  writeU64(view, 2, cert.issuedMs);
  writeU64(view, 10, cert.expiresMs);
  out.set(owner.sign(certMessage(owner.publicKey, subject, out)), CERT_SIGNED_BYTES);
  return out;
}

function certMessage(owner: Uint8Array, subject: Uint8Array, cert: Uint8Array): Uint8Array {
  return concat([CERT_CONTEXT, owner, subject, cert.subarray(0, CERT_SIGNED_BYTES)]);
}

/** The fields of an entry its subject signs (everything but the certificate and the signature). */
export type AliveFields = Pick<MemberEntry, "id" | "addr" | "role" | "name" | "incarnation" | "epoch">;

/** The bytes a member signs to vouch for its alive entry. */
export function aliveMessage(entry: AliveFields): Uint8Array {
  const addr = utf8(entry.addr);
  const name = utf8(entry.name);
  const out = new Uint8Array(ALIVE_CONTEXT.length + 8 + 4 + 8 + 1 + 1 + addr.length + 1 + name.length);
  const view = new DataView(out.buffer);
  let at = 0;
  out.set(ALIVE_CONTEXT, at);
  at += ALIVE_CONTEXT.length;
  out.set(fromHex(entry.id) ?? new Uint8Array(8), at);
  at += 8;
  view.setUint32(at, entry.incarnation);
  at += 4;
  writeU64(view, at, entry.epoch);
  at += 8;
  out[at++] = ROLES.indexOf(entry.role);
  out[at++] = Math.min(addr.length, 255);
  out.set(addr.subarray(0, 255), at);
  at += Math.min(addr.length, 255);
  out[at++] = Math.min(name.length, 255);
  out.set(name.subarray(0, 255), at);
  return out;
}

/** This node's entry at its current fields, signed by itself. */
export function signEntry(self: Signer, fields: AliveFields, cert: Uint8Array): MemberEntry {
  return { ...fields, pub: self.publicKey, cert, sig: self.sign(aliveMessage(fields)) };
}

/** A claim about a member's state: an accusation (suspect or dead) or its own leave. */
export interface Claim {
  readonly leave: boolean;
  /** The member the claim is about. */
  readonly id: string;
  readonly incarnation: number;
  /** Who makes the claim (the subject itself for a leave). */
  readonly from: string;
}

/** The bytes the maker of a claim signs. */
export function claimMessage(claim: Claim): Uint8Array {
  const out = new Uint8Array(CLAIM_CONTEXT.length + 1 + 8 + 4 + 8);
  let at = 0;
  out.set(CLAIM_CONTEXT, at);
  at += CLAIM_CONTEXT.length;
  out[at++] = claim.leave ? 1 : 0;
  out.set(fromHex(claim.id) ?? new Uint8Array(8), at);
  at += 8;
  new DataView(out.buffer).setUint32(at, claim.incarnation);
  at += 4;
  out.set(fromHex(claim.from) ?? new Uint8Array(8), at);
  return out;
}

/** Why an entry is not believed; undefined when it is. */
export type EntryRefusal = "key" | "cert" | "role" | "expired" | "revoked" | "signature";

/**
 * Checks members' entries against the cluster's owner key: the id derives from the key, the
 * certificate is the owner's and grants the role the entry claims and has not expired, and the
 * member signed the entry. Certificates that verified are remembered (one owner check per key, not
 * per entry); bounded by `certsMax` (the oldest is forgotten: it is only checked again).
 */
export class EntryChecker {
  readonly #owner: Uint8Array;
  readonly #crypto: TrustCrypto;
  readonly #nowMs: () => number;
  readonly #certsMax: number;
  /** Verified (key, certificate) by subject id: an exact match of both is needed to reuse. */
  readonly #certs = new Map<string, { readonly pub: Uint8Array; readonly cert: Uint8Array }>();
  readonly #revoked = new Set<string>();
  /** Refusals by reason, for /metrics. */
  readonly refused: Record<EntryRefusal, number> = { key: 0, cert: 0, role: 0, expired: 0, revoked: 0, signature: 0 };

  constructor(owner: Uint8Array, crypto: TrustCrypto, nowMs: () => number, certsMax: number) {
    this.#owner = owner;
    this.#crypto = crypto;
    this.#nowMs = nowMs;
    this.#certsMax = certsMax;
  }

  get owner(): Uint8Array {
    return this.#owner;
  }

  /** The role `cert` grants `pub`, or why not (the owner's signature, the expiry). */
  checkCert(pub: Uint8Array, cert: Uint8Array, id: string): Certificate | EntryRefusal {
    const fields = decodeCert(cert);
    if (fields === undefined) return "cert";
    if (fields.expiresMs !== 0 && fields.expiresMs <= this.#nowMs()) return "expired";
    const known = this.#certs.get(id);
    if (known !== undefined && bytesSame(known.cert, cert) && bytesSame(known.pub, pub)) return fields;
    if (!this.#crypto.verify(this.#owner, certMessage(this.#owner, pub, cert), cert.subarray(CERT_SIGNED_BYTES))) return "cert";
    if (this.#certs.size >= this.#certsMax) this.#certs.delete(this.#certs.keys().next().value as string);
    this.#certs.set(id, { pub: pub.slice(), cert: cert.slice() });
    return fields;
  }

  /** Undefined when the entry is believed, else the reason (also counted). */
  check(entry: MemberEntry): EntryRefusal | undefined {
    const refusal = this.#check(entry);
    if (refusal !== undefined) this.refused[refusal]++;
    return refusal;
  }

  #check(entry: MemberEntry): EntryRefusal | undefined {
    // A key already checked against this id (with its certificate) needs no hash again.
    const known = this.#certs.get(entry.id);
    if ((known === undefined || !bytesSame(known.pub, entry.pub)) && this.#crypto.idOf(entry.pub) !== entry.id) return "key";
    if (this.#revoked.has(entry.id)) return "revoked";
    const cert = this.checkCert(entry.pub, entry.cert, entry.id);
    if (typeof cert === "string") return cert;
    if (cert.role !== entry.role) return "role";
    if (!this.#crypto.verify(entry.pub, aliveMessage(entry), entry.sig)) return "signature";
    return undefined;
  }

  /** From now on the member's entries are refused (its certificate no longer counts). */
  revoke(id: string): void {
    // Bounded like the member table: a revocation list longer than it names ids no one holds.
    if (this.#revoked.size < this.#certsMax) this.#revoked.add(id);
    this.#certs.delete(id);
  }

  isRevoked(id: string): boolean {
    return this.#revoked.has(id);
  }
}

/** What a record's signature is for: one domain per record kind, so no signature serves two. */
export type RecordKind = "row" | "sfs" | "heal" | "rollout";
const RECORD_CONTEXTS: Record<RecordKind, Uint8Array> = {
  row: encoder.encode("p-kernel/v1/row"),
  sfs: encoder.encode("p-kernel/v1/sfs"),
  heal: encoder.encode("p-kernel/v1/heal"),
  rollout: encoder.encode("p-kernel/v1/rollout"),
};

/** Why a writer's record is not believed. */
export type RecordRefusal = "key" | "revoked" | "signature";

/**
 * Writers' signatures on the records other nodes relay (gossip rows, shared-folder versions, heal
 * records). A record carries its writer's public key (32 bytes) and signature (64) over
 * "p-kernel/v1/KIND" ‖ the record's canonical bytes, so it verifies wherever it is relayed, its
 * writer alive or long gone: the writer's id derives from the key (the first 8 bytes of its
 * SHA-256), so no one can sign as another member. Keys already matched to an id are remembered
 * (bounded by `keysMax`) so the hash runs once per writer, not per record.
 */
export class RecordSigner {
  readonly #self: Signer;
  readonly #crypto: TrustCrypto;
  readonly #revoked: (id: string) => boolean;
  readonly #keysMax: number;
  readonly #keys = new Map<string, Uint8Array>();
  /** Refusals by record kind and reason, for /metrics. */
  readonly refused: Record<RecordKind, Record<RecordRefusal, number>> = {
    row: { key: 0, revoked: 0, signature: 0 }, sfs: { key: 0, revoked: 0, signature: 0 }, heal: { key: 0, revoked: 0, signature: 0 },
    rollout: { key: 0, revoked: 0, signature: 0 },
  };

  constructor(self: Signer, crypto: TrustCrypto, options: { readonly revoked?: (id: string) => boolean; readonly keysMax?: number } = {}) {
    this.#self = self;
    this.#crypto = crypto;
    this.#revoked = options.revoked ?? (() => false);
    this.#keysMax = options.keysMax ?? LIMITS.membersMax;
  }

  /** This node's public key: what its records carry. */
  get publicKey(): Uint8Array {
    return this.#self.publicKey;
  }

  /** This node's signature over a record's canonical bytes. */
  sign(kind: RecordKind, body: Uint8Array): Uint8Array {
    return this.#self.sign(concat([RECORD_CONTEXTS[kind], body]));
  }

  /** Undefined when `writer` (whose key `pub` is) signed `body`; else why not (also counted). */
  check(kind: RecordKind, writer: string, pub: Uint8Array, body: Uint8Array, signature: Uint8Array): RecordRefusal | undefined {
    const refusal = this.#check(kind, writer, pub, body, signature);
    if (refusal !== undefined) this.refused[kind][refusal]++;
    return refusal;
  }

  #check(kind: RecordKind, writer: string, pub: Uint8Array, body: Uint8Array, signature: Uint8Array): RecordRefusal | undefined {
    if (this.#revoked(writer)) return "revoked";
    const known = this.#keys.get(writer);
    if (known === undefined || !bytesSame(known, pub)) {
      if (this.#crypto.idOf(pub) !== writer) return "key";
      if (this.#keys.size >= this.#keysMax) this.#keys.delete(this.#keys.keys().next().value as string);
      this.#keys.set(writer, pub.slice());
    }
    if (signature.length !== SIGNATURE_BYTES || !this.#crypto.verify(pub, concat([RECORD_CONTEXTS[kind], body]), signature)) return "signature";
    return undefined;
  }
}

/** UTF-8 of a string: a plain copy for ASCII (addresses and most names), TextEncoder otherwise. */
function utf8(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) return encoder.encode(text);
    out[i] = code;
  }
  return out;
}

function bytesSame(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function writeU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, Math.floor(value / 0x1_0000_0000));
  view.setUint32(offset + 4, value >>> 0);
}

function readU64(view: DataView, offset: number): number | undefined {
  const high = view.getUint32(offset);
  if (high > 0x1fffff) return undefined;
  return high * 0x1_0000_0000 + view.getUint32(offset + 4);
}
