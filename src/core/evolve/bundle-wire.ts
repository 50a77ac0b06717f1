// The bundle's messages (docs/protocols/bundle.md), all on the stream channel; registered in
// MESSAGE_SCHEMAS (src/core/wire/messages.ts) by spreading BUNDLE_MESSAGE_SCHEMAS.
//
//   bundle-have   v: the bundle version the sender runs; n: the version it says its newest held
//                 bundle has; r, g: that bundle's signed root and targets (absent: it holds none)
//   bundle-get    h: the bundle's address; i: a chunk index, or -1 for the chunk-hash list
//   bundle-chunk  h, i as asked; s: 0 data in d, 1 miss (not held here), 2 busy (ask later)
//
// A peer's claims are only claims: the receiver verifies r and g against its owner key before it
// believes n, and every chunk against the verified hash list.
import { Type } from "@sinclair/typebox";
import { BUNDLE_DEFAULTS } from "./bundle.ts";

const safeU = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const metadata = Type.Uint8Array({ maxByteLength: BUNDLE_DEFAULTS.metadataBytesMax });
/** A SHA-256 address: exactly 32 bytes. */
const HASH_BYTES = 32;
const address = Type.Uint8Array({ minByteLength: HASH_BYTES, maxByteLength: HASH_BYTES });
const index = Type.Integer({ minimum: -1, maximum: BUNDLE_DEFAULTS.chunksMax - 1 });
/** A chunk, or the hash list (32 bytes per chunk), whichever is larger. */
const payloadBytesMax = Math.max(BUNDLE_DEFAULTS.chunkBytes, BUNDLE_DEFAULTS.chunksMax * HASH_BYTES);

export const BUNDLE_MESSAGE_SCHEMAS = {
  "bundle-have": Type.Object({ t: Type.Literal("bundle-have"), v: safeU, n: safeU, r: Type.Optional(metadata), g: Type.Optional(metadata) }),
  "bundle-get": Type.Object({ t: Type.Literal("bundle-get"), h: address, i: index }),
  "bundle-chunk": Type.Object({
    t: Type.Literal("bundle-chunk"), h: address, i: index, s: Type.Union([Type.Literal(0), Type.Literal(1), Type.Literal(2)]),
    d: Type.Uint8Array({ maxByteLength: payloadBytesMax }),
  }),
} as const;
