// Shell commands of the Brain (issue 6): infer, dtr, dkva, moe, fl. Sensor readings are given as
// standardised values (z-scores, the scale of the data generator, src/core/brain/data.ts), in the
// order temperature, humidity, pressure, light.
import { SEED_CLASSES, SEED_CONFIG, paramCount, type ModelConfig } from "../../core/brain/transformer.ts";
import type { BrainService, InferMode, InferOutcome } from "./service.ts";
import type { NodeContext } from "../context.ts";
import { resolveMember } from "../collective/commands.ts";
import type { NodeView as Kernel } from "../view.ts";
import { formatFields, formatTable, UsageError, type Command } from "../shell.ts";
import { ProgressEmitter } from "../../core/util/progress-line.ts";

/** The larger shape of the acceptance tests and the benchmark (3.3M parameters). */
export const LARGE_CONFIG: ModelConfig = Object.freeze({ vocab: 64, seqLen: 320, dModel: 256, nHeads: 8, dFF: 1024, nLayers: 4, nClasses: 3 });
const SHAPES: Readonly<Record<string, ModelConfig>> = { seed: SEED_CONFIG, large: LARGE_CONFIG };
const MODES: readonly InferMode[] = ["local", "pipeline", "tensor", "dkva"];

/** The sensor.prefilter program's work, for dtr stat. */
function prefilterLine(p: { readonly calls: number; readonly readings: number; readonly dropped: number; readonly failed: number; readonly program: string | undefined }): string {
  if (p.program === undefined) return "none (a program on the sensor.prefilter hook filters readings before the Brain)";
  return `${p.program}: ${p.calls} calls, dropped ${p.dropped}/${p.readings} readings${p.failed === 0 ? "" : `, ${p.failed} runs failed (readings passed unfiltered)`}`;
}

function pct(x: number | null | undefined): string {
  return x === null || x === undefined ? "-" : `${(100 * x).toFixed(1)}%`;
}

function sensorInput(args: readonly string[]): { ids: Int32Array; values: Float32Array } {
  if (args.length !== 4) throw new UsageError("needs four readings: t h p l (standardised values)");
  const values = args.map((a) => Number(a));
  if (values.some((v) => !Number.isFinite(v) || Math.abs(v) > 1e6)) throw new UsageError(`readings must be finite numbers: ${args.join(" ")}`);
  return { ids: Int32Array.from([0, 1, 2, 3]), values: Float32Array.from(values) };
}

