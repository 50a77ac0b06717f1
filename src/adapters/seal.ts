// The real Seal: ChaCha20-Poly1305 under keys only the two ends of a packet can make
// (docs/protocols/wire.md, docs/adr/004-crypto.md, docs/adr/012-trust.md).
//
//   clusterKey = HKDF-SHA256(ikm = UTF-8(token), salt = "p-kernel/v1/cluster", info = "", 32)
//   pairKey    = HKDF-SHA256(ikm = X25519(own key, peer key), salt = clusterKey,
//                info = "p-kernel/v2/pair" ‖ lower id (8 bytes) ‖ higher id (8 bytes), 32)
//   packetKey  = HKDF-SHA256(ikm = pairKey, salt = "", info = "p-kernel/v2/packet" ‖ sender id
//                ‖ sender epoch (u64 BE) ‖ receiver epoch (u64 BE), 32)
//   introKey   = HKDF-SHA256(ikm = clusterKey, salt = "", info = "p-kernel/v2/intro" ‖ sender id
//                ‖ sender epoch, 32)                      (the join handshake only)
//   nonce      = 0x00 0x00 0x00 ‖ flags byte (channel, intro) ‖ counter (u64 big-endian)
//   packet     = header (36 bytes, the associated data) ‖ ciphertext ‖ tag (16 bytes)
//
// The X25519 keys are the nodes' Ed25519 identity keys on the Montgomery curve
// (src/adapters/identity.ts), so a pair key needs one end's private key: no member can seal as
// another, although all hold the cluster key. A packet names the receiver's boot epoch: packets
// sealed for a receiver's earlier boot never open again, so replays across its restarts fail
// whatever its replay window forgot. The cluster key alone (the token) opens only intro packets,
// which the kernel takes for the join handshake and nothing else.
import { createCipheriv, createDecipheriv, createHash, createSecretKey, diffieHellman, hkdfSync, randomBytes, type KeyObject } from "node:crypto";
import type { Identity, Seal, SealPeer } from "../node/ports.ts";
import type { Channel, Header } from "../core/wire/envelope.ts";
import { encodeHeader, HEADER_BYTES, NODE_ID_BYTES, TAG_BYTES, WIRE_VERSION } from "../core/wire/envelope.ts";
import { assert } from "../core/util/assert.ts";
import { bytesEqual, fromHex } from "../core/util/bytes.ts";
import { LIMITS } from "../core/util/limits.ts";
import { dhPrivateKeyOf, dhPublicKeyOf } from "./identity.ts";

const CIPHER = "chacha20-poly1305";
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const CLUSTER_SALT = Buffer.from("p-kernel/v1/cluster", "utf8");
const PAIR_INFO = Buffer.from("p-kernel/v2/pair", "utf8");
const PACKET_INFO = Buffer.from("p-kernel/v2/packet", "utf8");
const INTRO_INFO = Buffer.from("p-kernel/v2/intro", "utf8");
const BOX_INFO = Buffer.from("p-kernel/v2/box", "utf8");
const FINGERPRINT_INFO = "p-kernel/v1/fingerprint";
/** Bytes of random in a token made by makeToken(). */
export const TOKEN_RANDOM_BYTES = 32;
/** Longest token accepted, in characters: a guard against pasting a file by mistake. */
export const TOKEN_CHARS_MAX = LIMITS.net.tokenCharsMax;

export interface SealOptions {
  /** Peers whose keys are kept; default LIMITS.replaySendersMax (smaller in tests). */
  readonly keysMax?: number;
}

export interface SealStats {
  /** Peers with a cached pair key (only peers whose packets authenticated, or we sealed for). */
  readonly cachedKeys: number;
  /** X25519 agreements and HKDF derivations so far (forged packets from members included). */
  readonly keyDerivations: number;
}

/** The Seal port plus counters for tests and metrics. */
export interface RealSeal extends Seal {
  readonly stats: SealStats;
}

