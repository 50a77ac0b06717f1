// Spot checks of distributed inference (src/core/brain/parallel.ts, `audit`): a Coordinator
// recomputes the answers of untrusted peers in a fraction of its runs and sessions. An honest
// contributor is never flagged, in any mode, over whole sequences and decode sessions (the
// coordinator mirrors exactly the K/V an honest peer holds); a contributor answering wrong is
// caught at its first audited answer, its share is computed locally (the result stays exact), and
// it is sent no more work; a trusted peer is not checked; the audited fraction is the one asked.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRng, type Rng } from "../../../src/core/util/rng.ts";
import { fillNormal, forward, KvCache, layout, paramCount, step, type ModelConfig } from "../../../src/core/brain/transformer.ts";
import { decodeBrainMessage, encodeBrainMessage, type BrainMessage } from "../../../src/core/brain/brain-wire.ts";
import {
  answerDiff, BrainWorker, Coordinator, type AuditOptions, type CaughtPeer, type CoordinatorOptions, type ParallelMode, type RunRequest, type RunResult,
} from "../../../src/core/brain/parallel.ts";

const MODES: readonly ParallelMode[] = ["pipeline", "tensor", "dkva"];
const TOL = 1e-5;
/** Every participant of 3 has a share in every mode. */
const MID: ModelConfig = { vocab: 8, seqLen: 24, dModel: 16, nHeads: 4, dFF: 32, nLayers: 3, nClasses: 3 };

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

/** How a peer answers: honestly, or with its answer changed (a cheater). */
type Tamper = (res: BrainMessage) => BrainMessage;

interface Peer {
  readonly worker: BrainWorker;
  /** Requests it received (end-session not counted). */
  requests: number;
  tamper: Tamper | undefined;
}

/** Peers "b" and "c" over the brain-wire codec both ways. */
function peers(cfg: ModelConfig, params: Float32Array): Map<string, Peer> {
  return new Map(["b", "c"].map((name) => [name, { worker: new BrainWorker(cfg, params), requests: 0, tamper: undefined }]));
}

function deliver(net: Map<string, Peer>, to: string, msg: BrainMessage): BrainMessage | null {
  const peer = net.get(to)!;
  const req = decodeBrainMessage(encodeBrainMessage(msg));
  assert.ok(req.ok);
  if (req.msg.t !== "end-session") peer.requests++;
  let res = peer.worker.handle(req.msg);
  assert.notEqual(res.t, "error", res.t === "error" ? `${to}: ${res.code} ${res.message}` : "");
  if (peer.tamper !== undefined) res = peer.tamper(res);
  const back = decodeBrainMessage(encodeBrainMessage(res));
  return back.ok ? back.msg : null;
}

/** Drives the coordinator until the runs are done; the results, and the peers it caught meanwhile. */
function drive(coord: Coordinator, net: Map<string, Peer>, runs: readonly number[], caught: CaughtPeer[]): RunResult[] {
  const results = new Map<number, RunResult>();
  while (coord.hasReady()) {
    const ready = coord.ready();
    caught.push(...ready.caught);
    for (const o of ready.outcomes) {
      assert.ok(o.ok, o.ok ? "" : o.error);
      results.set(o.run, o.result);
    }
    const answers = ready.sends.map(({ to, call, msg }) => [to, call, deliver(net, to, msg)] as const);
    coord.advance();
    for (const [from, call, a] of answers) if (call !== 0) coord.step(from, call, a);
  }
  return runs.map((r) => {
    assert.ok(results.has(r), "the run finished");
    return results.get(r)!;
  });
}

function run(coord: Coordinator, net: Map<string, Peer>, req: RunRequest, caught: CaughtPeer[]): RunResult {
  return drive(coord, net, [coord.start(req)], caught)[0]!;
}

function audit(fraction: number, seed: number, untrusted: (peer: string) => boolean = (p) => p === "b"): AuditOptions {
  return { fraction, tolerance: 1e-3, rng: createRng(seed, 0x6175), untrusted };
}

/** Single-node logits of every prefix via the KV cache. */
function referenceSteps(cfg: ModelConfig, params: Float32Array, ids: Int32Array, values: Float32Array): Float32Array[] {
  const cache = new KvCache(cfg);
  const out: Float32Array[] = [];
  for (let t = 0; t < ids.length; t++) out.push(step(cfg, params, cache, ids[t]!, values[t]!).slice());
  return out;
}

