// A small deterministic simulator for Mesh cores only (tests; not the kernel's SimCluster). N cores,
// a topology of undirected links with costs that can be cut and restored, a per-message delay in
// [delayMin, delayMax] ticks and optional loss, all drawn from one seeded Rng, in virtual time.
//
// Every message goes through the project's codec (packValue / unpackValue, plain MessagePack) and
// the mesh schemas (validateMesh), and every datagram is checked against LIMITS.datagramBytesMax
// after the 44-byte envelope. A message travels only over a link that is up when it arrives.
//
// Link sensing: the endpoints of a link are told (linkUp / linkDown) `detectTicks` after it is cut
// or restored: the time the kernel's failure detector would take. `kill(i)` cuts all of node i's
// links and stops it.
import { Mesh, MESH_DEFAULTS, type MeshConfig, type MeshEvent } from "../../src/core/collective/mesh.ts";
import { validateMesh, type MeshMessage } from "../../src/core/collective/mesh-wire.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import { createRng, type Rng } from "../../src/core/util/rng.ts";
import { packValue, unpackValue } from "../../src/core/wire/codec.ts";

export const ENVELOPE_BYTES = 44;

/** Node i's id: 16 hex characters, as the kernel's ids are. */
export function meshId(i: number): string {
  return (0x7000_0000 + i).toString(16).padStart(16, "0");
}

export interface MeshSimOptions {
  readonly n: number;
  readonly seed: number;
  readonly config?: Partial<MeshConfig>;
  /** Probability that a message is lost. */
  readonly loss?: number;
  readonly delayMin?: number;
  readonly delayMax?: number;
  /** Ticks between a link changing and its endpoints being told. */
  readonly detectTicks?: number;
}

export interface MeshSimEvent {
  readonly tick: number;
  readonly node: number;
  readonly event: MeshEvent;
}

interface Link {
  readonly a: number;
  readonly b: number;
  cost: number;
  up: boolean;
}

interface InFlight {
  readonly from: number;
  readonly to: number;
  readonly body: Uint8Array;
}

interface Notice {
  readonly a: number;
  readonly b: number;
  readonly up: boolean;
}

export class MeshSim {
  readonly nodes: Mesh[] = [];
  readonly events: MeshSimEvent[] = [];
  readonly dead = new Set<number>();
  readonly seed: number;
  readonly config: MeshConfig;
  readonly detectTicks: number;
  now = 0;
  loss: number;
  sent = 0;
  lost = 0;
  /** Messages whose link was down (or missing) when they arrived. */
  unlinked = 0;
  /** Largest datagram (envelope included) per message type. */
  readonly bytesMax: Record<string, number> = {};
  /** Called for every message a core sends, before loss. */
  onSend: ((from: number, to: number, message: MeshMessage) => void) | undefined;
  readonly #rng: Rng;
  readonly #delayMin: number;
  readonly #delayMax: number;
  readonly #index = new Map<string, number>();
  readonly #links = new Map<string, Link>();
  readonly #queue = new Map<number, InFlight[]>();
  readonly #notices = new Map<number, Notice[]>();

  constructor(options: MeshSimOptions) {
    this.seed = options.seed;
    this.config = { ...MESH_DEFAULTS, ...options.config };
    this.#rng = createRng(options.seed, 11);
    this.loss = options.loss ?? 0;
    this.#delayMin = options.delayMin ?? 1;
    this.#delayMax = options.delayMax ?? 3;
    this.detectTicks = options.detectTicks ?? 0;
    for (let i = 0; i < options.n; i++) {
      this.#index.set(meshId(i), i);
      this.nodes.push(new Mesh(meshId(i), createRng(options.seed * 7919 + i, 5), this.config));
    }
  }

  get delayMax(): number {
    return this.#delayMax;
  }

  node(i: number): Mesh {
    return this.nodes[i] as Mesh;
  }

  id(i: number): string {
    return meshId(i);
  }

  index(id: string): number {
    const i = this.#index.get(id);
    if (i === undefined) throw new Error(`seed ${this.seed}: unknown id ${id}`);
    return i;
  }

  // ---- topology ----------------------------------------------------------------------------

  /** Adds a link that is up at once, both endpoints told now. */
  connect(a: number, b: number, cost = 1): void {
    const link: Link = { a: Math.min(a, b), b: Math.max(a, b), cost, up: true };
    this.#links.set(key(a, b), link);
    this.node(a).linkUp(this.id(b), cost);
    this.node(b).linkUp(this.id(a), cost);
  }

