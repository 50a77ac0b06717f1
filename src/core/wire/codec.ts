// The body codec: MessagePack (msgpackr) for the message inside the sealed envelope. Decoding is
// total: hostile bytes give { ok: false }, never an exception, and only validated messages leave.
import { Packr } from "msgpackr";
import { entryToWire, validate, type Message, type ValidateResult } from "./messages.ts";

// Plain MessagePack: no record extension (its structures are shared state between encoder and
// decoder, which peers do not have), no Map or Date revival, binary as Uint8Array.
// copyBuffers: a decoded byte field gets its own memory instead of a view that would pin the whole
// received packet (or the transport's receive buffer) for as long as the field is kept.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: "number", copyBuffers: true });

export function encodeMessage(message: Message): Uint8Array {
  return packr.pack(toWire(message));
}

/** Member entries travel as tuples (messages.ts, MemberEntryWireSchema); everything else as is. */
function toWire(message: Message): unknown {
  if ("entry" in message) return { ...message, entry: entryToWire(message.entry) };
  if ("members" in message) return { ...message, members: message.members.map(entryToWire) };
  return message;
}

export function decodeMessage(body: Uint8Array): ValidateResult {
  let value: unknown;
  try {
    value = packr.unpack(body);
  } catch (error) {
    return { ok: false, reason: "decode", detail: `msgpack: ${(error as Error).message.slice(0, 80)}` };
  }
  return validate(value);
}
