// SWIM + Lifeguard core (src/core/body/swim.ts), driven through the in-memory network of
// swim-harness.ts. Map to the papers: detection time and round-robin probing (SWIM §4.3, E[T] =
// e/(e−1) periods), suspicion and refutation (SWIM §4.2), dissemination (SWIM §4.1), local health
// and nacks (Lifeguard §IV-A), suspicion confirmations (Lifeguard §IV-B), tombstones (memberlist's
// TestMemberList_AliveReplay). Every assertion message carries the seed.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { supersedes, Swim, SwimDirectory, SWIM_LAN, SWIM_WAN, type SwimState } from "../../src/core/body/swim.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { entryToWire, type Message, type SwimUpdateWire } from "../../src/core/wire/messages.ts";
import { claim, SwimSim, testCrypto, testEntry } from "./swim-harness.ts";

const PERIOD = SWIM_LAN.probeTicks;

function gossip(updates: SwimUpdateWire[]): Message {
  return { t: "swim-gossip", updates };
}

function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
}

test("swim: a crashed member is suspected, then declared dead at every survivor", () => {
  const n = 10;
  const toSuspect: number[] = [];
  const toDead: number[] = [];
  for (let seed = 1; seed <= 40; seed++) {
    const sim = new SwimSim({ n, seed });
    sim.run(10 * PERIOD + (seed * 37) % PERIOD); // Warm-up drains the initial news; crash at varied phases.
    const victim = seed % n;
    const id = sim.id(victim);
    const crashTick = sim.now;
    sim.crash(victim);
    const survivors = n - 1;
    const done = sim.run(60 * PERIOD, () => new Set(sim.eventsAbout("member-dead", id).map((e) => e.node)).size === survivors);
    assert.ok(done, `seed ${seed}: not every survivor declared the crashed member dead within 60 periods`);
    const firstSuspect = sim.eventsAbout("member-suspect", id)[0];
    assert.ok(firstSuspect !== undefined, `seed ${seed}: no suspicion before death`);
    toSuspect.push((firstSuspect.tick - crashTick) / PERIOD);
    toDead.push((sim.now - crashTick) / PERIOD);
    const falseDeaths = sim.events.filter((e) => e.event.type === "member-dead" && e.event.id !== id);
    assert.equal(falseDeaths.length, 0, `seed ${seed}: a live member was declared dead`);
    // Helpers answered with nacks, so the survivors did not blame themselves (Lifeguard).
    for (let i = 0; i < n; i++) {
      if (i !== victim) assert.ok(sim.node(i).localHealth <= 2, `seed ${seed}: node ${i} local health ${sim.node(i).localHealth}`);
    }
  }
  const suspectMean = mean(toSuspect);
  const deadMean = mean(toDead);
  console.log(`swim n=${n}: crash → first suspect ${suspectMean.toFixed(2)} probe periods on average ` +
    `(max ${Math.max(...toSuspect).toFixed(2)}), → dead at every survivor ${deadMean.toFixed(2)} ` +
    `(max ${Math.max(...toDead).toFixed(2)}), over ${toSuspect.length} seeds`);
  assert.ok(suspectMean < 2.5, `mean periods to first suspicion ${suspectMean} (seeds 1-40)`);
  // Suspicion minimum is 4 periods at n = 10, the maximum 24; confirmations bring it near the minimum.
  assert.ok(deadMean < 24, `mean periods to dead everywhere ${deadMean} (seeds 1-40)`);
});

test("swim: no false positive over 300 probe periods at n = 20 with 10% datagram loss", () => {
  const seed = 42;
  const sim = new SwimSim({ n: 20, seed, loss: 0.1 });
  sim.run(300 * PERIOD);
  const deaths = sim.events.filter((e) => e.event.type === "member-dead");
  const suspicions = sim.events.filter((e) => e.event.type === "member-suspect");
  const refutations = sim.events.filter((e) => e.event.type === "member-refuted" && e.event.id === sim.id(e.node));
  console.log(`swim n=20 loss=10% 300 periods: deaths ${deaths.length}, suspicion events ${suspicions.length}, ` +
    `self-refutations ${refutations.length}, datagrams ${sim.sent} (lost ${sim.lost}), largest ${sim.datagramBytesMax} B`);
  assert.equal(deaths.length, 0, `seed ${seed}: false positives ${JSON.stringify(deaths.slice(0, 3))}`);
  for (let i = 0; i < 20; i++) {
    for (const member of sim.node(i).members()) {
      assert.notEqual(member.state, "dead", `seed ${seed}: node ${i} holds ${member.entry.id} dead`);
    }
  }
});

