// The file side of sfs (docs/protocols/sfs.md): the node's /shared/ folder is `<data>/shared/`
// (0700), temp files live in `<data>/shared/.sfs-tmp/` (hidden from listings, emptied at boot).
// This adapter carries out the core's effects (src/core/collective/sfs.ts) and hashes files with
// SHA-256 chunk by chunk, streaming (never a whole file in memory). Everything is async; every
// effect resolves to its completion and never rejects.
//
// Content reaches a shared path only by rename from the temp folder, after an fsync of the temp
// file; the folder is fsynced after the rename and before the completion is reported. A crash at
// any point leaves either the old file or the whole new one under the name, and at most a temp
// file, which the boot scan deletes.
//
// Paths from the core are checked again here (canonical, relative to /shared/) and resolved
// without following symbolic links out of the folder: a parent that is a link is refused.
import { createHash, hash } from "node:crypto";
import { constants, type Stats } from "node:fs";
import { lstat, mkdir, open, readdir, rename, rm, rmdir, stat, statfs, unlink, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { isCanonicalPath, SFS_PATH } from "../core/collective/sfs-path.ts";
import type { SfsCompletion, SfsDiskItem, SfsEffect, SfsFileInfo } from "../core/collective/sfs.ts";
import { LIMITS } from "../core/util/limits.ts";

export const SHARED_DIR = "shared";
export const TEMP_DIR = ".sfs-tmp";
const TEMP_NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** Hashing a file that keeps changing under us is given up after this many tries. */
const HASH_TRIES_MAX = LIMITS.disk.hashTriesMax;

export interface SharedFilesOptions {
  /** Chunk size for hashing this node's files (the core's config.chunkBytes). */
  readonly chunkBytes: number;
  /** Items a scan lists at most (default LIMITS.disk.sfsScanItemsMax); beyond, it stops and says it is incomplete. */
  readonly scanItemsMax?: number;
}

export interface ScanResult {
  readonly items: SfsDiskItem[];
  /** False when the scan stopped at scanItemsMax (then nothing missing may be taken as deleted). */
  readonly complete: boolean;
  /** Symbolic links and other non-regular files left out. */
  readonly skipped: number;
}

export interface DirEntry {
  readonly name: string;
  readonly dir: boolean;
  readonly size: number;
  readonly mtimeMs: number;
}

function errorText(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code ?? (error instanceof Error ? error.message : String(error));
}

function isCode(error: unknown, ...codes: string[]): boolean {
  return codes.includes((error as NodeJS.ErrnoException).code ?? "");
}

async function fsyncDir(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Hashes a file through an open handle: whole-file SHA-256 and one per chunk, reading chunkBytes at a time. */
async function hashHandle(handle: FileHandle, chunkBytes: number, size: number, copyTo?: FileHandle): Promise<{ sha256: string; chunkHashes: string[]; size: number }> {
  const whole = createHash("sha256");
  const chunkHashes: string[] = [];
  const buffer = Buffer.allocUnsafe(Math.min(chunkBytes, Math.max(size, 1)));
  let position = 0;
  for (;;) {
    // Fill one whole chunk (a read may return less).
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, position + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    if (filled === 0) break;
    const piece = buffer.subarray(0, filled);
    whole.update(piece);
    chunkHashes.push(hash("sha256", piece, "hex"));
    if (copyTo !== undefined) await copyTo.write(piece, 0, filled, position);
    position += filled;
    if (filled < buffer.length) break;
  }
  return { sha256: whole.digest("hex"), chunkHashes, size: position };
}

export class SharedFiles {
  readonly root: string;
  readonly tempDir: string;
  readonly #chunkBytes: number;
  readonly #scanItemsMax: number;
  #stage = 0;
  /** Open temp files being written by write-chunk effects. */
  readonly #temps = new Map<string, Promise<FileHandle>>();

  private constructor(dataDir: string, options: SharedFilesOptions) {
    this.root = join(dataDir, SHARED_DIR);
    this.tempDir = join(this.root, TEMP_DIR);
    this.#chunkBytes = options.chunkBytes;
    this.#scanItemsMax = options.scanItemsMax ?? LIMITS.disk.sfsScanItemsMax;
  }

  /** Creates `<data>/shared/` and its temp folder (0700) if needed. */
  static async open(dataDir: string, options: SharedFilesOptions): Promise<SharedFiles> {
    const files = new SharedFiles(dataDir, options);
    await mkdir(files.tempDir, { recursive: true, mode: 0o700 });
    return files;
  }

  /** The absolute path of a canonical shared path; throws on anything else. */
  resolve(path: string): string {
    if (!isCanonicalPath(path)) throw new Error(`not a canonical shared path: ${JSON.stringify(path.slice(0, 80))}`);
    return join(this.root, ...path.split("/"));
  }

  #temp(name: string): string {
    if (!TEMP_NAME.test(name)) throw new Error(`bad temp name ${JSON.stringify(name.slice(0, 80))}`);
    return join(this.tempDir, name);
  }

  /**
   * Checks the folders above a shared path one by one without following links: each must be a real
   * folder (a symbolic link could lead out of /shared/). With `create`, missing ones are made (0700).
   * A missing one otherwise ends the walk: the path does not exist, which the caller's own call
   * reports.
   */
  async #checkParent(path: string, create = false): Promise<void> {
    const parts = path.split("/");
    let dir = this.root;
    for (let k = 0; k < parts.length - 1; k++) {
      dir = join(dir, parts[k] as string);
      const info = await lstat(dir).catch((error: unknown) => {
        if (isCode(error, "ENOENT")) return undefined;
        throw error;
      });
      if (info === undefined) {
        if (!create) return;
        await mkdir(dir, { mode: 0o700 }).catch((error: unknown) => {
          if (!isCode(error, "EEXIST")) throw error;
        });
        const made = await lstat(dir);
        if (!made.isDirectory()) throw Object.assign(new Error("a file is in the way"), { code: "ENOTDIR" });
      } else if (info.isSymbolicLink()) {
        throw new Error("a parent folder is a symbolic link");
      } else if (!info.isDirectory()) {
        throw Object.assign(new Error("a file is in the way"), { code: "ENOTDIR" });
      }
    }
  }

  // -----------------------------------------------------------------------------------------
  // Boot scan

  /**
   * Lists /shared/ (files and folders, relative "/" paths; links and special files skipped). With
   * cleanTemp (at boot, before any effect runs) the temp folder is emptied first.
   */
  async scan(options: { cleanTemp: boolean }): Promise<ScanResult> {
    if (options.cleanTemp) {
      await rm(this.tempDir, { recursive: true, force: true });
      await mkdir(this.tempDir, { recursive: true, mode: 0o700 });
      this.#temps.clear();
    }
    const items: SfsDiskItem[] = [];
    let skipped = 0;
    let complete = true;
    const walk = async (dir: string, prefix: string, depth: number): Promise<void> => {
      if (depth > SFS_PATH.depthMax) return;
      let names: string[];
      try {
        names = (await readdir(dir)).sort();
      } catch {
        return;
      }
      for (const name of names) {
        if (depth === 0 && name === TEMP_DIR) continue;
        if (items.length >= this.#scanItemsMax) {
          complete = false;
          return;
        }
        const full = join(dir, name);
        let info: Stats;
        try {
          info = await lstat(full);
        } catch {
          continue;
        }
        const path = prefix === "" ? name : `${prefix}/${name}`;
        if (info.isDirectory()) {
          items.push({ path, dir: true, size: 0, mtimeMs: Math.floor(info.mtimeMs) });
          await walk(full, path, depth + 1);
        } else if (info.isFile()) {
          items.push({ path, dir: false, size: info.size, mtimeMs: Math.floor(info.mtimeMs) });
        } else skipped++;
      }
    };
    await walk(this.root, "", 0);
    return { items, complete, skipped };
  }

  /** Hashes a shared file in place (boot scan, `sfs sync`). */
  async hashFile(path: string): Promise<SfsFileInfo> {
    const abs = this.resolve(path);
    await this.#checkParent(path);
    for (let attempt = 1; ; attempt++) {
      const handle = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        const before = await handle.stat();
        if (!before.isFile()) throw new Error("not a regular file");
        const result = await hashHandle(handle, this.#chunkBytes, before.size);
        const after = await handle.stat();
        if (after.size === before.size && after.mtimeMs === before.mtimeMs && result.size === before.size) {
          return { size: result.size, sha256: result.sha256, chunkBytes: this.#chunkBytes, chunkHashes: result.chunkHashes, mtimeMs: Math.floor(after.mtimeMs) };
        }
        if (attempt >= HASH_TRIES_MAX) throw new Error("the file kept changing while it was hashed");
      } finally {
        await handle.close();
      }
    }
  }

  // -----------------------------------------------------------------------------------------
  // Local writes (shell): staged in the temp folder, then handed to the core's localWrite

  #stageName(): string {
    return `w-${process.pid}-${++this.#stage}`;
  }

  /** Writes bytes to a new temp file (fsynced) and hashes them. */
  async stageBytes(bytes: Uint8Array): Promise<{ temp: string; info: SfsFileInfo }> {
    const temp = this.#stageName();
    const handle = await open(this.#temp(temp), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      let written = 0;
      while (written < bytes.length) written += (await handle.write(bytes, written, bytes.length - written, written)).bytesWritten;
      await handle.sync();
      const mtimeMs = Math.floor((await handle.stat()).mtimeMs);
      const chunkHashes: string[] = [];
      for (let offset = 0; offset < bytes.length; offset += this.#chunkBytes) chunkHashes.push(hash("sha256", bytes.subarray(offset, offset + this.#chunkBytes), "hex"));
      return { temp, info: { size: bytes.length, sha256: hash("sha256", bytes, "hex"), chunkBytes: this.#chunkBytes, chunkHashes, mtimeMs } };
    } catch (error) {
      await unlink(this.#temp(temp)).catch(() => undefined);
      throw error;
    } finally {
      await handle.close();
    }
  }

  /** Copies a shared file to a new temp file, hashing it on the way (for `cp` and `mv`). */
  async stageCopy(path: string): Promise<{ temp: string; info: SfsFileInfo }> {
    const temp = this.#stageName();
    const info = await this.#copyInto(path, temp, this.#chunkBytes);
    return { temp, info };
  }

  /** Deletes a staged temp file the core refused. */
  async discardStaged(temp: string): Promise<void> {
    await unlink(this.#temp(temp)).catch(() => undefined);
  }

  async #copyInto(path: string, temp: string, chunkBytes: number): Promise<SfsFileInfo> {
    await this.#checkParent(path);
    const source = await open(this.resolve(path), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const before = await source.stat();
      if (!before.isFile()) throw new Error("not a regular file");
      const target = await open(this.#temp(temp), constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
      try {
        const result = await hashHandle(source, chunkBytes, before.size, target);
        await target.sync();
        return { size: result.size, sha256: result.sha256, chunkBytes, chunkHashes: result.chunkHashes, mtimeMs: Math.floor(before.mtimeMs) };
      } finally {
        await target.close();
      }
    } finally {
      await source.close();
    }
  }

  // -----------------------------------------------------------------------------------------
  // The core's effects

  /** Carries out one effect; resolves to its completion, never rejects. */
  async perform(effect: SfsEffect): Promise<SfsCompletion> {
    switch (effect.kind) {
      case "write-chunk":
        try {
          const handle = await this.#tempHandle(effect.temp);
          let written = 0;
          while (written < effect.bytes.length) {
            written += (await handle.write(effect.bytes, written, effect.bytes.length - written, effect.offset + written)).bytesWritten;
          }
          return { kind: "write-chunk", id: effect.id };
        } catch (error) {
          return { kind: "write-chunk", id: effect.id, error: errorText(error) };
        }
      case "commit":
        try {
          return { kind: "commit", id: effect.id, mtimeMs: await this.#commit(effect) };
        } catch (error) {
          return { kind: "commit", id: effect.id, mtimeMs: 0, error: errorText(error) };
        }
      case "discard":
        await this.#closeTemp(effect.temp).catch(() => undefined);
        try {
          await unlink(this.#temp(effect.temp));
        } catch {
          // Absent already, or a bad name: nothing to delete.
        }
        return { kind: "discard", id: effect.id };
      case "remove":
        try {
          return { kind: "remove", id: effect.id, ...(await this.#remove(effect.path, effect.dir)) };
        } catch (error) {
          return { kind: "remove", id: effect.id, error: errorText(error) };
        }
      case "mkdir":
        try {
          return { kind: "mkdir", id: effect.id, mtimeMs: await this.#mkdir(effect.path) };
        } catch (error) {
          return { kind: "mkdir", id: effect.id, mtimeMs: 0, error: isCode(error, "EEXIST", "ENOTDIR") ? "a file is in the way" : errorText(error) };
        }
      case "read-chunk":
        try {
          return { kind: "read-chunk", id: effect.id, bytes: await this.#readChunk(effect.path, effect.offset, effect.length) };
        } catch {
          return { kind: "read-chunk", id: effect.id };
        }
      case "copy":
        try {
          return { kind: "copy", id: effect.id, info: await this.#copyInto(effect.from, effect.temp, effect.chunkBytes) };
        } catch (error) {
          await unlink(this.#temp(effect.temp)).catch(() => undefined);
          return { kind: "copy", id: effect.id, error: errorText(error) };
        }
    }
  }

  #tempHandle(temp: string): Promise<FileHandle> {
    let handle = this.#temps.get(temp);
    if (handle === undefined) {
      handle = open(this.#temp(temp), constants.O_WRONLY | constants.O_CREAT, 0o600);
      this.#temps.set(temp, handle);
      handle.catch(() => this.#temps.delete(temp));
    }
    return handle;
  }

  async #closeTemp(temp: string): Promise<void> {
    const handle = this.#temps.get(temp);
    if (handle === undefined) return;
    this.#temps.delete(temp);
    await (await handle).close();
  }

  async #commit(effect: Extract<SfsEffect, { kind: "commit" }>): Promise<number> {
    const temp = this.#temp(effect.temp);
    const target = this.resolve(effect.path);
    // Make the temp file durable (and whole) before it gets the name.
    const cached = this.#temps.get(effect.temp);
    this.#temps.delete(effect.temp);
    const handle = cached !== undefined ? await cached : await open(temp, constants.O_RDWR | constants.O_CREAT, 0o600);
    try {
      await handle.sync();
      const info = await handle.stat();
      if (info.size !== effect.size) throw new Error(`size ${info.size}, expected ${effect.size}`);
    } finally {
      await handle.close();
    }
    if (effect.verify) {
      const check = await open(temp, constants.O_RDONLY);
      try {
        const result = await hashHandle(check, 4 * 1024 * 1024, effect.size);
        if (result.sha256 !== effect.sha256) throw new Error("sha256 mismatch");
      } finally {
        await check.close();
      }
    }
    const parent = dirname(target);
    await this.#checkParent(effect.path, true);
    // A leftover folder in the way goes if it holds no file.
    const existing = await lstat(target).catch(() => undefined);
    if (existing?.isDirectory() === true && !(await this.#removeEmptyTree(target))) throw new Error("is a folder");
    await rename(temp, target);
    await fsyncDir(parent);
    return Math.floor((await stat(target)).mtimeMs);
  }

  /** Removes a folder that holds only folders; false (and nothing removed beyond empty folders) when a file is inside. */
  async #removeEmptyTree(dir: string): Promise<boolean> {
    let empty = true;
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) {
        if (!(await this.#removeEmptyTree(join(dir, entry.name)))) empty = false;
      } else empty = false;
    }
    if (!empty) return false;
    await rmdir(dir);
    return true;
  }

  async #remove(path: string, dir: boolean): Promise<{ error?: string }> {
    const abs = this.resolve(path);
    try {
      await this.#checkParent(path);
    } catch (error) {
      if (isCode(error, "ENOENT")) return {};
      throw error;
    }
    const info = await lstat(abs).catch((error: unknown) => {
      if (isCode(error, "ENOENT")) return undefined;
      throw error;
    });
    if (info === undefined) return {};
    if (info.isDirectory() !== dir) return { error: "kind" };
    if (dir) {
      if (!(await this.#removeEmptyTree(abs))) return { error: "not-empty" };
    } else {
      await unlink(abs);
    }
    await fsyncDir(dirname(abs));
    return {};
  }

  async #mkdir(path: string): Promise<number> {
    const abs = this.resolve(path);
    await this.#checkParent(path, true);
    await mkdir(abs, { mode: 0o700 }).catch((error: unknown) => {
      if (!isCode(error, "EEXIST")) throw error;
    });
    const info = await lstat(abs);
    if (!info.isDirectory()) throw Object.assign(new Error("a file is in the way"), { code: "EEXIST" });
    await fsyncDir(dirname(abs));
    return Math.floor(info.mtimeMs);
  }

  async #readChunk(path: string, offset: number, length: number): Promise<Uint8Array> {
    await this.#checkParent(path);
    const handle = await open(this.resolve(path), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const buffer = Buffer.allocUnsafe(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return new Uint8Array(buffer.buffer, buffer.byteOffset, filled);
    } finally {
      await handle.close();
    }
  }

  // -----------------------------------------------------------------------------------------
  // Reading for the shell (ls, cat)

  /** The entries of a shared folder ("" for /shared/ itself), the temp folder hidden; sorted by name. */
  /** SHA-256 of a chunk that arrived from a peer, hex (for the core's check). */
  sha256Hex(bytes: Uint8Array): string {
    return hash("sha256", bytes, "hex");
  }

  async list(path: string): Promise<DirEntry[]> {
    const abs = path === "" ? this.root : this.resolve(path);
    if (path !== "") await this.#checkParent(path);
    const out: DirEntry[] = [];
    for (const name of (await readdir(abs)).sort()) {
      if (path === "" && name === TEMP_DIR) continue;
      const info = await lstat(join(abs, name)).catch(() => undefined);
      if (info === undefined || !(info.isFile() || info.isDirectory())) continue;
      out.push({ name, dir: info.isDirectory(), size: info.isFile() ? info.size : 0, mtimeMs: Math.floor(info.mtimeMs) });
    }
    return out;
  }

  /** Reads a shared file, refusing files larger than maxBytes. */
  async read(path: string, maxBytes: number): Promise<Uint8Array> {
    await this.#checkParent(path);
    const handle = await open(this.resolve(path), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new Error("not a file");
      if (info.size > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
      const buffer = Buffer.allocUnsafe(info.size);
      let filled = 0;
      while (filled < info.size) {
        const { bytesRead } = await handle.read(buffer, filled, info.size - filled, filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return new Uint8Array(buffer.buffer, buffer.byteOffset, filled);
    } finally {
      await handle.close();
    }
  }

  /**
   * Bytes this process may still write on the disk that holds /shared/ (statfs of the temp folder,
   * where fetched files are written: available blocks, the ones an unprivileged user may take,
   * times the block size).
   */
  async freeBytes(): Promise<number> {
    const fs = await statfs(this.tempDir, { bigint: true });
    const free = fs.bavail * fs.bsize;
    return free > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(free);
  }

  /** Closes the temp files still open (their content stays until the next boot scan). */
  async close(): Promise<void> {
    const handles = [...this.#temps.values()];
    this.#temps.clear();
    await Promise.all(handles.map(async (h) => (await h.catch(() => undefined))?.close()));
  }
}
