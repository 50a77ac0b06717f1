// `pk sim --scenario replica-scale --nodes N [--seed S] [--loss P] [--origins O] [--json]`: gossip
// topics at scale (issue 5, acceptance 1). N Gossip cores (src/core/collective/gossip.ts; cores,
// not whole kernels) on a light simulated network: each message is delivered 1..3 ticks after it
// is sent, or lost with probability `loss` (default 5%), all drawn from the seed. Every node knows
// every other as a live peer (SWIM's view in a healthy cluster).
//
// Start: O origins (default min(N, 1,000)) each own one row, "scale" / "node/<id>", and every node
// starts converged with all O rows (restored, rows shared between the cores to save memory). Then:
//
//  - steady state: bytes and messages each node sends per exchange period, over the
//    `steadyPeriods` periods before the writes and the quiet periods between them (mean over
//    node·periods, and the largest node·period);
//  - dissemination, `writes` times: a random origin writes a new value; periods until every node
//    holds it. c = periods / log2(N) (log base 2). Bytes and messages per node per period over the
//    periods in which a write was spreading are reported apart.
//
// Why O is capped at 1,000 by default: every node holds every origin's row, so memory grows with
// N·O (about 150 bytes per row held); 10,000 × 10,000 would be 10⁸ rows. Digests are bounded per
// message by construction (digestEntriesMax), so bytes per node per period do not depend on O
// once O exceeds one digest (24 entries); n = 1,000 with O = 1,000 and n = 10,000 with O = 1,000
// are both 40× beyond it. `--origins` sets O (up to N).
//
// Messages: sizes are the exact MessagePack size (packedSize) plus the 52-byte envelope; every
// `verifyEvery`-th message (every one below 2,000 nodes) also goes through the real encoder and the
// schema check, asserting the size and that it decodes, and that one is delivered decoded; the
// others are delivered as the objects sent (cores never mutate a message).
//
// Signatures: rows carry their writer's key and signature as on a real node, with the simulator's
// stand-in signatures (src/sim/identity.ts: real keys, so ids derive from them, and a cheap
// keyed fingerprint in place of Ed25519), each node checking rows through its own RecordSigner.
import { performance } from "node:perf_hooks";
import { RecordSigner } from "../core/body/trust.ts";
import { ENVELOPE_BYTES, Gossip, GOSSIP_DEFAULTS, makeRow, signRow, type GossipConfig, type GossipPeers, type GossipRow } from "../core/collective/gossip.ts";
import { isGossipWire, packedSize, type GossipMessage } from "../core/collective/gossip-wire.ts";
import { LIMITS } from "../core/util/limits.ts";
import { createRng, type Rng } from "../core/util/rng.ts";
import { packValue, unpackValue } from "../core/wire/codec.ts";
import { createSimIdentity } from "./identity.ts";

const DELAY_MIN = 1;
const DELAY_MAX = 3;
/** Simulated wall clock: a realistic epoch in ms (so HLC stamps encode as they do in a real node), 10 ms a tick. */
const BASE_MS = 1_760_000_000_000;
const MS_PER_TICK = 10;

/** Bounds the scenario checks (exit non-zero when one is exceeded). Measured figures: see the test. */
export const REPLICA_SCALE_BOUNDS = {
  /**
   * Periods for a write to reach every node, over log2(n). Push-pull anti-entropy with one partner
   * a period takes log3(n) + O(log log n) rounds (Karp et al. 2000); a four-message exchange under
   * 5% loss is measured at c ≈ 0.6–0.9; 1.5 leaves room for unlucky seeds.
   */
  cMax: 1.5,
  /**
   * Mean bytes each node sends per period, steady state and while a write spreads: one SYN digest
   * (24 entries, ~540 bytes with the envelope) plus answers; bounded by the digest size, not by n.
   */
  bytesPerNodePerPeriodMax: 2_000,
  /** Largest bytes one node sent in one period: at most 1 + repliesPerPeriodMax datagrams. */
  bytesPerNodePeriodPeakMax: (1 + GOSSIP_DEFAULTS.repliesPerPeriodMax) * LIMITS.datagramBytesMax,
} as const;

