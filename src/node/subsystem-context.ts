// The subsystem contract, part one (part two is subsystem.ts): what a subsystem sees of the node.
// A subsystem gets only this narrow context — membership, mode, services other subsystems offer
// (kv, topics), the store, the files port, and the kernel's outbox for sends, store writes and
// events — never the kernel itself. Service classes import this file only, so they stay leaves.
import type { Mode } from "../core/body/degrade.ts";
import type { RecordSigner } from "../core/body/trust.ts";
import type { SwimState } from "../core/body/swim.ts";
import type { Rng } from "../core/util/rng.ts";
import type { Channel } from "../core/wire/envelope.ts";
import type { MemberEntry, Message, MessageType, Role } from "../core/wire/messages.ts";
import type { SharedFolder } from "./collective/shared-folder.ts";
import type { BundlePort, SupervisorPort, Clock, EvolvePorts, HostVitals, Identity, NodeTrust, Seal, SelfPorts, SharedFolderPort, Store, StoreWrite } from "./ports.ts";
import type { TaskTable } from "./tasks.ts";
import type { BrainService } from "./brain/service.ts";
import type { ContributionDecision } from "../core/body/contribution.ts";
import type { Memory, MemoryHit, MemoryKind, RememberInput } from "../core/self/memory-record.ts";
import type { MindAsk, MindInfo, MindReply } from "../core/self/minds.ts";

/**
 * Who may send a message kind; the kernel drops (and counts as "denied") a message from anyone else
 * before the owner sees it.
 * - `peer`: any holder of the cluster key, member or not yet (the join handshake, SWIM's own
 *   dissemination, which is how members become known);
 * - `member`: a member this node's SWIM knows (in any state);
 * - `core`: a known member whose role is core;
 * - `leader`: the member this node holds as the Raft leader.
 */
/**
 * Who may send a kind: `intro`, anyone holding the cluster key (the join handshake: it may arrive
 * in an intro packet); `peer`, any node whose key we hold; `member`, a member SWIM holds; `core`, a
 * member the owner granted core; `leader`, the Raft leader.
 */
export type Sender = "intro" | "peer" | "member" | "core" | "leader";

/** The message kinds a subsystem owns, each with who may send it. */
export type KindTable<K extends MessageType> = { readonly [P in K]: Sender };

/** What the kernel tells subsystems about members; the membership subsystem provides it. */
export interface Members {
  /** This node's entry as SWIM holds it. */
  readonly self: MemberEntry;
  /** Members counted live by SWIM (alive or suspect), this node excluded. */
  liveIds(): string[];
  /** Live count including this node. */
  readonly size: number;
  stateOf(id: string): SwimState | undefined;
  roleOf(id: string): Role | undefined;
  /** From now on the member's entries are refused and its packets dropped (a revoked certificate). */
  revoke(id: string): void;
  /** True once the member's certificate was revoked: its entries, packets and records are refused. */
  isRevoked(id: string): boolean;
  /** The member's Ed25519 public key as its entry holds it (this node's too); undefined for a stranger. */
  publicKeyOf(id: string): Uint8Array | undefined;
  addressOf(id: string): string | undefined;
  /** True once this node has left (graceful leave). */
  readonly left: boolean;
  /** Every member SWIM knows with role and state, this node included. */
  everyone(): Array<{ id: string; role: Role; state: SwimState }>;
}

/** One persisted section, for `persist list` and `persist clear`. */
export interface PersistSection {
  readonly name: string;
  readonly keys: number;
  readonly bytes: number;
  readonly durable: boolean;
  /** Forgets the section on disk (and in memory where the subsystem says so); undefined: cannot. */
  readonly clear?: () => number;
}

/**
 * The narrow view of the node a subsystem gets. Sends, store writes and events go to the kernel's
 * outbox and are carried out in the flush order; `services` holds what other subsystems offer
 * (filled in as they are created: membership first).
 */
