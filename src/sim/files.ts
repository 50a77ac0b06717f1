// The simulated shared folder: the SharedFolderPort (src/node/ports.ts) on a SimDisk, so the
// shared folder and the Brain run in whole-cluster simulation. It does what the real adapter
// (src/adapters/sfs-files.ts) does on a real disk, with the same crash safety, in virtual time.
//
// Layout on the node's SimDisk (the one its store uses): a shared file `p` is the disk file
// `shared/p`; a folder `p` is an empty marker file `shared/p/` (created durably, as mkdir followed by
// a folder fsync); temp files are `shared/.sfs-tmp/<name>`. Content reaches a shared path only by
// SimDisk.rename (atomic and durable) of a temp file that was fsynced first, so a crash at any
// point leaves either the old file or the whole new one under the name; unsynced temp writes are
// kept, torn or lost by SimDisk.crash, and the boot scan (cleanTemp) deletes every temp file.
// Modification times come from the node's simulated clock and are kept with the file.
//
// Time. Every call is an operation queued with a due tick drawn from the port's own Rng (1 to
// latencyTicksMax ticks after the last tick the cluster reported, never before an earlier one:
// operations complete in the order they were asked, like one disk queue). The cluster calls run(now)
// every tick: the operations due then do their work on the disk and settle their Promises, in
// order. So the same seed gives the same disk and the same completions at the same ticks; the
// Promise callbacks run at the next microtask checkpoint, which the simulation driver reaches
// between ticks (SimCluster.runAsync). A crash (or kill()) drops the queue: those operations never
// happened and their Promises never settle, as in a process that died — and an operation whose
// disk crashed since this port was made does nothing either.
import { hash } from "node:crypto";
import { assert } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";
import type { Rng } from "../core/util/rng.ts";
import { isCanonicalPath } from "../core/collective/sfs-path.ts";
import type { SfsCompletion, SfsDiskItem, SfsEffect, SfsFileInfo } from "../core/collective/sfs.ts";
import type { SharedFolderPort } from "../node/ports.ts";
import type { SimDisk, SimFile } from "./disk.ts";

const ROOT = "shared/";
const TEMP = "shared/.sfs-tmp/";
const TEMP_NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** The simulated disk's default size for freeBytes(): 1 TiB, more than any scenario writes. */
const SIM_DISK_CAPACITY_BYTES = 2 ** 40;
/** Operations queued at once; beyond, a call fails at once (a bug in the caller: the sfs core bounds its effects). */
export const SIM_FILES_QUEUE_MAX = LIMITS.sim.filesQueueMax;

export interface SimFilesOptions {
  /** The core's chunk size for hashing this node's files (SFS_DEFAULTS.chunkBytes). */
  readonly chunkBytes: number;
  /** The node's wall clock (its SimClock), for modification times. */
  readonly clockMs: () => number;
  /** Draws the latencies. */
  readonly rng: Rng;
  /** An operation completes 1..latencyTicksMax ticks after it was asked. Default 2. */
  readonly latencyTicksMax?: number;
  /** Size of the simulated disk, for freeBytes(): what every file on it (store included) leaves free. Default 1 TiB. */
  readonly capacityBytes?: number;
}

export interface SimFilesStats {
  readonly operations: number;
  readonly completed: number;
  /** Dropped by a crash or kill() before they were due. */
  readonly dropped: number;
}

interface Operation {
  readonly due: number;
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
}

function fsError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

function errorText(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : error instanceof Error ? error.message : String(error);
}

function sha256(bytes: Uint8Array): string {
  return hash("sha256", bytes, "hex");
}

export class SimFiles implements SharedFolderPort {
  readonly #disk: SimDisk;
  readonly #generation: number;
  readonly #chunkBytes: number;
  readonly #clockMs: () => number;
  readonly #rng: Rng;
  readonly #latencyMax: number;
  readonly #capacityBytes: number;
  readonly #queue: Operation[] = [];
  #head = 0;
  #now = 0;
  #lastDue = 0;
  #stage = 0;
  #killed = false;
  #operations = 0;
  #completed = 0;
  #dropped = 0;

