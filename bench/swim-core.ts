// `npm run bench -- swim-core [--sizes 100,1000,5000] [--ticks T] [--seed S] [--harness-max N]`:
// per-message cost of the SWIM core (src/core/body/swim.ts) as the member table grows (issue 3).
//
// Two measurements per size n, both with steady churn, both deterministic from the seed:
//  - "core": one Swim core that knows n members, fed datagrams from them through
//    encodeMessage/decodeMessage (pings, ping-reqs, gossip carrying churn news: each probe period
//    1% of the members are suspected by someone, then refute with a higher incarnation). Every
//    message the core sends is encoded too. Cheap at any n, so it isolates the per-message cost.
//  - "harness": the whole SwimSim of test/core/swim-harness.ts with n nodes, one node crashing
//    every half probe period and coming back 5 periods later. Every node knows every other
//    (n² members), so this runs only up to --harness-max (default 1000).
// messagesPerSecond = datagrams and streams handled (in + out) per wall-clock second.
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { Swim, SWIM_LAN } from "../src/core/body/swim.ts";
import { createRng } from "../src/core/util/rng.ts";
import { decodeMessage, encodeMessage } from "../src/core/wire/codec.ts";
import { entryToWire, type Message, type MemberEntry, type SwimUpdateWire } from "../src/core/wire/messages.ts";
import { claim, SwimSim, testCrypto, testEntry } from "../test/core/swim-harness.ts";

interface CoreResult {
  readonly n: number;
  readonly ticks: number;
  readonly messagesIn: number;
  readonly messagesOut: number;
  readonly wallMs: number;
  readonly messagesPerSecond: number;
}

interface HarnessResult {
  readonly n: number;
  readonly ticks: number;
  readonly messages: number;
  readonly crashes: number;
  readonly wallMs: number;
  readonly messagesPerSecond: number;
  readonly setupMs: number;
}

function roundTrip(message: Message): Message {
  const decoded = decodeMessage(encodeMessage(message));
  if (!decoded.ok) throw new Error(`decode failed: ${decoded.detail}`);
  return decoded.message;
}

function runCore(n: number, ticks: number, seed: number): CoreResult {
  const entries: MemberEntry[] = [];
  for (let i = 0; i < n; i++) entries.push(testEntry(i));
  const self = entries[0] as MemberEntry;
  const swim = new Swim(self, createRng(seed, 3), testCrypto, SWIM_LAN);
  for (let i = 1; i < n; i++) swim.add(entries[i] as MemberEntry);
  const incarnations = new Array<number>(n).fill(0);
  const rng = createRng(seed, 11);
  // Let the initial news drain a little before measuring, as a running node would have.
  for (let t = 0; t < 2 * SWIM_LAN.probeTicks; t++) {
    swim.tick();
    swim.ready();
  }
  const other = (): number => 1 + rng.int(n - 1);
  // 1% of the members per probe period, at least one per period.
  const churnPerTick = Math.max(1, n / 100) / SWIM_LAN.probeTicks;
  let churnDebt = 0;
  const pending: SwimUpdateWire[] = [];
  let messagesIn = 0;
  let messagesOut = 0;
  let seq = 1;
  const start = performance.now();
  for (let t = 0; t < ticks; t++) {
    churnDebt += churnPerTick;
    while (churnDebt >= 1) {
      churnDebt -= 1;
      const victim = other();
      const accuser = other();
      const id = (entries[victim] as MemberEntry).id;
      if (rng.chance(0.5)) {
        pending.push(claim(1, id, incarnations[victim] as number, (entries[accuser] as MemberEntry).id));
      } else {
        const incarnation = (incarnations[victim] as number) + 1;
        incarnations[victim] = incarnation;
        pending.push([0, entryToWire({ ...(entries[victim] as MemberEntry), incarnation })]);
      }
    }
    // A few datagrams per tick, as a node in a cluster of n sees: pings, gossip, the odd ping-req.
    for (let k = 0; k < 3; k++) {
      const from = entries[other()] as MemberEntry;
      const updates = pending.splice(0, 4);
      const roll = rng.int(10);
      let message: Message;
      if (roll < 5) message = { t: "swim-ping", seq: seq++, target: self.id, addr: from.addr, updates };
      else if (roll < 9) message = { t: "swim-gossip", updates };
      else {
        const target = entries[other()] as MemberEntry;
        message = { t: "swim-ping-req", seq: seq++, target: target.id, targetAddr: target.addr, addr: from.addr, updates };
      }
      swim.step(from.id, roundTrip(message));
      messagesIn++;
    }
    swim.tick();
    const ready = swim.ready();
    for (const out of ready.messages) encodeMessage(out.message);
    messagesOut += ready.messages.length;
  }
  const wallMs = performance.now() - start;
  const messages = messagesIn + messagesOut;
  return { n, ticks, messagesIn, messagesOut, wallMs: Math.round(wallMs), messagesPerSecond: Math.round(messages / (wallMs / 1000)) };
}

function runHarness(n: number, ticks: number, seed: number): HarnessResult {
  const setupStart = performance.now();
  const sim = new SwimSim({ n, seed });
  // Warm-up: the initial news (every member, at every node) drains.
  sim.run(3 * SWIM_LAN.probeTicks);
  const setupMs = performance.now() - setupStart;
  const rng = createRng(seed, 13);
  const down: { node: number; until: number }[] = [];
  let crashes = 0;
  const sentBefore = sim.sent;
  const start = performance.now();
  for (let t = 0; t < ticks; t++) {
    if (t % (SWIM_LAN.probeTicks / 2) === 0) {
      const node = rng.int(n);
      if (!sim.crashed.has(node)) {
        sim.crash(node);
        down.push({ node, until: sim.now + 5 * SWIM_LAN.probeTicks });
        crashes++;
      }
    }
    while (down.length > 0 && (down[0] as { until: number }).until <= sim.now) {
      sim.crashed.delete((down.shift() as { node: number }).node);
    }
    sim.tick();
  }
  const wallMs = performance.now() - start;
  const messages = sim.sent - sentBefore;
  return {
    n, ticks, messages, crashes, wallMs: Math.round(wallMs),
    messagesPerSecond: Math.round(messages / (wallMs / 1000)), setupMs: Math.round(setupMs),
  };
}

export function run(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      sizes: { type: "string", default: "100,1000,5000" },
      ticks: { type: "string", default: "3000" },
      "harness-ticks": { type: "string", default: "1000" },
      "harness-max": { type: "string", default: "1000" },
      seed: { type: "string", default: "1" },
    },
    strict: true,
  });
  const sizes = values.sizes.split(",").map(Number);
  const ticks = Number(values.ticks);
  const harnessTicks = Number(values["harness-ticks"]);
  const harnessMax = Number(values["harness-max"]);
  const seed = Number(values.seed);
  const core: CoreResult[] = [];
  const harness: HarnessResult[] = [];
  for (const n of sizes) {
    core.push(runCore(n, ticks, seed));
    if (n <= harnessMax) harness.push(runHarness(n, harnessTicks, seed));
  }
  return Promise.resolve({ bench: "swim-core", seed, core, harness });
}
