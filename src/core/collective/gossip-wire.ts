// Gossip-topic anti-entropy on the wire (src/core/collective/gossip.ts, docs/protocols/gossip.md):
// one message type, `gossip`, whose fields are tuples without key names (a row is about a third
// smaller than as a map). The lead registers GossipWireSchema in src/core/wire/messages.ts
// (MESSAGE_SCHEMAS["gossip"]); until then this file compiles its own check.
//
//   gossip { t: "gossip", h: hop, n: origins, d: digest, r: deltas, g: horizons }
//     h  0 = opening digest (SYN), 1 = answer (deltas + digest), 2 = answer to the answer,
//        3 = last deltas. A message at hop 3 carries no digest (nothing may answer it).
//     n  how many origins the sender knows: a peer that knows more adds a slice of its own
//        digest to its answer, so a node discovers origins it has never heard of
//     d  [origin, version][]: "I hold origin's rows up to version"
//     r  [origin, from, upto, rows][]: the sender's rows of origin with from < version ≤ upto, in
//        version order; rows the sender holds no more (overwritten) are left out, and `upto` says
//        how far the group reaches (the sender's whole watermark when the group is complete)
//     g  [origin, gcVersion, wall, logical][]: "I have collected origin's tombstones up to
//        gcVersion, the newest stamped (wall, logical)", sent to a peer whose digest is below it
//
//   row [version, topic, key, value | null, wall, logical, pub, sig]   null = tombstone
//        pub  the writer's Ed25519 public key (exactly 32 bytes; the origin is its id)
//        sig  the writer's signature (exactly 64 bytes) over the row's canonical bytes
//             (gossip.ts rowBody), checked end to end by whoever takes the row
//
// Bounds here are the schema's (what a hostile peer may make us decode); the core's config sets
// the smaller ones it uses. packedSize() gives the exact MessagePack size of a message, so the core
// cuts deltas at its byte budget without encoding them first.
import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { LIMITS } from "../util/limits.ts";

const u53 = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const u32 = Type.Integer({ minimum: 0, maximum: 0xffff_ffff });
/** A node id (as NodeIdSchema in wire/messages.ts, which imports this file). */
const OriginSchema = Type.String({ pattern: "^[0-9a-f]{16}$" });

/** Schema bounds (LIMITS.gossip): generous enough for a stream-channel budget of 64 KiB. */
export const GOSSIP_WIRE_BOUNDS = LIMITS.gossip;

/** Topic names: 1–64 of A-Z a-z 0-9 . _ / - (no NUL, so topic + "\0" + key is unambiguous). */
export const TopicSchema = Type.String({ minLength: 1, maxLength: GOSSIP_WIRE_BOUNDS.topicCharsMax, pattern: "^[A-Za-z0-9._/-]+$" });
export const KeySchema = Type.String({ minLength: 1, maxLength: GOSSIP_WIRE_BOUNDS.keyCharsMax });

export const GossipDigestEntryWireSchema = Type.Tuple([OriginSchema, u53]);
/** A writer's Ed25519 public key and its signature: exact sizes. */
export const ROW_PUB_BYTES = 32;
export const ROW_SIG_BYTES = 64;
export const GossipRowWireSchema = Type.Tuple([
  u53, TopicSchema, KeySchema,
  Type.Union([Type.Uint8Array({ maxByteLength: GOSSIP_WIRE_BOUNDS.valueBytesMax }), Type.Null()]),
  u53, u32,
  Type.Uint8Array({ minByteLength: ROW_PUB_BYTES, maxByteLength: ROW_PUB_BYTES }),
  Type.Uint8Array({ minByteLength: ROW_SIG_BYTES, maxByteLength: ROW_SIG_BYTES }),
]);
export const GossipDeltaWireSchema = Type.Tuple([
  OriginSchema, u53, u53, Type.Array(GossipRowWireSchema, { maxItems: GOSSIP_WIRE_BOUNDS.rowsPerDeltaMax }),
]);
export const GossipHorizonWireSchema = Type.Tuple([OriginSchema, u53, u53, u32]);

export const GossipWireSchema = Type.Object({
  t: Type.Literal("gossip"),
  h: Type.Union([Type.Literal(0), Type.Literal(1), Type.Literal(2), Type.Literal(3)]),
  n: u32,
  d: Type.Array(GossipDigestEntryWireSchema, { maxItems: GOSSIP_WIRE_BOUNDS.digestMax }),
  r: Type.Array(GossipDeltaWireSchema, { maxItems: GOSSIP_WIRE_BOUNDS.deltasMax }),
  g: Type.Array(GossipHorizonWireSchema, { maxItems: GOSSIP_WIRE_BOUNDS.horizonsMax }),
});

