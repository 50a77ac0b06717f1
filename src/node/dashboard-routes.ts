// GET /v1/dashboard: one read-only snapshot of what the dashboard (web/) shows beside the status
// and the event stream — the Raft log and the key-value store, topics, the shared folder, the
// Brain (model, counters, federated rounds, GA, the MoE router), the Self layer's minds and
// memory, and Evolution (programs, rollouts with their canary health, the evolve log). Everything
// comes from the kernel's public view (view.ts); nothing is driven. Every list is cut to a named
// bound (DASHBOARD_DEFAULTS) and says how many there were, so a busy cluster costs the page a
// bounded answer. Authenticated like every route but status and metrics (src/adapters/http.ts).
import type { ApiRoute } from "../adapters/http.ts";
import { SEED_CLASSES } from "../core/brain/transformer.ts";
import type { NodeView } from "./view.ts";

/** The bounds of the snapshot's lists. */
export const DASHBOARD_DEFAULTS = Object.freeze({
  /** Key-value keys listed (the first in key order). */
  kvKeysMax: 32,
  /** Gossip topics listed. */
  topicsMax: 64,
  /** Shared-folder entries listed. */
  filesMax: 64,
  /** Federated rounds listed (the latest). */
  roundsMax: 20,
  /** MoE router rows listed. */
  moeRowsMax: 48,
  /** Minds listed. */
  mindsMax: 32,
  /** Programs listed. */
  programsMax: 32,
  /** Rollouts listed, and health rows per rollout. */
  rolloutsMax: 16,
  healthRowsMax: 32,
  /** Evolve log steps (the latest) and pending approvals. */
  evolveStepsMax: 40,
  pendingMax: 16,
  /** Characters kept of any free text (an error, a log step, a reason). */
  textCharsMax: 300,
});

/** A bounded list: its first `max` items and how many there were. */
function bounded<T, U>(items: readonly T[], max: number, map: (item: T) => U): { items: U[]; total: number } {
  return { items: items.slice(0, max).map(map), total: items.length };
}

function cut(text: string | undefined | null): string | null {
  if (text === undefined || text === null) return null;
  return text.length > DASHBOARD_DEFAULTS.textCharsMax ? `${text.slice(0, DASHBOARD_DEFAULTS.textCharsMax)}…` : text;
}

/** A subsystem's part of the snapshot, or its error: one broken part does not hide the others. */
function part<T>(fn: () => T): T | { error: string } {
  try {
    return fn();
  } catch (error) {
    return { error: cut(error instanceof Error ? error.message : String(error)) ?? "unknown" };
  }
}

