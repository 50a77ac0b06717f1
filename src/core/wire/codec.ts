// The body codec: MessagePack (msgpackr) for the message inside the sealed envelope. Decoding is
// total: hostile bytes give { ok: false }, never an exception, and only validated messages leave.
import { Packr } from "msgpackr";
import { validate, type Message, type ValidateResult } from "./messages.ts";

// Plain MessagePack: no record extension (its structures are shared state between encoder and
// decoder, which peers do not have), no Map or Date revival, binary as Uint8Array.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: "number" });

export function encodeMessage(message: Message): Uint8Array {
  return packr.pack(message);
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
