// Vital signs (Body layer): every vital period this node samples itself (uptime, load, memory,
// event-loop delay, from the host; zeros in the simulator) and sends the sample to a few members;
// it keeps the latest sample of each member, and a window of its own history in the store.
import { vitalFromWire, vitalToWire, Vitals, type VitalConfig, type VitalSample, type VitalSigns } from "../../core/body/vital.ts";
import { LIMITS } from "../../core/util/limits.ts";
import { packValue, unpackValue } from "../../core/wire/codec.ts";
import type { MessageOf } from "../../core/wire/messages.ts";
import type { KernelEvent } from "../events.ts";
import type { HostVitals, StoreWrite } from "../ports.ts";
import type { PersistSection, SubsystemContext } from "../subsystem-context.ts";
import { clearEntries, sized } from "./persist.ts";

const KEY_VITALS = "vital/history";
/** Vital samples persisted at most once every this many persist rounds. */
const VITAL_PERSIST_EVERY = 10;

export class VitalSigner {
  readonly vitals: Vitals;
  readonly #ctx: SubsystemContext;
  readonly #host: HostVitals | undefined;
  readonly #startedMs: number;
  #rounds = 0;

  constructor(ctx: SubsystemContext, config: VitalConfig, host: HostVitals | undefined) {
    this.#ctx = ctx;
    this.#host = host;
    this.#startedMs = ctx.clock.nowMs();
    this.vitals = new Vitals(config);
    this.vitals.restore(this.#restore());
    this.vitals.sample(0, this.own());
  }

  get uptimeMs(): number {
    return this.#ctx.clock.nowMs() - this.#startedMs;
  }

  own(): VitalSigns {
    const host = this.#host?.sample() ?? { load1: 0, rssBytes: 0, heapUsedBytes: 0, loopDelayP99Ms: 0 };
    return { ...host, uptimeMs: Math.max(0, this.uptimeMs) };
  }

  step(from: string, message: MessageOf<"vital">): void {
    this.vitals.record(from, this.#ctx.tick(), vitalFromWire(message));
  }

  tick(tick: number): void {
    if (tick % this.vitals.config.periodTicks !== 0) return;
    const signs = this.own();
    this.vitals.sample(tick, signs);
    const message = vitalToWire(signs);
    for (const id of this.vitals.targets(this.#ctx.members.liveIds())) this.#ctx.send(id, "datagram", message);
  }

  onEvent(event: KernelEvent): void {
    if (event.type === "member-dead" || event.type === "member-left") this.vitals.forget(String(event.data.id));
  }

  /** The vitals window, every VITAL_PERSIST_EVERY rounds or when `all`; ticks kept relative. */
  persist(all: boolean): StoreWrite[] {
    if (!all && ++this.#rounds % VITAL_PERSIST_EVERY !== 0) return [];
    const history = this.vitals.history();
    if (history.length === 0) return [];
    const now = this.#ctx.tick();
    const rows = history.map((sample) => {
      const wire = vitalToWire(sample.signs);
      return [sample.tick - now, wire.up, wire.load, wire.rss, wire.heap, wire.lag];
    });
    return [{ key: KEY_VITALS, value: packValue(rows) }];
  }

  sections(): PersistSection[] {
    const value = this.#ctx.store.get(KEY_VITALS);
    const entries: Array<[string, Uint8Array]> = value === undefined ? [] : [[KEY_VITALS, value]];
    return [{
      name: "vitals", ...sized(entries), durable: false,
      clear: () => {
        this.vitals.clear();
        return clearEntries(this.#ctx, entries);
      },
    }];
  }

  /** The vitals window, its ticks made relative to this boot's tick 0 (so they read as past). */
  #restore(): VitalSample[] {
    const value = this.#ctx.store.get(KEY_VITALS);
    if (value === undefined) return [];
    const rows = unpackValue(value);
    if (!Array.isArray(rows)) return [];
    const out: VitalSample[] = [];
    for (const row of rows.slice(-LIMITS.vitalHistoryMax)) {
      if (!Array.isArray(row) || row.length !== 6 || !row.every((x) => typeof x === "number" && Number.isFinite(x))) continue;
      const [age, up, load, rss, heap, lag] = row as number[];
      out.push({ tick: age as number, signs: vitalFromWire({ t: "vital", up: up as number, load: load as number, rss: rss as number, heap: heap as number, lag: lag as number }) });
    }
    return out;
  }
}
