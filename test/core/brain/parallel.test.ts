// Distributed inference (src/core/brain/parallel.ts): pipeline, tensor (Megatron) and dkva against
// the single-node forward and KV-cache step, over an in-process transport that takes every message
// through the brain-wire codec both ways, with a coordinator and two peers; then peers that never
// answer (the call's deadline in ticks), are declared gone, answer garbage or mis-shaped tensors,
// lose their state or die mid-session; the Coordinator's deadlines and queues; and a fuzzed worker.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { createRng, type Rng } from "../../../src/core/util/rng.ts";
import {
  fillNormal, forward, KvCache, layout, paramCount, SEED_CONFIG, step, Workspace, type ModelConfig,
} from "../../../src/core/brain/transformer.ts";
import { decodeBrainMessage, encodeBrainMessage, type BrainMessage } from "../../../src/core/brain/brain-wire.ts";
import {
  BrainWorker, brainMessageBytes, Coordinator, ERROR_CODES, weightsTag, wireSession,
  type ParallelMode, type RunRequest, type RunResult,
} from "../../../src/core/brain/parallel.ts";

const MODES: readonly ParallelMode[] = ["pipeline", "tensor", "dkva"];
const TOL = 1e-5;
/** Every participant has a share in every mode: layers 1/1/1, heads 1/2/1, FFN columns 11/10/11. */
const MID: ModelConfig = { vocab: 8, seqLen: 24, dModel: 16, nHeads: 4, dFF: 32, nLayers: 3, nClasses: 3 };
const LARGE: ModelConfig = { vocab: 64, seqLen: 320, dModel: 256, nHeads: 8, dFF: 1024, nLayers: 4, nClasses: 3 };

/** Random weights of std `std`, LayerNorm gains around 1 (so nothing is trivially zero). */
function randomParams(cfg: ModelConfig, seed: number, std: number): Float32Array {
  const p = new Float32Array(paramCount(cfg));
  fillNormal(p, 0, p.length, std, createRng(seed));
  for (const t of layout(cfg)) if (t.name.endsWith(".g")) for (let i = t.offset; i < t.offset + t.size; i++) p[i] = p[i]! + 1;
  return p;
}

