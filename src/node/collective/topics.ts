// Gossip topics (Collective layer, kdds/replica): the gossip core (src/core/collective/gossip.ts)
// joined to the store and the network. Rows are written to the store in the persist rounds (a cache
// anti-entropy refills); this node's own version is written durably before a write of its leaves
// the node, so a restarted node never reuses a version its peers already hold.
import { Gossip, makeRow, type GossipConfig, type GossipRow } from "../../core/collective/gossip.ts";
import type { Rng } from "../../core/util/rng.ts";
import { packValue, unpackValue } from "../../core/wire/codec.ts";
import type { MessageOf } from "../../core/wire/messages.ts";
import type { StoreWrite } from "../ports.ts";
import { readNumber, writeNumber } from "../store-values.ts";
import type { SubsystemContext, TopicService } from "../subsystem-context.ts";

const PREFIX_ROW = "gossip/row/";
const KEY_WATERMARKS = "gossip/watermarks";
/** This node's own gossip version, written durably before a write of its leaves the node. */
const KEY_SELF = "gossip/self";

export class Topics implements TopicService {
  readonly gossip: Gossip;
  readonly #ctx: SubsystemContext;
  readonly #rowsMax: number;
  /** Rows changed (or forgotten) since the last persist, by row id. */
  readonly #dirty = new Map<string, GossipRow | undefined>();
  /** SWIM's live ids, built at most once per tick and only when a peer is picked. */
  #live: string[] | undefined;
  readonly #peers: { length: number; at(index: number): string | undefined };

  constructor(ctx: SubsystemContext, rng: Rng, config: GossipConfig) {
    this.#ctx = ctx;
    this.#rowsMax = config.rowsMax;
    this.gossip = new Gossip(ctx.id, rng, config);
    this.gossip.restore(...this.#restore());
    const members = ctx.members;
    const live = (): string[] => (this.#live ??= members.liveIds());
    this.#peers = { length: 0, at: (i) => live()[i] };
  }

  /** Writes a row (or deletes it when value is undefined); an error text when refused. */
  publish(topic: string, key: string, value: Uint8Array | undefined): string | undefined {
    const result = value === undefined ? this.gossip.delete(topic, key) : this.gossip.publish(topic, key, value);
    if (!result.ok) return result.error;
    this.#ctx.persist([{ key: KEY_SELF, value: writeNumber(this.gossip.selfVersion) }], true);
    this.#drain();
    return undefined;
  }

  get(topic: string, key: string): Uint8Array | undefined {
    return this.gossip.get(topic, key)?.value;
  }

  step(from: string, message: MessageOf<"gossip">): void {
    this.gossip.step(from, message);
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
    for (const [id, row] of this.#dirty) {
      batch.push({ key: PREFIX_ROW + id, value: row === undefined ? undefined : packValue([row.topic, row.key, row.value ?? null, row.wall, row.logical, row.origin, row.version]) });
    }
    if (this.#dirty.size > 0) batch.push({ key: KEY_WATERMARKS, value: packValue(this.gossip.watermarks()) });
    this.#dirty.clear();
    return batch;
  }

  #drain(): void {
    if (!this.gossip.hasReady()) return;
    const ready = this.gossip.ready();
    for (const row of ready.changed) this.#dirty.set(row.id, row);
    for (const row of ready.forgotten) this.#dirty.set(row.id, undefined);
    for (const out of ready.messages) this.#ctx.send(out.to, out.channel, out.message);
    for (const event of ready.events) this.#ctx.emit(event.type, event);
  }

  #restore(): [GossipRow[], Array<[string, number]>] {
    const { store } = this.#ctx;
    const rows: GossipRow[] = [];
    for (const [, value] of store.scan(PREFIX_ROW, this.#rowsMax)) {
      const v = unpackValue(value);
      if (!Array.isArray(v) || v.length !== 7) continue;
      const [topic, key, data, wall, logical, origin, version] = v as unknown[];
      if (typeof topic !== "string" || typeof key !== "string" || !(data === null || data instanceof Uint8Array)) continue;
      if (typeof wall !== "number" || typeof logical !== "number" || typeof origin !== "string" || typeof version !== "number") continue;
      rows.push(makeRow(topic, key, data === null ? undefined : data.slice(), wall, logical, origin, version));
    }
    const marks = unpackValue(store.get(KEY_WATERMARKS) ?? new Uint8Array(0));
    const watermarks: Array<[string, number]> = Array.isArray(marks)
      ? (marks as unknown[]).filter((m): m is [string, number] => Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "number")
      : [];
    const self = readNumber(store.get(KEY_SELF));
    if (self !== undefined) watermarks.push([this.#ctx.id, self]);
    return [rows, watermarks];
  }
}
