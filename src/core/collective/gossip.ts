// Gossip topics: a replicated table of rows, kept in step by Scuttlebutt anti-entropy. A sans-IO
// core (tick / step / ready). Protocol description: docs/protocols/gossip.md.
//
// Sources (read for intent): van Renesse, Dumitriu, Gough, Thomas, "Efficient Reconciliation and
// Flow Control for Anti-Entropy Protocols" (LADIS 2008) for per-origin versions, digests and
// MTU-bounded deltas; quickwit-oss/chitchat's ALGORITHM.md for tombstones with a grace period and
// the per-origin garbage-collection floor; Demers et al. (PODC 1987) for death certificates and
// push-pull; Kulkarni et al. (2014) for the hybrid logical clock (src/core/util/hlc.ts).
//
// Rows. The table maps (topic, key) to one row: a value or a tombstone, its HLC stamp, its origin
// (the node that wrote it) and the origin's version. Every local write (publish or delete) takes
// the next version of this node's counter, so each origin's writes form an increasing sequence
// (1, 2, 3, ..., or above selfVersionFloor() after a lost store; see Trust).
// Of two rows for the same (topic, key) the one with the larger (HLC, origin, version) wins
// (rowBeats): a total order, so merging is a join — commutative, associative, idempotent — and
// every node that has seen the same rows keeps the same table, whatever the order of delivery.
//
// Watermarks. For each origin a node keeps wm[origin]: it holds, or holds something newer than,
// every row of that origin up to wm. Rows of an origin travel in version order and a row at or
// below wm is refused (the per-origin floor). The digest of a node is {origin → wm}.
//
// Anti-entropy, every period: pick a random live peer and send a digest slice (SYN, hop 0). The
// peer answers (hop 1) with the rows the sender lacks (versions above its digest, by origin then
// version, cut at a byte budget), the entries where it is itself behind (requests), and a few of
// its own priority entries; the sender answers those (hop 2: rows, and requests where it is behind),
// and the peer's last answer (hop 3) carries rows only. Push-pull in one exchange, at most four
// datagrams, each within the budget.
//
// Bounded digests. A whole digest grows with the number of origins (27 bytes an entry: 10,000
// origins are 270 KB); a message carries at most digestEntriesMax entries: first the origins this
// node knows it is behind on ("wanted"), then the origins whose watermark changed in the last
// recentMult·⌈log2 n⌉ periods, newest first ("recent": what a fresh write spreads through), then a
// sweep that resumes where the previous one stopped, so the whole digest is covered every
// ⌈origins / sweep share⌉ periods (the backstop for anything the recent slices missed).
//
// Tombstones and resurrection. A delete writes a tombstone row. It is kept graceTicks after it
// arrived, then collected (removed). The hazard: a node still holding an older live row r for the
// key could send r to a node that has already collected the tombstone, which would take it as new.
// Two things stop that. (1) The floor: a node refuses rows of origin o at or below wm[o]; once a
// node has received o's rows up to r's version (directly, or by a later watermark that covers it),
// r can never come back. (2) The grace period: it is much longer than the time anti-entropy takes
// to bring every live node up to date (c·log n periods, seconds), so by the time anyone collects
// the tombstone every connected node holds it and has a watermark past r. A node that was away
// longer than the grace period missed the tombstone and still holds r; it is caught by the
// collection floor (chitchat's last_gc_version): a node that collected origin d's tombstones up to
// version g answers a digest entry (d, v < g) with a horizon [d, g, newest stamp collected], and
// the stale node drops every row of other origins stamped at or before that stamp, with the rows
// and watermarks of their origins, and fetches them again. A node that started with an empty table
// ignores horizons for its first graceTicks/2 (everything it holds came from current peers). What
// this does not cover is documented in docs/protocols/gossip.md (several nodes isolated together
// beyond the grace period).
//
// Trust. A node is the only writer of its origin: it never takes a row, a range or a horizon of
// its own origin from a peer, and never asks for one (a peer's digest claiming more of its origin
// than it wrote is not followed), so no peer's value becomes its version. Versions above
// LIMITS.gossip.versionMax (deltas, digest entries, horizons) and horizons stamped beyond the clock
// offset are dropped and counted. A node that boots without its own version (a new or wiped store)
// counts from 1, but keeps a floor of its own, selfVersionFloor(boot epoch), above every version it
// wrote in an earlier life: the first time a peer shows it more of its origin than it wrote (so it
// lost its store, or the peer lies), it moves its sequence to that floor — never to the peer's
// value — and writes its rows of this life again above it, so none is lost to peers' floors.
//
// Signatures. Every row carries its writer's Ed25519 public key and signature over rowBody(row)
// (the "row" kind of src/core/body/trust.ts RecordSigner, injected as a GossipSigner), so a row
// verifies end to end wherever it was relayed: the origin is the key's id, and no relay can forge,
// alter or re-date a row of another origin, nor delete one with a forged tombstone. A row is
// checked only when it would change the table (a new key, or a winner over the row held): rows at
// or below the watermark (duplicates, anti-entropy repeats) and rows that lose to the row held
// cost nothing. A row that fails its check is dropped and counted (stats.forged, and the signer's
// own refusal count); its origin's group stops there — the watermark stays below the row, so the
// real one is fetched from other peers — and the message's other groups are still applied.
// What signatures do not stop: a relay withholding rows, or claiming a range of a third origin
// without rows (a watermark moved past rows it never sent); see docs/protocols/gossip.md.
import { assert } from "../util/assert.ts";
import { bytesEqual, fromHex } from "../util/bytes.ts";
import { compareHlc, HybridClock, type Hlc } from "../util/hlc.ts";
import { LIMITS } from "../util/limits.ts";
import { Outbox, type Ready } from "../util/outbox.ts";
import type { Rng } from "../util/rng.ts";
import { Timeout } from "../util/timeout.ts";
import { HEADER_BYTES, TAG_BYTES, type Channel } from "../wire/envelope.ts";
import {
  GOSSIP_WIRE_BOUNDS,
  deltaHeaderSize, entrySize, horizonSize, MESSAGE_OVERHEAD_BYTES, ROW_PUB_BYTES, ROW_SIG_BYTES, ROW_SIGNED_BYTES, rowSize, strSize, utf8Length,
  type GossipDeltaWire, type GossipDigestEntryWire, type GossipHop, type GossipHorizonWire, type GossipMessage,
  type GossipRowWire,
} from "./gossip-wire.ts";

/** Durations in ticks (10 ms each at the kernel's default). */
export interface GossipConfig {
  /** Exchange period: one SYN to one random live peer per period (chitchat and Cassandra: 1 s). */
  readonly periodTicks: number;
  /** The channel the messages go on; the budget must fit it. */
  readonly channel: Channel;
  /**
   * Largest message body in bytes (MessagePack, before the envelope). Datagram: 1,200 − 44 = 1,156.
   * A stream-channel deployment may raise it (up to the frame bound) to move more rows per exchange.
   */
  readonly budgetBytes: number;
  /** Digest entries in a SYN (priority entries and sweep together). */
  readonly digestEntriesMax: number;
  /** Priority entries (wanted, then recent) in a SYN or an answer. */
  readonly priorityEntriesMax: number;
  /** An origin stays "recent" for recentMult·⌈log2(n + 1)⌉ periods after its watermark moved. */
  readonly recentMult: number;
  /** Replies (answers at hops 1–3) a node sends per period; SYNs beyond it are ignored (counted). */
  readonly repliesPerPeriodMax: number;
  /** Horizons per message. */
  readonly horizonsPerMessageMax: number;
  /** Ticks a tombstone is kept after it arrived, before it is collected. */
  readonly tombstoneGraceTicks: number;
  /** Rows stamped further than this ahead of local physical time are refused (and asked again later). */
  readonly maxClockOffsetMs: number;
  /** Topics in the table. */
  readonly topicsMax: number;
  /** Keys per topic, tombstones included. */
  readonly keysPerTopicMax: number;
  /** Rows in the table, tombstones included. */
  readonly rowsMax: number;
  /** Origins whose watermark is kept (empty ones are evicted first when it is reached). */
  readonly originsMax: number;
  /** Longest key in UTF-8 bytes. */
  readonly keyBytesMax: number;
  /** Largest value in bytes. */
  readonly valueBytesMax: number;
  /** Origins remembered as "wanted" (seen ahead in a peer's digest, not yet fetched). */
  readonly wantedMax: number;
  /**
   * Catch-up: when the rows a peer lacks overflow one datagram, the answer goes on the stream
   * channel with this budget instead (a joiner or a long-partitioned node then fetches thousands
   * of rows per exchange, not a dozen). 0 turns it off. At most rowsPerDeltaMax rows of the
   * smallest size fit, so the schema's bound holds.
   */
  readonly catchUpBytes: number;
  /** Watermark changes remembered for the recent slice. */
  readonly recentRingMax: number;
  /** Local subscriptions at once. */
  readonly subscriptionsMax: number;
  /** Changes queued per subscription; beyond it the oldest is dropped (counted). */
  readonly subscriptionQueueMax: number;
}

