// Gossip topics (Collective layer, kdds/replica): the gossip core (src/core/collective/gossip.ts)
// joined to the store and the network. Peers' rows are written to the store in the persist rounds
// (a cache anti-entropy refills). This node's own rows (a local write, or its rows written again
// above its floor) go into the kernel's durable batch with its own version: both are fsynced at the
// end of the kernel's turn, before they leave the node and before publish()'s caller (an HTTP PUT)
// answers, so an acknowledged write survives a crash and a restarted node never reuses a version
// its peers already hold. A store without an own version (new, or wiped) gives the core its floor,
// selfVersionFloor(boot epoch): the node never takes its own origin back from peers.
//
// Rows carry their writer's key and signature (ctx.records signs this node's and checks others';
// docs/protocols/gossip.md). In the store a row is
//   gossip/row/<topic>\0<key> = [topic, key, value | null, wall, logical, origin, version, pub, sig]
// A row of the older 7-field form (no pub, sig: written before rows were signed) is still read: the
// core signs this node's own again (written back with the next drain) and drops another origin's,
// with that origin's other rows and watermark, so anti-entropy fetches them again signed
// (stats.unsignedDropped; a writer gone for good loses those rows).
import { Gossip, makeRow, selfVersionFloor, type GossipConfig, type GossipRow } from "../../core/collective/gossip.ts";
import { bytesEqual } from "../../core/util/bytes.ts";
import type { Rng } from "../../core/util/rng.ts";
import { packValue, unpackValue } from "../../core/wire/codec.ts";
import type { MessageOf } from "../../core/wire/messages.ts";
import type { StoreWrite } from "../ports.ts";
import { readNumber, writeNumber } from "../store-values.ts";
import type { SubsystemContext, TopicService } from "../subsystem-context.ts";

const ORIGIN_PATTERN = /^[0-9a-f]{16}$/;

/**
 * A second table of the same kind (the Self layer's memories) runs under its own message kind and
 * store prefix: `kind` is the `t` its messages travel as (the wire schema is the same), `prefix`
 * its store keys' (`PREFIX/row/…`, `PREFIX/watermarks`, `PREFIX/self`), and `onRows` hears every
 * row changed or forgotten here, after it is written (an index kept beside the table).
 */
export interface TableOptions {
  readonly kind?: "gossip" | "memory";
  readonly prefix?: string;
  onRows?(changed: readonly GossipRow[], forgotten: readonly GossipRow[]): void;
  /** The table's own rule on rows (see Gossip's constructor); default: every row. */
  readonly admit?: (row: GossipRow) => boolean;
}

export class Topics implements TopicService {
  readonly gossip: Gossip;
  readonly #ctx: SubsystemContext;
  readonly #rowsMax: number;
  readonly #kind: "gossip" | "memory";
  readonly #prefixRow: string;
  readonly #keyWatermarks: string;
  /** This node's own version, written durably before a write of its leaves the node. */
  readonly #keySelf: string;
  readonly #onRows: TableOptions["onRows"];
  /** Rows changed (or forgotten) since the last persist, by row id. */
  readonly #dirty = new Map<string, GossipRow | undefined>();
  /** SWIM's live ids, built at most once per tick and only when a peer is picked. */
  #live: string[] | undefined;
  readonly #peers: { length: number; at(index: number): string | undefined };

