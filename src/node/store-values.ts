// Numbers kept in the store as 8-byte big-endian doubles (epochs, incarnations, versions).

/** The boot epoch: the kernel bumps it durably at every boot (membership lists it as persisted). */
export const KEY_EPOCH = "kernel/epoch";

export function readNumber(bytes: Uint8Array | undefined): number | undefined {
  if (bytes === undefined || bytes.length !== 8) return undefined;
  const value = new DataView(bytes.buffer, bytes.byteOffset, 8).getFloat64(0);
  return Number.isSafeInteger(value) ? value : undefined;
}

export function writeNumber(value: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, value);
  return out;
}
