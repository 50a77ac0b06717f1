// moe: mixture-of-experts routing across nodes by *measured* per-class accuracy (sans-IO).
//
// A gate model classifies the input; the caller passes the gate's class. The router sends the
// input to the live node that is best at that class, where "best" is measured by the router's own
// labelled probe queries (recordProbe), never by what nodes claim: there is no API through which a
// node can state its accuracy. Probes must be indistinguishable from real queries (same message,
// same path), or a node could answer probes well and real traffic badly.
//
// Choosing the best node is a bandit problem (anchors-brain.md §8.1): a node's measured accuracy
// is uncertain after few probes, and "route to the best historical accuracy" locks onto an early
// leader. So `route` ranks live nodes by UCB1 (Auer, Cesa-Bianchi, Fischer 2002):
//   ucb_i = mean_i + √(2·ln t / n_i),   n_i = node i's probes of that class, t = Σ over live nodes;
// a live node with no probe of that class ranks first (UCB1 tries every arm once); ties are
// broken with the injected rng. If no live node has a probe of that class, the same rule runs on
// each node's probes pooled over all classes; if none has any probe at all, a live node is chosen
// uniformly. `route` itself counts nothing: only recordProbe moves the counts (a caller that later
// learns a routed query's true label may feed it back through recordProbe).
//
// Bounded state: per node and class, a sliding window of the last `window` probe outcomes (a ring
// of bits; default MOE_WINDOW_DEFAULT), so a node that degrades is noticed and memory is
// O(nodes·classes·window); at most `nodesMax` nodes are tracked, evicting the one probed least
// recently.
//
// What the original got wrong (pkernel-catalog.md §2.23): nodes broadcast their own accuracy
// (computed as per-class hits over *all* inferences), nobody read it, and the gate was a
// temperature threshold.
import type { Rng } from "../util/rng.ts";
import { LIMITS } from "../util/limits.ts";
import { shuffle } from "../util/rng.ts";

/** Probe outcomes remembered per (node, class). */
export const MOE_WINDOW_DEFAULT = 100;
export const MOE_WINDOW_MAX = LIMITS.moe.windowMax;
/** Nodes tracked at once (LIMITS.moe). */
export const MOE_NODES_MAX = LIMITS.moe.nodesMax;
/** Probes one planProbes call may plan in total (LIMITS.moe). */
export const MOE_PROBE_PLAN_MAX = LIMITS.moe.probePlanMax;

export interface MoeRouterOptions {
  /** Number of classes the gate and the experts output. Default 3. */
  readonly classes?: number;
  /** Sliding-window length per (node, class). Default MOE_WINDOW_DEFAULT. */
  readonly window?: number;
  /** Nodes tracked at once. Default MOE_NODES_MAX. */
  readonly nodesMax?: number;
}

export interface MoeRow {
  readonly node: string;
  readonly class: number;
  /** Probes of this class in the window. */
  readonly probes: number;
  readonly correct: number;
  /** correct / probes; null before the first probe. */
  readonly accuracy: number | null;
  /** UCB1 with t over all tracked nodes; null before the first probe (ranks first). */
  readonly ucb: number | null;
}

export type RouteReason = "untried" | "ucb" | "pooled-untried" | "pooled-ucb" | "random";

export interface RouteDecision {
  readonly node: string;
  readonly reason: RouteReason;
  /** The chosen node's UCB score (Infinity when untried; NaN for "random"). */
  readonly ucb: number;
}

export interface PlannedProbe {
  readonly node: string;
  /** Class of the labelled example to send. */
  readonly probeClass: number;
}

class Window {
  readonly #bits: Uint8Array;
  #head = 0;
  count = 0;
  correct = 0;

  constructor(size: number) {
    this.#bits = new Uint8Array(size);
  }

  push(hit: boolean): void {
    const size = this.#bits.length;
    if (this.count === size) this.correct -= this.#bits[this.#head] as number;
    else this.count++;
    const bit = hit ? 1 : 0;
    this.#bits[this.#head] = bit;
    this.correct += bit;
    this.#head = (this.#head + 1) % size;
  }
}

