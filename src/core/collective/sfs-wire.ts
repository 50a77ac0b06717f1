// sfs messages on the wire (docs/protocols/sfs.md), all on the stream channel. The lead registers
// SFS_MESSAGE_SCHEMAS in MESSAGE_SCHEMAS (src/core/wire/messages.ts); until then, and for the
// store, validateSfsMessage and isSfsRecordWire check values against the same compiled schemas.
//
// A manifest entry travels as the compact tuple
//
//   [path, counter, origin, flags, size, mtimeMs, sha256, chunkBytes, chunkHashes, vv, pub, sig, signedAs]
//
//   flags        bit 0 deleted (tombstone), bit 1 directory, bit 2 the sender holds the content
//   sha256       32 bytes for a live file, empty for directories and tombstones
//   chunkHashes  the SHA-256 of each chunk, concatenated (32 bytes each)
//   vv           the version vector, [[origin, counter], ...] sorted by origin
//   pub          the origin's Ed25519 public key, exactly 32 bytes
//   sig          the origin's signature, exactly 64 bytes, over the version it signed (sfs-version.ts
//                sfsVersionBody): the entry itself, or for a derived one what signedAs says
//   signedAs     0, or for a version derived from the one its origin signed (a conflict copy, a
//                shadow tombstone) [path, size, sha256, chunkHashes] of that live file
//
// The schema bounds every field; the core checks the rest (canonical path, chunk count against size,
// vector shape) and drops an entry that fails, counting it.
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { TypeCompiler, type TypeCheck } from "@sinclair/typebox/compiler";
import { LIMITS } from "../util/limits.ts";
import { SFS_PATH } from "./sfs-path.ts";

/** Protocol maxima (LIMITS.sfsWire): what a peer may send at all. The node's SfsConfig stays within them. */
export const SFS_WIRE = {
  ...LIMITS.sfsWire,
  /** Hash buckets of the digest; each is 8 bytes on the wire (a size of the format, not a bound). */
  buckets: 256,
} as const;

/** A SHA-256 digest (the file's, and each chunk's in the chunk list). */
const SHA256_BYTES = 32;
const u32 = Type.Integer({ minimum: 0, maximum: 0xffff_ffff });
const safeU = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const counter = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });
const NodeId = Type.String({ pattern: "^[0-9a-f]{16}$" });
const PathSchema = Type.String({ minLength: 1, maxLength: SFS_PATH.bytesMax });

export const SfsVvWireSchema = Type.Array(Type.Tuple([NodeId, counter]), { maxItems: SFS_WIRE.vvEntriesMax });

const FileSize = Type.Integer({ minimum: 0, maximum: SFS_WIRE.fileBytesMax });
const ChunkHashes = Type.Uint8Array({ maxByteLength: SFS_WIRE.chunksMax * SHA256_BYTES });
const VERSION_FIELDS = [
  PathSchema,
  counter,
  NodeId,
  Type.Integer({ minimum: 0, maximum: 7 }),
  FileSize,
  safeU,
  Type.Uint8Array({ maxByteLength: SHA256_BYTES }),
  Type.Integer({ minimum: SFS_WIRE.chunkBytesMin, maximum: SFS_WIRE.chunkBytesMax }),
  ChunkHashes,
  SfsVvWireSchema,
] as const;

/** An Ed25519 public key and signature: exact sizes. */
export const SFS_PUB_BYTES = 32;
export const SFS_SIG_BYTES = 64;

/** What the origin signed of a derived version: 0 (the entry itself) or [path, size, sha256, chunkHashes]. */
export const SfsSignedAsWireSchema = Type.Union([
  Type.Literal(0),
  Type.Tuple([PathSchema, FileSize, Type.Uint8Array({ minByteLength: SHA256_BYTES, maxByteLength: SHA256_BYTES }), ChunkHashes]),
]);
export type SfsSignedAsWire = Static<typeof SfsSignedAsWireSchema>;

export const SfsEntryWireSchema = Type.Tuple([
  ...VERSION_FIELDS,
  Type.Uint8Array({ minByteLength: SFS_PUB_BYTES, maxByteLength: SFS_PUB_BYTES }),
  Type.Uint8Array({ minByteLength: SFS_SIG_BYTES, maxByteLength: SFS_SIG_BYTES }),
  SfsSignedAsWireSchema,
]);
export type SfsEntryWire = Static<typeof SfsEntryWireSchema>;

/** An entry of the previous format (no key, no signature): in the store only, never on the wire. */
export const SfsUnsignedEntryWireSchema = Type.Tuple([...VERSION_FIELDS]);
/** What the store holds of an entry: the signed tuple, or (written by the previous format, or an unsigned base) the old one. */
export const SfsStoredEntryWireSchema = Type.Union([SfsEntryWireSchema, SfsUnsignedEntryWireSchema]);
export type SfsStoredEntryWire = Static<typeof SfsStoredEntryWireSchema>;

export const FLAG_DELETED = 1;
export const FLAG_DIR = 2;
export const FLAG_HAVE = 4;

