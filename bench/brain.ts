// `npm run bench -- brain [--quick] [--only matmul,local,cluster] [--clients C]`: the Brain's speed, issue 6.
//
// 1. matmul: GFLOP/s of tensor.ts's `matmul` (a·b, JS) and `matmulBT` (a·btᵀ, the Linear layout: the
//    WebAssembly SIMD kernel of simd.ts for large products, and the JS kernel beside it) in f32
//    for a few shapes, warmed up, the median of several timed samples (each long enough to swamp the
//    timer), against the peak of one core (the kernel is single-threaded) and of the machine; the
//    peak is derived from /proc/cpuinfo at run time (model, family, flags, "cpu MHz"). A naive i-j-k
//    triple loop on 256³ (and 512³ unless --quick) gives the ratio to the blocked kernel.
// 2. local: in-process latency of the seed model (forward of its 4 tokens) and of the large shape
//    (brain-commands.ts LARGE_CONFIG, 3.3M parameters): a whole-sequence forward over 256 tokens, and
//    one decode step with a KV cache at position 128 and 300 (the cache length is reset before each
//    step, so every sample is at the same position).
// 3. cluster: `pk up --detach --nodes 3` in a temporary folder (always stopped and removed, also on
//    error or SIGINT/SIGTERM), driven over HTTP like test/cli/brain.test.ts. The seed model after
//    `dtr train 5`, then the large shape (`dtr init large 7`, waited on until every node answers with
//    its tag). Per mode (local, pipeline, tensor, dkva): sequential latency (median, p99; the client's
//    and the node's own `ms`), throughput with C concurrent clients (default 8); for the large shape
//    decode sessions (one token per request, 100 positions; C sessions of 40 tokens at once for the
//    throughput) in ms per token, plus a few 256-token whole sequences (local, pipeline, tensor).
//    The overhead per layer = (mode − local) / nLayers (node-side medians) is set against the
//    loopback round trip: a raw TCP echo (64 bytes, the echo server a separate process, so a real
//    cross-process hop like the nodes'), the HTTP round trip of GET /v1/status, the node's own peer
//    SRTT (`net`), the CPU of the message path alone (encode, seal, open, decode, in-process), and
//    the sequential waves per request the mode needs (pipeline: its round trips; tensor: 2 per
//    layer; dkva: 1 per layer and token).
// Only the JSON result goes to stdout; progress goes to stderr.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, request } from "node:http";
import { connect } from "node:net";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { matmul, matmulBT, matmulFlops, setSimd, simdEnabled } from "../src/core/brain/tensor.ts";
import { forward, initParams, KvCache, paramCount, SEED_CONFIG, step, Workspace, type ModelConfig } from "../src/core/brain/transformer.ts";
import { LARGE_CONFIG } from "../src/node/brain/commands.ts";
import { createRng } from "../src/core/util/rng.ts";
import { encodeBrainMessage, decodeBrainMessage, type BrainMessage } from "../src/core/brain/brain-wire.ts";
import { decodeMessage, encodeMessage } from "../src/core/wire/codec.ts";
import { createSeal, makeToken } from "../src/adapters/seal.ts";
import { createIdentityFromSeed } from "../src/adapters/identity.ts";
import { decodeHeader } from "../src/core/wire/envelope.ts";
import { PK_BIN } from "./procs.ts";

const log = (line: string): void => {
  process.stderr.write(`brain: ${line}\n`);
};

// ---------------------------------------------------------------------------------------------
// Statistics

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

function round(x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

interface Summary { n: number; median: number; p99: number; mean: number; min: number; max: number }

function summary(samples: readonly number[], digits = 3): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((s, x) => s + x, 0) / Math.max(1, sorted.length);
  return {
    n: sorted.length, median: round(quantile(sorted, 0.5), digits), p99: round(quantile(sorted, 0.99), digits),
    mean: round(mean, digits), min: round(sorted[0] ?? NaN, digits), max: round(sorted[sorted.length - 1] ?? NaN, digits),
  };
}

function median(samples: readonly number[]): number {
  return quantile([...samples].sort((a, b) => a - b), 0.5);
}

// ---------------------------------------------------------------------------------------------
// Machine peak

interface Peak {
  model: string;
  cpuFamily: number | null;
  cpuModel: number | null;
  mhz: number;
  cores: number;
  flags: string[];
  microarchitecture: string;
  flopPerCyclePerCore: number;
  perCoreGflops: number;
  machineGflops: number;
  derivation: string;
  assumptions: string[];
}

