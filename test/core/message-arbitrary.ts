// Random messages of every kind, from the wire schemas themselves (src/core/wire/messages.ts
// MESSAGE_SCHEMAS): valid ones that exercise the bounds (each integer at its minimum, its maximum
// or between; arrays empty to full; strings to their longest), and invalid ones made from them
// (a field removed, a leaf of the wrong type, an integer out of range, a string over its bound).
// Strings with a pattern are drawn from what the pattern admits, preferring the ids and addresses
// of the cluster under test, so that messages reach the code behind the schema.
import { Kind, OptionalKind, type TSchema } from "@sinclair/typebox";
import type { Rng } from "../../src/core/util/rng.ts";
import { MESSAGE_SCHEMAS, type MessageType } from "../../src/core/wire/messages.ts";

export interface Hints {
  /** Node ids to use most of the time (the cluster's), else random ones. */
  readonly ids: readonly string[];
  readonly addrs: readonly string[];
  /** Shared-folder paths and other free strings worth trying. */
  readonly paths: readonly string[];
}

/** Longest array made (whatever the schema allows): messages stay within a frame. */
const ARRAY_ITEMS_MAX = 24;
/** Longest byte string made, unless the schema needs more. */
const BYTES_MAX = 600;
/** Longest free string made. */
const STRING_MAX = 48;
const ID_PATTERN = "^[0-9a-f]{16}$";
const NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";

export const MESSAGE_KINDS = Object.keys(MESSAGE_SCHEMAS) as MessageType[];

/** ENTRY_FIELDS[i] is the member entry field at position i of its wire tuple (messages.ts entryToWire). */
const ENTRY_FIELDS = ["id", "pub", "addr", "role", "name", "incarnation", "epoch", "cert", "sig"] as const;

/**
 * The in-memory form encodeMessage takes: a handshake's member entry is an object there (the
 * codec turns it into the wire tuple). Positions map to fields as they are, valid or not, so that
 * what the wire carries is exactly the generated tuple.
 */
function inMemory(message: Record<string, unknown>): Record<string, unknown> {
  if (!("entry" in message)) return message;
  const wire = message["entry"];
  const entry: Record<string, unknown> = {};
  if (Array.isArray(wire)) ENTRY_FIELDS.forEach((field, i) => { entry[field] = wire[i]; });
  else entry["id"] = wire;
  return { ...message, entry };
}

export class MessageArbitrary {
  readonly #rng: Rng;
  readonly #hints: Hints;

  constructor(rng: Rng, hints: Hints) {
    this.#rng = rng;
    this.#hints = hints;
  }

  /** A message of kind `t` that the schema admits (it may still be nonsense to its subsystem). */
  valid(t: MessageType): Record<string, unknown> {
    return inMemory(this.#wire(t));
  }

  #wire(t: MessageType): Record<string, unknown> {
    return this.#of(MESSAGE_SCHEMAS[t] as TSchema) as Record<string, unknown>;
  }

