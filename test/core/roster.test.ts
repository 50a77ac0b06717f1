// Roster core, driven by hand: the join handshake admits only a node that proves its key into a
// real SWIM core, and the welcome hands over the seed's table. Real Ed25519 keys (src/adapters/identity.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createIdentityFromSeed } from "../../src/adapters/identity.ts";
import { joinTranscript, Roster, ROSTER_DEFAULTS } from "../../src/core/body/roster.ts";
import { Swim, SWIM_LAN, type SwimCrypto } from "../../src/core/body/swim.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { encodeMessage } from "../../src/core/wire/codec.ts";
import type { MemberEntry, Message } from "../../src/core/wire/messages.ts";
import { aliveMessage, claimMessage, EntryChecker, issueCert, signEntry } from "../../src/core/body/trust.ts";
import type { Identity } from "../../src/node/ports.ts";

function identity(n: number): Identity {
  return createIdentityFromSeed(new Uint8Array(32).fill(n));
}

/** The cluster's owner key: it certifies every node of these tests. */
const OWNER = identity(99);

function certOf(id: Identity, role: "core" | "contributor" = "core"): Uint8Array {
  return issueCert(OWNER, id.publicKey, { role, issuedMs: 0, expiresMs: 0 });
}

function entryOf(id: Identity, port: number, incarnation = 0, cert = certOf(id)): MemberEntry {
  return signEntry(id, { id: id.id, addr: `127.0.0.1:${port}`, role: "core", name: `n${port}`, incarnation, epoch: 1 }, cert);
}

/** What the node gives SWIM and the roster: Ed25519 checks of the owner's certificates and of entries. */
function cryptoOf(id: Identity): Identity & SwimCrypto {
  const checker = new EntryChecker(OWNER.publicKey, id, () => 0, 64);
  return {
    ...id, check: (entry) => checker.check(entry) === undefined, signAlive: (fields) => id.sign(aliveMessage(fields)),
    signClaim: (claim) => id.sign(claimMessage(claim)), checkClaim: (claim, key, sig) => id.verify(key, claimMessage(claim), sig),
  };
}

/** A roster admitting into a real SWIM core, as the kernel wires them. */
function roster(id: Identity, port: number, join: string[] = [], cert = certOf(id)): Roster & { swim: Swim } {
  const rng = createRng(port);
  const crypto = cryptoOf(id);
  const swim = new Swim(entryOf(id, port, 0, cert), rng, crypto, SWIM_LAN);
  const r = new Roster(entryOf(id, port, 0, cert), rng, crypto, {
    admit: (entry) => swim.add(entry),
    table: () => swim.table(),
    welcomed: (from, states) => swim.step(from, { t: "swim-sync", reply: false, states }),
  }, { ...ROSTER_DEFAULTS, join });
  return Object.assign(r, { swim });
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
  assert.equal(seed.swim.size, 2);
  joiner.step(seedId.id, welcome);
  assert.equal(joiner.swim.size, 2);
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
  assert.equal(seed.swim.size, 1);
  assert.ok(ready.events.some((e) => e.type === "join-refused" && e.reason === "bad signature"));
  assert.equal(ready.messages.length, 0);
  // The challenge was consumed: a correct proof for it now has no matching challenge.
  const goodSig = joinerId.sign(joinTranscript(challenge.nonce, joinerId.id, seedId.id));
  seed.step(joinerId.id, { t: "proof", entry: entryOf(joinerId, 7402), nonce: challenge.nonce, sig: goodSig });
  ready = seed.ready();
  assert.equal(seed.swim.size, 1);
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

test("roster: the welcome carries the seed's SWIM table, and a forged entry in it is ignored", () => {
  const seedId = identity(1);
  const joinerId = identity(2);
  const other = identity(3);
  const seed = roster(seedId, 7401);
  seed.swim.add(entryOf(other, 7403, 4));
  const joiner = roster(joinerId, 7402, ["127.0.0.1:7401"]);
  joiner.startJoin();
  seed.step(joinerId.id, only(joiner, "hello"));
  joiner.step(seedId.id, only(seed, "challenge"));
  seed.step(joinerId.id, only(joiner, "proof"));
  const welcome = only(seed, "welcome");
  assert.equal(welcome.states.length, 3, "seed, the other member and the joiner");
  // A third party's entry whose key does not hash to its id is dropped on merge.
  const forged = identity(4);
  const states = [...welcome.states, [0, [forged.id, other.publicKey, "127.0.0.1:7404", "core", "x", 0, 1, certOf(other), new Uint8Array(64)]] as (typeof welcome.states)[number]];
  joiner.step(seedId.id, { t: "welcome", states });
  assert.equal(joiner.swim.member(other.id)?.entry.incarnation, 4);
  assert.equal(joiner.swim.member(seedId.id)?.state, "alive");
  assert.equal(joiner.swim.member(forged.id), undefined);
  assert.ok(encodeMessage(welcome).length > 0);
});