function machinePeak(): Peak {
  let text = "";
  try {
    text = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    // Not Linux: everything below falls back.
  }
  const field = (name: string): string | undefined => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(text)?.[1]?.trim();
  const model = field("model name") ?? "unknown";
  const vendor = field("vendor_id") ?? "";
  const family = field("cpu family") === undefined ? null : Number(field("cpu family"));
  const cpuModel = field("model") === undefined ? null : Number(field("model"));
  const mhz = Number(field("cpu MHz") ?? "NaN");
  const allFlags = new Set((field("flags") ?? "").split(/\s+/));
  const flags = ["fma", "avx2", "avx512f", "avx512_vp2intersect", "avx512_bf16"].filter((f) => allFlags.has(f));
  const cores = availableParallelism();
  const assumptions: string[] = [];
  let micro: string;
  let flop: number;
  const amd = vendor === "AuthenticAMD";
  if (amd && family === 25 && allFlags.has("avx512f")) {
    micro = "AMD Zen 4 (family 19h with AVX-512)";
    flop = 32;
    assumptions.push("Zen 4 executes AVX-512 as 2×256-bit: 2 FMA pipes × 8 FP32 lanes × 2 FLOP = 32 FLOP/cycle (research/anchors-brain.md §3.1)");
  } else if (amd && family === 26 && allFlags.has("avx512f")) {
    // Family 1Ah is Zen 5; models 00h–1Fh are EPYC Turin / Turin Dense, which have the full 512-bit
    // FP datapath (mobile Zen 5 parts double-pump 256-bit units instead).
    const server = /EPYC/i.test(model) || (cpuModel !== null && cpuModel < 0x20);
    micro = server ? "AMD Zen 5 server (family 1Ah, EPYC Turin)" : "AMD Zen 5 (family 1Ah)";
    flop = server ? 64 : 32;
    assumptions.push(server
      ? "Zen 5 EPYC (Turin) has a native 512-bit FP datapath: 2 FMA pipes × 16 FP32 lanes × 2 FLOP = 64 FLOP/cycle. research/anchors-brain.md §3.1 assumed Zen 4 (32 FLOP/cycle); with that figure every fractionOfPeak here doubles"
      : "Zen 5 client parts double-pump 256-bit units: 32 FLOP/cycle assumed");
  } else if (allFlags.has("avx512f")) {
    micro = `${vendor || "unknown vendor"} with AVX-512`;
    flop = 32;
    assumptions.push("avx512f on an unrecognised CPU: 32 FLOP/cycle assumed (2 FMA pipes of 256 bits, as Zen 4; Intel server cores with 2×512-bit FMA would reach 64)");
  } else if (allFlags.has("avx2") && allFlags.has("fma")) {
    micro = `${vendor || "unknown vendor"} with AVX2+FMA`;
    flop = 32;
    assumptions.push("avx2+fma: 2 FMA units × 8 FP32 lanes × 2 FLOP = 32 FLOP/cycle assumed");
  } else {
    micro = "unknown";
    flop = 8;
    assumptions.push("no avx2+fma flags found: 8 FLOP/cycle assumed");
  }
  const ghz = Number.isFinite(mhz) ? mhz / 1000 : 2.6;
  if (!Number.isFinite(mhz)) assumptions.push("no cpu MHz in /proc/cpuinfo: 2.6 GHz assumed");
  assumptions.push(`"cpu MHz" (${mhz}) is what the VM reports, the nominal clock; boost, if any, would raise the real peak`);
  const perCore = flop * ghz;
  return {
    model, cpuFamily: family, cpuModel, mhz, cores, flags, microarchitecture: micro, flopPerCyclePerCore: flop,
    perCoreGflops: round(perCore, 1), machineGflops: round(perCore * cores, 1),
    derivation: `peak = cores × FLOP/cycle × GHz = ${cores} × ${flop} × ${round(ghz, 3)} = ${round(perCore * cores, 1)} GFLOP/s (${round(perCore, 1)} per core)`,
    assumptions,
  };
}

// ---------------------------------------------------------------------------------------------
// 1. matmul

/** Per-call time of `fn` (ms): warmed up for warmMs, then `samples` samples of enough calls to last minSampleMs. */
function timeCalls(fn: () => void, warmMs: number, samples: number, minSampleMs: number): { medianMs: number; minMs: number } {
  let t0 = performance.now();
  fn();
  const first = Math.max(1e-4, performance.now() - t0);
  const warmUntil = performance.now() + warmMs;
  let calls = 1;
  while (performance.now() < warmUntil || calls < 3) {
    fn();
    calls++;
  }
  // Re-estimate after warm-up (the first call ran cold).
  t0 = performance.now();
  fn();
  const one = Math.max(1e-4, Math.min(first, performance.now() - t0));
  const reps = Math.max(1, Math.ceil(minSampleMs / one));
  const perCall: number[] = [];
  for (let s = 0; s < samples; s++) {
    t0 = performance.now();
    for (let r = 0; r < reps; r++) fn();
    perCall.push((performance.now() - t0) / reps);
  }
  return { medianMs: median(perCall), minMs: Math.min(...perCall) };
}

function randomF32(n: number, seed: number): Float32Array {
  const rng = createRng(seed, 3);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = 2 * rng.next() - 1;
  return a;
}

/** out = a·b by the textbook i-j-k loop (b walked down a column: stride N), f32 storage, double sums. */
function naiveMatmul(out: Float32Array, a: Float32Array, b: Float32Array, M: number, K: number, N: number): void {
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k]! * b[k * N + j]!;
      out[i * N + j] = s;
    }
  }
}

