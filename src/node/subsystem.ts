// The subsystem contract (DESIGN.md §3, §5). A subsystem is one layer's piece of the node: it owns
// message kinds (and says who may send each), is stepped with those messages and ticked, keeps
// what it must in the store, sends through the kernel's outbox, publishes events on the bus, and
// brings its own shell commands, HTTP routes and metrics. It sees the rest of the node only through
// SubsystemContext (subsystem-context.ts); the kernel owns boot, the receive pipeline, the tick
// loop and the flush order — persist, then send, then apply, then events.
//
// Registering one is a line in registry.ts; a message kind that no registered subsystem owns is a
// compile error there, and a kind owned twice fails the kernel's boot.
import type { Registry } from "prom-client";
import type { MessageOf, MessageType } from "../core/wire/messages.ts";
import type { ApiRoute } from "../adapters/http.ts";
import type { KernelConfig } from "./config.ts";
import type { NodeContext } from "./context.ts";
import type { KernelEvent } from "./events.ts";
import type { StoreWrite } from "./ports.ts";
import type { Command } from "./shell.ts";
import type { KindTable, PersistSection, SubsystemContext } from "./subsystem-context.ts";
import type { NodeView } from "./view.ts";

export type { KindTable, Sender, SubsystemContext } from "./subsystem-context.ts";

/** A running subsystem. Every hook is optional; the kernel calls what is there. */
export interface Subsystem<K extends MessageType = MessageType> {
  /** After every subsystem is built, before any traffic. */
  start?(): void;
  /** One message of a kind it owns, from a sender the kind's rule admits. */
  step?(from: string, message: MessageOf<K>): void;
  tick?(tick: number): void;
  /**
   * The host's event loop was blocked for `ms`; the missed ticks run next, after the sockets were
   * read. Timeouts that judge peers by silence should not count them.
   */
  noteLoopDelay?(ms: number): void;
  /** Carries out work asked for by ctx.requestApply() (Raft's ready). */
  apply?(): void;
  /** Periodic non-durable writes (every persistTicks; `all` at shutdown). */
  persist?(all: boolean): StoreWrite[];
  /** What it keeps in the store, for `persist list|clear`. */
  sections?(): PersistSection[];
  /** Every event published on the bus, after it is published: how the layers hear each other. */
  onEvent?(event: KernelEvent): void;
  stop?(): void;
}

/** How the registry declares a subsystem: its name, its kinds, how to build it, and its face. */
export interface SubsystemSpec<N extends string = string, K extends MessageType = MessageType, S extends Subsystem<K> = Subsystem<K>> {
  readonly name: N;
  readonly kinds: KindTable<K>;
  create(ctx: SubsystemContext, config: KernelConfig): S;
  /** Shell commands; they reach the node through NodeContext. */
  readonly commands?: readonly Command<NodeContext>[];
  /** HTTP routes under /v1/ (the adapter serves them; see src/adapters/http.ts's ApiRoute). */
  routes?(node: NodeView): readonly ApiRoute[];
  /** Prometheus metrics for /metrics. */
  metrics?(node: NodeView, registry: Registry): void;
}

export function defineSubsystem<const N extends string, K extends MessageType, S extends Subsystem<K>>(spec: SubsystemSpec<N, K, S>): SubsystemSpec<N, K, S> {
  return spec;
}
