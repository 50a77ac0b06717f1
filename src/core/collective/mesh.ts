// mesh: distance-vector routing with sequence numbers and feasibility (Babel, RFC 8966), as a
// sans-IO core (step / tick / ready), so that a message reaches a node that is not directly
// reachable through relays. Protocol: docs/protocols/mesh.md.
//
// Every node originates one route, to itself, with its own sequence number (seqno, 16 bits, compared
// modulo 2^16). A node learns its direct neighbours and their link costs from the caller
// (setNeighbours / linkUp / linkDown), hears the routes its neighbours advertise (periodic full
// dumps, triggered updates on change), selects for each destination the cheapest route among the
// feasible ones, and advertises that.
//
// Feasibility (loop freedom, no count-to-infinity): for each destination the node keeps a
// feasibility distance FD = the best (seqno, metric) it has advertised, where (s, m) is better than
// (s', m') when s is newer, or s = s' and m < m'. A neighbour's route is feasible only if the
// distance the neighbour advertised is strictly better than FD (retractions always are). A
// neighbour whose distance is not smaller than ours may be routing through us, so its route is
// never selected: following next hops, distances strictly decrease, hence no loop at any instant,
// and a lost route is retracted (metric 0xFFFF) instead of being re-learned with a larger metric.
// When a destination has no feasible route but some neighbour still advertises one (or a neighbour
// offers a cheaper route than the selected one that is not feasible), the node sends a seqno
// request (FD seqno + 1) toward the destination; the destination raises its seqno, and the newer
// seqno makes routes feasible everywhere again.
//
// Updates: a full dump to every neighbour each update interval (jittered), and triggered updates
// for what changed, sent at the next tick (so one tick's changes share one update per neighbour)
// and repeated twice against loss. Split horizon: a route is left out of the dump to its own next
// hop; a triggered update tells that neighbour "infinite" instead (poisoned reverse). Entries carry
// the sender's update counter so that an entry overtaken in the network is recognised as stale.
//
// Data: `send` wraps a payload in a `mesh-data` datagram with a hop limit; each node delivers it
// (event `delivered`) or forwards it to its next hop; no route or an exhausted hop limit drops it
// (counted).
//
// Time is in ticks, randomness (the first seqno, the jitter of the periodic dump) comes from the
// injected Rng. Timers are checked every `sweepTicks`, so every expiry below is late by at most that.
import { assert } from "../util/assert.ts";
import { Outbox, type Ready } from "../util/outbox.ts";
import type { Rng } from "../util/rng.ts";
import { MESH_LIMITS, type MeshData, type MeshMessage, type MeshRequest, type MeshRouteWire, type MeshUpdate } from "./mesh-wire.ts";

const INF = MESH_LIMITS.metricInfinity;
const SEQNO_MASK = 0xffff;

/** All durations in ticks (10 ms each at the kernel's default). */
export interface MeshConfig {
  /**
   * Period of the full dump to every neighbour (the anti-entropy backstop; changes go out at once
   * as triggered updates). Announced in every update as `iv`: a neighbour's routes expire after
   * 3.5 · iv without a refresh (Babel's rule).
   */
  readonly updateIntervalTicks: number;
  /** Each period is drawn in [interval − jitter, interval], so that nodes do not dump in step. */
  readonly updateJitterTicks: number;
  /** Times a triggered update is sent again (with the state of the moment), against datagram loss. */
  readonly triggeredRepeats: number;
  /** Ticks between those repeats. */
  readonly triggeredRepeatTicks: number;
  /** How long a retraction stays in the full dumps after a route is lost (so lost retractions are repeated). */
  readonly retractionHoldTicks: number;
  /**
   * How long the feasibility distance of a destination is kept after its last route went away. Must
   * outlive any stale route elsewhere, i.e. exceed diameter × 3.5 · interval (Babel: 3 min).
   */
  readonly sourceGcTicks: number;
  /**
   * Wait for an answer to a seqno request before sending it again (more than the round trip to
   * the farthest destination), and the window in which a copy from another neighbour is a duplicate.
   */
  readonly requestTimeoutTicks: number;
  /** Resends of an unanswered seqno request; then it rests one update interval before it may start again. */
  readonly requestResends: number;
  /** Hop count a seqno request starts with (≤ MESH_LIMITS.hopsMax). */
  readonly requestHops: number;
  /** Hop limit of the data this node sends (≤ MESH_LIMITS.hopsMax). */
  readonly ttl: number;
  /** Timers (route expiry, hold, request resends, garbage collection) are checked this often. */
  readonly sweepTicks: number;
  /**
   * Reordering window: an entry from a neighbour older (by the update counter `n`) than the one
   * that last set the same route is ignored if that was less than this long ago; a retracted route
   * is remembered this long so that an overtaken finite update cannot bring it back. Beyond the
   * window any entry is taken (a neighbour that restarted counts from a new random value).
   */
  readonly reorderTicks: number;
  /** Leave a route out of the full dump to its own next hop (a triggered update tells it "infinite"). */
  readonly splitHorizon: boolean;
  /** Destinations in the table; updates about further ones are dropped (counted `tableFull`). */
  readonly destinationsMax: number;
  /** Direct neighbours; linkUp beyond it is refused. */
  readonly neighboursMax: number;
  /** Route entries (destination × neighbour); new ones beyond it are dropped (counted `tableFull`). */
  readonly routesMax: number;
  /** Seqno requests remembered for duplicate suppression. */
  readonly requestsSeenMax: number;
}