function benchMatmul(peak: Peak, quick: boolean): unknown {
  // 516³ next to 512³: a leading dimension that is not a power of two (cache-set conflicts when B is walked down its columns).
  const shapes: Array<[number, number, number]> = [[256, 256, 256], [512, 512, 512], [516, 516, 516], [1, 1024, 1024], [256, 1024, 1024]];
  const warmMs = quick ? 150 : 400;
  const samples = quick ? 3 : 7;
  const rate = (flops: number, ms: number) => {
    const gflops = flops / (ms * 1e6);
    return {
      gflops: round(gflops, 2), msPerCall: round(ms, 4),
      fractionOfCorePeak: round(gflops / peak.perCoreGflops, 4), fractionOfMachinePeak: round(gflops / peak.machineGflops, 4),
    };
  };
  const results = shapes.map(([M, K, N], s) => {
    const a = randomF32(M * K, 10 + s), b = randomF32(K * N, 20 + s), out = new Float32Array(M * N);
    const flops = matmulFlops(M, K, N);
    const ab = timeCalls(() => matmul(out, a, b, M, K, N), warmMs, samples, 30);
    const abt = timeCalls(() => matmulBT(out, a, b, M, K, N), warmMs, samples, 30);
    setSimd(false);
    const abtJs = timeCalls(() => matmulBT(out, a, b, M, K, N), warmMs, samples, 30);
    setSimd(true);
    log(`matmul ${M}×${K}×${N}: ${(flops / (ab.medianMs * 1e6)).toFixed(2)} GFLOP/s, matmulBT ${(flops / (abt.medianMs * 1e6)).toFixed(2)} (JS ${(flops / (abtJs.medianMs * 1e6)).toFixed(2)})`);
    return {
      shape: `${M}×${K}×${N}`, M, K, N, mflop: round(flops / 1e6, 2), matmul: rate(flops, ab.medianMs), matmulBT: rate(flops, abt.medianMs),
      matmulBTJs: rate(flops, abtJs.medianMs), simdOverJs: round(abtJs.medianMs / abt.medianMs, 1),
    };
  });
  // The naive baseline on 256³ (B, 256 KB, stays in L2) and, unless --quick, 512³ (B is 1 MB), with
  // a check that it computes the same product as the blocked kernel.
  const naiveShapes = quick ? [256] : [256, 512];
  const naiveBaseline = naiveShapes.map((n) => {
    const [M, K, N] = [n, n, n];
    const a = randomF32(M * K, 1), b = randomF32(K * N, 2), ref = new Float32Array(M * N), out = new Float32Array(M * N);
    const naive = timeCalls(() => naiveMatmul(ref, a, b, M, K, N), n > 256 ? 0 : warmMs, n > 256 ? 3 : samples, 30);
    matmul(out, a, b, M, K, N);
    let maxDiff = 0;
    for (let i = 0; i < out.length; i++) maxDiff = Math.max(maxDiff, Math.abs(out[i]! - ref[i]!));
    const blocked = results.find((r) => r.M === n && r.K === n && r.N === n)!.matmul.gflops;
    const naiveRate = rate(matmulFlops(M, K, N), naive.medianMs);
    log(`naive i-j-k ${n}³: ${naiveRate.gflops} GFLOP/s`);
    return { shape: `${n}×${n}×${n}`, loop: "i-j-k, B read down its columns", ...naiveRate, blockedOverNaive: round(blocked / naiveRate.gflops, 1), maxAbsDiffVsBlocked: maxDiff };
  });
  return {
    simd: simdEnabled(),
    kernel: "matmul and matmulBTJs: tensor.ts gemm (strided 4×4 register-blocked, N panels), f32 storage, JS-double accumulation; matmulBT: simd.ts (WebAssembly f32x4, 2×4 register-blocked, f32 lanes) for products of ≥ 2^15 multiply-adds; one thread",
    timing: `warm-up ${warmMs} ms per kernel and shape, then the median of ${samples} samples of ≥30 ms each (naive 512³: 3 samples, no warm-up)`,
    shapes: results,
    naiveBaseline,
  };
}

// ---------------------------------------------------------------------------------------------
// 2. Single-node inference, in-process

function forwardFlops(cfg: ModelConfig, T: number): number {
  const d = cfg.dModel, F = cfg.dFF;
  const perLayer = 4 * 2 * T * d * d + 2 * 2 * T * d * F + 4 * d * (T * (T + 1)) / 2;
  return cfg.nLayers * perLayer + 2 * d * cfg.nClasses;
}

function stepFlops(cfg: ModelConfig, pos: number): number {
  const d = cfg.dModel, F = cfg.dFF;
  return cfg.nLayers * (8 * d * d + 4 * d * F + 4 * d * (pos + 1)) + 2 * d * cfg.nClasses;
}

