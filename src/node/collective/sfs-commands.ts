// Shell commands of the shared folder (issue 5, sfs): ls, cat, write, rm, mkdir, cp, mv act on
// this node's /shared/ files and replicate to every node; `sfs list|stat|sync` show and drive
// the replication. Paths are /shared/NAME or NAME; nothing outside /shared/ is reachable.
import { normalizeSharedPath } from "../../core/collective/sfs-path.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { NodeContext } from "../context.ts";
import type { SharedFolder } from "./shared-folder.ts";
import type { NodeView as Kernel } from "../view.ts";
import { formatFields, formatTable, UsageError, type Command } from "../shell.ts";
import { followProgress } from "../progress-follow.ts";
import type { ProgressReport } from "../../core/util/progress-line.ts";

/** Bytes `cat` prints at most. */
const CAT_BYTES_MAX = LIMITS.shell.catBytesMax;
const LIST_ROWS_MAX = LIMITS.shell.sfsListRowsMax;
const utf8 = new TextEncoder();
const text = new TextDecoder();

function folderOf(kernel: Kernel): SharedFolder {
  const folder = kernel.sharedFolder;
  if (folder === undefined) throw new Error("this node has no shared folder (no files port)");
  return folder;
}

function pathOf(input: string | undefined, what = "PATH"): string {
  if (input === undefined) throw new UsageError(`needs ${what}`);
  const result = normalizeSharedPath(input);
  if (!result.ok) throw new UsageError(`${input}: ${result.error}`);
  return result.path;
}

async function done(folder: SharedFolder, result: ReturnType<SharedFolder["core"]["localWrite"]>, what: string): Promise<string> {
  const error = await folder.wait(result);
  if (error !== undefined) throw new Error(error);
  return what;
}

const ls: Command<NodeContext> = {
  name: "ls",
  summary: "list a folder of /shared/ on this node",
  usage: "ls [PATH]",
  async run(args, { kernel }) {
    if (args.length > 1) throw new UsageError("takes at most one PATH");
    const folder = folderOf(kernel);
    const path = args[0] === undefined || args[0] === "/shared" || args[0] === "/shared/" ? "" : pathOf(args[0]);
    const entries = await folder.files.list(path);
    if (entries.length === 0) return "(empty)";
    return formatTable(["NAME", "SIZE", "MODIFIED"], entries.slice(0, LIST_ROWS_MAX).map((e) => [
      e.dir ? `${e.name}/` : e.name, e.dir ? "-" : String(e.size), new Date(e.mtimeMs).toISOString(),
    ]));
  },
};

const cat: Command<NodeContext> = {
  name: "cat",
  summary: "print a file of /shared/ (up to 64 KiB)",
  usage: "cat PATH",
  async run(args, { kernel }) {
    if (args.length !== 1) throw new UsageError("takes one PATH");
    return text.decode(await folderOf(kernel).files.read(pathOf(args[0]), CAT_BYTES_MAX));
  },
};

const write: Command<NodeContext> = {
  name: "write",
  summary: "write TEXT as a file of /shared/ (replicated to every node)",
  usage: "write PATH TEXT",
  async run(args, { kernel }) {
    if (args.length !== 2) throw new UsageError("takes PATH TEXT (quote text with spaces)");
    const folder = folderOf(kernel);
    const path = pathOf(args[0]);
    const staged = await folder.files.stageBytes(utf8.encode(args[1]!));
    const result = folder.core.localWrite(path, staged.info, staged.temp);
    if (!result.ok) await folder.files.discardStaged(staged.temp);
    return done(folder, result, `wrote ${staged.info.size} bytes to /shared/${path}`);
  },
};

const rm: Command<NodeContext> = {
  name: "rm",
  summary: "remove a file (or, with -r, a folder) of /shared/ on every node",
  usage: "rm [-r] PATH",
  async run(args, { kernel }) {
    const recursive = args[0] === "-r";
    const rest = recursive ? args.slice(1) : args;
    if (rest.length !== 1) throw new UsageError("takes [-r] PATH");
    const folder = folderOf(kernel);
    const path = pathOf(rest[0]);
    return done(folder, folder.core.localRemove(path, recursive), `removed /shared/${path}`);
  },
};

const mkdir: Command<NodeContext> = {
  name: "mkdir",
  summary: "make a folder in /shared/ on every node",
  usage: "mkdir PATH",
  async run(args, { kernel }) {
    if (args.length !== 1) throw new UsageError("takes one PATH");
    const folder = folderOf(kernel);
    const path = pathOf(args[0]);
    return done(folder, folder.core.localMkdir(path), `made /shared/${path}/`);
  },
};