/**
 * Defaults at 10 ms ticks: a full dump every 4 s (Babel's default is 16 s, but its Hellos carry
 * the link sensing that here comes from the caller), routes expire after 14 s of silence,
 * retractions repeated for 14 s, feasibility distances kept 3 min (Babel's SOURCE_GC_TIME).
 */
export const MESH_DEFAULTS: MeshConfig = {
  updateIntervalTicks: 400,
  updateJitterTicks: 100,
  triggeredRepeats: 2,
  triggeredRepeatTicks: 10,
  retractionHoldTicks: 1400,
  sourceGcTicks: 18_000,
  requestTimeoutTicks: 50,
  requestResends: 6,
  requestHops: 64,
  ttl: 64,
  sweepTicks: 10,
  reorderTicks: 100,
  splitHorizon: true,
  destinationsMax: 4096,
  neighboursMax: 64,
  routesMax: 32_768,
  requestsSeenMax: 1024,
};

/** Ticks after which a route announced with update interval `iv` expires: 3.5 · iv. */
export function routeExpiryTicks(iv: number): number {
  return Math.ceil((iv * 7) / 2);
}

/** True when seqno `a` is newer than `b` modulo 2^16 (RFC 8966 §3.2.1). */
export function seqnoNewer(a: number, b: number): boolean {
  const d = (a - b) & SEQNO_MASK;
  return d !== 0 && d < 0x8000;
}

export interface Distance {
  readonly seqno: number;
  readonly metric: number;
}

/** True when distance `a` is strictly better than `b`: newer seqno, or same seqno and smaller metric. */
export function better(a: Distance, b: Distance): boolean {
  return seqnoNewer(a.seqno, b.seqno) || (a.seqno === b.seqno && a.metric < b.metric);
}

/** The feasibility condition: a retraction, no FD yet, or a distance strictly better than the FD. */
export function feasible(fd: Distance | undefined, seqno: number, metric: number): boolean {
  return metric >= INF || fd === undefined || better({ seqno, metric }, fd);
}

export interface MeshOutbound {
  /** Neighbour id; the kernel resolves the address. Every mesh message is a datagram. */
  readonly to: string;
  readonly message: MeshMessage;
}

export type MeshEvent =
  /** The next hop toward a destination changed; undefined = unreachable. */
  | { readonly type: "route-changed"; readonly destination: string; readonly nextHop: string | undefined; readonly metric: number }
  /** Data for this node. `payload` is a view into the packet: copy it to keep it. */
  | { readonly type: "delivered"; readonly source: string; readonly payload: Uint8Array; readonly hops: number };

export type MeshReady = Ready<MeshOutbound, MeshEvent>;

export type SendResult = "sent" | "delivered" | "no-route" | "too-large";

/** One route to a destination, through one neighbour. */
interface Route {
  /** What the neighbour advertised (advMetric INF: retracted, kept for the reordering window). */
  seqno: number;
  advMetric: number;
  /** advMetric + link cost, capped at INF. */
  metric: number;
  expiresAt: number;
  /** Update counter of the message that last set it, and when. */
  n: number;
  at: number;
}

/** True when update counter `a` is older than `b` modulo 2^32. */
function counterOlder(a: number, b: number): boolean {
  const d = (b - a) >>> 0;
  return d !== 0 && d < 0x8000_0000;
}

