// A memory as it travels and is stored (docs/protocols/memory.md): the value of one row of the
// memory table, a gossip table of its own (src/node/self/memory.ts). The key is `ORIGIN/LOCAL`:
// the node that wrote it and a name unique on that node (its boot epoch and a counter, both base
// 36), so two memories never share a key and a memory is never overwritten by another. A memory
// changes only by redaction: its text is replaced by nothing, by its origin or by a core member,
// and the redaction wins everywhere (a later stamp). Superseding is a new memory naming the old
// ones: the old stay, hidden from recall, never silently lost.
//
// Value: MessagePack [1, kind, text, speaker, atMs, conv | null, supersedes[], by | null].
import { LIMITS } from "../util/limits.ts";
import { packValue, unpackValue } from "../wire/codec.ts";

export const MEMORY_FORMAT = 1;
export const MEMORY_TOPIC = "mem";

/** What a memory is: a user's turn, a mind's answer, a note (`remember`), a summary or merge by the DMN, or redacted. */
export type MemoryKind = "user" | "mind" | "note" | "summary" | "redacted";
const KINDS: ReadonlySet<string> = new Set<MemoryKind>(["user", "mind", "note", "summary", "redacted"]);

export const MEMORY_LIMITS = LIMITS.self.memory;

export interface MemoryRecord {
  readonly kind: MemoryKind;
  readonly text: string;
  /** Who said it: a user's name, or the mind that answered. */
  readonly speaker: string;
  /** When it was said (wall clock ms at the node that wrote it). */
  readonly atMs: number;
  /** The conversation it belongs to. */
  readonly conv: string | undefined;
  /** Memory ids this one replaces (hidden from recall, kept). */
  readonly supersedes: readonly string[];
  /** For a mind's answer, the mind; for a redaction, the node that redacted it. */
  readonly by: string | undefined;
}

/** A memory as the node holds it. */
export interface Memory extends MemoryRecord {
  readonly id: string;
  /** The node that wrote the memory (its key's origin). */
  readonly origin: string;
  /** Ids of memories that supersede this one (it is hidden from recall, kept). */
  readonly supersededBy: readonly string[];
}

export interface RememberInput {
  readonly text: string;
  readonly speaker: string;
  readonly kind?: Exclude<MemoryKind, "redacted">;
  readonly conv?: string | undefined;
  readonly supersedes?: readonly string[];
  readonly by?: string | undefined;
}

export interface MemoryHit {
  readonly memory: Memory;
  readonly score: number;
  readonly bm25: number | undefined;
  readonly vector: number | undefined;
}

const KEY_PATTERN = /^([0-9a-f]{16})\/([0-9a-z.]{1,40})$/;
const NAME_PATTERN = /^[\p{L}\p{N} ._@:/-]{1,64}$/u;
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** The origin a memory key names, or undefined when the key is not a memory key. */
export function memoryOrigin(key: string): string | undefined {
  return KEY_PATTERN.exec(key)?.[1];
}

export function isMemoryKey(key: string): boolean {
  return KEY_PATTERN.test(key);
}

/** A problem with a name (speaker, conversation), or undefined. */
export function checkName(what: string, name: string): string | undefined {
  if (!NAME_PATTERN.test(name)) return `${what} must be 1–64 letters, digits, spaces or . _ @ : / -`;
  return undefined;
}

/** Cuts text to the byte bound at a character boundary, marked, so a long answer is kept, not refused. */
export function boundText(text: string): string {
  const bytes = utf8.encode(text);
  if (bytes.length <= MEMORY_LIMITS.textBytesMax) return text;
  const mark = " […]";
  // Decoding a byte prefix ends in U+FFFD where it cut a character: that one goes.
  let cut = utf8Decoder.decode(bytes.subarray(0, MEMORY_LIMITS.textBytesMax - utf8.encode(mark).length));
  if (cut.endsWith("\uFFFD")) cut = cut.slice(0, -1);
  return cut + mark;
}

export function encodeMemory(record: MemoryRecord): Uint8Array {
  return packValue([MEMORY_FORMAT, record.kind, record.text, record.speaker, record.atMs, record.conv ?? null, [...record.supersedes], record.by ?? null]);
}

/** The record, or undefined for anything malformed (a peer's bytes: never throws). */
export function decodeMemory(bytes: Uint8Array | undefined): MemoryRecord | undefined {
  if (bytes === undefined || bytes.length > MEMORY_LIMITS.valueBytesMax) return undefined;
  let v: unknown;
  try {
    v = unpackValue(bytes);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 8 || v[0] !== MEMORY_FORMAT) return undefined;
  const [, kind, text, speaker, atMs, conv, supersedes, by] = v as unknown[];
  if (typeof kind !== "string" || !KINDS.has(kind)) return undefined;
  if (typeof text !== "string" || utf8.encode(text).length > MEMORY_LIMITS.textBytesMax) return undefined;
  if (kind === "redacted" ? text !== "" : text.length === 0) return undefined;
  if (typeof speaker !== "string" || checkName("speaker", speaker) !== undefined) return undefined;
  if (typeof atMs !== "number" || !Number.isSafeInteger(atMs) || atMs < 0) return undefined;
  if (conv !== null && (typeof conv !== "string" || checkName("conversation", conv) !== undefined)) return undefined;
  if (!Array.isArray(supersedes) || supersedes.length > MEMORY_LIMITS.supersedesMax || !supersedes.every((s) => typeof s === "string" && isMemoryKey(s))) return undefined;
  if (by !== null && (typeof by !== "string" || by.length === 0 || by.length > MEMORY_LIMITS.nameCharsMax)) return undefined;
  return { kind: kind as MemoryKind, text, speaker, atMs, conv: conv ?? undefined, supersedes: supersedes as string[], by: by ?? undefined };
}

/**
 * The memory table's rule on a row (gossip's `admit`), the same on every node: a memory in the
 * memory topic under a memory key; written by the node the key names, or a redaction written by a
 * core member. No deletes (a tombstone would be collected, and the memory could come back).
 */
export function admitMemory(row: { readonly topic: string; readonly key: string; readonly value: Uint8Array | undefined; readonly origin: string }, isCore: (id: string) => boolean): boolean {
  if (row.topic !== MEMORY_TOPIC) return false;
  const origin = memoryOrigin(row.key);
  if (origin === undefined) return false;
  const record = decodeMemory(row.value);
  if (record === undefined) return false;
  if (origin === row.origin) return true;
  return record.kind === "redacted" && isCore(row.origin);
}

/** The redaction of a record: no text, who redacted it; the rest kept so the memory's place stays. */
export function redaction(record: MemoryRecord, by: string): MemoryRecord {
  return { kind: "redacted", text: "", speaker: record.speaker, atMs: record.atMs, conv: record.conv, supersedes: [], by };
}
