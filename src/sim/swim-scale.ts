// `pk sim --scenario swim-scale --nodes N [--seed S] [--json]`: the SWIM core at scale (acceptance 2
// of the SWIM issue). N Swim cores (src/core/body/swim.ts; cores, not whole kernels) on a
// deterministic simulated network, everyone starting with full membership at steady state. It
// measures, for N and for n = 10 in the same run:
//
//  - load: messages (and bytes) each member sends per probe period at steady state, datagrams and
//    push-pull streams together; the N figure must stay within 1.5× of the n = 10 one;
//  - failure: one member crashes; probe periods until the first suspicion, the first death and
//    the death at every survivor (the last includes Lifeguard's suspicion timeout, which is
//    suspicionMult·log10(n) periods at least, by design);
//  - dissemination: then a new member joins, known to one member; probe periods until every
//    member holds it alive (one update spreading, infection-style). c = periods / ln(n) must be
//    ≤ 2, the same bound as the n = 100 unit test.
//
// Every message goes through the real codec (encodeMessage / decodeMessage, so TypeBox validation
// too) and every datagram is checked against LIMITS.datagramBytesMax after the 52-byte envelope.
// Bytes are counted as body + 52 (envelope) for datagrams and streams alike. Network: each message
// is delivered 1..3 ticks after it is sent (uniform, from the seeded Rng), no loss. Ids are the hex
// of the key's first 8 bytes (cheap, still derived from the key; as test/core/swim-harness.ts).
//
// Memory: all cores share one SwimDirectory (identities held once) and each keeps ~25 bytes per
// member in typed arrays (outside the V8 heap). Measured on the 2-core, 24 GB development machine
// (shared with other work), `pk sim --scenario swim-scale --nodes 10000 --seed 1 --json`: 40 s wall
// (32 s CPU; 9 s of it building the 10,000 cores), peak RSS 2.8 GB, of which 2.4 GB typed arrays
// (25 bytes × 10⁸ member records) and 0.2 GB V8 heap, so the default heap limit is enough (no
// --max-old-space-size needed). n = 2,000 takes about 6 s, n = 400 about 1 s. Figures (SWIM_LAN):
// 2.007 messages per member per period at n = 10,000 against 2.067 at n = 10 (ratio 0.97);
// a join everywhere in 1.38 periods (c = 0.15 with ln n); crash → dead everywhere 10.4 periods
// (suspicion minimum 8).
import { performance } from "node:perf_hooks";
import { Swim, SWIM_LAN, SwimDirectory, type SwimConfig, type SwimCrypto, type SwimEvent } from "../core/body/swim.ts";
import { aliveMessage, claimMessage, EntryChecker, issueCert } from "../core/body/trust.ts";
import { simSignature, simVerify } from "./identity.ts";
import { toHex } from "../core/util/bytes.ts";
import { HEADER_BYTES, TAG_BYTES } from "../core/wire/envelope.ts";
import { LIMITS } from "../core/util/limits.ts";
import { createRng, type Rng } from "../core/util/rng.ts";
import { decodeMessage, encodeMessage } from "../core/wire/codec.ts";
import type { MemberEntry } from "../core/wire/messages.ts";

const ENVELOPE_BYTES = HEADER_BYTES + TAG_BYTES;
const DELAY_MIN = 1;
const DELAY_MAX = 3;
/** Bounds the scenario checks (exit non-zero when one is exceeded). */
export const SWIM_SCALE_BOUNDS = {
  /** Messages per member per probe period at N over the same at n = 10. */
  loadRatioMax: 1.5,
  /** Join dissemination: periods / ln(n). */
  disseminationCMax: 2,
  /**
   * Crash → dead at every survivor, in periods beyond the shortest suspicion timeout
   * (suspicionMult·log10 n periods), over ln(n): detection and the death's spread together.
   */
  deadEverywhereCMax: 2,
} as const;

export interface SwimScaleOptions {
  readonly nodes: number;
  readonly seed: number;
  /** Steady-state window at N, in probe periods (n = 10 is measured over max(this, 300)). */
  readonly steadyPeriods?: number;
  readonly config?: SwimConfig;
}