  constructor(disk: SimDisk, options: SimFilesOptions) {
    this.#disk = disk;
    this.#generation = disk.generation;
    this.#chunkBytes = options.chunkBytes;
    this.#clockMs = options.clockMs;
    this.#rng = options.rng;
    this.#latencyMax = options.latencyTicksMax ?? 2;
    this.#capacityBytes = options.capacityBytes ?? SIM_DISK_CAPACITY_BYTES;
    assert(Number.isSafeInteger(this.#capacityBytes) && this.#capacityBytes >= 0, "SimFiles: capacityBytes must be a whole number of bytes");
    assert(Number.isInteger(this.#chunkBytes) && this.#chunkBytes >= 1, "SimFiles: chunkBytes must be a positive integer");
    assert(Number.isInteger(this.#latencyMax) && this.#latencyMax >= 1, "SimFiles: latencyTicksMax must be a positive integer");
  }

  get stats(): SimFilesStats {
    return { operations: this.#operations, completed: this.#completed, dropped: this.#dropped };
  }

  /** Operations asked and not yet done. */
  get pending(): number {
    return this.#queue.length - this.#head;
  }

  /** Carries out the operations due at tick `now`, in the order they were asked, and settles their Promises. */
  run(now: number): void {
    this.#now = Math.max(this.#now, now);
    if (this.#killed || this.#disk.generation !== this.#generation) {
      this.kill();
      return;
    }
    while (this.#head < this.#queue.length && this.#queue[this.#head]!.due <= this.#now) {
      const op = this.#queue[this.#head]!;
      this.#head++;
      let value: unknown;
      try {
        value = op.work();
      } catch (error) {
        this.#completed++;
        op.reject(error instanceof Error ? error : new Error(String(error)));
        continue;
      }
      this.#completed++;
      op.resolve(value);
    }
    if (this.#head === this.#queue.length) {
      this.#queue.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
  }

  /** The process died: queued operations never happen and their Promises never settle. */
  kill(): void {
    this.#dropped += this.#queue.length - this.#head;
    this.#queue.length = 0;
    this.#head = 0;
    this.#killed = true;
  }

  #later<T>(work: () => T): Promise<T> {
    if (this.#killed) return new Promise<T>(() => undefined);
    if (this.pending >= SIM_FILES_QUEUE_MAX) return Promise.reject(fsError("EAGAIN", `more than ${SIM_FILES_QUEUE_MAX} operations queued`));
    this.#operations++;
    const due = Math.max(this.#lastDue, this.#now + 1 + this.#rng.int(this.#latencyMax));
    this.#lastDue = due;
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ due, work, resolve: resolve as (value: unknown) => void, reject });
    });
  }

  // -- names ------------------------------------------------------------------------------------

  #fileName(path: string): string {
    if (!isCanonicalPath(path)) throw fsError("EINVAL", `not a canonical shared path: ${JSON.stringify(path.slice(0, 80))}`);
    return ROOT + path;
  }

  #dirName(path: string): string {
    return this.#fileName(path) + "/";
  }

  #tempName(name: string): string {
    if (!TEMP_NAME.test(name)) throw fsError("EINVAL", `bad temp name ${JSON.stringify(name.slice(0, 80))}`);
    return TEMP + name;
  }

  #isFile(path: string): boolean {
    return this.#disk.has(this.#fileName(path));
  }

  #isDir(path: string): boolean {
    return path === "" || this.#disk.has(this.#dirName(path));
  }

  #file(path: string): SimFile {
    this.#checkParent(path);
    if (this.#isDir(path)) throw fsError("EISDIR", "not a regular file");
    if (!this.#isFile(path)) throw fsError("ENOENT", path);
    return this.#disk.open(this.#fileName(path));
  }

  /** The folders above a shared path: a file in the way fails; with `create`, missing ones are made. */
  #checkParent(path: string, create = false): void {
    const parts = this.#fileName(path).slice(ROOT.length).split("/");
    for (let k = 1; k < parts.length; k++) {
      const dir = parts.slice(0, k).join("/");
      if (this.#isFile(dir)) throw fsError("ENOTDIR", "a file is in the way");
      if (this.#isDir(dir)) continue;
      if (!create) return;
      this.#disk.open(this.#dirName(dir)).mtimeMs = this.#mtime();
    }
  }

  #mtime(): number {
    return Math.floor(this.#clockMs());
  }

  #info(bytes: Uint8Array, chunkBytes: number, mtimeMs: number): SfsFileInfo {
    const chunkHashes: string[] = [];
    for (let offset = 0; offset < bytes.length; offset += chunkBytes) chunkHashes.push(sha256(bytes.subarray(offset, offset + chunkBytes)));
    return { size: bytes.length, sha256: sha256(bytes), chunkBytes, chunkHashes, mtimeMs };
  }

  /** The disk names under folder `path` ("" for /shared/ itself), temp files excluded. */
  #under(path: string): string[] {
    const prefix = path === "" ? ROOT : this.#dirName(path);
    return this.#disk.names().filter((name) => name.startsWith(prefix) && name !== prefix && !name.startsWith(TEMP));
  }

