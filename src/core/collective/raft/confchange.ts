// Membership changes (Raft thesis §4.3, etcd-raft's confchange package). A change is computed from
// the current configuration when its log entry is applied, never when it is appended:
//
//   simple:      at most one voter added or removed, any number of learner changes → new config
//   enter joint: C_old,new = (voters: new, outgoing: old); decisions need a majority of both
//   leave joint: an empty change list → C_new; demoted voters become learners
//
// Invalid changes are values ({ error }), never exceptions: they come from the replicated log.
import { packValue, unpackValue } from "../../wire/codec.ts";
import { LIMITS } from "../../util/limits.ts";
import type { ConfChange, ConfChangeSingle, ConfChangeType, ConfState, NodeId } from "./types.ts";

export type ConfResult = { readonly ok: true; readonly conf: ConfState } | { readonly ok: false; readonly error: string };

interface Mutable {
  voters: Set<NodeId>;
  outgoing: Set<NodeId>;
  learners: Set<NodeId>;
  learnersNext: Set<NodeId>;
  autoLeave: boolean;
}

function mutable(conf: ConfState): Mutable {
  return {
    voters: new Set(conf.voters),
    outgoing: new Set(conf.votersOutgoing),
    learners: new Set(conf.learners),
    learnersNext: new Set(conf.learnersNext),
    autoLeave: conf.autoLeave,
  };
}

function frozen(m: Mutable): ConfState {
  return {
    voters: [...m.voters].sort(),
    votersOutgoing: [...m.outgoing].sort(),
    learners: [...m.learners].sort(),
    learnersNext: [...m.learnersNext].sort(),
    autoLeave: m.autoLeave,
  };
}

export function isJoint(conf: ConfState): boolean {
  return conf.votersOutgoing.length > 0;
}

/** Whether applying `change` leaves a joint configuration (an empty change list). */
export function leavesJoint(change: ConfChange): boolean {
  return change.changes.length === 0;
}

/** Whether `change` enters a joint configuration rather than applying in one step. */
export function entersJoint(conf: ConfState, change: ConfChange): boolean {
  if (change.changes.length === 0) return false;
  if (change.joint === true) return true;
  const m = mutable(conf);
  applySingles(m, change.changes);
  let differing = 0;
  for (const id of m.voters) if (!conf.voters.includes(id)) differing++;
  for (const id of conf.voters) if (!m.voters.has(id)) differing++;
  return differing > 1;
}

function applySingles(m: Mutable, changes: readonly ConfChangeSingle[]): void {
  for (const change of changes) {
    const id = change.node;
    switch (change.type) {
      case "add-voter":
        m.learners.delete(id);
        m.learnersNext.delete(id);
        m.voters.add(id);
        break;
      case "add-learner":
        m.voters.delete(id);
        m.learners.delete(id);
        m.learnersNext.delete(id);
        // A voter of the outgoing half stays a voter there until the joint config is left.
        if (m.outgoing.has(id)) m.learnersNext.add(id);
        else m.learners.add(id);
        break;
      case "remove":
        m.voters.delete(id);
        m.learners.delete(id);
        m.learnersNext.delete(id);
        break;
    }
  }
}

function check(m: Mutable): string | undefined {
  if (m.voters.size === 0) return "removing every voter is not allowed";
  for (const id of m.learners) if (m.voters.has(id) || m.outgoing.has(id)) return `${id} is both a learner and a voter`;
  for (const id of m.learnersNext) {
    if (!m.outgoing.has(id)) return `${id} is in learnersNext but not an outgoing voter`;
    if (m.learners.has(id)) return `${id} is in learners and learnersNext`;
  }
  if (m.outgoing.size === 0 && (m.learnersNext.size > 0 || m.autoLeave)) return "learnersNext and autoLeave need a joint configuration";
  return undefined;
}

