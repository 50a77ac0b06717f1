// The mesh routing service of one node (issue 5, mesh): the Mesh core (src/core/collective/mesh.ts,
// docs/protocols/mesh.md) joined to the kernel. The core routes; this file decides who its
// neighbours are, and carries the node's own small mesh services (the echo behind `route ping`).
//
// Neighbours. Every member could be reached directly on a LAN, but a distance-vector table costs
// each link a full dump per period, so a node keeps a bounded set of links:
//   - outbound: the `neighbours` live members with the lowest pair score (a hash of the two ids,
//     the same seen from either end, so two nodes tend to pick each other); a member that never
//     answered is skipped for `retryTicks` and the next one is tried;
//   - inbound: a live member whose mesh update reaches us directly is taken as a neighbour (up to
//     `inboundMax` beyond the outbound ones), so links are symmetric: Babel only uses a route
//     heard from a neighbour, and an update from a node we do not count as one is ignored.
// A link goes down when SWIM declares the member dead or left, or when no mesh message came from it
// for `linkTimeoutTicks` (a working link carries a dump every update interval; a member that
// refused our link sends none). Link cost is 1 (hop count).
//
// Scale. The table holds a route to every member and every link carries it in full each update
// interval, so the cost per node grows with the cluster. Beyond `membersMax` live members the node
// stops running the mesh (it drops every link; neighbours' routes to it expire) and starts again
// when the cluster is back under the bound. A cluster that large would need hierarchical routing.
//
// Services on top of the mesh. A routed payload starts with a service byte: 1 echo request and
// 2 echo reply, each followed by a u32 nonce (little-endian). Other services can register.
import { Mesh, MESH_DEFAULTS, type MeshConfig, type MeshEvent, type MeshRouteView, type MeshStats, type SendResult } from "../../core/collective/mesh.ts";
import type { MeshMessage } from "../../core/collective/mesh-wire.ts";
import { fnv1a, FNV_OFFSET } from "../../core/util/bytes.ts";
import type { Rng } from "../../core/util/rng.ts";

export interface MeshServiceConfig {
  /** The routing core's timers and bounds. */
  readonly core: MeshConfig;
  /** Links this node opens itself (the rest are opened by others). */
  readonly neighbours: number;
  /** Links opened by others that this node accepts beyond its own. */
  readonly inboundMax: number;
  /** Ticks between neighbour refreshes. */
  readonly refreshTicks: number;
  /** A link with nothing heard directly for this long goes down. */
  readonly linkTimeoutTicks: number;
  /** A member whose link went down (or never came up) is not tried again for this long. */
  readonly retryTicks: number;
  /** Above this many live members (self included) the mesh is off. */
  readonly membersMax: number;
}

export const MESH_SERVICE_DEFAULTS: MeshServiceConfig = {
  // Timers are swept every 0.5 s rather than 0.1 s: with a route per member on every link the sweep
  // was a third of a 100-node simulation's time; expiry (14 s) and request resends (0.5 s) stay apt.
  core: { ...MESH_DEFAULTS, sweepTicks: 50 },
  neighbours: 6,
  inboundMax: 12,
  refreshTicks: 100,
  linkTimeoutTicks: 1_000,
  retryTicks: 3_000,
  membersMax: 64,
};

export const MESH_SERVICE = { echoRequest: 1, echoReply: 2 } as const;

/** What the service needs from the kernel. */
export interface MeshHost {
  send(to: string, message: MeshMessage): void;
  /** SWIM's live members, self excluded. */
  liveIds(): readonly string[];
  tick(): number;
  nowMs(): number;
}

export interface EchoResult {
  readonly ok: boolean;
  readonly hops?: number;
  readonly ms?: number;
  readonly error?: string;
}

interface PendingEcho {
  readonly destination: string;
  readonly sentMs: number;
  readonly deadlineTick: number;
  readonly done: (result: EchoResult) => void;
}

export type MeshPayloadHandler = (source: string, payload: Uint8Array, hops: number) => void;

const utf8 = new TextEncoder();

function pairScore(a: string, b: string): number {
  return fnv1a(FNV_OFFSET, utf8.encode(a < b ? a + b : b + a));
}

export class MeshService {
  readonly core: Mesh;
  readonly config: MeshServiceConfig;
  readonly #self: string;
  readonly #host: MeshHost;
  /** Links up, by id: the tick they came up, the tick a mesh message last came, who opened them. */
  readonly #links = new Map<string, { since: number; heard: number; outbound: boolean }>();
  /** Members not to try before the given tick. */
  readonly #backoff = new Map<string, number>();
  readonly #pending = new Map<number, PendingEcho>();
  readonly #handlers = new Map<number, MeshPayloadHandler>();
  #nonce = 0;
  #active = true;
  /** Counters beside the core's. */
  readonly counters = { linksUp: 0, linksDown: 0, echoes: 0, echoTimeouts: 0, badPayloads: 0, inboundRefused: 0 };

  constructor(self: string, rng: Rng, host: MeshHost, config: MeshServiceConfig = MESH_SERVICE_DEFAULTS) {
    this.#self = self;
    this.#host = host;
    this.config = config;
    this.core = new Mesh(self, rng, config.core);
    this.#nonce = rng.nextU32();
  }

  get active(): boolean {
    return this.#active;
  }

  get stats(): Readonly<MeshStats> {
    return this.core.stats;
  }

  routes(): MeshRouteView[] {
    return this.core.routes();
  }

