// Acceptance 3: a live node (child process, real UDP) takes ≥ 100,000 hostile packets — random
// bytes, oversize datagrams, valid envelopes then mutated (flipped bytes, truncations), exact
// replays of valid packets, packets sealed with a wrong key — and stays up with its member table
// unchanged, each packet counted under exactly the drop reason its class predicts.
//
// The sender is paced by the node's own counters (/metrics): what is in flight stays within a budget,
// so the socket's receive buffer never overflows (a datagram the OS dropped would make the counts
// wrong, and the test says so instead of passing by luck).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setImmediate as yieldToLoop, setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { createSeal, makeToken } from "../../src/adapters/seal.ts";
import { createIdentityFromSeed } from "../../src/adapters/identity.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import { createRng } from "../../src/core/util/rng.ts";
import { decodeHeader } from "../../src/core/wire/envelope.ts";
import { encodeMessage } from "../../src/core/wire/codec.ts";

const BIN = fileURLToPath(new URL("../../bin/pk.js", import.meta.url));
const TOTAL = 100_000;
/** Estimated kernel buffer bytes (see truesize below) of packets sent and not yet counted. */
const BUDGET = 150_000;
/** Packets per burst between yields to the event loop. */
const BURST = 200;
const SEED = Number(process.env["PK_FUZZ_SEED"] ?? Date.now() % 1_000_000);

type Outcome = "auth" | "decode" | "replay" | "oversize" | "accepted";
type Class = "garbage" | "oversize" | "valid" | "replay" | "mutated" | "truncated" | "wrong-key";
/** Share of each class, in percent. */
const MIX: ReadonlyArray<readonly [Class, number]> = [
  ["garbage", 20], ["oversize", 5], ["valid", 12], ["replay", 13], ["mutated", 20], ["truncated", 15], ["wrong-key", 15],
];

interface Counters {
  auth: number;
  decode: number;
  replay: number;
  oversize: number;
  accepted: number;
}

function metricValue(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  assert.ok(line !== undefined, `metrics has ${series}`);
  return Number(line.slice(series.length + 1));
}