test("swim: a member told it is suspected refutes with a higher incarnation", () => {
  const self = testEntry(0);
  const other = testEntry(1);
  const swim = new Swim(self, createRng(1), testCrypto, SWIM_LAN);
  swim.add(other);
  swim.ready();
  swim.step(other.id, gossip([claim(1, self.id, 0, other.id)]));
  assert.equal(swim.incarnation, 1);
  assert.deepEqual(swim.ready().events, [{ type: "member-refuted", id: self.id, incarnation: 1 }]);
  assert.equal(swim.localHealth, 1, "refuting raises local health");
  // A dead accusation at an incarnation we never signed is taken as one about ours now: refuted
  // with the next one, not above it (an accuser cannot push us towards the end of the space).
  swim.step(other.id, gossip([claim(2, self.id, 5, other.id)]));
  assert.equal(swim.incarnation, 2);
  // Stale accusations are ignored.
  swim.step(other.id, gossip([claim(1, self.id, 1, other.id)]));
  assert.equal(swim.incarnation, 2);
  // The refutation is what the next gossip carries first.
  let sent: Message | undefined;
  for (let t = 0; t < 2 * SWIM_LAN.gossipTicks && sent === undefined; t++) {
    swim.tick();
    sent = swim.ready().messages.find((m) => m.message.t === "swim-gossip")?.message;
  }
  assert.ok(sent !== undefined && sent.t === "swim-gossip");
  assert.deepEqual(sent.updates[0], [0, entryToWire(testEntry(0, { incarnation: 2 }))]);
});

test("swim: an isolated member is suspected, refutes after the partition heals, and stays alive", () => {
  const seed = 7;
  const sim = new SwimSim({ n: 6, seed });
  sim.run(10 * PERIOD);
  const victim = 3;
  const id = sim.id(victim);
  sim.isolate(victim);
  const suspected = sim.run(10 * PERIOD, () => sim.eventsAbout("member-suspect", id).length > 0);
  assert.ok(suspected, `seed ${seed}: isolated member never suspected`);
  sim.heal();
  sim.run(10 * PERIOD);
  assert.equal(sim.eventsAbout("member-dead", id).length, 0, `seed ${seed}: member declared dead`);
  assert.ok(sim.node(victim).incarnation >= 1, `seed ${seed}: no refutation (incarnation ${sim.node(victim).incarnation})`);
  for (let i = 0; i < 6; i++) {
    if (i === victim) continue;
    const seen = sim.node(i).member(id);
    assert.equal(seen?.state, "alive", `seed ${seed}: node ${i} sees ${seen?.state}`);
    assert.equal(seen?.entry.incarnation, sim.node(victim).incarnation, `seed ${seed}: node ${i} incarnation`);
  }
});

// The precedence rules as SWIM states them, one line per case (the dumb oracle for supersedes()).
function reference(current: { state: SwimState; incarnation: number }, update: { state: SwimState; incarnation: number }): boolean {
  const i = update.incarnation;
  const j = current.incarnation;
  switch (update.state) {
    case "alive": return i > j; // alive{i} beats alive/suspect{j < i}; a dead or left member comes back only with a newer life.
    case "suspect": return current.state === "alive" ? i >= j : i > j;
    case "dead": return current.state === "alive" || current.state === "suspect" ? i >= j : i > j;
    case "left": return current.state === "left" ? i > j : i >= j;
  }
}

const stateArb = fc.constantFrom<SwimState>("alive", "suspect", "dead", "left");
const newsArb = fc.record({ state: stateArb, incarnation: fc.integer({ min: 0, max: 4 }) });

test("swim: an accusation at the end of the incarnation space neither crashes nor moves us more than one (issue 13)", () => {
  const self = testEntry(0);
  const other = testEntry(1);
  const swim = new Swim(self, createRng(1), testCrypto, SWIM_LAN);
  swim.add(other);
  swim.ready();
  // What an attacker sent: one swim-gossip accusing us at incarnation 0xffffffff.
  swim.step(other.id, gossip([claim(1, self.id, 0xffff_ffff, other.id)]));
  assert.equal(swim.incarnation, 1, "refuted with our next incarnation");
  assert.equal(swim.stats.incarnationExhausted, 0);
  // Our own entry from a previous life, signed by us, moves us past it; the same claim unsigned does not.
  const previous = testEntry(0, { incarnation: 40 });
  swim.step(other.id, gossip([[0, entryToWire(previous)]]));
  assert.equal(swim.incarnation, 41);
  swim.step(other.id, gossip([[0, entryToWire({ ...testEntry(0, { incarnation: 90 }), sig: previous.sig })]]));
  assert.equal(swim.incarnation, 41, "a forged entry of ours is not believed");
  // At the very end of the space, an accusation is counted, not refuted, and nothing throws.
  const late = new Swim(testEntry(0, { incarnation: 0xffff_ffff }), createRng(2), testCrypto, SWIM_LAN);
  late.add(other);
  late.step(other.id, gossip([claim(2, self.id, 0xffff_ffff, other.id)]));
  assert.equal(late.incarnation, 0xffff_ffff);
  assert.equal(late.stats.incarnationExhausted, 1);
});