async function copy(folder: SharedFolder, from: string, to: string): Promise<void> {
  const staged = await folder.files.stageCopy(from);
  const result = folder.core.localWrite(to, staged.info, staged.temp);
  if (!result.ok) await folder.files.discardStaged(staged.temp);
  await done(folder, result, "");
}

const cp: Command<NodeContext> = {
  name: "cp",
  summary: "copy a file of /shared/ (the copy is replicated)",
  usage: "cp SRC DST",
  async run(args, { kernel }) {
    if (args.length !== 2) throw new UsageError("takes SRC DST");
    const folder = folderOf(kernel);
    const [from, to] = [pathOf(args[0], "SRC"), pathOf(args[1], "DST")];
    await copy(folder, from, to);
    return `copied /shared/${from} to /shared/${to}`;
  },
};

const mv: Command<NodeContext> = {
  name: "mv",
  summary: "move a file of /shared/ (a copy, then the removal of the source, on every node)",
  usage: "mv SRC DST",
  async run(args, { kernel }) {
    if (args.length !== 2) throw new UsageError("takes SRC DST");
    const folder = folderOf(kernel);
    const [from, to] = [pathOf(args[0], "SRC"), pathOf(args[1], "DST")];
    await copy(folder, from, to);
    await done(folder, folder.core.localRemove(from, false), "");
    return `moved /shared/${from} to /shared/${to}`;
  },
};

