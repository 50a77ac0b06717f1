// What a sans-IO core has for its driver (DESIGN.md §2 rule 1): the messages to send and the events
// that happened since the last ready(), plus any lists of its own (records to persist, rows to
// delete). A core keeps one Outbox, fills it from step() and tick(), and its ready() and hasReady()
// are take() and hasReady() here. The node drains every core each tick, so a list holds at most one
// tick's output; what bounds that output is each core's own input bounds (LIMITS).
import { assert } from "./assert.ts";

/** A core's own lists, by field name and element type: `{ changed: GossipRow }`. */
export type OutboxLists = Readonly<Record<string, unknown>>;

/** No lists besides messages and events. */
export type NoLists = Record<never, never>;

/** One drain of an Outbox: every list, each handed over whole. */
export type Ready<M, E, X extends OutboxLists = NoLists> = {
  readonly messages: readonly M[];
  readonly events: readonly E[];
} & { readonly [K in keyof X]: readonly X[K][] };

type Lists<X extends OutboxLists> = { [K in keyof X]: X[K][] };

export class Outbox<M, E, X extends OutboxLists = NoLists> {
  #messages: M[] = [];
  #events: E[] = [];
  #lists: Lists<X>;
  readonly #names: readonly (keyof X)[];

  /** `lists` names the core's own lists, each empty: `new Outbox<M, E, { changed: Row }>({ changed: [] })`. */
  constructor(lists: Lists<X> = {} as Lists<X>) {
    this.#names = Object.keys(lists) as (keyof X)[];
    this.#lists = lists;
    for (const name of this.#names) assert(this.#lists[name].length === 0, `Outbox: list ${String(name)} must start empty`);
  }

  /** A message to send. */
  send(message: M): void {
    this.#messages.push(message);
  }

  /** An event that happened. */
  emit(event: E): void {
    this.#events.push(event);
  }

  /** An item of one of the core's own lists. */
  add<K extends keyof X>(list: K, item: X[K]): void {
    this.#lists[list].push(item);
  }

  /** Empties one of the core's own lists (what a restore loaded is not to be persisted again). */
  clear(list: keyof X): void {
    this.#lists[list] = [];
  }

  hasReady(): boolean {
    if (this.#messages.length > 0 || this.#events.length > 0) return true;
    for (const name of this.#names) if (this.#lists[name].length > 0) return true;
    return false;
  }

  /** Everything gathered since the last take(); the Outbox starts again empty. */
  take(): Ready<M, E, X> {
    const ready = { ...this.#lists, messages: this.#messages, events: this.#events } as Ready<M, E, X>;
    this.#messages = [];
    this.#events = [];
    const fresh = {} as Lists<X>;
    for (const name of this.#names) fresh[name] = [];
    this.#lists = fresh;
    return ready;
  }
}