/** Envelope bytes around every message body (header + AEAD tag). */
export const ENVELOPE_BYTES = HEADER_BYTES + TAG_BYTES;

/** Defaults: the datagram channel, a 1 s period, a one-hour grace period. */
export const GOSSIP_DEFAULTS: GossipConfig = {
  periodTicks: 100,
  channel: "datagram",
  budgetBytes: LIMITS.datagramBytesMax - ENVELOPE_BYTES,
  digestEntriesMax: 24,
  priorityEntriesMax: 8,
  recentMult: 2,
  repliesPerPeriodMax: 16,
  horizonsPerMessageMax: 2,
  tombstoneGraceTicks: 360_000,
  maxClockOffsetMs: 5_000,
  topicsMax: 256,
  keysPerTopicMax: 65_536,
  rowsMax: 262_144,
  originsMax: LIMITS.membersMax,
  keyBytesMax: 128,
  valueBytesMax: 512,
  wantedMax: 256,
  // Off in the core's defaults (the datagram-only protocol its tests and replica-scale measure);
  // the kernel turns it on (KERNEL_DEFAULTS.gossip).
  catchUpBytes: 0,
  recentRingMax: 64,
  subscriptionsMax: 256,
  subscriptionQueueMax: 1024,
};

/** Largest version a peer's message may carry, and this node's own writes may reach (LIMITS.gossip.versionMax). */
export const VERSION_MAX = LIMITS.gossip.versionMax;

/**
 * The floor of a node that boots without its own version (a new or wiped store), where its sequence
 * moves once a peer shows it lost its store (see Trust): its boot epoch in ms (which rises every
 * boot, and is at least the wall clock) times LIMITS.gossip.bootVersionsPerMs, so it lies above
 * every version this identity wrote before unless it wrote faster than that on average since its
 * first boot. Capped at half of VERSION_MAX, so at least that much room stays for its writes.
 */
export function selfVersionFloor(bootEpochMs: number): number {
  const floor = Math.floor(Math.max(0, bootEpochMs)) * LIMITS.gossip.bootVersionsPerMs;
  return Math.min(floor, Math.floor(VERSION_MAX / 2));
}

/** Byte bounds of the pieces of a message (origin ids are 16 characters). */
const ORIGIN_SAMPLE = "0000000000000000";
const U53_MAX = Number.MAX_SAFE_INTEGER;
export const ENTRY_BYTES_MAX = entrySize(ORIGIN_SAMPLE, U53_MAX);
const HORIZON_BYTES_MAX = horizonSize(ORIGIN_SAMPLE, U53_MAX, U53_MAX, 0xffff_ffff);
const DELTA_HEADER_BYTES_MAX = deltaHeaderSize(ORIGIN_SAMPLE, U53_MAX, U53_MAX);

/** The largest row a config admits, encoded (its writer's key and signature included). */
export function rowBytesMax(config: GossipConfig): number {
  return 1 + 9 + strSize("x".repeat(64)) + (config.keyBytesMax < 32 ? 1 : config.keyBytesMax < 256 ? 2 : 3) + config.keyBytesMax +
    (config.valueBytesMax < 256 ? 2 : config.valueBytesMax < 65536 ? 3 : 5) + config.valueBytesMax + 9 + 5 + ROW_SIGNED_BYTES;
}

/**
 * What signs this node's rows and checks other writers' (src/core/body/trust.ts RecordSigner fits;
 * the simulator's stand-in signatures through one too). `check` answers undefined when `writer`,
 * whose key `pub` is (its id derives from it), signed `body`, else why not (and counts it).
 */
export interface GossipSigner {
  readonly publicKey: Uint8Array;
  sign(kind: "row", body: Uint8Array): Uint8Array;
  check(kind: "row", writer: string, pub: Uint8Array, body: Uint8Array, signature: Uint8Array): string | undefined;
}

/** One row of the table. Rows are immutable and may be shared. */
export interface GossipRow {
  /** topic + "\0" + key: the table's key. */
  readonly id: string;
  readonly topic: string;
  readonly key: string;
  /** undefined: a tombstone. */
  readonly value: Uint8Array | undefined;
  /** HLC stamp. */
  readonly wall: number;
  readonly logical: number;
  /** The node that wrote it, and its version in that node's sequence. */
  readonly origin: string;
  readonly version: number;
  /** The writer's Ed25519 public key (32 bytes; the origin is its id): empty on an unsigned row. */
  readonly pub: Uint8Array;
  /** The writer's signature over rowBody(row) (64 bytes): empty on an unsigned row. */
  readonly sig: Uint8Array;
}

export function rowId(topic: string, key: string): string {
  return `${topic}\u0000${key}`;
}

const UNSIGNED = new Uint8Array(0);

/** A row; without `pub` and `sig` it is unsigned (signRow signs it; the table holds signed rows only). */
export function makeRow(
  topic: string, key: string, value: Uint8Array | undefined, wall: number, logical: number, origin: string, version: number,
  pub: Uint8Array = UNSIGNED, sig: Uint8Array = UNSIGNED,
): GossipRow {
  return { id: rowId(topic, key), topic, key, value, wall, logical, origin, version, pub, sig };
}

/** True when the row carries a key and a signature of the right sizes (not that they verify). */
export function isSigned(row: GossipRow): boolean {
  return row.pub.length === ROW_PUB_BYTES && row.sig.length === ROW_SIG_BYTES;
}

const encoder = new TextEncoder();
const NO_ORIGIN = new Uint8Array(8);

/**
 * The bytes a row's writer signs (the signer prefixes its domain, "p-kernel/v1/row"):
 *
 *   origin (8 bytes, the id's hex decoded) ‖ version (u64 BE) ‖ wall (u64 BE) ‖ logical (u32 BE)
 *   ‖ topic length (u32 BE) ‖ topic ‖ key length (u32 BE) ‖ key (UTF-8)
 *   ‖ 0 (tombstone) | 1 ‖ for a value: value length (u32 BE) ‖ value
 *
 * Every field is in it, each length-prefixed, so no two rows share their bytes.
 */
export function rowBody(row: Pick<GossipRow, "topic" | "key" | "value" | "wall" | "logical" | "origin" | "version">): Uint8Array {
  const value = row.value;
  const out = new Uint8Array(8 + 8 + 8 + 4 + 4 + 4 + 1 + (value === undefined ? 0 : 4 + value.length) + 3 * (row.topic.length + row.key.length));
  const view = new DataView(out.buffer);
  const origin = fromHex(row.origin);
  out.set(origin?.length === 8 ? origin : NO_ORIGIN, 0);
  writeU64(view, 8, row.version);
  writeU64(view, 16, row.wall);
  view.setUint32(24, row.logical);
  let at = 28;
  for (const text of [row.topic, row.key]) {
    const { written } = encoder.encodeInto(text, out.subarray(at + 4));
    view.setUint32(at, written);
    at += 4 + written;
  }
  if (value === undefined) out[at++] = 0;
  else {
    out[at++] = 1;
    view.setUint32(at, value.length);
    out.set(value, at + 4);
    at += 4 + value.length;
  }
  return out.subarray(0, at);
}