test("swim: what a member says about another is believed only with that member's signature (issue 13)", () => {
  const self = testEntry(0);
  const other = testEntry(1);
  const swim = new Swim(self, createRng(1), testCrypto, SWIM_LAN);
  swim.add(other);
  swim.ready();
  // A new address for member 1, at a higher incarnation, not signed by it: dropped.
  const moved = { ...testEntry(1, { incarnation: 3, addr: "10.9.9.9:7000" }), sig: other.sig };
  swim.step(other.id, gossip([[0, entryToWire(moved)]]));
  assert.equal(swim.member(other.id)?.entry.addr, other.addr);
  // A fresh key claiming core with no certificate of the owner: not admitted.
  const stranger = testEntry(2);
  swim.step(other.id, gossip([[0, entryToWire({ ...stranger, cert: testEntry(3).cert })]]));
  assert.equal(swim.member(stranger.id), undefined);
  // A contributor's certificate does not make a core member.
  const contributor = testEntry(4, { role: "contributor" });
  swim.step(other.id, gossip([[0, entryToWire({ ...contributor, role: "core" })]]));
  assert.equal(swim.member(contributor.id), undefined);
  swim.step(other.id, gossip([[0, entryToWire(contributor)]]));
  assert.equal(swim.member(contributor.id)?.entry.role, "contributor");
  // A suspicion above the incarnation we know is dropped: it may be about a life of the member we
  // have not seen it sign, and relayed (signed for that incarnation) it would stand against every
  // life up to it.
  swim.step(other.id, gossip([claim(1, other.id, 1_000, self.id)]));
  assert.equal(swim.member(other.id)?.state, "alive");
  swim.step(other.id, gossip([claim(1, other.id, 0, self.id)]));
  assert.equal(swim.member(other.id)?.state, "suspect");
  // The member refutes with its next incarnation, which it signs: believed.
  swim.step(other.id, gossip([[0, entryToWire(testEntry(1, { incarnation: 1 }))]]));
  assert.equal(swim.member(other.id)?.state, "alive");
});

test("swim: claims about a member's state need their maker's signature; only the member says it left, only a core member makes it dead (issue 13)", () => {
  const self = testEntry(0);
  const victim = testEntry(1);
  const core = testEntry(2);
  const contributor = testEntry(3, { role: "contributor" });
  const stranger = testEntry(4);
  const swim = new Swim(self, createRng(5), testCrypto, SWIM_LAN);
  for (const e of [victim, core, contributor]) swim.add(e);
  swim.ready();
  const before = { ...swim.stats };
  // A leave said by anyone but the member, however signed: refused (it would be final).
  swim.step(contributor.id, gossip([claim(3, victim.id, 0, contributor.id), claim(3, victim.id, 0, victim.id).map((v, i) => (i === 3 ? contributor.id : v)) as ReturnType<typeof claim>]));
  assert.equal(swim.member(victim.id)?.state, "alive");
  assert.equal(swim.stats.leavesForged, before.leavesForged + 2);
  // An accusation whose signature is not its maker's (forged in a core member's name), or by a
  // maker this node does not know: refused and counted.
  const forged = claim(2, victim.id, 0, contributor.id);
  swim.step(contributor.id, gossip([[2, victim.id, 0, core.id, forged[4]], claim(2, victim.id, 0, stranger.id)]));
  assert.equal(swim.member(victim.id)?.state, "alive");
  assert.equal(swim.stats.claimsRefused, before.claimsRefused + 2);
  // A signature over another incarnation does not carry over to this one.
  const other = claim(1, victim.id, 1, core.id);
  swim.step(contributor.id, gossip([[1, victim.id, 0, core.id, other[4]]]));
  assert.equal(swim.member(victim.id)?.state, "alive");
  // A contributor's signed "dead" is a suspicion the victim can refute.
  swim.step(contributor.id, gossip([claim(2, victim.id, 0, contributor.id)]));
  assert.equal(swim.member(victim.id)?.state, "suspect");
  // A core member's signed "dead" is believed, and relayed with its maker's signature.
  swim.step(contributor.id, gossip([claim(2, victim.id, 0, core.id)]));
  assert.equal(swim.member(victim.id)?.state, "dead");
  assert.deepEqual(swim.table().find((u) => u[1] === victim.id), claim(2, victim.id, 0, core.id));
  // The member's own signed leave is final.
  swim.step(contributor.id, gossip([[0, entryToWire(testEntry(1, { incarnation: 1 }))], claim(3, victim.id, 1, victim.id)]));
  assert.equal(swim.member(victim.id)?.state, "left");
});

