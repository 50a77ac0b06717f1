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
  readonly #ring: KernelEvent[] = [];
  readonly #subscribers = new Set<Subscriber>();
  #seq = 0;

  publish(tick: number, type: string, data: Readonly<Record<string, unknown>> = {}): void {
    const event: KernelEvent = { seq: ++this.#seq, tick, type, data };
    this.#ring.push(event);
    if (this.#ring.length > LIMITS.eventRingMax) this.#ring.shift();
    for (const subscriber of this.#subscribers) {
      try {
        subscriber(event);
      } catch {
        this.#subscribers.delete(subscriber);
      }
    }
  }

  subscribe(subscriber: Subscriber): () => void {
    this.#subscribers.add(subscriber);
    return () => this.#subscribers.delete(subscriber);
  }

  /** Events with seq greater than `after`, oldest first. */
  since(after = 0): KernelEvent[] {
    return this.#ring.filter((event) => event.seq > after);
  }
}
