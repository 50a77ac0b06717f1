// The contracts between the kernel and the world (aesthetics rule 15). The real node plugs in the
// adapters of src/adapters (UDP/TCP sockets, SQLite, node:crypto, the wall clock); the simulator
// plugs in src/sim (simulated network, disk and clocks). The kernel is the same code in both, and
// it is synchronous: every port call returns at once, and inbound packets arrive by callback.
import type { VerifyReport } from "../core/evolve/verdict.ts";
import type { RunOutcome, RunRequest } from "../core/evolve/run.ts";
import type { Release } from "../core/evolve/bundle.ts";
import type { Rng } from "../core/util/rng.ts";
import type { VitalSigns } from "../core/body/vital.ts";
import type { Channel, Header } from "../core/wire/envelope.ts";
import type { SfsCompletion, SfsDiskItem, SfsEffect, SfsFileInfo } from "../core/collective/sfs.ts";
import type { MindInfo, MindReply, MindRequest } from "../core/self/minds.ts";
import type { AnnPort } from "../core/self/search.ts";
import type { Registry } from "prom-client";

/**
 * Moves sealed packets between nodes. Deliberately weak: a datagram may be dropped, duplicated,
 * reordered or delayed; a stream frame is delivered in order per peer or the connection breaks
 * and later frames are lost (never corrupted: the transport checks framing, the seal checks bytes).
 */
export interface Transport {
  /** "host:port" others reach this node at (UDP and TCP share the port). */
  readonly address: string;
  /** Fire and forget. Oversize packets are refused by the caller, never sent. */
  send(to: string, channel: Channel, packet: Uint8Array): void;
  /** Installs the one inbound handler. `from` is the remote "host:port" as the socket saw it. */
  /** `handler` answers whether the packet authenticated (see Kernel.receive). */
  onPacket(handler: (packet: Uint8Array, channel: Channel, from: string) => boolean): void;
  /** Packets the transport itself refused before the kernel saw them (framing, size). */
  onDrop(handler: (reason: "oversize" | "decode") => void): void;
  close(): Promise<void>;
}

export interface StoreWrite {
  readonly key: string;
  /** undefined deletes the key. */
  readonly value: Uint8Array | undefined;
}

/**
 * A durable key-value store with atomic batches. Contract: write() applies the whole batch or none
 * of it; after write(batch, { durable: true }) returns, the batch survives a crash of the process
 * or the machine. After a crash the store holds every durable batch and a prefix of the others.
 */
export interface Store {
  get(key: string): Uint8Array | undefined;
  /** Keys beginning with prefix, in key order, at most `limit` of them. */
  scan(prefix: string, limit?: number): Array<[string, Uint8Array]>;
  write(batch: readonly StoreWrite[], options: { durable: boolean }): void;
  /**
   * Writes a durable batch without blocking the caller on a slow fsync: `done` runs once the batch is
   * durable — in a later turn of the event loop when the real store's disk thread wrote it, at once
   * when it committed on the calling thread (a fast disk) and for the simulator's. Batches become durable in the order given; a crash keeps a prefix of them. `done`
   * gets an error if the batch failed (the caller must treat that as fatal). A store that commits
   * several batches with one fsync (group commit) passes `synced` false to all but the last of them.
   */
  writeAsync(batch: readonly StoreWrite[], done: (error?: Error, synced?: boolean) => void): void;
  close(): void;
}

/** Wall-clock time, for HLC timestamps and boot epochs. Protocol timing uses ticks, not this. */
export interface Clock {
  nowMs(): number;
}

/** Seals and opens envelopes with the cluster key (AEAD). */
/** The receiver a packet is sealed for: its id, its key (the pair key derives from it), its boot epoch. */
export interface SealPeer {
  readonly id: string;
  readonly pub: Uint8Array;
  readonly epoch: number;
}

