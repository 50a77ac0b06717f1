// Models for the linearizability checker (linearizability.ts): a single register with
// read/write/compare-and-set (the shape of etcd's and of p-kernel's /v1/kv per key), and a
// key-value map of strings with get/put/append, partitioned by key.
import { hashString, type Model, type Operation } from "./linearizability.ts";

/** A register that starts absent (null). */
export type RegisterInput =
  | { readonly op: "read" }
  | { readonly op: "write"; readonly value: number }
  | { readonly op: "cas"; readonly expected: number; readonly value: number };

/** `unknown`: the client never learned the outcome; any outcome is accepted. */
export type RegisterOutput =
  | { readonly unknown: true }
  | { readonly unknown: false; readonly value?: number | null; readonly ok?: boolean };

/**
 * Reads must return the current value (null when absent); writes always succeed; a CAS that
 * answered ok needs the expected value and installs the new one, one that answered fail needs a
 * different value. A CAS with unknown outcome takes effect when it could have (Porcupine's etcd
 * model does the same), so the search stays deterministic.
 */
export const registerModel: Model<number | null, RegisterInput, RegisterOutput> = {
  init: () => null,
  step(state, input, output) {
    switch (input.op) {
      case "read":
        return [output.unknown || output.value === state, state];
      case "write":
        return [true, input.value];
      case "cas": {
        const matches = state === input.expected;
        const ok = output.unknown || (output.ok === true ? matches : !matches);
        return [ok, matches ? input.value : state];
      }
    }
  },
  equal: (a, b) => a === b,
  hash: (state) => (state === null ? 0x7fffffff : state | 0),
};

export type KvInput = { readonly op: "get" | "put" | "append"; readonly key: string; readonly value: string };
export type KvOutput = { readonly value: string };

/** One key's value: a string, "" when absent. Used per key after partitioning. */
export const kvModel: Model<string, KvInput, KvOutput> = {
  partition(history) {
    const byKey = new Map<string, Operation<KvInput, KvOutput>[]>();
    for (const op of history) {
      const list = byKey.get(op.input.key);
      if (list === undefined) byKey.set(op.input.key, [op]);
      else list.push(op);
    }
    return [...byKey.values()];
  },
  init: () => "",
  step(state, input, output) {
    switch (input.op) {
      case "get": return [output.value === state, state];
      case "put": return [true, input.value];
      case "append": return [true, state + input.value];
    }
  },
  equal: (a, b) => a === b,
  hash: hashString,
};

/** The same map without partitioning: the whole map is the state (for checking P-compositionality). */
export const kvModelWhole: Model<ReadonlyMap<string, string>, KvInput, KvOutput> = {
  init: () => new Map(),
  step(state, input, output) {
    const current = state.get(input.key) ?? "";
    switch (input.op) {
      case "get": return [output.value === current, state];
      case "put":
      case "append": {
        const next = new Map(state);
        next.set(input.key, input.op === "put" ? input.value : current + input.value);
        return [true, next];
      }
    }
  },
  equal(a, b) {
    if (a.size !== b.size) return false;
    for (const [key, value] of a) if (b.get(key) !== value) return false;
    return true;
  },
  hash(state) {
    let h = 0;
    // Order-independent: the sum of per-entry hashes.
    for (const [key, value] of state) h = (h + hashString(`${key}\u0000${value}`)) | 0;
    return h;
  },
};

/**
 * One operation on a map of registers, p-kernel's /v1/kv as the consensus scenario drives it
 * (src/sim/raft-lin.ts): values are numbers (unique per write, so a read names the write it saw),
 * null is "absent". A cas with `expected` null succeeds only on an absent key.
 */
export type KeyedRegisterInput =
  | { readonly key: string; readonly op: "read" }
  | { readonly key: string; readonly op: "write"; readonly value: number }
  | { readonly key: string; readonly op: "delete" }
  | { readonly key: string; readonly op: "cas"; readonly expected: number | null; readonly value: number };