  constructor(ctx: SubsystemContext, rng: Rng, config: GossipConfig, options: TableOptions = {}) {
    this.#ctx = ctx;
    this.#rowsMax = config.rowsMax;
    this.#kind = options.kind ?? "gossip";
    const prefix = options.prefix ?? "gossip";
    this.#prefixRow = `${prefix}/row/`;
    this.#keyWatermarks = `${prefix}/watermarks`;
    this.#keySelf = `${prefix}/self`;
    this.#onRows = options.onRows;
    // What no signature covers (a range's gaps, horizons, that this node lost its store) is taken
    // only from core members: a contributor relays signed rows and nothing more.
    this.gossip = new Gossip(ctx.id, ctx.records, rng, config, {
      trusted: (id) => ctx.members.roleOf(id) === "core",
      ...(options.admit === undefined ? {} : { admit: options.admit }),
    });
    const [rows, watermarks, self] = this.#restore();
    // Without a stored own version (a new or wiped store), the core gets its floor (see the header).
    this.gossip.restore(rows, watermarks, self === undefined ? selfVersionFloor(ctx.epoch) : undefined);
    const members = ctx.members;
    const live = (): string[] => (this.#live ??= members.liveIds());
    this.#peers = { length: 0, at: (i) => live()[i] };
  }

  /**
   * Writes a row (or deletes it when value is undefined); an error text when refused. The row and
   * this node's version join the kernel's durable batch (#drain), fsynced when the current turn
   * ends: before kernel.topicPublish returns, and before anything queued after it is sent.
   */
  publish(topic: string, key: string, value: Uint8Array | undefined): string | undefined {
    const result = value === undefined ? this.gossip.delete(topic, key) : this.gossip.publish(topic, key, value);
    if (!result.ok) return result.error;
    this.#drain();
    return undefined;
  }

  /** Starts an exchange with a member at once (a new row reaches it in a round trip). */
  syncWith(id: string): void {
    this.gossip.syncWith(id);
    this.#drain();
  }

  get(topic: string, key: string): Uint8Array | undefined {
    return this.gossip.get(topic, key)?.value;
  }

  topics(): Array<{ topic: string; keys: number }> {
    return this.gossip.topics();
  }

  entries(topic: string): Array<{ key: string; value: Uint8Array; origin: string }> {
    return this.gossip.entries(topic).flatMap((r) => (r.value === undefined ? [] : [{ key: r.key, value: r.value, origin: r.origin }]));
  }

  subscribe(topic: string): { take(max: number): Array<{ topic: string; key: string; value: Uint8Array | undefined; origin: string }>; close(): void } | undefined {
    const subscription = this.gossip.subscribe(topic);
    if (subscription === undefined) return undefined;
    return {
      take: (max) => subscription.take(max).map((c) => ({ topic: c.topic, key: c.key, value: c.value, origin: c.origin })),
      close: () => subscription.close(),
    };
  }

  step(from: string, message: MessageOf<"gossip" | "memory">): void {
    this.gossip.step(from, message.t === "gossip" ? message : { ...message, t: "gossip" });
    this.#drain();
  }

  tick(): void {
    this.#live = undefined;
    this.#peers.length = this.#ctx.members.size - 1;
    this.gossip.tick(Math.floor(this.#ctx.clock.nowMs()), this.#peers);
    this.#drain();
  }

  persist(): StoreWrite[] {
    const batch: StoreWrite[] = [];
    for (const [id, row] of this.#dirty) batch.push(row === undefined ? { key: this.#prefixRow + id, value: undefined } : this.#rowWrite(row));
    if (this.#dirty.size > 0) batch.push({ key: this.#keyWatermarks, value: packValue(this.gossip.watermarks()) });
    this.#dirty.clear();
    return batch;
  }

  #drain(): void {
    if (!this.gossip.hasReady()) return;
    const ready = this.gossip.ready();
    const own: StoreWrite[] = [];
    for (const row of ready.changed) {
      if (row.origin === this.#ctx.id) {
        own.push(this.#rowWrite(row));
        this.#dirty.delete(row.id);
      } else this.#dirty.set(row.id, row);
    }
    for (const row of ready.forgotten) this.#dirty.set(row.id, undefined);
    // This node's rows with its version, durably, before the messages below can carry them.
    if (own.length > 0) this.#ctx.persist([...own, { key: this.#keySelf, value: writeNumber(this.gossip.selfVersion) }], true);
    if (this.#onRows !== undefined && (ready.changed.length > 0 || ready.forgotten.length > 0)) this.#onRows(ready.changed, ready.forgotten);
    const kind = this.#kind;
    for (const out of ready.messages) this.#ctx.send(out.to, out.channel, kind === "gossip" ? out.message : { ...out.message, t: kind });
    for (const event of ready.events) this.#ctx.emit(kind === "gossip" ? event.type : event.type.replace("gossip", kind), event);
  }

  /** Rows, watermarks and this node's own version (undefined: the store has none). */
  #restore(): [GossipRow[], Array<[string, number]>, number | undefined] {
    const { store } = this.#ctx;
    const rows: GossipRow[] = [];
    /** One copy of each writer's key, shared by its rows. */
    const keys = new Map<string, Uint8Array>();
    for (const [, value] of store.scan(this.#prefixRow, this.#rowsMax)) {
      const v = unpackValue(value);
      // 9 fields; 7 (no key, no signature) from before rows were signed: the core re-signs or drops those.
      if (!Array.isArray(v) || (v.length !== 9 && v.length !== 7)) continue;
      const [topic, key, data, wall, logical, origin, version, pub, sig] = v as unknown[];
      if (typeof topic !== "string" || typeof key !== "string" || !(data === null || data instanceof Uint8Array)) continue;
      if (typeof wall !== "number" || typeof logical !== "number" || typeof origin !== "string" || !ORIGIN_PATTERN.test(origin) || typeof version !== "number") continue;
      if (!(pub instanceof Uint8Array && sig instanceof Uint8Array)) {
        rows.push(makeRow(topic, key, data === null ? undefined : data.slice(), wall, logical, origin, version));
        continue;
      }
      let shared = keys.get(origin);
      if (shared === undefined || !bytesEqual(shared, pub)) keys.set(origin, (shared = pub.slice()));
      rows.push(makeRow(topic, key, data === null ? undefined : data.slice(), wall, logical, origin, version, shared, sig.slice()));
    }
    const marks = unpackValue(store.get(this.#keyWatermarks) ?? new Uint8Array(0));
    const watermarks: Array<[string, number]> = Array.isArray(marks)
      ? (marks as unknown[]).filter((m): m is [string, number] => Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "number")
      : [];
    const self = readNumber(store.get(this.#keySelf));
    if (self !== undefined) watermarks.push([this.#ctx.id, self]);
    return [rows, watermarks, self];
  }

  #rowWrite(row: GossipRow): StoreWrite {
    return { key: this.#prefixRow + row.id, value: packValue([row.topic, row.key, row.value ?? null, row.wall, row.logical, row.origin, row.version, row.pub, row.sig]) };
  }
}