  /** Removes a folder that holds only folders; false (nothing removed) when a file is inside. */
  #removeEmptyTree(path: string): boolean {
    const inside = this.#under(path);
    if (inside.some((name) => !name.endsWith("/"))) return false;
    for (const name of inside) this.#disk.remove(name);
    this.#disk.remove(this.#dirName(path));
    return true;
  }

  #copyInto(path: string, temp: string, chunkBytes: number): SfsFileInfo {
    const source = this.#file(path);
    const bytes = source.read();
    const target = this.#disk.open(this.#tempName(temp));
    target.truncate(0);
    target.write(0, bytes);
    target.fsync();
    target.mtimeMs = this.#mtime();
    return this.#info(bytes, chunkBytes, source.mtimeMs);
  }

  // -- the port ---------------------------------------------------------------------------------

  sha256Hex(bytes: Uint8Array): string {
    return sha256(bytes);
  }

  scan(options: { cleanTemp: boolean }): Promise<{ readonly items: SfsDiskItem[]; readonly complete: boolean }> {
    return this.#later(() => {
      if (options.cleanTemp) for (const name of this.#disk.names()) if (name.startsWith(TEMP)) this.#disk.remove(name);
      const items: SfsDiskItem[] = [];
      for (const name of this.#under("")) {
        const file = this.#disk.open(name);
        const dir = name.endsWith("/");
        items.push({ path: name.slice(ROOT.length, dir ? -1 : undefined), dir, size: dir ? 0 : file.size, mtimeMs: file.mtimeMs });
      }
      return { items, complete: true };
    });
  }

  hashFile(path: string): Promise<SfsFileInfo> {
    return this.#later(() => {
      const file = this.#file(path);
      return this.#info(file.read(), this.#chunkBytes, file.mtimeMs);
    });
  }

  stageBytes(bytes: Uint8Array): Promise<{ temp: string; info: SfsFileInfo }> {
    const copy = bytes.slice();
    return this.#later(() => {
      const temp = `w-${this.#generation}-${++this.#stage}`;
      const file = this.#disk.open(this.#tempName(temp));
      file.truncate(0);
      file.write(0, copy);
      file.fsync();
      file.mtimeMs = this.#mtime();
      return { temp, info: this.#info(copy, this.#chunkBytes, file.mtimeMs) };
    });
  }

  stageCopy(path: string): Promise<{ temp: string; info: SfsFileInfo }> {
    return this.#later(() => {
      const temp = `w-${this.#generation}-${++this.#stage}`;
      return { temp, info: this.#copyInto(path, temp, this.#chunkBytes) };
    });
  }

  discardStaged(temp: string): Promise<void> {
    return this.#later(() => {
      if (TEMP_NAME.test(temp)) this.#disk.remove(this.#tempName(temp));
    });
  }

  list(path: string): Promise<Array<{ readonly name: string; readonly dir: boolean; readonly size: number; readonly mtimeMs: number }>> {
    return this.#later(() => {
      if (path !== "") {
        this.#checkParent(path);
        if (this.#isFile(path)) throw fsError("ENOTDIR", path);
        if (!this.#isDir(path)) throw fsError("ENOENT", path);
      }
      const prefix = path === "" ? ROOT : this.#dirName(path);
      const out: Array<{ name: string; dir: boolean; size: number; mtimeMs: number }> = [];
      for (const name of this.#under(path)) {
        const rest = name.slice(prefix.length);
        const slash = rest.indexOf("/");
        if (slash >= 0 && slash !== rest.length - 1) continue; // deeper
        const file = this.#disk.open(name);
        const dir = slash >= 0;
        out.push({ name: dir ? rest.slice(0, -1) : rest, dir, size: dir ? 0 : file.size, mtimeMs: file.mtimeMs });
      }
      return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    });
  }

  read(path: string, maxBytes: number): Promise<Uint8Array> {
    return this.#later(() => {
      const file = this.#file(path);
      if (file.size > maxBytes) throw fsError("EFBIG", `larger than ${maxBytes} bytes`);
      return file.read();
    });
  }

  /** The capacity less the bytes of every file on the simulated disk (the store's and temp files included). */
  freeBytes(): Promise<number> {
    return this.#later(() => {
      let used = 0;
      for (const name of this.#disk.names()) used += this.#disk.open(name).size;
      return Math.max(0, this.#capacityBytes - used);
    });
  }

  /** Carries out one effect of the sfs core; settles to its completion, never rejects. */
  perform(effect: SfsEffect): Promise<SfsCompletion> {
    return this.#later((): SfsCompletion => {
      switch (effect.kind) {
        case "write-chunk":
          try {
            this.#disk.open(this.#tempName(effect.temp)).write(effect.offset, effect.bytes);
            return { kind: "write-chunk", id: effect.id };
          } catch (error) {
            return { kind: "write-chunk", id: effect.id, error: errorText(error) };
          }
        case "commit":
          try {
            return { kind: "commit", id: effect.id, mtimeMs: this.#commit(effect) };
          } catch (error) {
            return { kind: "commit", id: effect.id, mtimeMs: 0, error: errorText(error) };
          }
        case "discard":
          if (TEMP_NAME.test(effect.temp)) this.#disk.remove(this.#tempName(effect.temp));
          return { kind: "discard", id: effect.id };
        case "remove":
          try {
            return { kind: "remove", id: effect.id, ...this.#remove(effect.path, effect.dir) };
          } catch (error) {
            return { kind: "remove", id: effect.id, error: errorText(error) };
          }
        case "mkdir":
          try {
            return { kind: "mkdir", id: effect.id, mtimeMs: this.#mkdir(effect.path) };
          } catch (error) {
            const code = errorText(error);
            return { kind: "mkdir", id: effect.id, mtimeMs: 0, error: code === "EEXIST" || code === "ENOTDIR" ? "a file is in the way" : code };
          }
        case "read-chunk":
          try {
            return { kind: "read-chunk", id: effect.id, bytes: this.#file(effect.path).read(effect.offset, effect.length) };
          } catch {
            return { kind: "read-chunk", id: effect.id };
          }
        case "copy":
          try {
            return { kind: "copy", id: effect.id, info: this.#copyInto(effect.from, effect.temp, effect.chunkBytes) };
          } catch (error) {
            if (TEMP_NAME.test(effect.temp)) this.#disk.remove(this.#tempName(effect.temp));
            return { kind: "copy", id: effect.id, error: errorText(error) };
          }
      }
    });
  }

  #commit(effect: Extract<SfsEffect, { kind: "commit" }>): number {
    const temp = this.#tempName(effect.temp);
    const target = this.#fileName(effect.path);
    // Durable and whole before it gets the name.
    const file = this.#disk.open(temp);
    file.fsync();
    if (file.size !== effect.size) throw new Error(`size ${file.size}, expected ${effect.size}`);
    if (effect.verify && sha256(file.read()) !== effect.sha256) throw new Error("sha256 mismatch");
    this.#checkParent(effect.path, true);
    // A leftover folder in the way goes if it holds no file.
    if (this.#isDir(effect.path) && !this.#removeEmptyTree(effect.path)) throw new Error("is a folder");
    this.#disk.rename(temp, target);
    const committed = this.#disk.open(target);
    committed.mtimeMs = this.#mtime();
    return committed.mtimeMs;
  }

  #remove(path: string, dir: boolean): { error?: string } {
    try {
      this.#checkParent(path);
    } catch (error) {
      if (errorText(error) === "ENOENT") return {};
      throw error;
    }
    const isDir = this.#isDir(path), isFile = this.#isFile(path);
    if (!isDir && !isFile) return {};
    if (isDir !== dir) return { error: "kind" };
    if (dir) return this.#removeEmptyTree(path) ? {} : { error: "not-empty" };
    this.#disk.remove(this.#fileName(path));
    return {};
  }

  #mkdir(path: string): number {
    this.#checkParent(path, true);
    if (this.#isFile(path)) throw fsError("EEXIST", "a file is in the way");
    const name = this.#dirName(path);
    const existed = this.#disk.has(name);
    const marker = this.#disk.open(name);
    if (!existed) marker.mtimeMs = this.#mtime();
    return marker.mtimeMs;
  }
}
