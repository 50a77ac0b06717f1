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