async function counters(api: string): Promise<Counters> {
  const text = await (await fetch(`${api}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  return {
    auth: metricValue(text, "pk_packets_dropped_total{reason=\"auth\"}"),
    decode: metricValue(text, "pk_packets_dropped_total{reason=\"decode\"}"),
    replay: metricValue(text, "pk_packets_dropped_total{reason=\"replay\"}"),
    oversize: metricValue(text, "pk_packets_dropped_total{reason=\"oversize\"}"),
    accepted: metricValue(text, "pk_packets_total{channel=\"datagram\",direction=\"in\"}"),
  };
}

function sum(c: Counters): number {
  return c.auth + c.decode + c.replay + c.oversize + c.accepted;
}

/**
 * What the kernel's inbound pipeline must make of a packet that does not authenticate: the node's
 * own id, or a pair packet (a mutated intro bit) — sealed for some boot of the node, never this
 * one's — are replays before any key is tried; an intro packet fails its tag.
 */
function unauthenticatedOutcome(packet: Uint8Array, nodeId: string): Outcome {
  if (packet.length > LIMITS.datagramBytesMax) return "oversize";
  const header = decodeHeader(packet);
  if (!header.ok || header.header.channel !== "datagram") return "decode";
  if (header.header.sender === nodeId || !header.header.intro) return "replay";
  return "auth";
}

interface Member {
  id: string;
  addr: string;
  state: string;
  incarnation: number;
  name: string;
  role: string;
}

async function members(api: string): Promise<Member[]> {
  const body = await (await fetch(`${api}/v1/status`, { signal: AbortSignal.timeout(5_000) })).json() as { members: Member[] };
  return body.members.map(({ id, addr, state, incarnation, name, role }) => ({ id, addr, state, incarnation, name, role }));
}

test("a live node survives 100,000 hostile packets and counts each by reason (acceptance 3)", { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pk-fuzz-"));
  const token = makeToken();
  // The token through the environment: pk node refuses it on the command line.
  const child = spawn(process.execPath, [BIN, "node", "--data", dir, "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--name", "target"], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PK_TOKEN: token } });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => { stderr += chunk.toString(); });
  const socket = createSocket("udp4");
  t.after(async () => {
    socket.close();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          child.kill("SIGKILL");
          resolve();
        }, 5_000);
        child.once("exit", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const ready = await new Promise<{ id: string; listen: string; api: string }>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`node not ready in 15 s: ${stderr}`)), 15_000);
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split("\n").find((l) => l.startsWith("{\"ready\":true"));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as { id: string; listen: string; api: string });
      }
    });
    child.once("exit", (code) => reject(new Error(`node exited with ${code}: ${stderr}`)));
  });
  const [host, portText] = ready.listen.split(":");
  const port = Number(portText);
  assert.ok(host !== undefined && port > 0);
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));

  const membersBefore = await members(ready.api);
  const before = await counters(ready.api);

  const rng = createRng(SEED);
  // A holder of the cluster token who is no member: its packets are intro packets (the cluster
  // key only); its pings authenticate and are then denied (an intro packet carries the handshake
  // alone), counted among the packets in.
  const sender = createIdentityFromSeed(new Uint8Array(32).fill(0x5e));
  const epoch = Date.now();
  const seal = createSeal(token, sender);
  const wrongSeal = createSeal(makeToken(), sender);
  let counter = 0;
  const randomBytes = (length: number): Uint8Array => {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = rng.nextU32() & 0xff;
    return out;
  };
  const ping = (which = seal): Uint8Array => {
    counter++;
    return which.seal("datagram", epoch, counter, encodeMessage({ t: "ping", seq: counter, sent: counter * 1000 }));
  };
  const originals: Uint8Array[] = [];
  const expected: Counters = { auth: 0, decode: 0, replay: 0, oversize: 0, accepted: 0 };
  const sentByClass: Record<Class, number> = { garbage: 0, oversize: 0, valid: 0, replay: 0, mutated: 0, truncated: 0, "wrong-key": 0 };

  function next(): Uint8Array {
    let pick = rng.int(100);
    let kind: Class = "garbage";
    for (const [name, share] of MIX) {
      if (pick < share) {
        kind = name;
        break;
      }
      pick -= share;
    }
    if (kind === "replay" && originals.length === 0) kind = "valid";
    sentByClass[kind]++;
    switch (kind) {
      case "garbage": {
        const packet = randomBytes(rng.int(LIMITS.datagramBytesMax + 1));
        if (packet.length > 0 && packet[0] === 0x70) packet[0] = 0x71; // never the magic: always `decode`
        expected.decode++;
        return packet;
      }
      case "oversize":
        expected.oversize++;
        return randomBytes(LIMITS.datagramBytesMax + 1 + rng.int(600));
      case "valid": {
        const packet = ping();
        originals.push(packet);
        if (originals.length > 4096) originals.splice(0, 1024);
        expected.accepted++;
        return packet;
      }
      case "replay":
        expected.replay++;
        return originals[rng.int(originals.length)] as Uint8Array;
      case "mutated": {
        const packet = ping();
        const flips = 1 + rng.int(3);
        const positions = new Set<number>();
        while (positions.size < flips) positions.add(rng.int(packet.length));
        for (const position of positions) packet[position] = (packet[position] as number) ^ (1 + rng.int(255));
        expected[unauthenticatedOutcome(packet, ready.id)]++;
        return packet;
      }
      case "truncated": {
        const full = ping();
        const cut = full.subarray(0, rng.int(full.length));
        expected[unauthenticatedOutcome(cut, ready.id)]++;
        return cut;
      }
      case "wrong-key":
        expected.auth++;
        return ping(wrongSeal);
    }
  }

  let pending: Uint8Array | undefined;
  const sendOne = (packet: Uint8Array): Promise<void> => new Promise((resolve, reject) => {
    socket.send(packet, port, host, (error) => (error ? reject(error) : resolve()));
  });

  // Pacing: the node's socket buffer (SO_RCVBUF, ~208 KiB by default on Linux) is charged each
  // datagram's kernel "truesize", its length rounded up to a power of two plus ~640 bytes of
  // bookkeeping. Packets the node has not counted yet may take at most BUDGET of that estimate;
  // one poller reads the node's counters back-to-back while the sender fills the budget.
  const truesize = (length: number): number => 2 ** Math.ceil(Math.log2(length + 200)) + 640;
  const costs: number[] = [];
  let sent = 0;
  let inFlight = 0;
  let counted = 0;
  let retired = 0;
  let polls = 0;
  let sending = true;
  let wake: (() => void) | undefined;
  const poller = (async () => {
    while (sending) {
      counted = sum(await counters(ready.api)) - sum(before);
      polls++;
      while (retired < counted && retired < costs.length) inFlight -= costs[retired++] as number;
      wake?.();
      if (inFlight === 0) await sleep(1);
    }
  })();
  const started = performance.now();
  while (sent < TOTAL) {
    const burst: Promise<void>[] = [];
    while (sent < TOTAL && burst.length < BURST) {
      const packet = next();
      const cost = truesize(packet.length);
      if (inFlight + cost > BUDGET && inFlight > 0) {
        pending = packet;
        break;
      }
      costs.push(cost);
      inFlight += cost;
      sent++;
      burst.push(sendOne(packet));
    }
    await Promise.all(burst);
    if (pending !== undefined) {
      const packet: Uint8Array = pending;
      pending = undefined;
      while (inFlight + truesize(packet.length) > BUDGET && inFlight > 0) await new Promise<void>((resolve) => { wake = resolve; });
      wake = undefined;
      costs.push(truesize(packet.length));
      inFlight += truesize(packet.length);
      sent++;
      await sendOne(packet);
    }
    await yieldToLoop();
  }
  sending = false;
  await poller;
  // Let the node count the last window; a shortfall that does not go away is packets lost in the OS.
  const deadline = Date.now() + 10_000;
  let after = await counters(ready.api);
  while (sum(after) - sum(before) < TOTAL && Date.now() < deadline) {
    await sleep(20);
    after = await counters(ready.api);
  }
  const seconds = (performance.now() - started) / 1000;
  const delta: Counters = {
    auth: after.auth - before.auth,
    decode: after.decode - before.decode,
    replay: after.replay - before.replay,
    oversize: after.oversize - before.oversize,
    accepted: after.accepted - before.accepted,
  };
  const rate = Math.round(TOTAL / seconds);
  t.diagnostic(`seed ${SEED}: ${TOTAL} packets in ${seconds.toFixed(2)} s = ${rate} packets/s (${polls} metric polls); sent ${JSON.stringify(sentByClass)}; counted ${JSON.stringify(delta)}`);
  console.log(JSON.stringify({ acceptance: 3, seed: SEED, packets: TOTAL, seconds: Number(seconds.toFixed(2)), packetsPerSecond: rate, sent: sentByClass, counted: delta }));

  assert.equal(sum(delta), TOTAL, `every packet reached the node and was counted (seed ${SEED}); a shortfall means the OS dropped datagrams`);
  assert.deepEqual(delta, expected, `counts by reason match the classes sent (seed ${SEED})`);
  assert.ok(delta.auth > 0 && delta.decode > 0 && delta.replay > 0 && delta.oversize > 0, "every reason was exercised");

  // Still up, same member table (itself only: nothing hostile or unknown got in).
  assert.equal(child.exitCode, null, `node still running; stderr: ${stderr}`);
  assert.deepEqual(await members(ready.api), membersBefore);
  const shell = await fetch(`${ready.api}/v1/shell`, { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` }, body: JSON.stringify({ line: "net" }) });
  const net = await shell.json() as { ok: boolean; output: string };
  assert.equal(net.ok, true);
  // The valid pings authenticated (intro packets, the cluster key) and were then denied: an intro
  // packet carries the handshake alone. Nothing was an unknown member's.
  assert.match(net.output, new RegExp(`^drops +auth ${after.auth} +unknown 0 +denied ${after.accepted} +decode ${after.decode} +replay ${after.replay} +oversize ${after.oversize}$`, "m"));
});
