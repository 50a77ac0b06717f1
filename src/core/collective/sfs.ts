// sfs: the /shared/ folder, replicated to every node. A sans-IO core (DESIGN.md §2): the kernel
// feeds it ticks, peer messages and the completions of the file effects it asked for; it returns
// messages, effects and events through ready(). The adapter (src/adapters/sfs-files.ts) does the
// disk work and all hashing (SHA-256, given here as hex). Protocol: docs/protocols/sfs.md. Paths:
// sfs-path.ts; versions and their order: sfs-version.ts; wire schemas: sfs-wire.ts.
//
// The manifest maps each canonical path (sfs-path.ts) to its winning version: a stamp (Lamport
// counter, origin), a version vector, size, SHA-256 of the file and of each chunk, and flags
// (tombstone, directory). Versions are ordered totally by (counter, origin, deleted, dir, sha256,
// size, chunkBytes, mtime); the manifest keeps the largest, so every node that has seen the same
// versions keeps the same one, whatever the order they came in. A writer's counter exceeds every
// counter it has seen, so a version that knew another (its vector dominates) is also larger.
// When neither vector dominates, the two versions were written concurrently: the larger wins and
// the loser, if it is a live file, is kept as a new entry at `stem.conflict-<origin>-<counter>.ext`
// (same content, stamp and vector: every node derives the same one). Nothing is lost.
//
// A live file that has live entries under it (a file on one node, a folder on another) is turned
// into a tombstone with the same stamp, so its content is kept by the same rule.
//
// Each node also keeps, per path, the `base`: the version its disk reflects. Content moves only
// through the temp folder: chunks are fetched into a temp file and verified one by one against the
// entry's chunk hashes, and the file appears under its name only by an atomic rename once every
// chunk is written (and the adapter re-checked the whole file). A file whose content another entry
// still needs (a conflict copy, the target of a move) is neither removed nor overwritten until that
// content sits complete in a temp file.
//
// Trust (docs/protocols/sfs.md, "Signatures", "Bounds on peers"). Every version is signed by its
// origin, the node whose counter it advanced (sfs-version.ts sfsVersionBody; derived versions carry
// the signature of the version they derive from): a peer's entry that would change what this node
// holds is believed only when its origin's signature verifies (and, for a shadow tombstone, when
// this node holds an entry below it too), so no member can write, replace or delete a path in
// another node's name. Refusals are counted (the signer by reason; stats.signatureRefused,
// shadowRefused), never thrown, and the rest of the message is taken. A peer's entry is also
// bounded as a value: counters
// above SFS_COUNTER_MAX are dropped and counted; larger ones up to it are kept, but the clock takes
// a peer's counter only up to SFS_CLOCK_ADOPT_MAX, so this node's own versions always have room
// below SFS_COUNTER_MAX (a new version's counter exceeds the clock and every counter of its vector,
// so a path a peer pushed to the end refuses local changes with an error, and only that path). An
// entry of this node's own origin above its clock was never written here: dropped and counted.
// Each origin may have at most originFilesMax live entries and originBytesMax bytes of live files
// in the manifest (beyond, its entries are refused and counted), and a fetch or local copy that
// would leave less than diskReserveBytes free on the disk (as the adapter last measured it) waits.
// A local change is checked before it touches the disk: it either reaches the manifest or fails
// with its reason, never reports done without a version.
import { assert } from "../util/assert.ts";
import { fnv1a, FNV_OFFSET } from "../util/bytes.ts";
import { LIMITS } from "../util/limits.ts";
import { Outbox, type Ready } from "../util/outbox.ts";
import { Timeout } from "../util/timeout.ts";
import { ancestorsOf, conflictPath, isCanonicalPath, normalizeSharedPath } from "./sfs-path.ts";
import {
  chunkCount, cmpStr, compareVersions, entryFromWire, entryToStoredWire, entryToWire, flagsOf, isLive, isLiveDir, isLiveFile, sameVersion,
  SFS_CLOCK_ADOPT_MAX, SFS_COUNTER_MAX, sfsVersionBody, signedVersion, stampKey, vvBump, vvMerge, vvRelation, type SfsEntry, type SfsVersionFields,
  type VvItem,
} from "./sfs-version.ts";
import {
  CHUNK_BUSY, CHUNK_DATA, CHUNK_MISS, FLAG_HAVE, SFS_WIRE,
  type SfsEntryWire, type SfsMessage, type SfsMessageOf, type SfsRecordWire,
} from "./sfs-wire.ts";

export {
  compareVersions, entryFromWire, entryToWire, SFS_CLOCK_ADOPT_MAX, SFS_COUNTER_MAX, sfsVersionBody, signedVersion, vvRelation, type SfsEntry,
  type SfsSignedAs, type SfsVersionFields,
} from "./sfs-version.ts";

/**
 * Signs this node's versions and checks other origins' (the node's RecordSigner, trust.ts, is one;
 * tests may use it over the simulator's stand-in identity). check() answers undefined for a good
 * signature, else the reason, and counts the refusal itself.
 */
export interface SfsSigner {
  readonly publicKey: Uint8Array;
  sign(kind: "sfs", body: Uint8Array): Uint8Array;
  check(kind: "sfs", writer: string, pub: Uint8Array, body: Uint8Array, signature: Uint8Array): string | undefined;
}

/**
 * No signatures: versions carry a zero key and a zero signature, and every peer's version is
 * believed. For tests of the disk side only; a node always passes its RecordSigner.
 */
export const SFS_UNSIGNED: SfsSigner = { publicKey: new Uint8Array(32), sign: () => new Uint8Array(64), check: () => undefined };

export interface SfsConfig {
  /** Chunk size of the files this node writes (peers' entries carry their own). 1 MiB: a chunk and its envelope fill a 16 MiB frame to 1/16. */
  readonly chunkBytes: number;
  /** Largest file this node shares or accepts (≤ SFS_WIRE.fileBytesMax, and ≤ chunkBytes × SFS_WIRE.chunksMax for its own files). */
  readonly fileBytesMax: number;
  /** Manifest entries, tombstones included (≤ SFS_WIRE.filesMax). When full, the oldest tombstone is forgotten. */
  readonly filesMax: number;
  /** Estimated bytes of entries in one sfs-entries message (the rest follows in the next round). */
  readonly entriesBytesMax: number;
  /** Estimated bytes of summaries in one sfs-sums message (whole buckets; the rest follows in the next round). */
  readonly sumsBytesMax: number;
  /** Paths asked for in one sfs-entries message. */
  readonly wantsMax: number;
  /** Peers a local change is pushed to at once; anti-entropy reaches the others. */
  readonly pushPeersMax: number;
  /** Ticks between two anti-entropy rounds (a digest to one live peer, round robin). */
  readonly syncTicks: number;
  /** Ticks a chunk request may stay unanswered before it goes to another holder. */
  readonly requestTimeoutTicks: number;
  /** Chunk requests in flight to one peer (K), and chunk reads served to one peer at once. */
  readonly inflightPerPeer: number;
  /** Chunk requests in flight plus received chunks not yet written, in all: bounds the chunk bytes held (× chunkBytes). */
  readonly requestsMax: number;
  /** Files fetched over the network at once. */
  readonly transfersMax: number;
  /** Local copies (content already on this disk under another name) at once. */
  readonly copiesMax: number;
  /** Chunk reads for peers in flight at once; beyond, peers are told to ask later. */
  readonly servesMax: number;
  /** Ticks to wait before retrying a file after every holder failed or a commit failed (doubles per failure, up to 64×). */
  readonly retryTicks: number;
  /** Age (wall-clock ms since the delete) after which a tombstone is forgotten. */
  readonly tombstoneMs: number;
  /** Ticks between tombstone sweeps. */
  readonly gcTicks: number;
  /** Pending paths examined per tick. */
  readonly pendingPerTick: number;
  /** Local operations (writes, removes, mkdirs from the shell) queued at once. */
  readonly localOpsMax: number;
  /** Peers tried per file besides its known holders. */
  readonly candidatesMax: number;
  /** Live entries (files and folders) one origin may have in the manifest; beyond, its entries are refused. */
  readonly originFilesMax: number;
  /** Bytes of live files one origin may have in the manifest; beyond, its entries are refused. */
  readonly originBytesMax: number;
  /** Free disk space a fetch or local copy must leave (as the adapter last measured it); otherwise the file waits. */
  readonly diskReserveBytes: number;
}

export const SFS_DEFAULTS: SfsConfig = {
  chunkBytes: 1024 * 1024,
  fileBytesMax: SFS_WIRE.fileBytesMax,
  filesMax: 10_000,
  entriesBytesMax: 4 * 1024 * 1024,
  sumsBytesMax: 4 * 1024 * 1024,
  wantsMax: 4096,
  pushPeersMax: 16,
  syncTicks: 200,
  requestTimeoutTicks: 1000,
  inflightPerPeer: 4,
  requestsMax: 32,
  transfersMax: 4,
  copiesMax: 4,
  servesMax: 16,
  retryTicks: 300,
  tombstoneMs: 7 * 24 * 3600 * 1000,
  gcTicks: 6000,
  pendingPerTick: 64,
  localOpsMax: 256,
  candidatesMax: 16,
  originFilesMax: LIMITS.sfs.originFilesMax,
  originBytesMax: LIMITS.sfs.originBytesMax,
  diskReserveBytes: LIMITS.sfs.diskReserveBytes,
};

/** What the adapter measured of a file: hashes in hex, chunked by chunkBytes. */
export interface SfsFileInfo {
  readonly size: number;
  readonly sha256: string;
  readonly chunkBytes: number;
  readonly chunkHashes: readonly string[];
  /** The file's mtime on this disk, in ms. */
  readonly mtimeMs: number;
}

/** One item of a disk scan, relative to /shared/ with "/" separators. */
export interface SfsDiskItem {
  readonly path: string;
  readonly dir: boolean;
  readonly size: number;
  readonly mtimeMs: number;
}

/** What the core reads of the membership: the kernel's view of live peers (this node excluded). */
export interface SfsMembership {
  liveIds(): readonly string[];
}

/**
 * Disk work for the adapter. Every effect has an id; its completion comes back through complete().
 * Effects may run concurrently: the core never issues two conflicting operations on one path or
 * temp file at once. Paths are canonical and relative to /shared/; temps are names in the temp folder.
 */
export type SfsEffect =
  /** Write bytes at offset into the temp file (created 0600 if absent). */
  | { readonly kind: "write-chunk"; readonly id: number; readonly temp: string; readonly index: number; readonly offset: number; readonly bytes: Uint8Array }
  /**
   * Make the temp file the file at path: fsync it, check its size (and SHA-256 when verify), create
   * the parent folders, rename over path, fsync the folder; then report the new mtime. A missing temp
   * of size 0 is created empty. A folder in the way that holds no file (a leftover parent of removed
   * files) is removed first; one that holds a file fails the commit ("is a folder").
   */
  | { readonly kind: "commit"; readonly id: number; readonly temp: string; readonly path: string; readonly size: number; readonly sha256: string; readonly verify: boolean }
  /** Delete a temp file (absent is fine). */
  | { readonly kind: "discard"; readonly id: number; readonly temp: string }
  /**
   * Delete the file (`dir` false) or the folder (`dir` true): a folder that holds only (empty)
   * folders goes with them; one that holds a file is kept and reported "not-empty". Absent is fine;
   * a folder where a file was asked, or a file where a folder was, is left and reported "kind".
   */
  | { readonly kind: "remove"; readonly id: number; readonly path: string; readonly dir: boolean }
  /** Create the folder (and its parents). */
  | { readonly kind: "mkdir"; readonly id: number; readonly path: string }
  /** Read `length` bytes at `offset` of the file at path, for a peer. */
  | { readonly kind: "read-chunk"; readonly id: number; readonly path: string; readonly offset: number; readonly length: number }
  /** Copy the file at `from` into the temp file, hashing it in chunks of chunkBytes. */
  | { readonly kind: "copy"; readonly id: number; readonly from: string; readonly temp: string; readonly chunkBytes: number };

export type SfsCompletion =
  | { readonly kind: "write-chunk"; readonly id: number; readonly error?: string }
  | { readonly kind: "commit"; readonly id: number; readonly mtimeMs: number; readonly error?: string }
  | { readonly kind: "discard"; readonly id: number }
  | { readonly kind: "remove"; readonly id: number; readonly error?: string }
  | { readonly kind: "mkdir"; readonly id: number; readonly mtimeMs: number; readonly error?: string }
  | { readonly kind: "read-chunk"; readonly id: number; readonly bytes?: Uint8Array }
  | { readonly kind: "copy"; readonly id: number; readonly info?: SfsFileInfo; readonly error?: string };

export type SfsEvent =
  | { readonly type: "sfs-file-updated"; readonly path: string; readonly size: number; readonly origin: string; readonly counter: number }
  | { readonly type: "sfs-file-removed"; readonly path: string }
  | { readonly type: "sfs-conflict"; readonly path: string; readonly kept: string; readonly loser: string }
  | { readonly type: "sfs-commit-failed"; readonly path: string; readonly error: string }
  | { readonly type: "sfs-local-done"; readonly op: number; readonly path: string; readonly error?: string };