function randomSequence(rng: Rng, cfg: ModelConfig, T: number): { ids: Int32Array; values: Float32Array } {
  const ids = new Int32Array(T), values = new Float32Array(T);
  for (let t = 0; t < T; t++) {
    ids[t] = rng.int(cfg.vocab);
    values[t] = rng.next() * 4 - 2;
  }
  return { ids, values };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

// ---------------------------------------------------------------------------------------------
// In-process transport: encode → decode → worker.handle → encode → decode. A peer may also not
// answer at all ("lost": the call fails at its deadline) or be declared gone ("gone": as SWIM would).

type Serve = (request: Uint8Array) => Uint8Array | "lost" | "gone";

interface Net {
  /** One message to a peer: its decoded answer, null for undecodable bytes, or no answer. */
  readonly deliver: (peer: string, msg: BrainMessage) => BrainMessage | null | "lost" | "gone";
  readonly peers: Map<string, { worker: BrainWorker; serve: Serve }>;
  /** Every request that reached a peer (decoded), for the fuzz corpus. */
  readonly requests: BrainMessage[];
  /** Error responses the workers produced. */
  readonly errors: { peer: string; code: string; message: string }[];
  calls: number;
}

function honest(net: Net, name: string, worker: BrainWorker): Serve {
  return (bytes) => {
    const d = decodeBrainMessage(bytes);
    assert.ok(d.ok, d.ok ? "" : d.error);
    if (net.requests.length < 4000) net.requests.push(d.msg);
    const res = worker.handle(d.msg);
    if (res.t === "error") net.errors.push({ peer: name, code: res.code, message: res.message });
    return encodeBrainMessage(res);
  };
}

function network(cfg: ModelConfig, params: Float32Array, names: readonly string[] = ["b", "c"]): Net {
  const net: Net = {
    peers: new Map(), requests: [], errors: [], calls: 0,
    deliver: (peer, msg) => {
      net.calls++;
      const p = net.peers.get(peer);
      if (p === undefined) return "lost";
      const bytes = encodeBrainMessage(msg);
      assert.equal(brainMessageBytes(msg), bytes.length, `brainMessageBytes of ${msg.t}`);
      const res = p.serve(bytes);
      if (typeof res === "string") return res;
      const d = decodeBrainMessage(res);
      // The node hands an undecodable answer over as null: the call fails at once.
      if (!d.ok) return null;
      assert.equal(brainMessageBytes(d.msg), res.length, `brainMessageBytes of ${d.msg.t}`);
      return d.msg;
    },
  };
  for (const name of names) {
    const worker = new BrainWorker(cfg, params);
    net.peers.set(name, { worker, serve: honest(net, name, worker) });
  }
  return net;
}

/**
 * Drives the coordinator over the network until every run in `runs` has its result, as the node
 * does: drain ready(), send, advance(), then feed the answers; when only calls nobody will answer
 * are left, tick until their deadline. Returns the results in the order of `runs`.
 */
function drive(coord: Coordinator, net: Net, runs: readonly number[]): RunResult[] {
  const results = new Map<number, RunResult>();
  for (let ticks = 0; ; ticks++) {
    while (coord.hasReady()) {
      const { sends, outcomes } = coord.ready();
      for (const o of outcomes) {
        assert.ok(o.ok, o.ok ? "" : o.error);
        results.set(o.run, o.result);
      }
      const answers: [string, number, BrainMessage | null][] = [];
      const gone: string[] = [];
      for (const { to, call, msg } of sends) {
        const a = net.deliver(to, msg);
        if (a === "gone") gone.push(to);
        else if (a !== "lost" && call !== 0) answers.push([to, call, a]);
      }
      coord.advance();
      for (const [from, call, a] of answers) assert.ok(coord.step(from, call, a), "an answer to a pending call is taken");
      for (const peer of gone) coord.peerGone(peer);
    }
    if (runs.every((r) => results.has(r))) return runs.map((r) => results.get(r)!);
    assert.ok(coord.pendingCalls > 0, "a run waits only for calls");
    assert.ok(ticks <= 100 * coord.callDeadlineTicks, "calls time out");
    coord.tick();
  }
}

function run(coord: Coordinator, net: Net, req: RunRequest): RunResult {
  return drive(coord, net, [coord.start(req)])[0]!;
}

function end(coord: Coordinator, net: Net, session: string): void {
  coord.end(session);
  drive(coord, net, []);
}

/** Single-node logits of every prefix of (ids, values) via the KV cache. */
function referenceSteps(cfg: ModelConfig, params: Float32Array, ids: Int32Array, values: Float32Array): Float32Array[] {
  const cache = new KvCache(cfg);
  const out: Float32Array[] = [];
  for (let t = 0; t < ids.length; t++) out.push(step(cfg, params, cache, ids[t]!, values[t]!).slice());
  return out;
}

// ---------------------------------------------------------------------------------------------
// 1. Seed model, whole sequences

test("seed model: 1,000 random whole sequences per mode equal the single-node forward within 1e-5", () => {
  const cfg = SEED_CONFIG;
  const params = randomParams(cfg, 11, 0.3);
  const net = network(cfg, params);
  const coord = new Coordinator(cfg, params);
  const ws = new Workspace(cfg, Float32Array);
  const rng = createRng(12);
  const worst: Record<string, number> = {};
  let spread = 0;
  for (const mode of MODES) {
    let max = 0, trips = 0;
    for (let n = 0; n < 1000; n++) {
      const { ids, values } = randomSequence(rng, cfg, 1 + rng.int(cfg.seqLen));
      const want = forward(cfg, params, ids, values, ws).slice();
      const r = run(coord, net, { mode, ids, values, peers: ["b", "c"] });
      assert.equal(r.mode, "FULL");
      assert.deepEqual(r.dropped, []);
      max = Math.max(max, maxDiff(r.logits, want));
      spread = Math.max(spread, Math.max(...want) - Math.min(...want));
      trips += r.roundTrips;
    }
    worst[mode] = max;
    assert.ok(max <= TOL, `${mode}: max |Δlogit| ${max}`);
    assert.ok(trips >= 1000, `${mode}: the peers did work (${trips} round trips)`);
  }
  assert.deepEqual(net.errors, []);
  assert.ok(spread > 0.5, `logits are not trivially flat (spread ${spread})`);
  // dkva runs whole sequences as temporary sessions, and ends them.
  for (const p of net.peers.values()) assert.equal(p.worker.sessionCount, 0);
  console.log(`seed, 1,000 sequences per mode: max |Δlogit| ${Object.entries(worst).map(([m, x]) => `${m} ${x.toExponential(2)}`).join(", ")}`);
});

// ---------------------------------------------------------------------------------------------
// 2. A 3.3 M-parameter model: decode sessions and long whole sequences

test("3.3M-parameter model: 300-token decode sessions in every mode and 256-token sequences equal single node", () => {
  const cfg = LARGE;
  const params = randomParams(cfg, 21, 0.05);
  const net = network(cfg, params);
  const coord = new Coordinator(cfg, params);
  const rng = createRng(22);
  const steps = 300;
  const { ids, values } = randomSequence(rng, cfg, steps);
  let t0 = performance.now();
  const want = referenceSteps(cfg, params, ids, values);
  const lines = [`single-node step ${((performance.now() - t0) / steps).toFixed(2)} ms/token`];
  for (const mode of MODES) {
    const session = `s-${mode}`;
    let max = 0;
    let last: RunResult | null = null;
    t0 = performance.now();
    for (let t = 0; t < steps; t++) {
      last = run(coord, net, { mode, session, ids: ids.subarray(t, t + 1), values: values.subarray(t, t + 1), peers: ["b", "c"] });
      assert.equal(last.mode, "FULL");
      assert.equal(last.length, t + 1);
      max = Math.max(max, maxDiff(last.logits, want[t]!));
    }
    const ms = (performance.now() - t0) / steps;
    assert.ok(max <= TOL, `${mode} decode: max |Δlogit| ${max}`);
    // Per token: pipeline 2 remote stages in turn; tensor 2 fan-outs per layer to 2 peers; dkva 1 per layer.
    const expected = { pipeline: [2, 2], tensor: [2 * cfg.nLayers, 4 * cfg.nLayers], dkva: [cfg.nLayers, 2 * cfg.nLayers] }[mode];
    assert.deepEqual([last!.rounds, last!.roundTrips], expected, `${mode} rounds and round trips`);
    end(coord, net, session);
    lines.push(`${mode} decode: max |Δlogit| ${max.toExponential(2)}, ${ms.toFixed(2)} ms/token, `
      + `${last!.perLayerRounds} rounds and ${last!.perLayerRoundTrips} round trips per layer, ${last!.perLayerBytes} B/layer at the last step`);
  }
  assert.deepEqual(net.errors, []);
  for (const p of net.peers.values()) assert.equal(p.worker.sessionCount, 0, "end() told the peers");
  for (const mode of ["pipeline", "tensor"] as const) {
    for (let n = 0; n < 2; n++) {
      const seq = randomSequence(rng, cfg, 256);
      const ref = forward(cfg, params, seq.ids, seq.values).slice();
      t0 = performance.now();
      const r = run(coord, net, { mode, ids: seq.ids, values: seq.values, peers: ["b", "c"] });
      const ms = performance.now() - t0;
      assert.equal(r.mode, "FULL");
      const diff = maxDiff(r.logits, ref);
      assert.ok(diff <= TOL, `${mode} 256 tokens: max |Δlogit| ${diff}`);
      lines.push(`${mode} 256-token sequence: max |Δlogit| ${diff.toExponential(2)}, ${ms.toFixed(0)} ms, ${(r.perLayerBytes / 1024).toFixed(0)} KiB/layer`);
    }
  }
  console.log(`3.3M params (${paramCount(cfg)}):\n  ${lines.join("\n  ")}`);
});

// ---------------------------------------------------------------------------------------------
// 3. Failures

type Mangle = (res: BrainMessage, req: BrainMessage, rng: Rng) => BrainMessage | Uint8Array | "lost" | "gone";

/** Peer `name` answers honestly for its first `after` requests, then through `mangle`. */
function fault(net: Net, name: string, mangle: Mangle, after = 0, seed = 5): void {
  const p = net.peers.get(name)!;
  const inner = p.serve;
  const rng = createRng(seed);
  let n = 0;
  p.serve = (bytes) => {
    if (++n <= after) return inner(bytes);
    const req = decodeBrainMessage(bytes);
    assert.ok(req.ok);
    const resBytes = inner(bytes);
    if (typeof resBytes === "string") return resBytes;
    const res = decodeBrainMessage(resBytes);
    assert.ok(res.ok);
    const out = mangle(res.msg, req.msg, rng);
    if (out === "lost" || out === "gone") return out;
    return out instanceof Uint8Array ? out : encodeBrainMessage(out);
  };
}

/** After `after` requests, peer `name` restarts: a fresh worker without any session. */
function restart(net: Net, name: string, cfg: ModelConfig, params: Float32Array, after: number): void {
  const p = net.peers.get(name)!;
  const inner = p.serve;
  const fresh = new BrainWorker(cfg, params);
  const next = honest(net, name, fresh);
  let n = 0;
  p.serve = (bytes) => (++n <= after ? inner(bytes) : next(bytes));
}

const MANGLERS: Record<string, Mangle> = {
  "no answer": () => "lost",
  gone: () => "gone",
  "garbage bytes": (_res, _req, rng) => Uint8Array.from({ length: rng.int(64) }, () => rng.int(256)),
  "wrong shape": (res) => {
    switch (res.t) {
      case "stage-res": return { ...res, hidden: { rows: res.hidden.rows, cols: res.hidden.cols - 1, data: res.hidden.data.slice(0, res.hidden.rows * (res.hidden.cols - 1)) } };
      case "tp-res": return { ...res, partial: { rows: res.partial.rows + 1, cols: res.partial.cols, data: new Float32Array((res.partial.rows + 1) * res.partial.cols) } };
      case "partial-res": {
        const H = res.m.length - 1, dh = res.o.length / res.m.length;
        return { ...res, m: res.m.slice(0, H), l: res.l.slice(0, H), o: res.o.slice(0, H * dh) };
      }
      default: return res;
    }
  },
  "not finite": (res) => {
    if (res.t === "stage-res") res.hidden.data[3] = NaN;
    if (res.t === "tp-res") res.partial.data[5] = Infinity;
    if (res.t === "partial-res") res.o[1] = NaN;
    return res;
  },
  "wrong request id": (res) => ("requestId" in res ? { ...res, requestId: (res.requestId + 1) >>> 0 } : res),
  "wrong kind": (_res, req) => req,
  "error answer": (res) => ({ t: "error", requestId: "requestId" in res ? res.requestId : 0, code: "busy", message: "overloaded" }),
  "lost positions": (res) => (res.t === "partial-res" && res.l[0]! > 0
    ? { ...res, m: res.m.map(() => -Infinity), l: res.l.map(() => 0), o: res.o.map(() => 0) }
    : res.t === "partial-res" ? { ...res, m: res.m.map(() => 0.5), l: res.l.map(() => 1), o: res.o.map(() => 0.25) } : res),
};

interface Outcome {
  mode: RunResult["mode"];
  dropped: readonly string[];
  max: number;
}

/** A 16-token decode session and 4 whole sequences of `mode` on `net`; every answer compared with single node. */
function exercise(cfg: ModelConfig, params: Float32Array, net: Net, mode: ParallelMode, seed: number): { session: Outcome; whole: Outcome[] } {
  const rng = createRng(seed);
  const coord = new Coordinator(cfg, params);
  const { ids, values } = randomSequence(rng, cfg, 16);
  const want = referenceSteps(cfg, params, ids, values);
  let max = 0;
  let r: RunResult | null = null;
  for (let t = 0; t < ids.length; t++) {
    r = run(coord, net, { mode, session: "s", ids: ids.subarray(t, t + 1), values: values.subarray(t, t + 1), peers: ["b", "c"] });
    max = Math.max(max, maxDiff(r.logits, want[t]!));
  }
  const session = { mode: r!.mode, dropped: r!.dropped, max };
  end(coord, net, "s");
  const whole: Outcome[] = [];
  for (let n = 0; n < 4; n++) {
    const seq = randomSequence(rng, cfg, 1 + rng.int(cfg.seqLen));
    const w = run(coord, net, { mode, ids: seq.ids, values: seq.values, peers: ["b", "c"] });
    whole.push({ mode: w.mode, dropped: w.dropped, max: maxDiff(w.logits, forward(cfg, params, seq.ids, seq.values)) });
  }
  return { session, whole };
}

test("a peer that never answers, is declared gone, answers garbage, mis-shaped, non-finite, misnumbered or wrong partials is dropped; answers stay exact", () => {
  const params = randomParams(MID, 31, 0.3);
  let cases = 0;
  for (const mode of MODES) {
    for (const [name, mangle] of Object.entries(MANGLERS)) {
      if (name === "lost positions" && mode !== "dkva") continue; // only a shard's partial can lie about its positions
      const net = network(MID, params);
      fault(net, "b", mangle);
      const { session, whole } = exercise(MID, params, net, mode, 40 + cases);
      for (const o of [session, ...whole]) {
        assert.ok(o.max <= TOL, `${mode}, ${name}: max |Δlogit| ${o.max}`);
        assert.equal(o.mode, "REDUCED", `${mode}, ${name}`);
        assert.deepEqual(o.dropped, ["b"], `${mode}, ${name}`);
      }
      cases++;
    }
  }
  assert.equal(cases, 3 * Object.keys(MANGLERS).length - 2);
});

test("a peer dying or restarting at any point of a session: replayed locally, continued with the survivor or alone", () => {
  const params = randomParams(MID, 32, 0.3);
  const coordParams = params;
  let checked = 0;
  for (const mode of MODES) {
    // Each peer gets ≤ 2·nLayers requests per token: these cover every layer and part of the first tokens and beyond.
    for (const after of [0, 1, 2, 3, 4, 5, 7, 8, 10, 13, 17, 22, 29]) {
      for (const kind of ["dies", "restarts", "both die"] as const) {
        if (mode === "pipeline" && after >= 18) continue; // a pipeline stage gets one request per token (20 here)
        if (kind === "restarts" && after === 0) continue; // a worker that restarts before its first request lost nothing
        const net = network(MID, params);
        if (kind === "restarts") restart(net, "c", MID, params, after);
        // c dies: declared gone (SWIM); in "both die", b goes silent too (its calls reach their deadline).
        else fault(net, "c", MANGLERS.gone!, after);
        if (kind === "both die") fault(net, "b", MANGLERS["no answer"]!, Math.min(after + 3, 15)); // pipeline: b gets one request per token
        const rng = createRng(100 + after);
        const coord = new Coordinator(MID, coordParams);
        const { ids, values } = randomSequence(rng, MID, 20);
        const want = referenceSteps(MID, params, ids, values);
        let r: RunResult | null = null;
        let callsToB = 0;
        for (let t = 0; t < ids.length; t++) {
          const before = net.calls;
          r = run(coord, net, { mode, session: "x", ids: ids.subarray(t, t + 1), values: values.subarray(t, t + 1), peers: ["b", "c"] });
          const d = maxDiff(r.logits, want[t]!);
          assert.ok(d <= TOL, `${mode}, c ${kind} after ${after}, token ${t}: |Δ| ${d}`);
          if (t === ids.length - 1) callsToB = net.calls - before;
        }
        if (kind === "both die") {
          assert.equal(r!.mode, "SOLO", `${mode} ${kind} ${after}`);
          assert.deepEqual([...r!.dropped].sort(), ["b", "c"]);
          assert.equal(callsToB, 0, "nobody is asked once everybody is dropped");
        } else {
          assert.equal(r!.mode, "REDUCED", `${mode} ${kind} ${after}`);
          assert.deepEqual(r!.dropped, ["c"]);
          assert.ok(callsToB > 0, "the survivor keeps its share");
        }
        if (kind === "restarts") assert.ok(net.errors.some((e) => e.peer === "c" && e.code === "session"), "the restarted worker refused the unknown session");
        checked++;
      }
    }
  }
  console.log(`failure mid-session: ${checked} sessions of 20 tokens, every step within ${TOL}`);
});

test("a worker with other weights refuses (error weights) and is dropped", () => {
  const params = randomParams(MID, 33, 0.3);
  const net = network(MID, params);
  const other = randomParams(MID, 34, 0.3);
  const w = new BrainWorker(MID, other);
  net.peers.set("c", { worker: w, serve: honest(net, "c", w) });
  for (const mode of MODES) {
    const { session, whole } = exercise(MID, params, net, mode, 7);
    for (const o of [session, ...whole]) {
      assert.ok(o.max <= TOL);
      assert.equal(o.mode, "REDUCED");
      assert.deepEqual(o.dropped, ["c"]);
    }
  }
  assert.ok(net.errors.length > 0 && net.errors.every((e) => e.peer === "c" && e.code === "weights"));
  assert.notEqual(weightsTag(MID, params), weightsTag(MID, other));
});

test("worker eviction under a session bound: the evicted session's next request fails and is replayed; concurrent runs stay exact", () => {
  const params = randomParams(MID, 35, 0.3);
  for (const mode of MODES) {
    const net = network(MID, params);
    const small = new BrainWorker(MID, params, { maxSessions: 1 });
    net.peers.set("b", { worker: small, serve: honest(net, "b", small) });
    const coord = new Coordinator(MID, params);
    const rng = createRng(36);
    const a = randomSequence(rng, MID, 12), b = randomSequence(rng, MID, 12);
    const wantA = referenceSteps(MID, params, a.ids, a.values), wantB = referenceSteps(MID, params, b.ids, b.values);
    let ra: RunResult | null = null, rb: RunResult | null = null;
    for (let t = 0; t < 12; t++) {
      // Two sessions in flight at once; the second request of a session queues behind the first.
      [ra, rb] = drive(coord, net, [
        coord.start({ mode, session: "A", ids: a.ids.subarray(t, t + 1), values: a.values.subarray(t, t + 1), peers: ["b", "c"] }),
        coord.start({ mode, session: "B", ids: b.ids.subarray(t, t + 1), values: b.values.subarray(t, t + 1), peers: ["b", "c"] }),
      ]) as [RunResult, RunResult];
      assert.ok(maxDiff(ra.logits, wantA[t]!) <= TOL && maxDiff(rb.logits, wantB[t]!) <= TOL, `${mode} token ${t}`);
    }
    assert.ok(small.sessionCount <= 1 && small.evictions >= 1, `${mode}: evictions ${small.evictions}`);
    // Session A was evicted on b when B opened there (or the other way round): exactly one lost b.
    const lost = [ra!, rb!].filter((r) => r.dropped.includes("b"));
    assert.equal(lost.length, 1, `${mode}: ${JSON.stringify([ra!.dropped, rb!.dropped])}`);
    assert.equal(lost[0]!.mode, "REDUCED");
    assert.ok(net.errors.some((e) => e.peer === "b" && e.code === "session"));
  }
});

test("runs of one session queue in order; prefill of several tokens; input errors reject", () => {
  const params = randomParams(MID, 37, 0.3);
  const net = network(MID, params);
  const coord = new Coordinator(MID, params, { maxSessions: 2 });
  const rng = createRng(38);
  const { ids, values } = randomSequence(rng, MID, 10);
  const want = referenceSteps(MID, params, ids, values);
  for (const mode of MODES) {
    const session = `q-${mode}`;
    const first = run(coord, net, { mode, session, ids: ids.subarray(0, 4), values: values.subarray(0, 4), peers: ["b", "c"] });
    assert.ok(maxDiff(first.logits, want[3]!) <= TOL);
    assert.equal(first.length, 4);
    const runs = [];
    for (let t = 4; t < 10; t++) runs.push(coord.start({ mode, session, ids: ids.subarray(t, t + 1), values: values.subarray(t, t + 1), peers: ["b", "c"] }));
    const rs = drive(coord, net, runs);
    rs.forEach((r, k) => {
      assert.equal(r.length, 5 + k);
      assert.equal(r.mode, "FULL");
      assert.ok(maxDiff(r.logits, want[4 + k]!) <= TOL, `${mode} queued token ${4 + k}`);
    });
    assert.throws(() => coord.start({ mode: mode === "dkva" ? "tensor" : "dkva", session, ids: ids.subarray(0, 1), values: values.subarray(0, 1), peers: [] }), RangeError);
    end(coord, net, session);
    assert.throws(() => coord.start({ mode, session: "full", ids: new Int32Array(MID.seqLen + 1), values: new Float32Array(MID.seqLen + 1), peers: [] }), RangeError);
  }
  assert.equal(coord.sessionCount, 0);
  assert.throws(() => coord.start({ mode: "tensor", ids: Int32Array.of(MID.vocab), values: [0], peers: ["b"] }), RangeError);
  assert.throws(() => coord.start({ mode: "tensor", ids: Int32Array.of(1), values: [NaN], peers: ["b"] }), RangeError);
  assert.throws(() => coord.start({ mode: "tensor", ids: Int32Array.of(1), values: [1], peers: ["b", "b"] }), RangeError);
  assert.throws(() => coord.start({ mode: "tensor", ids: Int32Array.of(1), values: [1], peers: ["b"], speeds: [1] }), RangeError);
  // Fill a session to seqLen, then one more token is refused without touching its state.
  const s = run(coord, net, { mode: "pipeline", session: "z", ids: new Int32Array(MID.seqLen), values: new Float32Array(MID.seqLen), peers: ["b", "c"] });
  assert.equal(s.length, MID.seqLen);
  assert.throws(() => coord.start({ mode: "pipeline", session: "z", ids: Int32Array.of(0), values: [0], peers: ["b", "c"] }), RangeError);
  // The coordinator's session bound: a third session ends the least recently used.
  run(coord, net, { mode: "pipeline", session: "y", ids: Int32Array.of(0), values: [0], peers: ["b", "c"] });
  run(coord, net, { mode: "pipeline", session: "w", ids: Int32Array.of(0), values: [0], peers: ["b", "c"] });
  assert.equal(coord.sessionCount, 2);
  // No peers at all: SOLO, still exact.
  const solo = run(coord, net, { mode: "tensor", ids: ids.subarray(0, 5), values: values.subarray(0, 5), peers: [] });
  assert.equal(solo.mode, "SOLO");
  assert.equal(solo.roundTrips, 0);
  assert.ok(maxDiff(solo.logits, want[4]!) <= TOL);
});

// ---------------------------------------------------------------------------------------------
// 4. The worker on hostile input

test("worker: every refusal has its code, and state survives a refused request", () => {
  const params = randomParams(MID, 39, 0.3);
  const w = new BrainWorker(MID, params, { maxSessions: 2 });
  const tag = w.tag, d = MID.dModel;
  const hidden = (rows: number, cols = d): { rows: number; cols: number; data: Float32Array } => ({ rows, cols, data: new Float32Array(rows * cols).fill(0.1) });
  const code = (m: BrainMessage): string => {
    const r = w.handle(m);
    return r.t === "error" ? r.code : r.t;
  };
  const stage = (session: string, startPos: number, extra: Partial<{ layers: [number, number]; rows: number; cols: number }> = {}): BrainMessage => ({
    t: "stage-req", session, requestId: 9, layers: extra.layers ?? [0, 2], startPos, hidden: hidden(extra.rows ?? 1, extra.cols ?? d),
  });
  assert.equal(code(stage("0123456789abcdef", 0)), "weights");
  assert.equal(code(stage(`${tag}/`, 0)), "session");
  assert.equal(code(stage(wireSession(tag, "s"), 3)), "session", "unknown session past position 0");
  assert.equal(code(stage(wireSession(tag, "s"), 0)), "stage-res");
  assert.equal(code(stage(wireSession(tag, "s"), 2)), "order");
  assert.equal(code(stage(wireSession(tag, "s"), 1, { layers: [1, 2] })), "session", "another layer range");
  assert.equal(code(stage(wireSession(tag, "s"), 1)), "stage-res", "the refusals left the session intact");
  assert.equal(code(stage(tag, 1)), "range", "a stateless stage starts at 0");
  assert.equal(code(stage(tag, 0, { layers: [2, 4] })), "range");
  assert.equal(code(stage(tag, 0, { cols: d + 1 })), "shape");
  assert.equal(code(stage(tag, MID.seqLen - 1, { rows: 2 })), "range");
  const nan = stage(tag, 0) as { hidden: { data: Float32Array } };
  nan.hidden.data[0] = NaN;
  assert.equal(code(nan as BrainMessage), "value");
  const tp = (part: "attn" | "ffn", range: [number, number], startPos = 0, session = tag, layer = 0): BrainMessage => ({
    t: "tp-req", session, requestId: 1, layer, part, range, startPos, input: hidden(2),
  });
  assert.equal(code(tp("attn", [0, MID.nHeads + 1])), "range");
  assert.equal(code(tp("ffn", [0, MID.dFF])), "tp-res");
  assert.equal(code(tp("ffn", [0, 4], 3)), "range");
  assert.equal(code(tp("attn", [1, 2], 0, wireSession(tag, "t"), 1)), "session", "a tp session opens at layer 0");
  assert.equal(code(tp("attn", [1, 2], 0, wireSession(tag, "t"), 0)), "tp-res");
  assert.equal(code(tp("attn", [1, 3], 2, wireSession(tag, "t"), 0)), "session", "other heads");
  assert.equal(code(tp("attn", [1, 2], 0, wireSession(tag, "t"), 0)), "tp-res", "position 0 of layer 0 restarts");
  assert.equal(code(tp("attn", [1, 2], 4, wireSession(tag, "t"), 0)), "order");
  const q = new Float32Array(d).fill(0.2);
  const part = (queryPos: number, layer = 0, append = true, session = wireSession(tag, "k")): BrainMessage =>
    append ? { t: "partial-req", session, requestId: 2, layer, queryPos, q, append: { position: queryPos, k: q, v: q } }
      : { t: "partial-req", session, requestId: 2, layer, queryPos, q };
  assert.equal(code(part(0, 0, true, tag)), "session", "a shard needs a session");
  assert.equal(code(part(1)), "session");
  assert.equal(code(part(0)), "partial-res");
  assert.equal(code(part(2)), "order", "one query per position");
  assert.equal(code(part(1, 0, false)), "partial-res");
  assert.equal(code({ t: "partial-req", session: wireSession(tag, "k"), requestId: 2, layer: 0, queryPos: 2, q, append: { position: 1, k: q, v: q } }), "order");
  assert.equal(code(part(0, MID.nLayers)), "range");
  assert.equal(code({ t: "partial-req", session: wireSession(tag, "k"), requestId: 2, layer: 0, queryPos: 2, q: q.subarray(1) }), "shape");
  assert.equal(code({ t: "tp-res", requestId: 3, partial: hidden(1) }), "kind");
  assert.equal(w.sessionCount, 2, "at most maxSessions");
  assert.equal(code({ t: "end-session", session: wireSession(tag, "k") }), "end-session");
  assert.equal(w.sessionCount, 1);
  assert.throws(() => new BrainWorker(MID, params, { weightsTag: "has/slash" }));
});

test("worker fuzz: 2,000 random and mutated messages never throw, always answer encodably, never exceed the bounds", () => {
  const params = randomParams(MID, 41, 0.3);
  // A corpus of real requests: every mode, sessions and whole sequences.
  const net = network(MID, params);
  for (const mode of MODES) exercise(MID, params, net, mode, 42);
  const corpus = net.requests.filter((m) => m.t !== "end-session");
  assert.ok(corpus.length > 200);
  const w = new BrainWorker(MID, params, { maxSessions: 3, maxBytes: 3 * MID.nLayers * MID.seqLen * (8 * MID.dModel + 4) });
  const codes = new Map<string, number>();
  const check = (msg: BrainMessage): void => {
    const res = w.handle(msg);
    const bytes = encodeBrainMessage(res); // an answer is always encodable
    assert.ok(decodeBrainMessage(bytes).ok);
    const key = res.t === "error" ? res.code : res.t;
    codes.set(key, (codes.get(key) ?? 0) + 1);
    if (res.t === "error") {
      assert.ok((ERROR_CODES as readonly string[]).includes(res.code));
      assert.notEqual(res.code, "internal", res.message);
    }
    assert.ok(w.sessionCount <= 3 && w.bytesReserved <= w.maxBytes);
  };
  const tag = w.tag;
  const num = fc.oneof(fc.integer({ min: -2, max: 40 }), fc.constantFrom(0xffff, 0xffff_ffff, 2 ** 40, -1, 0.5, NaN, Infinity));
  const mutation = fc.record({
    pick: fc.nat(),
    field: fc.constantFrom("layer", "startPos", "queryPos", "range0", "range1", "session", "rows", "cols", "value", "append", "part", "position", "bytes", "requestId", "none"),
    x: num,
    session: fc.constantFrom(tag, `${tag}/s`, `${tag}/k`, `${tag}/`, "feedfacefeedface/s", "", "x".repeat(80), "\ud800"),
    bytes: fc.array(fc.record({ at: fc.nat(), b: fc.integer({ min: 0, max: 255 }) }), { maxLength: 6 }),
    cut: fc.nat(),
  });
  fc.assert(fc.property(mutation, ({ pick, field, x, session, bytes, cut }) => {
    const base = corpus[pick % corpus.length]!;
    const m = structuredClone(base) as unknown as Record<string, unknown>;
    const mat = (m.input ?? m.hidden) as { rows: number; cols: number; data: Float32Array } | undefined;
    switch (field) {
      case "layer": m.layer = x; break;
      case "startPos": m.startPos = x; break;
      case "queryPos": m.queryPos = x; break;
      case "range0": if (Array.isArray(m.range)) m.range = [x, m.range[1]]; else if (Array.isArray(m.layers)) m.layers = [x, m.layers[1]]; break;
      case "range1": if (Array.isArray(m.range)) m.range = [m.range[0], x]; else if (Array.isArray(m.layers)) m.layers = [m.layers[0], x]; break;
      case "session": m.session = session; break;
      case "rows": if (mat !== undefined && Number.isInteger(x) && x >= 1 && x <= 30) { mat.rows = x; mat.data = new Float32Array(x * mat.cols).fill(0.5); } break;
      case "cols": if (mat !== undefined && Number.isInteger(x) && x >= 1 && x <= 30) { mat.cols = x; mat.data = new Float32Array(mat.rows * x); } break;
      case "value": if (mat !== undefined) mat.data[Math.abs(cut) % mat.data.length] = x; else if (m.q instanceof Float32Array) m.q[cut % m.q.length] = x; break;
      case "append": if (m.append === undefined && m.q instanceof Float32Array) m.append = { position: m.queryPos, k: m.q, v: m.q }; else delete m.append; break;
      case "part": m.part = m.part === "attn" ? "ffn" : "attn"; break;
      case "position": if (typeof m.append === "object" && m.append !== null) (m.append as { position: unknown }).position = x; break;
      case "requestId": m.requestId = x; break;
      default: break;
    }
    // Directly, as a (possibly unencodable) object…
    check(m as unknown as BrainMessage);
    // …and through the codec with byte damage, as it would arrive.
    let wire: Uint8Array;
    try {
      wire = encodeBrainMessage(m as unknown as BrainMessage);
    } catch {
      return;
    }
    if (field === "bytes") {
      wire = wire.slice(0, wire.length - (cut % 3 === 0 ? cut % Math.max(1, wire.length) : 0));
      for (const { at, b } of bytes) if (wire.length > 0) wire[at % wire.length] = b;
    }
    const d = decodeBrainMessage(wire);
    if (d.ok) check(d.msg);
  }), { numRuns: 2000, seed: 43 });
  // The fuzzing met every kind of answer, not only one refusal.
  for (const key of ["stage-res", "tp-res", "partial-res", "session", "order", "range", "weights"]) assert.ok((codes.get(key) ?? 0) > 0, `never saw ${key}: ${JSON.stringify([...codes])}`);
  // And the worker still computes correctly afterwards.
  const after = network(MID, params);
  after.peers.set("b", { worker: w, serve: honest(after, "b", w) });
  for (const mode of MODES) {
    const { session, whole } = exercise(MID, params, after, mode, 44);
    for (const o of [session, ...whole]) {
      assert.equal(o.mode, "FULL");
      assert.ok(o.max <= TOL);
    }
  }
});

test("speeds weight the split; a block position policy keeps dkva exact and FULL", () => {
  const params = randomParams(MID, 45, 0.3);
  const rng = createRng(46);
  const { ids, values } = randomSequence(rng, MID, 14);
  const want = referenceSteps(MID, params, ids, values);
  for (const mode of ["pipeline", "tensor"] as const) {
    const net = network(MID, params);
    const coord = new Coordinator(MID, params);
    // c has speed 0: no layers, heads or columns, so it is never asked.
    const r = run(coord, net, { mode, ids, values, peers: ["b", "c"], speeds: [1, 2, 0] });
    assert.equal(r.mode, "FULL");
    assert.ok(maxDiff(r.logits, want[13]!) <= TOL);
    assert.ok(net.requests.length > 0 && net.requests.every((m) => m.t !== "end-session"));
    assert.equal(r.roundTrips, net.calls);
    const calls = net.calls;
    net.peers.delete("c"); // unreachable now, but it has nothing to do
    const again = run(coord, net, { mode, ids, values, peers: ["b", "c"], speeds: [1, 2, 0] });
    assert.equal(again.mode, "FULL");
    assert.equal(net.calls, 2 * calls);
  }
  for (const blockSize of [1, 3, 5, 64]) {
    const net = network(MID, params);
    const coord = new Coordinator(MID, params, { positionPolicy: "block", blockSize });
    for (let t = 0; t < ids.length; t++) {
      const r = run(coord, net, { mode: "dkva", session: "blk", ids: ids.subarray(t, t + 1), values: values.subarray(t, t + 1), peers: ["b", "c"] });
      assert.equal(r.mode, "FULL", `block ${blockSize}, token ${t}: ${JSON.stringify(net.errors)}`);
      assert.ok(maxDiff(r.logits, want[t]!) <= TOL);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// 5. The Coordinator as a state machine: deadlines in ticks, who may answer, queues, ends

test("coordinator state machine: a call fails at its deadline tick, answers from others or late are refused, gone fails at once", () => {
  const params = randomParams(MID, 51, 0.3);
  const rng = createRng(52);
  const { ids, values } = randomSequence(rng, MID, 6);
  const want = forward(MID, params, ids, values).slice();
  let nextCall = 1000;
  const coord = new Coordinator(MID, params, { callDeadlineTicks: 5, callId: () => nextCall++ });
  // A run that needs no peer ends inside start().
  const solo = coord.start({ mode: "pipeline", ids, values, peers: [] });
  const soloReady = coord.ready();
  assert.deepEqual(soloReady.sends, []);
  assert.equal(soloReady.outcomes.length, 1);
  assert.equal(soloReady.outcomes[0]!.run, solo);
  assert.ok(coord.idle);

  // Pipeline over b: one stage-req with the injected call id; nobody answers.
  const run1 = coord.start({ mode: "pipeline", ids, values, peers: ["b"] });
  const r1 = coord.ready();
  assert.equal(r1.outcomes.length, 0);
  assert.equal(r1.sends.length, 1);
  const { to, call, msg } = r1.sends[0]!;
  assert.equal(to, "b");
  assert.equal(call, 1000);
  assert.equal(msg.t, "stage-req");
  assert.equal(coord.advance(), false, "a pipeline stage has nothing to compute meanwhile");
  assert.ok(!coord.idle);
  // An answer from another member is not taken; the call stays pending.
  const answer = new BrainWorker(MID, params).handle(msg);
  assert.equal(coord.step("c", call, answer), false);
  for (let t = 1; t < 5; t++) {
    coord.tick();
    assert.equal(coord.ready().outcomes.length, 0, `tick ${t}: before the deadline`);
  }
  coord.tick(); // the 5th tick after the send: the deadline
  const out = coord.ready().outcomes;
  assert.equal(out.length, 1);
  assert.ok(out[0]!.ok && out[0]!.run === run1);
  const result = out[0]!.ok ? out[0]!.result : undefined;
  assert.equal(result?.mode, "SOLO");
  assert.deepEqual(result?.dropped, ["b"]);
  assert.ok(maxDiff(result!.logits, want) <= TOL);
  assert.equal(coord.stats.timedOut, 1);
  // The late answer is refused.
  assert.equal(coord.step("b", call, answer), false);
  assert.ok(coord.idle);

  // Tensor over b and c: the requests leave first; advance() computes this node's share; c is declared gone.
  const run2 = coord.start({ mode: "tensor", ids, values, peers: ["b", "c"] });
  const r2 = coord.ready();
  assert.deepEqual(r2.sends.map((s) => s.to), ["b", "c"]);
  assert.equal(coord.advance(), true);
  const worker = new BrainWorker(MID, params);
  assert.ok(coord.step("b", r2.sends[0]!.call, worker.handle(r2.sends[0]!.msg)));
  coord.peerGone("c");
  assert.equal(coord.stats.failed, 1);
  // From here b answers everything at once; c is not asked again.
  for (let guard = 0; guard < 100 && coord.hasReady(); guard++) {
    const { sends, outcomes } = coord.ready();
    if (outcomes.length > 0) {
      assert.equal(outcomes[0]!.run, run2);
      assert.ok(outcomes[0]!.ok);
      if (outcomes[0]!.ok) {
        assert.equal(outcomes[0]!.result.mode, "REDUCED");
        assert.deepEqual(outcomes[0]!.result.dropped, ["c"]);
        assert.ok(maxDiff(outcomes[0]!.result.logits, want) <= TOL);
      }
    }
    assert.ok(sends.every((s) => s.to === "b"));
    coord.advance();
    for (const s of sends) assert.ok(coord.step("b", s.call, worker.handle(s.msg)));
  }
  assert.ok(coord.idle);
  // An undecodable answer (null) fails its call at once.
  coord.start({ mode: "pipeline", ids, values, peers: ["b"] });
  const r3 = coord.ready();
  assert.ok(coord.step("b", r3.sends[0]!.call, null));
  const o3 = coord.ready().outcomes[0]!;
  assert.ok(o3.ok && o3.result.mode === "SOLO" && o3.result.dropped[0] === "b");
});

test("coordinator state machine: a session's runs queue (bounded), end() waits for the run in progress, then tells the peers", () => {
  const cfg: ModelConfig = { ...MID, seqLen: 80, nLayers: 2 };
  const params = randomParams(cfg, 53, 0.3);
  const net = network(cfg, params);
  const coord = new Coordinator(cfg, params);
  const rng = createRng(54);
  const { ids, values } = randomSequence(rng, cfg, 2);
  const one = (t: number): RunRequest => ({ mode: "pipeline", session: "s", ids: ids.subarray(t, t + 1), values: values.subarray(t, t + 1), peers: ["b", "c"] });
  const first = coord.start(one(0));
  const queued: number[] = [];
  // The first run waits for its stage; 64 more may queue behind it, not 65.
  const long = { mode: "pipeline" as const, session: "s", ids: new Int32Array(1), values: [0], peers: ["b", "c"] };
  for (let k = 0; k < 64; k++) queued.push(coord.start(long));
  assert.throws(() => coord.start(long), /64 runs queued/);
  coord.end("s");
  assert.throws(() => coord.start(long), /ending/);
  assert.equal(coord.sessionCount, 1, "ended only after its runs");
  const results = drive(coord, net, [first, ...queued]);
  results.forEach((r, k) => assert.equal(r.length, k + 1));
  assert.equal(coord.sessionCount, 0);
  for (const p of net.peers.values()) assert.equal(p.worker.sessionCount, 0, "end-session reached the peers");
  assert.ok(coord.idle);
});