/** The body of GET /v1/dashboard. */
export function dashboardOf(kernel: NodeView): Record<string, unknown> {
  const d = DASHBOARD_DEFAULTS;
  return {
    id: kernel.id,
    uptimeMs: Math.round(kernel.uptimeMs),
    tick: kernel.tickCount,
    modeHistory: kernel.modeHistory.slice(-8),
    raft: part(() => {
      const status = kernel.consensus.status();
      const kv = kernel.consensus.kv;
      const keys = kv.keys("", d.kvKeysMax);
      return {
        term: status.term, leader: status.lead === "" ? null : status.lead, commit: status.commit, applied: status.applied, role: status.role,
        confEpoch: kernel.consensus.confEpoch,
        kv: { keys: kv.size, bytes: kv.bytes, first: keys.map(([key, r]) => ({ key: cut(key), revision: r.revision, bytes: r.value.length })) },
      };
    }),
    topics: part(() => bounded(kernel.gossip.topics(), d.topicsMax, (t) => ({ name: cut(t.topic), keys: t.keys }))),
    sharedFolder: part(() => {
      const folder = kernel.sharedFolder;
      if (folder === undefined) return null;
      const core = folder.core;
      const views = core.list("", d.filesMax + 1);
      return {
        entries: core.size, transfers: core.transfers().length, freeBytes: core.freeBytes ?? null,
        files: { items: views.slice(0, d.filesMax).map((v) => ({
          path: cut(v.entry.path), dir: v.entry.dir, size: v.entry.size, version: `${v.entry.counter}/${v.entry.origin.slice(0, 8)}`,
          state: v.local === "fetching" && v.progress !== undefined && v.progress.chunks > 0 ? `fetching ${Math.floor((100 * v.progress.written) / v.progress.chunks)}%` : v.local,
        })), total: core.size },
      };
    }),
    brain: part(() => {
      const brain = kernel.brain;
      const model = brain.model;
      const metrics = model.header.metrics ?? {};
      const c = brain.counters;
      return {
        model: {
          version: model.header.version, kind: model.header.kind, origin: model.header.origin, tag: model.tag, chain: brain.chainLength,
          heldOutAccuracy: metrics.heldOutAccuracy ?? null, baselineAccuracy: metrics.baselineAccuracy ?? null,
          shape: { dModel: model.cfg.dModel, heads: model.cfg.nHeads, layers: model.cfg.nLayers, ffn: model.cfg.dFF, positions: model.cfg.seqLen },
        },
        core: brain.core,
        training: cut(brain.training),
        lastTrain: brain.lastTrain === undefined ? null : { epochs: brain.lastTrain.epochs, loss: brain.lastTrain.finalLoss, heldOutAccuracy: brain.lastTrain.heldOutAccuracy ?? null },
        inferences: { ...c.inferences },
        fallbacks: { reduced: c.reduced, solo: c.solo },
        calls: { sent: c.callsSent, timedOut: c.callsTimedOut, failed: c.callsFailed, served: c.requestsServed },
        spotChecks: { audited: c.audited, checked: c.checked, caught: c.caught, banned: brain.cheaters.length },
        modelFiles: { loaded: c.modelLoads, refused: c.modelRejected, untrusted: c.modelUntrusted, lastError: cut(c.lastModelError) },
        rounds: bounded(brain.rounds.slice(-d.roundsMax), d.roundsMax, (r) => ({
          round: r.round, participants: r.participants.length, failed: r.failed.length, rule: r.rule, rejected: r.rejected, heldOutAccuracy: r.heldOutAccuracy,
        })),
        roundsTotal: brain.rounds.length,
        ga: {
          enabled: brain.gaEnabled, generations: brain.ga.generations, kept: brain.ga.kept, followed: brain.ga.followed, refused: brain.ga.refused,
          lastLoss: brain.ga.lastLoss ?? null, blocker: cut(brain.gaIdleBlocker()), lastError: cut(brain.ga.lastError === "" ? undefined : brain.ga.lastError),
        },
        moe: bounded(brain.router.table(), d.moeRowsMax, (r) => ({ node: r.node, class: SEED_CLASSES[r.class] ?? String(r.class), probes: r.probes, accuracy: r.accuracy })),
      };
    }),
    minds: part(() => bounded(kernel.minds.list(), d.mindsMax, (m) => ({
      name: cut(m.info.name), kind: m.info.kind, provider: m.info.provider, model: cut(m.info.model), node: m.info.node, here: m.here,
      latencyMs: m.stats?.latencyMs ?? null, successes: m.stats?.successes ?? 0, failures: m.stats?.failures ?? 0, lastError: cut(m.stats?.lastError),
    }))),
    memory: part(() => {
      const s = kernel.memory.stats();
      return { memories: s.memories, redacted: s.redacted, superseded: s.superseded, origins: s.origins, speakers: s.speakers, textBytes: s.textBytes };
    }),
    programs: part(() => bounded(kernel.programs.list(), d.programsMax, (p) => ({
      name: cut(p.name), version: cut(p.version), hook: p.hook, attached: p.attached, track: p.track, runs: p.stats.runs,
      errors: Object.values(p.stats.failures).reduce((a: number, b) => a + (b ?? 0), 0), memoryPeak: p.stats.memoryPeak, lastError: cut(p.stats.lastError),
    }))),
    rollouts: part(() => {
      const rollouts = kernel.programs.rollouts;
      const health = rollouts.health();
      const held = rollouts.names().flatMap((name) => {
        const h = rollouts.held(name);
        return h === undefined ? [] : [h];
      });
      const model = rollouts.modelVerdict();
      return {
        ...bounded(held, d.rolloutsMax, ({ record: r, untrusted }) => ({
          name: cut(r.name), version: cut(r.version), from: r.from === null ? null : cut(r.from.version), phase: r.phase, refused: cut(untrusted),
          canary: r.canary, startedMs: r.startedMs, windowMs: r.windowMs, decidedBy: r.decidedBy ?? null, reason: cut(r.reason),
          health: bounded(health.filter((h) => h.name === r.name), d.healthRowsMax, (h) => ({
            node: h.node, version: cut(h.version), canary: r.canary.includes(h.node) && h.version === r.version, runs: h.runs, failures: h.failures,
            memoryPeak: h.memoryPeak, probeMs: h.probe === null ? null : h.probe.msAvg, probeFailed: h.probe === null ? null : h.probe.failed,
            accuracy: h.accuracy === null ? null : h.accuracy.with, accuracyWithout: h.accuracy === null ? null : h.accuracy.without, loopDelayMs: h.loopDelayMs,
          })),
        })),
        model: model === undefined ? null : { version: model.version, verdict: model.verdict, reason: cut(model.reason) },
      };
    }),
    evolve: part(() => ({
      log: kernel.evolver.log(d.evolveStepsMax).map((s) => ({ atMs: s.atMs, node: s.node, step: s.step, text: cut(s.text) })),
      pending: bounded(kernel.evolver.pending, d.pendingMax, (p) => ({ n: p.n, line: cut(p.line), reason: cut(p.reason) })),
    })),
  };
}

export function dashboardRoutes(kernel: NodeView): ApiRoute[] {
  return [{
    path: "/v1/dashboard",
    handle(req, res, http) {
      http.methods(req, ["GET"]);
      http.sendJson(res, 200, dashboardOf(kernel), { "Cache-Control": "no-store" });
    },
  }];
}