function benchLocal(peak: Peak, quick: boolean): unknown {
  // Seed: forward of its 4 tokens, timed one call at a time.
  const seedParams = initParams(SEED_CONFIG, createRng(1, 1));
  const seedWs = new Workspace(SEED_CONFIG, Float32Array, { rows: 4 });
  const ids = Int32Array.from([0, 1, 2, 3]);
  const rng = createRng(2, 2);
  const inputs = Array.from({ length: 256 }, () => Float32Array.from({ length: 4 }, () => 6 * rng.next() - 3));
  const seedRuns = quick ? 5_000 : 20_000;
  for (let i = 0; i < 5_000; i++) forward(SEED_CONFIG, seedParams, ids, inputs[i % 256]!, seedWs);
  const seedUs: number[] = [];
  const seedStarted = performance.now();
  for (let i = 0; i < seedRuns; i++) {
    const t0 = performance.now();
    forward(SEED_CONFIG, seedParams, ids, inputs[i % 256]!, seedWs);
    seedUs.push((performance.now() - t0) * 1000);
  }
  const seedMeanUs = ((performance.now() - seedStarted) * 1000) / seedRuns;
  const seed = { params: paramCount(SEED_CONFIG), tokens: 4, runs: seedRuns, forwardUs: summary(seedUs, 2), wallMeanUsIncludingTimer: round(seedMeanUs, 2) };
  log(`seed forward: median ${seed.forwardUs.median} µs`);

  // Large: whole sequence of 256 tokens.
  const cfg = LARGE_CONFIG;
  const params = initParams(cfg, createRng(7, 1));
  const T = 256;
  const lIds = Int32Array.from({ length: cfg.seqLen }, () => rng.int(cfg.vocab));
  const lVals = Float32Array.from({ length: cfg.seqLen }, () => 2 * rng.next() - 1);
  const ws = new Workspace(cfg, Float32Array);
  const wholeRuns = quick ? 3 : 7;
  for (let i = 0; i < 2; i++) forward(cfg, params, lIds.subarray(0, T), lVals.subarray(0, T), ws);
  const wholeMs: number[] = [];
  for (let i = 0; i < wholeRuns; i++) {
    const t0 = performance.now();
    forward(cfg, params, lIds.subarray(0, T), lVals.subarray(0, T), ws);
    wholeMs.push(performance.now() - t0);
  }
  const wholeMed = median(wholeMs);
  const wholeGflops = forwardFlops(cfg, T) / (wholeMed * 1e6);
  log(`large forward 256: median ${wholeMed.toFixed(1)} ms (${wholeGflops.toFixed(2)} GFLOP/s)`);

  // Large: one decode step at a fixed position (the cache is filled once, its length reset before each step).
  const decodeRuns = quick ? 20 : 60;
  const decode = (pos: number) => {
    const cache = new KvCache(cfg);
    forward(cfg, params, lIds.subarray(0, pos), lVals.subarray(0, pos), ws, cache);
    for (let i = 0; i < 5; i++) {
      cache.length = pos;
      step(cfg, params, cache, lIds[pos]!, lVals[pos]!);
    }
    const ms: number[] = [];
    for (let i = 0; i < decodeRuns; i++) {
      cache.length = pos;
      const t0 = performance.now();
      step(cfg, params, cache, lIds[pos]!, lVals[pos]!);
      ms.push(performance.now() - t0);
    }
    const s = summary(ms, 3);
    const g = stepFlops(cfg, pos) / (s.median * 1e6);
    log(`large decode step at ${pos}: median ${s.median} ms (${g.toFixed(2)} GFLOP/s)`);
    return { position: pos, ms: s, mflop: round(stepFlops(cfg, pos) / 1e6, 2), gflops: round(g, 2), fractionOfCorePeak: round(g / peak.perCoreGflops, 4) };
  };
  return {
    seed,
    large: {
      config: cfg, params: paramCount(cfg), weightMB: round((paramCount(cfg) * 4) / 1e6, 1),
      wholeSequence: {
        tokens: T, runs: wholeRuns, medianMs: round(wholeMed, 2), minMs: round(Math.min(...wholeMs), 2),
        gflop: round(forwardFlops(cfg, T) / 1e9, 3), gflops: round(wholeGflops, 2), fractionOfCorePeak: round(wholeGflops / peak.perCoreGflops, 4),
      },
      decodeStep: [decode(128), decode(300)],
    },
  };
}

// ---------------------------------------------------------------------------------------------
// 3. The cluster

interface ClusterFile {
  token: string;
  nodes: Array<{ id: string; name?: string; pid: number | null; listen: string; api: string; data: string }>;
}

interface InferAnswer {
  logits: number[];
  mode: "FULL" | "REDUCED" | "SOLO";
  peers: string[];
  dropped: string[];
  tag: string;
  ms: number;
  roundTrips: number;
}

/** JSON over node:http with one keep-alive Agent per node. */
class Api {
  readonly base: string;
  readonly #url: URL;
  readonly #agent: Agent;
  readonly #auth: string;

  constructor(base: string, token: string, maxSockets: number) {
    this.base = base;
    this.#url = new URL(base);
    this.#agent = new Agent({ keepAlive: true, maxSockets });
    this.#auth = `Bearer ${token}`;
  }

  send(method: "GET" | "POST", path: string, body: unknown, timeoutMs: number): Promise<{ status: number; json: unknown }> {
    const payload = body === undefined ? "" : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request({
        host: this.#url.hostname, port: this.#url.port, method, path, agent: this.#agent,
        headers: { Authorization: this.#auth, "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(payload)) },
      }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => {
          clearTimeout(timer);
          try {
            resolve({ status: res.statusCode ?? 0, json: text === "" ? null : JSON.parse(text) as unknown });
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)));
          }
        });
        res.on("error", (error) => {
          clearTimeout(timer);
          reject(error);
        });
      });
      const timer = setTimeout(() => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)), timeoutMs);
      req.on("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      req.end(payload);
    });
  }

  async infer(body: Record<string, unknown>, timeoutMs = 20_000): Promise<InferAnswer> {
    const { status, json } = await this.send("POST", "/v1/infer", body, timeoutMs);
    if (status !== 200) throw new Error(`POST /v1/infer answered ${status}: ${JSON.stringify(json).slice(0, 300)}`);
    return json as InferAnswer;
  }

  async shell(line: string, timeoutMs = 120_000): Promise<string> {
    const { status, json } = await this.send("POST", "/v1/shell", { line }, timeoutMs);
    const result = json as { ok?: boolean; output?: string } | null;
    if (status !== 200 || result?.ok !== true) throw new Error(`${line}: ${status} ${JSON.stringify(json).slice(0, 300)}`);
    return result.output ?? "";
  }

  close(): void {
    this.#agent.destroy();
  }
}