export interface ReplicaScaleOptions {
  readonly nodes: number;
  readonly seed: number;
  /** Probability a message is lost (default 0.05). */
  readonly loss?: number;
  /** Origins with a row (default min(nodes, 1,000)). */
  readonly origins?: number;
  /** Steady-state window in periods (default 10). */
  readonly steadyPeriods?: number;
  /** Writes spread one after the other (default 3). */
  readonly writes?: number;
  /** Check every k-th message through the real codec (default 1 below 2,000 nodes, else 50). */
  readonly verifyEvery?: number;
  readonly config?: GossipConfig;
}

export interface ReplicaScaleReport {
  readonly ok: boolean;
  readonly result: Record<string, unknown>;
}

interface Load {
  bytesMean: number;
  bytesMax: number;
  messagesMean: number;
  periods: number;
}

interface InFlight {
  readonly from: number;
  readonly to: number;
  readonly message: GossipMessage;
}

/** A node's peers: every other node, as a view (no array per node). */
class PeerView implements GossipPeers {
  readonly #ids: readonly string[];
  readonly #self: number;

  constructor(ids: readonly string[], self: number) {
    this.#ids = ids;
    this.#self = self;
  }

  get length(): number {
    return this.#ids.length - 1;
  }

  at(index: number): string | undefined {
    return this.#ids[index >= this.#self ? index + 1 : index];
  }
}

/** Node `index` of run `seed`: a key from both, its id (the key's) and its stand-in signer. */
export function simGossipNode(seed: number, index: number): { readonly id: string; readonly signer: RecordSigner } {
  const bytes = new Uint8Array(32);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x5ca1e5ee);
  view.setFloat64(4, seed);
  view.setUint32(12, index);
  const identity = createSimIdentity(bytes);
  return { id: identity.id, signer: new RecordSigner(identity, identity) };
}

class ScaleNet {
  readonly ids: string[] = [];
  readonly signers: RecordSigner[] = [];
  readonly index = new Map<string, number>();
  readonly nodes: Gossip[] = [];
  readonly peers: PeerView[] = [];
  now = 0;
  /** Per node, bytes and messages sent in the current accounting period. */
  readonly periodBytes: Float64Array;
  readonly periodMessages: Float64Array;
  largestMessage = 0;
  verified = 0;
  lost = 0;
  onChanged: (node: number, row: GossipRow) => void = () => {};
  readonly #rng: Rng;
  readonly #loss: number;
  readonly #verifyEvery: number;
  readonly #buckets: InFlight[][] = [];
  readonly #seed: number;
  #sent = 0;

  constructor(n: number, seed: number, loss: number, verifyEvery: number, config: GossipConfig) {
    this.#seed = seed;
    this.#rng = createRng(seed, 7);
    this.#loss = loss;
    this.#verifyEvery = verifyEvery;
    for (let d = 0; d <= DELAY_MAX; d++) this.#buckets.push([]);
    for (let i = 0; i < n; i++) {
      const { id, signer } = simGossipNode(seed, i);
      if (this.index.has(id)) throw new Error(`seed ${seed}: two nodes share the id ${id}`);
      this.signers.push(signer);
      this.ids.push(id);
      this.index.set(id, i);
    }
    for (let i = 0; i < n; i++) {
      this.nodes.push(new Gossip(this.ids[i] as string, this.signers[i] as RecordSigner, createRng(seed, 1000 + i), config));
      this.peers.push(new PeerView(this.ids, i));
    }
    this.periodBytes = new Float64Array(n);
    this.periodMessages = new Float64Array(n);
  }

  get physicalMs(): number {
    return BASE_MS + this.now * MS_PER_TICK;
  }

  tick(): void {
    this.now++;
    const slot = this.now % this.#buckets.length;
    const bucket = this.#buckets[slot] as InFlight[];
    if (bucket.length > 0) {
      this.#buckets[slot] = [];
      for (const m of bucket) {
        (this.nodes[m.to] as Gossip).step(this.ids[m.from] as string, m.message);
        this.drain(m.to);
      }
    }
    const ms = this.physicalMs;
    for (let i = 0; i < this.nodes.length; i++) {
      (this.nodes[i] as Gossip).tick(ms, this.peers[i] as PeerView);
      this.drain(i);
    }
  }