interface Repeat {
  readonly at: number;
  readonly left: number;
  readonly ids: readonly string[];
}

interface Request {
  readonly seqno: number;
  nextAt: number;
  sends: number;
  /** Neighbours asked since the last (re)send; a new advertiser is asked at once. */
  readonly asked: Set<string>;
}

interface Destination {
  readonly id: string;
  readonly routes: Map<string, Route>;
  /** Neighbour of the selected route. */
  selected: string | undefined;
  /** Feasibility distance (the source table entry). */
  fd: Distance | undefined;
  /** What this node advertises (metric INF: a retraction, held until holdUntil); undefined: nothing. */
  adv: Distance | undefined;
  holdUntil: number;
  /** Tick at which the last route went away. */
  idleSince: number;
  request: Request | undefined;
}

/** A route as shown by `routes()`. */
export interface MeshRouteView {
  readonly destination: string;
  readonly nextHop: string | undefined;
  readonly metric: number;
  readonly seqno: number | undefined;
  readonly fd: Distance | undefined;
  /** Finite routes known through different neighbours (feasible or not). */
  readonly candidates: number;
}

export interface MeshStats {
  updatesSent: number;
  updatesReceived: number;
  requestsSent: number;
  requestsForwarded: number;
  requestsAnswered: number;
  /** Updates or requests from a node that is not a neighbour (ignored). */
  notNeighbour: number;
  /** Route entries overtaken by a newer update from the same neighbour (ignored). */
  stale: number;
  /** Destinations or routes refused because a table was full. */
  tableFull: number;
  dataSent: number;
  dataForwarded: number;
  dataDelivered: number;
  dropNoRoute: number;
  dropTtl: number;
}

export interface MeshOptions {
  /** The first seqno (e.g. from the kernel's epoch); drawn from the Rng when absent. */
  readonly seqno?: number;
}