/** An integer argument in [min, max], or its default when absent. */
function intArg(value: string | undefined, fallback: number, min: number, max: number, name: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${name} must be an integer ${min}..${max}`);
  return n;
}

function nameOf(kernel: Kernel, id: string): string {
  if (id === kernel.id) return "self";
  const m = kernel.memberStatuses().find((s) => s.id === id);
  return m === undefined || m.name === "" ? id : m.name;
}

/** How an inference ran: "local" (this node alone, by request), on one other node, or split in a parallel mode. */
type InferHow = { readonly kind: "local" } | { readonly kind: "remote"; readonly node: string } | { readonly kind: "split"; readonly mode: string };

/**
 * Where the inference was computed, in words. The outcome's `state` is the run's (FULL: every
 * peer answered; REDUCED: some dropped; SOLO: none took part) — not the cluster's mode, which is
 * named separately: a local inference on a FULL cluster is "this node only", never "SOLO".
 */
function whereRun(kernel: Kernel, o: InferOutcome, how: InferHow): string {
  const names = (ids: readonly string[]): string => ids.map((p) => nameOf(kernel, p)).join(", ");
  const cluster = `cluster ${kernel.mode}`;
  switch (how.kind) {
    case "local":
      return `computed on this node only (local inference); ${cluster}`;
    case "remote":
      return o.state === "SOLO" || o.dropped.length > 0
        ? `${nameOf(kernel, how.node)} did not answer: computed on this node instead; ${cluster}`
        : `computed on ${nameOf(kernel, how.node)}, the head here; ${cluster}`;
    case "split":
      if (o.state === "SOLO") return `${how.mode}: ${o.peers.length === 0 ? "no peer to split with" : `no peer answered (${names(o.dropped)})`}, computed on this node only; ${cluster}`;
      if (o.state === "REDUCED") return `${how.mode}: split with ${names(o.peers)}; ${names(o.dropped)} dropped, their share computed here; ${cluster}`;
      return `${how.mode}: split with ${names(o.peers)}, every peer answered; ${cluster}`;
  }
}

function describe(kernel: Kernel, brain: BrainService, o: InferOutcome, how: InferHow): string {
  const model = brain.model;
  const probs = o.probs.map((p, i) => `${model.cfg.nClasses === SEED_CLASSES.length ? SEED_CLASSES[i] : i} ${(100 * p).toFixed(1)}%`).join(", ");
  return `${o.label} (${probs})\n${whereRun(kernel, o, how)}; model v${o.modelVersion}; ${o.ms.toFixed(2)} ms`;
}

/** An inference as data (infer --json, dtr infer --json). */
function outcomeJson(kernel: Kernel, brain: BrainService, o: InferOutcome, how: InferHow): Record<string, unknown> {
  const classes = brain.model.cfg.nClasses === SEED_CLASSES.length ? SEED_CLASSES : undefined;
  return {
    label: o.label, class: o.class,
    probabilities: Object.fromEntries(o.probs.map((p, i) => [classes?.[i] ?? String(i), p])),
    ran: how.kind === "split" ? how.mode : how.kind, ...(how.kind === "remote" ? { node: how.node } : {}),
    run: o.state, peers: [...o.peers], dropped: [...o.dropped], clusterMode: kernel.mode,
    where: whereRun(kernel, o, how), modelVersion: o.modelVersion, ms: o.ms, roundTrips: o.roundTrips,
  };
}

/** `infer [NODE] T H P L`: the outcome and how it ran. */
async function inferCommand(kernel: Kernel, args: readonly string[]): Promise<{ o: InferOutcome; how: InferHow }> {
  const brain = kernel.brain;
  if (args.length === 5) {
    const node = resolveMember(kernel, args[0]!);
    if (node === kernel.id) throw new UsageError("that is this node: infer T H P L");
    const { ids, values } = sensorInput(args.slice(1));
    return { o: await brain.inferAt(node, ids, (await kernel.programs.prefilter(values)).values), how: { kind: "remote", node } };
  }
  const { ids, values } = sensorInput(args);
  return { o: await brain.infer("local", ids, (await kernel.programs.prefilter(values)).values), how: { kind: "local" } };
}

const infer: Command<NodeContext> = {
  name: "infer",
  summary: "classify sensor readings with the Brain, here or on another node",
  usage: "infer [NODE] T H P L",
  async run(args, { kernel }) {
    const { o, how } = await inferCommand(kernel, args);
    return describe(kernel, kernel.brain, o, how);
  },
  async json(args, { kernel }) {
    const { o, how } = await inferCommand(kernel, args);
    return outcomeJson(kernel, kernel.brain, o, how);
  },
};

const dtr: Command<NodeContext> = {
  name: "dtr",
  summary: "the distributed Transformer: model and counters, training, distributed inference, a new model of a shape",
  usage: "dtr stat | dtr train [EPOCHS] | dtr infer local|pipeline|tensor|dkva T H P L | dtr init seed|large [SEED]",
  async run(args, { kernel, stream }) {
    const brain = kernel.brain;
    const [sub, ...rest] = args;
    switch (sub ?? "stat") {
      case "stat": {
        const m = brain.model;
        const c = brain.counters;
        const metrics = m.header.metrics ?? {};
        const last = brain.lastTrain;
        return formatFields([
          ["model", `v${m.header.version} ${m.header.kind}${m.header.origin === "" ? "" : ` by ${nameOf(kernel, m.header.origin)}`}, tag ${m.tag}`],
          ["shape", `d_model ${m.cfg.dModel}, ${m.cfg.nHeads} heads, FFN ${m.cfg.dFF}, ${m.cfg.nLayers} layer${m.cfg.nLayers === 1 ? "" : "s"}, ${m.cfg.seqLen} positions, vocab ${m.cfg.vocab}, ${m.cfg.nClasses} classes: ${paramCount(m.cfg)} parameters`],
          ["held-out accuracy", metrics.heldOutAccuracy === undefined ? "-" : `${pct(metrics.heldOutAccuracy)} (best single-feature threshold ${pct(metrics.baselineAccuracy)})`],
          ["training", brain.training ?? (last === undefined ? "none here" : `last here: ${last.epochs} epochs, loss ${last.finalLoss.toFixed(4)}, held-out ${pct(last.heldOutAccuracy)}`)],
          ["local data", `${brain.localData.train} train, ${brain.localData.heldOut} held out, class priors ${brain.localData.classPriors.join(":")}`],
          ["inferences", MODES.map((mode) => `${mode} ${c.inferences[mode]}`).join(", ") + `, remote ${c.inferences.remote}, moe ${c.inferences.moe}; reduced ${c.reduced}, solo ${c.solo}`],
          ["rpc", `${c.callsSent} calls, ${c.callsTimedOut} timed out, ${c.callsFailed} failed; ${c.requestsServed} served, ${c.badMessages} bad`],
          ["model files", `${c.modelLoads} loaded, ${c.modelRejected} refused, ${c.modelUntrusted} untrusted (not signed by a core member)${c.lastModelError === "" ? "" : `; last: ${c.lastModelError}`}`],
          ["spot checks", `${c.audited} runs audited, ${c.checked} answers recomputed, ${c.caught} wrong${brain.cheaters.length === 0 ? "" : `; banned: ${brain.cheaters.map((p) => nameOf(kernel, p)).join(", ")}`}`],
          ["federated", `${c.fedRejected} updates rejected, ${c.trainRefused} training requests refused (sender not core)`],
          ["prefilter", prefilterLine(kernel.programs.prefilterStats)],
          ["role", brain.core ? "core: publishes models" : "contributor: does not publish models"],
        ]);
      }
      case "train": {
        const epochs = intArg(rest[0], brain.config.trainEpochs, 1, 1000, "EPOCHS");
        const lines: string[] = [];
        // A caller that takes a stream (pk shell) sees a progress bar (docs/protocols/progress.md).
        const bar = stream === undefined ? undefined : new ProgressEmitter(stream.out, () => performance.now());
        const { report, baseline, header } = await brain.train(epochs, (line) => lines.push(line), (at) => {
          bar?.report({ task: "train", done: at.step, total: at.steps, unit: "steps", stage: `epoch ${Math.min(at.epoch + 1, epochs)} of ${epochs}` });
        });
        bar?.finish();
        return [
          ...lines.filter((_, i) => i === 0 || i === lines.length - 1 || (i + 1) % 10 === 0),
          `held-out accuracy ${pct(report.heldOutAccuracy)} against ${pct(baseline)} for the best single-feature threshold (train ${pct(report.trainAccuracy)})`,
          `published model v${header.version} to /shared/brain/model.pkm`,
        ].join("\n");
      }
      case "infer": {
        const mode = rest[0] as InferMode | undefined;
        if (mode === undefined || !MODES.includes(mode)) throw new UsageError(`MODE is one of ${MODES.join(", ")}`);
        const { ids, values } = sensorInput(rest.slice(1));
        return describe(kernel, brain, await brain.infer(mode, ids, values), mode === "local" ? { kind: "local" } : { kind: "split", mode });
      }
      case "init": {
        const shape = SHAPES[rest[0] ?? ""];
        if (shape === undefined) throw new UsageError(`SHAPE is one of ${Object.keys(SHAPES).join(", ")}`);
        const seed = intArg(rest[1], 1, 0, 0xffff_ffff, "SEED");
        const header = await brain.init(shape, seed);
        return `published model v${header.version} (${rest[0]}, ${paramCount(shape)} parameters, untrained) to /shared/brain/model.pkm`;
      }
      default:
        throw new UsageError("dtr stat | train [EPOCHS] | infer MODE T H P L | init SHAPE [SEED]");
    }
  },
};

const dkva: Command<NodeContext> = {
  name: "dkva",
  summary: "distributed KV attention: sessions and shards held here; with readings, a DKVA inference",
  usage: "dkva [T H P L]",
  async run(args, { kernel }) {
    const brain = kernel.brain;
    if (args.length > 0) {
      const { ids, values } = sensorInput(args);
      return describe(kernel, brain, await brain.infer("dkva", ids, values), { kind: "split", mode: "dkva" });
    }
    const m = brain.model;
    return formatFields([
      ["peers", brain.peers().map((p) => nameOf(kernel, p)).join(", ") || "none (a DKVA inference runs on this node alone)"],
      ["worker", `${m.worker.sessionCount} sessions, ${(m.worker.bytesReserved / 1048576).toFixed(1)} MiB of K/V reserved, ${m.worker.evictions} evicted`],
      ["coordinator", `${m.coordinator.sessionCount} sessions`],
      ["merge", "per head (m, l, o) from every shard, merged by log-sum-exp; positions round-robin over [this node, ...peers]"],
    ]);
  },
};

const moe: Command<NodeContext> = {
  name: "moe",
  summary: "mixture of experts: the router's measured accuracy per node and class; probe, train this node's expert, route",
  usage: "moe | moe probe [PER_CLASS] | moe train [EPOCHS] | moe infer T H P L",
  async run(args, { kernel }) {
    const brain = kernel.brain;
    const [sub, ...rest] = args;
    switch (sub) {
      case undefined: {
        const rows = brain.router.table().map((r) => [nameOf(kernel, r.node), SEED_CLASSES[r.class] ?? String(r.class), String(r.probes), String(r.correct), pct(r.accuracy)]);
        if (rows.length === 0) return "no probes yet: moe probe";
        return formatTable(["NODE", "CLASS", "PROBES", "CORRECT", "ACCURACY"], rows);
      }
      case "probe": {
        const per = intArg(rest[0], brain.config.probesPerClass, 1, 1000, "PER_CLASS");
        return `${await brain.probe(per)} probes answered`;
      }
      case "train": {
        const epochs = intArg(rest[0], 10, 1, 1000, "EPOCHS");
        const { version, heldOutAccuracy } = await brain.trainExpert(epochs);
        return `expert v${version} trained on this node's data: held-out ${pct(heldOutAccuracy)}`;
      }
      case "infer": {
        const { ids, values } = sensorInput(rest);
        const o = await brain.moeInfer(ids, values);
        return `gate: ${SEED_CLASSES[o.gateClass] ?? o.gateClass} → expert ${nameOf(kernel, o.expert)}\n${describe(kernel, brain, o, o.expert === kernel.id ? { kind: "local" } : { kind: "remote", node: o.expert })}`;
      }
      default:
        throw new UsageError("moe | probe [PER_CLASS] | train [EPOCHS] | infer T H P L");
    }
  },
};