test("swim: accusations of this node move its incarnation only with their maker's signature", () => {
  const self = testEntry(0);
  const other = testEntry(1);
  const swim = new Swim(self, createRng(6), testCrypto, SWIM_LAN);
  swim.add(other);
  swim.ready();
  const forged = claim(1, self.id, 0, other.id);
  forged[4] = forged[4].map((b, i) => (i === 0 ? b ^ 1 : b));
  swim.step(other.id, gossip([forged]));
  assert.equal(swim.incarnation, 0);
  assert.equal(swim.stats.claimsRefused, 1);
  swim.step(other.id, gossip([claim(1, self.id, 0, other.id)]));
  assert.equal(swim.incarnation, 1);
});

test("swim: precedence matches the rule list, in supersedes() and through a live instance", () => {
  fc.assert(fc.property(newsArb, newsArb, (current, update) => {
    assert.equal(supersedes(current, update), reference(current, update), `${JSON.stringify({ current, update })}`);
  }), { seed: 11, numRuns: 500 });
  fc.assert(fc.property(fc.array(newsArb, { minLength: 1, maxLength: 12 }), (sequence) => {
    const self = testEntry(0);
    const other = testEntry(1);
    const accuser = testEntry(2);
    const swim = new Swim(self, createRng(2), testCrypto, SWIM_LAN);
    swim.add(accuser);
    swim.add(other);
    let expected = { state: "alive" as SwimState, incarnation: 0 };
    for (const news of sequence) {
      // A leave is the member's own claim; the others are the (core) accuser's.
      const wire: SwimUpdateWire = news.state === "alive"
        ? [0, entryToWire(testEntry(1, { incarnation: news.incarnation }))]
        : claim(news.state === "suspect" ? 1 : news.state === "dead" ? 2 : 3, other.id, news.incarnation, news.state === "left" ? other.id : accuser.id);
      swim.step(accuser.id, gossip([wire]));
      // What is said of an incarnation the member never signed (above the one we know) is dropped.
      const unsigned = news.state !== "alive" && news.incarnation > expected.incarnation;
      if (!unsigned && reference(expected, news)) expected = { state: news.state, incarnation: news.incarnation };
      const seen = swim.member(other.id);
      assert.deepEqual({ state: seen?.state, incarnation: seen?.entry.incarnation }, expected, `sequence ${JSON.stringify(sequence)}`);
    }
  }), { seed: 12, numRuns: 300 });
});

test("swim: a tombstone stops stale alive news from resurrecting a dead member, until it expires", () => {
  const config = { ...SWIM_LAN, tombstoneTicks: 200 };
  const self = testEntry(0);
  const other = testEntry(1, { incarnation: 3 });
  const accuser = testEntry(2);
  const swim = new Swim(self, createRng(3), testCrypto, config);
  swim.add(other);
  swim.add(accuser);
  swim.ready();
  swim.step(accuser.id, gossip([claim(2, other.id, 3, accuser.id)]));
  assert.equal(swim.member(other.id)?.state, "dead");
  swim.step(accuser.id, gossip([[0, entryToWire(testEntry(1, { incarnation: 3 }))], [0, entryToWire(testEntry(1, { incarnation: 1 }))]]));
  assert.equal(swim.member(other.id)?.state, "dead", "stale alive resurrected a dead member");
  assert.equal(swim.ready().events.filter((e) => e.type === "member-alive").length, 0);
  // A newer life (a restart with a higher incarnation) does come back.
  swim.step(accuser.id, gossip([[0, entryToWire(testEntry(1, { incarnation: 4 }))]]));
  assert.equal(swim.member(other.id)?.state, "alive");
  // Left is final too, and forgotten after tombstoneTicks.
  swim.step(accuser.id, gossip([claim(3, other.id, 4, other.id)]));
  assert.equal(swim.member(other.id)?.state, "left");
  for (let t = 0; t < 100; t++) swim.tick();
  swim.step(accuser.id, gossip([[0, entryToWire(testEntry(1, { incarnation: 4 }))]]));
  assert.equal(swim.member(other.id)?.state, "left");
  for (let t = 0; t < 200; t++) swim.tick();
  assert.equal(swim.member(other.id), undefined, "tombstone not reaped");
});

