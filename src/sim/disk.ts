// The simulated disk and the durable store built on it (DESIGN.md §2.3: "simulated disks (crash,
// torn and lost writes)").
//
// SimDisk holds files of bytes. A write lands in the page cache at once (reads see it) but stays
// volatile until fsync() of its file. crash() is a power loss: each unsynced write is, by its own
// draw from the crash's Rng, kept whole (the OS had flushed it), torn (a prefix reached the
// platter), optionally corrupted, or lost. Writes are undone in reverse and redone by fate in
// order, so a crash costs O(unsynced bytes), not O(file).
//
// SimStore implements the Store port as a write-ahead log on one SimDisk file:
//
//   record  = [u32 payload length][u32 CRC-32 of (length bytes || payload)][payload]
//   payload = [u32 op count] then per op: [u8 kind: 0 delete, 1 put][u32 key bytes][key, UTF-8]
//             and, for a put, [u32 value bytes][value]                  (all integers big-endian)
//
// A batch is one record, so it is applied whole or not at all. SimStore.recover() replays records
// until the first one that is short, torn or fails its checksum, and truncates the log there.
// Since unsynced writes are only ever appended after synced ones, the surviving records are every
// durable batch plus a prefix of the rest: exactly the Store port's contract. When the log outgrows
// the live data it is compacted: the whole state is written to a new file as one record, fsynced,
// and renamed over the log (rename is atomic and, in this model, durable at once).
import type { Store, StoreWrite } from "../node/ports.ts";
import type { Rng } from "../core/util/rng.ts";
import { assert } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";

/** Largest simulated file: 1 GiB. */
export const FILE_BYTES_MAX = LIMITS.sim.fileBytesMax;
/** Files on one simulated disk. */
export const FILES_MAX = LIMITS.sim.filesMax;

export interface CrashFaults {
  /** Probability an unsynced write survives whole. Default 0. */
  readonly keepProbability?: number;
  /** Probability an unsynced write that does not survive whole leaves a torn prefix. Default 0.5. */
  readonly tornProbability?: number;
  /** Probability one byte of a surviving (whole or torn) unsynced write is flipped. Default 0. */
  readonly corruptProbability?: number;
}

export interface CrashReport {
  readonly kept: number;
  readonly torn: number;
  readonly lost: number;
  readonly corrupted: number;
}

export interface DiskStats {
  readonly writes: number;
  readonly bytesWritten: number;
  readonly fsyncs: number;
  readonly crashes: number;
}

/** A change not yet fsynced, with what it replaced so a crash can undo it. */
interface PendingChange {
  readonly kind: "write" | "truncate";
  readonly offset: number;
  /** write: the bytes written; truncate: empty. */
  readonly bytes: Uint8Array;
  /** The file's length before the change. */
  readonly lengthBefore: number;
  /** The bytes the change overwrote or cut off (only those within lengthBefore). */
  readonly replaced: Uint8Array;
}

export class SimFile {
  readonly name: string;
  readonly #disk: SimDisk;
  #data = new Uint8Array(256);
  #length = 0;
  #pending: PendingChange[] = [];
  /** Modification time, set by whoever writes (the simulated files port); metadata, kept over a crash. */
  mtimeMs = 0;

  constructor(name: string, disk: SimDisk) {
    this.name = name;
    this.#disk = disk;
  }

  /** Current length, unsynced writes included (what a read sees). */
  get size(): number {
    return this.#length;
  }

  /** Changes since the last fsync. */
  get unsyncedChanges(): number {
    return this.#pending.length;
  }