const fl: Command<NodeContext> = {
  name: "fl",
  summary: "federated learning: rounds of local training on every node, aggregated here (FedAvg; trimmed mean with contributors)",
  usage: "fl train [ROUNDS] | fl status",
  async run(args, { kernel, stream }) {
    const brain = kernel.brain;
    const [sub, ...rest] = args;
    switch (sub ?? "status") {
      case "status": {
        const rows = brain.rounds.slice(-20).map((r) => [String(r.round), String(r.participants.length), String(r.failed.length), r.rule, String(r.rejected), pct(r.heldOutAccuracy)]);
        return rows.length === 0 ? `no rounds coordinated here${brain.training === undefined ? "" : ` (${brain.training} running)`}` : formatTable(["ROUND", "UPDATES", "FAILED", "RULE", "REJECTED", "HELD-OUT"], rows);
      }
      case "train": {
        const rounds = intArg(rest[0], 3, 1, 100, "ROUNDS");
        const lines: string[] = [];
        // Each round is reported when it is aggregated; a streamed caller sees a bar of rounds.
        const bar = stream === undefined ? undefined : new ProgressEmitter(stream.out, () => performance.now());
        bar?.report({ task: "fl-train", done: 0, total: rounds, unit: "rounds", stage: "round 1: local training on every node" });
        await brain.federated(rounds, (line) => {
          lines.push(line);
          const done = Math.min(rounds, lines.length);
          bar?.report({ task: "fl-train", done, total: rounds, unit: "rounds", ...(done < rounds ? { stage: `round ${done + 1}: local training on every node` } : {}) });
        });
        bar?.finish();
        return lines.join("\n");
      }
      default:
        throw new UsageError("fl train [ROUNDS] | fl status");
    }
  },
};