test("swim: local health rises when acks and nacks go missing, scales the probe timeout, and recovers", () => {
  const seed = 5;
  const sim = new SwimSim({ n: 8, seed });
  sim.run(10 * PERIOD);
  const slow = 2;
  assert.equal(sim.node(slow).localHealth, 0, `seed ${seed}: healthy at start`);
  // The adaptive timeout has followed the harness's short round trips down towards its floor.
  const base = sim.node(slow).probeTimeoutTicks;
  assert.ok(base >= SWIM_LAN.probeTimeoutMinTicks && base < SWIM_LAN.probeTimeoutTicks, `seed ${seed}: adaptive timeout ${base}`);
  sim.isolate(slow);
  sim.run(6 * PERIOD);
  const health = sim.node(slow).localHealth;
  assert.ok(health >= 3, `seed ${seed}: local health ${health} after missed acks and nacks`);
  assert.equal(sim.node(slow).probeTimeoutTicks, base * (health + 1), `seed ${seed}`);
  assert.equal(sim.node(slow).probePeriodTicks, SWIM_LAN.probeTicks * (health + 1), `seed ${seed}`);
  sim.heal();
  sim.run(60 * PERIOD);
  assert.equal(sim.node(slow).localHealth, 0, `seed ${seed}: local health did not recover`);
  // The node's own event-loop stalls feed the same multiplier.
  sim.node(slow).setLoopDelayPenalty(3);
  assert.equal(sim.node(slow).localHealth, 3);
  sim.node(slow).setLoopDelayPenalty(100);
  assert.equal(sim.node(slow).localHealth, 7, "bounded by swimAwarenessMax − 1");
  sim.node(slow).setLoopDelayPenalty(0);
  assert.equal(sim.node(slow).localHealth, 0);
});

test("swim: suspicion timeout starts at max and shrinks to min with confirmations", () => {
  assert.equal(Swim.suspicionTimeout(400, 2400, 2, 0), 2400);
  assert.equal(Swim.suspicionTimeout(400, 2400, 2, 1), Math.floor(2400 - 2000 * Math.log(2) / Math.log(3)));
  assert.equal(Swim.suspicionTimeout(400, 2400, 2, 2), 400);
  assert.equal(Swim.suspicionTimeout(400, 2400, 2, 5), 400);
  assert.equal(Swim.suspicionTimeout(400, 2400, 0, 0), 400);
});

test("swim: the buddy system tells a suspect on the probe itself", () => {
  const self = testEntry(0);
  const other = testEntry(1);
  const swim = new Swim(self, createRng(4), testCrypto, SWIM_LAN);
  swim.add(other);
  swim.step(other.id, gossip([claim(1, other.id, 0, self.id)]));
  swim.ready();
  let ping: Message | undefined;
  for (let t = 0; t < 2 * SWIM_LAN.probeTicks && ping === undefined; t++) {
    swim.tick();
    ping = swim.ready().messages.find((m) => m.message.t === "swim-ping")?.message;
  }
  assert.ok(ping !== undefined && ping.t === "swim-ping");
  assert.deepEqual(ping.updates[0], claim(1, other.id, 0, self.id));
});

test("swim: news of a joiner reaches all n = 100 nodes within c·log n probe periods", () => {
  const n = 100;
  const joiner = n - 1;
  for (const seed of [21, 22]) {
    // The joiner and node 0 know each other; nobody else knows the joiner.
    const sim = new SwimSim({ n, seed, knows: (i, j) => (i === joiner ? j === 0 : j !== joiner || i === 0) });
    const id = sim.id(joiner);
    const start = sim.now;
    const done = sim.run(40 * PERIOD, () => sim.nodes.every((node, i) => i === joiner || node.member(id)?.state === "alive"));
    const periods = (sim.now - start) / PERIOD;
    const bound = 2 * Math.log(n); // c = 2 with natural log: 9.2 periods
    console.log(`swim n=${n} seed ${seed}: joiner known everywhere after ${periods.toFixed(2)} probe periods (bound ${bound.toFixed(1)}), largest datagram ${sim.datagramBytesMax} B`);
    assert.ok(done && periods <= bound, `seed ${seed}: ${periods} periods`);
    assert.equal(sim.events.filter((e) => e.event.type === "member-dead").length, 0, `seed ${seed}: false positives`);
  }
});

test("swim: graceful leave is learned everywhere, with no suspicion, and the leaver stops probing", () => {
  const seed = 9;
  const sim = new SwimSim({ n: 6, seed });
  sim.run(10 * PERIOD);
  const leaver = 4;
  const id = sim.id(leaver);
  sim.node(leaver).leave();
  const done = sim.run(10 * PERIOD, () => new Set(sim.eventsAbout("member-left", id).map((e) => e.node)).size === 6);
  assert.ok(done, `seed ${seed}: leave not learned everywhere`);
  sim.run(5 * PERIOD);
  assert.equal(sim.eventsAbout("member-suspect", id).length, 0, `seed ${seed}: leaver was suspected`);
  assert.equal(sim.eventsAbout("member-dead", id).length, 0, `seed ${seed}: leaver declared dead`);
  const node = sim.node(leaver);
  for (let t = 0; t < 3 * PERIOD; t++) {
    node.tick();
    assert.ok(!node.ready().messages.some((m) => m.message.t === "swim-ping"), `seed ${seed}: leaver still probes`);
  }
});