const sfs: Command<NodeContext> = {
  name: "sfs",
  summary: "the shared folder's replication: files and their versions, one file's state, counters and refusals, a rescan, a transfer followed",
  usage: "sfs list [PREFIX] | sfs stat PATH | sfs status | sfs sync | sfs wait PATH",
  async run(args, { kernel, stream }) {
    const folder = folderOf(kernel);
    const [sub, arg, ...rest] = args;
    if (rest.length > 0) throw new UsageError("too many arguments");
    switch (sub) {
      case "list": {
        const views = folder.core.list(arg ?? "", LIST_ROWS_MAX);
        if (views.length === 0) return "no files";
        return formatTable(["PATH", "SIZE", "VERSION", "STATE"], views.map((v) => {
          const progress = v.progress;
          const state = v.local === "fetching" && progress !== undefined && progress.chunks > 0
            ? `fetching ${Math.floor((100 * progress.written) / progress.chunks)}%` : v.diskWait ? "waiting (disk space)" : v.local;
          return [v.entry.dir ? `${v.entry.path}/` : v.entry.path, v.entry.dir ? "-" : String(v.entry.size), `${v.entry.counter}/${v.entry.origin}`, state];
        }));
      }
      case "stat": {
        const path = pathOf(arg);
        const view = folder.core.stat(path);
        if (view === undefined) return "no such file in the manifest";
        const e = view.entry;
        return formatFields([
          ["path", `/shared/${e.path}${e.dir ? "/" : ""}`],
          ["state", view.local + (e.deleted ? " (deleted)" : "") + (view.diskWait ? " (fetching it would leave less than the disk reserve free)" : "")],
          ["size", `${e.size} bytes in ${e.chunks.length} chunks of ${e.chunkBytes}`],
          ["version", `${e.counter} by ${e.origin}; vector ${e.vv.map((item) => JSON.stringify(item)).join(" ")}`],
          ["sha256", e.sha256 || "-"],
          ["holders", view.holders.join(" ") || "-"],
          ["transfer", view.progress === undefined ? "-" : `${view.progress.phase}: ${view.progress.written}/${view.progress.chunks} chunks, ${view.progress.inflight} in flight`],
        ]);
      }
      case "status": {
        if (arg !== undefined) throw new UsageError("status takes no arguments");
        const core = folder.core;
        const { stats, config } = core;
        const own = core.usage(kernel.id);
        const free = core.freeBytes;
        return formatFields([
          ["entries", `${core.size} of ${config.filesMax}; ${core.pendingCount} waiting for the disk`],
          ["transfers", String(core.transfers().length)],
          ["disk free", (free === undefined ? "not measured yet" : `${free} bytes`) + `; reserve ${config.diskReserveBytes} bytes` + (folder.measureError === undefined ? "" : ` (last measure failed: ${folder.measureError})`)],
          ["quota", `${config.originFilesMax} entries, ${config.originBytesMax} bytes per origin; this node uses ${own.files} entries, ${own.bytes} bytes`],
          ["clock", String(core.clock)],
          ["refused", `quota ${stats.quotaRefused}, disk space ${stats.diskRefused}, counters too high ${stats.highCounters}, own origin ${stats.ownOrigin}, bad entries ${stats.badEntries}, bad paths ${stats.badPaths}, manifest full ${stats.full}, local changes ${stats.localRefused}, not their origin's signature ${stats.signatureRefused}, shadow tombstones with nothing below ${stats.shadowRefused}, unsigned at boot ${stats.unsignedDropped}, core-only folders ${stats.reservedRefused}`],
          ["transferred", `in ${stats.chunksIn} chunks (${stats.bytesIn} bytes), out ${stats.chunksOut} chunks (${stats.bytesOut} bytes), bad chunks ${stats.badChunks}`],
          ["conflicts", `${stats.conflicts} kept, ${stats.conflictsDropped} dropped`],
        ]);
      }
      case "wait": {
        // Follows PATH's transfer to this node until this node holds its newest version; with a
        // stream (pk shell) as a progress bar (docs/protocols/progress.md).
        const path = pathOf(arg);
        const look = (): { report: ProgressReport; over: boolean } => {
          const view = folder.core.stat(path);
          if (view === undefined) return { report: { task: "sfs-fetch", done: 0, total: null, unit: "bytes", stage: "not in the manifest yet" }, over: false };
          const e = view.entry;
          const p = view.progress;
          const over = view.local === "synced" || e.deleted;
          // done reaches total only when it is over (the progress-line rule): the last chunk
          // written is not yet the file committed.
          const done = over ? e.size : p === undefined ? 0 : Math.min(Math.max(0, e.size - 1), p.written * e.chunkBytes);
          const stage = view.local === "synced" ? "synced" : view.diskWait ? "waiting for disk space" : p === undefined ? view.local : `${p.phase}, ${p.inflight} in flight`;
          return { report: { task: "sfs-fetch", done, total: e.size, unit: "bytes", stage }, over };
        };
        if (stream === undefined) {
          const seen = look();
          return seen.over ? `/shared/${path} is here (${seen.report.done} bytes)` : `not here yet: ${seen.report.done}/${seen.report.total ?? "?"} bytes, ${seen.report.stage ?? ""}; sfs wait through pk shell follows it`;
        }
        const end = await followProgress(stream, look);
        const view = folder.core.stat(path);
        if (end === "over" && view !== undefined) return view.entry.deleted ? `/shared/${path} was deleted` : `/shared/${path} is here: ${view.entry.size} bytes, version ${view.entry.counter}/${view.entry.origin}`;
        throw new Error(`/shared/${path} is not here yet (${end === "stalled" ? "no progress for a while" : "stopped following"}): sfs stat ${path}`);
      }
      case "sync": {
        if (arg !== undefined) throw new UsageError("sync takes no arguments");
        const changed = await folder.sync();
        return `rescanned /shared/: ${changed} changed file${changed === 1 ? "" : "s"} taken in; exchanging manifests now`;
      }
      default:
        throw new UsageError(sub === undefined ? "needs a subcommand" : `unknown subcommand ${JSON.stringify(sub.slice(0, 40))}`);
    }
  },
  json(args, { kernel }) {
    const folder = folderOf(kernel);
    const [sub, arg, ...rest] = args;
    if (rest.length > 0) throw new UsageError("too many arguments");
    switch (sub) {
      case "list":
        return { files: folder.core.list(arg ?? "", LIST_ROWS_MAX).map((v) => ({ path: v.entry.path, dir: v.entry.dir, size: v.entry.size, counter: v.entry.counter, origin: v.entry.origin, state: v.local, progress: v.progress ?? null })) };
      case "stat": {
        const view = folder.core.stat(pathOf(arg));
        if (view === undefined) return { path: pathOf(arg), found: false };
        const e = view.entry;
        return {
          path: e.path, found: true, dir: e.dir, deleted: e.deleted, state: view.local, diskWait: view.diskWait, size: e.size, chunks: e.chunks.length, chunkBytes: e.chunkBytes,
          counter: e.counter, origin: e.origin, sha256: e.sha256, holders: [...view.holders], progress: view.progress ?? null,
        };
      }
      case "status": {
        if (arg !== undefined) throw new UsageError("status takes no arguments");
        const core = folder.core;
        return { entries: core.size, filesMax: core.config.filesMax, pending: core.pendingCount, transfers: core.transfers().length, freeBytes: core.freeBytes ?? null, clock: core.clock, stats: { ...core.stats } };
      }
      default:
        throw new UsageError("--json is for sfs list, sfs stat and sfs status");
    }
  },
};

export const SFS_COMMANDS: readonly Command<NodeContext>[] = [ls, cat, write, rm, mkdir, cp, mv, sfs];