/** Chunk reply status: the data, "I do not hold that version", "too many reads in flight, ask later". */
export const CHUNK_DATA = 0;
export const CHUNK_MISS = 1;
export const CHUNK_BUSY = 2;

export const SFS_MESSAGE_SCHEMAS = {
  /**
   * Anti-entropy, step 1: the sender's digest, 8 bytes (two FNV-1a 32 hashes XORed over the
   * entries of the bucket, big-endian) per bucket; `n` its entry count, for display.
   */
  "sfs-digest": Type.Object({
    t: Type.Literal("sfs-digest"),
    b: Type.Uint8Array({ minByteLength: SFS_WIRE.buckets * 8, maxByteLength: SFS_WIRE.buckets * 8 }),
    n: u32,
  }),
  /** Step 2: the sender's [path, hashHi, hashLo] of every entry in buckets `k` (the ones that differed). */
  "sfs-sums": Type.Object({
    t: Type.Literal("sfs-sums"),
    k: Type.Uint8Array({ maxByteLength: SFS_WIRE.buckets }),
    s: Type.Array(Type.Tuple([PathSchema, u32, u32]), { maxItems: SFS_WIRE.filesMax }),
  }),
  /**
   * Step 3 (and eager pushes): entries for the receiver to merge, and `w`, paths whose entries the
   * sender wants back (answered by an sfs-entries with an empty `w`).
   */
  "sfs-entries": Type.Object({
    t: Type.Literal("sfs-entries"),
    e: Type.Array(SfsEntryWireSchema, { maxItems: SFS_WIRE.filesMax }),
    w: Type.Array(PathSchema, { maxItems: SFS_WIRE.filesMax }),
  }),
  /** Asks for chunk `i` of version (c, o) of path `p`. */
  "sfs-get": Type.Object({
    t: Type.Literal("sfs-get"), p: PathSchema, c: counter, o: NodeId, i: Type.Integer({ minimum: 0, maximum: SFS_WIRE.chunksMax - 1 }),
  }),
  /** Answers an sfs-get: `s` CHUNK_DATA with the bytes in `d`, or CHUNK_MISS / CHUNK_BUSY with `d` empty. */
  "sfs-chunk": Type.Object({
    t: Type.Literal("sfs-chunk"), p: PathSchema, c: counter, o: NodeId, i: Type.Integer({ minimum: 0, maximum: SFS_WIRE.chunksMax - 1 }),
    s: Type.Union([Type.Literal(CHUNK_DATA), Type.Literal(CHUNK_MISS), Type.Literal(CHUNK_BUSY)]),
    d: Type.Uint8Array({ maxByteLength: SFS_WIRE.chunkBytesMax }),
  }),
} as const;

type Schemas = typeof SFS_MESSAGE_SCHEMAS;
export type SfsMessageType = keyof Schemas;
export type SfsMessage = { [K in SfsMessageType]: Static<Schemas[K]> }[SfsMessageType];
export type SfsMessageOf<K extends SfsMessageType> = Extract<SfsMessage, { t: K }>;

/**
 * A manifest record in the durable store: [entry, base, localMtimeMs]. `base` is the version whose
 * state the local disk reflects: 0 none, 1 the entry itself, or another entry (an older version
 * while the new one is fetched). localMtimeMs is the mtime the disk showed after the base was
 * committed (-1 when no file), for the boot scan. Entries are signed tuples; records written by the
 * previous format hold unsigned ones (sfs.ts restore: this node's own are signed again, others'
 * dropped), and so may a base kept from them.
 */
export const SfsRecordWireSchema = Type.Tuple([
  SfsStoredEntryWireSchema,
  Type.Union([Type.Literal(0), Type.Literal(1), SfsStoredEntryWireSchema]),
  Type.Integer({ minimum: -1, maximum: Number.MAX_SAFE_INTEGER }),
]);
export type SfsRecordWire = Static<typeof SfsRecordWireSchema>;

const CHECKS = Object.fromEntries(
  Object.entries(SFS_MESSAGE_SCHEMAS).map(([t, schema]) => [t, TypeCompiler.Compile(schema as TSchema)]),
) as { [K in SfsMessageType]: TypeCheck<Schemas[K]> };
const RECORD_CHECK = TypeCompiler.Compile(SfsRecordWireSchema);

/** Checks a decoded value against the sfs schemas (the same check MESSAGE_SCHEMAS will make). */
export function validateSfsMessage(value: unknown): SfsMessage | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const t = (value as { t?: unknown }).t;
  if (typeof t !== "string" || !Object.hasOwn(SFS_MESSAGE_SCHEMAS, t)) return undefined;
  const check = CHECKS[t as SfsMessageType] as TypeCheck<TSchema>;
  return check.Check(value) ? (value as SfsMessage) : undefined;
}

/** True when a value read from the store is a well-formed record (its entries still get the core's checks). */
export function isSfsRecordWire(value: unknown): value is SfsRecordWire {
  return RECORD_CHECK.Check(value);
}
