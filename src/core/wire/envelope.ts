// The versioned envelope every datagram and stream frame travels in (docs/protocols/wire.md).
//
//   offset size field
//   0      2    magic "pk" (0x70 0x6b)
//   2      1    version (2)
//   3      1    flags: bit 0 channel (0 datagram, 1 stream); bit 1 intro (sealed under the
//               cluster key only: the join handshake); other bits 0
//   4      8    sender node id (the first 8 bytes of SHA-256 of its Ed25519 public key)
//   12     8    sender epoch, big-endian u64: strictly increases across restarts of the sender
//   20     8    receiver epoch, big-endian u64: the boot of the receiver the packet is sealed for
//               (0 in an intro packet)
//   28     8    counter, big-endian u64: strictly increases per (sender, epoch, channel)
//   36     n    sealed body (AEAD ciphertext of the message, then a 16-byte tag)
//
// The 36-byte header is the AEAD's associated data, so no header bit can change unnoticed.
// This file only lays the header out; sealing lives in src/adapters/seal.ts.
import { toHex } from "../util/bytes.ts";

export const MAGIC0 = 0x70;
export const MAGIC1 = 0x6b;
export const WIRE_VERSION = 2;
export const HEADER_BYTES = 36;
export const TAG_BYTES = 16;
export const NODE_ID_BYTES = 8;
const FLAG_STREAM = 1;
const FLAG_INTRO = 2;

export type Channel = "datagram" | "stream";

export interface Header {
  readonly version: number;
  readonly channel: Channel;
  /** Sealed under the cluster key only (the join handshake), not under the pair's key. */
  readonly intro: boolean;
  /** Node id, 16 lowercase hex characters. */
  readonly sender: string;
  readonly epoch: number;
  /** The receiver's boot epoch the packet was sealed for; 0 for an intro packet. */
  readonly receiverEpoch: number;
  readonly counter: number;
}

export type HeaderResult =
  | { readonly ok: true; readonly header: Header }
  | { readonly ok: false; readonly reason: "decode"; readonly detail: string };

/** Epochs and counters are kept within 2^53 so they stay exact as numbers. */
const SAFE_HIGH_MAX = 0x1fffff;

export function encodeHeader(header: Header, out: Uint8Array): void {
  const view = new DataView(out.buffer, out.byteOffset, HEADER_BYTES);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = header.version;
  out[3] = (header.channel === "datagram" ? 0 : FLAG_STREAM) | (header.intro ? FLAG_INTRO : 0);
  const id = header.sender;
  for (let i = 0; i < NODE_ID_BYTES; i++) out[4 + i] = parseInt(id.slice(i * 2, i * 2 + 2), 16);
  writeU64(view, 12, header.epoch);
  writeU64(view, 20, header.receiverEpoch);
  writeU64(view, 28, header.counter);
}

export function decodeHeader(bytes: Uint8Array): HeaderResult {
  if (bytes.length < HEADER_BYTES + TAG_BYTES) return fail(`packet of ${bytes.length} bytes is shorter than header and tag`);
  if (bytes[0] !== MAGIC0 || bytes[1] !== MAGIC1) return fail("bad magic");
  const version = bytes[2] as number;
  if (version !== WIRE_VERSION) return fail(`unsupported wire version ${version}`);
  const flags = bytes[3] as number;
  if ((flags & ~(FLAG_STREAM | FLAG_INTRO)) !== 0) return fail(`bad flags ${flags}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const epoch = readU64(view, 12);
  const receiverEpoch = readU64(view, 20);
  const counter = readU64(view, 28);
  if (epoch === undefined || receiverEpoch === undefined || counter === undefined) return fail("epoch or counter beyond 2^53");
  const intro = (flags & FLAG_INTRO) !== 0;
  if (intro && receiverEpoch !== 0) return fail("an intro packet names a receiver epoch");
  return {
    ok: true,
    header: {
      version,
      channel: (flags & FLAG_STREAM) === 0 ? "datagram" : "stream",
      intro,
      sender: toHex(bytes.subarray(4, 4 + NODE_ID_BYTES)),
      epoch,
      receiverEpoch,
      counter,
    },
  };
}

function fail(detail: string): HeaderResult {
  return { ok: false, reason: "decode", detail };
}

function writeU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, Math.floor(value / 0x1_0000_0000));
  view.setUint32(offset + 4, value >>> 0);
}

function readU64(view: DataView, offset: number): number | undefined {
  const high = view.getUint32(offset);
  if (high > SAFE_HIGH_MAX) return undefined;
  return high * 0x1_0000_0000 + view.getUint32(offset + 4);
}
