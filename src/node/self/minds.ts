// The minds subsystem (issue 14; docs/protocols/minds.md): the models this node can ask. Its own
// minds are the clients the process built (src/adapters/minds.ts: a local model given with --mind,
// frontier models whose keys are in its environment); a member's local mind is advertised in the
// gossip topic `self.minds` (name, provider, model: never a key or a URL) and asked over the stream
// channel (`mind-ask` … `mind-done`). Frontier minds are not advertised: a key spends its owner's
// money and stays with its node. The router (src/core/self/minds.ts) orders the candidates by the
// cluster's mode, the request's preference and what it measured.
import { packValue, unpackValue } from "../../core/wire/codec.ts";
import { MindRouter, type ChatMessage, type MindAsk, type MindInfo, type MindOutcome, type MindReply, type MindRequest, type MindStats, type Provider } from "../../core/self/minds.ts";

export type { MindAsk } from "../../core/self/minds.ts";
import { MIND_ERROR_KINDS, MIND_WIRE_LIMITS, fromWireTemperature, wireTemperature, type MindErrorKind } from "../../core/self/mind-wire.ts";
import type { Registry } from "prom-client";
import type { MessageOf } from "../../core/wire/messages.ts";
import type { MindPort } from "../ports.ts";
import type { MindsService, SubsystemContext } from "../subsystem-context.ts";

export const MINDS_TOPIC = "self.minds";

export interface MindsConfig {
  /** A call to a member's mind fails after this long without its end (ms). */
  readonly callTimeoutMs: number;
  /** …or this long without a first piece or its end (ms). */
  readonly firstPieceTimeoutMs: number;
  /** Calls this node serves for members at once, and per member. */
  readonly serveMax: number;
  readonly servePerPeerMax: number;
  /** Calls of this node's own in flight to members. */
  readonly callsMax: number;
}

export const MINDS_DEFAULTS: MindsConfig = {
  callTimeoutMs: 180_000,
  firstPieceTimeoutMs: 60_000,
  serveMax: 16,
  servePerPeerMax: 4,
  callsMax: 64,
};

/** A mind as `mind list` shows it. */
export interface MindView {
  readonly info: MindInfo;
  /** Served by this node (a client here), or by a member (asked over the network). */
  readonly here: boolean;
  readonly stats: MindStats | undefined;
}

/** Why no mind answered, for chat's "from memory alone" answer. */
export class NoMindError extends Error {
  override name = "NoMindError";
  readonly attempts: ReadonlyArray<{ readonly mind: string; readonly kind: string; readonly detail: string }>;
  constructor(message: string, attempts: NoMindError["attempts"]) {
    super(message);
    this.attempts = attempts;
  }
}

/** An error from one mind, with its kind (the client's, or the wire's). */
export class MindCallError extends Error {
  override name = "MindCallError";
  readonly kind: MindErrorKind;
  /** True once a piece of the answer was streamed: the call cannot move to another mind. */
  readonly streamed: boolean;
  constructor(kind: MindErrorKind, message: string, streamed: boolean) {
    super(message);
    this.kind = kind;
    this.streamed = streamed;
  }
}

interface Call {
  readonly node: string;
  readonly info: MindInfo;
  readonly startMs: number;
  firstPieceMs: number | undefined;
  pieces: number;
  readonly onDelta: ((text: string) => void) | undefined;
  readonly resolve: (reply: MindReply) => void;
  readonly reject: (error: MindCallError) => void;
}

interface Served {
  readonly from: string;
  readonly abort: AbortController;
}

const PROVIDERS: ReadonlySet<string> = new Set<Provider>(["openai", "anthropic", "gemini"]);

export class MindsPart implements MindsService {
  readonly router = new MindRouter();
  readonly counters = { served: 0, serveRefused: 0, callsSent: 0, callsTimedOut: 0, badMessages: 0 };
  readonly #ctx: SubsystemContext;
  readonly #config: MindsConfig;
  readonly #own: ReadonlyMap<string, MindPort>;
  readonly #calls = new Map<number, Call>();
  /** Calls served for members, by `from/c`. */
  readonly #served = new Map<string, Served>();
  #nextCall = 1;
  /** The mind `mind use` chose for this node (a name), if any. */
  #chosen: string | undefined;

  constructor(ctx: SubsystemContext, config: MindsConfig, own: readonly MindPort[]) {
    this.#ctx = ctx;
    this.#config = config;
    const byName = new Map<string, MindPort>();
    for (const client of own) if (!byName.has(client.info.name)) byName.set(client.info.name, client);
    this.#own = byName;
  }

  start(): void {
    this.#advertise();
  }