function runPk(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PK_BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Round trip of 64 bytes over TCP on 127.0.0.1 to an echo server in a separate Node process, timed here. */
async function tcpEcho(count: number, onChild: (child: ChildProcess | undefined) => void, gapMs = 0): Promise<Summary> {
  const script = `const s=require("node:net").createServer((c)=>{c.setNoDelay(true);c.on("data",(d)=>c.write(d));});s.listen(0,"127.0.0.1",()=>console.log(s.address().port));`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  onChild(child);
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
      child.once("exit", () => reject(new Error("echo server exited")));
    });
    const socket = connect({ host: "127.0.0.1", port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const msg = Buffer.alloc(64, 7);
    let want = 0;
    let wake: () => void = () => undefined;
    socket.on("data", (chunk: Buffer) => {
      want -= chunk.length;
      if (want <= 0) wake();
    });
    const us: number[] = [];
    for (let i = 0; i < count + 200; i++) {
      // With a gap, both processes go idle between round trips, as between sequential requests.
      if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
      const t0 = performance.now();
      want = msg.length;
      await new Promise<void>((resolve) => {
        wake = resolve;
        socket.write(msg);
      });
      if (i >= 200) us.push((performance.now() - t0) * 1000);
    }
    socket.destroy();
    return summary(us, 1);
  } finally {
    child.kill("SIGKILL");
    onChild(undefined);
  }
}

/**
 * The CPU a node spends per brain round trip outside the model, in-process: for a request and its
 * answer each, brain-wire encode → envelope (MessagePack) → AEAD seal → open → decode + schema
 * validation → brain-wire decode, as kernel.ts and brain-service.ts do (no socket, no event loop).
 */
function messagePathUs(d: number, count: number): { hidden: string; requestBytes: number; perRoundTripUs: Summary } {
  // Two nodes: packets are sealed under their pair key, as between a coordinator and a stage.
  const token = makeToken();
  const a = createIdentityFromSeed(new Uint8Array(32).fill(1));
  const b = createIdentityFromSeed(new Uint8Array(32).fill(2));
  const seal = createSeal(token, a);
  const opener = createSeal(token, b);
  const hidden = { rows: 1, cols: d, data: Float32Array.from({ length: d }, (_, i) => Math.sin(i)) };
  const req: BrainMessage = { t: "stage-req", session: "0123456789abcdef/s-1", requestId: 1, layers: [0, 2], hidden, startPos: 17 };
  const res: BrainMessage = { t: "stage-res", requestId: 1, hidden };
  let counter = 0;
  let bytes = 0;
  const hop = (msg: BrainMessage, r: boolean): void => {
    const body = encodeMessage({ t: "brain", c: 1, r, b: encodeBrainMessage(msg) });
    const packet = seal.seal("stream", 1, ++counter, body, { id: b.id, pub: b.publicKey, epoch: 2 });
    bytes = packet.length;
    const header = decodeHeader(packet);
    const opened = header.ok ? opener.open(packet, header.header, a.publicKey) : undefined;
    if (opened === undefined) throw new Error("messagePath: seal.open failed");
    const decoded = decodeMessage(opened);
    if (!decoded.ok || decoded.message.t !== "brain") throw new Error("messagePath: envelope did not decode");
    if (!decodeBrainMessage(decoded.message.b).ok) throw new Error("messagePath: brain message did not decode");
  };
  for (let i = 0; i < 500; i++) {
    hop(req, false);
    hop(res, true);
  }
  const us: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    hop(req, false);
    hop(res, true);
    us.push((performance.now() - t0) * 1000);
  }
  return { hidden: `1×${d} f32 (stage-req and stage-res)`, requestBytes: bytes, perRoundTripUs: summary(us, 1) };
}

/** Every node answers /v1/infer with `tag` for `probe`. */
async function waitTag(apis: readonly Api[], probe: Record<string, unknown>, tag: string, timeoutMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const tags = await Promise.all(apis.map(async (api) => (await api.infer(probe).catch(() => undefined))?.tag));
    if (tags.every((t) => t === tag)) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`model ${tag} not on every node within ${timeoutMs} ms: ${tags.join(", ")}`);
    await sleep(200);
  }
}

interface ModeRun {
  clientMs: number[];
  nodeMs: number[];
  roundTrips: number[];
  states: Record<string, number>;
}

function newRun(): ModeRun {
  return { clientMs: [], nodeMs: [], roundTrips: [], states: {} };
}

