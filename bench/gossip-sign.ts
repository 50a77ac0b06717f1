// `npm run bench -- gossip-sign [--rows N] [--bytes B]`: what a gossip row's writer signature
// (issue 13; docs/protocols/gossip.md "Signatures") costs, in this process. Measured side by side:
//
//   sign      signRow: the row's canonical bytes (rowBody) and the node's RecordSigner signature, kind
//             "row" — once per local write.
//   verify    RecordSigner.check of a row signed by another node (its key already matched to its id,
//             as after its first row) — once per row a node takes.
//   body      rowBody alone (what the stand-in signatures add their fingerprint to).
//   apply     Gossip.step of a delta carrying N fresh rows of one origin at a receiver, per row (the
//             check, the copy, the merge), and the same delta again (duplicates: nothing checked).
//   publish   Gossip.publish per write (the stamp, the signature, the merge).
//
// Each with real Ed25519 (node:crypto, src/adapters/identity.ts) and with the simulator's stand-in
// signatures (src/sim/identity.ts). Prints JSON: µs per row (median of rounds).
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { createIdentityFromSeed } from "../src/adapters/identity.ts";
import { RecordSigner } from "../src/core/body/trust.ts";
import { Gossip, GOSSIP_DEFAULTS, makeRow, rowBody, rowWire, signRow, type GossipRow } from "../src/core/collective/gossip.ts";
import type { GossipMessage } from "../src/core/collective/gossip-wire.ts";
import { createRng } from "../src/core/util/rng.ts";
import type { Identity } from "../src/node/ports.ts";
import { createSimIdentity } from "../src/sim/identity.ts";

const BASE_MS = 1_760_000_000_000;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function timeUs(rounds: number, count: number, fn: (i: number) => void): number {
  const perRound: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < count; i++) fn(i);
    perRound.push(((performance.now() - t0) * 1000) / count);
  }
  return median(perRound);
}

function seed(n: number): Uint8Array {
  return new Uint8Array(32).fill(n);
}

function measure(kind: "real" | "stand-in", rows: number, bytes: number): Record<string, number> {
  const make = kind === "real" ? createIdentityFromSeed : createSimIdentity;
  const writer: Identity = make(seed(1));
  const reader: Identity = make(seed(2));
  const writerSigner = new RecordSigner(writer, writer);
  const readerSigner = new RecordSigner(reader, reader);
  const value = new Uint8Array(bytes).fill(7);
  const unsigned = Array.from({ length: rows }, (_, i) => makeRow("sensors", `k${i}`, value, BASE_MS + i, 0, writer.id, i + 1));
  const rounds = 7;
  const signed: GossipRow[] = unsigned.map((r) => signRow(writerSigner, r));
  // Warm-up (JIT, and the reader matches the writer's key to its id once).
  for (const r of signed.slice(0, 200)) if (readerSigner.check("row", r.origin, r.pub, rowBody(r), r.sig) !== undefined) throw new Error("bench gossip-sign: a row does not verify");
  const body = timeUs(rounds, rows, (i) => void rowBody(unsigned[i] as GossipRow));
  const sign = timeUs(rounds, rows, (i) => void signRow(writerSigner, unsigned[i] as GossipRow));
  const verify = timeUs(rounds, rows, (i) => {
    const r = signed[i] as GossipRow;
    readerSigner.check("row", r.origin, r.pub, rowBody(r), r.sig);
  });
  // Apply: a fresh receiver per round takes the same delta of `rows` fresh rows (groups of at most 4,096 rows).
  const groups: GossipMessage["r"] = [];
  for (let at = 0; at < rows; at += 4096) {
    const part = signed.slice(at, at + 4096);
    groups.push([writer.id, at, at + part.length, part.map(rowWire)]);
  }
  const delta: GossipMessage = { t: "gossip", h: 3, n: 0, d: [], r: groups, g: [] };
  const config = { ...GOSSIP_DEFAULTS, rowsMax: Math.max(GOSSIP_DEFAULTS.rowsMax, rows), keysPerTopicMax: Math.max(GOSSIP_DEFAULTS.keysPerTopicMax, rows) };
  const applyRounds: number[] = [];
  const againRounds: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const g = new Gossip(reader.id, new RecordSigner(reader, reader), createRng(r), config);
    g.tick(BASE_MS + rows + 1_000, []);
    let t0 = performance.now();
    g.step(writer.id, delta);
    applyRounds.push(((performance.now() - t0) * 1000) / rows);
    if (g.size !== rows) throw new Error(`bench gossip-sign: took ${g.size} of ${rows} rows`);
    g.ready();
    t0 = performance.now();
    g.step(writer.id, delta);
    againRounds.push(((performance.now() - t0) * 1000) / rows);
  }
  const publishRounds: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const g = new Gossip(writer.id, new RecordSigner(writer, writer), createRng(r), config);
    g.tick(BASE_MS, []);
    const t0 = performance.now();
    for (let i = 0; i < rows; i++) g.publish("sensors", `k${i}`, value);
    publishRounds.push(((performance.now() - t0) * 1000) / rows);
  }
  const round = (x: number): number => Math.round(x * 100) / 100;
  return {
    body: round(body), sign: round(sign), verify: round(verify),
    apply: round(median(applyRounds)), applyDuplicates: round(median(againRounds)), publish: round(median(publishRounds)),
  };
}

export async function run(args: string[]): Promise<unknown> {
  const { values } = parseArgs({ args, options: { rows: { type: "string", default: "5000" }, bytes: { type: "string", default: "8" } }, strict: true });
  const rows = Number(values.rows);
  const bytes = Number(values.bytes);
  if (!(rows >= 200 && rows <= 200_000 && bytes >= 0 && bytes <= GOSSIP_DEFAULTS.valueBytesMax)) throw new Error(`--rows in [200, 200000], --bytes in [0, ${GOSSIP_DEFAULTS.valueBytesMax}]`);
  const real = measure("real", rows, bytes);
  const standIn = measure("stand-in", rows, bytes);
  return Promise.resolve({ bench: "gossip-sign", rows, valueBytes: bytes, usPerRow: { real, standIn } });
}