  linked(a: number, b: number): boolean {
    return this.#links.get(key(a, b))?.up === true;
  }

  links(): Array<{ a: number; b: number; cost: number; up: boolean }> {
    return [...this.#links.values()].map((l) => ({ ...l }));
  }

  /** Cuts a link; its endpoints learn it detectTicks later. */
  cut(a: number, b: number): void {
    const link = this.#links.get(key(a, b));
    if (link === undefined || !link.up) return;
    link.up = false;
    this.#notice({ a, b, up: false });
  }

  /** Restores a cut link; its endpoints learn it detectTicks later. */
  restore(a: number, b: number): void {
    const link = this.#links.get(key(a, b));
    if (link === undefined || link.up || this.dead.has(a) || this.dead.has(b)) return;
    link.up = true;
    this.#notice({ a, b, up: true });
  }

  /** Node i dies: every link of it goes down, it stops ticking and hears nothing. */
  kill(i: number): void {
    this.dead.add(i);
    for (const link of this.#links.values()) if (link.a === i || link.b === i) this.cut(link.a, link.b);
  }

  #notice(notice: Notice): void {
    if (this.detectTicks === 0) return this.#apply(notice);
    const at = this.now + this.detectTicks;
    let bucket = this.#notices.get(at);
    if (bucket === undefined) this.#notices.set(at, bucket = []);
    bucket.push(notice);
  }

  #apply(notice: Notice): void {
    const cost = this.#links.get(key(notice.a, notice.b))?.cost ?? 1;
    for (const [x, y] of [[notice.a, notice.b], [notice.b, notice.a]] as const) {
      if (this.dead.has(x)) continue;
      if (notice.up) this.node(x).linkUp(this.id(y), cost);
      else this.node(x).linkDown(this.id(y));
      this.#drain(x);
    }
  }

  // ---- time --------------------------------------------------------------------------------

  /** Runs up to `ticks` ticks; stops early (returning true) once `until` holds after a tick. */
  run(ticks: number, until?: () => boolean): boolean {
    for (let t = 0; t < ticks; t++) {
      this.tick();
      if (until?.()) return true;
    }
    return false;
  }

  tick(): void {
    this.now++;
    const notices = this.#notices.get(this.now);
    if (notices !== undefined) {
      this.#notices.delete(this.now);
      for (const notice of notices) this.#apply(notice);
    }
    const due = this.#queue.get(this.now);
    if (due !== undefined) {
      this.#queue.delete(this.now);
      for (const message of due) this.#deliver(message);
    }
    for (let i = 0; i < this.nodes.length; i++) if (!this.dead.has(i)) this.node(i).tick();
    for (let i = 0; i < this.nodes.length; i++) this.#drain(i);
  }

  /** Sends data from node a to node b through the mesh. */
  send(a: number, b: number, payload: Uint8Array): string {
    const result = this.node(a).send(this.id(b), payload);
    this.#drain(a);
    return result;
  }

  /** Delivered events at node b from node a. */
  delivered(a: number, b: number): Array<{ tick: number; hops: number; payload: Uint8Array }> {
    const out: Array<{ tick: number; hops: number; payload: Uint8Array }> = [];
    for (const e of this.events) {
      if (e.node === b && e.event.type === "delivered" && e.event.source === this.id(a)) {
        out.push({ tick: e.tick, hops: e.event.hops, payload: e.event.payload });
      }
    }
    return out;
  }

  // ---- routes ------------------------------------------------------------------------------

  /**
   * The path from a to b following next hops: the node indices after a, ending in b; "none" when
   * some node on the way has no route, "loop" when a node repeats, "broken" when a next hop is not
   * a live neighbour.
   */
  path(a: number, b: number): number[] | "none" | "loop" | "broken" {
    const path: number[] = [];
    const seen = new Set<number>([a]);
    let at = a;
    while (at !== b) {
      const next = this.node(at).nextHop(this.id(b));
      if (next === undefined) return "none";
      const j = this.index(next);
      if (seen.has(j)) return "loop";
      seen.add(j);
      path.push(j);
      at = j;
    }
    return path;
  }

  /** Throws if any forwarding loop exists among live nodes (Babel is loop-free at every instant). */
  assertLoopFree(): void {
    const n = this.nodes.length;
    for (let a = 0; a < n; a++) {
      if (this.dead.has(a)) continue;
      for (let b = 0; b < n; b++) {
        if (a !== b && this.path(a, b) === "loop") throw new Error(`seed ${this.seed}: forwarding loop from ${a} to ${b} at tick ${this.now}`);
      }
    }
  }