interface NodeState {
  readonly windows: Window[];
  lastProbe: number;
}

/** UCB1 score; Infinity for an untried arm. */
function ucb1(correct: number, n: number, t: number): number {
  if (n === 0) return Infinity;
  return correct / n + Math.sqrt((2 * Math.log(Math.max(t, 1))) / n);
}

export class MoeRouter {
  readonly #classes: number;
  readonly #window: number;
  readonly #nodesMax: number;
  readonly #nodes = new Map<string, NodeState>();
  #seq = 0;

  constructor(opts: MoeRouterOptions = {}) {
    const classes = opts.classes ?? 3;
    const window = opts.window ?? MOE_WINDOW_DEFAULT;
    const nodesMax = opts.nodesMax ?? MOE_NODES_MAX;
    if (!Number.isInteger(classes) || classes < 1 || classes > LIMITS.moe.classesMax) throw new RangeError(`classes must be an integer in 1..${LIMITS.moe.classesMax}, got ${classes}`);
    if (!Number.isInteger(window) || window < 1 || window > MOE_WINDOW_MAX) throw new RangeError(`window must be an integer in 1..${MOE_WINDOW_MAX}, got ${window}`);
    if (!Number.isInteger(nodesMax) || nodesMax < 1 || nodesMax > MOE_NODES_MAX) throw new RangeError(`nodesMax must be an integer in 1..${MOE_NODES_MAX}, got ${nodesMax}`);
    this.#classes = classes;
    this.#window = window;
    this.#nodesMax = nodesMax;
  }

  #checkClass(c: number, what: string): void {
    if (!Number.isInteger(c) || c < 0 || c >= this.#classes) throw new RangeError(`${what} must be an integer in 0..${this.#classes - 1}, got ${c}`);
  }