test("swim: push-pull repairs state that gossip never carried", () => {
  const seed = 13;
  const config = { ...SWIM_LAN, pushPullTicks: 200 };
  // Node 2 is known only to node 1; gossip is blocked, only streams get through.
  const sim = new SwimSim({ n: 3, seed, config, loss: 1, knows: (i, j) => !(i === 0 && j === 2) && !(i === 2 && j === 0) });
  const done = sim.run(20 * PERIOD, () => sim.node(0).member(sim.id(2)) !== undefined && sim.node(2).member(sim.id(0)) !== undefined);
  assert.ok(done, `seed ${seed}: push-pull did not spread membership`);
});

test("swim: every datagram stays within the budget with the longest names and addresses", () => {
  const seed = 17;
  const entry = (i: number) => testEntry(i, { name: "é".repeat(63) + String(i % 10), addr: `${"h".repeat(240)}${String(i).padStart(3, "0")}:7000` });
  const sim = new SwimSim({ n: 40, seed, entry });
  sim.crash(5);
  sim.run(30 * PERIOD);
  console.log(`swim n=40 long entries: largest datagram ${sim.datagramBytesMax} B`);
  assert.ok(sim.datagramBytesMax <= 1200, `seed ${seed}`);
  assert.ok(sim.eventsAbout("member-suspect", sim.id(5)).length > 0, `seed ${seed}: crash not detected with long entries`);
});

test("swim: LAN and WAN profiles are consistent", () => {
  for (const config of [SWIM_LAN, SWIM_WAN]) {
    assert.ok(config.probeTimeoutTicks < config.probeTicks);
    assert.ok(new Swim(testEntry(0), createRng(1), testCrypto, config).size === 1);
  }
});

test("swim: the news queue sends the least-sent, newest news first, each exactly λ·⌈log10(n+1)⌉ times", () => {
  // Probing is pushed far out so that only gossip carries news.
  const config = { ...SWIM_LAN, probeTicks: 1_000_000, probeTimeoutTicks: 500_000, pushPullTicks: 1_000_000 };
  const self = testEntry(0);
  const swim = new Swim(self, createRng(6), testCrypto, config);
  const n = 31;
  for (let i = 1; i < n; i++) swim.add(testEntry(i));
  swim.ready();
  const limit = config.retransmitMult * Math.ceil(Math.log10(n + 1));
  const sent = new Map<string, number>();
  const datagrams: SwimUpdateWire[][] = [];
  for (let t = 0; t < 200 * config.gossipTicks; t++) {
    swim.tick();
    for (const out of swim.ready().messages) {
      assert.equal(out.message.t, "swim-gossip");
      if (out.message.t !== "swim-gossip") continue;
      datagrams.push(out.message.updates);
      for (const update of out.message.updates) {
        assert.equal(update[0], 0);
        const id = update[0] === 0 ? update[1][0] : update[1];
        sent.set(id, (sent.get(id) ?? 0) + 1);
      }
    }
  }
  // Newest news first: the last member added leads the first datagram, and so on down.
  const first = (datagrams[0] ?? []).map((u) => (u[0] === 0 ? u[1][0] : u[1]));
  assert.deepEqual(first, Array.from({ length: first.length }, (_, k) => testEntry(n - 1 - k).id));
  assert.equal(sent.size, n, "every member's news and our own went out");
  for (const [id, count] of sent) assert.equal(count, limit, `${id} sent ${count} times`);
  // Sends are spread evenly: no update goes out a (c+1)-th time while another has gone out < c times.
  const seen = new Map<string, number>();
  for (const updates of datagrams) {
    const before = Math.min(...[...sent.keys()].map((id) => seen.get(id) ?? 0));
    for (const u of updates) {
      const id = u[0] === 0 ? u[1][0] : u[1];
      const c = seen.get(id) ?? 0;
      assert.ok(c <= before + 1, `${id} sent a ${c + 1}th time while another had ${before}`);
      seen.set(id, c + 1);
    }
  }
});

