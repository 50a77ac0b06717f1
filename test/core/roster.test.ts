// Roster core, driven by hand: the join handshake admits only a node that proves its key, and
// gossip merges by incarnation. Real Ed25519 keys (src/adapters/identity.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createIdentityFromSeed } from "../../src/adapters/identity.ts";
import { joinTranscript, Roster, ROSTER_DEFAULTS } from "../../src/core/body/roster.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { encodeMessage } from "../../src/core/wire/codec.ts";
import type { MemberEntry, Message } from "../../src/core/wire/messages.ts";
import type { Identity } from "../../src/node/ports.ts";

function identity(n: number): Identity {
  return createIdentityFromSeed(new Uint8Array(32).fill(n));
}

function entryOf(id: Identity, port: number, incarnation = 0): MemberEntry {
  return { id: id.id, pub: id.publicKey, addr: `127.0.0.1:${port}`, role: "core", name: `n${port}`, incarnation };
}

function roster(id: Identity, port: number, join: string[] = []): Roster {
  return new Roster(entryOf(id, port), createRng(port), id, { ...ROSTER_DEFAULTS, join });
}

function only<T extends Message["t"]>(r: Roster, t: T): Extract<Message, { t: T }> {
  const messages = r.ready().messages.filter((m) => m.message.t === t);
  assert.equal(messages.length, 1, `expected one ${t}`);
  return messages[0]?.message as Extract<Message, { t: T }>;
}

test("roster: hello, challenge, proof, welcome admits the joiner on both sides", () => {
  const seedId = identity(1);
  const joinerId = identity(2);
  const seed = roster(seedId, 7401);
  const joiner = roster(joinerId, 7402, ["127.0.0.1:7401"]);
  joiner.startJoin();
  const hello = only(joiner, "hello");
  seed.step(joinerId.id, hello);
  const challenge = only(seed, "challenge");
  joiner.step(seedId.id, challenge);
  const proof = only(joiner, "proof");
  seed.step(joinerId.id, proof);
  const welcome = only(seed, "welcome");
  assert.equal(seed.size, 2);
  joiner.step(seedId.id, welcome);
  assert.equal(joiner.size, 2);
  assert.equal(joiner.joined, true);
  assert.equal(joiner.ready().events.some((e) => e.type === "joined"), true);
});

test("roster: a proof signed by another key, or for another nonce, is refused", () => {
  const seedId = identity(1);
  const joinerId = identity(2);
  const thief = identity(3);
  const seed = roster(seedId, 7401);
  seed.step(joinerId.id, { t: "hello", entry: entryOf(joinerId, 7402) });
  const challenge = only(seed, "challenge");
  // Signed with the wrong key.
  const badSig = thief.sign(joinTranscript(challenge.nonce, joinerId.id, seedId.id));
  seed.step(joinerId.id, { t: "proof", entry: entryOf(joinerId, 7402), nonce: challenge.nonce, sig: badSig });
  let ready = seed.ready();
  assert.equal(seed.size, 1);
  assert.ok(ready.events.some((e) => e.type === "join-refused" && e.reason === "bad signature"));
  assert.equal(ready.messages.length, 0);
  // The challenge was consumed: a correct proof for it now has no matching challenge.
  const goodSig = joinerId.sign(joinTranscript(challenge.nonce, joinerId.id, seedId.id));
  seed.step(joinerId.id, { t: "proof", entry: entryOf(joinerId, 7402), nonce: challenge.nonce, sig: goodSig });
  ready = seed.ready();
  assert.equal(seed.size, 1);
  assert.ok(ready.events.some((e) => e.type === "join-refused" && e.reason === "no matching challenge"));
});

test("roster: a hello whose id is not its key's is refused", () => {
  const seed = roster(identity(1), 7401);
  const liar = identity(2);
  const victim = identity(3);
  seed.step(victim.id, { t: "hello", entry: { ...entryOf(liar, 7402), id: victim.id } });
  const ready = seed.ready();
  assert.equal(ready.messages.length, 0);
  assert.ok(ready.events.some((e) => e.type === "join-refused"));
});

test("roster: gossip adds unknown members, a higher incarnation replaces, a lower or forged one does not", () => {
  const a = roster(identity(1), 7401);
  const b = identity(2);
  a.step(b.id, { t: "gossip", members: [entryOf(b, 7402, 1)] });
  assert.equal(a.member(b.id)?.entry.incarnation, 1);
  a.step(b.id, { t: "gossip", members: [{ ...entryOf(b, 7999, 0) }] });
  assert.equal(a.member(b.id)?.entry.addr, "127.0.0.1:7402", "a lower incarnation is stale news");
  a.step(b.id, { t: "gossip", members: [{ ...entryOf(b, 7403, 2) }] });
  assert.equal(a.member(b.id)?.entry.addr, "127.0.0.1:7403");
  const c = identity(3);
  a.step(b.id, { t: "gossip", members: [{ ...entryOf(c, 7404, 9), pub: b.publicKey }] });
  assert.equal(a.member(c.id), undefined, "an entry whose key does not hash to its id is ignored");
});

test("roster: gossip datagrams stay within the datagram budget and carry the newest news first", () => {
  const a = roster(identity(1), 7401);
  const ids = Array.from({ length: 30 }, (_, i) => identity(10 + i));
  for (const id of ids) a.step(id.id, { t: "gossip", members: [{ ...entryOf(id, 8000), name: "x".repeat(64) }] });
  a.ready();
  for (let i = 0; i < ROSTER_DEFAULTS.gossipTicks * 2; i++) a.tick();
  const gossip = a.ready().messages.find((m) => m.message.t === "gossip")?.message;
  assert.ok(gossip !== undefined && gossip.t === "gossip");
  assert.ok(gossip.members.length >= 2 && gossip.members.length <= 10);
  assert.ok(encodeMessage(gossip).length + 28 + 16 <= 1200, "sealed gossip fits a datagram");
  assert.equal(gossip.members[1]?.id, ids[ids.length - 1]?.id, "newest change first after self");
});