/**
 * `unknown`: the client never learned the outcome (timeout, leader change, crash); the operation
 * may or may not have taken effect. Otherwise: read → `value`; delete → `found`; cas → `ok`
 * (false: conflict). `previous`, when given, is the value the operation saw before it applied
 * (/v1/kv answers put and delete with it, and a conflicting cas with the current value).
 */
export type KeyedRegisterOutput =
  | { readonly unknown: true }
  | {
    readonly unknown: false;
    readonly value?: number | null;
    readonly found?: boolean;
    readonly ok?: boolean;
    readonly previous?: number | null;
  };

/**
 * A register per key with read, write, delete and compare-and-set, partitioned by key (each key
 * is checked alone: P-compositionality). An operation with unknown outcome takes effect when it
 * is linearized: one that never took effect is linearized after everything else (its return is
 * +∞), where its effect is invisible. A cas with unknown outcome installs its value only when the
 * expected value is there, as registerModel's does.
 */
export const keyedRegisterModel: Model<number | null, KeyedRegisterInput, KeyedRegisterOutput> = {
  partition(history) {
    const byKey = new Map<string, Operation<KeyedRegisterInput, KeyedRegisterOutput>[]>();
    for (const op of history) {
      const list = byKey.get(op.input.key);
      if (list === undefined) byKey.set(op.input.key, [op]);
      else list.push(op);
    }
    return [...byKey.values()];
  },
  init: () => null,
  step(state, input, output) {
    const saw = output.unknown || output.previous === undefined || output.previous === state;
    switch (input.op) {
      case "read":
        return [output.unknown || output.value === state, state];
      case "write":
        return [saw, input.value];
      case "delete":
        return [saw && (output.unknown || output.found === (state !== null)), null];
      case "cas": {
        const matches = state === input.expected;
        const ok = output.unknown || (saw && (output.ok === true ? matches : !matches));
        return [ok, matches ? input.value : state];
      }
    }
  },
  equal: (a, b) => a === b,
  hash: (state) => (state === null ? 0x7fffffff : state | 0),
};

/**
 * Leaves out the writes and compare-and-sets whose outcome is unknown and whose value no operation
 * ever reports (as a read's value, as the value a write, delete or conflicting cas found) or
 * expects (as a cas's expected value). The checker's verdict is the same with or without them,
 * and without them it does not have to try every place each one could have taken effect (the
 * search is exponential in the unknown operations open at once). Why it is the same: with such an
 * operation u left out, a linearization of the rest is one of the whole history with u placed
 * last (its return is +∞), where it has no effect. Conversely, in a linearization of the whole
 * history where u took effect, its value was never seen, so until the key next changed only
 * operations with unknown outcome came after it (a read or a known write, delete or cas would
 * have reported or expected the value); the change itself was then an unknown write or delete,
 * which sets the key whatever it held. Leaving u out and moving those unknown operations in
 * between to the end (where they have no effect) gives a linearization of the rest. That needs
 * every delete that found the key and every conflicting cas to report `previous`; a history where
 * one does not is returned whole.
 */
export function pruneUnseenWrites(history: readonly Operation<KeyedRegisterInput, KeyedRegisterOutput>[]): Operation<KeyedRegisterInput, KeyedRegisterOutput>[] {
  const seen = new Set<number>();
  for (const op of history) {
    if (op.input.op === "cas" && op.input.expected !== null) seen.add(op.input.expected);
    const out = op.output;
    if (out.unknown) continue;
    const silent = (op.input.op === "delete" && out.found === true) || (op.input.op === "cas" && out.ok === false);
    if (silent && out.previous === undefined) return history.slice();
    if (typeof out.value === "number") seen.add(out.value);
    if (typeof out.previous === "number") seen.add(out.previous);
  }
  return history.filter((op) => !(op.output.unknown && (op.input.op === "write" || op.input.op === "cas") && !seen.has(op.input.value)));
}
