// `pk sfs put LOCAL PATH` and `pk sfs get PATH LOCAL`: a file into and out of the shared folder
// of a cluster on this machine (the nodes of DIR/cluster.json, as `pk up` starts them), with
// progress. put copies LOCAL into a node's <data>/shared/ (through its temp folder, fsynced, then
// renamed in: a rescan never sees half a file), asks that node to take it in (`sfs sync`), then
// follows the file arriving on every other running node (`sfs wait PATH`, streamed). get waits
// until the node holds PATH's newest version (`sfs wait PATH`), then copies it out.
// A node on another machine is reached only through its shell; this needs its data folder.
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import { normalizeSharedPath } from "../core/collective/sfs-path.ts";
import { LIMITS } from "../core/util/limits.ts";
import { SHARED_DIR, TEMP_DIR } from "../adapters/sfs-files.ts";
import { stderrProgress, StreamedProgress } from "./progress.ts";

export const SFS_USAGE = `  sfs put LOCAL PATH | sfs get PATH LOCAL  [--dir D] [--node NAME] [--json]
                                            copy a file into /shared/ on a node of the cluster
                                            in D (default the first running one) and follow it
                                            reaching every running node; or wait until the
                                            node holds PATH and copy it out (progress bars)`;

/** Milliseconds one node is followed (an idle bound: the stream moving resets it). */
const FOLLOW_IDLE_MS = 120_000;

export interface SfsCliNode {
  readonly name?: string | undefined;
  readonly id: string;
  readonly api: string;
  readonly data: string;
}

/** What main.ts lends this command (it owns cluster.json and the shell request). */
export interface SfsCliContext {
  /** The cluster's running nodes and token, or an error message. */
  cluster(dir: string): { nodes: SfsCliNode[]; token: string } | string;
  runLine(api: string, token: string, line: string, idleMs: number, out: (chunk: string) => void): Promise<{ ok: boolean; output: string }>;
  usage(message: string): Error;
  failure(message: string): Error;
}