export interface SubsystemContext {
  readonly id: string;
  /** The address peers reach this node at. */
  readonly address: string;
  readonly store: Store;
  readonly clock: Clock;
  readonly identity: Identity;
  /**
   * Signs this node's records and checks other writers' (gossip rows, shared-folder versions, heal
   * records): one per node, so its refusal counters are the node's (src/core/body/trust.ts).
   */
  readonly records: RecordSigner;
  /** The cluster's owner key and what it granted this node. */
  readonly trust: NodeTrust;
  /** Boxes between this node's key and another's (invites), and secret random bytes. */
  readonly boxes: Pick<Seal, "box" | "openBox" | "random">;
  readonly tasks: TaskTable;
  /** The boot epoch (it rises every boot). */
  readonly epoch: number;
  /** The node's seeded randomness (shared: the order of draws is the node's). */
  readonly rng: Rng;
  /** A fork of it, for a subsystem that draws on its own schedule. */
  fork(): Rng;
  /** Ticks since boot. */
  tick(): number;
  mode(): Mode;
  readonly members: Members;
  readonly services: Services;
  /** What the host measures about itself (absent in the simulator). */
  readonly host: HostVitals | undefined;
  /** The /shared/ folder on disk, when the node has one. */
  readonly files: SharedFolderPort | undefined;
  /** The Self layer's outer parts (minds, the vector index), when the process gives them. */
  readonly self: SelfPorts | undefined;
  /** The verifier and the sandbox, when the process gives them. */
  readonly evolve: EvolvePorts | undefined;
  /** The code bundles on disk (DATA/bundles/), when the process gives them. */
  readonly bundles: BundlePort | undefined;
  /** The supervisor this node runs under, when it runs under one (`pk node --supervise`). */
  readonly supervisor: SupervisorPort | undefined;
  /** Foreground requests handled so far (the API's; monitoring aside): the DMN's measure of load. */
  activity(): number;
  /** Sends one message to a member (counted as a send failure when it has no address). */
  send(to: string, channel: Channel, message: Message): void;
  /** Sends to an address (the join handshake, before the peer is a member). */
  sendAddr(addr: string, channel: Channel, message: Message): void;
  /** Counts a message dropped after its owner looked at it (e.g. a Raft message that fails to decode). */
  drop(reason: "decode" | "denied", detail: string): void;
  /** Queues store writes; durable ones are fsynced before anything queued after them is sent. */
  persist(writes: readonly StoreWrite[], durable: boolean): void;
  emit(type: string, data: Readonly<Record<string, unknown>>): void;
  /** Asks for this subsystem's apply() soon (after the current batch of I/O: group commit). */
  requestApply(): void;
  /** What every subsystem keeps (for the persist subsystem: rounds, `persist list|clear`). */
  kept(): ReadonlyArray<Kept>;
  /** Runs fn after the current batch of I/O callbacks (at once in the simulator). */
  readonly defer: ((fn: () => void) => void) | undefined;
}

/** A subsystem's persisted state, as the persist subsystem sees it. */
export interface Kept {
  persist?(all: boolean): StoreWrite[];
  sections?(): PersistSection[];
}

/** Services subsystems offer each other, by name. Optional: a node may run without one. */
export interface Services {
  kv?: KvService;
  topics?: TopicService;
  /** The replicated /shared/ folder. */
  folder?: SharedFolder;
  /** The Brain (src/node/brain/service.ts): the model, inference, training, the GA. */
  brain?: BrainService;
  /** The Self layer's memory (src/node/self/memory.ts). */
  memory?: MemoryService;
  /** The minds this node can ask (src/node/self/minds.ts). */
  minds?: MindsService;
  /** Programs attached to this node's hooks (src/node/evolve/programs.ts). */
  programs?: ProgramsService;
  /** The code bundles (src/node/evolve/bundle.ts), as the upgrade reads them. */
  bundles?: BundlesService;
  /** Whether this node takes voluntary work now, and which members said they do not (src/node/body/contribution.ts). */
  contribution?: ContributionService;
}