  /**
   * The outcome of one labelled probe the router sent to `node`: the example's true class and the
   * class the node answered. An answer that is not a valid class counts as wrong.
   */
  recordProbe(node: string, trueClass: number, predictedClass: number): void {
    this.#checkClass(trueClass, "trueClass");
    let state = this.#nodes.get(node);
    if (state === undefined) {
      if (this.#nodes.size >= this.#nodesMax) this.#evictOldest();
      state = { windows: Array.from({ length: this.#classes }, () => new Window(this.#window)), lastProbe: 0 };
      this.#nodes.set(node, state);
    }
    state.lastProbe = ++this.#seq;
    (state.windows[trueClass] as Window).push(predictedClass === trueClass);
  }

  #evictOldest(): void {
    let oldest: string | undefined;
    let oldestSeq = Infinity;
    for (const [id, s] of this.#nodes) {
      if (s.lastProbe < oldestSeq) {
        oldestSeq = s.lastProbe;
        oldest = id;
      }
    }
    if (oldest !== undefined) this.#nodes.delete(oldest);
  }

  /** Drops everything measured about `node` (it left, or was replaced). */
  forget(node: string): void {
    this.#nodes.delete(node);
  }

  /** (probes, correct) of `node` for class `c`, or pooled over all classes when c is undefined. */
  #counts(node: string, c: number | undefined): { n: number; correct: number } {
    const state = this.#nodes.get(node);
    if (state === undefined) return { n: 0, correct: 0 };
    if (c !== undefined) {
      const w = state.windows[c] as Window;
      return { n: w.count, correct: w.correct };
    }
    let n = 0;
    let correct = 0;
    for (const w of state.windows) {
      n += w.count;
      correct += w.correct;
    }
    return { n, correct };
  }

  /** UCB1 choice among `nodes` on class c (or pooled); undefined if no node has data. */
  #ucbChoice(nodes: readonly string[], c: number | undefined, rng: Rng): { node: string; untried: boolean; ucb: number } | undefined {
    const counts = nodes.map((node) => ({ node, ...this.#counts(node, c) }));
    const t = counts.reduce((s, x) => s + x.n, 0);
    if (t === 0) return undefined;
    const untried = counts.filter((x) => x.n === 0);
    if (untried.length > 0) return { node: (untried[rng.int(untried.length)] as { node: string }).node, untried: true, ucb: Infinity };
    let best = -Infinity;
    let ties: string[] = [];
    for (const x of counts) {
      const u = ucb1(x.correct, x.n, t);
      if (u > best) {
        best = u;
        ties = [x.node];
      } else if (u === best) {
        ties.push(x.node);
      }
    }
    return { node: ties.length === 1 ? (ties[0] as string) : (ties[rng.int(ties.length)] as string), untried: false, ucb: best };
  }

  /** The routing decision with its reason; undefined when no node is live. */
  decide(gateClass: number, liveNodes: readonly string[], rng: Rng): RouteDecision | undefined {
    this.#checkClass(gateClass, "gateClass");
    const live = [...new Set(liveNodes)];
    if (live.length === 0) return undefined;
    const byClass = this.#ucbChoice(live, gateClass, rng);
    if (byClass !== undefined) return { node: byClass.node, reason: byClass.untried ? "untried" : "ucb", ucb: byClass.ucb };
    const pooled = this.#ucbChoice(live, undefined, rng);
    if (pooled !== undefined) return { node: pooled.node, reason: pooled.untried ? "pooled-untried" : "pooled-ucb", ucb: pooled.ucb };
    return { node: live[rng.int(live.length)] as string, reason: "random", ucb: NaN };
  }

  /** The live node to send an input of gate class `gateClass` to; undefined when none is live. */
  route(gateClass: number, liveNodes: readonly string[], rng: Rng): string | undefined {
    return this.decide(gateClass, liveNodes, rng)?.node;
  }

  /**
   * `probesPerNode` probes for each live node, each asking for the class that node has the fewest
   * probes of (window counts plus those already planned; ties by rng), so every (node, class)
   * gets measured; the list is shuffled so probes to one node are interleaved with others.
   */
  planProbes(rng: Rng, liveNodes: readonly string[], probesPerNode: number): PlannedProbe[] {
    const live = [...new Set(liveNodes)];
    if (!Number.isInteger(probesPerNode) || probesPerNode < 0) throw new RangeError(`probesPerNode must be a non-negative integer, got ${probesPerNode}`);
    if (live.length * probesPerNode > MOE_PROBE_PLAN_MAX) {
      throw new RangeError(`${live.length}×${probesPerNode} probes exceed MOE_PROBE_PLAN_MAX (${MOE_PROBE_PLAN_MAX})`);
    }
    const plan: PlannedProbe[] = [];
    for (const node of live) {
      const load = Array.from({ length: this.#classes }, (_, c) => this.#counts(node, c).n);
      for (let p = 0; p < probesPerNode; p++) {
        const least = Math.min(...load);
        const candidates = load.flatMap((v, c) => (v === least ? [c] : []));
        const probeClass = candidates[rng.int(candidates.length)] as number;
        load[probeClass] = (load[probeClass] as number) + 1;
        plan.push({ node, probeClass });
      }
    }
    return shuffle(rng, plan);
  }

  /** One row per tracked node and class, nodes in id order, for the `moe` shell command. */
  table(): MoeRow[] {
    const totals = Array.from({ length: this.#classes }, () => 0);
    for (const s of this.#nodes.values()) s.windows.forEach((w, c) => { totals[c] = (totals[c] as number) + w.count; });
    const rows: MoeRow[] = [];
    for (const node of [...this.#nodes.keys()].sort()) {
      const s = this.#nodes.get(node) as NodeState;
      s.windows.forEach((w, c) => {
        rows.push({
          node,
          class: c,
          probes: w.count,
          correct: w.correct,
          accuracy: w.count === 0 ? null : w.correct / w.count,
          ucb: w.count === 0 ? null : ucb1(w.correct, w.count, totals[c] as number),
        });
      });
    }
    return rows;
  }

  /** Nodes currently tracked. */
  get size(): number {
    return this.#nodes.size;
  }
}