  /** Shortest distances from `a` over the links that are up (Dijkstra; Infinity when unreachable). */
  distances(a: number): number[] {
    const n = this.nodes.length;
    const dist = new Array<number>(n).fill(Infinity);
    const done = new Array<boolean>(n).fill(false);
    const adj: Array<Array<[number, number]>> = Array.from({ length: n }, () => []);
    for (const l of this.#links.values()) {
      if (!l.up) continue;
      adj[l.a]?.push([l.b, l.cost]);
      adj[l.b]?.push([l.a, l.cost]);
    }
    dist[a] = 0;
    for (;;) {
      let u = -1;
      for (let i = 0; i < n; i++) if (!done[i] && dist[i]! < Infinity && (u < 0 || dist[i]! < dist[u]!)) u = i;
      if (u < 0) break;
      done[u] = true;
      for (const [v, c] of adj[u]!) if (dist[u]! + c < dist[v]!) dist[v] = dist[u]! + c;
    }
    return dist;
  }

  /**
   * True when every live node routes to every node it can reach over the links that are up, along
   * a shortest path (its metric equals the Dijkstra distance), and has no route to the others.
   */
  converged(): boolean {
    const n = this.nodes.length;
    for (let a = 0; a < n; a++) {
      if (this.dead.has(a)) continue;
      const dist = this.distances(a);
      const mesh = this.node(a);
      for (let b = 0; b < n; b++) {
        if (b === a) continue;
        const d = dist[b]!;
        if (d === Infinity) {
          if (mesh.nextHop(this.id(b)) !== undefined) return false;
        } else if (mesh.metric(this.id(b)) !== d) {
          return false;
        }
      }
    }
    return true;
  }

  // ---- delivery ----------------------------------------------------------------------------

  #drain(i: number): void {
    const mesh = this.node(i);
    if (!mesh.hasReady()) return;
    const ready = mesh.ready();
    for (const event of ready.events) this.events.push({ tick: this.now, node: i, event });
    if (this.dead.has(i)) return;
    for (const out of ready.messages) {
      const to = this.index(out.to);
      const body = packValue(out.message);
      const size = body.length + ENVELOPE_BYTES;
      if (size > LIMITS.datagramBytesMax) throw new Error(`seed ${this.seed}: ${out.message.t} datagram of ${size} bytes`);
      this.bytesMax[out.message.t] = Math.max(this.bytesMax[out.message.t] ?? 0, size);
      this.onSend?.(i, to, out.message);
      this.sent++;
      if (this.loss > 0 && this.#rng.chance(this.loss)) {
        this.lost++;
        continue;
      }
      const at = this.now + this.#delayMin + this.#rng.int(this.#delayMax - this.#delayMin + 1);
      let bucket = this.#queue.get(at);
      if (bucket === undefined) this.#queue.set(at, bucket = []);
      bucket.push({ from: i, to, body });
    }
  }

  #deliver(message: InFlight): void {
    if (this.dead.has(message.to) || !this.linked(message.from, message.to)) {
      this.unlinked++;
      return;
    }
    const decoded = validateMesh(unpackValue(message.body));
    if (!decoded.ok) throw new Error(`seed ${this.seed}: decode failed: ${decoded.detail}`);
    this.node(message.to).step(this.id(message.from), decoded.message);
    this.#drain(message.to);
  }
}

function key(a: number, b: number): string {
  return a < b ? `${a}-${b}` : `${b}-${a}`;
}

// ---- topologies ------------------------------------------------------------------------------

export function line(sim: MeshSim, n = sim.nodes.length): void {
  for (let i = 0; i + 1 < n; i++) sim.connect(i, i + 1);
}

export function ring(sim: MeshSim, n = sim.nodes.length): void {
  for (let i = 0; i < n; i++) sim.connect(i, (i + 1) % n);
}

/**
 * A connected random graph: a random tree (node i links to a random earlier node) plus `extra`
 * random edges, costs in [1, costMax], from the given Rng.
 */
export function randomGraph(sim: MeshSim, rng: Rng, extra: number, costMax = 1): void {
  const n = sim.nodes.length;
  for (let i = 1; i < n; i++) sim.connect(i, rng.int(i), 1 + rng.int(costMax));
  for (let k = 0; k < extra; k++) {
    const a = rng.int(n);
    const b = rng.int(n);
    if (a !== b && !sim.linked(a, b)) sim.connect(a, b, 1 + rng.int(costMax));
  }
}
