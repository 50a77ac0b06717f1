// The consensus key-value state machine behind /v1/kv (DESIGN.md §9): every node applies the same
// committed commands in the same order, so every node holds the same map. Commands are MessagePack
// tuples written by the node that took the client's request:
//
//   [op, key, value, expected, origin, seq]   op 0 put, 1 delete, 2 compare-and-set
//
// (origin, seq) names the request, so the node that proposed it can answer its client when the
// entry is applied, whichever node led at the time. The map is bounded in keys and bytes; a write
// beyond the bound is applied as a refusal (every node refuses it alike), never half-done.
import { packValue, unpackValue } from "../wire/codec.ts";
import { LIMITS } from "../util/limits.ts";

/** The map's bounds (LIMITS.kv). */
export const KV_LIMITS = LIMITS.kv;

export type KvOp = "put" | "delete" | "cas";

export interface KvCommand {
  readonly op: KvOp;
  readonly key: string;
  readonly value: Uint8Array | undefined;
  /** cas: the value the key must hold (undefined: the key must be absent). */
  readonly expected: Uint8Array | undefined;
  readonly origin: string;
  readonly seq: number;
}

export type KvResultCode = "ok" | "not-found" | "conflict" | "full";

export interface KvResult {
  readonly code: KvResultCode;
  /** The value before the command (for cas conflicts: the current value). */
  readonly previous: Uint8Array | undefined;
  /** The log index that applied the command (the key's new revision on success). */
  readonly revision: number;
}

export interface KvRecord {
  readonly value: Uint8Array;
  /** Log index of the write that created this value. */
  readonly revision: number;
}

const OPS: readonly KvOp[] = ["put", "delete", "cas"];
const utf8 = new TextEncoder();

export function encodeKvCommand(command: KvCommand): Uint8Array {
  return packValue([OPS.indexOf(command.op), command.key, command.value ?? null, command.expected ?? null, command.origin, command.seq]);
}

export function decodeKvCommand(bytes: Uint8Array): KvCommand | undefined {
  const value = unpackValue(bytes);
  if (!Array.isArray(value) || value.length !== 6) return undefined;
  const [code, key, v, expected, origin, seq] = value as unknown[];
  const op = typeof code === "number" ? OPS[code] : undefined;
  if (op === undefined || typeof key !== "string" || typeof origin !== "string" || typeof seq !== "number") return undefined;
  if (v !== null && !(v instanceof Uint8Array)) return undefined;
  if (expected !== null && !(expected instanceof Uint8Array)) return undefined;
  return { op, key, value: v ?? undefined, expected: expected ?? undefined, origin, seq };
}

/** Why a key or value cannot be written, or undefined when it can. */
export function checkKvWrite(key: string, value: Uint8Array | undefined): string | undefined {
  if (key.length === 0) return "the key is empty";
  if (utf8.encode(key).length > KV_LIMITS.keyBytesMax) return `the key is longer than ${KV_LIMITS.keyBytesMax} bytes`;
  if (value !== undefined && value.length > KV_LIMITS.valueBytesMax) return `the value is larger than ${KV_LIMITS.valueBytesMax} bytes`;
  return undefined;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class KvStore {
  readonly #map = new Map<string, KvRecord>();
  #bytes = 0;

  get size(): number {
    return this.#map.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get(key: string): KvRecord | undefined {
    return this.#map.get(key);
  }

  /** Keys in order, starting after `after`, at most `limit`. */
  keys(prefix = "", limit: number = LIMITS.listRowsDefault): Array<[string, KvRecord]> {
    const out: Array<[string, KvRecord]> = [];
    for (const key of [...this.#map.keys()].sort()) {
      if (!key.startsWith(prefix)) continue;
      out.push([key, this.#map.get(key)!]);
      if (out.length >= limit) break;
    }
    return out;
  }

  apply(command: KvCommand, index: number): KvResult {
    const current = this.#map.get(command.key);
    const previous = current?.value;
    switch (command.op) {
      case "delete":
        if (current === undefined) return { code: "not-found", previous, revision: index };
        this.#remove(command.key, current);
        return { code: "ok", previous, revision: index };
      case "cas": {
        const matches = command.expected === undefined ? current === undefined : current !== undefined && equalBytes(current.value, command.expected);
        if (!matches) return { code: "conflict", previous, revision: index };
        return this.#put(command, current, index);
      }
      case "put":
        return this.#put(command, current, index);
    }
  }

  #put(command: KvCommand, current: KvRecord | undefined, index: number): KvResult {
    const value = command.value ?? new Uint8Array(0);
    if (checkKvWrite(command.key, value) !== undefined) return { code: "full", previous: current?.value, revision: index };
    const delta = value.length + (current === undefined ? command.key.length + 16 : -current.value.length);
    if (this.#bytes + delta > KV_LIMITS.totalBytesMax || (current === undefined && this.#map.size >= KV_LIMITS.keysMax)) {
      return { code: "full", previous: current?.value, revision: index };
    }
    this.#bytes += delta;
    this.#map.set(command.key, { value, revision: index });
    return { code: "ok", previous: current?.value, revision: index };
  }

  #remove(key: string, record: KvRecord): void {
    this.#map.delete(key);
    this.#bytes -= record.value.length + key.length + 16;
  }

  /** The whole map as [[key, value, revision]...], for snapshots. */
  snapshot(): Uint8Array {
    const rows: Array<[string, Uint8Array, number]> = [];
    for (const [key, record] of this.#map) rows.push([key, record.value, record.revision]);
    return packValue(rows);
  }

  /** Replaces the map with a snapshot's; false (map unchanged) if the bytes are not one. */
  restore(bytes: Uint8Array): boolean {
    const rows = bytes.length === 0 ? [] : unpackValue(bytes);
    if (!Array.isArray(rows)) return false;
    const next = new Map<string, KvRecord>();
    let total = 0;
    for (const row of rows as unknown[]) {
      if (!Array.isArray(row) || row.length !== 3) return false;
      const [key, value, revision] = row as unknown[];
      if (typeof key !== "string" || !(value instanceof Uint8Array) || typeof revision !== "number") return false;
      next.set(key, { value: value.slice(), revision });
      total += value.length + key.length + 16;
    }
    this.#map.clear();
    for (const [k, v] of next) this.#map.set(k, v);
    this.#bytes = total;
    return true;
  }
}
