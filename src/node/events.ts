// The node's event bus: subsystems publish what happened; the shell, the API's live stream and
// (later) other layers subscribe. Synchronous, and bounded: the last LIMITS.eventRingMax events are
// kept for late readers, subscribers are called in order and a throwing subscriber is removed.
import { LIMITS } from "../core/util/limits.ts";

export interface KernelEvent {
  readonly seq: number;
  readonly tick: number;
  readonly type: string;
  readonly data: Readonly<Record<string, unknown>>;
}

export type Subscriber = (event: KernelEvent) => void;

export class EventBus {
  /** Circular buffer of the newest events; #seq - #ring.length + 1 is the oldest kept seq. */
  readonly #ring: KernelEvent[] = [];
  readonly #subscribers = new Set<Subscriber>();
  #seq = 0;

  publish(tick: number, type: string, data: Readonly<Record<string, unknown>> = {}): KernelEvent {
    const event: KernelEvent = { seq: ++this.#seq, tick, type, data };
    if (this.#ring.length < LIMITS.eventRingMax) this.#ring.push(event);
    else this.#ring[(event.seq - 1) % LIMITS.eventRingMax] = event;
    for (const subscriber of this.#subscribers) {
      try {
        subscriber(event);
      } catch {
        this.#subscribers.delete(subscriber);
      }
    }
    return event;
  }

  subscribe(subscriber: Subscriber): () => void {
    this.#subscribers.add(subscriber);
    return () => this.#subscribers.delete(subscriber);
  }

  /** Events with seq greater than `after`, oldest first. */
  since(after = 0): KernelEvent[] {
    const out: KernelEvent[] = [];
    const count = this.#ring.length;
    for (let seq = Math.max(after + 1, this.#seq - count + 1); seq <= this.#seq; seq++) {
      const event = this.#ring[(seq - 1) % LIMITS.eventRingMax];
      if (event !== undefined) out.push(event);
    }
    return out;
  }
}