  /** A message of kind `t` changed in one place so that, most of the time, the schema refuses it. */
  invalid(t: MessageType): Record<string, unknown> {
    const message = this.#wire(t);
    const paths: Array<{ parent: Record<string, unknown> | unknown[]; key: string | number }> = [];
    const walk = (value: unknown): void => {
      if (value instanceof Uint8Array || value === null || typeof value !== "object") return;
      if (Array.isArray(value)) value.forEach((item, i) => { paths.push({ parent: value, key: i }); walk(item); });
      else for (const [key, item] of Object.entries(value)) { if (key !== "t") paths.push({ parent: value as Record<string, unknown>, key }); walk(item); }
    };
    walk(message);
    const target = paths.length === 0 ? undefined : paths[this.#rng.int(paths.length)];
    if (target === undefined) return { ...message, extra: 1 };
    const { parent, key } = target;
    const current = (parent as Record<string | number, unknown>)[key];
    const rng = this.#rng;
    switch (rng.int(5)) {
      case 0:
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete parent[key as string];
        break;
      case 1:
        (parent as Record<string | number, unknown>)[key] = typeof current === "string" ? 7 : typeof current === "number" ? "7" : current instanceof Uint8Array ? [1, 2] : new Uint8Array(3);
        break;
      case 2:
        (parent as Record<string | number, unknown>)[key] = [-1, 2 ** 53, 1.5, Number.MAX_SAFE_INTEGER + 2, -(2 ** 31)][rng.int(5)];
        break;
      case 3:
        (parent as Record<string | number, unknown>)[key] = "x".repeat(300 + rng.int(5000));
        break;
      default:
        (parent as Record<string | number, unknown>)[key] = rng.chance(0.5) ? null : { nested: current ?? 0 };
    }
    return inMemory(message);
  }

  #of(schema: TSchema): unknown {
    const rng = this.#rng;
    switch (schema[Kind] as string) {
      case "Object": {
        const out: Record<string, unknown> = {};
        for (const [key, property] of Object.entries(schema["properties"] as Record<string, TSchema>)) {
          if (property[OptionalKind] === "Optional" && rng.chance(0.5)) continue;
          out[key] = this.#of(property);
        }
        return out;
      }
      case "Tuple":
        return ((schema["items"] as TSchema[] | undefined) ?? []).map((item) => this.#of(item));
      case "Array": {
        const min = (schema["minItems"] as number | undefined) ?? 0;
        const max = Math.max(min, Math.min((schema["maxItems"] as number | undefined) ?? ARRAY_ITEMS_MAX, ARRAY_ITEMS_MAX));
        const length = rng.chance(0.2) ? max : min + rng.int(max - min + 1);
        return Array.from({ length }, () => this.#of(schema["items"] as TSchema));
      }
      case "Union": {
        const options = schema["anyOf"] as TSchema[];
        return this.#of(options[rng.int(options.length)] as TSchema);
      }
      case "Literal":
        return schema["const"];
      case "Null":
        return null;
      case "Boolean":
        return rng.chance(0.5);
      case "Integer":
      case "Number":
        return this.#number(schema);
      case "String":
        return this.#string(schema);
      case "Uint8Array": {
        const min = (schema["minByteLength"] as number | undefined) ?? 0;
        const max = Math.max(min, Math.min((schema["maxByteLength"] as number | undefined) ?? BYTES_MAX, BYTES_MAX));
        const out = new Uint8Array(rng.chance(0.2) ? max : min + rng.int(max - min + 1));
        for (let i = 0; i < out.length; i++) out[i] = rng.int(256);
        return out;
      }
      default:
        throw new Error(`MessageArbitrary: no generator for schema kind ${String(schema[Kind])}`);
    }
  }

  #number(schema: TSchema): number {
    const rng = this.#rng;
    const min = (schema["minimum"] as number | undefined) ?? 0;
    const max = (schema["maximum"] as number | undefined) ?? Number.MAX_SAFE_INTEGER;
    switch (rng.int(5)) {
      case 0: return min;
      case 1: return max;
      case 2: return Math.min(max, min + rng.int(16));
      default: return min + Math.floor(rng.next() * (max - min));
    }
  }

  #string(schema: TSchema): string {
    const rng = this.#rng;
    const pattern = schema["pattern"] as string | undefined;
    const min = (schema["minLength"] as number | undefined) ?? 0;
    const max = Math.max(min, Math.min((schema["maxLength"] as number | undefined) ?? STRING_MAX, STRING_MAX * 4));
    if (pattern === ID_PATTERN) {
      const ids = this.#hints.ids;
      if (ids.length > 0 && rng.chance(0.8)) return ids[rng.int(ids.length)] as string;
      let id = "";
      for (let i = 0; i < 16; i++) id += "0123456789abcdef"[rng.int(16)];
      return id;
    }
    if (pattern !== undefined && pattern.includes(":[0-9]{1,5}")) {
      const addrs = this.#hints.addrs;
      return addrs.length > 0 && rng.chance(0.7) ? addrs[rng.int(addrs.length)] as string : `127.0.0.1:${rng.int(65536)}`;
    }
    const length = rng.chance(0.2) ? max : min + rng.int(Math.max(1, max - min + 1));
    if (pattern === undefined && this.#hints.paths.length > 0 && rng.chance(0.5)) return this.#hints.paths[rng.int(this.#hints.paths.length)] as string;
    const chars = pattern === undefined ? `${NAME_CHARS}/ é\u0000` : pattern.includes("/") ? `${NAME_CHARS}/` : NAME_CHARS;
    let out = "";
    for (let i = 0; i < Math.max(min, length); i++) out += chars[rng.int(chars.length)];
    return out;
  }
}
