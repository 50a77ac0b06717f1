// The simulator's Seal: the real envelope layout (src/core/wire/envelope.ts: 36-byte header, then
// the body, then a 16-byte tag) with a cheap, non-cryptographic tag.
//
// Real nodes seal with ChaCha20-Poly1305 under a key only the sender and the receiver can make
// (src/adapters/seal.ts). The simulated network is trusted and the simulator's job is protocol
// behaviour, so here the body travels in clear and the tag is a 128-bit checksum over the header
// and body, mixed with the cluster key and with the pair (sender, receiver) — or with "intro" for
// an intro packet. It keeps what the protocols can observe of the real seal — packet sizes, and
// open() failing on a wrong key, sender, receiver or epoch, for a sender whose key is not known,
// or on any changed bit — at a fraction of the cost. It is not a security boundary and must never
// be plugged into a real node.
import type { Seal, SealPeer } from "../node/ports.ts";
import type { Channel, Header } from "../core/wire/envelope.ts";
import { encodeHeader, HEADER_BYTES, NODE_ID_BYTES, TAG_BYTES, WIRE_VERSION } from "../core/wire/envelope.ts";
import { assert } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";
import { ByteSlab } from "./slab.ts";
import { Fingerprint, fmix32, LANE_A_SEED, LANE_B_SEED } from "./fingerprint.ts";

export interface SimSealOptions {
  /** Stands in for the cluster key: seals made under different keys do not open. Default 0. */
  readonly clusterKey?: number;
  /** This node's public key, for box/openBox (a checksum over the pair of keys stands in for X25519). */
  readonly publicKey?: Uint8Array;
}

const NODE_ID_PATTERN = /^[0-9a-f]{16}$/;
/** Offsets in the header (envelope.ts): magic, version, flags, sender id and epoch come first. */
const RECEIVER_EPOCH_OFFSET = 20;
const COUNTER_OFFSET = 28;
/** What an intro packet's tag is mixed with in place of a receiver. */
const INTRO = "intro";

export function createSimSeal(selfId: string, options: SimSealOptions = {}): Seal {
  assert(NODE_ID_PATTERN.test(selfId), `createSimSeal: node id must be ${NODE_ID_BYTES * 2} lowercase hex characters`);
  const key = (options.clusterKey ?? 0) >>> 0;
  // Sealed packets belong to the caller, who may keep some (a retransmission queue): small slabs
  // bound the memory one kept packet can pin to 16 KiB.
  const slab = new ByteSlab(16 * 1024);
  const sealPrint = new Fingerprint();
  const openPrint = new Fingerprint();
  const boxPrint = new Fingerprint();
  let randomCounter = fmix32(Number.parseInt(selfId.slice(0, 8), 16));
  const seeds = new SenderSeeds(key);
  // encodeHeader lays out the header once per (channel, intro, epoch); each seal copies that
  // template and writes only the receiver's epoch and the counter.
  let template: Uint8Array | undefined;
  let templateChannel: Channel | undefined;
  let templateEpoch = -1;
  let templateIntro = false;
  return {
    seal(channel: Channel, epoch: number, counter: number, body: Uint8Array, to?: SealPeer): Uint8Array {
      assert(Number.isSafeInteger(counter) && counter >= 0, "SimSeal: counter must be a safe non-negative integer");
      const intro = to === undefined;
      if (template === undefined || channel !== templateChannel || epoch !== templateEpoch || intro !== templateIntro) {
        template = new Uint8Array(HEADER_BYTES);
        encodeHeader({ version: WIRE_VERSION, channel, intro, sender: selfId, epoch, receiverEpoch: 0, counter: 0 }, template);
        templateChannel = channel;
        templateEpoch = epoch;
        templateIntro = intro;
      }
      const packet = slab.alloc(HEADER_BYTES + body.length + TAG_BYTES);
      packet.set(template);
      if (!intro) writeU64(packet, RECEIVER_EPOCH_OFFSET, to.epoch);
      writeU64(packet, COUNTER_OFFSET, counter);
      packet.set(body, HEADER_BYTES);
      computeTag(sealPrint, seeds, packet, selfId, intro ? INTRO : to.id, epoch);
      writeTag(sealPrint, packet, key);
      return packet;
    },
    random(bytes: number): Uint8Array {
      // Deterministic by construction: the simulator replays by seed (never a real secret).
      const out = new Uint8Array(bytes);
      for (let i = 0; i < bytes; i++) out[i] = fmix32(++randomCounter ^ key) & 0xff;
      return out;
    },
    box(peerPub: Uint8Array, plain: Uint8Array): Uint8Array {
      assert(options.publicKey !== undefined, "SimSeal: box needs the node's publicKey option");
      const out = new Uint8Array(plain.length + TAG_BYTES);
      out.set(plain);
      boxTag(boxPrint, key, options.publicKey, peerPub, plain, out.subarray(plain.length));
      return out;
    },
    openBox(peerPub: Uint8Array, box: Uint8Array): Uint8Array | undefined {
      if (options.publicKey === undefined || box.length < TAG_BYTES) return undefined;
      const plain = box.subarray(0, box.length - TAG_BYTES);
      const tag = new Uint8Array(TAG_BYTES);
      boxTag(boxPrint, key, options.publicKey, peerPub, plain, tag);
      let difference = 0;
      for (let i = 0; i < TAG_BYTES; i++) difference |= (tag[i] as number) ^ (box[plain.length + i] as number);
      return difference === 0 ? plain.slice() : undefined;
    },
    open(packet: Uint8Array, header: Header, senderPub: Uint8Array | undefined): Uint8Array | undefined {
      if (packet.length < HEADER_BYTES + TAG_BYTES) return undefined;
      if (!header.intro && senderPub === undefined) return undefined;
      computeTag(openPrint, seeds, packet, header.sender, header.intro ? INTRO : selfId, header.epoch);
      if (!tagMatches(openPrint, packet, key)) return undefined;
      return packet.subarray(HEADER_BYTES, packet.length - TAG_BYTES);
    },
  };
}

