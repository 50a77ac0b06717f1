// trust: what the Brain takes from other nodes only when a core node vouches for it (issue 13). A
// model file (model-file.ts) and a GA row (ga.ts) carry their signer's id and an Ed25519 signature;
// `signerRefusal` judges one against the membership this node knows. Sans-IO: the node injects the
// cryptography and the member table (MemberTrust), so the core never hashes or verifies by itself.
//
// The signer's public key is the one its member entry holds — never one the signed object carries —
// and must map to the signer's id (ids are derived from public keys, src/adapters/identity.ts); the
// signature must verify over the object's message; and the signer's role must be core. An unknown
// role counts as contributor: a node whose role cannot be established publishes nothing.

/** What a node knows to judge a signer: Ed25519, and its members' keys and roles. */
export interface MemberTrust {
  /** The public key a member's entry holds (this node's too); undefined for a stranger. */
  publicKeyOf(id: string): Uint8Array | undefined;
  /** The node id a public key maps to. */
  idOf(publicKey: Uint8Array): string;
  /** Ed25519 verification; false (never a throw) for a malformed key or signature. */
  verify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
  /** The member's role; anything but "core" (undefined included) is not trusted to publish. */
  roleOf(id: string): string | undefined;
}

export type SignerRefusal = "unknown-signer" | "key" | "signature" | "role";

/**
 * Null when `signature` is `signer`'s over `message` and `signer` is a core member; else why not.
 * Checked in this order: the signer is a member, its key maps to its id, the signature verifies,
 * its role is core.
 */
export function signerRefusal(
  trust: MemberTrust, signer: string, message: Uint8Array, signature: Uint8Array,
): { reason: SignerRefusal; error: string } | null {
  const who = JSON.stringify(signer.slice(0, 40));
  const key = trust.publicKeyOf(signer);
  if (key === undefined) return { reason: "unknown-signer", error: `signed by ${who}, not a member this node knows` };
  if (trust.idOf(key) !== signer) return { reason: "key", error: `the public key of ${who} does not map to its id` };
  if (!trust.verify(key, message, signature)) return { reason: "signature", error: `the signature by ${who} does not verify` };
  const role = trust.roleOf(signer);
  if (role !== "core") return { reason: "role", error: `signed by ${who}, ${role === undefined ? "whose role is unknown" : `a ${role}`}: only core nodes publish` };
  return null;
}