export interface SwimScaleReport {
  readonly ok: boolean;
  readonly result: Record<string, unknown>;
}

/** What one cluster size gives. */
export interface SwimScaleRun {
  readonly n: number;
  readonly steadyPeriods: number;
  readonly messagesPerMemberPerPeriod: number;
  readonly datagramsPerMemberPerPeriod: number;
  readonly gossipPerMemberPerPeriod: number;
  /** Push-pull's long-run share, from its schedule: 2 / pushPullPeriods. */
  readonly pushPullPerMemberPerPeriod: number;
  /** pushPullTicks·(1 + log2(n/32)) in probe periods. */
  readonly pushPullPeriods: number;
  /** Stream messages actually seen in the window (0 at large n: the first push-pull comes later). */
  readonly streamsInWindowPerMemberPerPeriod: number;
  readonly bytesPerMemberPerPeriod: number;
  readonly datagramBytesPerMemberPerPeriod: number;
  readonly streamBytesPerMemberPerPeriod: number;
  /** One push-pull message (node 0's whole table), encoded, with the envelope. */
  readonly tableBytes: number;
  readonly crash: {
    readonly firstSuspectPeriods: number;
    readonly firstDeadPeriods: number;
    readonly deadEverywherePeriods: number;
    /** From the first death to the death at every survivor. */
    readonly deadSpreadPeriods: number;
    readonly suspicionMinPeriods: number;
    /** Load from the crash to the death at every survivor (suspicions and deaths being gossiped). */
    readonly messagesPerMemberPerPeriod: number;
  };
  readonly join: { readonly periods: number };
  readonly falseDeaths: number;
  readonly falseSuspicions: number;
  readonly largestDatagramBytes: number;
  readonly periods: number;
  readonly wallSeconds: number;
  readonly setupSeconds: number;
  /** Process memory at the end of the run, while its cores are still referenced. */
  readonly heapMB: number;
  readonly arrayBuffersMB: number;
  readonly rssMB: number;
}

/** Ids are the hex of the key's first 8 bytes. */
const idOf = (pub: Uint8Array): string => toHex(pub.subarray(0, 8));
/** The scenario's owner key (a fixed stand-in key: the simulator's signatures, src/sim/identity.ts). */
const OWNER = { publicKey: new Uint8Array(32).fill(0x0e), sign: (data: Uint8Array) => simSignature(OWNER.publicKey, data) };
const checker = new EntryChecker(OWNER.publicKey, { verify: simVerify, idOf }, () => 0, LIMITS.membersMax);

/** Entries are checked as on a node (certificate and signature), with the simulator's signatures. */
export const simSwimCrypto: SwimCrypto = {
  idOf,
  check: (entry) => checker.check(entry) === undefined,
  signAlive: (fields) => {
    const pub = simSwimKey(Number.parseInt(fields.id.slice(8), 16) - 1);
    return simSignature(pub, aliveMessage(fields));
  },
  signClaim: (claim) => simSignature(simSwimKey(Number.parseInt(claim.from.slice(8), 16) - 1), claimMessage(claim)),
  checkClaim: (claim, key, sig) => simVerify(key, claimMessage(claim), sig),
};

function simSwimKey(index: number): Uint8Array {
  const pub = new Uint8Array(32);
  const view = new DataView(pub.buffer);
  view.setUint32(0, 0x5157494d); // "SWIM"
  view.setUint32(4, index + 1);
  pub[31] = index & 0xff;
  return pub;
}

export interface SimEntryOptions {
  readonly name?: string;
  readonly addr?: string;
  readonly incarnation?: number;
  readonly role?: MemberEntry["role"];
}

/** Member `index`'s entry, certified by the scenario's owner key and signed by the member. */
export function simSwimEntry(index: number, options: SimEntryOptions = {}): MemberEntry {
  const pub = simSwimKey(index);
  const role = options.role ?? "core";
  const fields = {
    id: idOf(pub), role,
    addr: options.addr ?? `10.${(index >> 16) & 0xff}.${(index >> 8) & 0xff}.${index & 0xff}:7000`,
    name: options.name ?? `n${index}`, incarnation: options.incarnation ?? 0, epoch: 1,
  };
  const cert = issueCert(OWNER, pub, { role, issuedMs: 0, expiresMs: 0 });
  return { ...fields, pub, cert, sig: simSignature(pub, aliveMessage(fields)) };
}