export interface SfsOutbound {
  /** Member id; the kernel resolves the address. All sfs messages go on the stream channel. */
  readonly to: string;
  readonly message: SfsMessage;
}

export interface SfsReady extends Ready<SfsOutbound, SfsEvent> {
  readonly effects: readonly SfsEffect[];
  /** Records to write to the store (key `sfs/file/<path>`) durably, before the messages go out. */
  readonly changed: readonly { readonly path: string; readonly record: SfsRecordWire }[];
  /** Paths whose records to delete from the store (forgotten tombstones). */
  readonly forgotten: readonly string[];
  /** The Lamport clock to store (`sfs/clock`) with the records, when it moved. */
  readonly clock: number | undefined;
}

export type SfsLocalResult = { readonly ok: true; readonly ops: readonly number[] } | { readonly ok: false; readonly error: string };

export interface SfsStats {
  messagesIn: number;
  messagesOut: number;
  /** Peer messages or entries with a path that is not canonical (outside /shared/, "..", ...). */
  badPaths: number;
  /** Peer entries that fail the core's checks (chunk count, vector shape). */
  badEntries: number;
  /** New paths refused because the manifest is full (and no tombstone could go). */
  full: number;
  entriesMerged: number;
  conflicts: number;
  conflictsDropped: number;
  chunksIn: number;
  bytesIn: number;
  chunksOut: number;
  bytesOut: number;
  /** Chunks whose SHA-256 did not match the entry: refused and fetched again. */
  badChunks: number;
  /** Chunk requests that timed out. */
  timeouts: number;
  misses: number;
  busies: number;
  /** Chunk replies for no request in flight (late, duplicate or unsolicited). */
  unsolicited: number;
  /** Transfers whose every candidate failed: they waited retryTicks, or (no chunk came) gave their place up and the file backed off. */
  stalls: number;
  commits: number;
  commitFailures: number;
  removes: number;
  localCopies: number;
  localCopyFailures: number;
  tombstonesForgotten: number;
  /** Disk scan items that cannot be shared (path not canonical). */
  unshareable: number;
  /** Peer entries with a counter above SFS_COUNTER_MAX: dropped. */
  highCounters: number;
  /** Peer entries of this node's own origin above its clock (never written here): dropped. */
  ownOrigin: number;
  /** Peer entries refused because their origin would exceed originFilesMax or originBytesMax. */
  quotaRefused: number;
  /** Fetches and local copies put off because they would leave less than diskReserveBytes free. */
  diskRefused: number;
  /** Local changes refused before they touched the disk, or not recorded: no counter left, or this node's quota. */
  localRefused: number;
  /** Peer entries that would change what is held whose origin's signature does not verify: dropped, never fetched. */
  signatureRefused: number;
  /** Peer shadow tombstones (a file turned into a tombstone for the entries below it) for a path with no live entry below here: dropped. */
  shadowRefused: number;
  /** Unsigned records of other origins read from the store (the previous format): dropped at boot. */
  unsignedDropped: number;
  /** Peer versions of a path their origin may not write (a folder only core members write): dropped, never fetched. */
  reservedRefused: number;
}

/** What `sfs list` and `sfs stat` show of one path. */
export interface SfsFileView {
  readonly entry: SfsEntry;
  /** synced: the disk holds this version; fetching; waiting (for a holder, a slot or a retry); removing; pending (a disk operation is queued). */
  readonly local: "synced" | "fetching" | "waiting" | "removing" | "pending";
  readonly base: SfsEntry | undefined;
  readonly holders: readonly string[];
  readonly progress: SfsProgress | undefined;
  /** Waiting because fetching it would leave less than diskReserveBytes free. */
  readonly diskWait: boolean;
}

export interface SfsProgress {
  readonly phase: "copy" | "fetch" | "ready" | "commit";
  readonly chunks: number;
  readonly written: number;
  readonly bytes: number;
  readonly inflight: number;
  readonly startedTick: number;
}

// ---------------------------------------------------------------------------------------------
// Hashes and budgets

const HEX64 = /^[0-9a-f]{64}$/;
const TEMP_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const utf8 = new TextEncoder();
const FNV_OFFSET_2 = 0x5bd1e995;

/** Rough wire size of an entry (with its key, signature and what a derived one's origin signed), for the per-message byte budgets. */
function entryBytes(entry: SfsEntry): number {
  const signedAs = entry.signedAs === undefined ? 0 : entry.signedAs.path.length * 3 + 48 + entry.signedAs.chunks.length * 32;
  return entry.path.length * 3 + 96 + entry.chunks.length * 32 + entry.vv.length * 28 + 100 + signedAs;
}

function bucketOf(path: string): number {
  return fnv1a(FNV_OFFSET, utf8.encode(path)) % SFS_WIRE.buckets;
}

function entryHash(entry: SfsEntry): [number, number] {
  const bytes = utf8.encode(`${entry.path}\u0000${entry.counter}\u0000${entry.origin}\u0000${flagsOf(entry)}\u0000${entry.sha256}`);
  return [fnv1a(FNV_OFFSET, bytes), fnv1a(FNV_OFFSET_2, bytes)];
}

// ---------------------------------------------------------------------------------------------
// State

interface FileState {
  entry: SfsEntry;
  /** The version the disk reflects (undefined: nothing of this path was ever on this disk). */
  base: SfsEntry | undefined;
  /** mtime of the base's file or folder on this disk (-1: none). */
  localMtimeMs: number;
  readonly bucket: number;
  hashHi: number;
  hashLo: number;
  /** Peers that said they hold the entry's content. */
  holders: Set<string> | undefined;
  /** No new transfer before this tick. */
  retryAt: number;
  failures: number;
  /** A local copy from this file did not match its base: not used as a source until rescanned. */
  suspect: boolean;
  /** #baseSeq when the base last changed (a scan taken before that says nothing about it). */
  baseSeq: number;
  /** Its fetch was put off for lack of disk space (until the next measure or retry). */
  diskWait: boolean;
}

const MISSING = 0;
const REQUESTED = 1;
const WRITING = 2;
const WRITTEN = 3;

interface Transfer {
  readonly path: string;
  readonly entry: SfsEntry;
  readonly temp: string;
  phase: "copy" | "fetch" | "ready" | "commit";
  cancelled: boolean;
  readonly chunkState: Uint8Array;
  written: number;
  bytes: number;
  readonly inflight: Map<number, { readonly peer: string; readonly at: number }>;
  /** Effects (writes, the copy) whose completion is awaited. */
  pendingOps: number;
  readonly tried: Set<string>;
  queue: number[];
  order: string[] | undefined;
  /** The first `likely` of `order` are peers that should hold the version (holders, the origin). */
  likely: number;
  waitUntil: number;
  /** A chunk arrived since the transfer started or last stalled: only then does a stall keep its place. */
  progressed: boolean;
  readonly startedTick: number;
}

interface LocalOp {
  readonly op: number;
  readonly kind: "write" | "remove" | "mkdir";
  readonly path: string;
  readonly info?: SfsFileInfo;
  readonly temp?: string;
  /**
   * The vector the new version builds on, taken when the operation was asked: what the disk held
   * then (a write), or that and the entry the user saw (a remove). A version that arrives meanwhile
   * is therefore concurrent with the new one, not silently overwritten.
   */
  readonly vv: readonly VvItem[];
}

type Op =
  | { readonly kind: "write"; readonly transfer: Transfer; readonly index: number; readonly length: number }
  | { readonly kind: "commit"; readonly path: string; readonly transfer?: Transfer; readonly local?: LocalOp }
  | { readonly kind: "remove"; readonly path: string; readonly local?: LocalOp }
  | { readonly kind: "mkdir"; readonly path: string; readonly local?: LocalOp; readonly version?: SfsEntry }
  | { readonly kind: "serve"; readonly to: string; readonly get: SfsMessageOf<"sfs-get">; readonly length: number }
  | { readonly kind: "copy"; readonly transfer: Transfer; readonly from: string }
  | { readonly kind: "discard" }
  /** Removal of an emptied folder: best effort, nothing waits for it. */
  | { readonly kind: "prune"; readonly path: string };

const COMPLETES: Record<SfsCompletion["kind"], readonly Op["kind"][]> = {
  "write-chunk": ["write"], commit: ["commit"], discard: ["discard"], remove: ["remove", "prune"], mkdir: ["mkdir"], "read-chunk": ["serve"],
  copy: ["copy"],
};

function newStats(): SfsStats {
  return {
    messagesIn: 0, messagesOut: 0, badPaths: 0, badEntries: 0, full: 0, entriesMerged: 0, conflicts: 0, conflictsDropped: 0,
    chunksIn: 0, bytesIn: 0, chunksOut: 0, bytesOut: 0, badChunks: 0, timeouts: 0, misses: 0, busies: 0, unsolicited: 0,
    stalls: 0, commits: 0, commitFailures: 0, removes: 0, localCopies: 0, localCopyFailures: 0, tombstonesForgotten: 0,
    unshareable: 0, highCounters: 0, ownOrigin: 0, quotaRefused: 0, diskRefused: 0, localRefused: 0, signatureRefused: 0, shadowRefused: 0,
    unsignedDropped: 0, reservedRefused: 0,
  };
}

function addTo<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (set === undefined) map.set(key, (set = new Set()));
  set.add(value);
}

function removeFrom<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (set === undefined) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}

function validateConfig(c: SfsConfig): void {
  const positive = [c.filesMax, c.entriesBytesMax, c.sumsBytesMax, c.wantsMax, c.pushPeersMax, c.syncTicks, c.requestTimeoutTicks,
    c.inflightPerPeer, c.requestsMax, c.transfersMax, c.copiesMax, c.servesMax, c.retryTicks, c.tombstoneMs, c.gcTicks,
    c.pendingPerTick, c.localOpsMax, c.candidatesMax, c.originFilesMax, c.originBytesMax];
  assert(positive.every((n) => Number.isInteger(n) && n > 0), "Sfs: every bound must be a positive integer");
  assert(Number.isSafeInteger(c.diskReserveBytes) && c.diskReserveBytes >= 0, "Sfs: diskReserveBytes must be a whole number of bytes");
  assert(c.chunkBytes >= SFS_WIRE.chunkBytesMin && c.chunkBytes <= SFS_WIRE.chunkBytesMax, "Sfs: chunkBytes out of the protocol's range");
  assert(c.fileBytesMax <= Math.min(SFS_WIRE.fileBytesMax, c.chunkBytes * SFS_WIRE.chunksMax), "Sfs: fileBytesMax beyond what chunksMax chunks hold");
  assert(c.filesMax <= SFS_WIRE.filesMax && c.wantsMax <= SFS_WIRE.filesMax, "Sfs: filesMax or wantsMax beyond the protocol's list bound");
  // A chunk reply (chunk + its path and header) must fit one stream frame many times over.
  assert(c.chunkBytes * 4 <= LIMITS.frameBytesMax, "Sfs: a chunk must stay well under the 16 MiB frame");
  assert(c.entriesBytesMax <= LIMITS.frameBytesMax / 2 && c.sumsBytesMax <= LIMITS.frameBytesMax / 2, "Sfs: message budgets must fit a frame");
}

// ---------------------------------------------------------------------------------------------

export class Sfs {
  readonly #self: string;
  readonly #config: SfsConfig;
  readonly #records: SfsSigner;
  readonly #reserved: (origin: string, path: string) => string | undefined;
  /**
   * Files on this disk whose record was another origin's unsigned version (the previous format),
   * dropped at boot: what the disk holds there, so the boot scan does not take it for a new local
   * version (which would conflict with its origin's, signed again at its own boot). Taken as the
   * base when the signed version comes; a change on the disk builds on its vector.
   */
  readonly #unsignedDisk = new Map<string, { readonly base: SfsEntry; readonly mtimeMs: number }>();
  readonly #files = new Map<string, FileState>();
  readonly #bucketPaths: Set<string>[] = Array.from({ length: SFS_WIRE.buckets }, () => new Set<string>());
  readonly #digest = new Uint32Array(SFS_WIRE.buckets * 2);
  /** Live entries strictly below each folder path (for the file-versus-folder rule). */
  readonly #liveUnder = new Map<string, number>();
  /** Entries of any kind (tombstones too) strictly below each folder path: where a shadow tombstone may come from. */
  readonly #entriesUnder = new Map<string, number>();
  /** sha256 → paths whose disk holds that content (local copy sources). */
  readonly #shaHave = new Map<string, Set<string>>();
  /** stamp → paths whose disk holds that version (served to peers). */
  readonly #stampHave = new Map<string, Set<string>>();
  /** sha256 → paths whose entry needs that content and does not have it yet. */
  readonly #wanted = new Map<string, Set<string>>();
  /** Paths whose disk does not reflect their entry yet. */
  readonly #pending = new Set<string>();
  readonly #transfers = new Map<string, Transfer>();
  /** Paths with a commit, remove or mkdir in flight. */
  readonly #busy = new Set<string>();
  /** Of those, the ones whose operation is local (a write or remove asked on this node). */
  readonly #localBusy = new Set<string>();
  readonly #localQueue = new Map<string, LocalOp[]>();
  #localQueued = 0;
  readonly #ops = new Map<number, Op>();
  readonly #peerRequests = new Map<string, number>();
  readonly #peerServes = new Map<string, number>();
  #requests = 0;
  #serves = 0;
  #copies = 0;
  #fetches = 0;
  #nextId = 1;
  #baseSeq = 0;
  #clock = 0;
  #clockDirty = false;
  #now = 0;
  #wallMs = 0;
  #syncCursor = 0;
  #pushCursor = 0;
  #live: readonly string[] = [];
  readonly #sync: Timeout;
  readonly #gc: Timeout;
  readonly #out = new Outbox<SfsOutbound, SfsEvent, { effects: SfsEffect }>({ effects: [] });
  #dirty = new Set<string>();
  #forgotten = new Set<string>();
  /** Live entries and bytes of live files per origin, for the quota. */
  readonly #usage = new Map<string, { files: number; bytes: number }>();
  /** Free bytes of the disk as the adapter last measured them (undefined: never measured). */
  #freeBytes: number | undefined;
  readonly stats: SfsStats = newStats();

