// A small deterministic cluster of Sfs cores for tests: each node has an in-memory disk (a Map of
// paths to bytes, folders and temp files) that carries out the core's effects one tick after they
// were asked for, and every message goes through MessagePack and the sfs schemas, one tick of
// latency per hop. Links can be blocked, nodes killed (they stop ticking; messages to and from them
// are dropped) and messages tampered with. Each node has an identity (the simulator's stand-in
// signatures: real keys, so ids derive from them, and cheap signatures) and signs its versions and
// checks its peers' with a RecordSigner, as a node does.
import { createHash } from "node:crypto";
import { Decoder, Encoder } from "@msgpack/msgpack";
import { RecordSigner } from "../../src/core/body/trust.ts";
import {
  Sfs, SFS_DEFAULTS, sfsVersionBody, signedVersion, type SfsCompletion, type SfsConfig, type SfsEffect, type SfsEntry, type SfsEvent, type SfsFileInfo,
  type SfsSignedAs, type SfsVersionFields,
} from "../../src/core/collective/sfs.ts";
import { validateSfsMessage, type SfsMessage, type SfsRecordWire } from "../../src/core/collective/sfs-wire.ts";
import { createRng, type Rng } from "../../src/core/util/rng.ts";
import type { Identity } from "../../src/node/ports.ts";
import { createSimIdentity } from "../../src/sim/identity.ts";

const identities = new Map<number, Identity>();

/** The identity made from seed byte `n` (stand-in signatures), the same every time. */
export function identityOf(n: number): Identity {
  let identity = identities.get(n);
  if (identity === undefined) identities.set(n, (identity = createSimIdentity(new Uint8Array(32).fill(n))));
  return identity;
}