function writeU64(view: DataView, at: number, n: number): void {
  view.setUint32(at, Math.floor(n / 0x1_0000_0000));
  view.setUint32(at + 4, n >>> 0);
}

/** The row signed by `signer` (its writer: the row's origin must be the signer's id). */
export function signRow(signer: GossipSigner, row: GossipRow): GossipRow {
  return makeRow(row.topic, row.key, row.value, row.wall, row.logical, row.origin, row.version, signer.publicKey, signer.sign("row", rowBody(row)));
}

/** A row as it travels in a delta group. */
export function rowWire(row: GossipRow): GossipRowWire {
  return [row.version, row.topic, row.key, row.value ?? null, row.wall, row.logical, row.pub, row.sig];
}

/** True when `a` wins over `b` (same topic and key): larger HLC, then larger origin id, then version. */
export function rowBeats(a: GossipRow, b: GossipRow): boolean {
  if (a.wall !== b.wall) return a.wall > b.wall;
  if (a.logical !== b.logical) return a.logical > b.logical;
  if (a.origin !== b.origin) return a.origin > b.origin;
  if (a.version !== b.version) return a.version > b.version;
  // Same origin and version but different rows happens only after an origin lost its disk; keep
  // the order total anyway: a tombstone wins, then the larger value bytes.
  if (a.value === undefined || b.value === undefined) return a.value === undefined && b.value !== undefined;
  const n = Math.min(a.value.length, b.value.length);
  for (let i = 0; i < n; i++) if (a.value[i] !== b.value[i]) return (a.value[i] as number) > (b.value[i] as number);
  return a.value.length > b.value.length;
}

/** Live peers, this node excluded: an array fits, or any view with a length and at(). */
export interface GossipPeers {
  readonly length: number;
  at(index: number): string | undefined;
}

export interface GossipOutbound {
  /** Member id; the kernel resolves the address. */
  readonly to: string;
  readonly channel: Channel;
  readonly message: GossipMessage;
}

/** A change of a key's visible state, as a subscriber sees it. */
export interface GossipChange {
  readonly topic: string;
  readonly key: string;
  /** undefined: the key was deleted. */
  readonly value: Uint8Array | undefined;
  readonly origin: string;
  readonly version: number;
  readonly wall: number;
  readonly logical: number;
}

export type GossipEvent =
  /** This node was behind a peer's collection horizon and dropped rows to fetch them again. */
  | { readonly type: "gossip-reset"; readonly from: string; readonly droppedRows: number; readonly horizonWall: number }
  /**
   * A peer showed this node (booted without its own version) more of its origin than it wrote: it
   * moved its sequence to its floor and wrote its `rows` of this life again above it.
   */
  | { readonly type: "gossip-renumbered"; readonly from: string; readonly floor: number; readonly rows: number };

export interface GossipReady extends Ready<GossipOutbound, GossipEvent> {
  /** Rows that entered the table (new winners, tombstones included): to persist. */
  readonly changed: readonly GossipRow[];
  /** Rows that left it without a successor (collected tombstones, reset): to delete from the store. */
  readonly forgotten: readonly GossipRow[];
}

export interface GossipStats {
  rows: number;
  tombstones: number;
  origins: number;
  topics: number;
  selfVersion: number;
  /** Messages refused for a broken invariant the schema cannot express (versions out of order...). */
  invalid: number;
  /** Delta groups skipped because they start above our watermark (sent before a reset). */
  gaps: number;
  /** Rows refused for an HLC stamp too far ahead (asked again later). */
  skewed: number;
  /** Rows that did not fit the table's bounds (asked again later). */
  tableFull: number;
  /** Origins refused because the origin table was full of non-empty origins. */
  originsFull: number;
  originsEvicted: number;
  /** SYNs not answered because the reply budget of the period was spent. */
  repliesRefused: number;
  tombstonesCollected: number;
  resets: number;
  subscriptionDrops: number;
  /** Answers sent on the stream channel because the rows owed overflowed a datagram. */
  catchUps: number;
  /**
   * Deltas and horizons of this node's own origin from a peer, and digest entries claiming more of
   * it than this node wrote: refused (only this node writes its origin).
   */
  ownOrigin: number;
  /** Deltas, digest entries and horizons with a version above VERSION_MAX: dropped. */
  highVersions: number;
  /** Times this node moved its sequence to its floor (a lost store found out; at most once a boot). */
  renumbers: number;
  /**
   * Rows whose writer's signature did not verify (a key that is not the origin's, a revoked
   * writer, a bad signature): dropped; the origin's group stops there and is asked again.
   */
  forged: number;
  /** Rows of other origins restored without a signature (a store of an older version): dropped, with their origin's rows, to be fetched again. */
  unsignedDropped: number;
  /** This node's own rows restored without a signature: signed again (and written back). */
  resigned: number;
  /** Ranges and horizons of other origins from a member not trusted with them (only its signed rows taken). */
  untrusted: number;
  /** Rows the table's own rule (`admit`) refused, peers' and this node's. */
  notAdmitted: number;
}

export type GossipWriteResult =
  | { readonly ok: true; readonly row: GossipRow }
  | { readonly ok: false; readonly error: string };

const OFFER = Symbol("offer");

/** A local subscriber's handle: a bounded queue of changes to one topic, oldest dropped first. */
export class GossipSubscription {
  readonly topic: string;
  readonly #ring: (GossipChange | undefined)[];
  #head = 0;
  #size = 0;
  #dropped = 0;
  #closed = false;
  readonly #onClose: (sub: GossipSubscription) => void;

  constructor(topic: string, capacity: number, onClose: (sub: GossipSubscription) => void) {
    assert(capacity > 0, "GossipSubscription: capacity must be positive");
    this.topic = topic;
    this.#ring = new Array<GossipChange | undefined>(capacity);
    this.#onClose = onClose;
  }

  /** Changes waiting. */
  get size(): number {
    return this.#size;
  }