  /** The clients' own metrics (requests, tokens, cost, retries: src/adapters/mind-counters.ts), when the process gives them. */
  metrics(registry: Registry): void {
    this.#ctx.self?.metrics?.(registry);
  }

  stop(): void {
    for (const served of this.#served.values()) served.abort.abort();
    for (const call of this.#calls.values()) call.reject(new MindCallError("cancelled", "the node is stopping", call.pieces > 0));
    this.#calls.clear();
    for (const client of this.#own.values()) client.close?.();
  }

  get chosen(): string | undefined {
    return this.#chosen;
  }

  /** `mind use NAME` (undefined: the router's choice again); an error text for an unknown mind. */
  use(name: string | undefined): string | undefined {
    if (name !== undefined && !this.list().some((m) => m.info.name === name)) return `no mind ${JSON.stringify(name.slice(0, 64))} (mind list shows them)`;
    this.#chosen = name;
    return undefined;
  }

  /** This node's minds and those live members advertise. */
  list(): MindView[] {
    const views: MindView[] = [...this.#own.values()].map((c) => ({ info: c.info, here: true, stats: this.router.statsOf(c.info) }));
    // Two members may serve a model of the same name: each is a mind of its own (node and name).
    const seen = new Set(views.map((v) => `${v.info.node}/${v.info.name}`));
    for (const info of this.#advertised()) {
      const key = `${info.node}/${info.name}`;
      if (seen.has(key)) continue;
      seen.add(key);
      views.push({ info, here: false, stats: this.router.statsOf(info) });
    }
    return views;
  }

  /** A client of this node's that embeds (the mind's embedding endpoint), if any. */
  embedder(): MindPort | undefined {
    for (const client of this.#own.values()) if (client.info.embeds && client.embed !== undefined) return client;
    return undefined;
  }

  /**
   * Asks the best mind for the request, then the next while one fails before streaming anything.
   * Throws NoMindError when none answered (chat then answers from memory alone).
   */
  async ask(ask: MindAsk): Promise<MindReply> {
    const all = this.list().map((v) => v.info);
    const wanted = ask.mind ?? this.#chosen;
    let candidates: MindInfo[];
    if (wanted !== undefined && wanted !== "auto") {
      // Every mind of that name (members may serve the same model), the router's order among them.
      const named = all.filter((m) => m.name === wanted);
      if (named.length === 0) throw new NoMindError(`no mind ${JSON.stringify(wanted.slice(0, 64))} is reachable`, []);
      candidates = this.router.pick(named, this.#ctx.mode(), { mind: wanted }, this.#ctx.clock.nowMs());
    } else candidates = this.router.pick(all, this.#ctx.mode(), { ...(ask.prefer === undefined ? {} : { prefer: ask.prefer }) }, this.#ctx.clock.nowMs());
    if (candidates.length === 0) {
      throw new NoMindError(all.length === 0 ? "no mind is configured on this node or advertised by a live member"
        : `every mind is backing off after failures (${all.map((m) => m.name).join(", ")}; mind list shows when each is tried again)`, []);
    }
    const attempts: Array<{ mind: string; kind: string; detail: string }> = [];
    for (const info of candidates) {
      if (ask.signal?.aborted === true) throw new MindCallError("cancelled", "cancelled", false);
      const started = this.#ctx.clock.nowMs();
      let streamed = false;
      const onDelta = (text: string): void => {
        streamed = true;
        ask.onDelta?.(text);
      };
      try {
        const reply = await this.#askOne(info, ask.request, onDelta, ask.signal);
        this.router.observe(info, "ok", this.#ctx.clock.nowMs() - started, this.#ctx.clock.nowMs());
        return reply;
      } catch (error) {
        const kind = error instanceof MindCallError ? error.kind : ((error as { kind?: string }).kind ?? "server");
        const detail = error instanceof Error ? error.message : String(error);
        const retryAfterMs = (error as { retryAfterMs?: number }).retryAfterMs ?? 0;
        if (kind !== "cancelled") this.router.observe(info, routerOutcome(kind), this.#ctx.clock.nowMs() - started, this.#ctx.clock.nowMs(), retryAfterMs);
        attempts.push({ mind: info.name, kind, detail: detail.slice(0, 200) });
        if (kind === "cancelled" || streamed) throw error instanceof MindCallError ? error : new MindCallError(kind as MindErrorKind, detail, streamed);
      }
    }
    throw new NoMindError(`no mind answered: ${attempts.map((a) => `${a.mind} (${a.kind})`).join(", ")}`, attempts);
  }

  #askOne(info: MindInfo, request: MindRequest, onDelta: (text: string) => void, signal: AbortSignal | undefined): Promise<MindReply> {
    const own = this.#own.get(info.name);
    if (own !== undefined) return own.chat(request, { onDelta, ...(signal === undefined ? {} : { signal }) });
    return this.#call(info, request, onDelta, signal);
  }

  /** Asks a member's mind over the stream channel. */
  #call(info: MindInfo, request: MindRequest, onDelta: (text: string) => void, signal: AbortSignal | undefined): Promise<MindReply> {
    if (this.#calls.size >= this.#config.callsMax) return Promise.reject(new MindCallError("busy", "too many calls to members' minds in flight", false));
    const c = this.#nextCall;
    this.#nextCall = this.#nextCall >= 0xffff_ffff ? 1 : this.#nextCall + 1;
    return new Promise<MindReply>((resolve, reject) => {
      const call: Call = {
        node: info.node, info, startMs: this.#ctx.clock.nowMs(), firstPieceMs: undefined, pieces: 0, onDelta,
        resolve: (reply) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(reply);
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      const onAbort = (): void => {
        if (this.#calls.delete(c)) {
          this.#ctx.send(info.node, "stream", { t: "mind-stop", c });
          call.reject(new MindCallError("cancelled", "cancelled", call.pieces > 0));
        }
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#calls.set(c, call);
      this.counters.callsSent++;
      this.#ctx.send(info.node, "stream", {
        t: "mind-ask", c, m: info.name,
        p: request.messages.slice(0, MIND_WIRE_LIMITS.messagesMax).map((m) => [m.role, m.content.slice(0, MIND_WIRE_LIMITS.contentCharsMax)] as [ChatMessage["role"], string]),
        x: Math.min(request.maxTokens === undefined ? 0 : request.maxTokens, MIND_WIRE_LIMITS.maxTokensMax), k: wireTemperature(request.temperature),
      });
    });
  }

  tick(): void {
    if (this.#calls.size === 0) return;
    const now = this.#ctx.clock.nowMs();
    for (const [c, call] of this.#calls) {
      const late = now - call.startMs > this.#config.callTimeoutMs || (call.pieces === 0 && now - call.startMs > this.#config.firstPieceTimeoutMs);
      const gone = this.#ctx.members.stateOf(call.node) === "dead" || this.#ctx.members.stateOf(call.node) === undefined;
      if (!late && !gone) continue;
      this.#calls.delete(c);
      this.counters.callsTimedOut++;
      this.#ctx.send(call.node, "stream", { t: "mind-stop", c });
      call.reject(new MindCallError("timeout", gone ? `the node serving ${call.info.name} is gone` : `no answer from ${call.info.name} in time`, call.pieces > 0));
    }
  }

  step(from: string, message: MessageOf<"mind-ask" | "mind-say" | "mind-done" | "mind-stop">): void {
    switch (message.t) {
      case "mind-ask":
        return this.#serve(from, message);
      case "mind-stop":
        return void this.#served.get(`${from}/${message.c}`)?.abort.abort();
      case "mind-say": {
        const call = this.#calls.get(message.c);
        // Only the node asked may answer a call.
        if (call === undefined || call.node !== from) return void this.counters.badMessages++;
        if (message.s !== call.pieces) return void this.counters.badMessages++;
        call.pieces++;
        call.firstPieceMs ??= this.#ctx.clock.nowMs();
        if (message.d.length > 0) call.onDelta?.(message.d);
        return;
      }
      case "mind-done": {
        const call = this.#calls.get(message.c);
        if (call === undefined || call.node !== from) return void this.counters.badMessages++;
        this.#calls.delete(message.c);
        if (message.e !== undefined) return call.reject(new MindCallError(message.e, `${call.info.name}: ${message.a.slice(0, MIND_WIRE_LIMITS.detailCharsMax)}`, call.pieces > 0));
        call.resolve({
          text: message.a, usage: { inputTokens: message.i, outputTokens: message.o }, finish: message.f, mind: call.info,
          latencyMs: this.#ctx.clock.nowMs() - call.startMs,
        });
      }
    }
  }

  /** A member asks one of this node's local minds. */
  #serve(from: string, message: MessageOf<"mind-ask">): void {
    const done = (kind: MindErrorKind, detail: string): void => this.#ctx.send(from, "stream", { t: "mind-done", c: message.c, a: detail.slice(0, MIND_WIRE_LIMITS.detailCharsMax), f: "other", i: 0, o: 0, e: kind });
    const client = this.#own.get(message.m);
    // Only minds this node advertises are served: never a frontier mind (its key's owner pays).
    if (client === undefined || client.info.kind !== "local") return done("unknown-mind", `this node serves no local mind ${message.m}`);
    const key = `${from}/${message.c}`;
    if (this.#served.has(key)) return void this.counters.badMessages++;
    let fromPeer = 0;
    for (const s of this.#served.values()) if (s.from === from) fromPeer++;
    if (this.#served.size >= this.#config.serveMax || fromPeer >= this.#config.servePerPeerMax) {
      this.counters.serveRefused++;
      return done("busy", "this node serves as many calls as it may");
    }
    const total = message.p.reduce((n, [, content]) => n + content.length, 0);
    if (total > MIND_WIRE_LIMITS.promptCharsMax) return done("refused", `the prompt is ${total} characters, at most ${MIND_WIRE_LIMITS.promptCharsMax}`);
    const abort = new AbortController();
    this.#served.set(key, { from, abort });
    this.counters.served++;
    let pieces = 0;
    const temperature = fromWireTemperature(message.k);
    const request: MindRequest = {
      messages: message.p.map(([role, content]) => ({ role, content })),
      ...(message.x > 0 ? { maxTokens: message.x } : {}),
      ...(temperature === undefined ? {} : { temperature }),
    };
    client.chat(request, {
      signal: abort.signal,
      onDelta: (text) => {
        for (let at = 0; at < text.length; at += MIND_WIRE_LIMITS.deltaCharsMax) this.#ctx.send(from, "stream", { t: "mind-say", c: message.c, s: pieces++, d: text.slice(at, at + MIND_WIRE_LIMITS.deltaCharsMax) });
      },
    }).then(
      (reply) => {
        this.#served.delete(key);
        this.#ctx.send(from, "stream", {
          t: "mind-done", c: message.c, a: reply.text.slice(0, MIND_WIRE_LIMITS.answerCharsMax), f: reply.finish,
          i: Math.min(reply.usage.inputTokens, 0xffff_ffff), o: Math.min(reply.usage.outputTokens, 0xffff_ffff),
        });
      },
      (error: unknown) => {
        this.#served.delete(key);
        const kind = (error as { kind?: string }).kind;
        done(isErrorKind(kind) ? kind : "server", error instanceof Error ? error.message : String(error));
      },
    );
  }

  /** This node's local minds in `self.minds` (or its row removed when it has none). */
  #advertise(): void {
    const topics = this.#ctx.services.topics;
    if (topics === undefined) return;
    const local = [...this.#own.values()].filter((c) => c.info.kind === "local").slice(0, MIND_WIRE_LIMITS.advertisedMax);
    const held = topics.get(MINDS_TOPIC, this.#ctx.id);
    if (local.length === 0) {
      if (held !== undefined) topics.publish(MINDS_TOPIC, this.#ctx.id, undefined);
      return;
    }
    topics.publish(MINDS_TOPIC, this.#ctx.id, packValue(local.map((c) => [c.info.name, c.info.provider, c.info.model, c.info.embeds])));
  }

  /** Local minds live members advertise (a row is believed only under its writer's own id). */
  #advertised(): MindInfo[] {
    const gossip = this.#ctx.services.topics;
    if (gossip === undefined) return [];
    const out: MindInfo[] = [];
    for (const id of this.#ctx.members.liveIds()) {
      const value = gossip.get(MINDS_TOPIC, id);
      if (value === undefined) continue;
      let list: unknown;
      try {
        list = unpackValue(value);
      } catch {
        continue;
      }
      if (!Array.isArray(list)) continue;
      for (const entry of list.slice(0, MIND_WIRE_LIMITS.advertisedMax)) {
        if (!Array.isArray(entry) || entry.length !== 4) continue;
        const [name, provider, model, embeds] = entry as unknown[];
        if (typeof name !== "string" || name.length === 0 || name.length > MIND_WIRE_LIMITS.nameCharsMax) continue;
        if (typeof provider !== "string" || !PROVIDERS.has(provider) || typeof model !== "string" || model.length > MIND_WIRE_LIMITS.modelCharsMax || typeof embeds !== "boolean") continue;
        out.push({ name, provider: provider as Provider, model, kind: "local", embeds, node: id });
      }
    }
    return out;
  }
}

function isErrorKind(kind: string | undefined): kind is MindErrorKind {
  return (MIND_ERROR_KINDS as readonly (string | undefined)[]).includes(kind);
}

/** The router's outcome for an error kind (the wire's own kinds: busy counts as rate-limited, an unknown mind as refused). */
function routerOutcome(kind: string): MindOutcome {
  if (kind === "busy") return "rate-limited";
  if (kind === "unknown-mind") return "refused";
  return (ROUTER_OUTCOMES as readonly string[]).includes(kind) ? (kind as MindOutcome) : "server";
}

const ROUTER_OUTCOMES: readonly MindOutcome[] = ["timeout", "rate-limited", "server", "malformed", "truncated", "unreachable", "cancelled", "auth", "refused"];