export interface Seal {
  /**
   * Header fields in, packet out (header || ciphertext || tag): sealed for `to` under the pair's
   * key, or, with no `to`, an intro packet under the cluster key (the join handshake only).
   */
  seal(channel: Channel, epoch: number, counter: number, body: Uint8Array, to?: SealPeer): Uint8Array;
  /**
   * The authenticated body, or undefined when the tag does not verify. `header` is the packet's,
   * decoded by the caller; `senderPub` is the key of the member it names (a packet that is not an
   * intro does not open without it).
   */
  open(packet: Uint8Array, header: Header, senderPub: Uint8Array | undefined): Uint8Array | undefined;
  /** `plain` in a box only the holder of `peerPub`'s private key opens (X25519 of the two keys; invites). */
  box(peerPub: Uint8Array, plain: Uint8Array): Uint8Array;
  /** What `peerPub` boxed for this node, or undefined. */
  openBox(peerPub: Uint8Array, box: Uint8Array): Uint8Array | undefined;
  /** Secret random bytes (invite secrets): the OS's on a node, the seed's in the simulator. */
  random(bytes: number): Uint8Array;
}

/**
 * The cluster's owner public key, this node's certificate (the role the owner granted its key,
 * src/core/body/trust.ts), and on nodes that keep it the owner key itself (it issues certificates
 * to invited nodes).
 */
export interface NodeTrust {
  readonly owner: Uint8Array;
  readonly cert: Uint8Array;
  readonly ownerKey?: { readonly publicKey: Uint8Array; sign(data: Uint8Array): Uint8Array };
  /** The cluster token, which invite codes carry (so the invited node can seal its first packets). */
  readonly token?: string;
}

/** The node's identity key and the signature checks it needs (Ed25519). */
export interface Identity {
  readonly id: string;
  readonly publicKey: Uint8Array;
  sign(data: Uint8Array): Uint8Array;
  verify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
  /** The node id a public key maps to: hex of the first 8 bytes of its SHA-256. */
  idOf(publicKey: Uint8Array): string;
}

/**
 * The node's /shared/ folder on disk (src/adapters/sfs-files.ts). Asynchronous: the kernel hands
 * it the shared-folder core's effects and feeds the completions back. The simulator has none (the
 * shared folder is then off).
 */
export interface SharedFolderPort {
  perform(effect: SfsEffect): Promise<SfsCompletion>;
  /** SHA-256 of a chunk, hex. */
  sha256Hex(bytes: Uint8Array): string;
  scan(options: { cleanTemp: boolean }): Promise<{ readonly items: SfsDiskItem[]; readonly complete: boolean }>;
  hashFile(path: string): Promise<SfsFileInfo>;
  stageBytes(bytes: Uint8Array): Promise<{ temp: string; info: SfsFileInfo }>;
  stageCopy(path: string): Promise<{ temp: string; info: SfsFileInfo }>;
  discardStaged(temp: string): Promise<void>;
  list(path: string): Promise<Array<{ readonly name: string; readonly dir: boolean; readonly size: number; readonly mtimeMs: number }>>;
  read(path: string, maxBytes: number): Promise<Uint8Array>;
  /** Bytes free for this process on the disk that holds /shared/ (statfs: available blocks × block size). */
  freeBytes(): Promise<number>;
}

/** What the host measures about itself for vital signs; the simulator has none. */
export interface HostVitals {
  sample(): Omit<VitalSigns, "uptimeMs">;
  /** Cores the process may use (load is read per core). */
  readonly cores?: number;
}

/** Everything the kernel is given from outside: a real node's adapters (run.ts) or the simulator's. */
export interface KernelPorts {
  readonly transport: Transport;
  readonly store: Store;
  readonly clock: Clock;
  readonly seal: Seal;
  readonly identity: Identity;
  readonly rng: Rng;
  readonly host?: HostVitals;
  /**
   * Runs `fn` once the current batch of I/O callbacks is done (setImmediate in a real node). The
   * kernel defers apply (Raft's ready) to it, so every packet and request of one event-loop turn
   * shares one fsync (group commit). Without it (the simulator) apply runs at the end of the turn.
   */
  readonly defer?: (fn: () => void) => void;
  /** The /shared/ folder on disk; without it the shared folder is off. */
  readonly files?: SharedFolderPort;
  /** The cluster's owner key and what it granted this node (docs/adr/012-trust.md). */
  readonly trust: NodeTrust;
  /** The Self layer's outer parts: minds and the vector index (absent: no mind here, exact search). */
  readonly self?: SelfPorts;
  /** The Evolution layer's outer parts: the verifier and the sandbox; without them a node runs no programs. */
  readonly evolve?: EvolvePorts;
  /** The code bundles this node holds (DATA/bundles/, src/adapters/bundle-files.ts); without it a node neither serves nor fetches bundles. */
  readonly bundles?: BundlePort;
  /** The supervisor this node runs under (`pk node --supervise`, src/cli/supervise.ts); absent: not supervised, no upgrades. */
  readonly supervisor?: SupervisorPort;
}