/** Adds `delta` to one element of every answer (of the last row): well-formed, finite, plausible, wrong. */
function nudge(delta: number): Tamper {
  return (res) => {
    const last = (x: Float32Array): void => {
      x[x.length - 1] = x[x.length - 1]! + delta;
    };
    if (res.t === "stage-res") last(res.hidden.data);
    else if (res.t === "tp-res") last(res.partial.data);
    else if (res.t === "partial-res" && res.l[0]! > 0) res.o[0] = res.o[0]! + delta;
    return res;
  };
}

test("answerDiff: the largest difference relative to max(1, |expected|); equal infinities agree, anything else non-finite is Infinity", () => {
  assert.equal(answerDiff([1, 2, 3], [1, 2, 3]), 0);
  assert.equal(answerDiff([0.5], [0.5001]), Math.abs(0.5 - 0.5001));
  assert.ok(Math.abs(answerDiff([200], [100]) - 1) < 1e-12, "relative above 1");
  assert.equal(answerDiff([-Infinity, 1], [-Infinity, 1]), 0);
  assert.equal(answerDiff([-Infinity], [0]), Infinity);
  assert.equal(answerDiff([NaN], [0]), Infinity);
  assert.equal(answerDiff([1, 2], [1]), Infinity);
});

test("audit: an honest contributor is never caught — every answer recomputed, whole sequences and sessions, every mode", () => {
  const cfg = MID;
  const params = randomParams(cfg, 31, 0.3);
  const rng = createRng(32);
  for (const mode of MODES) {
    const net = peers(cfg, params);
    const coord = new Coordinator(cfg, params, { audit: audit(1, 33) });
    const caught: CaughtPeer[] = [];
    for (let n = 0; n < 20; n++) {
      const { ids, values } = randomSequence(rng, cfg, 1 + rng.int(cfg.seqLen));
      const r = run(coord, net, { mode, ids, values, peers: ["b", "c"] }, caught);
      assert.equal(r.mode, "FULL");
      assert.ok(maxDiff(r.logits, forward(cfg, params, ids, values)) <= TOL);
    }
    // Two decode sessions, one token at a time and then a chunk: the shadow state carries over runs.
    for (const session of ["s1", "s2"]) {
      const { ids, values } = randomSequence(rng, cfg, cfg.seqLen);
      const want = referenceSteps(cfg, params, ids, values);
      for (let t = 0; t < 12; t++) {
        const r = run(coord, net, { mode, session, ids: ids.subarray(t, t + 1), values: values.subarray(t, t + 1), peers: ["b", "c"] }, caught);
        assert.equal(r.mode, "FULL");
        assert.ok(maxDiff(r.logits, want[t]!) <= TOL);
      }
      const r = run(coord, net, { mode, session, ids: ids.subarray(12), values: values.subarray(12), peers: ["b", "c"] }, caught);
      assert.ok(maxDiff(r.logits, want[cfg.seqLen - 1]!) <= TOL);
    }
    assert.deepEqual(caught, [], `${mode}: nobody caught`);
    assert.equal(coord.stats.caught, 0);
    assert.equal(coord.stats.audited, 22, `${mode}: every run with b is audited (20 whole, 2 sessions)`);
    assert.ok(coord.stats.checked >= 20, `${mode}: ${coord.stats.checked} answers checked`);
  }
});

