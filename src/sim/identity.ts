// The simulator's signatures: real Ed25519 keys (node ids derive from them as on a real node), but a
// cheap, non-cryptographic signature in place of Ed25519's: 64 bytes of a keyed 64-bit fingerprint
// of (public key, message), repeated. It keeps what the protocols can observe — a signature is
// tied to one key and one message, and verify() fails on any changed bit of either — at a small
// fraction of the cost (a 1,000-node simulation checks about a million signed member entries).
// Anyone can make one from the public key: it is no security boundary and must never be plugged
// into a real node (the simulator's `seal: "real"` option uses real Ed25519 throughout).
import { createIdentityFromSeed } from "../adapters/identity.ts";
import type { Identity } from "../node/ports.ts";
import { Fingerprint } from "./fingerprint.ts";

const SIGNATURE_BYTES = 64;
const print = new Fingerprint();

/** The stand-in signature of `data` by the holder of `publicKey`. */
export function simSignature(publicKey: Uint8Array, data: Uint8Array): Uint8Array {
  print.reset();
  print.word(publicKey.length);
  print.bytes(publicKey);
  print.word(data.length);
  print.bytes(data);
  const out = new Uint8Array(SIGNATURE_BYTES);
  const view = new DataView(out.buffer);
  for (let at = 0; at < SIGNATURE_BYTES; at += 8) {
    view.setUint32(at, print.a >>> 0);
    view.setUint32(at + 4, print.b >>> 0);
  }
  return out;
}

/** An identity with the real key of `seed` and the simulator's stand-in signatures. */
export function createSimIdentity(seed: Uint8Array): Identity {
  const real = createIdentityFromSeed(seed);
  return {
    id: real.id,
    publicKey: real.publicKey,
    sign: (data) => simSignature(real.publicKey, data),
    verify: simVerify,
    idOf: real.idOf,
  };
}

/** Checks a stand-in signature. */
export function simVerify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_BYTES) return false;
  const expected = simSignature(publicKey, data);
  for (let i = 0; i < SIGNATURE_BYTES; i++) if (expected[i] !== signature[i]) return false;
  return true;
}