/** The fingerprint state after (key, sender), per sender: the tag's prefix, computed once. */
class SenderSeeds {
  readonly #key: number;
  readonly #seeds = new Map<string, { readonly a: number; readonly b: number }>();
  readonly #print = new Fingerprint();

  constructor(key: number) {
    this.#key = key;
  }

  /** Starts `print` at the state for `sender`. */
  start(print: Fingerprint, sender: string): void {
    let seeds = this.#seeds.get(sender);
    if (seeds === undefined) {
      const fresh = this.#print;
      fresh.reset(LANE_A_SEED ^ this.#key, LANE_B_SEED ^ this.#key);
      for (let i = 0; i < sender.length; i++) fresh.word(sender.charCodeAt(i));
      seeds = { a: fresh.a, b: fresh.b };
      if (this.#seeds.size >= SENDER_SEEDS_MAX) this.#seeds.clear();
      this.#seeds.set(sender, seeds);
    }
    print.reset(seeds.a, seeds.b);
  }
}

/** Senders whose tag prefix one seal remembers (cleared when full: the cache is only for speed). */
const SENDER_SEEDS_MAX = LIMITS.sim.senderSeedsMax;

/** A box's tag: the cluster key, the two keys in a fixed order (either end computes it), the plaintext. */
function boxTag(print: Fingerprint, key: number, a: Uint8Array, b: Uint8Array, plain: Uint8Array, out: Uint8Array): void {
  let first = a;
  let second = b;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] === b[i]) continue;
    if ((a[i] as number) > (b[i] as number)) [first, second] = [b, a];
    break;
  }
  print.reset(LANE_A_SEED ^ key, LANE_B_SEED ^ key);
  print.bytes(first);
  print.bytes(second);
  print.word(plain.length);
  print.bytes(plain);
  for (let i = 0; i < 4; i++) writeU32(out, i * 4, tagWord(print, key, plain.length, i));
}

/** Folds (key, sender, receiver, epoch, header || body) into `print`. */
function computeTag(print: Fingerprint, seeds: SenderSeeds, packet: Uint8Array, sender: string, receiver: string, epoch: number): void {
  seeds.start(print, sender);
  for (let i = 0; i < receiver.length; i++) print.word(receiver.charCodeAt(i));
  print.word(epoch >>> 0);
  print.word(Math.floor(epoch / 0x1_0000_0000));
  print.bytes(packet, packet.length - TAG_BYTES);
}

/** The four tag words, from the two lanes, each finalised so every bit depends on every input bit. */
function tagWord(print: Fingerprint, key: number, length: number, index: number): number {
  switch (index) {
    case 0: return fmix32(print.a);
    case 1: return fmix32(print.b);
    case 2: return fmix32(print.a ^ Math.imul(print.b, 0x9e3779b1) ^ length);
    default: return fmix32(print.b ^ Math.imul(print.a, 0x85ebca6b) ^ key);
  }
}

function writeTag(print: Fingerprint, packet: Uint8Array, key: number): void {
  const at = packet.length - TAG_BYTES;
  for (let i = 0; i < 4; i++) writeU32(packet, at + i * 4, tagWord(print, key, at, i));
}

function tagMatches(print: Fingerprint, packet: Uint8Array, key: number): boolean {
  const at = packet.length - TAG_BYTES;
  let difference = 0;
  for (let i = 0; i < 4; i++) difference |= readU32(packet, at + i * 4) ^ tagWord(print, key, at, i);
  return difference === 0;
}

function writeU32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 24;
  bytes[at + 1] = value >>> 16;
  bytes[at + 2] = value >>> 8;
  bytes[at + 3] = value;
}

function readU32(bytes: Uint8Array, at: number): number {
  return (((bytes[at] as number) << 24) | ((bytes[at + 1] as number) << 16) | ((bytes[at + 2] as number) << 8) | (bytes[at + 3] as number)) >>> 0;
}

/** Big-endian u64 of a safe integer, as envelope.ts writes it. */
function writeU64(bytes: Uint8Array, at: number, value: number): void {
  writeU32(bytes, at, Math.floor(value / 0x1_0000_0000));
  writeU32(bytes, at + 4, value >>> 0);
}
