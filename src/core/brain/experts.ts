// experts: mixture-of-experts over real models (sans-IO glue between moe.ts's MoeRouter, the
// Transformer and the sensor data).
//
// An Expert answers a class for an input; in the cluster it is a remote node, here anything with
// `answer`. The router measures experts only with its own labelled probes: `runProbes` asks
// MoeRouter.planProbes which (node, class) to measure next, draws an example of that class from
// the router's own ProbeSource (never from a node), sends it like any query and records whether
// the answer matched. `routeQuery` lets the gate classify the input, routes it to the live expert
// with the best measured accuracy on the gate's class (UCB1 over the probe windows, moe.ts) and
// returns that expert's answer.
//
// A limitation of measuring by per-class accuracy (recall, as moe.ts does): a node that always
// answers class c scores 1.0 on probes of class c and will be sent the gate's class-c traffic (its
// answer is then the gate's own answer, so the damage is bounded by the gate's precision). Seen with
// random-weight models, which tend to answer one class for most inputs: std-1 random models
// measured 0.56–0.95 recall on their favourite class (seeds 1–4), the specialists 0.91–0.97 on
// theirs — close enough that a few probes can put a garbage node first for one class.
// Bucketing probe outcomes by the gate's class of the probe rather than its true class would
// measure exactly P(node right | gate says c), the quantity routing needs. Tried by hand (50 probes
// per bucket, seeds 1–4): with a trained gate routed accuracy 0.821 / 0.867 / 0.890 / 0.847 against
// 0.820 / 0.857 / 0.890 / 0.847 for the current rule; with the threshold gate 0.801 / 0.845 / 0.809
// / 0.786 against 0.802 / 0.758 / 0.821 / 0.798. Not clearly better, so moe.ts is unchanged.
import type { Rng } from "../util/rng.ts";
import { generateSensorData, NUM_CLASSES } from "./data.ts";
import type { MoeRouter, RouteReason } from "./moe.ts";
import { predict } from "./train.ts";
import { Workspace, type Example, type ModelConfig } from "./transformer.ts";

export type ExpertInput = Pick<Example, "ids" | "values">;

export interface Expert {
  readonly id: string;
  /** The expert's class for the input (an invalid class counts as wrong). */
  answer(input: ExpertInput): number;
}

/** Labelled examples of a requested class, owned by the router. */
export interface ProbeSource {
  example(cls: number): Example;
}

/** An expert backed by a local model (argmax of its logits). */
export function modelExpert(id: string, cfg: ModelConfig, params: Float32Array): Expert {
  const ws = new Workspace(cfg, Float32Array);
  return { id, answer: (input) => predict(cfg, params, input, ws) };
}

/**
 * Probes of the sensor generator: an example of class c drawn with class prior 1 on c and no label
 * noise, so the label is the class that generated the readings.
 */
export function sensorProbeSource(rng: Rng): ProbeSource {
  return {
    example(cls) {
      if (!Number.isInteger(cls) || cls < 0 || cls >= NUM_CLASSES) throw new RangeError(`probe class must be 0..${NUM_CLASSES - 1}, got ${cls}`);
      const classPriors: [number, number, number] = [cls === 0 ? 1 : 0, cls === 1 ? 1 : 0, cls === 2 ? 1 : 0];
      return generateSensorData(rng, 1, { skew: { classPriors }, labelNoise: 0 })[0] as Example;
    },
  };
}

/** One planned probe: the node to ask and the labelled example to ask it. */
export interface Probe {
  readonly node: string;
  readonly example: Example;
}

/**
 * `probesPerNode` probes for every node, planned by the router (the classes it measured least) and
 * drawn from `source`. The caller asks each node — in process (runProbes) or over the network (the
 * node's `moe probe`) — and records each answer with recordProbe.
 */
export function drawProbes(router: MoeRouter, rng: Rng, nodes: readonly string[], probesPerNode: number, source: ProbeSource): Probe[] {
  return router.planProbes(rng, nodes, probesPerNode).map(({ node, probeClass }) => ({ node, example: source.example(probeClass) }));
}

/** Scores one answer to a probe against its label (an invalid class counts as wrong). */
export function recordProbe(router: MoeRouter, probe: Probe, answer: number): void {
  router.recordProbe(probe.node, probe.example.label, answer);
}

/** drawProbes to every in-process expert, each answer recorded. Returns the probes sent. */
export function runProbes(router: MoeRouter, rng: Rng, experts: readonly Expert[], probesPerNode: number, source: ProbeSource): number {
  const byId = new Map(experts.map((e) => [e.id, e]));
  if (byId.size !== experts.length) throw new RangeError("expert ids must be distinct");
  const probes = drawProbes(router, rng, [...byId.keys()], probesPerNode, source);
  for (const probe of probes) recordProbe(router, probe, (byId.get(probe.node) as Expert).answer(probe.example));
  return probes.length;
}

export interface RoutedAnswer {
  readonly gateClass: number;
  readonly node: string;
  readonly reason: RouteReason;
  readonly answer: number;
}

/** Gate, route, ask: undefined when no expert is live. */
export function routeQuery(
  router: MoeRouter, rng: Rng, gate: (input: ExpertInput) => number, experts: readonly Expert[], input: ExpertInput,
): RoutedAnswer | undefined {
  const gateClass = gate(input);
  const decision = router.decide(gateClass, experts.map((e) => e.id), rng);
  if (decision === undefined) return undefined;
  const expert = experts.find((e) => e.id === decision.node) as Expert;
  return { gateClass, node: decision.node, reason: decision.reason, answer: expert.answer(input) };
}