async function timedInfer(api: Api, body: Record<string, unknown>, run: ModeRun | undefined): Promise<InferAnswer> {
  const t0 = performance.now();
  const answer = await api.infer(body);
  const ms = performance.now() - t0;
  if (run !== undefined) {
    run.clientMs.push(ms);
    run.nodeMs.push(answer.ms);
    run.roundTrips.push(answer.roundTrips ?? 0);
    run.states[answer.mode] = (run.states[answer.mode] ?? 0) + 1;
  }
  return answer;
}

function describeRun(run: ModeRun) {
  return {
    clientMs: summary(run.clientMs),
    nodeMs: summary(run.nodeMs),
    roundTripsPerRequest: median(run.roundTrips),
    states: run.states,
  };
}

const MODES = ["local", "pipeline", "tensor", "dkva"] as const;
type Mode = (typeof MODES)[number];

/**
 * Sequential waves of requests one request needs, from the mode's structure (parallel.ts): pipeline
 * one hop per remote stage (= its round trips), tensor an attention wave and an FFN wave per layer,
 * dkva one wave per layer and token (a whole sequence runs token by token).
 */
function waves(mode: Mode, roundTrips: number, nLayers: number, tokens: number): number {
  switch (mode) {
    case "local": return 0;
    case "pipeline": return roundTrips;
    case "tensor": return 2 * nLayers;
    case "dkva": return nLayers * tokens;
  }
}

async function throughput(clients: number, durationMs: number, one: (client: number, i: number) => Promise<void>): Promise<{ clients: number; seconds: number; completed: number; errors: number; perSecond: number }> {
  let completed = 0, errors = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; performance.now() < deadline; i++) {
      try {
        await one(c, i);
        completed++;
      } catch {
        errors++;
      }
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  return { clients, seconds: round(seconds, 2), completed, errors, perSecond: round(completed / seconds, 1) };
}