interface InFlight {
  readonly from: number;
  readonly to: number;
  readonly body: Uint8Array;
}

/** N Swim cores on a simulated network: delay 1..3 ticks, no loss, crashes. */
class ScaleNet {
  readonly nodes: Swim[] = [];
  readonly entries: MemberEntry[] = [];
  readonly directory: SwimDirectory;
  readonly crashed: Uint8Array;
  now = 0;
  messages = 0;
  datagrams = 0;
  gossips = 0;
  datagramBytes = 0;
  largestDatagram = 0;
  /** Called with every event a core reports. */
  onEvent: (node: number, event: SwimEvent) => void = () => {};
  readonly #rng: Rng;
  readonly #byAddr = new Map<string, number>();
  readonly #buckets: InFlight[][] = [];
  readonly #seed: number;

  /** `n` members who know each other, and room for `extra` more (joiners). */
  constructor(n: number, extra: number, seed: number, config: SwimConfig) {
    this.#seed = seed;
    this.#rng = createRng(seed, 7);
    for (let d = 0; d <= DELAY_MAX; d++) this.#buckets.push([]);
    this.directory = new SwimDirectory(n + extra);
    for (let i = 0; i < n + extra; i++) {
      const entry = simSwimEntry(i);
      this.entries.push(entry);
      this.#byAddr.set(entry.addr, i);
    }
    this.crashed = new Uint8Array(n + extra);
    for (let i = 0; i < n; i++) this.directory.add(this.entries[i] as MemberEntry);
    const tableSlots = n + extra;
    for (let i = 0; i < n; i++) {
      const swim = new Swim(this.entries[i] as MemberEntry, createRng(seed, 1000 + i), simSwimCrypto, config,
        { directory: this.directory, knowAll: true, tableSlots });
      this.nodes.push(swim);
    }
    for (let i = 0; i < n; i++) this.#drain(i);
  }

  /** Starts member `index` (one of the `extra`), knowing only `contact`, and tells `contact` about it. */
  join(index: number, contact: number, config: SwimConfig): void {
    const entry = this.entries[index] as MemberEntry;
    const swim = new Swim(entry, createRng(this.#seed, 1000 + index), simSwimCrypto, config,
      { directory: this.directory, tableSlots: this.entries.length });
    swim.add(this.entries[contact] as MemberEntry);
    this.nodes[index] = swim;
    (this.nodes[contact] as Swim).add(entry);
    this.#drain(index);
    this.#drain(contact);
  }

  tick(): void {
    this.now++;
    const bucket = this.#buckets[this.now % this.#buckets.length] as InFlight[];
    if (bucket.length > 0) {
      this.#buckets[this.now % this.#buckets.length] = [];
      for (const message of bucket) this.#deliver(message);
    }
    const nodes = this.nodes;
    for (let i = 0; i < nodes.length; i++) if (this.crashed[i] === 0) (nodes[i] as Swim).tick();
    for (let i = 0; i < nodes.length; i++) this.#drain(i);
  }

  #drain(i: number): void {
    const swim = this.nodes[i] as Swim;
    if (!swim.hasReady()) return;
    const ready = swim.ready();
    for (const event of ready.events) this.onEvent(i, event);
    if (this.crashed[i] !== 0) return;
    for (const out of ready.messages) {
      const to = this.#byAddr.get(out.to);
      if (to === undefined) throw new Error(`seed ${this.#seed}: message to unknown address ${out.to}`);
      const body = encodeMessage(out.message);
      const size = body.length + ENVELOPE_BYTES;
      this.messages++;
      if (out.channel === "datagram") {
        if (size > LIMITS.datagramBytesMax) throw new Error(`seed ${this.#seed}: ${out.message.t} datagram of ${size} bytes`);
        this.largestDatagram = Math.max(this.largestDatagram, size);
        this.datagrams++;
        this.datagramBytes += size;
        if (out.message.t === "swim-gossip") this.gossips++;
      }
      const at = this.now + DELAY_MIN + this.#rng.int(DELAY_MAX - DELAY_MIN + 1);
      (this.#buckets[at % this.#buckets.length] as InFlight[]).push({ from: i, to, body });
    }
  }

  #deliver(message: InFlight): void {
    if (this.crashed[message.to] !== 0 || this.nodes[message.to] === undefined) return;
    const decoded = decodeMessage(message.body);
    if (!decoded.ok) throw new Error(`seed ${this.#seed}: decode failed: ${decoded.detail}`);
    (this.nodes[message.to] as Swim).step((this.entries[message.from] as MemberEntry).id, decoded.message);
    this.#drain(message.to);
  }
}

