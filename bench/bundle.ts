// `npm run bench -- bundle [--runs N]`: the code bundle (issue 16, acceptance 5; ADR 020). Prints
// one JSON object:
// - size: this checkout's bundle (the JavaScript `npm run build` emits, package.json,
//   package-lock.json, bin/pk.js and its scripts, web/): files, bytes, chunks;
// - build: the TypeScript build (tsc into a temporary folder), then packing and signing (the
//   stream, every chunk's SHA-256, the Merkle address, the owner's Ed25519 signatures);
// - fetch: the same bundle fetched by a node (in this process) from 1, 2 and 4 peers that are real
//   `pk node` processes over loopback TCP holding it in DATA/bundles/: time until every chunk is
//   in and verified, and until it is installed (fsynced files); N runs each (default 3), median.
import { createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { BundleFiles, BUNDLE_NODE, gatherOwnCode, sha256 } from "../src/adapters/bundle-files.ts";
import { identityFromPrivateKey } from "../src/adapters/identity.ts";
import { makeRelease, packBundle } from "../src/core/evolve/bundle.ts";
import { toHex } from "../src/core/util/bytes.ts";
import { BUNDLE, BUNDLE_PART_DEFAULTS, BundlePart } from "../src/node/evolve/bundle.ts";
import { SUBSYSTEMS } from "../src/node/registry.ts";
import { runNode } from "../src/node/run.ts";
import { defineSubsystem, type SubsystemSpec } from "../src/node/subsystem.ts";
import { HOST, Workspace, freePorts, pkNodeArgv, startPkNode } from "./procs.ts";

const HOLDERS = 4;
const DAY_MS = 86_400_000;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

async function until(what: string, ok: () => boolean, ms: number, stepMs = 20): Promise<void> {
  const deadline = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

async function shellLine(api: string, token: string, line: string): Promise<void> {
  const response = await fetch(`${api}/v1/shell`, {
    method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" }, body: JSON.stringify({ line }), signal: AbortSignal.timeout(30_000),
  });
  const answer = await response.json() as { ok?: boolean; output?: string };
  if (response.status !== 200 || answer.ok !== true) throw new Error(`${line}: ${response.status} ${answer.output ?? ""}`);
}

export async function run(args: string[]): Promise<unknown> {
  const at = args.indexOf("--runs");
  const runs = at >= 0 ? Number(args[at + 1]) : 3;
  const progress = (text: string): void => void process.stderr.write(`bundle: ${text}\n`);
  const ws = new Workspace("bundle");
  try {
    const token = `bench-${Date.now()}`;
    const ports = await freePorts(new Set(), HOLDERS, ["peer", "api"] as const);
    // The holders' folders first: pkNodeArgv makes the cluster's owner key beside them.
    const argvs = ports.map((p, i) => pkNodeArgv({ name: `h${i + 1}`, data: join(ws.dir, `h${i + 1}`), listen: `${HOST}:${p.peer}`, api: `${HOST}:${p.api}`, token, join: i === 0 ? undefined : `${HOST}:${ports[0]!.peer}` }));
    const ownerKey = join(ws.dir, "owner.key");
    const owner = identityFromPrivateKey(createPrivateKey({ key: readFileSync(ownerKey), format: "pem" }));

    progress("building and packing this checkout");
    const t0 = performance.now();
    const { files, buildMs } = await gatherOwnCode();
    const t1 = performance.now();
    const packed = packBundle(files);
    if (!packed.ok) throw new Error(packed.detail);
    const made = makeRelease({ stream: packed.value, version: 1, nowMs: Date.now(), targetsTtlMs: DAY_MS, rootTtlMs: DAY_MS, rootVersion: 1, node: BUNDLE_NODE, name: "bench", owner }, { sha256 });
    const t2 = performance.now();
    const id = toHex(made.targets.address);
    for (let i = 0; i < HOLDERS; i++) await new BundleFiles(join(ws.dir, `h${i + 1}`)).install(id, made.release, packed.value);

    progress(`starting ${HOLDERS} holders (pk node processes)`);
    const env = { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "", PK_MIND_FRONTIER: "off" };
    const holderIds: string[] = [];
    for (let i = 0; i < HOLDERS; i++) {
      const argv = [...(argvs[i] as string[]), "--no-discover"];
      const { ready } = startPkNode(ws.procs, `h${i + 1}`, join(ws.dir, `h${i + 1}`), argv, "", 30_000, env);
      holderIds.push(await ready);
    }
    // The fetcher: a node in this process that fetches only when told to.
    const manual = defineSubsystem({ ...BUNDLE, create: (ctx, config) => new BundlePart(ctx, config.tickMs, { ...BUNDLE_PART_DEFAULTS, autoFetch: false }) });
    const fetcher = await runNode({
      data: join(ws.dir, "f"), name: "f", env: {}, discover: false, token, join: [`${HOST}:${ports[0]!.peer}`], ownerKey,
      subsystems: SUBSYSTEMS.map((s) => (s.name === "bundle" ? manual : s)) as unknown as readonly SubsystemSpec[],
    });
    try {
      // The nodes' idle work (the DMN: GA generations, training) would compete for the 2 cores.
      fetcher.kernel.dmn.clock.enabled = false;
      for (let i = 0; i < HOLDERS; i++) await shellLine(`http://${HOST}:${ports[i]!.api}`, token, "dmn off");
      const part = fetcher.kernel.subsystem<BundlePart>("bundle");
      await until("every holder's advert verified", () => part.newest?.id === id && holderIds.every((h) => part.status().includes(`${h}  v0    v1             ${id.slice(0, 16)}`)), 60_000, 100);
      const measure = async (label: string, id: string, bytes: number): Promise<Record<string, unknown>> => {
        // A warm-up from every holder: each loads the stream from its disk on the first request.
        await part.forget(id);
        if (part.startFetch({ force: true }) !== undefined) throw new Error("no warm-up fetch");
        await until("the warm-up installed", () => part.ready()?.id === id, 120_000, 5);
        const fetches: Record<string, unknown> = {};
        for (const k of [1, 2, 4]) fetches[`${k}`] = await measureK(label, id, bytes, k);
        return fetches;
      };
      const measureK = async (label: string, id: string, bytes: number, k: number): Promise<unknown> => {
        const verified: number[] = [];
        const installed: number[] = [];
        for (let r = 0; r < runs; r++) {
          await part.forget(id);
          const started = performance.now();
          const error = part.startFetch({ from: holderIds.slice(0, k), force: true });
          if (error !== undefined) throw new Error(error);
          await until("every chunk verified", () => part.fetch?.done === true, 60_000, 1).catch((error: unknown) => {
            throw new Error(`${(error as Error).message}\n${part.status()}`);
          });
          verified.push(performance.now() - started);
          await until("installed", () => part.ready()?.id === id, 60_000, 1);
          installed.push(performance.now() - started);
          const p = part.fetch?.progress(fetcher.kernel.tickCount);
          if (p !== undefined && p.peers.filter((q) => q.received > 0).length !== k) progress(`${k} peers asked, ${p.peers.filter((q) => q.received > 0).length} served`);
        }
        const ms = median(verified);
        const out = {
          verifiedMs: Math.round(ms), installedMs: Math.round(median(installed)),
          mibPerS: Number((bytes / 1048576 / (ms / 1000)).toFixed(1)),
          mibPerSInstalled: Number((bytes / 1048576 / (median(installed) / 1000)).toFixed(1)),
          runs: verified.map((v) => Math.round(v)),
        };
        progress(`${label}, ${k} peer(s): ${JSON.stringify(out)}`);
        return out;
      };
      const own = await measure("own code", id, packed.value.length);
      // A larger bundle (the bound is 64 MiB), to see the rate beyond start-up: 32 MiB of
      // pseudo-random bytes in one file, version 2, given to the holders by `bundle scan`.
      const big = new Uint8Array(32 * 1024 * 1024);
      let x = 0x9e3779b9;
      for (let i = 0; i < big.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        big[i] = x & 255;
      }
      const bigPacked = packBundle([{ path: "data.bin", mode: 0o644, data: big }]);
      if (!bigPacked.ok) throw new Error(bigPacked.detail);
      const bigMade = makeRelease({ stream: bigPacked.value, version: 2, nowMs: Date.now(), targetsTtlMs: DAY_MS, rootTtlMs: DAY_MS, rootVersion: 1, node: BUNDLE_NODE, name: "bench-32m", owner }, { sha256 });
      const bigId = toHex(bigMade.targets.address);
      for (let i = 0; i < HOLDERS; i++) {
        await new BundleFiles(join(ws.dir, `h${i + 1}`)).install(bigId, bigMade.release, bigPacked.value);
        await shellLine(`http://${HOST}:${ports[i]!.api}`, token, "bundle scan");
      }
      await until("the 32 MiB bundle known", () => part.newest?.id === bigId, 60_000, 100);
      await sleep(3_000); // every holder's advert heard again
      const large = await measure("32 MiB", bigId, bigPacked.value.length);
      return {
        bundle: { files: files.length, bytes: packed.value.length, chunks: made.targets.chunks, chunkBytes: made.targets.chunkBytes, node: BUNDLE_NODE },
        buildMs: { tsc: Math.round(buildMs), gather: Math.round(t1 - t0 - buildMs), packAndSign: Math.round(t2 - t1) },
        fetch: {
          what: "a bundle from k peers (pk node processes on loopback) to a node in this process; verified = every chunk in and checked, installed = files written and fsynced; median of the runs",
          ownCode: own, random32MiB: large,
        },
        machine: "2 vCPUs shared with other work; the fetcher and the holders share them",
      };
    } finally {
      await fetcher.stop();
    }
  } finally {
    await ws.close(5_000);
  }
}