/** What is cached per peer: the pair key, and the last packet key each way (epochs change rarely). */
interface PeerKeys {
  readonly pub: Uint8Array;
  readonly pair: Buffer;
  /** The last packet key each way, with the (own, peer) epochs it is for. */
  sealOwn: number;
  sealPeer: number;
  sealKey: KeyObject | undefined;
  openOwn: number;
  openPeer: number;
  openKey: KeyObject | undefined;
}

/**
 * Makes a Seal for `identity` (made by src/adapters/identity.ts: its key is also its X25519 key) in
 * the cluster whose token is `clusterToken`. Throws on an empty or oversized token: a
 * configuration error.
 */
export function createSeal(clusterToken: string, identity: Identity, options: SealOptions = {}): RealSeal {
  assert(clusterToken.length > 0, "createSeal: the cluster token is empty");
  assert(clusterToken.length <= TOKEN_CHARS_MAX, `createSeal: the cluster token is longer than ${TOKEN_CHARS_MAX} characters`);
  const dh = dhPrivateKeyOf(identity);
  assert(dh !== undefined, "createSeal: the identity was not made by src/adapters/identity.ts (no X25519 key)");
  const selfId = identity.id;
  const selfIdBytes = fromHex(selfId) as Uint8Array;
  const clusterKey = Buffer.from(hkdfSync("sha256", Buffer.from(clusterToken, "utf8"), CLUSTER_SALT, Buffer.alloc(0), KEY_BYTES));
  const keysMax = options.keysMax ?? LIMITS.replaySendersMax;
  assert(Number.isSafeInteger(keysMax) && keysMax > 0, "createSeal: keysMax must be a positive integer");
  const peers = new Map<string, PeerKeys>();
  let derivations = 0;
  let introSealKey: { epoch: number; key: KeyObject } | undefined;
  /** The peer remember() put last (the most recently used entry of `peers`). */
  let lastRemembered: string | undefined;
  /** The nonce under construction (createCipheriv copies it, so one buffer serves every packet). */
  const nonce = new Uint8Array(NONCE_BYTES);

  const derive = (ikm: Uint8Array, salt: Uint8Array, info: Uint8Array): Buffer => {
    derivations++;
    return Buffer.from(hkdfSync("sha256", ikm, salt, info, KEY_BYTES));
  };
  const introKey = (sender: Uint8Array, epoch: number): KeyObject =>
    createSecretKey(derive(clusterKey, Buffer.alloc(0), Buffer.concat([INTRO_INFO, sender, u64(epoch)])));
  /** The pair's keys; undefined when the peer's key is no X25519 point. Cached only when `keep`. */
  /** The pair's keys, from the cache or derived into a temporary (see remember); undefined when the peer's key is no X25519 point. */
  const pairOf = (peerId: string, pub: Uint8Array): PeerKeys | undefined => {
    const cached = peers.get(peerId);
    if (cached !== undefined && bytesEqual(cached.pub, pub)) return cached;
    const peerBytes = fromHex(peerId);
    const peerKey = dhPublicKeyOf(pub);
    if (peerBytes === undefined || peerKey === undefined) return undefined;
    let shared: Buffer;
    try {
      shared = diffieHellman({ privateKey: dh, publicKey: peerKey });
    } catch {
      return undefined; // a low-order point: no shared secret
    }
    const [lo, hi] = selfId < peerId ? [selfIdBytes, peerBytes] : [peerBytes, selfIdBytes];
    return {
      pub: pub.slice(), pair: derive(shared, clusterKey, Buffer.concat([PAIR_INFO, lo, hi])),
      sealOwn: -1, sealPeer: -1, sealKey: undefined, openOwn: -1, openPeer: -1, openKey: undefined,
    };
  };
  /** Caches `keys` as the most recently used peer's; evicts the least recently used beyond the bound. */
  const remember = (peerId: string, keys: PeerKeys): PeerKeys => {
    // The common case — the same peer as last time — is already the most recent entry.
    if (peerId === lastRemembered && peers.get(peerId) === keys) return keys;
    lastRemembered = peerId;
    peers.delete(peerId);
    peers.set(peerId, keys);
    if (peers.size > keysMax) peers.delete(peers.keys().next().value as string);
    return keys;
  };
  const packetKey = (pair: Buffer, sender: Uint8Array, senderEpoch: number, receiverEpoch: number): KeyObject =>
    createSecretKey(derive(pair, Buffer.alloc(0), Buffer.concat([PACKET_INFO, sender, u64(senderEpoch), u64(receiverEpoch)])));

  /** The box key of a pair (never cached: invites are rare); undefined for a key that is no point. */
  const boxKey = (peerPub: Uint8Array): KeyObject | undefined => {
    const peerKey = dhPublicKeyOf(peerPub);
    if (peerKey === undefined) return undefined;
    try {
      return createSecretKey(derive(diffieHellman({ privateKey: dh, publicKey: peerKey }), clusterKey, BOX_INFO));
    } catch {
      return undefined;
    }
  };

  return {
    get stats(): SealStats {
      return { cachedKeys: peers.size, keyDerivations: derivations };
    },

    random(bytes: number): Uint8Array {
      return new Uint8Array(randomBytes(bytes));
    },

    box(peerPub: Uint8Array, plain: Uint8Array): Uint8Array {
      const key = boxKey(peerPub);
      assert(key !== undefined, "box: the peer's key is no X25519 point");
      // One message per pair (an invite's secret), so a fixed nonce never repeats under a key
      // with another plaintext: a resent redeem carries the same box.
      const cipher = createCipheriv(CIPHER, key, new Uint8Array(NONCE_BYTES), { authTagLength: TAG_BYTES });
      const out = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return new Uint8Array(out.buffer, out.byteOffset, out.length);
    },

    openBox(peerPub: Uint8Array, box: Uint8Array): Uint8Array | undefined {
      try {
        if (box.length < TAG_BYTES) return undefined;
        const key = boxKey(peerPub);
        if (key === undefined) return undefined;
        const decipher = createDecipheriv(CIPHER, key, new Uint8Array(NONCE_BYTES), { authTagLength: TAG_BYTES });
        decipher.setAuthTag(box.subarray(box.length - TAG_BYTES));
        return new Uint8Array(Buffer.concat([decipher.update(box.subarray(0, box.length - TAG_BYTES)), decipher.final()]));
      } catch {
        return undefined;
      }
    },

    seal(channel: Channel, epoch: number, counter: number, body: Uint8Array, to?: SealPeer): Uint8Array {
      assert(Number.isSafeInteger(epoch) && epoch >= 0, `seal: epoch ${epoch} is not an integer in [0, 2^53)`);
      assert(Number.isSafeInteger(counter) && counter >= 0, `seal: counter ${counter} is not an integer in [0, 2^53)`);
      const packet = new Uint8Array(HEADER_BYTES + body.length + TAG_BYTES);
      const header = packet.subarray(0, HEADER_BYTES);
      encodeHeader({ version: WIRE_VERSION, channel, intro: to === undefined, sender: selfId, epoch, receiverEpoch: to?.epoch ?? 0, counter }, header);
      let key: KeyObject;
      if (to === undefined) {
        if (introSealKey === undefined || introSealKey.epoch !== epoch) introSealKey = { epoch, key: introKey(selfIdBytes, epoch) };
        key = introSealKey.key;
      } else {
        const derived = pairOf(to.id, to.pub);
        assert(derived !== undefined, `seal: ${to.id}'s key is no X25519 point`);
        const pair = remember(to.id, derived);
        if (pair.sealKey === undefined || pair.sealOwn !== epoch || pair.sealPeer !== to.epoch) {
          pair.sealKey = packetKey(pair.pair, selfIdBytes, epoch, to.epoch);
          pair.sealOwn = epoch;
          pair.sealPeer = to.epoch;
        }
        key = pair.sealKey;
      }
      const cipher = createCipheriv(CIPHER, key, nonceOf(header, nonce), { authTagLength: TAG_BYTES });
      cipher.setAAD(header, { plaintextLength: body.length });
      const head = cipher.update(body);
      const tail = cipher.final();
      packet.set(head, HEADER_BYTES);
      packet.set(tail, HEADER_BYTES + head.length);
      assert(head.length + tail.length === body.length, "seal: ciphertext length differs from body length");
      packet.set(cipher.getAuthTag(), HEADER_BYTES + body.length);
      return packet;
    },

    open(packet: Uint8Array, header: Header, senderPub: Uint8Array | undefined): Uint8Array | undefined {
      // Hostile input: every failure is a value, never an exception.
      try {
        if (packet.length < HEADER_BYTES + TAG_BYTES) return undefined;
        let key: KeyObject;
        let pair: PeerKeys | undefined;
        if (header.intro) {
          const sender = senderBytes(header.sender);
          if (sender === undefined) return undefined;
          key = introKey(sender, header.epoch);
        } else {
          if (senderPub === undefined) return undefined;
          // A miss derives into a temporary: only a packet that authenticates may enter the cache,
          // so forged packets can neither fill it nor evict real peers' keys.
          pair = pairOf(header.sender, senderPub);
          if (pair === undefined) return undefined;
          if (pair.openKey !== undefined && pair.openOwn === header.receiverEpoch && pair.openPeer === header.epoch) key = pair.openKey;
          else {
            const sender = senderBytes(header.sender);
            if (sender === undefined) return undefined;
            key = packetKey(pair.pair, sender, header.epoch, header.receiverEpoch);
          }
        }
        const head8 = packet.subarray(0, HEADER_BYTES);
        const ciphertext = packet.subarray(HEADER_BYTES, packet.length - TAG_BYTES);
        const decipher = createDecipheriv(CIPHER, key, nonceOf(head8, nonce), { authTagLength: TAG_BYTES });
        decipher.setAAD(head8, { plaintextLength: ciphertext.length });
        decipher.setAuthTag(packet.subarray(packet.length - TAG_BYTES));
        const head = decipher.update(ciphertext);
        const tail = decipher.final(); // throws when the tag does not verify
        if (pair !== undefined) {
          remember(header.sender, pair);
          pair.openKey = key;
          pair.openOwn = header.receiverEpoch;
          pair.openPeer = header.epoch;
        }
        if (tail.length === 0) return new Uint8Array(head.buffer, head.byteOffset, head.length);
        const body = new Uint8Array(head.length + tail.length);
        body.set(head);
        body.set(tail, head.length);
        return body;
      } catch {
        return undefined;
      }
    },
  };
}