/**
 * The supervisor as the kernel sees it (src/adapters/supervisor-link.ts, docs/protocols/upgrade.md):
 * what it said at this boot, and the two requests the kernel makes of it.
 */
export interface SupervisorPort {
  /** This boot is the trial of a restart into `trial.id`: report healthy() or be rolled back. */
  readonly trial: { readonly id: string; readonly version: number; readonly mode: string } | undefined;
  /** The supervisor rolled back a restart into `id` and restarted this (older) code. */
  readonly rolledBack: { readonly id: string; readonly reason: string } | undefined;
  /** Bundles this node's supervisor rolled back or refused (DATA/bundles/failed), id → reason. */
  failed(): ReadonlyMap<string, string>;
  /** Asks for a restart into the installed bundle `id`, which needs Node `node` (the supervisor checks it and installs its dependencies first). */
  restartInto(request: { readonly id: string; readonly version: number; readonly mode: string; readonly node: string }): void;
  /** The new code is healthy: the supervisor keeps it. */
  healthy(id: string): void;
  /** Restarts the supervisor refused before stopping this node (its dependencies would not install), since the last call. */
  refusals(): Array<{ readonly id: string; readonly reason: string }>;
}

/** DATA/bundles/ (src/adapters/bundle-files.ts, docs/protocols/bundle.md): metadata is unverified until the caller verifies it. */
export interface BundlePort {
  readonly dir: string;
  list(): Promise<Array<{ readonly id: string; readonly release: Release }>>;
  readStream(id: string): Promise<Uint8Array | undefined>;
  /** The address in DATA/bundles/current: the bundle this node runs, if it runs one. */
  running(): Promise<string | undefined>;
  /** Installs a verified bundle as DATA/bundles/<id>/ atomically; its path. */
  install(id: string, release: Release, stream: Uint8Array): Promise<string>;
  remove(id: string): Promise<void>;
}

/** The verifier and the sandbox (src/adapters/verifier.ts, src/adapters/sandbox.ts), both off the event loop. */
export interface EvolvePorts {
  /** Verifies a program's source (its manifest its header, or `beside`). */
  verifySource(source: string, beside?: unknown): Promise<VerifyReport>;
  /** One run of a verified program in a fresh engine (core/evolve/run.ts). */
  run(request: RunRequest): Promise<RunOutcome>;
  close(): Promise<void>;
}

/** The Self layer's outer parts (src/adapters/minds.ts, src/adapters/vector-index.ts). */
export interface SelfPorts {
  /** The models this node can ask: a local model it serves (--mind), frontier models with a key here. */
  readonly minds: readonly MindPort[];
  /** A new approximate-nearest-neighbour index for the memory, or undefined where none loads (exact search then). */
  ann?(): AnnPort | undefined;
  /** Registers the minds' counters (requests, tokens, cost, retries) for /metrics. */
  metrics?(registry: Registry): void;
}

/** One model this node can ask (src/adapters/minds.ts's MindClient). Its key, if any, stays inside. */
export interface MindPort {
  readonly info: MindInfo;
  chat(request: MindRequest, options: { signal?: AbortSignal; onDelta?: (text: string) => void }): Promise<MindReply>;
  embed?(texts: readonly string[], signal?: AbortSignal): Promise<Float32Array[]>;
  close?(): void;
}