test("audit: a contributor answering wrong is caught at its first audited answer, the result stays exact, and it gets no more work", () => {
  const cfg = MID;
  const params = randomParams(cfg, 41, 0.3);
  const rng = createRng(42);
  for (const mode of MODES) {
    for (const when of ["whole", "session"] as const) {
      const net = peers(cfg, params);
      const coord = new Coordinator(cfg, params, { audit: audit(1, 43) });
      const caught: CaughtPeer[] = [];
      const { ids, values } = randomSequence(rng, cfg, 10);
      const want = referenceSteps(cfg, params, ids, values);
      const b = net.get("b")!;
      b.tamper = nudge(0.05);
      let r: RunResult;
      if (when === "whole") {
        r = run(coord, net, { mode, ids, values, peers: ["b", "c"] }, caught);
        assert.ok(maxDiff(r.logits, want[9]!) <= TOL, `${mode}: the wrong share was computed here`);
      } else {
        // Honest for its first requests: caught mid-session, the session goes on without it.
        b.tamper = undefined;
        for (let t = 0; t < 4; t++) run(coord, net, { mode, session: "s", ids: ids.subarray(t, t + 1), values: values.subarray(t, t + 1), peers: ["b", "c"] }, caught);
        assert.deepEqual(caught, []);
        b.tamper = nudge(0.05);
        for (let t = 4; t < 10; t++) {
          r = run(coord, net, { mode, session: "s", ids: ids.subarray(t, t + 1), values: values.subarray(t, t + 1), peers: ["b", "c"] }, caught);
          assert.ok(maxDiff(r.logits, want[t]!) <= TOL, `${mode} session, token ${t}`);
        }
      }
      assert.equal(caught.length, 1, `${mode} ${when}: caught once`);
      assert.equal(caught[0]!.peer, "b");
      assert.equal(caught[0]!.mode, mode);
      assert.ok(caught[0]!.diff > 1e-3, `${caught[0]!.what}: off by ${caught[0]!.diff}`);
      assert.ok(coord.isBanned("b"));
      assert.equal(coord.stats.caught, 1);
      // No more work for b: a new whole run and a new session drop it at once; c still works.
      const before = b.requests;
      const again = run(coord, net, { mode, ids, values, peers: ["b", "c"] }, caught);
      assert.equal(again.mode, "REDUCED");
      assert.deepEqual(again.dropped, ["b"]);
      assert.ok(maxDiff(again.logits, want[9]!) <= TOL);
      const fresh = run(coord, net, { mode, session: "t", ids: ids.subarray(0, 3), values: values.subarray(0, 3), peers: ["b", "c"] }, caught);
      assert.deepEqual(fresh.dropped, ["b"]);
      assert.ok(maxDiff(fresh.logits, want[2]!) <= TOL);
      assert.equal(b.requests, before, `${mode} ${when}: the banned peer was sent nothing`);
    }
  }
});

test("audit: a peer banned while a session is open is dropped from that session's next run (its state rebuilt here)", () => {
  const cfg = MID;
  const params = randomParams(cfg, 51, 0.3);
  const rng = createRng(52);
  for (const mode of MODES) {
    const net = peers(cfg, params);
    const coord = new Coordinator(cfg, params, { audit: audit(0, 53) });
    const caught: CaughtPeer[] = [];
    const { ids, values } = randomSequence(rng, cfg, 8);
    const want = referenceSteps(cfg, params, ids, values);
    for (let t = 0; t < 4; t++) run(coord, net, { mode, session: "s", ids: ids.subarray(t, t + 1), values: values.subarray(t, t + 1), peers: ["b", "c"] }, caught);
    coord.ban("c");
    const before = net.get("c")!.requests;
    for (let t = 4; t < 8; t++) {
      const r = run(coord, net, { mode, session: "s", ids: ids.subarray(t, t + 1), values: values.subarray(t, t + 1), peers: ["b", "c"] }, caught);
      assert.deepEqual(r.dropped, ["c"]);
      assert.equal(r.mode, "REDUCED");
      assert.ok(maxDiff(r.logits, want[t]!) <= TOL, `${mode}: token ${t} after the ban`);
    }
    assert.equal(net.get("c")!.requests, before);
  }
});

test("audit: only untrusted peers are checked, and the fraction of audited runs is the one asked", () => {
  const cfg = MID;
  const params = randomParams(cfg, 61, 0.3);
  const rng = createRng(62);
  const { ids, values } = randomSequence(rng, cfg, 6);
  const want = forward(cfg, params, ids, values).slice();
  // A cheating core peer is trusted: not recomputed, so its wrong share goes into the result.
  const net = peers(cfg, params);
  net.get("c")!.tamper = nudge(0.05);
  const trusting = new Coordinator(cfg, params, { audit: audit(1, 63) });
  const caught: CaughtPeer[] = [];
  const r = run(trusting, net, { mode: "pipeline", ids, values, peers: ["b", "c"] }, caught);
  assert.deepEqual(caught, []);
  assert.ok(maxDiff(r.logits, want) > TOL, "the trusted peer's wrong answer was used");
  // 10% of 400 runs with a contributor among the peers; none when every peer is core.
  net.get("c")!.tamper = undefined;
  const options: CoordinatorOptions = { audit: audit(0.1, 64) };
  const sampled = new Coordinator(cfg, params, options);
  for (let n = 0; n < 400; n++) run(sampled, net, { mode: "tensor", ids, values, peers: ["b", "c"] }, caught);
  assert.ok(sampled.stats.audited >= 20 && sampled.stats.audited <= 65, `${sampled.stats.audited} of 400 audited`);
  const allCore = new Coordinator(cfg, params, { audit: audit(1, 65, () => false) });
  for (let n = 0; n < 20; n++) run(allCore, net, { mode: "tensor", ids, values, peers: ["b", "c"] }, caught);
  assert.equal(allCore.stats.audited, 0);
  assert.deepEqual(caught, []);
});