export type GossipDigestEntryWire = Static<typeof GossipDigestEntryWireSchema>;
export type GossipRowWire = Static<typeof GossipRowWireSchema>;
export type GossipDeltaWire = Static<typeof GossipDeltaWireSchema>;
export type GossipHorizonWire = Static<typeof GossipHorizonWireSchema>;
export type GossipMessage = Static<typeof GossipWireSchema>;
export type GossipHop = GossipMessage["h"];

const CHECK = TypeCompiler.Compile(GossipWireSchema);

/** True when a decoded value is a well-formed gossip message (schema only; gossip.ts checks the rest). */
export function isGossipWire(value: unknown): value is GossipMessage {
  return CHECK.Check(value);
}

/** The first schema error of a value, for a counted drop's detail. */
export function gossipWireError(value: unknown): string | undefined {
  if (CHECK.Check(value)) return undefined;
  const first = CHECK.Errors(value).First();
  return `gossip: ${first?.path ?? ""} ${first?.message ?? "invalid"}`;
}

// ---- Exact MessagePack sizes (the @msgpack/msgpack encoder's choices) --------------------------

/** Bytes of a non-negative safe integer. */
export function uintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x1_0000_0000 ? 5 : 9;
}

/** UTF-8 length of a string (lone surrogates count 3, as the encoder writes U+FFFD-like 3 bytes). */
export function utf8Length(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

export function strSize(s: string): number {
  const n = utf8Length(s);
  return (n < 32 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5) + n;
}

export function binSize(length: number): number {
  return (length < 0x100 ? 2 : length < 0x10000 ? 3 : 5) + length;
}

/** Header of an array or map of `count` items. */
export function headerSize(count: number): number {
  return count < 16 ? 1 : count < 0x10000 ? 3 : 5;
}

/** A digest entry [origin, version]. */
export function entrySize(origin: string, version: number): number {
  return 1 + strSize(origin) + uintSize(version);
}

/** The writer's key and signature in a row tuple (fixed sizes: 34 + 66 bytes). */
export const ROW_SIGNED_BYTES = binSize(ROW_PUB_BYTES) + binSize(ROW_SIG_BYTES);

/** A row tuple (with its writer's key and signature, whose sizes are fixed). */
export function rowSize(version: number, topic: string, key: string, value: Uint8Array | null, wall: number, logical: number): number {
  return 1 + uintSize(version) + strSize(topic) + strSize(key) + (value === null ? 1 : binSize(value.length)) + uintSize(wall) + uintSize(logical) + ROW_SIGNED_BYTES;
}

/** A delta group's tuple without its rows, counting its rows' array header at its largest (3). */
export function deltaHeaderSize(origin: string, from: number, upto: number): number {
  return 1 + strSize(origin) + uintSize(from) + uintSize(upto) + 3;
}

export function horizonSize(origin: string, version: number, wall: number, logical: number): number {
  return 1 + strSize(origin) + uintSize(version) + uintSize(wall) + uintSize(logical);
}

/** `{t:"gossip",h,n,d,r,g}` without the arrays' items, `n` at 5 bytes and each array header at 3. */
export const MESSAGE_OVERHEAD_BYTES = 1 + strSize("t") + strSize("gossip") + strSize("h") + 1 + strSize("n") + 5 + 3 * (strSize("d") + 3);

/** The exact MessagePack size of a plain value (numbers, strings, bytes, null, booleans, arrays, objects). */
export function packedSize(value: unknown): number {
  if (value === null || typeof value === "boolean") return 1;
  if (typeof value === "number") {
    if (Number.isSafeInteger(value)) {
      if (value >= 0) return uintSize(value);
      return value >= -0x20 ? 1 : value >= -0x80 ? 2 : value >= -0x8000 ? 3 : value >= -0x8000_0000 ? 5 : 9;
    }
    return 9;
  }
  if (typeof value === "string") return strSize(value);
  if (value instanceof Uint8Array) return binSize(value.length);
  if (Array.isArray(value)) {
    let size = headerSize(value.length);
    for (const item of value) size += packedSize(item);
    return size;
  }
  if (typeof value === "object") {
    let size = 0;
    let count = 0;
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v === undefined) continue;
      count++;
      size += strSize(k) + packedSize(v);
    }
    return headerSize(count) + size;
  }
  return 1;
}
