// The raft wire message (src/core/collective/raft/wire.ts): round trips, refusals, and decoding
// that is total on hostile bytes (fuzz), as for every decoder.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeMessage, encodeMessage } from "../../src/core/wire/codec.ts";
import { raftFromWire, raftToWire } from "../../src/core/collective/raft/wire.ts";
import { decodeConfChange, encodeConfChange } from "../../src/core/collective/raft/confchange.ts";
import { decodeKvCommand, encodeKvCommand } from "../../src/core/collective/kv.ts";
import { message, type Message as RaftMessage } from "../../src/core/collective/raft/types.ts";

const A = "0123456789abcdef";
const B = "fedcba9876543210";

function roundTrip(m: RaftMessage, sender = m.from): RaftMessage {
  const bytes = encodeMessage(raftToWire(m));
  const decoded = decodeMessage(bytes);
  assert.ok(decoded.ok, decoded.ok ? "" : decoded.detail);
  assert.equal(decoded.message.t, "raft");
  if (decoded.message.t !== "raft") throw new Error("not raft");
  const back = raftFromWire(decoded.message, sender);
  assert.ok(back.ok, back.ok ? "" : back.detail);
  return back.message;
}

test("raft wire: appends, snapshots, votes and read contexts round trip", () => {
  const app = message({
    type: "app", to: B, from: A, term: 7, logTerm: 6, index: 41, commit: 40,
    entries: [{ term: 7, index: 42, type: "normal", data: new Uint8Array([1, 2]) }, { term: 7, index: 43, type: "conf", data: encodeConfChange({ changes: [{ type: "add-learner", node: B }], transition: "auto" }) }],
  });
  assert.deepEqual(roundTrip(app), app);
  const snap = message({
    type: "snap", to: B, from: A, term: 3,
    snapshot: { meta: { index: 100, term: 3, conf: { voters: [A, B], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array(1000).fill(9) },
  });
  assert.deepEqual(roundTrip(snap), snap);
  const vote = message({ type: "prevote-resp", to: B, from: A, term: 9, reject: true, rejectHint: 3 });
  assert.deepEqual(roundTrip(vote), vote);
  const read = message({ type: "heartbeat", to: B, from: A, term: 2, commit: 5, context: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) });
  assert.deepEqual(roundTrip(read), read);
  // A follower's forwarded proposal: unstamped entries, term 0.
  const prop = message({ type: "prop", to: B, from: A, entries: [{ term: 0, index: 0, type: "normal", data: new Uint8Array([5]) }, { term: 0, index: 0, type: "normal", data: new Uint8Array([6]) }] });
  assert.deepEqual(roundTrip(prop), prop);
  // Decoded entries own their bytes (the packet buffer may be reused).
  const decoded = roundTrip(app);
  assert.notEqual(decoded.entries[0]!.data.buffer, app.entries[0]!.data.buffer);
});

test("raft wire: impersonation, local types, terms and gaps are refused", () => {
  const app = message({ type: "app", to: B, from: A, term: 1, entries: [{ term: 1, index: 1, type: "normal", data: new Uint8Array() }, { term: 1, index: 3, type: "normal", data: new Uint8Array() }] });
  const wire = raftToWire(app);
  assert.equal(raftFromWire(wire, A).ok, false, "entries with a gap");
  assert.equal(raftFromWire(raftToWire(message({ type: "heartbeat", to: B, from: A, term: 1 })), B).ok, false, "from another sender");
  assert.equal(raftFromWire(raftToWire(message({ type: "vote", to: B, from: A, term: 0 })), A).ok, false, "vote at term 0");
  assert.equal(raftFromWire(raftToWire(message({ type: "prop", to: B, from: A, term: 4, entries: [{ term: 0, index: 0, type: "normal", data: new Uint8Array() }] })), A).ok, false, "proposal with a term");
  assert.equal(raftFromWire(raftToWire(message({ type: "prop", to: B, from: A, entries: [{ term: 2, index: 9, type: "normal", data: new Uint8Array() }] })), A).ok, false, "proposal with stamped entries");
  for (const local of ["hup", "beat", "unreachable", "snap-status", "check-quorum"] as const) {
    const decoded = decodeMessage(encodeMessage(raftToWire(message({ type: local, to: B, from: A, term: 1 }))));
    assert.equal(decoded.ok, false, `${local} is local only`);
  }
});

test("raft wire: decoding is total on random and mutated bytes (fuzz)", () => {
  const valid = encodeMessage(raftToWire(message({
    type: "app", to: B, from: A, term: 7, logTerm: 6, index: 41, commit: 40,
    entries: [{ term: 7, index: 42, type: "normal", data: new Uint8Array([1, 2, 3]) }],
    context: new Uint8Array([1]),
  })));
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(valid.length), (flips, cut) => {
    const bytes = valid.slice(0, Math.max(1, cut));
    for (const [at, value] of flips) if (at < bytes.length) bytes[at] = value;
    const decoded = decodeMessage(bytes);
    if (decoded.ok && decoded.message.t === "raft") raftFromWire(decoded.message, A);
  }), { numRuns: 3000 });
});

test("conf changes and KV commands: round trip, and decoding is total (fuzz)", () => {
  const change = { changes: [{ type: "remove" as const, node: A }, { type: "add-voter" as const, node: B }], transition: "explicit" as const, joint: true };
  assert.deepEqual(decodeConfChange(encodeConfChange(change)), change);
  const reset = { changes: [], transition: "auto" as const, joint: false, reset: { voters: [A], epoch: 3 } };
  assert.deepEqual(decodeConfChange(encodeConfChange(reset)), reset);
  const command = { op: "cas" as const, key: "k", value: new Uint8Array([1]), expected: undefined, origin: `${A}:5`, seq: 12 };
  assert.deepEqual(decodeKvCommand(encodeKvCommand(command)), command);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
    decodeConfChange(bytes);
    decodeKvCommand(bytes);
  }), { numRuns: 3000 });
});