export class Mesh {
  readonly #self: string;
  readonly #rng: Rng;
  readonly #config: MeshConfig;
  #seqno: number;
  /** Counter of the updates this node sends (modulo 2^32). */
  #counter: number;
  #now = 0;
  readonly #neighbours = new Map<string, number>();
  readonly #dests = new Map<string, Destination>();
  #routeCount = 0;
  /**
   * Seqno requests forwarded or sent ("dest/seqno" → when, and from which neighbour; this node's
   * own are from itself), oldest first: the same request arriving from another neighbour within
   * requestTimeoutTicks is a duplicate (it took two paths) and is not forwarded again. One from
   * the same neighbour is a resend and is.
   */
  readonly #seen = new Map<string, { at: number; from: string }>();
  #nextDump: number;
  #nextSweep: number;
  /** Full dumps to send at the next tick, by neighbour; true asks for theirs back. */
  readonly #dumps = new Map<string, boolean>();
  /**
   * Destinations whose advertisement changed since the last tick (self included): triggered
   * updates go out at the next tick, so that the changes caused by all the packets of one tick
   * travel in one update per neighbour.
   */
  readonly #dirty = new Set<string>();
  /** Triggered updates to repeat, by due tick (at most triggeredRepeats · triggeredRepeatTicks of them). */
  readonly #repeats: Repeat[] = [];
  readonly #out = new Outbox<MeshOutbound, MeshEvent>();
  readonly #stats: MeshStats = {
    updatesSent: 0, updatesReceived: 0, requestsSent: 0, requestsForwarded: 0, requestsAnswered: 0, notNeighbour: 0, stale: 0,
    tableFull: 0, dataSent: 0, dataForwarded: 0, dataDelivered: 0, dropNoRoute: 0, dropTtl: 0,
  };

  constructor(self: string, rng: Rng, config: MeshConfig = MESH_DEFAULTS, options: MeshOptions = {}) {
    const c = config;
    assert(Number.isInteger(c.updateIntervalTicks) && c.updateIntervalTicks >= 1 && c.updateIntervalTicks <= MESH_LIMITS.intervalTicksMax, "Mesh: updateIntervalTicks out of bounds");
    assert(Number.isInteger(c.updateJitterTicks) && c.updateJitterTicks >= 0 && c.updateJitterTicks < c.updateIntervalTicks, "Mesh: updateJitterTicks out of bounds");
    assert(c.sourceGcTicks >= 4 * routeExpiryTicks(c.updateIntervalTicks), "Mesh: sourceGcTicks must outlive stale routes");
    assert(c.requestHops >= 1 && c.requestHops <= MESH_LIMITS.hopsMax && c.ttl >= 1 && c.ttl <= MESH_LIMITS.hopsMax, "Mesh: hop limits out of bounds");
    assert(c.triggeredRepeats >= 0 && c.triggeredRepeats <= 8 && Number.isInteger(c.triggeredRepeatTicks) && c.triggeredRepeatTicks >= 1, "Mesh: triggered repeats out of bounds");
    assert(c.sweepTicks >= 1 && c.reorderTicks >= 1 && c.requestTimeoutTicks >= 1 && c.requestResends >= 0 && c.retractionHoldTicks >= 0, "Mesh: timers out of bounds");
    assert(c.destinationsMax >= 1 && c.neighboursMax >= 1 && c.routesMax >= 1 && c.requestsSeenMax >= 1, "Mesh: table bounds out of bounds");
    this.#self = self;
    this.#rng = rng;
    this.#config = config;
    this.#seqno = (options.seqno ?? rng.int(SEQNO_MASK + 1)) & SEQNO_MASK;
    this.#counter = rng.nextU32();
    this.#nextDump = 1 + rng.int(c.updateIntervalTicks);
    this.#nextSweep = c.sweepTicks;
  }

  get id(): string {
    return this.#self;
  }

  get seqno(): number {
    return this.#seqno;
  }

  get now(): number {
    return this.#now;
  }

  get stats(): Readonly<MeshStats> {
    return this.#stats;
  }

  /** Route entries held (destination × neighbour). */
  get routeCount(): number {
    return this.#routeCount;
  }

  /** Destinations held (with a route, a held retraction, or a feasibility distance). */
  get destinationCount(): number {
    return this.#dests.size;
  }

  neighbours(): Array<{ id: string; cost: number }> {
    return [...this.#neighbours].map(([id, cost]) => ({ id, cost }));
  }

  /** The neighbour to send to for `destination`, or undefined when it is unreachable. */
  nextHop(destination: string): string | undefined {
    return this.#dests.get(destination)?.selected;
  }

  /** The metric of the selected route (INF when none; 0 for this node). */
  metric(destination: string): number {
    if (destination === this.#self) return 0;
    const dest = this.#dests.get(destination);
    const via = dest?.selected;
    return via === undefined ? INF : (dest?.routes.get(via)?.metric ?? INF);
  }

  routes(): MeshRouteView[] {
    const views: MeshRouteView[] = [];
    for (const dest of this.#dests.values()) {
      const route = dest.selected === undefined ? undefined : dest.routes.get(dest.selected);
      views.push({
        destination: dest.id, nextHop: dest.selected, metric: route?.metric ?? INF, seqno: route?.seqno, fd: dest.fd,
        candidates: [...dest.routes.values()].filter((r) => r.metric < INF).length,
      });
    }
    return views.sort((a, b) => (a.destination < b.destination ? -1 : a.destination > b.destination ? 1 : 0));
  }

  // ---- links -------------------------------------------------------------------------------

  /** Replaces the neighbour set: links not listed go down, listed ones come up or change cost. */
  setNeighbours(links: Iterable<{ readonly id: string; readonly cost: number }>): void {
    const wanted = new Map<string, number>();
    for (const link of links) if (link.id !== this.#self) wanted.set(link.id, link.cost);
    for (const id of [...this.#neighbours.keys()]) if (!wanted.has(id)) this.linkDown(id);
    for (const [id, cost] of wanted) this.linkUp(id, cost);
  }

  /**
   * A direct link to `id` is up (or its cost changed). Sends it the full dump and asks for its own.
   * Returns false when the neighbour table is full.
   */
  linkUp(id: string, cost: number): boolean {
    assert(Number.isInteger(cost) && cost >= 1 && cost <= MESH_LIMITS.linkCostMax, `Mesh: link cost ${cost} out of bounds`);
    if (id === this.#self) return false;
    const known = this.#neighbours.get(id);
    if (known === undefined) {
      if (this.#neighbours.size >= this.#config.neighboursMax) return false;
      this.#neighbours.set(id, cost);
      this.#dumps.set(id, true);
      return true;
    }
    if (known !== cost) {
      this.#neighbours.set(id, cost);
      for (const dest of this.#dests.values()) {
        const route = dest.routes.get(id);
        if (route === undefined || route.advMetric >= INF) continue;
        route.metric = Math.min(INF, route.advMetric + cost);
        this.#reselect(dest);
      }
    }
    return true;
  }

  /** The link to `id` is down: every route through it is dropped at once. */
  linkDown(id: string): void {
    if (!this.#neighbours.delete(id)) return;
    this.#dumps.delete(id);
    for (const dest of this.#dests.values()) {
      if (this.#deleteRoute(dest, id)) this.#reselect(dest);
    }
  }

  // ---- protocol ----------------------------------------------------------------------------

  tick(): void {
    this.#now++;
    if (this.#now >= this.#nextDump) {
      for (const id of this.#neighbours.keys()) if (!this.#dumps.has(id)) this.#dumps.set(id, false);
      this.#nextDump = this.#now + this.#config.updateIntervalTicks - this.#rng.int(this.#config.updateJitterTicks + 1);
    }
    if (this.#now >= this.#nextSweep) {
      this.#nextSweep = this.#now + this.#config.sweepTicks;
      this.#sweep();
    }
    this.#flush();
  }

  /** A validated mesh message from `from` (the authenticated sender of the datagram). */
  step(from: string, message: MeshMessage): void {
    switch (message.t) {
      case "mesh-update": return this.#onUpdate(from, message);
      case "mesh-req": return this.#onRequest(from, message);
      case "mesh-data": return this.#onData(from, message);
    }
  }

  /** Sends `payload` to `destination` through the mesh. */
  send(destination: string, payload: Uint8Array): SendResult {
    if (payload.byteLength > MESH_LIMITS.payloadBytesMax) return "too-large";
    if (destination === this.#self) {
      this.#stats.dataDelivered++;
      this.#out.emit({ type: "delivered", source: this.#self, payload, hops: 0 });
      return "delivered";
    }
    const next = this.nextHop(destination);
    if (next === undefined) {
      this.#stats.dropNoRoute++;
      return "no-route";
    }
    this.#stats.dataSent++;
    this.#out.send({ to: next, message: { t: "mesh-data", d: [this.#self, destination, this.#config.ttl, 0, payload] } });
    return "sent";
  }

  ready(): MeshReady {
    return this.#out.take();
  }

  hasReady(): boolean {
    return this.#out.hasReady();
  }

  // ---- updates -----------------------------------------------------------------------------

  #onUpdate(from: string, message: MeshUpdate): void {
    const cost = this.#neighbours.get(from);
    if (cost === undefined) {
      this.#stats.notNeighbour++;
      return;
    }
    this.#stats.updatesReceived++;
    if (message.q && !this.#dumps.has(from)) this.#dumps.set(from, false);
    const expiry = routeExpiryTicks(message.iv);
    for (const [id, seqno, advMetric] of message.u) this.#onRoute(from, cost, message.n, id, seqno, advMetric, expiry);
  }

  #onRoute(from: string, cost: number, n: number, id: string, seqno: number, advMetric: number, expiry: number): void {
    if (id === this.#self) {
      // Our own route echoed back with a seqno newer than ours: a previous life of this node
      // advertised it. Move past it, so that our routes are feasible again everywhere.
      if (advMetric < INF && seqnoNewer(seqno, this.#seqno)) this.#bumpSeqno((seqno + 1) & SEQNO_MASK);
      return;
    }
    let dest = this.#dests.get(id);
    const route = dest?.routes.get(from);
    if (route !== undefined && counterOlder(n, route.n) && this.#now - route.at < this.#config.reorderTicks) {
      this.#stats.stale++;
      return;
    }
    const metric = advMetric >= INF ? INF : Math.min(INF, advMetric + cost);
    if (metric >= INF) {
      // A retraction (or a route too long to use): always accepted. The entry stays for the
      // reordering window, so that a finite update it overtook is recognised as stale.
      if (dest === undefined || route === undefined) return;
      const wasFinite = route.metric < INF;
      route.seqno = seqno;
      route.advMetric = INF;
      route.metric = INF;
      route.n = n;
      route.at = this.#now;
      route.expiresAt = this.#now + this.#config.reorderTicks;
      if (wasFinite) this.#reselect(dest);
      return;
    }
    if (dest === undefined) {
      if (this.#dests.size >= this.#config.destinationsMax) {
        this.#stats.tableFull++;
        return;
      }
      dest = { id, routes: new Map(), selected: undefined, fd: undefined, adv: undefined, holdUntil: 0, idleSince: this.#now, request: undefined };
      this.#dests.set(id, dest);
    }
    if (route === undefined) {
      if (this.#routeCount >= this.#config.routesMax) {
        this.#stats.tableFull++;
        return;
      }
      dest.routes.set(from, { seqno, advMetric, metric, expiresAt: this.#now + expiry, n, at: this.#now });
      this.#routeCount++;
      this.#reselect(dest);
    } else {
      const changed = route.seqno !== seqno || route.advMetric !== advMetric || route.metric !== metric;
      route.seqno = seqno;
      route.advMetric = advMetric;
      route.metric = metric;
      route.expiresAt = this.#now + expiry;
      route.n = n;
      route.at = this.#now;
      // Unchanged, it may still be a route we would want but may not take: ask for a newer seqno.
      if (changed || dest.selected === undefined) this.#reselect(dest);
      else this.#maybeRequest(dest);
    }
  }

  /** Chooses the cheapest feasible route; advertises the change and keeps the FD. */
  #reselect(dest: Destination): void {
    const previous = dest.selected;
    let best: string | undefined;
    let bestRoute: Route | undefined;
    for (const [via, route] of dest.routes) {
      if (route.metric >= INF || !feasible(dest.fd, route.seqno, route.advMetric)) continue;
      if (bestRoute === undefined || route.metric < bestRoute.metric ||
        (route.metric === bestRoute.metric && (via === previous || (best !== previous && via < (best as string))))) {
        best = via;
        bestRoute = route;
      }
    }
    if (bestRoute !== undefined) {
      dest.selected = best;
      const adv: Distance = { seqno: bestRoute.seqno, metric: bestRoute.metric };
      // The FD is lowered when the route is selected (at the latest when it is advertised, which
      // follows at the next tick): selecting only routes better than it keeps loops out.
      if (dest.fd === undefined || better(adv, dest.fd)) dest.fd = adv;
      dest.holdUntil = 0;
      if (dest.adv === undefined || dest.adv.seqno !== adv.seqno || dest.adv.metric !== adv.metric || previous !== best) {
        dest.adv = adv;
        this.#dirty.add(dest.id);
      }
    } else {
      dest.selected = undefined;
      if (dest.adv !== undefined && dest.adv.metric < INF) {
        dest.adv = { seqno: dest.adv.seqno, metric: INF };
        dest.holdUntil = this.#now + this.#config.retractionHoldTicks;
        this.#dirty.add(dest.id);
      }
    }
    this.#maybeRequest(dest);
    if (previous !== dest.selected) {
      this.#out.emit({ type: "route-changed", destination: dest.id, nextHop: dest.selected, metric: bestRoute?.metric ?? INF });
    }
  }

  #deleteRoute(dest: Destination, via: string): boolean {
    if (!dest.routes.delete(via)) return false;
    this.#routeCount--;
    if (dest.routes.size === 0) dest.idleSince = this.#now;
    return true;
  }

  #bumpSeqno(seqno: number): void {
    this.#seqno = seqno;
    this.#dirty.add(this.#self);
  }

  // ---- seqno requests ----------------------------------------------------------------------

  /**
   * Neighbours worth asking for a newer seqno: those advertising a finite route that is not
   * feasible and would be cheaper than the selected one (any finite one when there is no
   * selection: starvation). After a failure the feasibility distance can hold a node on a longer
   * path than it could use, or on none; a newer seqno lifts that (RFC 8966 §3.8.2).
   */
  #requestTargets(dest: Destination): string[] {
    const ids: string[] = [];
    const fd = dest.fd;
    if (fd === undefined) return ids;
    const via = dest.selected;
    const selected = via === undefined ? INF : (dest.routes.get(via)?.metric ?? INF);
    for (const [id, route] of dest.routes) {
      if (route.metric < selected && !feasible(fd, route.seqno, route.advMetric)) ids.push(id);
    }
    return ids;
  }

  /**
   * Asks the neighbours of #requestTargets for seqno FD + 1. A pending request is not repeated
   * (its timer resends it), but a neighbour that starts advertising such a route meanwhile (across
   * a healed link, say) is asked at once. A request is answered once the FD's seqno reaches it.
   */
  #maybeRequest(dest: Destination): void {
    const fd = dest.fd;
    if (fd === undefined) return;
    let request = dest.request;
    if (request !== undefined && !seqnoNewer(request.seqno, fd.seqno)) request = dest.request = undefined;
    const targets = this.#requestTargets(dest);
    if (targets.length === 0) return;
    if (request === undefined) {
      const seqno = (fd.seqno + 1) & SEQNO_MASK;
      request = dest.request = { seqno, nextAt: this.#now + this.#config.requestTimeoutTicks, sends: 1, asked: new Set() };
      this.#remember(`${dest.id}/${seqno}`, this.#self);
    }
    for (const to of targets) {
      if (request.asked.has(to)) continue;
      request.asked.add(to);
      this.#stats.requestsSent++;
      this.#sendRequest(to, dest.id, request.seqno, this.#config.requestHops);
    }
  }

  /**
   * An unanswered request: resend it while it is still needed, up to requestResends times; then
   * rest one update interval, then forget it (a later update may start a new one).
   */
  #requestTimer(dest: Destination, request: Request): void {
    if (request.sends <= this.#config.requestResends) {
      request.sends++;
      request.nextAt = this.#now + this.#config.requestTimeoutTicks;
      request.asked.clear();
      this.#maybeRequest(dest);
      if (dest.request === request && request.asked.size === 0) dest.request = undefined;
    } else if (request.sends === this.#config.requestResends + 1) {
      request.sends++;
      request.nextAt = this.#now + this.#config.updateIntervalTicks;
    } else {
      dest.request = undefined;
    }
  }

  #sendRequest(to: string, destination: string, seqno: number, hops: number): void {
    this.#out.send({ to, message: { t: "mesh-req", r: [destination, seqno, hops] } });
  }

  #onRequest(from: string, message: MeshRequest): void {
    if (!this.#neighbours.has(from)) {
      this.#stats.notNeighbour++;
      return;
    }
    const [id, seqno, hops] = message.r;
    if (id === this.#self) {
      this.#stats.requestsAnswered++;
      // RFC 8966 raises the seqno by one; jumping to the requested one also repairs a seqno this
      // node forgot in a restart.
      if (seqnoNewer(seqno, this.#seqno)) this.#bumpSeqno(seqno);
      else this.#sendUpdate(from, [[this.#self, this.#seqno, 0]], false);
      return;
    }
    const dest = this.#dests.get(id);
    if (dest === undefined) return;
    const via = dest.selected;
    const route = via === undefined ? undefined : dest.routes.get(via);
    if (route !== undefined && via !== from && !seqnoNewer(seqno, route.seqno)) {
      // Our route is recent enough: answer it (the requester checks its feasibility).
      this.#stats.requestsAnswered++;
      this.#sendUpdate(from, [[id, route.seqno, route.metric]], false);
      return;
    }
    if (hops < 2) return;
    const key = `${id}/${seqno}`;
    const seen = this.#seen.get(key);
    if (seen !== undefined && seen.from !== from && this.#now - seen.at < this.#config.requestTimeoutTicks) return;
    const to = via !== undefined && via !== from ? via : this.#cheapestAdvertiser(dest, from);
    if (to === undefined) return;
    this.#remember(key, from);
    this.#stats.requestsForwarded++;
    this.#sendRequest(to, id, seqno, hops - 1);
  }

  #cheapestAdvertiser(dest: Destination, except: string): string | undefined {
    let best: string | undefined;
    let bestMetric: number = INF;
    for (const [via, route] of dest.routes) {
      if (via !== except && (route.metric < bestMetric || (route.metric === bestMetric && best !== undefined && via < best))) {
        best = via;
        bestMetric = route.metric;
      }
    }
    return bestMetric < INF ? best : undefined;
  }

  #remember(key: string, from: string): void {
    this.#seen.delete(key);
    if (this.#seen.size >= this.#config.requestsSeenMax) {
      const oldest = this.#seen.keys().next();
      if (oldest.done !== true) this.#seen.delete(oldest.value);
    }
    this.#seen.set(key, { at: this.#now, from });
  }

  // ---- data --------------------------------------------------------------------------------

  #onData(_from: string, message: MeshData): void {
    const [source, destination, ttl, hops, payload] = message.d;
    if (destination === this.#self) {
      this.#stats.dataDelivered++;
      this.#out.emit({ type: "delivered", source, payload, hops: hops + 1 });
      return;
    }
    if (ttl <= 1 || hops + 1 >= MESH_LIMITS.hopsMax) {
      this.#stats.dropTtl++;
      return;
    }
    const next = this.nextHop(destination);
    if (next === undefined) {
      this.#stats.dropNoRoute++;
      return;
    }
    this.#stats.dataForwarded++;
    this.#out.send({ to: next, message: { t: "mesh-data", d: [source, destination, ttl - 1, hops + 1, payload] } });
  }

  // ---- timers and output -------------------------------------------------------------------

  #sweep(): void {
    const now = this.#now;
    for (const dest of this.#dests.values()) {
      let expired = false;
      for (const [via, route] of dest.routes) {
        if (route.expiresAt <= now && this.#deleteRoute(dest, via)) expired = true;
      }
      if (expired) this.#reselect(dest);
      if (dest.request !== undefined && now >= dest.request.nextAt) this.#requestTimer(dest, dest.request);
      if (dest.selected !== undefined) continue;
      if (dest.adv !== undefined && dest.holdUntil <= now) dest.adv = undefined;
      if (dest.routes.size === 0 && dest.adv === undefined && dest.request === undefined && now - dest.idleSince >= this.#config.sourceGcTicks) {
        this.#dests.delete(dest.id);
      }
    }
    for (const [key, seen] of this.#seen) {
      if (now - seen.at < this.#config.requestTimeoutTicks) break;
      this.#seen.delete(key);
    }
  }

  /** Our advertisement of `id` for neighbour `to`; `triggered` poisons (rather than omits) routes through `to`. */
  #entry(id: string, to: string, triggered: boolean): MeshRouteWire | undefined {
    if (id === this.#self) return [id, this.#seqno, 0];
    const dest = this.#dests.get(id);
    const adv = dest?.adv;
    if (dest === undefined || adv === undefined) return undefined;
    if (adv.metric < INF && dest.selected === to && this.#config.splitHorizon) return triggered ? [id, adv.seqno, INF] : undefined;
    return [id, adv.seqno, adv.metric];
  }

  #flush(): void {
    if (this.#dumps.size > 0) {
      for (const [to, ask] of this.#dumps) {
        const entries: MeshRouteWire[] = [[this.#self, this.#seqno, 0]];
        for (const id of this.#dests.keys()) {
          const entry = this.#entry(id, to, false);
          if (entry !== undefined) entries.push(entry);
        }
        this.#sendUpdate(to, entries, ask);
      }
    }
    // Triggered updates are datagrams and may be lost: each is repeated (with the state of the
    // moment) triggeredRepeats times, triggeredRepeatTicks apart, as babeld does for urgent ones.
    let ids: Set<string> | undefined;
    while (this.#repeats.length > 0 && (this.#repeats[0] as Repeat).at <= this.#now) {
      const repeat = this.#repeats.shift() as Repeat;
      ids ??= new Set(this.#dirty);
      for (const id of repeat.ids) ids.add(id);
      if (repeat.left > 1) this.#repeats.push({ at: this.#now + this.#config.triggeredRepeatTicks, left: repeat.left - 1, ids: repeat.ids });
    }
    if (this.#dirty.size > 0 && this.#config.triggeredRepeats > 0) {
      this.#repeats.push({ at: this.#now + this.#config.triggeredRepeatTicks, left: this.#config.triggeredRepeats, ids: [...this.#dirty] });
    }
    ids ??= this.#dirty;
    if (ids.size > 0) {
      for (const to of this.#neighbours.keys()) {
        if (this.#dumps.has(to)) continue; // the dump just sent is as new
        const entries: MeshRouteWire[] = [];
        for (const id of ids) {
          const entry = this.#entry(id, to, true);
          if (entry !== undefined) entries.push(entry);
        }
        if (entries.length > 0) this.#sendUpdate(to, entries, false);
      }
    }
    this.#dirty.clear();
    this.#dumps.clear();
  }

  #sendUpdate(to: string, entries: readonly MeshRouteWire[], ask: boolean): void {
    const max = MESH_LIMITS.updateEntriesMax;
    for (let i = 0; i === 0 || i < entries.length; i += max) {
      this.#stats.updatesSent++;
      this.#counter = (this.#counter + 1) >>> 0;
      this.#out.send({
        to, message: { t: "mesh-update", iv: this.#config.updateIntervalTicks, n: this.#counter, q: ask && i === 0, u: entries.slice(i, i + max) },
      });
    }
  }
}