test("swim: random picks at n = 200 skip forgotten members and spread over the live ones", () => {
  const config = { ...SWIM_LAN, tombstoneTicks: 200, gossipToTheDeadTicks: 100 };
  const self = testEntry(0);
  const accuser = testEntry(1);
  const swim = new Swim(self, createRng(8), testCrypto, config);
  const n = 201;
  for (let i = 1; i < n; i++) swim.add(testEntry(i));
  // Every other member is declared dead, then forgotten.
  const deadAddrs = new Set<string>();
  for (let i = 2; i < n; i += 2) {
    swim.step(accuser.id, gossip([claim(2, testEntry(i).id, 0, accuser.id)]));
    deadAddrs.add(testEntry(i).addr);
  }
  for (let t = 0; t < 300; t++) swim.tick();
  swim.ready();
  assert.equal([...swim.members()].length, n - 1 - deadAddrs.size, "tombstones not reaped");
  assert.equal(swim.size, n - deadAddrs.size);
  const targets = new Set<string>();
  let incarnation = 0;
  for (let t = 0; t < 20 * PERIOD; t++) {
    // Keep news flowing so that gossip goes out: the accuser refutes an imagined suspicion.
    if (t % config.gossipTicks === 0) swim.step(accuser.id, gossip([[0, entryToWire({ ...accuser, incarnation: ++incarnation })]]));
    swim.tick();
    for (const out of swim.ready().messages) {
      assert.ok(!deadAddrs.has(out.to), `message ${out.message.t} to a forgotten member ${out.to}`);
      targets.add(out.to);
    }
  }
  assert.ok(targets.size >= 80, `only ${targets.size} distinct destinations among 100 live members`);
});

test("swim: cores sharing a directory hold each identity once; a new address is kept per core", () => {
  const directory = new SwimDirectory();
  const a = new Swim(testEntry(0), createRng(30), testCrypto, SWIM_LAN, { directory });
  const b = new Swim(testEntry(1), createRng(31), testCrypto, SWIM_LAN, { directory });
  const x = testEntry(2);
  a.add(x);
  b.add(x);
  assert.equal(directory.size, 3, "self a, self b, x");
  // x comes back at b with a new address and name (a restart elsewhere): b keeps it, a does not see it.
  const moved = testEntry(2, { addr: "10.9.9.9:7001", name: "moved", incarnation: 1 });
  b.step(x.id, gossip([[0, entryToWire(moved)]]));
  assert.deepEqual(b.member(x.id)?.entry, moved);
  assert.deepEqual(a.member(x.id)?.entry, x);
  assert.equal(directory.addrs[directory.slotOf(x.id) as number], x.addr, "the directory keeps the first copy");
  // b's table and its probes use the new address.
  assert.deepEqual(b.table().find((u) => u[0] === 0 && u[1][0] === x.id), [0, entryToWire(moved)]);
  let pinged: string | undefined;
  for (let t = 0; t < 3 * SWIM_LAN.probeTicks && pinged === undefined; t++) {
    b.tick();
    pinged = b.ready().messages.find((m) => m.message.t === "swim-ping" && m.message.target === x.id)?.to;
  }
  assert.equal(pinged, moved.addr);
});

test("swim: a forgotten member's directory slot is freed once no core holds it, and reused", () => {
  const config = { ...SWIM_LAN, tombstoneTicks: 200 };
  const directory = new SwimDirectory();
  const self = testEntry(0);
  const accuser = testEntry(1);
  const swim = new Swim(self, createRng(32), testCrypto, config, { directory });
  swim.add(accuser);
  for (let i = 2; i < 40; i++) swim.add(testEntry(i));
  assert.equal(directory.size, 40);
  const slots = new Set(Array.from({ length: 38 }, (_, k) => directory.slotOf(testEntry(k + 2).id)));
  for (let i = 2; i < 40; i++) swim.step(accuser.id, gossip([claim(2, testEntry(i).id, 0, accuser.id)]));
  // Tombstones expire, then the slots go back at the next probe round (accuser is the only live one).
  for (let t = 0; t < 300 + 3 * config.probeTicks; t++) swim.tick();
  assert.equal([...swim.members()].length, 1);
  assert.equal(directory.size, 2, "only self and the accuser are held");
  // New members take the freed slots; the tables do not grow.
  for (let i = 40; i < 78; i++) swim.add(testEntry(i));
  for (let i = 40; i < 78; i++) assert.ok(slots.has(directory.slotOf(testEntry(i).id)), `member ${i} got a fresh slot`);
  assert.equal(directory.slots, 40);
  for (let i = 40; i < 78; i++) assert.equal(swim.member(testEntry(i).id)?.state, "alive");
  assert.equal(swim.member(testEntry(5).id), undefined);
});