  links(): Array<{ id: string; outbound: boolean; sinceTick: number; heardTicksAgo: number | undefined }> {
    const now = this.#host.tick();
    return [...this.#links].map(([id, link]) => ({
      id, outbound: link.outbound, sinceTick: link.since, heardTicksAgo: link.heard < 0 ? undefined : now - link.heard,
    }));
  }

  /** Registers a handler for routed payloads whose first byte is `service` (3..255). */
  handle(service: number, handler: MeshPayloadHandler): void {
    if (!Number.isInteger(service) || service < 3 || service > 255) throw new RangeError("mesh service tags 3..255 are free");
    this.#handlers.set(service, handler);
  }

  /** Sends `payload` to `destination` through the mesh (payload[0] is the service byte). */
  send(destination: string, payload: Uint8Array): SendResult | "off" {
    if (!this.#active) return "off";
    const result = this.core.send(destination, payload);
    this.flush();
    return result;
  }

  /** `route ping`: an echo through the mesh; answers once, on the reply or at the deadline. */
  echo(destination: string, timeoutTicks: number, done: (result: EchoResult) => void): void {
    const nonce = (this.#nonce = (this.#nonce + 1) >>> 0);
    const payload = new Uint8Array(5);
    payload[0] = MESH_SERVICE.echoRequest;
    new DataView(payload.buffer).setUint32(1, nonce, true);
    const sent = this.send(destination, payload);
    if (sent !== "sent") {
      done({ ok: false, error: sent === "off" ? "the mesh is off (cluster above its size bound)" : sent });
      return;
    }
    this.counters.echoes++;
    this.#pending.set(nonce, { destination, sentMs: this.#host.nowMs(), deadlineTick: this.#host.tick() + timeoutTicks, done });
  }

  tick(): void {
    const now = this.#host.tick();
    if (now % this.config.refreshTicks === 0) this.#refresh(now);
    for (const [nonce, echo] of this.#pending) {
      if (now < echo.deadlineTick) continue;
      this.#pending.delete(nonce);
      this.counters.echoTimeouts++;
      echo.done({ ok: false, error: "no reply before the deadline" });
    }
    if (!this.#active) return;
    this.core.tick();
    this.flush();
  }

  /** A mesh message from `from`, authenticated and a SWIM member (the kernel checked both). */
  step(from: string, message: MeshMessage): void {
    if (!this.#active) return;
    if (!this.#links.has(from) && message.t === "mesh-update") {
      // A member opened a link to us: its update arrived directly, so the link works both ways.
      const inbound = [...this.#links.values()].filter((l) => !l.outbound).length;
      if (inbound < this.config.inboundMax && this.core.linkUp(from, 1)) this.#up(from, false);
      else this.counters.inboundRefused++;
    }
    const link = this.#links.get(from);
    if (link !== undefined) link.heard = this.#host.tick();
    this.core.step(from, message);
    this.flush();
  }

  /** SWIM declared the member dead or gone. */
  memberGone(id: string): void {
    this.#backoff.delete(id);
    if (this.#links.has(id)) this.#down(id);
    this.flush();
  }

  flush(): void {
    if (!this.core.hasReady()) return;
    const ready = this.core.ready();
    for (const { to, message } of ready.messages) this.#host.send(to, message);
    for (const event of ready.events) this.#onEvent(event);
  }

  #onEvent(event: MeshEvent): void {
    if (event.type !== "delivered") return;
    const { source, payload, hops } = event;
    const service = payload[0];
    if (service === MESH_SERVICE.echoRequest || service === MESH_SERVICE.echoReply) {
      if (payload.length !== 5) {
        this.counters.badPayloads++;
        return;
      }
      const nonce = new DataView(payload.buffer, payload.byteOffset, 5).getUint32(1, true);
      if (service === MESH_SERVICE.echoRequest) {
        const reply = payload.slice();
        reply[0] = MESH_SERVICE.echoReply;
        this.core.send(source, reply);
        return;
      }
      const echo = this.#pending.get(nonce);
      if (echo === undefined || echo.destination !== source) return;
      this.#pending.delete(nonce);
      echo.done({ ok: true, hops, ms: this.#host.nowMs() - echo.sentMs });
      return;
    }
    const handler = service === undefined ? undefined : this.#handlers.get(service);
    if (handler === undefined) {
      this.counters.badPayloads++;
      return;
    }
    handler(source, payload, hops);
  }

  #refresh(now: number): void {
    const live = this.#host.liveIds();
    if (live.length + 1 > this.config.membersMax) {
      if (this.#active) {
        for (const id of [...this.#links.keys()]) this.#down(id);
        this.#active = false;
      }
      return;
    }
    this.#active = true;
    const liveSet = new Set(live);
    for (const [id, link] of this.#links) {
      const heard = Math.max(link.heard, link.since);
      if (!liveSet.has(id) || now - heard > this.config.linkTimeoutTicks) {
        this.#down(id);
        this.#backoff.set(id, now + this.config.retryTicks);
      }
    }
    for (const [id, until] of this.#backoff) if (until <= now || !liveSet.has(id)) this.#backoff.delete(id);
    const outbound = [...this.#links.values()].filter((l) => l.outbound).length;
    if (outbound >= this.config.neighbours) return;
    const candidates = live.filter((id) => !this.#links.has(id) && !this.#backoff.has(id))
      .map((id) => ({ id, score: pairScore(this.#self, id) }))
      .sort((a, b) => a.score - b.score || (a.id < b.id ? -1 : 1));
    for (const { id } of candidates.slice(0, this.config.neighbours - outbound)) {
      if (this.core.linkUp(id, 1)) this.#up(id, true);
    }
  }

  #up(id: string, outbound: boolean): void {
    this.#links.set(id, { since: this.#host.tick(), heard: -1, outbound });
    this.counters.linksUp++;
  }

  #down(id: string): void {
    this.#links.delete(id);
    this.core.linkDown(id);
    this.counters.linksDown++;
  }
}
