// The RTT pinger (Body layer): every pingTicks a ping to one random live member; the ack's echo of
// the send time gives a round-trip sample, smoothed per member for `net`. Pings are answered for
// any key holder (a ping costs one datagram back and changes no state).
import { LIMITS } from "../../core/util/limits.ts";
import type { MessageOf } from "../../core/wire/messages.ts";
import type { KernelEvent } from "../events.ts";
import type { SubsystemContext } from "../subsystem-context.ts";

export interface PeerRtt {
  /** Smoothed round-trip time in milliseconds (EWMA, α = 1/8 as in TCP's SRTT). */
  srttMs: number;
  samples: number;
}

/** A sample above this is a stale ack, not a round trip. */
const RTT_SAMPLE_MAX_MS = LIMITS.node.rttSampleMsMax;

export class Pinger {
  readonly rtt = new Map<string, PeerRtt>();
  readonly #ctx: SubsystemContext;
  readonly #everyTicks: number;
  #seq = 0;

  constructor(ctx: SubsystemContext, everyTicks: number) {
    this.#ctx = ctx;
    this.#everyTicks = everyTicks;
  }

  step(from: string, message: MessageOf<"ping" | "ack">): void {
    if (message.t === "ping") return this.#ctx.send(from, "datagram", { t: "ack", seq: message.seq, sent: message.sent });
    const rttMs = (this.#ctx.clock.nowMs() * 1000 - message.sent) / 1000;
    if (!(rttMs >= 0) || rttMs > RTT_SAMPLE_MAX_MS) return;
    const known = this.rtt.get(from);
    if (known === undefined) {
      // Bounded by the member table: samples are only kept for members (dead ones are forgotten).
      if (this.#ctx.members.stateOf(from) !== undefined) this.rtt.set(from, { srttMs: rttMs, samples: 1 });
      return;
    }
    known.srttMs += (rttMs - known.srttMs) / 8;
    known.samples++;
  }

  tick(tick: number): void {
    if (tick % this.#everyTicks !== 0) return;
    const live = this.#ctx.members.liveIds();
    if (live.length === 0) return;
    const id = live[this.#ctx.rng.int(live.length)] as string;
    this.#seq = (this.#seq + 1) >>> 0;
    this.#ctx.send(id, "datagram", { t: "ping", seq: this.#seq, sent: Math.max(0, Math.round(this.#ctx.clock.nowMs() * 1000)) });
  }

  onEvent(event: KernelEvent): void {
    if (event.type === "member-dead" || event.type === "member-left") this.rtt.delete(String(event.data.id));
  }
}