const ga: Command<NodeContext> = {
  name: "ga",
  summary: "the genetic algorithm: generations tried and kept, the seed chain; run generations now; on/off",
  usage: "ga | ga run [GENERATIONS] | ga on | ga off",
  run(args, { kernel }) {
    const brain = kernel.brain;
    const [sub, ...rest] = args;
    switch (sub) {
      case undefined:
        return formatFields([
          ["state", `${brain.gaEnabled ? "on" : "off"}: ${brain.config.gaEveryTicks > 0 ? `every ${(brain.config.gaEveryTicks * kernel.config.tickMs / 1000).toFixed(0)} s of idleness` : "a generation when the DMN finds the node idle (dmn)"} on the Raft leader (${kernel.consensus.isLeader ? "this node" : "not this node"}), once a model was published${brain.gaIdleBlocker() === undefined ? "" : `; not now: ${brain.gaIdleBlocker()}`}`],
          ["model", `v${brain.model.header.version} ${brain.model.header.kind}, ${brain.chainLength} mutations on top of the file, tag ${brain.model.tag}`],
          ["here", `${brain.ga.generations} generations run, ${brain.ga.kept} kept; ${brain.ga.followed} mutations followed from others, ${brain.ga.refused} refused, ${brain.ga.untrusted} untrusted, ${brain.ga.worse} heads worse here${brain.ga.lastError === "" ? "" : ` (${brain.ga.lastError})`}`],
          ["held-out loss", brain.ga.lastLoss === undefined ? "-" : brain.ga.lastLoss.toFixed(4)],
        ]);
      case "run": {
        const n = intArg(rest[0], 10, 1, 1000, "GENERATIONS");
        const r = brain.evolve(n);
        return `${n} generations, ${r.kept} kept: held-out loss ${r.before.toFixed(4)} → ${r.after.toFixed(4)}`;
      }
      case "on":
      case "off":
        brain.gaEnabled = sub === "on";
        return `ga ${sub}`;
      default:
        throw new UsageError("ga | ga run [GENERATIONS] | ga on | ga off");
    }
  },
};

export const BRAIN_COMMANDS: readonly Command<NodeContext>[] = [infer, dtr, dkva, moe, fl, ga];