  /** `records` signs this node's versions (its key must be `self`'s) and checks peers'; SFS_UNSIGNED only in tests of the disk side. */
  /**
   * `records` signs this node's versions and checks other origins'. `reserved` says why `origin` may
   * not write `path` (a folder only core members write), undefined when it may: a peer's version
   * there is dropped, a local change refused.
   */
  constructor(self: string, config: SfsConfig = SFS_DEFAULTS, records: SfsSigner = SFS_UNSIGNED, reserved: (origin: string, path: string) => string | undefined = () => undefined) {
    validateConfig(config);
    this.#self = self;
    this.#config = config;
    this.#records = records;
    this.#reserved = reserved;
    this.#sync = new Timeout("sfs-sync", config.syncTicks);
    this.#sync.start();
    this.#gc = new Timeout("sfs-gc", config.gcTicks);
    this.#gc.start();
  }

  get config(): SfsConfig {
    return this.#config;
  }

  get clock(): number {
    return this.#clock;
  }

  get size(): number {
    return this.#files.size;
  }

  /** Free disk bytes as last measured (diskFree), undefined before the first measure. */
  get freeBytes(): number | undefined {
    return this.#freeBytes;
  }

  /** Live entries and bytes of live files an origin has in the manifest (its quota use). */
  usage(origin: string): { readonly files: number; readonly bytes: number } {
    const use = this.#usage.get(origin);
    return { files: use?.files ?? 0, bytes: use?.bytes ?? 0 };
  }