export async function sfsCommand(args: string[], ctx: SfsCliContext): Promise<number> {
  const { values, positionals } = parseArgs({
    args, strict: true, allowPositionals: true,
    options: { dir: { type: "string" }, node: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help === true) {
    process.stdout.write(`usage:\n${SFS_USAGE}\n`);
    return 0;
  }
  const [verb, a, b, ...rest] = positionals;
  if ((verb !== "put" && verb !== "get") || a === undefined || b === undefined || rest.length > 0) throw ctx.usage("sfs put LOCAL PATH | sfs get PATH LOCAL");
  const shared = normalizeSharedPath(verb === "put" ? b : a);
  if (!shared.ok) throw ctx.usage(`${verb === "put" ? b : a}: ${shared.error}`);
  const path = shared.path;
  const json = values.json === true;
  const found = ctx.cluster(resolve(values.dir ?? ".pk"));
  if (typeof found === "string") throw ctx.failure(found);
  const node = values.node === undefined ? found.nodes[0] : found.nodes.find((n) => n.name === values.node || n.id === values.node);
  if (node === undefined) throw ctx.failure(values.node === undefined ? "no node of the cluster is running" : `no running node named ${values.node}`);
  const follow = async (target: SfsCliNode): Promise<{ ok: boolean; output: string }> => {
    const streamed = new StreamedProgress((chunk) => process.stderr.write(chunk), (task, unit, total) => stderrProgress(`${target.name ?? target.id.slice(0, 8)} ${task}`, unit, total, json));
    const answer = await ctx.runLine(target.api, found.token, `sfs wait ${path}`, FOLLOW_IDLE_MS, (chunk) => streamed.push(chunk));
    streamed.end(answer.ok ? "done" : "failed");
    return answer;
  };

  if (verb === "put") {
    const local = resolve(a);
    const size = await regularFileSize(local, ctx);
    const temp = join(node.data, SHARED_DIR, TEMP_DIR, `pk-put-${process.pid}.tmp`);
    const target = join(node.data, SHARED_DIR, ...path.split("/"));
    await refuseLinks(join(node.data, SHARED_DIR), path, ctx);
    await copyWithProgress(local, temp, size, `put ${node.name ?? node.id.slice(0, 8)}`, json);
    try {
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      await rename(temp, target);
    } catch (error) {
      await rm(temp, { force: true });
      throw ctx.failure(`cannot put it in ${target}: ${(error as Error).message}`);
    }
    const synced = await ctx.runLine(node.api, found.token, "sfs sync", 30_000, () => undefined);
    if (!synced.ok) throw ctx.failure(`${node.name ?? node.id}: sfs sync: ${synced.output}`);
    const reached: string[] = [node.name ?? node.id];
    const missed: string[] = [];
    for (const other of found.nodes.filter((n) => n !== node)) {
      const answer = await follow(other);
      (answer.ok ? reached : missed).push(`${other.name ?? other.id}${answer.ok ? "" : ` (${answer.output})`}`);
    }
    if (json) process.stdout.write(`${JSON.stringify({ ok: missed.length === 0, path: `/shared/${path}`, bytes: size, reached, missed })}\n`);
    else process.stdout.write(`put /shared/${path}: ${size} bytes, on ${reached.join(", ")}${missed.length === 0 ? "" : `; not on ${missed.join(", ")}`}\n`);
    return missed.length === 0 ? 0 : 1;
  }

  const answer = await follow(node);
  if (!answer.ok) throw ctx.failure(`${node.name ?? node.id}: ${answer.output}`);
  const source = join(node.data, SHARED_DIR, ...path.split("/"));
  await refuseLinks(join(node.data, SHARED_DIR), path, ctx);
  const size = await regularFileSize(source, ctx);
  const local = resolve(b);
  const temp = `${local}.pk-get-${process.pid}.tmp`;
  await copyWithProgress(source, temp, size, `get ${node.name ?? node.id.slice(0, 8)}`, json);
  await rename(temp, local);
  if (json) process.stdout.write(`${JSON.stringify({ ok: true, path: `/shared/${path}`, bytes: size, to: local, from: node.name ?? node.id })}\n`);
  else process.stdout.write(`got /shared/${path} from ${node.name ?? node.id}: ${size} bytes to ${local}\n`);
  return 0;
}

async function regularFileSize(path: string, ctx: SfsCliContext): Promise<number> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    throw ctx.failure(`cannot read ${path}: ${(error as Error).message}`);
  }
  if (!info.isFile()) throw ctx.failure(`${path} is not a regular file`);
  if (info.size > LIMITS.sfsWire.fileBytesMax) throw ctx.failure(`${path} is over ${LIMITS.sfsWire.fileBytesMax} bytes, the shared folder's largest file`);
  return info.size;
}

/** Refuses a shared path whose existing parts include a symbolic link (it could lead out of the folder). */
async function refuseLinks(root: string, path: string, ctx: SfsCliContext): Promise<void> {
  let at = root;
  for (const part of path.split("/")) {
    at = join(at, part);
    try {
      if ((await lstat(at)).isSymbolicLink()) throw ctx.failure(`${at} is a symbolic link: refused`);
    } catch (error) {
      if ((error as { code?: string }).code === "ENOENT") return;
      throw error;
    }
  }
}

/** Copies `from` to `to` (fsynced), a progress bar counting the bytes. */
async function copyWithProgress(from: string, to: string, size: number, label: string, json: boolean): Promise<void> {
  await mkdir(dirname(to), { recursive: true, mode: 0o700 });
  const bar = stderrProgress(label, "bytes", size, json);
  let done = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      done += chunk.length;
      bar.update(Math.min(done, size));
      callback(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(from), count, createWriteStream(to, { mode: 0o600 }));
    const handle = await open(to, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    bar.finish("failed");
    await rm(to, { force: true });
    throw error;
  }
  bar.finish();
}