function u64(value: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(value));
  return out;
}

/** A fresh cluster token: 32 random bytes, base64url (43 characters). */
export function makeToken(): string {
  return randomBytes(TOKEN_RANDOM_BYTES).toString("base64url");
}

/**
 * A short, printable fingerprint of a token (8 hex characters), so two people can compare tokens
 * without showing them. It reveals nothing useful about the token (a domain-separated SHA-256).
 */
export function tokenFingerprint(token: string): string {
  return createHash("sha256").update(FINGERPRINT_INFO).update("\0").update(token, "utf8").digest("hex").slice(0, 8);
}

/** A sender id's bytes, or undefined when it is no node id (hex of NODE_ID_BYTES bytes). */
function senderBytes(id: string): Uint8Array | undefined {
  const bytes = fromHex(id);
  return bytes !== undefined && bytes.length === NODE_ID_BYTES ? bytes : undefined;
}

/**
 * The nonce for a header, written into `nonce` (NONCE_BYTES, bytes 0–2 zero): 3 zero bytes, the
 * flags byte (header byte 3), the counter (bytes 28–35).
 */
function nonceOf(header: Uint8Array, nonce: Uint8Array): Uint8Array {
  nonce[3] = header[3] as number;
  nonce.set(header.subarray(28, 36), 4);
  return nonce;
}