/** Identities for an n-node cluster, in id order (node i has the i-th smallest id). */
function clusterIdentities(n: number): Identity[] {
  return Array.from({ length: n }, (_, i) => identityOf(i + 1)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** A version signed by `writer` (its origin when `writer` is the origin's identity); `signedAs` makes it a derived one. */
export function signedEntry(writer: Identity, fields: SfsVersionFields, signedAs?: SfsSignedAs): SfsEntry {
  const entry: SfsEntry = { ...fields, pub: writer.publicKey, sig: new Uint8Array(64), signedAs };
  return { ...entry, sig: new RecordSigner(writer, writer).sign("sfs", sfsVersionBody(signedVersion(entry))) };
}

export const FRAME_BYTES_MAX = 16 * 1024 * 1024;
const ENVELOPE_BYTES = 44;

export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function infoOf(bytes: Uint8Array, chunkBytes: number, mtimeMs: number): SfsFileInfo {
  const chunkHashes: string[] = [];
  for (let offset = 0; offset < bytes.length; offset += chunkBytes) chunkHashes.push(sha256(bytes.subarray(offset, offset + chunkBytes)));
  return { size: bytes.length, sha256: sha256(bytes), chunkBytes, chunkHashes, mtimeMs };
}

export function randomBytes(rng: Rng, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = rng.nextU32() & 0xff;
  return out;
}

function ancestors(path: string): string[] {
  const parts = path.split("/");
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join("/"));
}

/** The in-memory disk of one node: /shared/ as a Map, and the temp folder. */
export class FakeDisk {
  readonly files = new Map<string, Uint8Array>();
  readonly dirs = new Set<string>();
  readonly temps = new Map<string, Uint8Array>();
  readonly mtimes = new Map<string, number>();
  #mtime = 1_700_000_000_000;
  #stage = 0;

  /** Carries out one effect synchronously and returns its completion. */
  perform(effect: SfsEffect): SfsCompletion {
    switch (effect.kind) {
      case "write-chunk": {
        const old = this.temps.get(effect.temp) ?? new Uint8Array(0);
        const end = effect.offset + effect.bytes.length;
        const grown = old.length >= end ? old : new Uint8Array(end);
        if (grown !== old) grown.set(old);
        grown.set(effect.bytes, effect.offset);
        this.temps.set(effect.temp, grown);
        return { kind: "write-chunk", id: effect.id };
      }
      case "commit": {
        const bytes = this.temps.get(effect.temp) ?? (effect.size === 0 ? new Uint8Array(0) : undefined);
        if (bytes === undefined) return { kind: "commit", id: effect.id, mtimeMs: 0, error: "temp missing" };
        if (bytes.length !== effect.size) return { kind: "commit", id: effect.id, mtimeMs: 0, error: "size" };
        if (effect.verify && sha256(bytes) !== effect.sha256) return { kind: "commit", id: effect.id, mtimeMs: 0, error: "sha256" };
        if (this.dirs.has(effect.path)) {
          const prefix = `${effect.path}/`;
          if ([...this.files.keys()].some((p) => p.startsWith(prefix))) return { kind: "commit", id: effect.id, mtimeMs: 0, error: "is a folder" };
          for (const d of [...this.dirs]) if (d === effect.path || d.startsWith(prefix)) this.dirs.delete(d);
        }
        for (const a of ancestors(effect.path)) if (this.files.has(a)) return { kind: "commit", id: effect.id, mtimeMs: 0, error: "not a folder" };
        for (const a of ancestors(effect.path)) this.dirs.add(a);
        this.temps.delete(effect.temp);
        this.files.set(effect.path, bytes);
        const mtime = this.#mtime++;
        this.mtimes.set(effect.path, mtime);
        return { kind: "commit", id: effect.id, mtimeMs: mtime };
      }
      case "discard":
        this.temps.delete(effect.temp);
        return { kind: "discard", id: effect.id };
      case "remove":
        if (effect.dir ? this.files.has(effect.path) : this.dirs.has(effect.path)) return { kind: "remove", id: effect.id, error: "kind" };
        if (this.dirs.has(effect.path)) {
          const prefix = `${effect.path}/`;
          if ([...this.files.keys()].some((p) => p.startsWith(prefix))) return { kind: "remove", id: effect.id, error: "not-empty" };
          for (const d of [...this.dirs]) if (d.startsWith(prefix)) this.dirs.delete(d);
          this.dirs.delete(effect.path);
        } else this.files.delete(effect.path);
        this.mtimes.delete(effect.path);
        return { kind: "remove", id: effect.id };
      case "mkdir": {
        if ([...ancestors(effect.path), effect.path].some((a) => this.files.has(a))) return { kind: "mkdir", id: effect.id, mtimeMs: 0, error: "a file is in the way" };
        for (const a of [...ancestors(effect.path), effect.path]) this.dirs.add(a);
        const mtime = this.#mtime++;
        this.mtimes.set(effect.path, mtime);
        return { kind: "mkdir", id: effect.id, mtimeMs: mtime };
      }
      case "read-chunk": {
        const file = this.files.get(effect.path);
        if (file === undefined) return { kind: "read-chunk", id: effect.id };
        return { kind: "read-chunk", id: effect.id, bytes: file.slice(effect.offset, effect.offset + effect.length) };
      }
      case "copy": {
        const file = this.files.get(effect.from);
        if (file === undefined) return { kind: "copy", id: effect.id, error: "no such file" };
        this.temps.set(effect.temp, file.slice());
        return { kind: "copy", id: effect.id, info: infoOf(file, effect.chunkBytes, 0) };
      }
    }
  }

  /** Stages bytes in a temp file, as the adapter does for a shell `write`. */
  stage(bytes: Uint8Array, chunkBytes: number): { temp: string; info: SfsFileInfo } {
    const temp = `w${++this.#stage}`;
    this.temps.set(temp, bytes.slice());
    return { temp, info: infoOf(bytes, chunkBytes, this.#mtime) };
  }

  /** A file changed in place behind the core's back (as a user editing /shared/ while the node runs or is down). */
  touch(path: string, bytes: Uint8Array): void {
    this.files.set(path, bytes);
    this.mtimes.set(path, this.#mtime++);
  }

  listing(): { path: string; dir: boolean; size: number; mtimeMs: number }[] {
    return [
      ...[...this.files].map(([path, bytes]) => ({ path, dir: false, size: bytes.length, mtimeMs: this.mtimes.get(path) ?? 0 })),
      ...[...this.dirs].map((path) => ({ path, dir: true, size: 0, mtimeMs: this.mtimes.get(path) ?? 0 })),
    ];
  }
}

export interface SimNode {
  readonly index: number;
  readonly id: string;
  readonly identity: Identity;
  /** The node's signer: its refusal counts (by reason) are the node's. */
  readonly signer: RecordSigner;
  core: Sfs;
  readonly disk: FakeDisk;
  alive: boolean;
  /** Persisted records (what the kernel would write to its store) and clock. */
  readonly store: Map<string, SfsRecordWire>;
  storedClock: number;
  readonly events: SfsEvent[];
}

interface Packet {
  readonly from: number;
  readonly to: number;
  readonly bytes: Uint8Array;
  readonly at: number;
}

export interface ClusterOptions {
  readonly n: number;
  readonly seed?: number;
  readonly config?: Partial<SfsConfig>;
  /** Extra ticks of latency per message, drawn in [0, jitter]. */
  readonly jitter?: number;
}

const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder({ maxStrLength: FRAME_BYTES_MAX, maxBinLength: FRAME_BYTES_MAX, maxArrayLength: 100_000, maxMapLength: 64, maxExtLength: 0 });

export const TEST_CONFIG: SfsConfig = {
  ...SFS_DEFAULTS, chunkBytes: 1024, fileBytesMax: 4 * 1024 * 1024, syncTicks: 20, requestTimeoutTicks: 30, retryTicks: 20, gcTicks: 100,
};

export class SfsCluster {
  readonly nodes: SimNode[] = [];
  readonly config: SfsConfig;
  readonly rng: Rng;
  now = 0;
  wallMs = 1_700_000_000_000;
  #packets: Packet[] = [];
  #effects: { node: number; effect: SfsEffect; at: number }[] = [];
  readonly #jitter: number;
  /** Directed links that drop everything: "from>to". */
  readonly blocked = new Set<string>();
  /** May replace or drop (undefined) a message in flight. */
  tamper: ((from: number, to: number, message: SfsMessage) => SfsMessage | undefined) | undefined;
  /** Called after every tick (invariant checks). */
  afterTick: (() => void) | undefined;
  /** Every message sent: [from, to, message, encoded bytes]. */
  readonly sent: [number, number, SfsMessage, number][] = [];
  /** Chunk requests sent and not yet answered, per "from>to". */
  readonly outstanding = new Map<string, number>();
  maxOutstandingPerPeer = 0;
  maxOutstandingTotal = 0;

  constructor(options: ClusterOptions) {
    this.config = { ...TEST_CONFIG, ...options.config };
    this.rng = createRng(options.seed ?? 1);
    this.#jitter = options.jitter ?? 0;
    clusterIdentities(options.n).forEach((identity, i) => {
      const signer = new RecordSigner(identity, identity);
      this.nodes.push({
        index: i, id: identity.id, identity, signer, core: new Sfs(identity.id, this.config, signer), disk: new FakeDisk(), alive: true, store: new Map(),
        storedClock: 0, events: [],
      });
    });
  }

  membership(i: number): { liveIds(): readonly string[] } {
    return { liveIds: () => this.nodes.filter((n) => n.index !== i && this.#seesAlive(i, n.index)).map((n) => n.id) };
  }

  /** Killed nodes stay "live" in others' view until `gone` is set (SWIM has not noticed yet). */
  readonly gone = new Set<number>();

  #seesAlive(_viewer: number, target: number): boolean {
    return !this.gone.has(target);
  }

  indexOf(id: string): number {
    return this.nodes.findIndex((n) => n.id === id);
  }

  kill(i: number): void {
    (this.nodes[i] as SimNode).alive = false;
    this.#packets = this.#packets.filter((p) => p.from !== i && p.to !== i);
    this.#effects = this.#effects.filter((e) => e.node !== i);
    for (const key of [...this.outstanding.keys()]) if (key.startsWith(`${i}>`) || key.endsWith(`>${i}`)) this.outstanding.delete(key);
  }

  /** Boots a killed node again from its persisted records and a scan of its disk. */
  restart(i: number): void {
    const node = this.nodes[i] as SimNode;
    node.disk.temps.clear();
    node.core = new Sfs(node.id, this.config, node.signer);
    node.core.restore([...node.store.values()], node.storedClock);
    const { rehash } = node.core.reconcile(node.disk.listing(), true);
    for (const path of rehash) {
      const bytes = node.disk.files.get(path) as Uint8Array;
      node.core.localWrite(path, infoOf(bytes, this.config.chunkBytes, node.disk.mtimes.get(path) ?? 0));
    }
    node.alive = true;
    this.#drain(i);
  }

  write(i: number, path: string, bytes: Uint8Array): number {
    const node = this.nodes[i] as SimNode;
    const { temp, info } = node.disk.stage(bytes, this.config.chunkBytes);
    const result = node.core.localWrite(path, info, temp);
    if (!result.ok) throw new Error(result.error);
    this.#drain(i);
    return result.ops[0] as number;
  }

  remove(i: number, path: string, recursive = false): readonly number[] {
    const node = this.nodes[i] as SimNode;
    const result = node.core.localRemove(path, recursive);
    if (!result.ok) throw new Error(result.error);
    this.#drain(i);
    return result.ops;
  }

  mkdir(i: number, path: string): void {
    const result = (this.nodes[i] as SimNode).core.localMkdir(path);
    if (!result.ok) throw new Error(result.error);
    this.#drain(i);
  }

  /** Injects a message as if `from` (a node id, possibly unknown) had sent it to node `to`. */
  inject(fromId: string, to: number, message: SfsMessage): void {
    const node = this.nodes[to] as SimNode;
    node.core.step(fromId, message, message.t === "sfs-chunk" && message.s === 0 ? sha256(message.d) : undefined);
    this.#drain(to);
  }

  tick(): void {
    this.now++;
    this.wallMs += 10;
    for (const node of this.nodes) {
      if (!node.alive) continue;
      node.core.tick(this.membership(node.index), this.wallMs);
      this.#drain(node.index);
    }
    const due = this.#packets.filter((p) => p.at <= this.now);
    this.#packets = this.#packets.filter((p) => p.at > this.now);
    for (const packet of due) {
      const node = this.nodes[packet.to] as SimNode;
      if (!node.alive) continue;
      const message = validateSfsMessage(decoder.decode(packet.bytes));
      if (message === undefined) throw new Error("a message failed its own schema");
      if (message.t === "sfs-chunk") {
        const key = `${packet.to}>${packet.from}`;
        this.outstanding.set(key, (this.outstanding.get(key) ?? 1) - 1);
      }
      node.core.step((this.nodes[packet.from] as SimNode).id, message, message.t === "sfs-chunk" && message.s === 0 ? sha256(message.d) : undefined);
      this.#drain(packet.to);
    }
    const effects = this.#effects.filter((e) => e.at <= this.now);
    this.#effects = this.#effects.filter((e) => e.at > this.now);
    for (const { node: i, effect } of effects) {
      const node = this.nodes[i] as SimNode;
      if (!node.alive) continue;
      node.core.complete(node.disk.perform(effect));
      this.#drain(i);
    }
    this.afterTick?.();
  }

  run(ticks: number): void {
    for (let k = 0; k < ticks; k++) this.tick();
  }

  /** Ticks until pred holds (checked after each tick); throws after maxTicks. */
  runUntil(pred: () => boolean, maxTicks: number, what = "condition"): number {
    for (let k = 0; k < maxTicks; k++) {
      this.tick();
      if (pred()) return k + 1;
    }
    throw new Error(`${what} not reached in ${maxTicks} ticks`);
  }

  /** Every live node's disk and manifest agree and nothing is pending. */
  converged(): boolean {
    const live = this.nodes.filter((n) => n.alive);
    const first = live[0];
    if (first === undefined) return true;
    const fingerprint = (node: SimNode): string => JSON.stringify({
      files: [...node.disk.files].map(([p, b]) => [p, sha256(b)]).sort(),
      dirs: [...node.disk.dirs].sort(),
      manifest: node.core.list("", 100_000, true).map((v) => [v.entry.path, v.entry.counter, v.entry.origin, v.entry.deleted, v.entry.sha256]),
    });
    const want = fingerprint(first);
    if (this.#effects.length > 0) return false;
    return live.every((n) => n.core.pendingCount === 0 && n.core.transfers().length === 0 && fingerprint(n) === want);
  }

  #drain(i: number): void {
    const node = this.nodes[i] as SimNode;
    while (node.core.hasReady()) {
      const ready = node.core.ready();
      for (const { path, record } of ready.changed) node.store.set(path, record);
      for (const path of ready.forgotten) node.store.delete(path);
      if (ready.clock !== undefined) node.storedClock = ready.clock;
      for (const effect of ready.effects) this.#effects.push({ node: i, effect, at: this.now + 1 });
      node.events.push(...ready.events);
      for (const { to, message } of ready.messages) {
        const target = this.indexOf(to);
        if (target < 0) continue;
        const bytes = encoder.encode(message);
        this.sent.push([i, target, message, bytes.length]);
        if (bytes.length + ENVELOPE_BYTES > FRAME_BYTES_MAX) throw new Error(`${message.t} of ${bytes.length} bytes exceeds a frame`);
        if (message.t === "sfs-get") {
          const key = `${i}>${target}`;
          const n = (this.outstanding.get(key) ?? 0) + 1;
          this.outstanding.set(key, n);
          this.maxOutstandingPerPeer = Math.max(this.maxOutstandingPerPeer, n);
          let total = 0;
          for (const [k, v] of this.outstanding) if (k.startsWith(`${i}>`)) total += v;
          this.maxOutstandingTotal = Math.max(this.maxOutstandingTotal, total);
        }
        if (!node.alive || !(this.nodes[target] as SimNode).alive || this.blocked.has(`${i}>${target}`)) continue;
        let sent: SfsMessage | undefined = message;
        let wire = bytes;
        if (this.tamper !== undefined) {
          sent = this.tamper(i, target, message);
          if (sent === undefined) continue;
          if (sent !== message) wire = encoder.encode(sent);
        }
        this.#packets.push({ from: i, to: target, bytes: wire, at: this.now + 1 + (this.#jitter > 0 ? this.rng.int(this.#jitter + 1) : 0) });
      }
    }
  }
}
