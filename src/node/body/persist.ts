// Persist (Body layer): every persistTicks one non-durable batch of what the subsystems keep as
// caches or history (members, gossip rows, the vitals window) — losing the last second of those in
// a crash costs nothing — and, at shutdown, everything. Durable state (incarnation, guarded tasks,
// Raft, the shared folder's records) is written by its owner before it is acted on. `persist
// list|clear` read the sections every subsystem declares.
import type { StoreWrite } from "../ports.ts";
import type { PersistSection, SubsystemContext } from "../subsystem-context.ts";

export class Persist {
  readonly #ctx: SubsystemContext;
  readonly #everyTicks: number;

  constructor(ctx: SubsystemContext, everyTicks: number) {
    this.#ctx = ctx;
    this.#everyTicks = everyTicks;
  }

  tick(tick: number): void {
    if (tick % this.#everyTicks === 0) this.round(false);
  }

  stop(): void {
    this.round(true);
  }

  /** One batch of every subsystem's periodic writes. */
  round(all: boolean): void {
    const batch: StoreWrite[] = [];
    for (const part of this.#ctx.kept()) if (part !== this && part.persist !== undefined) batch.push(...part.persist(all));
    if (batch.length > 0) this.#ctx.persist(batch, false);
  }

  sections(): PersistSection[] {
    return this.#ctx.kept().flatMap((part) => (part === this || part.sections === undefined ? [] : part.sections()));
  }

  /** Forgets one section; the number of keys removed, or an error text. */
  clear(name: string): number | string {
    const section = this.sections().find((s) => s.name === name);
    if (section === undefined) return `no section ${JSON.stringify(name)}`;
    if (section.clear === undefined) return `${name} cannot be cleared: it only ever rises, or peers would take this node's news for replays`;
    const keys = section.clear();
    this.#ctx.emit("persist-cleared", { section: name, keys });
    return keys;
  }
}

/** A section's size: keys, and bytes of keys and values. */
export function sized(entries: ReadonlyArray<readonly [string, Uint8Array]>): { keys: number; bytes: number } {
  return { keys: entries.length, bytes: entries.reduce((sum, [key, value]) => sum + key.length + value.length, 0) };
}

/** Deletes a section's entries from the store, durably; the number of keys removed. */
export function clearEntries(ctx: SubsystemContext, entries: ReadonlyArray<readonly [string, Uint8Array]>): number {
  if (entries.length > 0) ctx.persist(entries.map(([key]) => ({ key, value: undefined })), true);
  return entries.length;
}