  /** Changes dropped because the queue was full (the oldest go first); re-read the table after a drop. */
  get dropped(): number {
    return this.#dropped;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Takes up to `max` changes, oldest first. */
  take(max = Number.POSITIVE_INFINITY): GossipChange[] {
    const out: GossipChange[] = [];
    while (this.#size > 0 && out.length < max) {
      out.push(this.#ring[this.#head] as GossipChange);
      this.#ring[this.#head] = undefined;
      this.#head = (this.#head + 1) % this.#ring.length;
      this.#size--;
    }
    return out;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.take();
    this.#onClose(this);
  }

  /** Called by Gossip only. Returns true when an older change was dropped. */
  [OFFER](change: GossipChange): boolean {
    const capacity = this.#ring.length;
    let dropped = false;
    if (this.#size === capacity) {
      this.#head = (this.#head + 1) % capacity;
      this.#size--;
      this.#dropped++;
      dropped = true;
    }
    this.#ring[(this.#head + this.#size) % capacity] = change;
    this.#size++;
    return dropped;
  }
}

/**
 * Per-origin state: the watermark and the origin's rows in version order, some of them dead
 * (overwritten or removed: no longer the table's row for their key), skipped and compacted away.
 * Most origins own one row or a few, and every node keeps every origin (10,000 nodes × 1,000
 * origins in the scale scenario), so a single row is held without an array.
 */
class OriginState {
  readonly id: string;
  wm = 0;
  /** The origin's public key, once one of its rows verified: shared by its rows received since. */
  pub: Uint8Array | undefined = undefined;
  #rows: GossipRow | GossipRow[] | undefined = undefined;
  dead = 0;

  constructor(id: string) {
    this.id = id;
  }

  get count(): number {
    const rows = this.#rows;
    return rows === undefined ? 0 : Array.isArray(rows) ? rows.length : 1;
  }

  /** The rows, ascending versions (a new array for a single row: read on answers and resets only). */
  rows(): readonly GossipRow[] {
    const rows = this.#rows;
    return rows === undefined ? [] : Array.isArray(rows) ? rows : [rows];
  }

  append(row: GossipRow): void {
    const rows = this.#rows;
    if (rows === undefined) {
      this.#rows = row;
      return;
    }
    const list = Array.isArray(rows) ? rows : [rows];
    // Almost always above the last; a row relayed by a member not trusted with its range may have
    // come before lower versions of its origin: it goes in its place.
    let at = list.length;
    while (at > 0 && (list[at - 1] as GossipRow).version > row.version) at--;
    list.splice(at, 0, row);
    this.#rows = list;
  }

  /** Keeps the rows `live` accepts. */
  compact(live: (row: GossipRow) => boolean): void {
    const kept = this.rows().filter(live);
    this.#rows = kept.length === 0 ? undefined : kept.length === 1 ? kept[0] : kept;
    this.dead = 0;
  }

  clear(): void {
    this.#rows = undefined;
    this.dead = 0;
  }
}

interface Horizon {
  version: number;
  wall: number;
  logical: number;
}

interface Tombstone {
  readonly row: GossipRow;
  readonly at: number;
}

/** Accumulates one message within the byte budget. */
class Builder {
  readonly budget: number;
  size = MESSAGE_OVERHEAD_BYTES;
  readonly d: GossipDigestEntryWire[] = [];
  readonly r: GossipDeltaWire[] = [];
  readonly g: GossipHorizonWire[] = [];
  readonly origins = new Set<string>();

  constructor(budget: number) {
    this.budget = budget;
  }

  entry(origin: string, version: number): boolean {
    if (this.origins.has(origin)) return true;
    const bytes = entrySize(origin, version);
    if (this.size + bytes > this.budget) return false;
    this.d.push([origin, version]);
    this.origins.add(origin);
    this.size += bytes;
    return true;
  }

  get empty(): boolean {
    return this.d.length === 0 && this.r.length === 0 && this.g.length === 0;
  }

  message(hop: GossipHop, origins: number): GossipMessage {
    return { t: "gossip", h: hop, n: Math.min(origins, 0xffff_ffff), d: this.d, r: this.r, g: this.g };
  }
}

const SELF_PATTERN = /^[0-9a-f]{16}$/;
const TOPIC_PATTERN = new RegExp(`^[A-Za-z0-9._/-]{1,${LIMITS.gossip.topicCharsMax}}$`);

export class Gossip {
  readonly #self: string;
  readonly #signer: GossipSigner;
  readonly #rng: Rng;
  readonly #config: GossipConfig;
  readonly #clock: HybridClock;
  readonly #period: Timeout;
  readonly #digestReserveBytes: number;
  #now = 0;
  #physicalMs = 0;
  #live = 1;
  readonly #table = new Map<string, GossipRow>();
  readonly #topicKeys = new Map<string, number>();
  readonly #origins = new Map<string, OriginState>();
  readonly #originList: OriginState[] = [];
  #sweep = 0;
  readonly #horizons = new Map<string, Horizon>();
  #tombstoneQueue: Tombstone[] = [];
  #tombstoneHead = 0;
  #tombstones = 0;
  readonly #recentIds: string[] = [];
  readonly #recentTicks: number[] = [];
  #recentNext = 0;
  readonly #wanted = new Map<string, number>();
  #repliesLeft: number;
  #periodStart = 0;
  #freshUntil: number;
  readonly #subs = new Map<string, Set<GossipSubscription>>();
  #subCount = 0;
  /** Booted without an own version: where the sequence moves once a peer shows more of it (see Trust). */
  #selfFloor: number | undefined;
  readonly #trusted: (from: string) => boolean;
  readonly #admit: (row: GossipRow) => boolean;
  readonly #out = new Outbox<GossipOutbound, GossipEvent, { changed: GossipRow; forgotten: GossipRow }>({ changed: [], forgotten: [] });
  readonly #stats: GossipStats = {
    rows: 0, tombstones: 0, origins: 0, topics: 0, selfVersion: 0, invalid: 0, gaps: 0, skewed: 0, tableFull: 0,
    originsFull: 0, originsEvicted: 0, repliesRefused: 0, tombstonesCollected: 0, resets: 0, subscriptionDrops: 0, catchUps: 0,
    ownOrigin: 0, highVersions: 0, renumbers: 0, forged: 0, unsignedDropped: 0, resigned: 0, untrusted: 0, notAdmitted: 0,
  };

  /**
   * `signer` signs this node's rows and checks other writers' (its key must be this node's: checked
   * once here). `trusted` says whose word is taken for what no signature covers (default anyone's;
   * a node takes only core members'): that another origin has nothing more in a range (a watermark
   * moved past rows not shown), that tombstones were collected (horizons), and that this node lost
   * its store. From anyone else, signed rows are taken and nothing more (see Trust). `admit` is a
   * table's own rule on rows (a row it refuses is counted and skipped; default: every row), also
   * applied to this node's own writes.
   */
  constructor(selfId: string, signer: GossipSigner, rng: Rng, config: GossipConfig = GOSSIP_DEFAULTS, options: { readonly trusted?: (from: string) => boolean; readonly admit?: (row: GossipRow) => boolean } = {}) {
    assert(SELF_PATTERN.test(selfId), "Gossip: the node id must be 16 lowercase hex characters");
    assert(config.periodTicks > 0 && config.tombstoneGraceTicks > 0 && config.maxClockOffsetMs > 0, "Gossip: durations must be positive");
    assert(config.digestEntriesMax >= 1 && config.priorityEntriesMax >= 1 && config.priorityEntriesMax <= config.digestEntriesMax, "Gossip: digest entry bounds");
    assert(config.repliesPerPeriodMax >= 1 && config.recentMult > 0 && config.recentRingMax >= 1 && config.wantedMax >= 1, "Gossip: bounds must be positive");
    assert(config.topicsMax >= 1 && config.keysPerTopicMax >= 1 && config.rowsMax >= 1 && config.originsMax >= 1, "Gossip: table bounds must be positive");
    assert(config.keyBytesMax >= 1 && config.valueBytesMax >= 0 && config.subscriptionsMax >= 0 && config.subscriptionQueueMax >= 1, "Gossip: row bounds");
    const frame = config.channel === "datagram" ? LIMITS.datagramBytesMax : LIMITS.frameBytesMax;
    assert(config.budgetBytes + ENVELOPE_BYTES <= frame, `Gossip: budget ${config.budgetBytes} + envelope exceeds the ${config.channel} bound ${frame}`);
    // A SYN's digest fits; an answer keeps room for its priority entries and horizons after its
    // rows, except for a message's first row, which may take that room (#rowsAbove): the largest
    // row (with its group header) fits a message alone, so every row can always travel.
    assert(MESSAGE_OVERHEAD_BYTES + config.digestEntriesMax * ENTRY_BYTES_MAX <= config.budgetBytes, "Gossip: digestEntriesMax does not fit the budget");
    this.#digestReserveBytes = config.priorityEntriesMax * ENTRY_BYTES_MAX + config.horizonsPerMessageMax * HORIZON_BYTES_MAX;
    assert(MESSAGE_OVERHEAD_BYTES + DELTA_HEADER_BYTES_MAX + rowBytesMax(config) <= config.budgetBytes,
      `Gossip: the largest row (${rowBytesMax(config)} bytes) does not fit the budget`);
    assert(MESSAGE_OVERHEAD_BYTES + this.#digestReserveBytes + DELTA_HEADER_BYTES_MAX <= config.budgetBytes, "Gossip: the digest reserve does not fit the budget");
    // The signer is this node's: a row it signs verifies under this node's id (else every peer would refuse them).
    const probe = rowBody(makeRow("gossip", "probe", undefined, 0, 0, selfId, 1));
    const signature = signer.sign("row", probe);
    assert(signer.publicKey.length === ROW_PUB_BYTES && signature.length === ROW_SIG_BYTES &&
      signer.check("row", selfId, signer.publicKey, probe, signature) === undefined, "Gossip: the signer's key is not this node's");
    this.#signer = signer;
    this.#trusted = options.trusted ?? (() => true);
    this.#admit = options.admit ?? (() => true);
    assert(config.catchUpBytes === 0 || config.catchUpBytes + ENVELOPE_BYTES <= LIMITS.frameBytesMax, "Gossip: catchUpBytes exceeds a stream frame");
    this.#self = selfId;
    this.#rng = rng;
    this.#config = config;
    this.#clock = new HybridClock(config.maxClockOffsetMs);
    this.#period = new Timeout("gossip", config.periodTicks);
    this.#period.backoff(rng, config.periodTicks);
    this.#repliesLeft = config.repliesPerPeriodMax;
    this.#freshUntil = Math.floor(config.tombstoneGraceTicks / 2);
  }

  get selfId(): string {
    return this.#self;
  }

  /** The highest version this node has written (persist it durably before sending, as an incarnation). */
  get selfVersion(): number {
    return this.#origins.get(this.#self)?.wm ?? 0;
  }

  /** The HLC's last stamp. */
  get clock(): Hlc {
    return this.#clock.last;
  }

  /**
   * Rows and watermarks from the store, before any traffic. Rows are taken as they are (shared, not
   * copied), and their signatures are not checked again (the store holds only rows this node wrote
   * or checked). A node restored with rows is not fresh: it honours collection horizons at once. The
   * watermark of this node's own origin is where its next write continues (the stored own version).
   * `selfFloor` (selfVersionFloor(boot epoch)) is given when the store holds no own version: the
   * sequence moves there if a peer shows this node more of its origin than it wrote.
   *
   * Unsigned rows (a store an older version wrote): this node's own are signed again and come out
   * in ready().changed (to write back); another origin's cannot be, so that origin's rows are all
   * dropped (counted in stats.unsignedDropped; they come out in ready().forgotten, to delete from
   * the store) and its watermark is not restored: anti-entropy fetches them again, signed.
   */
  restore(rows: readonly GossipRow[], watermarks: readonly (readonly [string, number])[] = [], selfFloor?: number): void {
    const unsigned = new Set<string>();
    for (const row of rows) if (row.origin !== this.#self && !isSigned(row)) unsigned.add(row.origin);
    const dropped: GossipRow[] = [];
    const resigned: GossipRow[] = [];
    const sorted = [...rows].sort((a, b) => (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : a.version - b.version));
    for (let row of sorted) {
      if (unsigned.has(row.origin)) {
        dropped.push(row);
        if (!isSigned(row)) this.#stats.unsignedDropped++;
        continue;
      }
      const st = this.#origin(row.origin);
      if (st === undefined) continue;
      if (row.version <= st.wm) continue;
      if (row.origin === this.#self && (!isSigned(row) || !bytesEqual(row.pub, this.#signer.publicKey))) {
        row = signRow(this.#signer, row);
        resigned.push(row);
        this.#stats.resigned++;
      }
      this.#clock.update({ wall: row.wall, logical: row.logical }, Math.max(this.#physicalMs, row.wall));
      if (!this.#merge(row, st)) continue;
      st.wm = row.version;
    }
    for (const [origin, version] of watermarks) {
      if (unsigned.has(origin)) continue;
      const st = this.#origin(origin);
      if (st !== undefined && version > st.wm) st.wm = version;
    }
    for (const origin of unsigned) this.#want(origin, 1);
    if (rows.length > 0) this.#freshUntil = 0;
    if (selfFloor !== undefined && selfFloor > this.selfVersion && selfFloor <= VERSION_MAX / 2) this.#selfFloor = Math.floor(selfFloor);
    this.#out.clear("changed");
    for (const row of resigned) if (this.#table.get(row.id) === row) this.#out.add("changed", row);
    for (const row of dropped) this.#out.add("forgotten", row);
  }

  /** Writes a value; the row wins over every row this node has seen for the key. Stamped with the physical time of the last tick(). */
  publish(topic: string, key: string, value: Uint8Array): GossipWriteResult {
    if (value.length > this.#config.valueBytesMax) return { ok: false, error: `value of ${value.length} bytes exceeds ${this.#config.valueBytesMax}` };
    return this.#write(topic, key, value.slice());
  }

  /** Deletes a key everywhere: a tombstone row, collected tombstoneGraceTicks after it reached each node. */
  delete(topic: string, key: string): GossipWriteResult {
    return this.#write(topic, key, undefined);
  }

  /** The live row of a key (undefined when absent or deleted). */
  get(topic: string, key: string): GossipRow | undefined {
    const row = this.#table.get(rowId(topic, key));
    return row?.value === undefined ? undefined : row;
  }

  /** Live rows of a topic, by key. */
  entries(topic: string): GossipRow[] {
    const out: GossipRow[] = [];
    for (const row of this.#table.values()) if (row.topic === topic && row.value !== undefined) out.push(row);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Topics with their live key counts. */
  topics(): { topic: string; keys: number }[] {
    const counts = new Map<string, number>();
    for (const row of this.#table.values()) if (row.value !== undefined) counts.set(row.topic, (counts.get(row.topic) ?? 0) + 1);
    return [...counts].map(([topic, keys]) => ({ topic, keys })).sort((a, b) => (a.topic < b.topic ? -1 : 1));
  }

  /** Every row, tombstones included, sorted by id (for snapshots and tests). */
  rows(): GossipRow[] {
    return [...this.#table.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The table's row count (tombstones included), cheap. */
  get size(): number {
    return this.#table.size;
  }

  /** Whether the table holds exactly this row (same origin and version) for its key. */
  holds(origin: string, version: number, topic: string, key: string): boolean {
    const row = this.#table.get(rowId(topic, key));
    return row !== undefined && row.origin === origin && row.version === version;
  }

  /** The whole digest {origin → watermark}, for persistence and tests. */
  watermarks(): [string, number][] {
    return this.#originList.map((st) => [st.id, st.wm] as [string, number]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  }

  watermark(origin: string): number {
    return this.#origins.get(origin)?.wm ?? 0;
  }

  stats(): GossipStats {
    const s = this.#stats;
    s.rows = this.#table.size;
    s.tombstones = this.#tombstones;
    s.origins = this.#originList.length;
    s.topics = this.#topicKeys.size;
    s.selfVersion = this.selfVersion;
    return { ...s };
  }

  /** Subscribes to a topic's changes; undefined when subscriptionsMax are open. */
  subscribe(topic: string): GossipSubscription | undefined {
    if (this.#subCount >= this.#config.subscriptionsMax) return undefined;
    const sub = new GossipSubscription(topic, this.#config.subscriptionQueueMax, (closed) => {
      const set = this.#subs.get(closed.topic);
      if (set?.delete(closed) === true) {
        this.#subCount--;
        if (set.size === 0) this.#subs.delete(closed.topic);
      }
    });
    let set = this.#subs.get(topic);
    if (set === undefined) this.#subs.set(topic, (set = new Set()));
    set.add(sub);
    this.#subCount++;
    return sub;
  }

  /**
   * Advances one tick. `physicalMs` is the node's wall clock (for HLC stamps); `peers` are the live
   * members (SWIM's alive and suspect), this node excluded.
   */
  tick(physicalMs: number, peers: GossipPeers): void {
    this.#now++;
    // Stamps are whole milliseconds on the wire; a host clock may have a fraction.
    this.#physicalMs = Math.floor(physicalMs);
    this.#live = peers.length + 1;
    if (this.#now - this.#periodStart >= this.#config.periodTicks) {
      this.#periodStart = this.#now;
      this.#repliesLeft = this.#config.repliesPerPeriodMax;
    }
    this.#collect();
    this.#period.tick();
    if (this.#period.fired()) {
      this.#period.reset();
      if (peers.length > 0) {
        const to = peers.at(this.#rng.int(peers.length));
        if (to !== undefined && to !== this.#self) this.#syn(to);
      }
    }
  }

  /** Starts an exchange with a member at once (after a join, or when a member comes back). */
  syncWith(id: string): void {
    if (id !== this.#self) this.#syn(id);
  }

  /** A message from a peer (already authenticated and schema-checked). */
  step(from: string, message: GossipMessage): void {
    if (from === this.#self) return;
    if (!this.#valid(message)) {
      this.#stats.invalid++;
      return;
    }
    if (message.g.length > 0) this.#onHorizons(from, message.g);
    for (const delta of message.r) this.#applyDelta(from, delta);
    for (const [origin, version] of message.d) {
      if (origin === this.#self && version > this.selfVersion && version <= VERSION_MAX) this.#ownClaim(from);
    }
    if (message.h === 3 || message.d.length === 0) return;
    if (this.#repliesLeft <= 0) {
      this.#stats.repliesRefused++;
      return;
    }
    this.#answer(from, message);
  }

  ready(): GossipReady {
    return this.#out.take();
  }

  hasReady(): boolean {
    return this.#out.hasReady();
  }

  // ---- Writes ------------------------------------------------------------------------------------

  #write(topic: string, key: string, value: Uint8Array | undefined): GossipWriteResult {
    if (!TOPIC_PATTERN.test(topic)) return { ok: false, error: `topic must be 1–${LIMITS.gossip.topicCharsMax} of A-Z a-z 0-9 . _ / -` };
    const keyBytes = utf8Length(key);
    if (keyBytes === 0 || keyBytes > this.#config.keyBytesMax || !key.isWellFormed()) {
      return { ok: false, error: `key must be 1–${this.#config.keyBytesMax} bytes of well-formed UTF-8` };
    }
    const id = rowId(topic, key);
    const existing = this.#table.get(id);
    if (existing === undefined) {
      const full = this.#room(topic);
      if (full !== undefined) return { ok: false, error: full };
    }
    const self = this.#origin(this.#self);
    if (self === undefined) return { ok: false, error: "origin table full" };
    // Only this node's own writes move its version (peers cannot), so this takes 2^53 writes.
    if (self.wm >= VERSION_MAX) return { ok: false, error: "version space exhausted" };
    let hlc = this.#clock.now(this.#physicalMs);
    if (existing !== undefined && compareHlc(hlc, existing) <= 0) {
      // A restored row stamped ahead of our clock: move the clock past it, so the write wins.
      this.#clock.update({ wall: existing.wall, logical: existing.logical }, existing.wall);
      hlc = this.#clock.now(this.#physicalMs);
    }
    const unsigned = makeRow(topic, key, value, hlc.wall, hlc.logical, this.#self, self.wm + 1);
    if (!this.#admit(unsigned)) {
      this.#stats.notAdmitted++;
      return { ok: false, error: `this table does not take that row from this node (${topic} ${key})` };
    }
    const row = signRow(this.#signer, unsigned);
    assert(existing === undefined || rowBeats(row, existing), "Gossip: a local write must win");
    const merged = this.#merge(row, self);
    assert(merged, "Gossip: room was checked");
    self.wm = row.version;
    this.#markRecent(self.id);
    return { ok: true, row };
  }

  /** undefined when a new key fits topic and table bounds, else why not. */
  #room(topic: string): string | undefined {
    if (this.#table.size >= this.#config.rowsMax) return `table full (${this.#config.rowsMax} rows)`;
    const keys = this.#topicKeys.get(topic);
    if (keys === undefined) {
      if (this.#topicKeys.size >= this.#config.topicsMax) return `too many topics (${this.#config.topicsMax})`;
    } else if (keys >= this.#config.keysPerTopicMax) return `topic ${topic} full (${this.#config.keysPerTopicMax} keys)`;
    return undefined;
  }

  /**
   * Puts a row in the table if it wins over the current one (appending it to its origin's rows).
   * Returns false only when a new key does not fit the bounds.
   */
  #merge(row: GossipRow, st: OriginState): boolean {
    const existing = this.#table.get(row.id);
    if (existing !== undefined) {
      if (!rowBeats(row, existing)) return true;
      this.#retire(existing);
    } else {
      if (this.#room(row.topic) !== undefined) {
        this.#stats.tableFull++;
        return false;
      }
      this.#topicKeys.set(row.topic, (this.#topicKeys.get(row.topic) ?? 0) + 1);
    }
    this.#table.set(row.id, row);
    st.append(row);
    if (row.value === undefined) {
      this.#tombstones++;
      this.#tombstoneQueue.push({ row, at: this.#now });
    }
    this.#out.add("changed", row);
    if (row.value !== undefined || (existing !== undefined && existing.value !== undefined)) this.#notify(row);
    return true;
  }

  /** A row left the table (overwritten or removed): its origin's list holds one more dead entry. */
  #retire(row: GossipRow): void {
    if (row.value === undefined) this.#tombstones--;
    const st = this.#origins.get(row.origin);
    if (st === undefined) return;
    st.dead++;
    const count = st.count;
    if (st.dead === count) st.clear();
    else if (st.dead > 16 && st.dead * 2 > count) st.compact((r) => this.#table.get(r.id) === r);
  }

  /** Removes a row without a successor. */
  #remove(row: GossipRow): void {
    this.#table.delete(row.id);
    const keys = (this.#topicKeys.get(row.topic) ?? 1) - 1;
    if (keys <= 0) this.#topicKeys.delete(row.topic);
    else this.#topicKeys.set(row.topic, keys);
    this.#retire(row);
    this.#out.add("forgotten", row);
  }

  #notify(row: GossipRow): void {
    const set = this.#subs.get(row.topic);
    if (set === undefined) return;
    const change: GossipChange = {
      topic: row.topic, key: row.key, value: row.value, origin: row.origin, version: row.version, wall: row.wall, logical: row.logical,
    };
    for (const sub of set) if (sub[OFFER](change)) this.#stats.subscriptionDrops++;
  }

  // ---- Origins, recent and wanted ----------------------------------------------------------------

  /** The origin's state, created if new (evicting an empty origin when full); undefined when full. */
  #origin(id: string): OriginState | undefined {
    const known = this.#origins.get(id);
    if (known !== undefined) return known;
    if (this.#originList.length >= this.#config.originsMax && !this.#evictOrigin()) {
      this.#stats.originsFull++;
      return undefined;
    }
    const st = new OriginState(id);
    this.#origins.set(id, st);
    this.#originList.push(st);
    return st;
  }

  /** Forgets one origin that holds no rows and has no horizon (never this node). */
  #evictOrigin(): boolean {
    const list = this.#originList;
    for (let i = 0; i < list.length; i++) {
      const st = list[i] as OriginState;
      if (st.id === this.#self || st.count > st.dead || this.#horizons.has(st.id)) continue;
      list[i] = list[list.length - 1] as OriginState;
      list.pop();
      this.#origins.delete(st.id);
      this.#wanted.delete(st.id);
      this.#stats.originsEvicted++;
      return true;
    }
    return false;
  }

  #markRecent(origin: string): void {
    const max = this.#config.recentRingMax;
    if (this.#recentIds.length < max) {
      this.#recentIds.push(origin);
      this.#recentTicks.push(this.#now);
    } else {
      this.#recentIds[this.#recentNext] = origin;
      this.#recentTicks[this.#recentNext] = this.#now;
    }
    this.#recentNext = (this.#recentNext + 1) % max;
  }

  #want(origin: string, version: number): void {
    const known = this.#wanted.get(origin);
    if (known !== undefined) {
      if (version > known) this.#wanted.set(origin, version);
      return;
    }
    if (this.#wanted.size >= this.#config.wantedMax) {
      const oldest = this.#wanted.keys().next().value;
      if (oldest !== undefined) this.#wanted.delete(oldest);
    }
    this.#wanted.set(origin, version);
  }

  /** Adds up to `max` priority entries: wanted origins first, then recent ones, newest first. */
  #priority(b: Builder, max: number, skip: ReadonlySet<string> | undefined): void {
    let added = 0;
    for (const [origin, target] of this.#wanted) {
      if (added >= max) return;
      const wm = this.#origins.get(origin)?.wm ?? 0;
      if (wm >= target) {
        this.#wanted.delete(origin);
        continue;
      }
      if (skip?.has(origin) === true || b.origins.has(origin)) continue;
      if (!b.entry(origin, wm)) return;
      added++;
    }
    const window = this.#config.recentMult * Math.max(1, Math.ceil(Math.log2(this.#live + 1))) * this.#config.periodTicks;
    const count = this.#recentIds.length;
    for (let i = 1; i <= count && added < max; i++) {
      const at = (this.#recentNext - i + count) % count;
      if (this.#now - (this.#recentTicks[at] as number) > window) break;
      const origin = this.#recentIds[at] as string;
      if (skip?.has(origin) === true || b.origins.has(origin)) continue;
      const st = this.#origins.get(origin);
      if (st === undefined) continue;
      if (!b.entry(origin, st.wm)) return;
      added++;
    }
  }

  // ---- Anti-entropy ------------------------------------------------------------------------------

  /** Opens an exchange: priority entries, then the sweep, up to digestEntriesMax. */
  #syn(to: string): void {
    const b = new Builder(this.#config.budgetBytes);
    this.#priority(b, this.#config.priorityEntriesMax, undefined);
    this.#sweepInto(b, this.#config.digestEntriesMax);
    // A node that knows no origin yet still opens with one entry (itself), so the peer answers
    // and, knowing more origins (n), adds a slice of its digest.
    if (b.d.length === 0) b.entry(this.#self, this.selfVersion);
    this.#out.send({ to, channel: this.#config.channel, message: b.message(0, this.#originList.length) });
  }

  /** Adds sweep entries, resuming where the last sweep stopped, until the digest holds `max` entries. */
  #sweepInto(b: Builder, max: number, skip?: ReadonlySet<string>): void {
    const list = this.#originList;
    for (let scanned = 0; scanned < list.length && b.d.length < max; scanned++) {
      if (this.#sweep >= list.length) this.#sweep = 0;
      const st = list[this.#sweep++] as OriginState;
      if (b.origins.has(st.id) || skip?.has(st.id) === true) continue;
      if (!b.entry(st.id, st.wm)) return;
    }
  }

  /** Answers a message at hop h < 3 with one at hop h + 1. */
  #answer(from: string, message: GossipMessage): void {
    const hop = (message.h + 1) as GossipHop;
    let { b, rowsFull } = this.#compose(message, hop, this.#config.budgetBytes);
    let channel = this.#config.channel;
    const catchUp = this.#config.catchUpBytes;
    if (rowsFull && channel === "datagram" && catchUp > this.#config.budgetBytes) {
      ({ b, rowsFull } = this.#compose(message, hop, catchUp));
      channel = "stream";
      this.#stats.catchUps++;
    }
    if (b.empty) return;
    this.#repliesLeft--;
    this.#out.send({ to: from, channel, message: b.message(hop, this.#originList.length) });
  }

  /** The answer to `message` within `budget` bytes; rowsFull when rows it lacks did not all fit. */
  #compose(message: GossipMessage, hop: GossipHop, budget: number): { b: Builder; rowsFull: boolean } {
    const canAsk = hop <= 2;
    const b = new Builder(budget);
    // Room kept for requests and priority entries after the rows (the first row may take it: #rowsAbove).
    const rowsLimit = budget - (canAsk ? this.#digestReserveBytes : 0);
    const requests: GossipDigestEntryWire[] = [];
    let rowsFull = false;
    for (const [origin, version] of message.d) {
      if (version > VERSION_MAX) {
        this.#stats.highVersions++;
        continue;
      }
      const st = this.#origins.get(origin);
      const wm = st?.wm ?? 0;
      const horizon = this.#horizons.get(origin);
      if (horizon !== undefined && version < horizon.version && b.g.length < this.#config.horizonsPerMessageMax) {
        const bytes = horizonSize(origin, horizon.version, horizon.wall, horizon.logical);
        if (b.size + bytes <= budget) {
          b.g.push([origin, horizon.version, horizon.wall, horizon.logical]);
          b.size += bytes;
        }
      }
      if (wm > version && st !== undefined) {
        if (!rowsFull && !this.#rowsAbove(b, st, version, rowsLimit)) rowsFull = true;
      } else if (wm < version) {
        // Behind. Never on our own origin: only we write it, so a peer claiming more of it than we
        // wrote is lying or remembers a store we lost (counted, and acted on, in step()).
        if (origin !== this.#self && (st !== undefined || this.#origin(origin) !== undefined)) {
          requests.push([origin, wm]);
          this.#want(origin, version);
        }
      }
    }
    if (canAsk) {
      for (const [origin, wm] of requests) if (!b.entry(origin, wm)) break;
      if (message.h === 0) {
        const told = new Set(message.d.map((e) => e[0]));
        this.#priority(b, this.#config.priorityEntriesMax, told);
        // The opener knows fewer origins than we do: a slice of our digest lets it discover them.
        if (message.n < this.#originList.length) this.#sweepInto(b, b.d.length + this.#config.priorityEntriesMax, told);
      }
    }
    return { b, rowsFull };
  }

  /**
   * Appends the origin's live rows above `from`, in version order, while they fit `limit`; the
   * message's first row may go up to the whole budget instead (a row near the largest, with its
   * signature, does not fit beside the digest reserve: the answer's requests wait for the next
   * exchange rather than the row forever). Returns false when the budget cut the group (or left
   * no room for it).
   */
  #rowsAbove(b: Builder, st: OriginState, from: number, limit: number): boolean {
    const header = deltaHeaderSize(st.id, from, st.wm);
    const first = b.r.length === 0;
    // The schema bounds groups per message and rows per group; a catch-up budget could exceed them.
    if (b.size + header > (first ? b.budget : limit) || b.r.length >= GOSSIP_WIRE_BOUNDS.deltasMax) return false;
    const rows = st.rows();
    let lo = 0;
    let hi = rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((rows[mid] as GossipRow).version <= from) lo = mid + 1;
      else hi = mid;
    }
    const out: GossipRowWire[] = [];
    let size = header;
    let upto = st.wm;
    let cut = false;
    for (let i = lo; i < rows.length; i++) {
      const row = rows[i] as GossipRow;
      // Rows above the watermark (relayed by a member not trusted with the range) are not ours to vouch for.
      if (row.version > st.wm) break;
      if (this.#table.get(row.id) !== row) continue;
      const bytes = rowSize(row.version, row.topic, row.key, row.value ?? null, row.wall, row.logical);
      const room = first && out.length === 0 ? b.budget : limit;
      if (b.size + size + bytes > room || out.length >= GOSSIP_WIRE_BOUNDS.rowsPerDeltaMax) {
        cut = true;
        upto = out.length > 0 ? (out[out.length - 1] as GossipRowWire)[0] : from;
        break;
      }
      out.push(rowWire(row));
      size += bytes;
    }
    if (cut && out.length === 0) return false;
    b.r.push([st.id, from, upto, out]);
    b.size += size;
    return !cut;
  }

  /** Checks what the schema cannot: group ranges and row order, key and value bounds. */
  #valid(message: GossipMessage): boolean {
    if (message.h === 3 && message.d.length > 0) return false;
    for (const [, from, upto, rows] of message.r) {
      if (from > upto) return false;
      let last = from;
      for (const row of rows) {
        const [version, , key, value, , logical, pub, sig] = row;
        if (version <= last || version > upto || logical > LIMITS.gossip.rowLogicalMax) return false;
        // The schema's sizes, again for callers that hand over unchecked messages.
        if (pub.length !== ROW_PUB_BYTES || sig.length !== ROW_SIG_BYTES) return false;
        last = version;
        if (value !== null && value.length > this.#config.valueBytesMax) return false;
        if (utf8Length(key) > this.#config.keyBytesMax || !key.isWellFormed()) return false;
      }
    }
    return true;
  }

  #applyDelta(sender: string, delta: GossipDeltaWire): void {
    const [origin, from, upto, rows] = delta;
    if (origin === this.#self) {
      // Only this node writes its origin: a peer's rows or range of it are refused, whatever they say.
      if (upto > this.selfVersion && upto <= VERSION_MAX) this.#ownClaim(sender);
      else this.#stats.ownOrigin++;
      return;
    }
    if (upto > VERSION_MAX) {
      this.#stats.highVersions++;
      return;
    }
    const st = this.#origin(origin);
    if (st === undefined) return;
    if (st.wm < from) {
      this.#stats.gaps++;
      this.#want(origin, upto);
      return;
    }
    const before = st.wm;
    // A range says the origin wrote nothing else in it that still matters: no signature covers
    // that. From the origin itself or a trusted member, the watermark follows the range; from
    // anyone else only the signed rows are taken (the range comes again from a trusted member).
    const vouched = sender === origin || this.#trusted(sender);
    if (!vouched && upto > st.wm) this.#stats.untrusted++;
    let aborted = false;
    for (const [version, topic, key, value, wall, logical, pub, sig] of rows) {
      if (version <= st.wm) continue;
      const row = makeRow(topic, key, value ?? undefined, wall, logical, origin, version, pub, sig);
      const held = this.#table.get(row.id);
      if (held !== undefined && !rowBeats(row, held)) {
        // Changes nothing here (an older row for the key): no check, only the watermark moves.
        if (vouched) st.wm = version;
        continue;
      }
      if (wall - this.#physicalMs > this.#config.maxClockOffsetMs) {
        this.#stats.skewed++;
        aborted = true;
        break;
      }
      // The writer's signature, before the row touches the clock or the table.
      if (this.#signer.check("row", origin, pub, rowBody(row), sig) !== undefined) {
        this.#stats.forged++;
        aborted = true;
        break;
      }
      if (!this.#admit(row)) {
        // The origin's own row, refused by the table's rule wherever it comes from: skipped, not
        // asked for again (after the signature, so a relay cannot make a real row skipped).
        this.#stats.notAdmitted++;
        if (vouched) st.wm = version;
        continue;
      }
      if (this.#clock.update({ wall, logical }, this.#physicalMs) === undefined) {
        this.#stats.skewed++;
        aborted = true;
        break;
      }
      // The decoder hands out byte fields as views into the packet: kept bytes get their own copy;
      // the origin's key is shared by its rows.
      if (st.pub === undefined || !bytesEqual(st.pub, pub)) st.pub = pub.slice();
      const kept = makeRow(topic, key, value === null ? undefined : owned(value), wall, logical, origin, version, st.pub, owned(sig));
      if (!this.#merge(kept, st)) {
        aborted = true;
        break;
      }
      if (vouched) st.wm = version;
    }
    if (!aborted && vouched && upto > st.wm) st.wm = upto;
    if (aborted) this.#want(origin, upto);
    if (st.wm !== before) {
      this.#markRecent(origin);
      const target = this.#wanted.get(origin);
      if (target !== undefined && st.wm >= target) this.#wanted.delete(origin);
    }
  }

  /**
   * A peer showed more of our origin than we wrote (counted). If we booted without our own version,
   * we lost our store: the sequence moves to our own floor (never to the peer's value: it may lie)
   * and the rows we wrote since boot, which peers refuse below their watermark for us, are written
   * again above it. At most once a boot.
   */
  #ownClaim(from: string): void {
    this.#stats.ownOrigin++;
    const floor = this.#selfFloor;
    if (floor === undefined || !this.#trusted(from)) return;
    this.#selfFloor = undefined;
    const st = this.#origin(this.#self);
    if (st === undefined || floor <= st.wm) return;
    const mine = st.rows().filter((row) => this.#table.get(row.id) === row);
    st.wm = floor;
    for (const row of mine) {
      const again = signRow(this.#signer, makeRow(row.topic, row.key, row.value, row.wall, row.logical, this.#self, st.wm + 1));
      // It beats the row it replaces (same stamp and origin, higher version) on a key already held.
      this.#merge(again, st);
      st.wm = again.version;
    }
    this.#markRecent(this.#self);
    this.#stats.renumbers++;
    this.#out.emit({ type: "gossip-renumbered", from, floor, rows: mine.length });
  }

  // ---- Tombstones and horizons -------------------------------------------------------------------

  /** Collects tombstones older than the grace period (the queue is in arrival order). */
  #collect(): void {
    const queue = this.#tombstoneQueue;
    const grace = this.#config.tombstoneGraceTicks;
    while (this.#tombstoneHead < queue.length) {
      const entry = queue[this.#tombstoneHead] as Tombstone;
      if (this.#now - entry.at < grace) break;
      this.#tombstoneHead++;
      const row = entry.row;
      if (this.#table.get(row.id) !== row) continue;
      this.#remove(row);
      this.#stats.tombstonesCollected++;
      const horizon = this.#horizons.get(row.origin);
      if (horizon === undefined) this.#horizons.set(row.origin, { version: row.version, wall: row.wall, logical: row.logical });
      else {
        if (row.version > horizon.version) horizon.version = row.version;
        if (compareHlc(row, horizon) > 0) {
          horizon.wall = row.wall;
          horizon.logical = row.logical;
        }
      }
    }
    // Overwritten tombstones stay in the queue until their time; compact when mostly consumed.
    if (this.#tombstoneHead > 1024 && this.#tombstoneHead * 2 > queue.length) {
      this.#tombstoneQueue = queue.slice(this.#tombstoneHead);
      this.#tombstoneHead = 0;
    }
  }

  /** A peer says it collected tombstones we have not seen: adopt its horizons, reset if behind. */
  #onHorizons(from: string, horizons: readonly GossipHorizonWire[]): void {
    if (!this.#trusted(from)) {
      // A horizon resets what this node holds: taken only from a member trusted with it.
      this.#stats.untrusted++;
      return;
    }
    let stamp: Hlc | undefined;
    for (const [origin, version, wall, logical] of horizons) {
      if (origin === this.#self) {
        // Not kept: a horizon of our own origin from a peer says nothing we can check.
        if (version > this.selfVersion && version <= VERSION_MAX) this.#ownClaim(from);
        else this.#stats.ownOrigin++;
        continue;
      }
      if (version > VERSION_MAX) {
        this.#stats.highVersions++;
        continue;
      }
      if (wall > this.#physicalMs + this.#config.maxClockOffsetMs) {
        // A stamp ahead of every clock would make this node drop every row stamped before it.
        this.#stats.skewed++;
        continue;
      }
      const known = this.#horizons.get(origin);
      if (known === undefined) {
        if (this.#horizons.size < this.#config.originsMax) this.#horizons.set(origin, { version, wall, logical });
      } else {
        if (version > known.version) known.version = version;
        if (compareHlc({ wall, logical }, known) > 0) {
          known.wall = wall;
          known.logical = logical;
        }
      }
      if ((this.#origins.get(origin)?.wm ?? 0) >= version) continue;
      if (stamp === undefined || compareHlc({ wall, logical }, stamp) > 0) stamp = { wall, logical };
    }
    if (stamp === undefined || this.#now < this.#freshUntil) return;
    this.#reset(from, stamp);
  }

  /**
   * This node missed tombstones (stamped at most `stamp`) that peers have collected: any row of
   * another origin stamped at or before it may be one they deleted. Drop those rows' origins whole
   * (rows and watermark), so they are fetched again from peers that did see the deletions.
   */
  #reset(from: string, stamp: Hlc): void {
    const affected = new Set<OriginState>();
    for (const row of this.#table.values()) {
      if (row.origin === this.#self || compareHlc(row, stamp) > 0) continue;
      const st = this.#origins.get(row.origin);
      if (st !== undefined) affected.add(st);
    }
    let dropped = 0;
    for (const st of affected) {
      for (const row of st.rows()) {
        if (this.#table.get(row.id) !== row) continue;
        this.#remove(row);
        dropped++;
        if (row.value !== undefined) {
          this.#notify(makeRow(row.topic, row.key, undefined, row.wall, row.logical, row.origin, row.version));
        }
      }
      st.clear();
      st.wm = 0;
      this.#want(st.id, 1);
    }
    this.#stats.resets++;
    this.#out.emit({ type: "gossip-reset", from, droppedRows: dropped, horizonWall: stamp.wall });
  }
}

/** Bytes the decoder handed out as a view into a packet, copied (kept as they are when whole). */
function owned(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset !== 0 || bytes.buffer.byteLength !== bytes.length ? bytes.slice() : bytes;
}