/** The configuration after applying `change` to `conf`. */
export function applyConfChange(conf: ConfState, change: ConfChange): ConfResult {
  if (change.reset !== undefined) {
    if (change.reset.voters.length === 0) return { ok: false, error: "a reset needs at least one voter" };
    return { ok: true, conf: { voters: [...change.reset.voters].sort(), votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } };
  }
  const m = mutable(conf);
  if (leavesJoint(change)) {
    if (!isJoint(conf)) return { ok: false, error: "cannot leave a joint configuration: not in one" };
    for (const id of m.learnersNext) m.learners.add(id);
    m.learnersNext.clear();
    m.outgoing.clear();
    m.autoLeave = false;
  } else if (entersJoint(conf, change)) {
    if (isJoint(conf)) return { ok: false, error: "already in a joint configuration" };
    m.outgoing = new Set(m.voters);
    applySingles(m, change.changes);
    m.autoLeave = change.transition === "auto";
  } else {
    if (isJoint(conf)) return { ok: false, error: "a simple change cannot apply to a joint configuration" };
    applySingles(m, change.changes);
  }
  const error = check(m);
  return error === undefined ? { ok: true, conf: frozen(m) } : { ok: false, error };
}

const TYPE_CODES: Record<ConfChangeType, number> = { "add-voter": 0, "add-learner": 1, remove: 2 };
const CODE_TYPES: readonly ConfChangeType[] = ["add-voter", "add-learner", "remove"];

/** Wire form: [transition (0 auto, 1 explicit), joint (0/1), [[type, node], ...]] and, for a reset, [voters, epoch]. */
export function encodeConfChange(change: ConfChange): Uint8Array {
  const base: unknown[] = [change.transition === "auto" ? 0 : 1, change.joint === true ? 1 : 0, change.changes.map((c) => [TYPE_CODES[c.type], c.node])];
  if (change.reset !== undefined) base.push([[...change.reset.voters], change.reset.epoch]);
  return packValue(base);
}

export function decodeConfChange(bytes: Uint8Array): ConfChange | undefined {
  let value: unknown;
  try {
    value = unpackValue(bytes);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || (value.length !== 3 && value.length !== 4)) return undefined;
  const [transition, joint, list, reset] = value as unknown[];
  if ((transition !== 0 && transition !== 1) || (joint !== 0 && joint !== 1) || !Array.isArray(list)) return undefined;
  const changes: ConfChangeSingle[] = [];
  for (const item of list as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2) return undefined;
    const [code, node] = item as unknown[];
    const type = typeof code === "number" ? CODE_TYPES[code] : undefined;
    if (type === undefined || typeof node !== "string" || node.length === 0 || node.length > LIMITS.raft.nodeIdCharsMax) return undefined;
    changes.push({ type, node });
  }
  const decoded: ConfChange = { changes, transition: transition === 0 ? "auto" : "explicit", joint: joint === 1 };
  if (reset === undefined) return decoded;
  if (!Array.isArray(reset) || reset.length !== 2) return undefined;
  const [voters, epoch] = reset as unknown[];
  if (!Array.isArray(voters) || !voters.every((v) => typeof v === "string" && v.length > 0 && v.length <= LIMITS.raft.nodeIdCharsMax)) return undefined;
  if (typeof epoch !== "number" || !Number.isSafeInteger(epoch) || epoch < 0) return undefined;
  return { ...decoded, reset: { voters: voters as string[], epoch } };
}

export function describeConfState(conf: ConfState): string {
  const parts = [`voters=(${conf.voters.join(" ")})`];
  if (conf.votersOutgoing.length > 0) parts[0] += `&&(${conf.votersOutgoing.join(" ")})`;
  if (conf.learners.length > 0) parts.push(`learners=(${conf.learners.join(" ")})`);
  if (conf.learnersNext.length > 0) parts.push(`learners_next=(${conf.learnersNext.join(" ")})`);
  if (conf.autoLeave) parts.push("autoleave");
  return parts.join(" ");
}
