// A linearizability checker: the Wing–Gong–Lowe search with Lowe's state cache and
// P-compositionality (a history is linearizable iff each of its partitions is, e.g. one per key),
// the algorithm Porcupine implements (Athalye; Lowe, "Testing for linearizability", 2017).
//
// A history is a set of operations, each with a call and a return time; an operation whose
// outcome is unknown (a client timed out) has its return at +∞ and an output the model accepts
// whatever the state. The search walks the calls in time order, linearizing a call whenever its
// output is legal in the current model state and it does not come after a pending return;
// a return reached with its call not yet linearized means backtracking. Lowe's cache skips any
// (set of linearized operations, state) configuration seen before, which is what makes the search
// practical. Exponential in the worst case, as the problem is NP-complete.
import { assert } from "../../core/util/assert.ts";

export interface Operation<I, O> {
  readonly client: number;
  readonly input: I;
  readonly call: number;
  readonly output: O;
  /** Infinity for an operation that never returned (outcome unknown). */
  readonly return: number;
}

export interface Model<S, I, O> {
  /** Splits a history into independent parts (P-compositionality); default: one part. */
  partition?(history: readonly Operation<I, O>[]): Operation<I, O>[][];
  init(): S;
  /** Whether `output` is a legal result of `input` in `state`, and the state after it. */
  step(state: S, input: I, output: O): [boolean, S];
  equal(a: S, b: S): boolean;
  /** A hash of a state for the cache (states that are equal must hash equally). */
  hash(state: S): number;
}

export type Verdict = "ok" | "illegal" | "timeout";

export interface CheckOptions {
  /** Give up (verdict "timeout") after this many search steps; default unbounded. */
  readonly stepsMax?: number;
}

interface Node {
  /** Operation index; −1 for the list's head sentinel. */
  readonly id: number;
  readonly isCall: boolean;
  /** For a call, its return node; undefined for a return. */
  match: Node | undefined;
  prev: Node | undefined;
  next: Node | undefined;
}

/** Checks a whole history against the model. */
export function checkLinearizable<S, I, O>(model: Model<S, I, O>, history: readonly Operation<I, O>[], options: CheckOptions = {}): Verdict {
  const parts = model.partition?.(history) ?? [history.slice()];
  let timedOut = false;
  for (const part of parts) {
    const verdict = checkPart(model, part, options.stepsMax ?? Infinity);
    if (verdict === "illegal") return "illegal";
    if (verdict === "timeout") timedOut = true;
  }
  return timedOut ? "timeout" : "ok";
}

function checkPart<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[], stepsMax: number): Verdict {
  const n = ops.length;
  if (n === 0) return "ok";
  // Events in time order; at equal times calls go first (an operation returning at t and one
  // called at t may be ordered either way).
  const events: Array<{ time: number; isCall: boolean; id: number }> = [];
  for (let id = 0; id < n; id++) {
    const op = ops[id] as Operation<I, O>;
    assert(op.return >= op.call, "checkLinearizable: an operation returns before its call");
    events.push({ time: op.call, isCall: true, id }, { time: op.return, isCall: false, id });
  }
  events.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.isCall === b.isCall ? a.id - b.id : a.isCall ? -1 : 1));
  const head: Node = { id: -1, isCall: false, match: undefined, prev: undefined, next: undefined };
  const calls: Node[] = new Array<Node>(n);
  const returns: Node[] = new Array<Node>(n);
  let last = head;
  for (const event of events) {
    const node: Node = { id: event.id, isCall: event.isCall, match: undefined, prev: last, next: undefined };
    last.next = node;
    last = node;
    (event.isCall ? calls : returns)[event.id] = node;
  }
  for (let id = 0; id < n; id++) (calls[id] as Node).match = returns[id];

  const words = Math.ceil(n / 32);
  const linearized = new Uint32Array(words);
  const cache = new Map<number, Array<{ bits: Uint32Array; state: S }>>();
  const stack: Array<{ node: Node; state: S }> = [];
  let state = model.init();
  let entry: Node | undefined = head.next;
  let steps = 0;
  while (head.next !== undefined) {
    if (++steps > stepsMax) return "timeout";
    assert(entry !== undefined, "checkLinearizable: ran off the event list");
    if (entry.isCall) {
      const op = ops[entry.id] as Operation<I, O>;
      const [ok, next] = model.step(state, op.input, op.output);
      if (ok) {
        linearized[entry.id >>> 5] = (linearized[entry.id >>> 5] as number) | (1 << (entry.id & 31));
        if (cacheAdd(model, cache, linearized, next)) {
          stack.push({ node: entry, state });
          state = next;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized[entry.id >>> 5] = (linearized[entry.id >>> 5] as number) & ~(1 << (entry.id & 31));
      }
      entry = entry.next;
    } else {
      // A return whose call is still pending: undo the last linearization and try its successor.
      const top = stack.pop();
      if (top === undefined) return "illegal";
      state = top.state;
      linearized[top.node.id >>> 5] = (linearized[top.node.id >>> 5] as number) & ~(1 << (top.node.id & 31));
      unlift(top.node);
      entry = top.node.next;
    }
  }
  return "ok";
}

/** Adds (bits, state) to the cache; false when an equal configuration is already there. */
function cacheAdd<S, I, O>(model: Model<S, I, O>, cache: Map<number, Array<{ bits: Uint32Array; state: S }>>, bits: Uint32Array, state: S): boolean {
  let h = model.hash(state) | 0;
  for (let i = 0; i < bits.length; i++) h = Math.imul(h ^ (bits[i] as number), 0x9e3779b1) ^ (h >>> 15);
  const bucket = cache.get(h);
  if (bucket !== undefined) {
    for (const known of bucket) if (bitsEqual(known.bits, bits) && model.equal(known.state, state)) return false;
    bucket.push({ bits: bits.slice(), state });
  } else {
    cache.set(h, [{ bits: bits.slice(), state }]);
  }
  return true;
}

function bitsEqual(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Takes a call and its return out of the list (they are linearized). */
function lift(call: Node): void {
  const ret = call.match as Node;
  (call.prev as Node).next = call.next;
  if (call.next !== undefined) call.next.prev = call.prev;
  (ret.prev as Node).next = ret.next;
  if (ret.next !== undefined) ret.next.prev = ret.prev;
}

/** Puts them back, in the reverse order of lift. */
function unlift(call: Node): void {
  const ret = call.match as Node;
  (ret.prev as Node).next = ret;
  if (ret.next !== undefined) ret.next.prev = ret;
  (call.prev as Node).next = call;
  if (call.next !== undefined) call.next.prev = call;
}

/** FNV-1a over a string, for model hashes. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