/** The body of /v1/status's `contribution` field (the dashboard shows exactly this; ADR 027). */
export type ContributionStatus = Pick<ContributionDecision, "contributing" | "reason" | "power" | "caps">;

/** The contribution (src/node/body/contribution.ts) as other subsystems see it. */
export interface ContributionService {
  /** Why voluntary work of `bytes` is declined now, or undefined when it is admitted (and counted). */
  admit(bytes: number): string | undefined;
  /** False when member `id` said (in its own row) that it takes no voluntary work. */
  accepts(id: string): boolean;
  status(): ContributionStatus;
}

/** The bundle subsystem as the upgrade sees it: the newest installed bundle newer than the running code, passing over `skip`. */
export interface BundlesService {
  ready(skip?: ReadonlySet<string>): { readonly id: string; readonly version: number; readonly node: string } | undefined;
}

/** The programs as other subsystems see them (the Brain's sensor prefilter). */
export interface ProgramsService {
  prefilter(values: Float32Array): Promise<{ values: Float32Array; dropped: number }>;
  readonly prefilterStats: { readonly calls: number; readonly readings: number; readonly dropped: number; readonly failed: number; readonly program: string | undefined };
}

/** The memory as other subsystems see it (the DMN). */
export interface MemoryService {
  readonly size: number;
  search(query: string, k: number, options?: { speaker?: string | undefined; mode?: "hybrid" | "bm25" | "vector"; kinds?: readonly MemoryKind[] }): MemoryHit[];
  list(options: { limit: number; speaker?: string | undefined; conv?: string | undefined; all?: boolean }): Memory[];
  get(id: string): Memory | undefined;
  isCurrent(memory: Memory): boolean;
  /** Durable when the turn that called it ends (at once outside a turn). */
  remember(input: RememberInput): { id: string } | { error: string };
}

/** The minds as other subsystems see them (chat, the DMN). */
export interface MindsService {
  /** Asks the router's best mind; throws when none answered (NoMindError in minds.ts). */
  ask(ask: MindAsk): Promise<MindReply>;
  list(): ReadonlyArray<{ readonly info: MindInfo; readonly here: boolean }>;
}

/** The consensus key-value store, as other subsystems see it. */
/** A consensus operation's answer (collective/consensus.ts KvOutcome, as far as others read it). */
export interface KvAnswer {
  readonly code: string;
  readonly value?: Uint8Array | undefined;
  readonly detail?: string | undefined;
}

export interface KvService {
  readonly isLeader: boolean;
  readonly leader: string;
  readonly term: number;
  /** Linearizable read, write and compare-and-set (expected undefined: only if absent). */
  get(key: string, callback: (answer: KvAnswer) => void): void;
  put(key: string, value: Uint8Array, callback: (answer: KvAnswer) => void): void;
  cas(key: string, expected: Uint8Array | undefined, value: Uint8Array, callback: (answer: KvAnswer) => void): void;
  delete(key: string, callback: (answer: KvAnswer) => void): void;
  /** Leader only: hands leadership to the most caught-up live voter; whom, or undefined. */
  transferLeadership?(): string | undefined;
  /** Keys under `prefix` in this node's replica (not linearizable: what it has applied), at most `limit`. */
  keysLocal(prefix: string, limit: number): string[];
  /** A key's value in this node's replica (not linearizable). */
  valueLocal(key: string): Uint8Array | undefined;
}

export interface TopicService {
  publish(topic: string, key: string, value: Uint8Array | undefined): string | undefined;
  get(topic: string, key: string): Uint8Array | undefined;
  /** The topics this node holds rows of. */
  topics(): Array<{ topic: string; keys: number }>;
  /** A topic's live rows. */
  entries(topic: string): Array<{ key: string; value: Uint8Array; origin: string }>;
  /** New rows of a topic as they arrive; undefined when no subscription is left. */
  subscribe(topic: string): { take(max: number): Array<{ topic: string; key: string; value: Uint8Array | undefined; origin: string }>; close(): void } | undefined;
}

