// A small simulated network for Gossip cores (src/core/collective/gossip.ts): every message goes
// through the real encoder and the schema check, its size is checked against the budget and the
// datagram bound, and delivery is delayed, reordered, duplicated or lost as asked, all from a seed.
// Nodes can be isolated (everything to and from them is lost) and added later (joiners).
// Node i has a fixed key (seed i): its id gid(i) is the key's, and it signs its rows with the
// simulator's stand-in signatures (src/sim/identity.ts), or with real Ed25519 (`realSignatures`).
import assert from "node:assert/strict";
import { createIdentityFromSeed } from "../../src/adapters/identity.ts";
import { RecordSigner } from "../../src/core/body/trust.ts";
import { ENVELOPE_BYTES, Gossip, GOSSIP_DEFAULTS, rowWire, signRow, makeRow, type GossipConfig, type GossipEvent, type GossipRow } from "../../src/core/collective/gossip.ts";
import { isGossipWire, packedSize, type GossipMessage } from "../../src/core/collective/gossip-wire.ts";
import { toHex } from "../../src/core/util/bytes.ts";
import { LIMITS } from "../../src/core/util/limits.ts";
import { createRng, type Rng } from "../../src/core/util/rng.ts";
import { packValue, unpackValue } from "../../src/core/wire/codec.ts";
import type { Identity } from "../../src/node/ports.ts";
import { createSimIdentity } from "../../src/sim/identity.ts";

export const BASE_MS = 1_760_000_000_000;

/** Test config: short periods and a short grace period; everything else the defaults. */
export const TEST_CONFIG: GossipConfig = { ...GOSSIP_DEFAULTS, periodTicks: 10, tombstoneGraceTicks: 2_000 };

const identities = new Map<string, Identity>();

/** Node i's identity (cached: making a key costs about 60 µs). */
export function identityOf(i: number, real = false): Identity {
  const name = `${real ? "real" : "sim"}${i}`;
  let identity = identities.get(name);
  if (identity === undefined) {
    const seed = new Uint8Array(32);
    new DataView(seed.buffer).setUint32(0, i + 1);
    identity = real ? createIdentityFromSeed(seed) : createSimIdentity(seed);
    identities.set(name, identity);
  }
  return identity;
}

/** Node i's id: the hash of its key (the same with either kind of signature). */
export function gid(i: number): string {
  return identityOf(i).id;
}

/** A fresh signer (its own refusal counts) for node i. */
export function signerOf(i: number, real = false): RecordSigner {
  const identity = identityOf(i, real);
  return new RecordSigner(identity, identity);
}

/** A core for node i with its own signer. */
export function core(i: number, rng: Rng, config: GossipConfig = TEST_CONFIG, real = false): Gossip {
  return new Gossip(gid(i), signerOf(i, real), rng, config);
}

/** A row written and signed by node i (stand-in signatures). */
export function rowBy(i: number, topic: string, key: string, value: Uint8Array | undefined, wall: number, logical: number, version: number): GossipRow {
  return signRow(signerOf(i), makeRow(topic, key, value, wall, logical, gid(i), version));
}

/** A message at hop 3 carrying `rows` (of one origin, ascending versions) as one group from `from`. */
export function deltaOf(rows: readonly GossipRow[], from = 0, upto?: number): GossipMessage {
  const origin = (rows[0] as GossipRow).origin;
  return { t: "gossip", h: 3, n: 0, d: [], r: [[origin, from, upto ?? (rows[rows.length - 1] as GossipRow).version, rows.map(rowWire)]], g: [] };
}

export interface NetOptions {
  readonly n: number;
  readonly seed: number;
  readonly loss?: number;
  readonly duplicate?: number;
  readonly delayMax?: number;
  readonly config?: GossipConfig;
  /** Per-node clock offset in ms. */
  readonly skewMs?: readonly number[];
  /** Real Ed25519 signatures instead of the stand-in ones. */
  readonly realSignatures?: boolean;
}

interface Packet {
  readonly at: number;
  readonly from: number;
  readonly to: number;
  readonly bytes: Uint8Array;
}

export class GossipNet {
  readonly nodes: Gossip[] = [];
  readonly ids: string[] = [];
  readonly events: { node: number; event: GossipEvent }[] = [];
  readonly isolated = new Set<number>();
  /** Every message sent, decoded (for assertions on digests and hops). */
  readonly sent: { from: number; message: GossipMessage; bytes: number }[] = [];
  loss: number;
  now = 0;
  largestBody = 0;
  readonly #rng: Rng;
  readonly #duplicate: number;
  readonly #delayMax: number;
  readonly #config: GossipConfig;
  readonly #seed: number;
  readonly #skew: number[];
  readonly #real: boolean;
  /** Each node's signer (its refusal counts). */
  readonly signers: RecordSigner[] = [];
  #inflight: Packet[] = [];
  readonly #index = new Map<string, number>();

  constructor(options: NetOptions) {
    this.#seed = options.seed;
    this.#rng = createRng(options.seed, 3);
    this.loss = options.loss ?? 0;
    this.#duplicate = options.duplicate ?? 0;
    this.#delayMax = options.delayMax ?? 3;
    this.#config = options.config ?? TEST_CONFIG;
    this.#skew = [...(options.skewMs ?? [])];
    this.#real = options.realSignatures ?? false;
    for (let i = 0; i < options.n; i++) this.add();
  }