test("swim: probes cycle through every live member, a joiner within n − 1 periods of joining", () => {
  const n = 12;
  let checked = 0;
  for (let seed = 1; seed <= 50; seed++) {
    const swim = new Swim(testEntry(0), createRng(seed, 40), testCrypto, SWIM_LAN);
    for (let i = 1; i < n; i++) swim.add(testEntry(i));
    const targets: string[] = [];
    const joiner = testEntry(n);
    let joinedAt = -1;
    while (targets.length < 5 * n) {
      swim.tick();
      for (const out of swim.ready().messages) {
        if (out.message.t !== "swim-ping") continue;
        targets.push(out.message.target);
        // Every target answers, so nobody is suspected and the period stays put.
        swim.step(out.message.target, { t: "swim-ack", seq: out.message.seq, updates: [] });
      }
      if (targets.length === n + 2 && joinedAt < 0) {
        swim.add(joiner);
        joinedAt = targets.length;
      }
    }
    // Any n − 1 consecutive probes before the join cover the n − 1 members once each.
    for (let from = 0; from + n - 1 <= joinedAt; from++) {
      assert.equal(new Set(targets.slice(from, from + n - 1)).size, n - 1, `seed ${seed}: probes ${from}.. ${targets.join(",")}`);
      checked++;
    }
    // The joiner is probed within n probes of joining (n members now), and from then on any n
    // consecutive probes cover all n members.
    const first = targets.indexOf(joiner.id, joinedAt);
    assert.ok(first >= joinedAt && first < joinedAt + n, `seed ${seed}: joiner first probed ${first - joinedAt} probes after joining`);
    for (let from = first; from + n <= targets.length; from++) {
      assert.equal(new Set(targets.slice(from, from + n)).size, n, `seed ${seed}: probes ${from}.. ${targets.join(",")}`);
      checked++;
    }
  }
  assert.ok(checked >= 50 * 20, `${checked} windows checked`);
});

test("swim: the member nothing was heard from is probed first; a silent one is probed within n − 1 periods", () => {
  const n = 8;
  const swim = new Swim(testEntry(0), createRng(41), testCrypto, SWIM_LAN);
  for (let i = 1; i < n; i++) swim.add(testEntry(i));
  const silent = testEntry(5).id;
  const probes: string[] = [];
  // Everyone but member 5 is heard from (any layer's packet) before each probe period ends.
  for (let t = 0; probes.length < 3 * n; t++) {
    swim.tick();
    for (const out of swim.ready().messages) {
      if (out.message.t !== "swim-ping") continue;
      probes.push(out.message.target);
      swim.step(out.message.target, { t: "swim-ack", seq: out.message.seq, updates: [] });
    }
    if (t % 10 === 0) for (let i = 1; i < n; i++) if (i !== 5) swim.heard(testEntry(i).id);
  }
  // Once the first probe has reached it, the silent member is the only one probed: the others are
  // always heard from more recently than it was probed.
  const firstSilent = probes.indexOf(silent);
  assert.ok(firstSilent >= 0 && firstSilent < n - 1, `the silent member was first probed at ${firstSilent}: ${probes.join(",")}`);
  assert.deepEqual(probes.slice(firstSilent), probes.slice(firstSilent).map(() => silent));
  // Without that traffic (only SWIM's own acks), the order is round-robin again: a member that
  // stops answering is probed again within n − 1 periods of its last probe.
  const quiet = new Swim(testEntry(0), createRng(42), testCrypto, SWIM_LAN);
  for (let i = 1; i < n; i++) quiet.add(testEntry(i));
  const order: string[] = [];
  while (order.length < 2 * (n - 1)) {
    quiet.tick();
    for (const out of quiet.ready().messages) {
      if (out.message.t !== "swim-ping") continue;
      order.push(out.message.target);
      quiet.step(out.message.target, { t: "swim-ack", seq: out.message.seq, updates: [] });
    }
  }
  assert.deepEqual(order.slice(n - 1), order.slice(0, n - 1), "two identical cycles");
});

test("swim: knowAll starts a core knowing the directory's members, with only its own news to spread", () => {
  const directory = new SwimDirectory();
  for (let i = 0; i < 50; i++) directory.add(testEntry(i));
  const swim = new Swim(testEntry(7), createRng(33), testCrypto, SWIM_LAN, { directory, knowAll: true });
  assert.equal(swim.size, 50);
  assert.equal([...swim.members()].length, 49);
  assert.equal(swim.member(testEntry(3).id)?.state, "alive");
  assert.equal(swim.member(testEntry(7).id), undefined, "self is not a member");
  const updates: SwimUpdateWire[] = [];
  for (let t = 0; t < 2 * SWIM_LAN.probeTicks; t++) {
    swim.tick();
    for (const out of swim.ready().messages) if ("updates" in out.message) updates.push(...out.message.updates);
  }
  assert.ok(updates.length > 0);
  for (const update of updates) assert.deepEqual(update, [0, entryToWire(testEntry(7))]);
});