async function benchCluster(quick: boolean, clients: number): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), "pk-bench-brain-"));
  let pids: number[] = [];
  let echoChild: ChildProcess | undefined;
  let apis: Api[] = [];
  const killAll = (): void => {
    echoChild?.kill("SIGKILL");
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: stopping the cluster`);
    killAll();
    rmSync(dir, { recursive: true, force: true });
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", killAll);
  const t0 = performance.now();
  try {
    log("pk up --detach --nodes 3");
    const up = await runPk(["up", "--detach", "--nodes", "3", "--dir", dir], 60_000);
    let cluster: ClusterFile | undefined;
    try {
      cluster = JSON.parse(readFileSync(join(dir, "cluster.json"), "utf8")) as ClusterFile;
      pids = cluster.nodes.flatMap((n) => (n.pid === null ? [] : [n.pid]));
    } catch {
      // No cluster.json: reported below.
    }
    if (up.code !== 0 || cluster === undefined) throw new Error(`pk up failed (${up.code}): ${up.stderr.slice(0, 500)}`);
    apis = cluster.nodes.map((n) => new Api(n.api, cluster.token, Math.max(4, 2 * clients)));
    const [a] = apis as [Api, ...Api[]];
    // Every node sees three alive members.
    const convergeDeadline = performance.now() + 30_000;
    for (;;) {
      const views = await Promise.all(apis.map((api) => api.send("GET", "/v1/status", undefined, 2_000).then((r) => r.json as { members?: Array<{ state: string }> }).catch(() => undefined)));
      if (views.every((v) => v?.members?.filter((m) => m.state === "alive").length === 3)) break;
      if (performance.now() > convergeDeadline) throw new Error("the 3 nodes did not see each other within 30 s");
      await sleep(50);
    }
    const startupMs = performance.now() - t0;
    log(`cluster up in ${startupMs.toFixed(0)} ms`);

    // --- Loopback round trips ---------------------------------------------------------------------
    const tcp = await tcpEcho(quick ? 1_000 : 3_000, (child) => {
      echoChild = child;
    });
    log(`tcp echo: median ${tcp.median} µs`);
    const tcpIdle = await tcpEcho(quick ? 100 : 300, (child) => {
      echoChild = child;
    }, 5);
    log(`tcp echo after 5 ms idle: median ${tcpIdle.median} µs`);
    const software = messagePathUs(LARGE_CONFIG.dModel, quick ? 1_000 : 3_000);
    log(`message path (encode, seal, open, decode) per round trip: median ${software.perRoundTripUs.median} µs`);
    const statusMs: number[] = [];
    for (let i = 0; i < (quick ? 100 : 300) + 20; i++) {
      const s0 = performance.now();
      await a.send("GET", "/v1/status", undefined, 5_000);
      if (i >= 20) statusMs.push(performance.now() - s0);
    }
    log(`GET /v1/status: median ${median(statusMs).toFixed(3)} ms`);

    // --- Seed model -------------------------------------------------------------------------------
    const trainStarted = performance.now();
    const trained = await a.shell("dtr train 5");
    const trainMs = performance.now() - trainStarted;
    const seedTag = (await a.infer({ values: [0, 0, 0, 0] })).tag;
    const seedSpreadMs = await waitTag(apis, { values: [0, 0, 0, 0] }, seedTag, 60_000);
    log(`seed trained in ${trainMs.toFixed(0)} ms, on every node ${seedSpreadMs.toFixed(0)} ms later`);
    const rng = createRng(6, 1);
    const seedInput = () => Array.from({ length: 4 }, () => round(6 * rng.next() - 3, 4));
    const seedN = quick ? 100 : 300;
    const seedModes: Record<string, unknown> = {};
    const seedRuns: Partial<Record<Mode, ModeRun>> = {};
    for (const mode of MODES) {
      for (let i = 0; i < 30; i++) await timedInfer(a, { mode, values: seedInput() }, undefined);
      const run = newRun();
      for (let i = 0; i < seedN; i++) await timedInfer(a, { mode, values: seedInput() }, run);
      seedRuns[mode] = run;
      const tput = await throughput(clients, quick ? 1_000 : 2_000, async () => {
        await a.infer({ mode, values: seedInput() });
      });
      seedModes[mode] = { ...describeRun(run), throughput: tput };
      log(`seed ${mode}: client median ${median(run.clientMs).toFixed(3)} ms, node ${median(run.nodeMs).toFixed(3)} ms, ${tput.perSecond} req/s with ${clients} clients`);
    }
    const httpOverhead = seedRuns.local!.clientMs.map((c, i) => c - seedRuns.local!.nodeMs[i]!);
    const seedLocalNode = median(seedRuns.local!.nodeMs);
    const seedLocalClient = median(seedRuns.local!.clientMs);
    const overhead = (mode: Mode, run: ModeRun, nLayers: number, tokens: number, localNode: number, localClient: number) => {
      const rt = median(run.roundTrips);
      const w = waves(mode, rt, nLayers, tokens);
      const node = median(run.nodeMs) - localNode;
      return {
        nodeMsOverLocal: round(node, 3),
        clientMsOverLocal: round(median(run.clientMs) - localClient, 3),
        perLayerMs: round(node / nLayers, 3),
        roundTripsPerRequest: rt,
        roundTripsPerLayer: round(rt / nLayers, 2),
        sequentialWavesPerRequest: round(w, 2),
        sequentialWavesPerLayer: round(w / nLayers, 2),
        msPerWave: w > 0 ? round(node / w, 3) : null,
        msPerWaveOverTcpEchoRtt: w > 0 ? round((node / w) / (tcp.median / 1000), 1) : null,
        msPerWaveOverIdleTcpEchoRtt: w > 0 ? round((node / w) / (tcpIdle.median / 1000), 1) : null,
      };
    };
    const seedOverhead = Object.fromEntries(MODES.filter((m) => m !== "local").map((m) => [m, overhead(m, seedRuns[m]!, SEED_CONFIG.nLayers, 4, seedLocalNode, seedLocalClient)]));

    // --- Large shape ------------------------------------------------------------------------------
    const initStarted = performance.now();
    await a.shell("dtr init large 7");
    const probe = { ids: [1], values: [0.5] };
    const largeTag = (await a.infer(probe)).tag;
    const largeSpreadMs = await waitTag(apis, probe, largeTag, 120_000);
    log(`large model on every node ${(performance.now() - initStarted).toFixed(0)} ms after dtr init`);
    const cfg = LARGE_CONFIG;
    const tokens = quick ? 40 : 100;
    const ids = Array.from({ length: cfg.seqLen }, () => rng.int(cfg.vocab));
    const vals = Array.from({ length: cfg.seqLen }, () => round(2 * rng.next() - 1, 4));
    const largeModes: Record<string, unknown> = {};
    const largeRuns: Partial<Record<Mode, ModeRun>> = {};
    for (const mode of MODES) {
      // A short warm-up session, then the measured one.
      for (let p = 0; p < 5; p++) await timedInfer(a, { mode, session: `w-${mode}`, ids: [ids[p]], values: [vals[p]] }, undefined);
      await a.send("POST", "/v1/infer", { end: true, session: `w-${mode}` }, 10_000);
      const run = newRun();
      const sessionStarted = performance.now();
      for (let p = 0; p < tokens; p++) await timedInfer(a, { mode, session: `s-${mode}`, ids: [ids[p]], values: [vals[p]] }, run);
      const wallPerToken = (performance.now() - sessionStarted) / tokens;
      await a.send("POST", "/v1/infer", { end: true, session: `s-${mode}` }, 10_000);
      largeRuns[mode] = run;
      // Concurrent sessions: each client decodes its own session; tokens per second over all.
      const perClient = quick ? 10 : 40;
      const tStarted = performance.now();
      let errors = 0;
      await Promise.all(Array.from({ length: clients }, async (_, c) => {
        const session = `t-${mode}-${c}`;
        for (let p = 0; p < perClient; p++) {
          await a.infer({ mode, session, ids: [ids[p]], values: [vals[p]] }).catch(() => {
            errors++;
          });
        }
        await a.send("POST", "/v1/infer", { end: true, session }, 10_000).catch(() => undefined);
      }));
      const tSeconds = (performance.now() - tStarted) / 1000;
      const total = clients * perClient - errors;
      largeModes[mode] = {
        ...describeRun(run), tokens, wallMsPerToken: round(wallPerToken, 3),
        throughput: { clients, tokensPerClient: perClient, seconds: round(tSeconds, 2), errors, tokensPerSecond: round(total / tSeconds, 1), msPerTokenPerClient: round((tSeconds * 1000) / perClient, 2) },
      };
      log(`large decode ${mode}: ${wallPerToken.toFixed(2)} ms/token (node median ${median(run.nodeMs).toFixed(2)}), ${round(total / tSeconds, 1)} tokens/s with ${clients} sessions`);
    }
    const largeLocalNode = median(largeRuns.local!.nodeMs);
    const largeLocalClient = median(largeRuns.local!.clientMs);
    const largeOverhead = Object.fromEntries(MODES.filter((m) => m !== "local").map((m) => [m, overhead(m, largeRuns[m]!, cfg.nLayers, 1, largeLocalNode, largeLocalClient)]));
    // Whole sequences of 256 tokens (dkva runs a whole sequence token by token: left out).
    const wholeRuns = quick ? 1 : 3;
    const whole: Record<string, unknown> = {};
    const body = { ids: ids.slice(0, 256), values: vals.slice(0, 256) };
    for (const mode of ["local", "pipeline", "tensor"] as const) {
      await a.infer({ mode, ...body });
      const run = newRun();
      for (let i = 0; i < wholeRuns; i++) await timedInfer(a, { mode, ...body }, run);
      whole[mode] = { clientMs: summary(run.clientMs, 2), nodeMs: summary(run.nodeMs, 2), roundTripsPerRequest: median(run.roundTrips), states: run.states };
      log(`large whole 256 ${mode}: node median ${median(run.nodeMs).toFixed(1)} ms`);
    }

    // The nodes' own peer round-trip estimate.
    const net = await a.shell("net").catch(() => "");
    const srtt = [...net.matchAll(/^\s*(\S+)\s+(\S+)\s+([\d.]+)ms\s+(\d+)\s*$/gm)].map((m) => ({ peer: m[2] === "-" ? m[1] : m[2], srttMs: Number(m[3]), samples: Number(m[4]) }));

    return {
      nodes: 3,
      startupMs: round(startupMs, 0),
      loopback: {
        tcpEchoUs: { ...tcp, how: "64-byte write and echo over one TCP connection on 127.0.0.1 (TCP_NODELAY); echo server in a separate Node process, timed in this process" },
        tcpEchoAfterIdleUs: { ...tcpIdle, how: "the same, with 5 ms of idleness before each round trip: both processes sleep, and waking them costs the guest's vCPU wake-up" },
        httpStatusMs: { ...summary(statusMs), how: "GET /v1/status on node 1, keep-alive, client-side" },
        httpInferOverheadMs: { ...summary(httpOverhead), how: "seed POST /v1/infer mode local: client latency minus the node's own ms (HTTP + JSON + event loop)" },
        nodePeerSrtt: { peers: srtt, how: "node 1's `net` SRTT per peer: the node's own estimate from SWIM probe acks (probes go out from its 10 ms tick loop; few samples)" },
        messagePathInProcess: { ...software, how: "CPU per round trip for the envelope alone, in this process: 2 × (brain-wire encode, MessagePack, AES-GCM seal, open, decode and validate, brain-wire decode); no socket, no event loop" },
      },
      seed: {
        params: paramCount(SEED_CONFIG), trainMs: round(trainMs, 0), spreadMs: round(seedSpreadMs, 0), trainSummary: trained.split("\n").slice(-2, -1)[0] ?? "",
        requests: seedN, modes: seedModes, overhead: seedOverhead,
      },
      large: {
        params: paramCount(cfg), spreadMs: round(largeSpreadMs, 0),
        decode: { tokensPerSession: tokens, note: "one token per request, positions 0..tokens−1 of one session", modes: largeModes, overhead: largeOverhead },
        wholeSequence256: whole,
      },
    };
  } finally {
    for (const api of apis) api.close();
    const down = await runPk(["down", "--dir", dir], 20_000).catch(() => undefined);
    if (down?.code !== 0) log(`pk down: ${down?.code ?? "failed"} ${down?.stderr.slice(0, 200) ?? ""}`);
    killAll();
    rmSync(dir, { recursive: true, force: true });
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("exit", killAll);
  }
}

// ---------------------------------------------------------------------------------------------

export async function run(argv: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args: argv,
    options: { quick: { type: "boolean", default: false }, only: { type: "string", default: "matmul,local,cluster" }, clients: { type: "string", default: "8" } },
    strict: true,
  });
  const quick = values.quick === true;
  const only = new Set(String(values.only).split(","));
  for (const part of only) if (!["matmul", "local", "cluster"].includes(part)) throw new Error(`--only takes matmul, local, cluster; got ${part}`);
  const clients = Number(values.clients);
  if (!(Number.isInteger(clients) && clients >= 1 && clients <= 64)) throw new Error("--clients must be an integer in [1, 64]");
  const started = performance.now();
  const peak = machinePeak();
  log(peak.derivation);
  const result: Record<string, unknown> = {
    bench: "brain",
    quick,
    machine: { ...peak, node: process.version, loadavgAtStart: loadavg().map((x) => round(x, 2)) },
  };
  if (only.has("matmul")) result.matmul = benchMatmul(peak, quick);
  if (only.has("local")) result.local = benchLocal(peak, quick);
  if (only.has("cluster")) {
    result.loadavgBeforeCluster = loadavg().map((x) => round(x, 2));
    result.cluster = await benchCluster(quick, clients);
  }
  result.totalSeconds = round((performance.now() - started) / 1000, 1);
  return result;
}