  /** Adds a node (fresh, empty table); it starts ticking with the others. */
  add(): number {
    const i = this.nodes.length;
    const id = gid(i);
    this.ids.push(id);
    this.#index.set(id, i);
    const signer = signerOf(i, this.#real);
    this.signers.push(signer);
    this.nodes.push(new Gossip(id, signer, createRng(this.#seed, 100 + i), this.#config));
    while (this.#skew.length <= i) this.#skew.push(0);
    return i;
  }

  physicalMs(i: number): number {
    return BASE_MS + this.now * 10 + (this.#skew[i] ?? 0);
  }

  peersOf(i: number): string[] {
    return this.ids.filter((_, j) => j !== i);
  }

  tick(): void {
    this.now++;
    const due = this.#inflight.filter((p) => p.at <= this.now);
    if (due.length > 0) {
      this.#inflight = this.#inflight.filter((p) => p.at > this.now);
      // Same-tick deliveries in a random order.
      for (let k = due.length - 1; k > 0; k--) {
        const j = this.#rng.int(k + 1);
        [due[k], due[j]] = [due[j] as Packet, due[k] as Packet];
      }
      for (const p of due) this.#deliver(p);
    }
    for (let i = 0; i < this.nodes.length; i++) {
      (this.nodes[i] as Gossip).tick(this.physicalMs(i), this.peersOf(i));
      this.drain(i);
    }
  }

  run(ticks: number): void {
    for (let t = 0; t < ticks; t++) this.tick();
  }

  /** Runs until `until` holds; returns the ticks it took, or throws after `max`. */
  runUntil(until: () => boolean, max: number, what = "condition"): number {
    const start = this.now;
    while (!until()) {
      if (this.now - start >= max) throw new Error(`seed ${this.#seed}: ${what} not reached in ${max} ticks`);
      this.tick();
    }
    return this.now - start;
  }

  /** Sends what a node has to send (call after a local write to send at once; tick() calls it). */
  drain(i: number): void {
    const node = this.nodes[i] as Gossip;
    if (!node.hasReady()) return;
    const ready = node.ready();
    for (const event of ready.events) this.events.push({ node: i, event });
    for (const out of ready.messages) {
      const to = this.#index.get(out.to);
      assert.ok(to !== undefined, `seed ${this.#seed}: message to unknown ${out.to}`);
      const bytes = packValue(out.message);
      assert.equal(bytes.length, packedSize(out.message), `seed ${this.#seed}: packedSize matches the encoder`);
      assert.ok(bytes.length <= this.#config.budgetBytes, `seed ${this.#seed}: body of ${bytes.length} bytes over the budget ${this.#config.budgetBytes}`);
      if (out.channel === "datagram") assert.ok(bytes.length + ENVELOPE_BYTES <= LIMITS.datagramBytesMax, `seed ${this.#seed}: datagram too large`);
      this.largestBody = Math.max(this.largestBody, bytes.length);
      this.sent.push({ from: i, message: out.message, bytes: bytes.length });
      if (this.isolated.has(i) || this.isolated.has(to) || this.#rng.chance(this.loss)) continue;
      const copies = this.#rng.chance(this.#duplicate) ? 2 : 1;
      for (let c = 0; c < copies; c++) this.#inflight.push({ at: this.now + 1 + this.#rng.int(this.#delayMax), from: i, to, bytes });
    }
  }

  /** Hands `message` to node `to` at once as sent by node `from` (through the encoder and the schema), as an attacker would. */
  inject(from: number, to: number, message: GossipMessage): void {
    const value = unpackValue(packValue(message));
    assert.ok(isGossipWire(value), `seed ${this.#seed}: an injected message fails its schema`);
    (this.nodes[to] as Gossip).step(this.ids[from] as string, value);
    this.drain(to);
  }

  #deliver(p: Packet): void {
    if (this.isolated.has(p.from) || this.isolated.has(p.to)) return;
    const value = unpackValue(p.bytes);
    assert.ok(isGossipWire(value), `seed ${this.#seed}: a sent message fails its schema`);
    (this.nodes[p.to] as Gossip).step(this.ids[p.from] as string, value);
    this.drain(p.to);
  }

  /** True when every node (isolated ones included unless `skipIsolated`) holds the same rows. */
  converged(skipIsolated = false): boolean {
    let first: string | undefined;
    for (let i = 0; i < this.nodes.length; i++) {
      if (skipIsolated && this.isolated.has(i)) continue;
      const fp = fingerprint(this.nodes[i] as Gossip);
      if (first === undefined) first = fp;
      else if (fp !== first) return false;
    }
    return true;
  }
}

/** A node's whole table, tombstones included, as a string. */
export function fingerprint(g: Gossip): string {
  return JSON.stringify(g.rows().map(describe));
}

export function describe(row: GossipRow): string {
  return `${row.topic}/${row.key}=${row.value === undefined ? "†" : toHex(row.value)}@${row.wall}.${row.logical}:${row.origin}#${row.version}`;
}

export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}