  /** A copy of bytes [offset, offset + length), clipped to the file's end. */
  read(offset = 0, length = this.#length - offset): Uint8Array {
    assert(Number.isInteger(offset) && offset >= 0 && Number.isInteger(length) && length >= 0, "SimFile.read: bad range");
    const end = Math.min(this.#length, offset + length);
    return end <= offset ? new Uint8Array(0) : this.#data.slice(offset, end);
  }

  /** Writes bytes at offset (past the end, the gap reads as zeros). Volatile until fsync(). */
  write(offset: number, bytes: Uint8Array): void {
    assert(Number.isInteger(offset) && offset >= 0, "SimFile.write: bad offset");
    const end = offset + bytes.length;
    assert(end <= FILE_BYTES_MAX, `SimFile.write: ${this.name} would exceed ${FILE_BYTES_MAX} bytes`);
    const lengthBefore = this.#length;
    const replaced = this.#data.slice(Math.min(offset, lengthBefore), Math.min(end, lengthBefore));
    this.#pending.push({ kind: "write", offset, bytes: bytes.slice(), lengthBefore, replaced });
    this.#apply(offset, bytes);
    this.#disk.countWrite(bytes.length);
  }

  /** Appends bytes; returns the offset they were written at. */
  append(bytes: Uint8Array): number {
    const offset = this.#length;
    this.write(offset, bytes);
    return offset;
  }

  /** Cuts the file to `length` bytes. Volatile until fsync(), like a write. */
  truncate(length: number): void {
    assert(Number.isInteger(length) && length >= 0, "SimFile.truncate: bad length");
    if (length >= this.#length) return;
    this.#pending.push({
      kind: "truncate",
      offset: length,
      bytes: new Uint8Array(0),
      lengthBefore: this.#length,
      replaced: this.#data.slice(length, this.#length),
    });
    this.#length = length;
  }

  /** Makes every change so far durable. */
  fsync(): void {
    this.#pending = [];
    this.#disk.countFsync();
  }