/** One cluster size: steady-state load, then a crash, then a join. */
export function runSwimScaleOnce(n: number, seed: number, steadyPeriods: number, config: SwimConfig = SWIM_LAN): SwimScaleRun {
  if (n < 3) throw new Error("swim-scale: needs at least 3 nodes (one crashes, one is the joiner's contact)");
  const started = performance.now();
  const period = config.probeTicks;
  const net = new ScaleNet(n, 1, seed, config);
  const setupSeconds = (performance.now() - started) / 1000;
  const scenarioRng = createRng(seed, 11);
  const victim = 1 + scenarioRng.int(n - 1);
  const contact = 0;
  const joiner = n;
  const victimId = (net.entries[victim] as MemberEntry).id;
  const joinerId = (net.entries[joiner] as MemberEntry).id;
  const deadAt = new Uint8Array(n + 1);
  const aliveAt = new Uint8Array(n + 1);
  let deadCount = 0;
  let aliveCount = 0;
  let firstSuspect = -1;
  let firstDead = -1;
  let falseDeaths = 0;
  let falseSuspicions = 0;
  net.onEvent = (node, event) => {
    if (event.id === victimId) {
      if (event.type === "member-suspect" && firstSuspect < 0) firstSuspect = net.now;
      if (event.type === "member-dead") {
        if (firstDead < 0) firstDead = net.now;
        if (deadAt[node] === 0) {
          deadAt[node] = 1;
          deadCount++;
        }
      }
    } else if (event.id === joinerId) {
      if (event.type === "member-alive" && aliveAt[node] === 0 && node !== joiner) {
        aliveAt[node] = 1;
        aliveCount++;
      }
    } else if (event.id !== (net.entries[node] as MemberEntry).id) {
      if (event.type === "member-dead") falseDeaths++;
      if (event.type === "member-suspect") falseSuspicions++;
    }
  };
  const run = (periods: number, until?: () => boolean): boolean => {
    const ticks = Math.round(periods * period);
    for (let t = 0; t < ticks; t++) {
      net.tick();
      if (until?.() === true) return true;
    }
    return false;
  };
  // Warm-up: every core's own alive news (the constructor's) drains.
  run(5);
  const before = { messages: net.messages, datagrams: net.datagrams, gossips: net.gossips, dBytes: net.datagramBytes };
  run(steadyPeriods);
  const memberPeriods = n * steadyPeriods;
  const per = (count: number): number => round(count / memberPeriods, 4);
  // Push-pull: every member starts one sync (whole table, reply asked) per pushPullPeriod and
  // answers one on average, so 2 stream messages per member per pushPullPeriod. Its first round
  // comes 30–60 periods in (the initial jitter is one unscaled pushPullTicks), after the window at
  // large n, so its long-run share is taken from the schedule, with the table's encoded size.
  const pushPullPeriods = (config.pushPullTicks * (n <= 32 ? 1 : 1 + Math.log2(n / 32))) / period;
  const tableBytes = encodeMessage({ t: "swim-sync", reply: true, states: (net.nodes[0] as Swim).table() }).length + ENVELOPE_BYTES;
  const datagrams = per(net.datagrams - before.datagrams);
  const datagramBytes = round((net.datagramBytes - before.dBytes) / memberPeriods, 1);
  const pushPull = 2 / pushPullPeriods;
  const steady = {
    messagesPerMemberPerPeriod: round(datagrams + pushPull, 4),
    datagramsPerMemberPerPeriod: datagrams,
    gossipPerMemberPerPeriod: per(net.gossips - before.gossips),
    pushPullPerMemberPerPeriod: round(pushPull, 4),
    pushPullPeriods: round(pushPullPeriods, 1),
    streamsInWindowPerMemberPerPeriod: per(net.messages - net.datagrams - (before.messages - before.datagrams)),
    bytesPerMemberPerPeriod: round(datagramBytes + pushPull * tableBytes, 1),
    datagramBytesPerMemberPerPeriod: datagramBytes,
    streamBytesPerMemberPerPeriod: round(pushPull * tableBytes, 1),
    tableBytes,
  };
  // Crash: until every survivor holds the victim dead.
  const crashTick = net.now;
  const crashMessages = net.messages;
  net.crashed[victim] = 1;
  const suspicionMinPeriods = config.suspicionMult * Math.max(1, Math.log10(n));
  const crashCap = config.suspicionMaxTimeoutMult * suspicionMinPeriods + 20;
  if (!run(crashCap, () => deadCount === n - 1)) {
    throw new Error(`seed ${seed}: n = ${n}: the crashed member is dead at ${deadCount} of ${n - 1} survivors after ${crashCap} periods`);
  }
  const deadTick = net.now;
  const crashLoad = round((net.messages - crashMessages) / (n * ((deadTick - crashTick) / period)), 4);
  // Let the death news drain, then one member joins, known to `contact` only.
  run(5);
  const joinTick = net.now;
  net.join(joiner, contact, config);
  const joinCap = 10 * Math.log(n) + 10;
  if (!run(joinCap, () => aliveCount === n - 1)) {
    throw new Error(`seed ${seed}: n = ${n}: the joiner is known at ${aliveCount} of ${n - 1} members after ${joinCap} periods`);
  }
  const periods = (from: number, to: number): number => round((to - from) / period, 2);
  const memory = process.memoryUsage();
  return {
    n,
    steadyPeriods,
    ...steady,
    crash: {
      firstSuspectPeriods: periods(crashTick, firstSuspect),
      firstDeadPeriods: periods(crashTick, firstDead),
      deadEverywherePeriods: periods(crashTick, deadTick),
      deadSpreadPeriods: periods(firstDead, deadTick),
      suspicionMinPeriods: round(suspicionMinPeriods, 2),
      messagesPerMemberPerPeriod: crashLoad,
    },
    join: { periods: periods(joinTick, net.now) },
    falseDeaths,
    falseSuspicions,
    largestDatagramBytes: net.largestDatagram,
    periods: periods(0, net.now),
    wallSeconds: round((performance.now() - started) / 1000, 1),
    setupSeconds: round(setupSeconds, 1),
    heapMB: Math.round(memory.heapUsed / 2 ** 20),
    arrayBuffersMB: Math.round(memory.arrayBuffers / 2 ** 20),
    rssMB: Math.round(memory.rss / 2 ** 20),
  };
}

