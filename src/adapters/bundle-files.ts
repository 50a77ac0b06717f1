// Code bundles on disk (docs/protocols/bundle.md, ADR 020): packing this node's own code, and the
// bundles a node holds in DATA/bundles/.
//
//   DATA/bundles/<address>/                 the bundle's files, installed (dist/, package.json, ...)
//   DATA/bundles/<address>/.pk-bundle/      root.bin, targets.bin (the signed metadata), stream.pkb
//   DATA/bundles/current                    the address of the bundle this node runs (written by
//                                           whoever restarts the node into one; absent: a checkout)
//
// Installing writes everything into a fresh temporary folder beside the others (files created
// exclusively, fsynced), then renames it into place and fsyncs DATA/bundles: a crash leaves either
// no bundle or a whole one, never part of one. Paths come from a verified stream, and are still
// checked here: relative, no "..", nothing outside the folder, no symlinks followed.
import { execFile } from "node:child_process";
import { hash } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, mkdtemp, open, readdir, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { badPath, BUNDLE_DEFAULTS, BUNDLE_META_DIR, readTable, type BundleFile, type Release } from "../core/evolve/bundle.ts";

/** The Node version a bundle's code needs (DESIGN.md §4: node:sqlite, Node 22.18 and later). */
export const BUNDLE_NODE = ">=22.18";
const ID = /^[0-9a-f]{64}$/;
const run = promisify(execFile);
/** The build's tunables: how much compiler output is kept for an error message. */
export const BUNDLE_BUILD_DEFAULTS = { outputBytesMax: 16 * 1024 * 1024 };

export class BundleFileError extends Error {
  override name = "BundleFileError";
}

export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(hash("sha256", data, "buffer"));
}

/** A file's bytes, refusing one larger than `maxBytes` (and what is not a regular file). */
export async function readBounded(path: string, maxBytes: number): Promise<Uint8Array> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new BundleFileError(`${path} is not a regular file`);
    if (info.size > maxBytes) throw new BundleFileError(`${path} is ${info.size} bytes, over ${maxBytes}`);
    return new Uint8Array(await handle.readFile());
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Packing this node's code

/** The package folder this file belongs to (the repository, or an installed bundle). */
export function packageRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // src/adapters/ in a checkout, dist/src/adapters/ in a build.
  return here.endsWith(join("dist", "src", "adapters")) ? resolve(here, "../../..") : resolve(here, "../..");
}

/** What a bundle carries besides the built JavaScript (bin/pk.js needs its scripts; the API serves web/). */
const EXTRA = ["package.json", "package-lock.json", "bin/pk.js", "scripts/recent-node.js", "scripts/launch.js"];
const EXTRA_DIRS = ["web"];