  /** Power loss: decides each unsynced change's fate. Called by SimDisk.crash. */
  crash(rng: Rng, faults: Required<CrashFaults>, report: { kept: number; torn: number; lost: number; corrupted: number }): void {
    const pending = this.#pending;
    this.#pending = [];
    // Undo, newest first, back to the durable image.
    for (let i = pending.length - 1; i >= 0; i--) {
      const change = pending[i] as PendingChange;
      this.#data.set(change.replaced, change.offset);
      this.#length = change.lengthBefore;
    }
    // Redo, oldest first, each by its fate. A truncate is a metadata change: all or nothing.
    for (const change of pending) {
      if (change.kind === "truncate") {
        if (rng.chance(faults.keepProbability)) {
          report.kept++;
          if (change.offset < this.#length) this.#length = change.offset;
        } else {
          report.lost++;
        }
        continue;
      }
      let bytes = change.bytes;
      if (rng.chance(faults.keepProbability)) {
        report.kept++;
      } else if (bytes.length > 1 && rng.chance(faults.tornProbability)) {
        report.torn++;
        bytes = bytes.subarray(0, 1 + rng.int(bytes.length - 1));
      } else {
        report.lost++;
        continue;
      }
      if (rng.chance(faults.corruptProbability)) {
        report.corrupted++;
        bytes = bytes.slice();
        const at = rng.int(bytes.length);
        bytes[at] = (bytes[at] as number) ^ (1 + rng.int(255));
      }
      this.#apply(change.offset, bytes);
    }
  }

  /** Replaces this file's contents with another's (rename over it). */
  adopt(other: SimFile): void {
    this.#data = other.#data;
    this.#length = other.#length;
    this.#pending = other.#pending;
    this.mtimeMs = other.mtimeMs;
  }

  #apply(offset: number, bytes: Uint8Array): void {
    const end = offset + bytes.length;
    if (end > this.#data.length) {
      let capacity = this.#data.length;
      while (capacity < end) capacity *= 2;
      const grown = new Uint8Array(capacity);
      grown.set(this.#data.subarray(0, this.#length));
      this.#data = grown;
    }
    // Bytes beyond the old end may hold what a truncate cut off: a gap must read as zeros.
    if (offset > this.#length) this.#data.fill(0, this.#length, offset);
    this.#data.set(bytes, offset);
    if (end > this.#length) this.#length = end;
  }
}

export class SimDisk {
  readonly #files = new Map<string, SimFile>();
  #generation = 0;
  #writes = 0;
  #bytesWritten = 0;
  #fsyncs = 0;
  #crashes = 0;

  /** Bumped by every crash: handles from before a crash belong to a dead process. */
  get generation(): number {
    return this.#generation;
  }

  get stats(): DiskStats {
    return { writes: this.#writes, bytesWritten: this.#bytesWritten, fsyncs: this.#fsyncs, crashes: this.#crashes };
  }

  has(name: string): boolean {
    return this.#files.has(name);
  }

  names(): string[] {
    return [...this.#files.keys()].sort();
  }

  /** Opens a file, creating it empty if needed (creation is durable at once). */
  open(name: string): SimFile {
    let file = this.#files.get(name);
    if (file === undefined) {
      assert(this.#files.size < FILES_MAX, `SimDisk: more than ${FILES_MAX} files`);
      file = new SimFile(name, this);
      this.#files.set(name, file);
    }
    return file;
  }

  /** Atomically replaces `to` with `from` (durable at once: rename followed by a directory fsync). */
  rename(from: string, to: string): void {
    const source = this.#files.get(from);
    assert(source !== undefined, `SimDisk.rename: no file ${from}`);
    if (from === to) return;
    this.#files.delete(from);
    const target = this.#files.get(to);
    if (target === undefined) {
      const moved = new SimFile(to, this);
      moved.adopt(source);
      this.#files.set(to, moved);
    } else {
      target.adopt(source);
    }
  }

  remove(name: string): void {
    this.#files.delete(name);
  }

  /** Power loss on this disk: every file's unsynced changes are kept, torn or lost, by `rng`. */
  crash(rng: Rng, faults: CrashFaults = {}): CrashReport {
    const resolved: Required<CrashFaults> = {
      keepProbability: faults.keepProbability ?? 0,
      tornProbability: faults.tornProbability ?? 0.5,
      corruptProbability: faults.corruptProbability ?? 0,
    };
    for (const [name, p] of Object.entries(resolved)) assert(p >= 0 && p <= 1, `SimDisk.crash: ${name} must be in [0, 1]`);
    const report = { kept: 0, torn: 0, lost: 0, corrupted: 0 };
    // Files in name order, so the draws do not depend on the order files were created in.
    for (const name of this.names()) this.#files.get(name)?.crash(rng, resolved, report);
    this.#generation++;
    this.#crashes++;
    return report;
  }

  /** @internal Accounting, called by SimFile. */
  countWrite(bytes: number): void {
    this.#writes++;
    this.#bytesWritten += bytes;
  }

  /** @internal Accounting, called by SimFile. */
  countFsync(): void {
    this.#fsyncs++;
  }
}

// --- the store ---

export interface SimStoreOptions {
  /** The log's file name on the disk. Default "store.wal". */
  readonly fileName?: string;
  /** The log is compacted once it exceeds both this many bytes and twice the live data. Default 1 MiB. */
  readonly compactBytesMin?: number;
}

export interface RecoveryReport {
  /** Records replayed. */
  readonly records: number;
  /** Bytes cut off the log's end (a torn or corrupt tail). */
  readonly truncatedBytes: number;
}

const RECORD_HEADER_BYTES = 8;
const OP_DELETE = 0;
const OP_PUT = 1;
const KEY_BYTES_MAX = LIMITS.sim.keyBytesMax;
/** Overhead per op in a record: kind, key length and value length. */
const OP_OVERHEAD_BYTES = 9;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

export class SimStore implements Store {
  readonly #disk: SimDisk;
  readonly #generation: number;
  readonly #fileName: string;
  readonly #compactBytesMin: number;
  #file: SimFile;
  readonly #values = new Map<string, Uint8Array>();
  /** Every key, sorted, for scan(). */
  readonly #keys: string[] = [];
  /** Bytes the live data would take as one record: the compaction yardstick. */
  #liveBytes = 4;
  #closed = false;
  readonly recovery: RecoveryReport;

  private constructor(disk: SimDisk, options: SimStoreOptions) {
    this.#disk = disk;
    this.#generation = disk.generation;
    this.#fileName = options.fileName ?? "store.wal";
    this.#compactBytesMin = options.compactBytesMin ?? 1024 * 1024;
    this.#file = disk.open(this.#fileName);
    this.recovery = this.#replay();
  }

  /** Opens the store on `disk`, replaying its log (after a crash: every durable batch and a prefix of the rest). */
  static recover(disk: SimDisk, options: SimStoreOptions = {}): SimStore {
    return new SimStore(disk, options);
  }

  get(key: string): Uint8Array | undefined {
    this.#checkOpen();
    return this.#values.get(key);
  }

  scan(prefix: string, limit = Number.MAX_SAFE_INTEGER): Array<[string, Uint8Array]> {
    this.#checkOpen();
    const out: Array<[string, Uint8Array]> = [];
    const keys = this.#keys;
    for (let i = lowerBound(keys, prefix); i < keys.length && out.length < limit; i++) {
      const key = keys[i] as string;
      if (!key.startsWith(prefix)) break;
      out.push([key, this.#values.get(key) as Uint8Array]);
    }
    return out;
  }

  /** The simulated disk has no thread: the batch is written and fsynced at once, then done() runs. */
  writeAsync(batch: readonly StoreWrite[], done: (error?: Error) => void): void {
    this.write(batch, { durable: true });
    done();
  }

  write(batch: readonly StoreWrite[], options: { durable: boolean }): void {
    this.#checkOpen();
    const record = encodeRecord(batch);
    this.#file.append(record);
    if (options.durable) this.#file.fsync();
    // The record owns fresh copies of the values: serve reads from it, never from the caller's buffers.
    decodePayload(record.subarray(RECORD_HEADER_BYTES), (key, value) => this.#apply(key, value));
    if (this.#file.size > this.#compactBytesMin && this.#file.size > 2 * this.#liveBytes) this.#compact();
  }

  close(): void {
    this.#closed = true;
  }

  /** Keys held, for tests and status. */
  get size(): number {
    return this.#values.size;
  }

  get logBytes(): number {
    return this.#file.size;
  }

  #checkOpen(): void {
    assert(!this.#closed, "SimStore: used after close()");
    assert(this.#disk.generation === this.#generation, "SimStore: used after its disk crashed; recover a new one");
  }

  #replay(): RecoveryReport {
    const log = this.#file.read();
    let offset = 0;
    let records = 0;
    while (offset + RECORD_HEADER_BYTES <= log.length) {
      const view = new DataView(log.buffer, log.byteOffset + offset, RECORD_HEADER_BYTES);
      const length = view.getUint32(0);
      const checksum = view.getUint32(4);
      if (length < 4 || offset + RECORD_HEADER_BYTES + length > log.length) break;
      const payload = log.subarray(offset + RECORD_HEADER_BYTES, offset + RECORD_HEADER_BYTES + length);
      if (crc32(payload, crc32(log.subarray(offset, offset + 4))) !== checksum) break;
      const ops: Array<[string, Uint8Array | undefined]> = [];
      if (!decodePayload(payload, (key, value) => ops.push([key, value]))) break;
      for (const [key, value] of ops) this.#apply(key, value);
      offset += RECORD_HEADER_BYTES + length;
      records++;
    }
    const truncatedBytes = log.length - offset;
    if (truncatedBytes > 0) {
      this.#file.truncate(offset);
      this.#file.fsync();
    }
    return { records, truncatedBytes };
  }

  #apply(key: string, value: Uint8Array | undefined): void {
    const old = this.#values.get(key);
    if (old !== undefined) this.#liveBytes -= OP_OVERHEAD_BYTES + utf8Length(key) + old.length;
    if (value === undefined) {
      if (old === undefined) return;
      this.#values.delete(key);
      this.#keys.splice(lowerBound(this.#keys, key), 1);
      return;
    }
    if (old === undefined) this.#keys.splice(lowerBound(this.#keys, key), 0, key);
    this.#values.set(key, value);
    this.#liveBytes += OP_OVERHEAD_BYTES + utf8Length(key) + value.length;
  }

  #compact(): void {
    const batch: StoreWrite[] = this.#keys.map((key) => ({ key, value: this.#values.get(key) }));
    const nextName = `${this.#fileName}.compact`;
    this.#disk.remove(nextName);
    const next = this.#disk.open(nextName);
    next.append(encodeRecord(batch));
    next.fsync();
    this.#disk.rename(nextName, this.#fileName);
    this.#file = this.#disk.open(this.#fileName);
  }
}

function encodeRecord(batch: readonly StoreWrite[]): Uint8Array {
  const keys = batch.map((write) => utf8Encoder.encode(write.key));
  let length = 4;
  for (let i = 0; i < batch.length; i++) {
    const write = batch[i] as StoreWrite;
    const key = keys[i] as Uint8Array;
    assert(key.length <= KEY_BYTES_MAX, `SimStore: key longer than ${KEY_BYTES_MAX} bytes`);
    length += 5 + key.length;
    if (write.value !== undefined) {
      assert(write.value.length <= LIMITS.storeValueBytesMax, `SimStore: value of ${write.value.length} bytes exceeds LIMITS.storeValueBytesMax`);
      length += 4 + write.value.length;
    }
  }
  assert(RECORD_HEADER_BYTES + length <= FILE_BYTES_MAX, "SimStore: batch larger than a file");
  const record = new Uint8Array(RECORD_HEADER_BYTES + length);
  const view = new DataView(record.buffer);
  view.setUint32(0, length);
  let at = RECORD_HEADER_BYTES;
  view.setUint32(at, batch.length);
  at += 4;
  for (let i = 0; i < batch.length; i++) {
    const write = batch[i] as StoreWrite;
    const key = keys[i] as Uint8Array;
    record[at++] = write.value === undefined ? OP_DELETE : OP_PUT;
    view.setUint32(at, key.length);
    record.set(key, at + 4);
    at += 4 + key.length;
    if (write.value !== undefined) {
      view.setUint32(at, write.value.length);
      record.set(write.value, at + 4);
      at += 4 + write.value.length;
    }
  }
  view.setUint32(4, crc32(record.subarray(RECORD_HEADER_BYTES), crc32(record.subarray(0, 4))));
  return record;
}

/** Calls `visit` per op; values are views into `payload`. False when the payload is malformed. */
function decodePayload(payload: Uint8Array, visit: (key: string, value: Uint8Array | undefined) => void): boolean {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  if (payload.length < 4) return false;
  const count = view.getUint32(0);
  let at = 4;
  for (let i = 0; i < count; i++) {
    if (at + 5 > payload.length) return false;
    const kind = payload[at] as number;
    const keyLength = view.getUint32(at + 1);
    at += 5;
    if ((kind !== OP_DELETE && kind !== OP_PUT) || at + keyLength > payload.length) return false;
    let key: string;
    try {
      key = utf8Decoder.decode(payload.subarray(at, at + keyLength));
    } catch {
      return false;
    }
    at += keyLength;
    if (kind === OP_DELETE) {
      visit(key, undefined);
      continue;
    }
    if (at + 4 > payload.length) return false;
    const valueLength = view.getUint32(at);
    at += 4;
    if (at + valueLength > payload.length) return false;
    visit(key, payload.subarray(at, at + valueLength));
    at += valueLength;
  }
  return at === payload.length;
}

/** Index of the first key >= target in a sorted array. */
function lowerBound(keys: readonly string[], target: string): number {
  let low = 0;
  let high = keys.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((keys[mid] as string) < target) low = mid + 1;
    else high = mid;
  }
  return low;
}

function utf8Length(text: string): number {
  // ASCII keys (the common case) need no encoding to measure.
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return utf8Encoder.encode(text).length;
  return text.length;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE 802.3, as zlib), continuing from `previous` (0 to start). */
export function crc32(bytes: Uint8Array, previous = 0): number {
  let crc = ~previous >>> 0;
  for (let i = 0; i < bytes.length; i++) crc = (CRC_TABLE[(crc ^ (bytes[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return ~crc >>> 0;
}