/** The scenario: n = 10 and n = `nodes`, compared; never throws (a failure keeps its seed). */
export function runSwimScale(options: SwimScaleOptions): SwimScaleReport {
  const started = performance.now();
  const config = options.config ?? SWIM_LAN;
  const steady = options.steadyPeriods ?? 10;
  try {
    const small = runSwimScaleOnce(10, options.seed, Math.max(steady, 300), config);
    const large = runSwimScaleOnce(options.nodes, options.seed, steady, config);
    const ratio = round(large.messagesPerMemberPerPeriod / small.messagesPerMemberPerPeriod, 3);
    const lnN = Math.log(options.nodes);
    const c = round(large.join.periods / lnN, 3);
    const deadC = round((large.crash.deadEverywherePeriods - large.crash.suspicionMinPeriods) / lnN, 3);
    const problems: string[] = [];
    if (ratio > SWIM_SCALE_BOUNDS.loadRatioMax) problems.push(`messages per member per period grew ${ratio}× from n = 10 (bound ${SWIM_SCALE_BOUNDS.loadRatioMax})`);
    if (c > SWIM_SCALE_BOUNDS.disseminationCMax) problems.push(`dissemination took ${large.join.periods} periods = ${c}·ln n (bound ${SWIM_SCALE_BOUNDS.disseminationCMax}·ln n)`);
    if (deadC > SWIM_SCALE_BOUNDS.deadEverywhereCMax) {
      problems.push(`dead everywhere after ${large.crash.deadEverywherePeriods} periods = suspicion minimum ${large.crash.suspicionMinPeriods} + ${deadC}·ln n (bound ${SWIM_SCALE_BOUNDS.deadEverywhereCMax}·ln n)`);
    }
    for (const run of [small, large]) {
      if (run.falseDeaths > 0) problems.push(`n = ${run.n}: ${run.falseDeaths} live members declared dead`);
    }
    const result = {
      scenario: "swim-scale",
      seed: options.seed,
      nodes: options.nodes,
      periods: large.periods,
      steadyPeriods: { n10: small.steadyPeriods, nN: large.steadyPeriods },
      messagesPerMemberPerPeriod: { n10: small.messagesPerMemberPerPeriod, nN: large.messagesPerMemberPerPeriod, ratio, bound: SWIM_SCALE_BOUNDS.loadRatioMax },
      datagramsPerMemberPerPeriod: { n10: small.datagramsPerMemberPerPeriod, nN: large.datagramsPerMemberPerPeriod },
      gossipPerMemberPerPeriod: { n10: small.gossipPerMemberPerPeriod, nN: large.gossipPerMemberPerPeriod },
      pushPullPerMemberPerPeriod: { n10: small.pushPullPerMemberPerPeriod, nN: large.pushPullPerMemberPerPeriod },
      streamsInWindowPerMemberPerPeriod: { n10: small.streamsInWindowPerMemberPerPeriod, nN: large.streamsInWindowPerMemberPerPeriod },
      bytesPerMemberPerPeriod: {
        n10: small.bytesPerMemberPerPeriod, nN: large.bytesPerMemberPerPeriod,
        datagram: { n10: small.datagramBytesPerMemberPerPeriod, nN: large.datagramBytesPerMemberPerPeriod },
        // Push-pull sends the whole table (O(n) bytes) every pushPullTicks·(1 + log2(n/32)).
        stream: { n10: small.streamBytesPerMemberPerPeriod, nN: large.streamBytesPerMemberPerPeriod },
        tableBytes: { n10: small.tableBytes, nN: large.tableBytes },
      },
      dissemination: {
        update: "a joiner, known to one member, reaches every member alive",
        periods: large.join.periods, c, log: "ln", bound: `c ≤ ${SWIM_SCALE_BOUNDS.disseminationCMax}`,
        cLog10: round(large.join.periods / Math.log10(options.nodes), 3), n10Periods: small.join.periods,
      },
      deadEverywherePeriods: large.crash.deadEverywherePeriods,
      deadEverywhere: {
        periods: large.crash.deadEverywherePeriods, suspicionMinPeriods: large.crash.suspicionMinPeriods,
        c: deadC, log: "ln", bound: `periods ≤ suspicionMinPeriods + ${SWIM_SCALE_BOUNDS.deadEverywhereCMax}·ln n`,
      },
      crash: { n10: small.crash, nN: large.crash },
      falseDeaths: small.falseDeaths + large.falseDeaths,
      falseSuspicions: small.falseSuspicions + large.falseSuspicions,
      largestDatagramBytes: Math.max(small.largestDatagramBytes, large.largestDatagramBytes),
      wallSeconds: round((performance.now() - started) / 1000, 1),
      setupSeconds: large.setupSeconds,
      heapMB: large.heapMB,
      arrayBuffersMB: large.arrayBuffersMB,
      rssMB: large.rssMB,
      ...(problems.length > 0 ? { error: problems.join("; ") } : {}),
    };
    return { ok: problems.length === 0, result };
  } catch (error) {
    return {
      ok: false,
      result: {
        scenario: "swim-scale", seed: options.seed, nodes: options.nodes,
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