async function walk(root: string, dir: string, out: string[]): Promise<void> {
  for (const entry of (await readdir(join(root, dir), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const path = dir === "" ? entry.name : `${dir}/${entry.name}`;
    if (entry.isDirectory()) await walk(root, path, out);
    else if (entry.isFile()) out.push(path);
    // Symlinks and other kinds are left out: a bundle holds regular files only.
  }
}

async function fileOf(root: string, path: string): Promise<BundleFile> {
  const full = join(root, path);
  const info = await lstat(full);
  if (!info.isFile()) throw new BundleFileError(`${full} is not a regular file`);
  return { path, mode: (info.mode & 0o111) !== 0 ? 0o755 : 0o644, data: await readBounded(full, BUNDLE_DEFAULTS.bundleBytesMax) };
}

/**
 * Builds the package's JavaScript (`tsc -p tsconfig.build.json`, into a temporary folder so the
 * checkout's dist/ is left alone) and gathers the files a bundle carries; in an installed bundle
 * (no src/), its dist/ as it is. Same tree, same files: the order and modes are normalised.
 */
export async function gatherOwnCode(root: string = packageRoot()): Promise<{ files: BundleFile[]; built: boolean; buildMs: number }> {
  const files: BundleFile[] = [];
  let built = false;
  const started = performance.now();
  let dist = join(root, "dist");
  let cleanup: string | undefined;
  if (await exists(join(root, "src")) && await exists(join(root, "tsconfig.build.json"))) {
    cleanup = await mkdtemp(join(tmpdir(), "pk-bundle-build-"));
    const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
    try {
      await run(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", cleanup], { cwd: root, maxBuffer: BUNDLE_BUILD_DEFAULTS.outputBytesMax });
    } catch (error) {
      await rm(cleanup, { recursive: true, force: true });
      const e = error as { stdout?: string; message: string };
      throw new BundleFileError(`npm run build failed: ${(e.stdout ?? e.message).slice(0, 2000)}`);
    }
    dist = cleanup;
    built = true;
  }
  const buildMs = performance.now() - started;
  try {
    const js: string[] = [];
    await walk(dist, "", js);
    for (const path of js) files.push({ ...(await fileOf(dist, path)), path: `dist/${path}` });
    for (const path of EXTRA) if (await exists(join(root, path))) files.push(await fileOf(root, path));
    for (const dir of EXTRA_DIRS) {
      if (!(await exists(join(root, dir)))) continue;
      const inner: string[] = [];
      await walk(join(root, dir), "", inner);
      for (const path of inner) files.push({ ...(await fileOf(join(root, dir), path)), path: `${dir}/${path}` });
    }
  } finally {
    if (cleanup !== undefined) await rm(cleanup, { recursive: true, force: true });
  }
  return { files, built, buildMs };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Bundles held in DATA/bundles/

export interface HeldBundle {
  readonly id: string;
  readonly release: Release;
}

async function writeSynced(path: string, data: Uint8Array, mode: number): Promise<void> {
  const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    let at = 0;
    while (at < data.length) at += (await handle.write(data, at, data.length - at)).bytesWritten;
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDir(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** DATA/bundles/: the bundles this node holds. */
export class BundleFiles {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, "bundles");
  }

  /** Every bundle held, with its signed metadata (unverified: the caller verifies). */
  async list(): Promise<HeldBundle[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const out: HeldBundle[] = [];
    for (const id of names.filter((n) => ID.test(n)).sort()) {
      try {
        const meta = join(this.dir, id, BUNDLE_META_DIR);
        out.push({ id, release: { root: await readBounded(join(meta, "root.bin"), BUNDLE_DEFAULTS.metadataBytesMax), targets: await readBounded(join(meta, "targets.bin"), BUNDLE_DEFAULTS.metadataBytesMax) } });
      } catch {
        // Not a whole bundle (someone else's folder): skipped.
      }
    }
    return out;
  }

  /** The stream of a held bundle, to serve its chunks. */
  async readStream(id: string): Promise<Uint8Array | undefined> {
    if (!ID.test(id)) return undefined;
    try {
      return await readBounded(join(this.dir, id, BUNDLE_META_DIR, "stream.pkb"), BUNDLE_DEFAULTS.bundleBytesMax);
    } catch {
      return undefined;
    }
  }

  /** The address in DATA/bundles/current, if any. */
  async running(): Promise<string | undefined> {
    try {
      const text = new TextDecoder().decode(await readBounded(join(this.dir, "current"), 128)).trim();
      return ID.test(text) ? text : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Installs a verified bundle as DATA/bundles/<id>/ (temporary folder, fsync, rename); its path.
   * Already there: the existing one is kept.
   */
  async install(id: string, release: Release, stream: Uint8Array): Promise<string> {
    if (!ID.test(id)) throw new BundleFileError(`not a bundle address: ${id.slice(0, 80)}`);
    const table = readTable(stream);
    if (!table.ok) throw new BundleFileError(`the stream does not unpack: ${table.detail}`);
    const target = join(this.dir, id);
    if (await exists(target)) return target;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = await mkdtemp(join(this.dir, `.tmp-${id.slice(0, 16)}-`));
    try {
      let at = table.value.dataStart;
      const dirs = new Set<string>();
      for (const f of table.value.files) {
        const bad = badPath(f.path);
        if (bad !== undefined) throw new BundleFileError(`${f.path}: ${bad}`);
        const full = resolve(tmp, ...f.path.split("/"));
        if (!full.startsWith(tmp + sep) || relative(tmp, full).split(sep).includes("..")) throw new BundleFileError(`${f.path} is outside the bundle`);
        const parent = dirname(full);
        if (!dirs.has(parent)) {
          await mkdir(parent, { recursive: true, mode: 0o755 });
          dirs.add(parent);
        }
        await writeSynced(full, stream.subarray(at, at + f.size), f.mode);
        at += f.size;
      }
      const meta = join(tmp, BUNDLE_META_DIR);
      await mkdir(meta, { mode: 0o700 });
      await writeSynced(join(meta, "root.bin"), release.root, 0o644);
      await writeSynced(join(meta, "targets.bin"), release.targets, 0o644);
      await writeSynced(join(meta, "stream.pkb"), stream, 0o644);
      for (const d of [...dirs].sort((a, b) => b.length - a.length)) await syncDir(d);
      await syncDir(meta);
      await syncDir(tmp);
      try {
        await rename(tmp, target);
      } catch (error) {
        if (await exists(target)) {
          await rm(tmp, { recursive: true, force: true });
          return target;
        }
        throw error;
      }
      await syncDir(this.dir);
      return target;
    } catch (error) {
      await rm(tmp, { recursive: true, force: true });
      throw error;
    }
  }

  /** Removes a held bundle (tests and benchmarks re-fetching one). */
  async remove(id: string): Promise<void> {
    if (ID.test(id)) await rm(join(this.dir, id), { recursive: true, force: true });
  }
}