  drain(i: number): void {
    const node = this.nodes[i] as Gossip;
    if (!node.hasReady()) return;
    const ready = node.ready();
    for (const row of ready.changed) this.onChanged(i, row);
    for (const out of ready.messages) {
      const to = this.index.get(out.to);
      if (to === undefined) throw new Error(`seed ${this.#seed}: message to unknown node ${out.to}`);
      let message = out.message;
      const size = packedSize(message) + ENVELOPE_BYTES;
      if (this.#sent++ % this.#verifyEvery === 0) {
        const bytes = packValue(message);
        if (bytes.length + ENVELOPE_BYTES !== size) throw new Error(`seed ${this.#seed}: packedSize ${size - ENVELOPE_BYTES} but encoded ${bytes.length}`);
        const decoded = unpackValue(bytes);
        if (!isGossipWire(decoded)) throw new Error(`seed ${this.#seed}: a gossip message does not pass its schema`);
        message = decoded;
        this.verified++;
      }
      if (out.channel === "datagram" && size > LIMITS.datagramBytesMax) throw new Error(`seed ${this.#seed}: gossip datagram of ${size} bytes`);
      this.largestMessage = Math.max(this.largestMessage, size);
      this.periodBytes[i] = (this.periodBytes[i] as number) + size;
      this.periodMessages[i] = (this.periodMessages[i] as number) + 1;
      if (this.#rng.chance(this.#loss)) {
        this.lost++;
        continue;
      }
      const at = this.now + DELAY_MIN + this.#rng.int(DELAY_MAX - DELAY_MIN + 1);
      (this.#buckets[at % this.#buckets.length] as InFlight[]).push({ from: i, to, message });
    }
  }
}

/** Runs one size; throws on a broken bound of the network (oversize, undecodable) with the seed. */
export function runReplicaScaleOnce(options: ReplicaScaleOptions): Record<string, unknown> & { c: number; steady: Load; spreading: Load; writePeriods: number[] } {
  const started = performance.now();
  const n = options.nodes;
  if (n < 2) throw new Error("replica-scale: needs at least 2 nodes");
  const seed = options.seed;
  const loss = options.loss ?? 0.05;
  const origins = Math.min(n, options.origins ?? Math.min(n, 1000));
  const steadyPeriods = options.steadyPeriods ?? 10;
  const writes = options.writes ?? 3;
  const verifyEvery = options.verifyEvery ?? (n < 2000 ? 1 : 50);
  const config = options.config ?? GOSSIP_DEFAULTS;
  const period = config.periodTicks;
  const net = new ScaleNet(n, seed, loss, verifyEvery, config);
  // Converged start: origin i owns "scale" / "node/<id>" at version 1, signed; every node holds them all.
  const rows: GossipRow[] = [];
  for (let i = 0; i < origins; i++) {
    const id = net.ids[i] as string;
    rows.push(signRow(net.signers[i] as RecordSigner, makeRow("scale", `node/${id}`, new Uint8Array(16).fill(i & 0xff), BASE_MS - 60_000, i, id, 1)));
  }
  for (const node of net.nodes) node.restore(rows);
  const setupSeconds = (performance.now() - started) / 1000;

  // Accounting by global periods of periodTicks ticks; each period is "steady" or "spreading".
  let spreading = false;
  let spreadThisPeriod = false;
  const steady: Load = { bytesMean: 0, bytesMax: 0, messagesMean: 0, periods: 0 };
  const spread: Load = { bytesMean: 0, bytesMax: 0, messagesMean: 0, periods: 0 };
  let measuring = false;
  const closePeriod = (): void => {
    const load = spreadThisPeriod ? spread : steady;
    if (measuring) {
      let bytes = 0;
      let messages = 0;
      for (let i = 0; i < n; i++) {
        const b = net.periodBytes[i] as number;
        bytes += b;
        messages += net.periodMessages[i] as number;
        if (b > load.bytesMax) load.bytesMax = b;
      }
      load.bytesMean += bytes / n;
      load.messagesMean += messages / n;
      load.periods++;
    }
    net.periodBytes.fill(0);
    net.periodMessages.fill(0);
    spreadThisPeriod = spreading;
  };
  const run = (ticks: number, until?: () => boolean): boolean => {
    for (let t = 0; t < ticks; t++) {
      net.tick();
      if (net.now % period === 0) closePeriod();
      if (until?.() === true) return true;
    }
    return false;
  };

  // Warm-up: the first SYNs are jittered over one period; start measuring on a period boundary.
  run(2 * period - (net.now % period));
  measuring = true;
  run(steadyPeriods * period);

  const scenarioRng = createRng(seed, 11);
  const writePeriods: number[] = [];
  const cap = Math.ceil(10 * Math.log2(n) + 20) * period;
  for (let w = 0; w < writes; w++) {
    const writer = scenarioRng.int(origins);
    const writerId = net.ids[writer] as string;
    const have = new Uint8Array(n);
    let count = 0;
    let target = -1;
    net.onChanged = (node, row) => {
      if (row.origin === writerId && row.version === target && have[node] === 0) {
        have[node] = 1;
        count++;
      }
    };
    const startTick = net.now;
    spreading = true;
    spreadThisPeriod = true;
    const result = (net.nodes[writer] as Gossip).publish("scale", `node/${writerId}`, new Uint8Array(16).fill(w + 1));
    if (!result.ok) throw new Error(`seed ${seed}: publish failed: ${result.error}`);
    target = result.row.version;
    net.drain(writer);
    if (count !== 1) throw new Error(`seed ${seed}: the writer did not report its own write`);
    if (!run(cap, () => count === n)) {
      throw new Error(`seed ${seed}: n = ${n}: write ${w + 1} reached ${count} of ${n} nodes after ${cap / period} periods`);
    }
    writePeriods.push(round((net.now - startTick) / period, 2));
    spreading = false;
    // Let the write's last answers drain before the next one.
    run(2 * period);
  }
  net.onChanged = () => {};
  const finish = (load: Load): Load => ({
    bytesMean: round(load.bytesMean / Math.max(1, load.periods), 1),
    bytesMax: load.bytesMax,
    messagesMean: round(load.messagesMean / Math.max(1, load.periods), 3),
    periods: load.periods,
  });
  const worst = Math.max(...writePeriods);
  const memory = process.memoryUsage();
  const stats = (net.nodes[0] as Gossip).stats();
  return {
    nodes: n,
    origins,
    loss,
    writePeriods,
    periodsToAll: worst,
    c: round(worst / Math.log2(n), 3),
    steady: finish(steady),
    spreading: finish(spread),
    largestMessageBytes: net.largestMessage,
    lostMessages: net.lost,
    verifiedMessages: net.verified,
    node0: { rows: stats.rows, origins: stats.origins, repliesRefused: stats.repliesRefused, invalid: stats.invalid },
    wallSeconds: round((performance.now() - started) / 1000, 1),
    setupSeconds: round(setupSeconds, 1),
    heapMB: Math.round(memory.heapUsed / 2 ** 20),
    rssMB: Math.round(memory.rss / 2 ** 20),
  };
}

/** The scenario; never throws (a failure keeps its seed). */
export function runReplicaScale(options: ReplicaScaleOptions): ReplicaScaleReport {
  const started = performance.now();
  try {
    const r = runReplicaScaleOnce(options);
    const problems: string[] = [];
    if (r.c > REPLICA_SCALE_BOUNDS.cMax) problems.push(`a write took ${r.periodsToAll} periods = ${r.c}·log2 n (bound ${REPLICA_SCALE_BOUNDS.cMax})`);
    for (const [name, load] of [["steady", r.steady], ["spreading", r.spreading]] as const) {
      if (load.bytesMean > REPLICA_SCALE_BOUNDS.bytesPerNodePerPeriodMax) {
        problems.push(`${name}: ${load.bytesMean} bytes per node per period (bound ${REPLICA_SCALE_BOUNDS.bytesPerNodePerPeriodMax})`);
      }
      if (load.bytesMax > REPLICA_SCALE_BOUNDS.bytesPerNodePeriodPeakMax) {
        problems.push(`${name}: a node sent ${load.bytesMax} bytes in one period (bound ${REPLICA_SCALE_BOUNDS.bytesPerNodePeriodPeakMax})`);
      }
    }
    const result = {
      scenario: "replica-scale",
      seed: options.seed,
      ...r,
      log: "log2",
      bounds: REPLICA_SCALE_BOUNDS,
      ...(problems.length > 0 ? { error: problems.join("; ") } : {}),
    };
    return { ok: problems.length === 0, result };
  } catch (error) {
    return {
      ok: false,
      result: {
        scenario: "replica-scale", seed: options.seed, nodes: options.nodes,
        error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
        wallSeconds: round((performance.now() - started) / 1000, 1),
      },
    };
  }
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
