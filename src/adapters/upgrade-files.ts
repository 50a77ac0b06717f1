// The supervisor's files in DATA/bundles/ (docs/protocols/upgrade.md, ADR 022):
//
//   current    the address of the bundle the node runs (absent: the code the supervisor came from)
//   previous   the address it ran before the last restart into a bundle ("" : that code)
//   pending    the restart on trial, {"id", "version", "mode", "atMs"}: the new code has not
//              reported healthy yet (a supervisor started again finds it and keeps watching)
//   failed     one JSON line per bundle this node rolled back: {"id", "reason", "atMs"}
//
// Every write is a temporary file, fsynced, renamed over the old one, and the folder fsynced: a
// crash leaves the old content or the new one, never a mix.
import { closeSync, constants, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { LIMITS } from "../core/util/limits.ts";

const ID = /^[0-9a-f]{64}$/;
const { failedMax: FAILED_KEPT, reasonCharsMax: REASON_CHARS } = LIMITS.evolve.upgrade;
/** Largest file read here: the failed list, FAILED_KEPT lines of at most REASON_CHARS + 200 bytes. */
const FILE_BYTES = FAILED_KEPT * (REASON_CHARS * 4 + 200);

export interface FailedBundle {
  readonly id: string;
  readonly reason: string;
  readonly atMs: number;
}

/** A restart on trial: into bundle `id` (version), asked at `atMs`; the node ran in `mode` before. */
export interface Trial {
  readonly id: string;
  readonly version: number;
  readonly mode: string;
  readonly atMs: number;
}

export function isBundleId(text: string): boolean {
  return ID.test(text);
}

/** Writes `text` to `path` atomically (temporary file, fsync, rename, fsync of the folder). */
export function writeAtomic(path: string, text: string): void {
  const dir = join(path, "..");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
  try {
    const data = Buffer.from(text, "utf8");
    let at = 0;
    while (at < data.length) at += writeSync(fd, data, at, data.length - at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  syncDir(dir);
}

function syncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A small file's text (no symlink followed); of a larger one, its last FILE_BYTES bytes. */
function readSmall(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, FILE_BYTES);
    const buffer = Buffer.alloc(length);
    let at = 0;
    while (at < length) {
      const n = readSync(fd, buffer, at, length - at, size - length + at);
      if (n === 0) break;
      at += n;
    }
    return buffer.subarray(0, at).toString("utf8");
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** DATA/bundles/'s supervisor files. */
export class UpgradeFiles {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, "bundles");
  }

  #id(name: string): string | undefined {
    const text = readSmall(join(this.dir, name))?.trim();
    return text !== undefined && ID.test(text) ? text : undefined;
  }

  current(): string | undefined {
    return this.#id("current");
  }

  previous(): string | undefined {
    return this.#id("previous");
  }

  pending(): Trial | undefined {
    try {
      const v = JSON.parse(readSmall(join(this.dir, "pending")) ?? "") as Partial<Trial>;
      if (typeof v.id === "string" && ID.test(v.id) && typeof v.version === "number" && typeof v.mode === "string" && typeof v.atMs === "number") return { id: v.id, version: v.version, mode: v.mode.slice(0, 16), atMs: v.atMs };
    } catch {
      // Absent or torn: no trial.
    }
    return undefined;
  }

  /**
   * Records a restart into `id`: previous = what runs now, pending = id, current = id, in that
   * order (a crash between two writes leaves the node on its old code, or on trial of the new).
   */
  beginTrial(trial: Trial): void {
    writeAtomic(join(this.dir, "previous"), `${this.current() ?? ""}\n`);
    writeAtomic(join(this.dir, "pending"), `${JSON.stringify(trial)}\n`);
    writeAtomic(join(this.dir, "current"), `${trial.id}\n`);
  }

  /** The trial succeeded: the new code stays. */
  confirm(): void {
    rmSync(join(this.dir, "pending"), { force: true });
    syncDir(this.dir);
  }

  /** The trial failed: current = previous (none: the supervisor's own code), `id` recorded as failed. */
  rollBack(id: string, reason: string, nowMs: number): void {
    this.recordFailed(id, reason, nowMs);
    const previous = this.previous();
    if (previous === undefined) rmSync(join(this.dir, "current"), { force: true });
    else writeAtomic(join(this.dir, "current"), `${previous}\n`);
    rmSync(join(this.dir, "pending"), { force: true });
    syncDir(this.dir);
  }

  recordFailed(id: string, reason: string, nowMs: number): void {
    const kept = this.failed().filter((f) => f.id !== id).slice(-(FAILED_KEPT - 1));
    kept.push({ id, reason: reason.slice(0, REASON_CHARS), atMs: nowMs });
    writeAtomic(join(this.dir, "failed"), kept.map((f) => JSON.stringify(f)).join("\n") + "\n");
  }

  /** The bundles this node rolled back, oldest first (lines that do not parse are skipped). */
  failed(): FailedBundle[] {
    const out: FailedBundle[] = [];
    for (const line of (readSmall(join(this.dir, "failed")) ?? "").split("\n")) {
      if (line.trim() === "") continue;
      try {
        const v = JSON.parse(line) as Partial<FailedBundle>;
        if (typeof v.id === "string" && ID.test(v.id) && typeof v.reason === "string" && typeof v.atMs === "number") out.push({ id: v.id, reason: v.reason.slice(0, REASON_CHARS), atMs: v.atMs });
      } catch {
        // A torn or foreign line: skipped.
      }
    }
    return out.slice(-FAILED_KEPT);
  }
}
