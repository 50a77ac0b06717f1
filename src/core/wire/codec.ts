// The body codec: MessagePack (@msgpack/msgpack, the reference implementation for JavaScript) for
// the message inside the sealed envelope. Decoding is total: hostile bytes give { ok: false },
// never an exception, and only validated messages leave.
import { Decoder, Encoder } from "@msgpack/msgpack";
import { LIMITS } from "../util/limits.ts";
import { entryToWire, validate, type Message, type ValidateResult } from "./messages.ts";

// Plain MessagePack: no extension types, integers as numbers (a bigint is refused on decode),
// and every length bounded by the largest frame, so a forged length cannot make us allocate more.
const bound = LIMITS.frameBytesMax;
const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder({
  maxStrLength: bound, maxBinLength: bound, maxArrayLength: LIMITS.membersMax, maxMapLength: LIMITS.messageMapKeysMax, maxExtLength: 0,
});

export function encodeMessage(message: Message): Uint8Array {
  return encoder.encode(toWire(message));
}

/**
 * encodeMessage without the copy: a view into the encoder's buffer, valid until the next encode
 * (any of this module's). For a caller that consumes the bytes at once, as sealing a packet does:
 * it saves an allocation per packet (off the JavaScript heap beyond 64 bytes).
 */
export function encodeMessageShared(message: Message): Uint8Array {
  return encoder.encodeSharedRef(toWire(message));
}

export function decodeMessage(body: Uint8Array): ValidateResult {
  let value: unknown;
  try {
    value = decoder.decode(body);
  } catch (error) {
    return { ok: false, reason: "decode", detail: `msgpack: ${(error as Error).message.slice(0, 80)}` };
  }
  return validate(value);
}

/** Packs a value in the same plain MessagePack, for the durable store. */
export function packValue(value: unknown): Uint8Array {
  return encoder.encode(value);
}

/** Unpacks a stored value; undefined when the bytes are not MessagePack. */
export function unpackValue(bytes: Uint8Array): unknown {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Member entries travel as tuples (messages.ts, MemberEntryWireSchema); everything else as is. */
function toWire(message: Message): unknown {
  if ("entry" in message) return { ...message, entry: entryToWire(message.entry) };
  return message;
}