  /**
   * The free bytes of the disk under /shared/, as the adapter measured them (statfs). Fetches and
   * local copies that would leave less than diskReserveBytes wait; files put off for lack of space
   * are tried again at once after each measure.
   */
  diskFree(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes < 0) return;
    this.#freeBytes = bytes;
    for (const path of this.#pending) {
      const state = this.#files.get(path);
      if (state?.diskWait === true) state.retryAt = 0;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Boot

  /**
   * Records and clock from the store, before any traffic and before reconcile(). Records that fail
   * the checks are skipped and counted (badEntries). The disk is taken to be as the records say
   * until reconcile() reports otherwise. The store's versions were checked (or made) here before
   * they were stored and are not checked again. Unsigned versions (the previous format): this
   * node's own are signed again (and stored again); a record of another origin's is dropped and
   * counted (unsignedDropped), and the file its base shows on the disk is remembered, neither shared
   * nor taken for a new local version, until its origin's signed version comes (see #unsignedDisk).
   */
  restore(records: readonly SfsRecordWire[], clock: number): void {
    this.#observe(clock, true);
    const resigned = new Set<string>();
    for (const [entryWire, baseWire, mtime] of records) {
      const stored = entryFromWire(entryWire);
      const storedBase = baseWire === 0 ? undefined : baseWire === 1 ? stored : entryFromWire(baseWire);
      if (typeof stored === "string" || typeof storedBase === "string" || (storedBase !== undefined && storedBase.path !== stored.path)
        || this.#files.has(stored.path) || this.#files.size >= this.#config.filesMax) {
        this.stats.badEntries++;
        continue;
      }
      if (stored.sig.length === 0 && stored.origin !== this.#self) {
        this.stats.unsignedDropped++;
        if (isLiveFile(storedBase) && this.#unsignedDisk.size < this.#config.filesMax) this.#unsignedDisk.set(stored.path, { base: storedBase, mtimeMs: mtime });
        continue;
      }
      const entry = this.#resigned(stored);
      const base = storedBase === stored ? entry : storedBase === undefined ? undefined : this.#resigned(storedBase);
      for (const item of entry.vv) this.#observe(item[1], item[0] === this.#self);
      if (base !== undefined) for (const item of base.vv) this.#observe(item[1], item[0] === this.#self);
      const state = this.#create(entry);
      this.#setBase(state, base, mtime);
      this.#settle(state);
      if (entry !== stored) resigned.add(entry.path);
    }
    this.#clockDirty = false;
    // Only the records signed again are stored again (in the new format).
    this.#dirty = resigned;
  }

  /** This node's unsigned version (the previous format) signed now; any other version as it is. */
  #resigned(entry: SfsEntry): SfsEntry {
    if (entry.sig.length > 0 || entry.origin !== this.#self) return entry;
    return this.#sign(entry);
  }

  /** A version of this node's, signed by it. */
  #sign(fields: SfsVersionFields): SfsEntry {
    const { path, counter, origin, deleted, dir, size, mtimeMs, sha256, chunkBytes, chunks, vv } = fields;
    const version: SfsVersionFields = { path, counter, origin, deleted, dir, size, mtimeMs, sha256, chunkBytes, chunks, vv };
    return { ...version, pub: this.#records.publicKey, sig: this.#records.sign("sfs", sfsVersionBody(version)), signedAs: undefined };
  }

  /** Take before a scan that runs while the node works (`sfs sync`) and pass to reconcile(). */
  scanMark(): number {
    return this.#baseSeq;
  }

  /**
   * Compares a scan of the disk with the records: folders and deletions found are recorded as new
   * local versions at once; files whose size or mtime differ from the record are returned for the
   * adapter to hash and report through localWrite(path, info) (without a temp: the file is in
   * place). Pass complete = false when the scan was cut short: then nothing missing is taken as
   * deleted. Paths with a disk operation in flight, and with `mark` (scanMark() taken before the
   * scan) those whose disk state the core changed since, are left alone.
   */
  reconcile(listing: readonly SfsDiskItem[], complete: boolean, mark = Number.MAX_SAFE_INTEGER): { readonly rehash: string[] } {
    const rehash: string[] = [];
    const seen = new Set<string>();
    for (const item of listing) {
      if (!isCanonicalPath(item.path)) {
        this.stats.unshareable++;
        continue;
      }
      seen.add(item.path);
      const state = this.#files.get(item.path);
      if (this.#busy.has(item.path) || (state !== undefined && state.baseSeq > mark)) continue;
      if (item.dir) {
        if (isLiveDir(state?.base)) continue;
        if (state !== undefined && isLiveDir(state.entry)) {
          this.#setBase(state, state.entry, item.mtimeMs);
          this.#settle(state);
        } else {
          this.#localVersion(item.path, { deleted: false, dir: true, info: undefined, mtimeMs: item.mtimeMs, vv: state?.base?.vv ?? [] });
        }
      } else if (!(isLiveFile(state?.base) && state.base.size === item.size && state.localMtimeMs === item.mtimeMs) || state?.suspect === true) {
        const unsigned = state === undefined ? this.#unsignedDisk.get(item.path) : undefined;
        if (unsigned === undefined || unsigned.base.size !== item.size || unsigned.mtimeMs !== item.mtimeMs) rehash.push(item.path);
      }
    }
    if (complete) {
      for (const path of this.#unsignedDisk.keys()) if (!seen.has(path)) this.#unsignedDisk.delete(path);
      for (const [path, state] of this.#files) {
        if (seen.has(path) || this.#busy.has(path) || state.baseSeq > mark || !isLive(state.base)) continue;
        this.#localVersion(path, { deleted: true, dir: (state.base as SfsEntry).dir, info: undefined, mtimeMs: this.#wallMs, vv: (state.base as SfsEntry).vv });
      }
    }
    return { rehash };
  }

  // -------------------------------------------------------------------------------------------
  // Local changes (the shell, the boot scan)

  /**
   * A file written on this node. With `temp` (a file the adapter staged in the temp folder and
   * hashed), the core renames it into place when the path is free, then records and announces the
   * new version; an `sfs-local-done` event with the op id reports the end. Without `temp` the file
   * is already in place (found by a scan) and the version is recorded at once (no op).
   */
  localWrite(input: string, info: SfsFileInfo, temp?: string): SfsLocalResult {
    const normal = normalizeSharedPath(input);
    if (!normal.ok) return normal;
    const path = normal.path;
    const reserved = this.#reservedHere(path);
    if (reserved !== undefined) return reserved;
    const infoError = this.#checkInfo(info);
    if (infoError !== undefined) return { ok: false, error: infoError };
    const blocked = this.#blockedForFile(path);
    if (blocked !== undefined) return { ok: false, error: blocked };
    if (temp === undefined) {
      if (this.#busy.has(path) || this.#localQueue.has(path)) return { ok: false, error: "busy, try again" };
      const state = this.#files.get(path);
      if (state !== undefined) state.suspect = false;
      const error = this.#localVersion(path, { deleted: false, dir: false, info, mtimeMs: info.mtimeMs, vv: this.#diskVv(path) });
      return error === undefined ? { ok: true, ops: [] } : { ok: false, error };
    }
    if (!TEMP_NAME.test(temp)) return { ok: false, error: "bad temp name" };
    const vv = this.#diskVv(path);
    const refused = this.#localRoom(path, { deleted: false, dir: false, info, vv }, this.#localBusy.size + this.#localQueued, false);
    if (refused !== undefined) {
      this.stats[refused.stat]++;
      return { ok: false, error: refused.error };
    }
    return this.#queueLocal({ op: this.#nextId++, kind: "write", path, info, temp, vv });
  }

  /** A local change at `path` this node may not make (a folder only core members write), refused at once. */
  #reservedHere(path: string): SfsLocalResult | undefined {
    const error = this.#reserved(this.#self, path);
    if (error === undefined) return undefined;
    this.stats.localRefused++;
    return { ok: false, error };
  }

  /** The vector of what the disk holds at `path` (a write builds on it): its base's, or the dropped unsigned version's. */
  #diskVv(path: string): readonly VvItem[] {
    return this.#files.get(path)?.base?.vv ?? this.#unsignedDisk.get(path)?.base.vv ?? [];
  }

  /**
   * Removes a file or folder everywhere. A folder with live entries below needs `recursive`; then
   * every one of them is removed too (deepest first). One op per removed path.
   */
  localRemove(input: string, recursive = false): SfsLocalResult {
    const normal = normalizeSharedPath(input);
    if (!normal.ok) return normal;
    const path = normal.path;
    const reserved = this.#reservedHere(path);
    if (reserved !== undefined) return reserved;
    const state = this.#files.get(path);
    const below = this.#liveUnder.get(path) ?? 0;
    if (!isLive(state?.entry) && !isLive(state?.base) && below === 0) return { ok: false, error: "no such file or folder" };
    if (below > 0 && !recursive) return { ok: false, error: "folder not empty (use -r)" };
    const targets: string[] = [];
    if (below > 0) {
      const prefix = `${path}/`;
      for (const [p, s] of this.#files) if (p.startsWith(prefix) && (isLive(s.entry) || isLive(s.base))) targets.push(p);
      targets.sort((a, b) => b.length - a.length || cmpStr(a, b));
    }
    targets.push(path);
    if (this.#localQueued + targets.length > this.#config.localOpsMax) return { ok: false, error: "too many operations queued, try again" };
    const ops: number[] = [];
    for (const p of targets) {
      const s = this.#files.get(p);
      const result = this.#queueLocal({ op: this.#nextId++, kind: "remove", path: p, vv: vvMerge(s?.base?.vv ?? [], s?.entry.vv ?? []) });
      if (result.ok) ops.push(...result.ops);
    }
    return { ok: true, ops };
  }

  /** Creates a folder everywhere. An existing folder is fine (no op). */
  localMkdir(input: string): SfsLocalResult {
    const normal = normalizeSharedPath(input);
    if (!normal.ok) return normal;
    const path = normal.path;
    const reserved = this.#reservedHere(path);
    if (reserved !== undefined) return reserved;
    const state = this.#files.get(path);
    const vv = vvMerge(state?.base?.vv ?? [], state?.entry.deleted === true ? state.entry.vv : []);
    if (isLiveDir(state?.entry)) return { ok: true, ops: [] };
    if (isLiveFile(state?.entry)) return { ok: false, error: "a file of that name exists" };
    for (const ancestor of ancestorsOf(path)) {
      if (isLiveFile(this.#files.get(ancestor)?.entry)) return { ok: false, error: `not a folder: ${ancestor}` };
    }
    return this.#queueLocal({ op: this.#nextId++, kind: "mkdir", path, vv });
  }

  // -------------------------------------------------------------------------------------------
  // Time, peers, messages

  /** One tick. `nowMs` is wall-clock time (tombstone ages only). */
  tick(membership: SfsMembership, nowMs: number): void {
    this.#now++;
    this.#wallMs = nowMs;
    this.#sync.tick();
    this.#gc.tick();
    let liveRead = false;
    const live = (): readonly string[] => {
      if (!liveRead) {
        this.#live = membership.liveIds();
        liveRead = true;
      }
      return this.#live;
    };
    if (this.#sync.fired()) {
      this.#sync.reset();
      const peers = live();
      if (peers.length > 0) this.#sendDigest(peers[this.#syncCursor++ % peers.length] as string);
    }
    if (this.#gc.fired()) {
      this.#gc.reset();
      this.#sweepTombstones();
    }
    if (this.#localQueue.size > 0) {
      for (const path of [...this.#localQueue.keys()]) if (!this.#busy.has(path)) this.#runLocal(path);
    }
    if (this.#transfers.size > 0 || this.#pending.size > 0) {
      live();
      for (const transfer of this.#transfers.values()) this.#checkTimeouts(transfer);
      this.#advancePending(this.#config.pendingPerTick);
      for (const transfer of this.#transfers.values()) this.#pump(transfer);
    }
  }

  /** Starts an anti-entropy round with this peer now (it just joined or came back). */
  syncWith(peer: string): void {
    this.#sendDigest(peer);
  }

  /** `sfs sync`: an anti-entropy round with every live peer, and every waiting file retried now. */
  syncNow(membership: SfsMembership): void {
    this.#live = membership.liveIds();
    for (const peer of this.#live) this.#sendDigest(peer);
    for (const path of this.#pending) {
      const state = this.#files.get(path);
      if (state !== undefined) state.retryAt = 0;
    }
    for (const transfer of this.#transfers.values()) {
      transfer.waitUntil = 0;
      transfer.tried.clear();
    }
  }

  /** A peer SWIM declared dead or left: its requests go elsewhere now rather than after the timeout. */
  peerGone(peer: string): void {
    this.#live = this.#live.filter((id) => id !== peer);
    for (const transfer of this.#transfers.values()) {
      for (const [index, request] of transfer.inflight) {
        if (request.peer !== peer) continue;
        this.#releaseRequest(transfer, index, request.peer);
        transfer.tried.add(peer);
      }
      transfer.order = undefined;
    }
  }

  /**
   * A message from a peer (already authenticated and schema-checked). For an sfs-chunk carrying
   * data, `chunkSha256` is the SHA-256 of `message.d` in hex, computed by the caller.
   */
  step(from: string, message: SfsMessage, chunkSha256?: string): void {
    this.stats.messagesIn++;
    switch (message.t) {
      case "sfs-digest": return this.#onDigest(from, message);
      case "sfs-sums": return this.#onSums(from, message);
      case "sfs-entries": return this.#onEntries(from, message);
      case "sfs-get": return this.#onGet(from, message);
      case "sfs-chunk": return this.#onChunk(from, message, chunkSha256);
    }
  }

  /** The end of an effect. */
  complete(done: SfsCompletion): void {
    const op = this.#ops.get(done.id);
    assert(op !== undefined && COMPLETES[done.kind].includes(op.kind), `Sfs: completion ${done.kind} ${done.id} matches no effect in flight`);
    this.#ops.delete(done.id);
    if (op.kind === "prune") {
      // Its parents may be empty now too (a prune below held them back).
      this.#busy.delete(op.path);
      this.#prune(op.path);
      return this.#freed(op.path);
    }
    switch (done.kind) {
      case "write-chunk": return this.#onWritten(op as Extract<Op, { kind: "write" }>, done.error);
      case "commit": return this.#onCommitted(op as Extract<Op, { kind: "commit" }>, done.mtimeMs, done.error);
      case "discard": return;
      case "remove": return this.#onRemoved(op as Extract<Op, { kind: "remove" }>, done.error);
      case "mkdir": return this.#onMadeDir(op as Extract<Op, { kind: "mkdir" }>, done.mtimeMs, done.error);
      case "read-chunk": return this.#onRead(op as Extract<Op, { kind: "serve" }>, done.bytes);
      case "copy": return this.#onCopied(op as Extract<Op, { kind: "copy" }>, done.info, done.error);
    }
  }

  ready(): SfsReady {
    const changed: { path: string; record: SfsRecordWire }[] = [];
    for (const path of this.#dirty) {
      const state = this.#files.get(path);
      if (state !== undefined) changed.push({ path, record: this.#record(state) });
    }
    const ready: SfsReady = {
      ...this.#out.take(), changed, forgotten: [...this.#forgotten], clock: this.#clockDirty ? this.#clock : undefined,
    };
    this.#dirty = new Set();
    this.#forgotten = new Set();
    this.#clockDirty = false;
    return ready;
  }

  hasReady(): boolean {
    return this.#out.hasReady() || this.#dirty.size > 0 || this.#forgotten.size > 0 || this.#clockDirty;
  }

  // -------------------------------------------------------------------------------------------
  // Views

  /** Entries whose path starts with prefix, in path order, at most limit (tombstones only when asked). */
  list(prefix = "", limit: number = LIMITS.listRowsDefault, withDeleted = false): SfsFileView[] {
    const paths = [...this.#files.keys()].filter((p) => p.startsWith(prefix)).sort(cmpStr);
    const out: SfsFileView[] = [];
    for (const path of paths) {
      if (out.length >= limit) break;
      const view = this.stat(path);
      if (view !== undefined && (withDeleted || !view.entry.deleted)) out.push(view);
    }
    return out;
  }

  stat(path: string): SfsFileView | undefined {
    const state = this.#files.get(path);
    if (state === undefined) return undefined;
    const transfer = this.#transfers.get(path);
    const progress: SfsProgress | undefined = transfer === undefined ? undefined : {
      phase: transfer.phase, chunks: transfer.entry.chunks.length, written: transfer.written, bytes: transfer.bytes,
      inflight: transfer.inflight.size, startedTick: transfer.startedTick,
    };
    let local: SfsFileView["local"];
    if (!this.#pending.has(path)) local = "synced";
    else if (state.entry.deleted) local = "removing";
    else if (transfer !== undefined && (transfer.phase !== "fetch" || transfer.inflight.size > 0 || transfer.pendingOps > 0)) local = "fetching";
    else if (isLiveFile(state.entry)) local = "waiting";
    else local = "pending";
    return { entry: state.entry, local, base: state.base, holders: [...(state.holders ?? [])].sort(), progress, diskWait: state.diskWait && local === "waiting" };
  }

  /** Files being fetched or copied, with their progress. */
  transfers(): { readonly path: string; readonly progress: SfsProgress }[] {
    return [...this.#transfers.values()].map((t) => ({ path: t.path, progress: (this.stat(t.path) as SfsFileView).progress as SfsProgress }));
  }

  /** Paths whose disk does not reflect the manifest yet. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  // -------------------------------------------------------------------------------------------
  // Manifest

  /** The clock takes a counter it has seen: its own in full, a peer's only up to SFS_CLOCK_ADOPT_MAX. */
  #observe(counter: number, own = false): void {
    const taken = own ? counter : Math.min(counter, SFS_CLOCK_ADOPT_MAX);
    if (taken > this.#clock) {
      this.#clock = taken;
      this.#clockDirty = true;
    }
  }

  /** The counter of a new local version on top of `vv`: above the clock and every counter it knew. */
  #nextCounter(vv: readonly VvItem[]): number {
    let top = this.#clock;
    for (const [, c] of vv) if (c > top) top = c;
    return top + 1;
  }

  /** Counts a live entry into (or, sign −1, out of) its origin's quota use. */
  #account(entry: SfsEntry, sign: 1 | -1): void {
    if (!isLive(entry)) return;
    const use = this.#usage.get(entry.origin) ?? { files: 0, bytes: 0 };
    use.files += sign;
    use.bytes += sign * (entry.dir ? 0 : entry.size);
    if (use.files <= 0) this.#usage.delete(entry.origin);
    else this.#usage.set(entry.origin, use);
  }

  /**
   * Why `entry` replacing `current` would take its origin beyond its quota, or undefined. Only a
   * change that adds files or bytes is refused (a smaller version of an origin over quota is fine).
   */
  #overQuota(entry: Pick<SfsEntry, "origin" | "deleted" | "dir" | "size">, current: SfsEntry | undefined): string | undefined {
    if (entry.deleted) return undefined;
    const use = this.#usage.get(entry.origin);
    const same = current !== undefined && isLive(current) && current.origin === entry.origin;
    const addFiles = same ? 0 : 1;
    const addBytes = (entry.dir ? 0 : entry.size) - (same && !current.dir ? current.size : 0);
    const files = (use?.files ?? 0) + addFiles;
    const bytes = (use?.bytes ?? 0) + addBytes;
    const { originFilesMax, originBytesMax } = this.#config;
    if ((addFiles > 0 && files > originFilesMax) || (addBytes > 0 && bytes > originBytesMax)) {
      return `the quota of ${entry.origin} in the shared folder is full (${originFilesMax} entries, ${originBytesMax} bytes; it has ${use?.files ?? 0} entries, ${use?.bytes ?? 0} bytes)`;
    }
    return undefined;
  }

  /**
   * Why a local change on `path` (on top of `vv`) could not be recorded, with the stat it counts
   * in, or undefined. `margin` counts the local versions that may be recorded before it (operations
   * in flight or queued). With `manifest`, a new path also needs a free place in the manifest,
   * counting the new paths whose local operations are in flight.
   */
  #localRoom(path: string, change: { deleted: boolean; dir: boolean; info: SfsFileInfo | undefined; vv: readonly VvItem[] }, margin: number, manifest: boolean): { stat: "full" | "localRefused"; error: string } | undefined {
    const counter = this.#nextCounter(change.vv) + margin;
    if (counter > SFS_COUNTER_MAX) {
      const known = Math.max(0, ...change.vv.map(([, c]) => c));
      return {
        stat: "localRefused",
        error: known > this.#clock
          ? `/shared/${path} cannot take a new version: a version there holds counter ${known}, too close to the end (${SFS_COUNTER_MAX})`
          : `no version counter left (the clock is at ${this.#clock}, the end is ${SFS_COUNTER_MAX})`,
      };
    }
    const reserved = this.#reserved(this.#self, path);
    if (reserved !== undefined) return { stat: "localRefused", error: reserved };
    const current = this.#files.get(path)?.entry;
    const quota = this.#overQuota({ origin: this.#self, deleted: change.deleted, dir: change.dir, size: change.info?.size ?? 0 }, current);
    if (quota !== undefined) return { stat: "localRefused", error: quota };
    if (manifest && current === undefined) {
      let room = this.#config.filesMax - this.#files.size;
      for (const p of this.#localBusy) if (!this.#files.has(p)) room--;
      if (room <= 0) {
        for (const state of this.#files.values()) if (state.entry.deleted && !this.#pending.has(state.entry.path) && !this.#busy.has(state.entry.path)) room++;
      }
      if (room <= 0) return { stat: "full", error: `the shared folder is full (${this.#config.filesMax} entries)` };
    }
    return undefined;
  }

  #create(entry: SfsEntry): FileState {
    const [hashHi, hashLo] = entryHash(entry);
    const state: FileState = {
      entry, base: undefined, localMtimeMs: -1, bucket: bucketOf(entry.path), hashHi, hashLo, holders: undefined, retryAt: 0, failures: 0,
      suspect: false, baseSeq: ++this.#baseSeq, diskWait: false,
    };
    this.#files.set(entry.path, state);
    this.#bucketPaths[state.bucket]?.add(entry.path);
    this.#digest[state.bucket * 2] = ((this.#digest[state.bucket * 2] as number) ^ hashHi) >>> 0;
    this.#digest[state.bucket * 2 + 1] = ((this.#digest[state.bucket * 2 + 1] as number) ^ hashLo) >>> 0;
    if (isLive(entry)) this.#countUnder(entry.path, 1);
    this.#countUnder(entry.path, 1, this.#entriesUnder);
    if (isLiveFile(entry)) addTo(this.#wanted, entry.sha256, entry.path);
    this.#account(entry, 1);
    this.#dirty.add(entry.path);
    return state;
  }

  #forget(state: FileState): void {
    const path = state.entry.path;
    assert(!this.#transfers.has(path) && !this.#busy.has(path), "Sfs: forgetting a path with work in flight");
    this.#setBase(state, undefined, -1);
    this.#digest[state.bucket * 2] = ((this.#digest[state.bucket * 2] as number) ^ state.hashHi) >>> 0;
    this.#digest[state.bucket * 2 + 1] = ((this.#digest[state.bucket * 2 + 1] as number) ^ state.hashLo) >>> 0;
    if (isLive(state.entry)) this.#countUnder(path, -1);
    this.#countUnder(path, -1, this.#entriesUnder);
    if (isLiveFile(state.entry)) removeFrom(this.#wanted, state.entry.sha256, path);
    this.#account(state.entry, -1);
    this.#bucketPaths[state.bucket]?.delete(path);
    this.#files.delete(path);
    this.#pending.delete(path);
    this.#dirty.delete(path);
    this.#forgotten.add(path);
  }

  #countUnder(path: string, delta: number, counts = this.#liveUnder): void {
    for (const ancestor of ancestorsOf(path)) {
      const n = (counts.get(ancestor) ?? 0) + delta;
      if (n === 0) counts.delete(ancestor);
      else counts.set(ancestor, n);
    }
  }

  #setEntry(state: FileState, entry: SfsEntry): void {
    const old = state.entry;
    const path = old.path;
    if (isLive(old) !== isLive(entry)) this.#countUnder(path, isLive(entry) ? 1 : -1);
    this.#updateWanted(state, false);
    const [hashHi, hashLo] = entryHash(entry);
    this.#digest[state.bucket * 2] = ((this.#digest[state.bucket * 2] as number) ^ state.hashHi ^ hashHi) >>> 0;
    this.#digest[state.bucket * 2 + 1] = ((this.#digest[state.bucket * 2 + 1] as number) ^ state.hashLo ^ hashLo) >>> 0;
    state.hashHi = hashHi;
    state.hashLo = hashLo;
    this.#account(old, -1);
    this.#account(entry, 1);
    state.entry = entry;
    state.holders = undefined;
    state.failures = 0;
    state.retryAt = 0;
    this.#updateWanted(state, true);
    this.#dirty.add(path);
    const transfer = this.#transfers.get(path);
    if (transfer !== undefined && !sameVersion(transfer.entry, entry)) this.#cancel(transfer);
    this.#settle(state);
  }

  /** Keeps #wanted in step: a live file entry whose content the disk does not hold yet. */
  #updateWanted(state: FileState, add: boolean): void {
    const entry = state.entry;
    if (!isLiveFile(entry)) return;
    if (add && !(isLiveFile(state.base) && state.base.sha256 === entry.sha256)) addTo(this.#wanted, entry.sha256, entry.path);
    else removeFrom(this.#wanted, entry.sha256, entry.path);
  }

  #setBase(state: FileState, base: SfsEntry | undefined, mtimeMs: number): void {
    const path = state.entry.path;
    const old = state.base;
    if (isLiveFile(old)) {
      removeFrom(this.#shaHave, old.sha256, path);
      removeFrom(this.#stampHave, stampKey(old.counter, old.origin), path);
    }
    this.#updateWanted(state, false);
    state.base = base;
    state.localMtimeMs = mtimeMs;
    state.baseSeq = ++this.#baseSeq;
    if (isLiveFile(base)) {
      if (!state.suspect) addTo(this.#shaHave, base.sha256, path);
      addTo(this.#stampHave, stampKey(base.counter, base.origin), path);
    }
    this.#updateWanted(state, true);
    this.#dirty.add(path);
  }

  /**
   * Marks the path synced when the disk needs nothing (the base already shows the entry's kind and
   * content), pending otherwise.
   */
  #settle(state: FileState): void {
    const { entry, base } = state;
    const path = entry.path;
    let needsDisk: boolean;
    // A removed folder that still has live entries below stays on the disk as their parent; #prune
    // takes it away once they are gone.
    if (entry.deleted) needsDisk = isLive(base) && !(base?.dir === true && (this.#liveUnder.get(path) ?? 0) > 0);
    else if (entry.dir) needsDisk = !isLiveDir(base);
    else needsDisk = !(isLiveFile(base) && base.sha256 === entry.sha256 && base.size === entry.size);
    if (!needsDisk) {
      if (!sameVersion(base, entry)) {
        this.#setBase(state, entry, isLive(entry) ? state.localMtimeMs : -1);
        // Nothing tracked was on the disk here, but an untracked folder may be (the parent made
        // for files below that are gone now).
        if (entry.deleted && !isLive(base) && (this.#liveUnder.get(path) ?? 0) === 0) this.#prune(path, true);
      }
      this.#pending.delete(path);
      const transfer = this.#transfers.get(path);
      if (transfer !== undefined && transfer.phase !== "commit") this.#cancel(transfer);
    } else {
      this.#pending.add(path);
    }
  }

  /**
   * Merges a version into the manifest (see the header for the rule). Returns true when the
   * manifest changed. `depth` counts derived versions (conflict copies, shadow tombstones): a
   * derived version never derives another, which bounds the recursion.
   */
  #merge(incoming: SfsEntry, from: string | undefined, have: boolean, depth: number): boolean {
    const state = this.#files.get(incoming.path);
    const newer = state === undefined || compareVersions(incoming, state.entry) > 0;
    if (from !== undefined && newer) {
      // A peer's entry that would take its origin beyond its quota is refused (as if never seen).
      if (this.#overQuota(incoming, state?.entry) !== undefined) {
        this.stats.quotaRefused++;
        return false;
      }
      if (this.#reserved(incoming.origin, incoming.path) !== undefined) {
        this.stats.reservedRefused++;
        return false;
      }
      if (state === undefined && incoming.deleted && this.#expired(incoming)) return false;
      // Before anything moves (the clock included): is it its origin's?
      if (!this.#believed(incoming)) return false;
    }
    this.#observe(incoming.counter);
    if (state === undefined) {
      if (incoming.deleted && this.#expired(incoming)) return false;
      if (this.#files.size >= this.#config.filesMax && !this.#evictTombstone()) {
        this.stats.full++;
        return false;
      }
      const created = this.#create(incoming);
      const unsigned = this.#unsignedDisk.get(incoming.path);
      if (unsigned !== undefined) {
        // The disk holds a file of a dropped unsigned version: it is the base (the new one itself
        // when the content is the same: nothing to fetch).
        this.#unsignedDisk.delete(incoming.path);
        const same = isLiveFile(incoming) && incoming.sha256 === unsigned.base.sha256 && incoming.size === unsigned.base.size;
        this.#setBase(created, same ? incoming : unsigned.base, unsigned.mtimeMs);
      }
      if (from !== undefined && have) (created.holders = new Set()).add(from);
      this.stats.entriesMerged++;
      this.#settle(created);
      this.#shadowCheck(incoming, depth);
      return true;
    }
    const current = state.entry;
    const order = compareVersions(incoming, current);
    if (order === 0) {
      if (from !== undefined && have && isLiveFile(current) && !(state.holders?.has(from) ?? false)) {
        (state.holders ??= new Set()).add(from);
        const transfer = this.#transfers.get(current.path);
        if (transfer !== undefined) transfer.order = undefined;
      }
      return false;
    }
    const relation = vvRelation(incoming.vv, current.vv);
    const loser = order > 0 ? current : incoming;
    const dominated = (order > 0 && relation === 1) || (order < 0 && relation === -1);
    // An older concurrent version from a peer changes nothing here unless it is kept as a conflict
    // copy; then it must be its origin's too.
    if (order < 0 && !dominated && from !== undefined && depth === 0 && this.#copiable(incoming) && !this.#believed(incoming)) return false;
    if (order > 0) {
      this.#setEntry(state, incoming);
      if (from !== undefined && have && isLiveFile(incoming)) (state.holders = new Set()).add(from);
      this.stats.entriesMerged++;
    }
    if (!dominated) this.#keepLoser(loser, depth);
    if (order > 0) this.#shadowCheck(incoming, depth);
    return order > 0;
  }

  /**
   * The loser of a concurrent pair, if a live file, is kept under its conflict name — by the nodes
   * whose disk holds its content (its origin, until the loser is superseded there, and the nodes
   * that fetched it). They all derive the same entry, and it spreads from them like any other. A
   * node without the content derives nothing: the copy could not be filled from it, and a version
   * that its own origin has since overwritten needs no copy.
   */
  #keepLoser(loser: SfsEntry, depth: number): void {
    if (!this.#keepable(loser)) return;
    const path = depth === 0 && this.#copiable(loser) ? conflictPath(loser.path, loser.origin, loser.counter) : undefined;
    if (path === undefined) {
      this.stats.conflictsDropped++;
      return;
    }
    const signedAs = { path: loser.path, size: loser.size, sha256: loser.sha256, chunks: loser.chunks };
    if (this.#merge({ ...loser, path, signedAs }, undefined, false, depth + 1)) {
      this.stats.conflicts++;
      this.#out.emit({ type: "sfs-conflict", path: loser.path, kept: path, loser: stampKey(loser.counter, loser.origin) });
    }
  }

  /**
   * True when a loser may derive a conflict copy at all: the copy carries its origin's signature of
   * it, so a derived version (a conflict copy) or an unsigned one (a base of the previous format),
   * which have none of their own to give, derive none.
   */
  #copiable(loser: SfsEntry): boolean {
    return this.#keepable(loser) && loser.signedAs === undefined && loser.sig.length > 0;
  }

  /** True when the loser of a concurrent pair would be kept as a conflict copy here: a live file whose content this disk holds. */
  #keepable(loser: SfsEntry): boolean {
    if (!isLiveFile(loser)) return false;
    // Content that a local write or remove in flight is replacing does not count: the new local
    // version supersedes it (its vector covers it) or this node keeps the copy before (#runLocal).
    const holders = this.#shaHave.get(loser.sha256);
    return holders !== undefined && ![...holders].every((p) => this.#localBusy.has(p));
  }

  /**
   * True when a peer's version is its origin's: the origin's key and signature over what it signed
   * (signedVersion). A shadow tombstone is believed only where this node holds an entry below it
   * (live, or the tombstone of one): the file-versus-folder rule met there. Otherwise anyone could
   * turn any signed file into its tombstone; with it, a member can do no more than it could by
   * announcing an entry below the file in its own name (which shadows the file everywhere).
   * Refusals are counted (the signer also counts by reason).
   */
  #believed(entry: SfsEntry): boolean {
    if (entry.signedAs !== undefined && entry.deleted && (this.#entriesUnder.get(entry.path) ?? 0) === 0) {
      this.stats.shadowRefused++;
      return false;
    }
    if (this.#records.check("sfs", entry.origin, entry.pub, sfsVersionBody(signedVersion(entry)), entry.sig) !== undefined) {
      this.stats.signatureRefused++;
      return false;
    }
    return true;
  }

  /**
   * The file-versus-folder rule: a live file with live entries below it becomes a tombstone of the
   * same stamp, which wins over it and so keeps its content under the conflict name. The tombstone
   * carries the file's signature and, in signedAs, the file's content it was signed over.
   */
  #shadowCheck(entry: SfsEntry, depth: number): void {
    if (!isLive(entry)) return;
    if (isLiveFile(entry) && (this.#liveUnder.get(entry.path) ?? 0) > 0) this.#shadow(entry, depth);
    for (const ancestor of ancestorsOf(entry.path)) {
      const above = this.#files.get(ancestor)?.entry;
      if (isLiveFile(above)) this.#shadow(above, depth);
    }
  }

  #shadow(file: SfsEntry, depth: number): void {
    const signedAs = file.signedAs ?? { path: file.path, size: file.size, sha256: file.sha256, chunks: file.chunks };
    this.#merge({ ...file, deleted: true, dir: false, size: 0, sha256: "", chunks: [], signedAs }, undefined, false, depth);
  }

  #expired(entry: SfsEntry): boolean {
    return entry.deleted && this.#wallMs - entry.mtimeMs > this.#config.tombstoneMs;
  }

  #evictTombstone(): boolean {
    let oldest: FileState | undefined;
    for (const state of this.#files.values()) {
      if (!state.entry.deleted || this.#pending.has(state.entry.path) || this.#busy.has(state.entry.path)) continue;
      if (oldest === undefined || state.entry.mtimeMs < oldest.entry.mtimeMs) oldest = state;
    }
    if (oldest === undefined) return false;
    this.#forget(oldest);
    this.stats.tombstonesForgotten++;
    return true;
  }

  #sweepTombstones(): void {
    for (const state of [...this.#files.values()]) {
      const path = state.entry.path;
      if (this.#expired(state.entry) && !this.#pending.has(path) && !this.#busy.has(path) && !this.#transfers.has(path)) {
        this.#forget(state);
        this.stats.tombstonesForgotten++;
      }
    }
  }

  /**
   * A new version written on this node on top of what the disk held (see localWrite). Returns why
   * it could not be recorded (counted), or undefined once it is in the manifest.
   */
  #localVersion(path: string, change: { deleted: boolean; dir: boolean; info: SfsFileInfo | undefined; mtimeMs: number; vv: readonly VvItem[] }): string | undefined {
    const state = this.#files.get(path);
    const { info } = change;
    const unsigned = state === undefined ? this.#unsignedDisk.get(path) : undefined;
    if (info !== undefined && unsigned !== undefined && unsigned.base.sha256 === info.sha256 && unsigned.base.size === info.size) {
      // The file of another origin's unsigned version, unchanged: it waits for that origin's signed one.
      this.#unsignedDisk.set(path, { base: unsigned.base, mtimeMs: info.mtimeMs });
      return undefined;
    }
    if (info !== undefined && state !== undefined) {
      // The disk shows content the manifest already has: nothing new was written.
      if (isLiveFile(state.base) && state.base.sha256 === info.sha256 && state.base.size === info.size) {
        state.localMtimeMs = info.mtimeMs;
        this.#dirty.add(path);
        return undefined;
      }
      if (isLiveFile(state.entry) && state.entry.sha256 === info.sha256 && state.entry.size === info.size) {
        this.#setBase(state, state.entry, info.mtimeMs);
        this.#settle(state);
        return undefined;
      }
    }
    const vv = change.vv;
    const refused = this.#localRoom(path, change, 0, false);
    if (refused !== undefined) {
      this.stats[refused.stat]++;
      return refused.error;
    }
    const counter = this.#nextCounter(vv);
    this.#observe(counter, true);
    const entry = this.#sign({
      path, counter, origin: this.#self, deleted: change.deleted, dir: change.dir,
      size: info?.size ?? 0, mtimeMs: change.mtimeMs, sha256: info?.sha256 ?? "", chunkBytes: info?.chunkBytes ?? this.#config.chunkBytes,
      chunks: info?.chunkHashes ?? [], vv: vvBump(vv, this.#self, counter),
    });
    this.#unsignedDisk.delete(path);
    if (state === undefined && this.#files.size >= this.#config.filesMax && !this.#evictTombstone()) {
      this.stats.full++;
      return `the shared folder is full (${this.#config.filesMax} entries)`;
    }
    // The disk holds the new version already (a commit just put it there, or the scan found it).
    const target = this.#files.get(path) ?? this.#create(entry);
    this.#setBase(target, entry, change.deleted ? -1 : change.mtimeMs);
    if (target.entry !== entry) this.#merge(entry, undefined, false, 0);
    else {
      this.#settle(target);
      this.#shadowCheck(entry, 0);
    }
    this.#push(entry);
    return undefined;
  }

  #checkInfo(info: SfsFileInfo): string | undefined {
    if (!Number.isSafeInteger(info.size) || info.size < 0 || info.size > this.#config.fileBytesMax) return `files are limited to ${this.#config.fileBytesMax} bytes`;
    if (info.chunkBytes < SFS_WIRE.chunkBytesMin || info.chunkBytes > SFS_WIRE.chunkBytesMax) return "bad chunk size";
    const n = chunkCount(info.size, info.chunkBytes);
    if (n > SFS_WIRE.chunksMax || info.chunkHashes.length !== n) return "chunk hashes do not match the size";
    if (!HEX64.test(info.sha256) || !info.chunkHashes.every((h) => HEX64.test(h))) return "hashes must be SHA-256 in lowercase hex";
    if (!Number.isSafeInteger(info.mtimeMs) || info.mtimeMs < 0) return "bad mtime";
    return undefined;
  }

  #blockedForFile(path: string): string | undefined {
    const state = this.#files.get(path);
    if (isLiveDir(state?.entry) || (this.#liveUnder.get(path) ?? 0) > 0) return "is a folder";
    for (const ancestor of ancestorsOf(path)) {
      if (isLiveFile(this.#files.get(ancestor)?.entry)) return `not a folder: ${ancestor}`;
    }
    if (state === undefined && this.#files.size >= this.#config.filesMax && ![...this.#files.values()].some((s) => s.entry.deleted)) {
      return `the shared folder is full (${this.#config.filesMax} entries)`;
    }
    return undefined;
  }

  #record(state: FileState): SfsRecordWire {
    const base = state.base === undefined ? 0 : state.base === state.entry || sameVersion(state.base, state.entry) ? 1 : entryToStoredWire(state.base);
    return [entryToStoredWire(state.entry), base, state.localMtimeMs];
  }

  #have(state: FileState): boolean {
    return isLiveFile(state.entry) && sameVersion(state.base, state.entry) && !state.suspect;
  }

  // -------------------------------------------------------------------------------------------
  // Anti-entropy

  #send(to: string, message: SfsMessage): void {
    this.stats.messagesOut++;
    this.#out.send({ to, message });
  }

  #sendDigest(to: string): void {
    const b = new Uint8Array(SFS_WIRE.buckets * 8);
    const view = new DataView(b.buffer);
    for (let i = 0; i < this.#digest.length; i++) view.setUint32(i * 4, this.#digest[i] as number);
    this.#send(to, { t: "sfs-digest", b, n: this.#files.size });
  }

  /** Pushes a new local version to up to pushPeersMax live peers, rotating. */
  #push(entry: SfsEntry): void {
    const peers = this.#live;
    if (peers.length === 0) return;
    const wire = entryToWire(entry, isLiveFile(entry));
    const n = Math.min(peers.length, this.#config.pushPeersMax);
    for (let k = 0; k < n; k++) {
      this.#send(peers[(this.#pushCursor + k) % peers.length] as string, { t: "sfs-entries", e: [wire], w: [] });
    }
    this.#pushCursor = (this.#pushCursor + n) % peers.length;
  }

  #onDigest(from: string, message: SfsMessageOf<"sfs-digest">): void {
    const view = new DataView(message.b.buffer, message.b.byteOffset, message.b.byteLength);
    const differing: number[] = [];
    for (let bucket = 0; bucket < SFS_WIRE.buckets; bucket++) {
      if (view.getUint32(bucket * 8) !== this.#digest[bucket * 2] || view.getUint32(bucket * 8 + 4) !== this.#digest[bucket * 2 + 1]) differing.push(bucket);
    }
    if (differing.length === 0) return;
    const k: number[] = [];
    const s: [string, number, number][] = [];
    let bytes = 0;
    for (const bucket of differing) {
      const paths = this.#bucketPaths[bucket] as Set<string>;
      let cost = 0;
      for (const path of paths) cost += path.length * 3 + 12;
      if (k.length > 0 && bytes + cost > this.#config.sumsBytesMax) break;
      k.push(bucket);
      bytes += cost;
      for (const path of paths) {
        const state = this.#files.get(path) as FileState;
        s.push([path, state.hashHi, state.hashLo]);
      }
    }
    this.#send(from, { t: "sfs-sums", k: Uint8Array.from(k), s });
  }

  #onSums(from: string, message: SfsMessageOf<"sfs-sums">): void {
    const theirs = new Map<string, [number, number]>();
    const buckets = new Set(message.k);
    for (const [path, hi, lo] of message.s) {
      if (!isCanonicalPath(path)) {
        this.stats.badPaths++;
        continue;
      }
      if (buckets.has(bucketOf(path))) theirs.set(path, [hi, lo]);
    }
    const push: SfsEntryWire[] = [];
    let bytes = 0;
    for (const bucket of buckets) {
      for (const path of this.#bucketPaths[bucket] ?? []) {
        const state = this.#files.get(path) as FileState;
        const sum = theirs.get(path);
        if (sum !== undefined && sum[0] === state.hashHi && sum[1] === state.hashLo) continue;
        const cost = entryBytes(state.entry);
        if (push.length > 0 && bytes + cost > this.#config.entriesBytesMax) break;
        bytes += cost;
        push.push(entryToWire(state.entry, this.#have(state)));
      }
    }
    const want: string[] = [];
    for (const [path, [hi, lo]] of theirs) {
      if (want.length >= this.#config.wantsMax) break;
      const state = this.#files.get(path);
      if (state === undefined || state.hashHi !== hi || state.hashLo !== lo) want.push(path);
    }
    if (push.length > 0 || want.length > 0) this.#send(from, { t: "sfs-entries", e: push, w: want });
  }

  #onEntries(from: string, message: SfsMessageOf<"sfs-entries">): void {
    for (const wire of message.e) {
      const entry = entryFromWire(wire);
      if (entry === "path") this.stats.badPaths++;
      else if (entry === "entry") this.stats.badEntries++;
      else if (entry === "counter") this.stats.highCounters++;
      // Our own versions are all at or below our clock; one above it was never written here.
      else if (entry.origin === this.#self && entry.counter > this.#clock) this.stats.ownOrigin++;
      else this.#merge(entry, from, (wire[3] & FLAG_HAVE) !== 0, 0);
    }
    if (message.w.length === 0) return;
    const reply: SfsEntryWire[] = [];
    let bytes = 0;
    for (const path of message.w) {
      if (!isCanonicalPath(path)) {
        this.stats.badPaths++;
        continue;
      }
      const state = this.#files.get(path);
      if (state === undefined) continue;
      const cost = entryBytes(state.entry);
      if (reply.length > 0 && bytes + cost > this.#config.entriesBytesMax) break;
      bytes += cost;
      reply.push(entryToWire(state.entry, this.#have(state)));
    }
    if (reply.length > 0) this.#send(from, { t: "sfs-entries", e: reply, w: [] });
  }

  // -------------------------------------------------------------------------------------------
  // Serving chunks

  #onGet(from: string, get: SfsMessageOf<"sfs-get">): void {
    const reply = (s: typeof CHUNK_MISS | typeof CHUNK_BUSY): void => {
      this.#send(from, { t: "sfs-chunk", p: get.p, c: get.c, o: get.o, i: get.i, s, d: new Uint8Array(0) });
    };
    if (!isCanonicalPath(get.p)) {
      this.stats.badPaths++;
      return;
    }
    const key = stampKey(get.c, get.o);
    let source: FileState | undefined = this.#files.get(get.p);
    if (!(isLiveFile(source?.base) && source.base.counter === get.c && source.base.origin === get.o)) {
      const other = this.#stampHave.get(key)?.values().next().value;
      source = other === undefined ? undefined : this.#files.get(other);
    }
    const base = source?.base;
    if (source === undefined || !isLiveFile(base) || source.suspect || get.i >= base.chunks.length) return reply(CHUNK_MISS);
    if (this.#serves >= this.#config.servesMax || (this.#peerServes.get(from) ?? 0) >= this.#config.inflightPerPeer) {
      this.stats.busies++;
      return reply(CHUNK_BUSY);
    }
    const offset = get.i * base.chunkBytes;
    const length = Math.min(base.chunkBytes, base.size - offset);
    const id = this.#nextId++;
    this.#serves++;
    this.#peerServes.set(from, (this.#peerServes.get(from) ?? 0) + 1);
    this.#ops.set(id, { kind: "serve", to: from, get, length });
    this.#out.add("effects", { kind: "read-chunk", id, path: source.entry.path, offset, length });
  }

  #onRead(op: Extract<Op, { kind: "serve" }>, bytes: Uint8Array | undefined): void {
    this.#serves--;
    const left = (this.#peerServes.get(op.to) ?? 1) - 1;
    if (left <= 0) this.#peerServes.delete(op.to);
    else this.#peerServes.set(op.to, left);
    const { get } = op;
    if (bytes === undefined || bytes.length !== op.length) {
      this.#send(op.to, { t: "sfs-chunk", p: get.p, c: get.c, o: get.o, i: get.i, s: CHUNK_MISS, d: new Uint8Array(0) });
      return;
    }
    this.stats.chunksOut++;
    this.stats.bytesOut += bytes.length;
    this.#send(op.to, { t: "sfs-chunk", p: get.p, c: get.c, o: get.o, i: get.i, s: CHUNK_DATA, d: bytes });
  }

  // -------------------------------------------------------------------------------------------
  // Fetching

  /** Examines up to `budget` pending paths, oldest first; those still pending go to the back. */
  #advancePending(budget: number): void {
    let n = Math.min(budget, this.#pending.size);
    for (const path of this.#pending) {
      if (n-- <= 0) break;
      this.#pending.delete(path);
      const state = this.#files.get(path);
      if (state === undefined) continue;
      this.#pending.add(path);
      this.#advance(state);
    }
  }

  /** Takes the next step for a path whose disk does not reflect its entry. */
  #advance(state: FileState): void {
    const path = state.entry.path;
    if (!this.#pending.has(path) || this.#busy.has(path) || this.#ancestorBusy(path)) return;
    const queued = this.#localQueue.get(path);
    if (queued !== undefined && queued.length > 0) return this.#runLocal(path);
    const { entry, base } = state;
    const below = this.#liveUnder.get(path) ?? 0;
    if (entry.deleted || (entry.dir && isLiveFile(base)) || (isLiveFile(entry) && isLiveDir(base))) {
      // Something must go from the disk first: the file or folder the entry no longer has.
      if (isLiveDir(base) && below > 0) {
        // Live entries came below a removed folder: it stays as their parent (see #settle).
        if (entry.deleted) this.#settle(state);
        return;
      }
      // A folder goes only once nothing is being made or removed below it.
      if (isLiveDir(base) && this.#localWorkBelow(path)) return;
      if (this.#neededElsewhere(state) || this.#now < state.retryAt) return;
      return this.#issuePathOp(path, { kind: "remove", path });
    }
    if (entry.dir) {
      if (this.#now < state.retryAt) return;
      return this.#issuePathOp(path, { kind: "mkdir", path, version: entry });
    }
    // A live file: fetch it, or commit it once fetched.
    const transfer = this.#transfers.get(path);
    if (transfer !== undefined) {
      if (transfer.phase === "ready") this.#tryCommit(transfer, state);
      return;
    }
    if (this.#now < state.retryAt) return;
    this.#startTransfer(state);
  }

  /**
   * True when the disk's content of this path is still needed by another entry that does not hold
   * it yet (a conflict copy, the target of a move), so it must not be removed or overwritten now.
   * Content that sits complete in a temp file is safe.
   */
  #neededElsewhere(state: FileState): boolean {
    const base = state.base;
    if (!isLiveFile(base) || state.suspect) return false;
    for (const path of this.#wanted.get(base.sha256) ?? []) {
      if (path === base.path) continue;
      const transfer = this.#transfers.get(path);
      if (transfer === undefined || transfer.phase === "copy" || transfer.phase === "fetch") return true;
    }
    return false;
  }

  #startTransfer(state: FileState): void {
    const entry = state.entry;
    const path = entry.path;
    const source = [...(this.#shaHave.get(entry.sha256) ?? [])].find((p) => p !== path && !this.#files.get(p)?.suspect);
    const mode = source !== undefined ? "copy" : entry.chunks.length === 0 ? "ready" : "fetch";
    if (mode === "copy" && this.#copies >= this.#config.copiesMax) return;
    if (mode === "fetch" && this.#fetches >= this.#config.transfersMax) return;
    if (mode !== "ready" && !this.#diskRoom(entry.size)) {
      this.stats.diskRefused++;
      state.diskWait = true;
      state.retryAt = this.#now + this.#config.retryTicks;
      return;
    }
    state.diskWait = false;
    const n = entry.chunks.length;
    const transfer: Transfer = {
      path, entry, temp: `t${this.#nextId++}`, phase: mode, cancelled: false, chunkState: new Uint8Array(n), written: 0, bytes: 0,
      inflight: new Map(), pendingOps: 0, tried: new Set(), queue: Array.from({ length: n }, (_, i) => i), order: undefined, likely: 0, waitUntil: 0,
      progressed: false, startedTick: this.#now,
    };
    this.#transfers.set(path, transfer);
    if (mode === "copy") {
      this.#copies++;
      const id = this.#nextId++;
      transfer.pendingOps++;
      this.#ops.set(id, { kind: "copy", transfer, from: source as string });
      this.#out.add("effects", { kind: "copy", id, from: source as string, temp: transfer.temp, chunkBytes: entry.chunkBytes });
    } else if (mode === "fetch") {
      this.#fetches++;
      this.#pump(transfer);
    } else {
      this.#tryCommit(transfer, state);
    }
  }

  /**
   * True when `size` more bytes leave at least diskReserveBytes free: the last measure, less what
   * the transfers in flight have still to write. Unmeasured (no diskFree yet): true.
   */
  #diskRoom(size: number): boolean {
    if (this.#freeBytes === undefined) return true;
    let owed = 0;
    for (const transfer of this.#transfers.values()) owed += Math.max(0, transfer.entry.size - transfer.bytes);
    return this.#freeBytes - owed - size >= this.#config.diskReserveBytes;
  }

  /**
   * Candidate peers for a transfer: known holders, then the origin (the likely ones), then other
   * live peers, asked only once every likely one has failed.
   */
  #order(transfer: Transfer): string[] {
    if (transfer.order !== undefined) return transfer.order;
    const live = new Set(this.#live);
    const out: string[] = [];
    const holders = this.#files.get(transfer.path)?.holders;
    const state = this.#files.get(transfer.path);
    if (state !== undefined && sameVersion(state.entry, transfer.entry)) for (const h of holders ?? []) if (live.has(h)) out.push(h);
    if (live.has(transfer.entry.origin) && !out.includes(transfer.entry.origin)) out.push(transfer.entry.origin);
    transfer.likely = out.length;
    let extra = 0;
    const start = transfer.startedTick % Math.max(1, this.#live.length);
    for (let k = 0; k < this.#live.length && extra < this.#config.candidatesMax; k++) {
      const peer = this.#live[(start + k) % this.#live.length] as string;
      if (out.includes(peer)) continue;
      out.push(peer);
      extra++;
    }
    transfer.order = out;
    return out;
  }

  /** Sends chunk requests while there are missing chunks and room (K per peer, requestsMax in all). */
  #pump(transfer: Transfer): void {
    if (transfer.phase !== "fetch" || transfer.cancelled || this.#now < transfer.waitUntil) return;
    while (transfer.queue.length > 0 && this.#requests < this.#config.requestsMax) {
      const order = this.#order(transfer);
      const likely = order.slice(0, transfer.likely);
      const pool = likely.some((c) => !transfer.tried.has(c)) ? likely : order;
      let peer: string | undefined;
      for (const candidate of pool) {
        if (transfer.tried.has(candidate)) continue;
        if ((this.#peerRequests.get(candidate) ?? 0) >= this.#config.inflightPerPeer) continue;
        peer = candidate;
        break;
      }
      if (peer === undefined) {
        if (transfer.inflight.size === 0 && order.every((c) => transfer.tried.has(c))) {
          this.stats.stalls++;
          if (!transfer.progressed) {
            // Nobody served a chunk of it since it started or last stalled (the content is nowhere,
            // or no holder answers): it gives up its place among the transfersMax, or files nobody
            // holds would keep every place and nothing else would ever be fetched. The file waits,
            // doubling per failure, and starts over.
            const state = this.#files.get(transfer.path);
            if (state !== undefined) this.#backoff(state);
            transfer.cancelled = true;
            this.#drain(transfer);
            return;
          }
          // Every candidate failed, but chunks came: it keeps its place, waits, then tries them all again.
          transfer.progressed = false;
          transfer.tried.clear();
          transfer.order = undefined;
          transfer.waitUntil = this.#now + this.#config.retryTicks;
        }
        return;
      }
      const index = transfer.queue.shift() as number;
      if (transfer.chunkState[index] !== MISSING) continue;
      transfer.chunkState[index] = REQUESTED;
      transfer.inflight.set(index, { peer, at: this.#now });
      this.#requests++;
      this.#peerRequests.set(peer, (this.#peerRequests.get(peer) ?? 0) + 1);
      const { entry } = transfer;
      this.#send(peer, { t: "sfs-get", p: entry.path, c: entry.counter, o: entry.origin, i: index });
    }
  }

  /** Frees a request slot; the chunk goes back in the queue unless `keep` (it is being written). */
  #releaseRequest(transfer: Transfer, index: number, peer: string, keep = false): void {
    transfer.inflight.delete(index);
    const left = (this.#peerRequests.get(peer) ?? 1) - 1;
    if (left <= 0) this.#peerRequests.delete(peer);
    else this.#peerRequests.set(peer, left);
    if (keep) return;
    this.#requests--;
    transfer.chunkState[index] = MISSING;
    transfer.queue.push(index);
  }

  #checkTimeouts(transfer: Transfer): void {
    for (const [index, request] of transfer.inflight) {
      if (this.#now - request.at < this.#config.requestTimeoutTicks) continue;
      this.stats.timeouts++;
      this.#releaseRequest(transfer, index, request.peer);
      transfer.tried.add(request.peer);
    }
  }

  #onChunk(from: string, chunk: SfsMessageOf<"sfs-chunk">, sha: string | undefined): void {
    if (!isCanonicalPath(chunk.p)) {
      this.stats.badPaths++;
      return;
    }
    const transfer = this.#transfers.get(chunk.p);
    const request = transfer?.inflight.get(chunk.i);
    if (transfer === undefined || request === undefined || request.peer !== from || transfer.entry.counter !== chunk.c || transfer.entry.origin !== chunk.o) {
      this.stats.unsolicited++;
      return;
    }
    if (chunk.s !== CHUNK_DATA) {
      if (chunk.s === CHUNK_MISS) {
        this.stats.misses++;
        this.#files.get(chunk.p)?.holders?.delete(from);
      } else this.stats.busies++;
      this.#releaseRequest(transfer, chunk.i, from);
      transfer.tried.add(from);
      this.#pump(transfer);
      return;
    }
    assert(sha !== undefined, "Sfs: a chunk with data needs its SHA-256 from the caller");
    const offset = chunk.i * transfer.entry.chunkBytes;
    const length = Math.min(transfer.entry.chunkBytes, transfer.entry.size - offset);
    if (sha !== transfer.entry.chunks[chunk.i] || chunk.d.length !== length) {
      this.stats.badChunks++;
      this.#releaseRequest(transfer, chunk.i, from);
      transfer.tried.add(from);
      this.#pump(transfer);
      return;
    }
    this.stats.chunksIn++;
    this.stats.bytesIn += length;
    transfer.progressed = true;
    this.#releaseRequest(transfer, chunk.i, from, true);
    transfer.chunkState[chunk.i] = WRITING;
    transfer.pendingOps++;
    const id = this.#nextId++;
    this.#ops.set(id, { kind: "write", transfer, index: chunk.i, length });
    this.#out.add("effects", { kind: "write-chunk", id, temp: transfer.temp, index: chunk.i, offset, bytes: chunk.d });
    this.#pump(transfer);
  }

  #onWritten(op: Extract<Op, { kind: "write" }>, error: string | undefined): void {
    const { transfer } = op;
    transfer.pendingOps--;
    this.#requests--;
    if (transfer.cancelled) return this.#drain(transfer);
    if (error !== undefined) {
      // A disk error: give up this attempt, retry the file later.
      this.#out.emit({ type: "sfs-commit-failed", path: transfer.path, error });
      return this.#abort(transfer);
    }
    transfer.chunkState[op.index] = WRITTEN;
    transfer.written++;
    transfer.bytes += op.length;
    if (transfer.written === transfer.entry.chunks.length) {
      transfer.phase = "ready";
      this.#fetches--;
      const state = this.#files.get(transfer.path);
      if (state !== undefined) this.#tryCommit(transfer, state);
    } else this.#pump(transfer);
  }

  #onCopied(op: Extract<Op, { kind: "copy" }>, info: SfsFileInfo | undefined, error: string | undefined): void {
    const { transfer } = op;
    transfer.pendingOps--;
    this.#copies--;
    if (transfer.cancelled) return this.#drain(transfer);
    const entry = transfer.entry;
    const ok = error === undefined && info !== undefined && info.sha256 === entry.sha256 && info.size === entry.size
      && info.chunkHashes.length === entry.chunks.length && info.chunkHashes.every((h, i) => h === entry.chunks[i]);
    if (!ok) {
      // The source did not hold what its record says (changed behind our back): stop using it.
      this.stats.localCopyFailures++;
      const source = this.#files.get(op.from);
      if (source !== undefined && !source.suspect) {
        source.suspect = true;
        if (isLiveFile(source.base)) removeFrom(this.#shaHave, source.base.sha256, op.from);
      }
      transfer.cancelled = true;
      return this.#drain(transfer);
    }
    this.stats.localCopies++;
    transfer.phase = "ready";
    transfer.written = entry.chunks.length;
    transfer.bytes = entry.size;
    const state = this.#files.get(transfer.path);
    if (state !== undefined) this.#tryCommit(transfer, state);
  }

  #tryCommit(transfer: Transfer, state: FileState): void {
    const path = transfer.path;
    // A commit may remove a leftover folder in the way: nothing may be in the making below it.
    if (this.#busy.has(path) || this.#ancestorBusy(path) || this.#localWorkBelow(path) || this.#neededElsewhere(state)) return;
    const queued = this.#localQueue.get(path);
    if (queued !== undefined && queued.length > 0) return;
    transfer.phase = "commit";
    const { entry } = transfer;
    this.#issuePathOp(path, { kind: "commit", path, transfer }, { temp: transfer.temp, size: entry.size, sha256: entry.sha256, verify: true });
  }

  /** Gives up a transfer after a disk error: the temp goes, the file is retried later. */
  #abort(transfer: Transfer): void {
    transfer.cancelled = true;
    const state = this.#files.get(transfer.path);
    if (state !== undefined) this.#backoff(state);
    this.#drain(transfer);
  }

  #backoff(state: FileState): void {
    state.failures++;
    state.retryAt = this.#now + this.#config.retryTicks * Math.min(64, 2 ** Math.min(6, state.failures - 1));
  }

  /** Stops a transfer whose version is no longer wanted (a newer one came, or the disk has it). */
  #cancel(transfer: Transfer): void {
    if (transfer.cancelled || transfer.phase === "commit") return;
    transfer.cancelled = true;
    this.#drain(transfer);
  }

  /** Frees a cancelled transfer's slots; its temp is discarded once no effect on it is in flight. */
  #drain(transfer: Transfer): void {
    assert(transfer.cancelled, "Sfs: draining a live transfer");
    for (const [index, request] of [...transfer.inflight]) this.#releaseRequest(transfer, index, request.peer);
    transfer.queue = [];
    if (this.#transfers.get(transfer.path) === transfer) {
      this.#transfers.delete(transfer.path);
      if (transfer.phase === "fetch") this.#fetches--;
      transfer.phase = "ready";
    }
    if (transfer.pendingOps > 0) return;
    const id = this.#nextId++;
    this.#ops.set(id, { kind: "discard" });
    this.#out.add("effects", { kind: "discard", id, temp: transfer.temp });
  }

  // -------------------------------------------------------------------------------------------
  // Path operations (commit, remove, mkdir): one at a time per path

  #issuePathOp(path: string, op: Extract<Op, { kind: "commit" | "remove" | "mkdir" }>, commit?: { temp: string; size: number; sha256: string; verify: boolean }): void {
    assert(!this.#busy.has(path), `Sfs: two operations at once on ${path}`);
    this.#busy.add(path);
    if (op.local !== undefined) this.#localBusy.add(path);
    const id = this.#nextId++;
    this.#ops.set(id, op);
    if (op.kind === "commit") {
      assert(commit !== undefined, "Sfs: commit without its temp");
      this.#out.add("effects", { kind: "commit", id, path, ...commit });
    } else if (op.kind === "remove") {
      const base = this.#files.get(path)?.base;
      this.#out.add("effects", { kind: "remove", id, path, dir: base?.dir === true });
    } else {
      this.#out.add("effects", { kind: "mkdir", id, path });
    }
  }

  /** True while a local operation below this folder is queued or running. */
  #localWorkBelow(path: string): boolean {
    const prefix = `${path}/`;
    for (const p of this.#localQueue.keys()) if (p.startsWith(prefix)) return true;
    for (const p of this.#busy) if (p.startsWith(prefix)) return true;
    return false;
  }

  #freed(path: string): void {
    this.#busy.delete(path);
    this.#localBusy.delete(path);
    for (const ancestor of ancestorsOf(path)) {
      if (this.#localQueue.has(ancestor) && !this.#busy.has(ancestor)) this.#runLocal(ancestor);
    }
    const queued = this.#localQueue.get(path);
    if (queued !== undefined && queued.length > 0) return this.#runLocal(path);
    const state = this.#files.get(path);
    if (state !== undefined && this.#pending.has(path)) this.#advance(state);
  }

  #onCommitted(op: Extract<Op, { kind: "commit" }>, mtimeMs: number, error: string | undefined): void {
    const { path } = op;
    if (op.local !== undefined) {
      this.#busy.delete(path);
      this.#localBusy.delete(path);
      if (error !== undefined) {
        this.#out.add("effects", { kind: "discard", id: this.#discardId(), temp: op.local.temp as string });
        this.#out.emit({ type: "sfs-local-done", op: op.local.op, path, error });
      } else {
        // Checked before the commit (#runLocal); should the check fail now, the write says so.
        const info = op.local.info as SfsFileInfo;
        const refused = this.#localVersion(path, { deleted: false, dir: false, info: { ...info, mtimeMs }, mtimeMs, vv: op.local.vv });
        this.#out.emit({ type: "sfs-local-done", op: op.local.op, path, ...(refused === undefined ? {} : { error: `on the disk but not shared: ${refused}` }) });
      }
      return this.#freed(path);
    }
    const transfer = op.transfer as Transfer;
    if (this.#transfers.get(path) === transfer) this.#transfers.delete(path);
    const state = this.#files.get(path);
    if (error !== undefined) {
      this.stats.commitFailures++;
      this.#out.emit({ type: "sfs-commit-failed", path, error });
      this.#out.add("effects", { kind: "discard", id: this.#discardId(), temp: transfer.temp });
      if (state !== undefined) this.#backoff(state);
    } else if (state !== undefined) {
      this.stats.commits++;
      this.#setBase(state, transfer.entry, mtimeMs);
      state.suspect = false;
      if (isLiveFile(state.base)) addTo(this.#shaHave, state.base.sha256, path);
      this.#out.emit({ type: "sfs-file-updated", path, size: transfer.entry.size, origin: transfer.entry.origin, counter: transfer.entry.counter });
      this.#settle(state);
    }
    this.#freed(path);
  }

  #discardId(): number {
    const id = this.#nextId++;
    this.#ops.set(id, { kind: "discard" });
    return id;
  }

  #onRemoved(op: Extract<Op, { kind: "remove" }>, error: string | undefined): void {
    const { path } = op;
    const state = this.#files.get(path);
    if (op.local !== undefined) {
      this.#busy.delete(path);
      this.#localBusy.delete(path);
      if (error !== undefined && error !== "not-empty") {
        this.#out.emit({ type: "sfs-local-done", op: op.local.op, path, error });
      } else {
        const dir = state === undefined ? true : state.base !== undefined ? state.base.dir : state.entry.dir;
        const refused = this.#localVersion(path, { deleted: true, dir, info: undefined, mtimeMs: this.#wallMs, vv: op.local.vv });
        this.#out.emit({ type: "sfs-local-done", op: op.local.op, path, ...(refused === undefined ? {} : { error: `removed here but not on the other nodes: ${refused}` }) });
        this.#busy.delete(path);
        this.#prune(path);
      }
      return this.#freed(path);
    }
    if (state !== undefined) {
      if (error !== undefined) this.#backoff(state);
      else {
        this.stats.removes++;
        this.#busy.delete(path);
        this.#prune(path);
        // The disk shows nothing here now; the tombstone is what it reflects when that is the entry.
        this.#setBase(state, state.entry.deleted ? state.entry : undefined, -1);
        this.#out.emit({ type: "sfs-file-removed", path });
        this.#settle(state);
      }
    }
    this.#freed(path);
  }

  /**
   * After a removal, folders above it that no entry keeps (implicit folders made for their files,
   * or removed ones) and that hold no live entry go too, deepest first. Best effort: a folder that
   * is not empty on the disk stays.
   */
  #prune(path: string, self = false): void {
    const folders = self ? [...ancestorsOf(path), path] : ancestorsOf(path);
    // The outermost folder that no entry keeps: removing it takes the empty folders below along.
    let top: string | undefined;
    for (let k = folders.length - 1; k >= 0; k--) {
      const folder = folders[k] as string;
      // A folder stays while it is an entry or holds one (a file entry's name is no folder to
      // keep). What the base says is on the disk there is removed by its own path (#advance),
      // which keeps the base true.
      const state = this.#files.get(folder);
      if ((this.#liveUnder.get(folder) ?? 0) > 0 || isLiveDir(state?.entry) || isLive(state?.base) || this.#busy.has(folder)) break;
      top = folder;
    }
    if (top === undefined || this.#workBelow(top)) return;
    // Held like any path operation, so nothing is created below it while it runs.
    this.#busy.add(top);
    const id = this.#nextId++;
    this.#ops.set(id, { kind: "prune", path: top });
    this.#out.add("effects", { kind: "remove", id, path: top, dir: true });
  }

  /** True while a disk operation runs on a folder above this path (nothing may be made below it then). */
  #ancestorBusy(path: string): boolean {
    for (const ancestor of ancestorsOf(path)) if (this.#busy.has(ancestor)) return true;
    return false;
  }

  /** True while a disk operation runs below this folder. */
  #workBelow(path: string): boolean {
    const prefix = `${path}/`;
    for (const p of this.#busy) if (p.startsWith(prefix)) return true;
    return false;
  }

  #onMadeDir(op: Extract<Op, { kind: "mkdir" }>, mtimeMs: number, error: string | undefined): void {
    const { path } = op;
    const state = this.#files.get(path);
    if (op.local !== undefined) {
      this.#busy.delete(path);
      this.#localBusy.delete(path);
      if (error !== undefined) this.#out.emit({ type: "sfs-local-done", op: op.local.op, path, error });
      else {
        const refused = this.#localVersion(path, { deleted: false, dir: true, info: undefined, mtimeMs, vv: op.local.vv });
        this.#out.emit({ type: "sfs-local-done", op: op.local.op, path, ...(refused === undefined ? {} : { error: `made here but not on the other nodes: ${refused}` }) });
      }
      return this.#freed(path);
    }
    if (state !== undefined) {
      if (error !== undefined) this.#backoff(state);
      else {
        // The disk holds that folder now, whatever the entry became meanwhile.
        this.#setBase(state, op.version, mtimeMs);
        this.#settle(state);
      }
    }
    this.#freed(path);
  }

  // -------------------------------------------------------------------------------------------
  // Local operation queue

  #queueLocal(op: LocalOp): SfsLocalResult {
    if (this.#localQueued >= this.#config.localOpsMax) return { ok: false, error: "too many operations queued, try again" };
    let queue = this.#localQueue.get(op.path);
    if (queue === undefined) this.#localQueue.set(op.path, (queue = []));
    queue.push(op);
    this.#localQueued++;
    if (!this.#busy.has(op.path)) this.#runLocal(op.path);
    return { ok: true, ops: [op.op] };
  }

  #runLocal(path: string): void {
    const queue = this.#localQueue.get(path);
    if (queue === undefined || queue[0] === undefined) return;
    const first = queue[0];
    if (this.#ancestorBusy(path)) return;
    // A folder is removed after the removals of what is below it that were asked with it; a file is
    // written once what is being made below its name is done (then it is refused as a folder).
    if (first.kind !== "mkdir" && this.#localWorkBelow(path)) return;
    const held = this.#files.get(path);
    if (first.kind !== "mkdir" && held !== undefined) {
      // What the disk holds here is replaced. If the new version does not cover it (it came after
      // the operation was asked), it is kept as a conflict copy first.
      if (isLiveFile(held.base)) {
        const relation = vvRelation(first.vv, held.base.vv);
        if (relation === -1 || relation === 2) this.#keepLoser(held.base, 0);
      }
      // Content another entry still needs (a conflict copy) is neither removed nor overwritten yet.
      if (this.#neededElsewhere(held)) return;
    }
    const op = queue.shift() as LocalOp;
    if (queue.length === 0) this.#localQueue.delete(path);
    this.#localQueued--;
    // Before the disk changes: a change that could not be recorded as a version fails here, with its reason.
    const refused = this.#localRoom(path, { deleted: op.kind === "remove", dir: op.kind === "mkdir", info: op.info, vv: op.vv }, this.#localBusy.size, true);
    if (refused !== undefined) {
      this.stats[refused.stat]++;
      if (op.temp !== undefined) this.#out.add("effects", { kind: "discard", id: this.#discardId(), temp: op.temp });
      this.#out.emit({ type: "sfs-local-done", op: op.op, path, error: refused.error });
      return this.#freed(path);
    }
    const state = this.#files.get(path);
    // A transfer of a remote version of this path: a local write supersedes it (conflict rule).
    const transfer = this.#transfers.get(path);
    if (transfer !== undefined) this.#cancel(transfer);
    switch (op.kind) {
      case "write": {
        const info = op.info as SfsFileInfo;
        const blocked = this.#blockedForFile(path);
        if (blocked !== undefined) {
          this.#out.add("effects", { kind: "discard", id: this.#discardId(), temp: op.temp as string });
          this.#out.emit({ type: "sfs-local-done", op: op.op, path, error: blocked });
          return this.#freed(path);
        }
        this.#issuePathOp(path, { kind: "commit", path, local: op }, { temp: op.temp as string, size: info.size, sha256: info.sha256, verify: false });
        return;
      }
      case "remove":
        if (!isLive(state?.base) && !isLive(state?.entry) && (this.#liveUnder.get(path) ?? 0) === 0 && state !== undefined) {
          this.#out.emit({ type: "sfs-local-done", op: op.op, path });
          return this.#freed(path);
        }
      {
        const dir = state === undefined ? true : (state.base ?? state.entry).dir;
        if (dir && (this.#liveUnder.get(path) ?? 0) > 0) {
          // Live entries came below meanwhile (from a peer): the folder stays as their parent and
          // only its tombstone goes out (an empty live folder below must not go with it).
          const refused = this.#localVersion(path, { deleted: true, dir: true, info: undefined, mtimeMs: this.#wallMs, vv: op.vv });
          this.#out.emit({ type: "sfs-local-done", op: op.op, path, ...(refused === undefined ? {} : { error: refused }) });
          return this.#freed(path);
        }
        // Removing what the disk holds; when nothing is on the disk yet, the tombstone still goes out.
        this.#busy.add(path);
        this.#localBusy.add(path);
        const id = this.#nextId++;
        this.#ops.set(id, { kind: "remove", path, local: op });
        this.#out.add("effects", { kind: "remove", id, path, dir });
        return;
      }
      case "mkdir":
        this.#issuePathOp(path, { kind: "mkdir", path, local: op });
        return;
    }
  }
}
