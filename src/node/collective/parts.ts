// The Collective layer's subsystems as the kernel drives them: Raft and the key-value store
// (consensus.ts), gossip topics (topics.ts), the shared folder (shared-folder.ts) and mesh routing
// (mesh.ts), each joined to the node through its SubsystemContext.
import { raftFromWire, raftToWire } from "../../core/collective/raft/wire.ts";
import type { SfsMessage } from "../../core/collective/sfs-wire.ts";
import type { MeshMessage } from "../../core/collective/mesh-wire.ts";
import type { Message as RaftMessage } from "../../core/collective/raft/types.ts";
import type { MessageOf, Role } from "../../core/wire/messages.ts";
import type { KernelEvent } from "../events.ts";
import type { SubsystemContext } from "../subsystem-context.ts";
import type { KernelConfig } from "../config.ts";
import { Consensus } from "./consensus.ts";
import { MeshService } from "./mesh.ts";
import { SharedFolder } from "./shared-folder.ts";

export class ConsensusPart {
  readonly consensus: Consensus;
  readonly #ctx: SubsystemContext;
  readonly #tickMs: number;

  constructor(ctx: SubsystemContext, config: KernelConfig) {
    this.#ctx = ctx;
    this.#tickMs = config.tickMs;
    // Raft restores its log and rebuilds the key-value state before any traffic. A node started
    // with no one to join founds a new cluster (if it has no Raft state yet).
    this.consensus = new Consensus(ctx.id, ctx.epoch, ctx.fork(), ctx.store, {
      send: (to, message) => ctx.send(to, "stream", raftToWire(message)),
      members: () => ctx.members.everyone(),
      stateOf: (id) => (id === ctx.id ? (ctx.members.left ? "left" : "alive") : ctx.members.stateOf(id)),
      event: (type, data) => ctx.emit(type, data),
      wake: () => ctx.requestApply(),
      sendOffer: (to, offer) => ctx.send(to, "stream", { t: "raft-offer", epoch: offer.confEpoch, lt: offer.lastTerm, li: offer.lastIndex }),
      role: () => ctx.members.self.role,
    }, config.consensus, config.join.length === 0);
    ctx.services.kv = this.consensus;
  }

  step(from: string, message: MessageOf<"raft" | "raft-offer">): void {
    const members = this.#ctx.members;
    if (message.t === "raft-offer") {
      // Regeneration offers come from surviving voters, and voters are core nodes.
      if (members.roleOf(from) !== "core") return this.#ctx.drop("denied", `raft-offer from non-core ${from}`);
      return this.consensus.onOffer(from, { confEpoch: message.epoch, lastTerm: message.lt, lastIndex: message.li });
    }
    const decoded = raftFromWire(message, from);
    if (!decoded.ok) return this.#ctx.drop("decode", decoded.detail);
    const raft = decoded.message;
    if (raft.to !== this.#ctx.id) return this.#ctx.drop("decode", `raft for ${raft.to}`);
    const refusal = raftGrant(raft, from, (id) => members.roleOf(id), this.consensus.term);
    if (refusal !== undefined) return this.#ctx.drop("denied", refusal);
    this.consensus.step(raft);
    this.#ctx.requestApply();
  }

  tick(): void {
    this.consensus.tick();
    this.apply();
  }

  noteLoopDelay(ms: number): void {
    this.consensus.pardon(Math.ceil(ms / this.#tickMs));
  }

  apply(): void {
    if (this.consensus.hasReady()) this.consensus.drain();
  }
}

/** A learner's answers to its leader, and a linearizable read's request: all a contributor (never a voter) may send. */
const LEARNER_REPLIES: ReadonlySet<RaftMessage["type"]> = new Set(["app-resp", "heartbeat-resp", "read-index"]);

/**
 * Who may send which Raft message (issue 13): a contributor only answers as a learner, at a term
 * no higher than ours (a learner learns its term from the leader; a higher one would make the
 * leader step down, an election a contributor could call at will); nobody forwards a
 * configuration change (the leader's own manager proposes them, and a reset enters a log only by
 * regeneration); a forwarded proposal's originator must be core like its sender. Undefined when
 * the message is granted, else why not.
 */
export function raftGrant(m: RaftMessage, sender: string, roleOf: (id: string) => Role | undefined, term: number): string | undefined {
  if (roleOf(sender) !== "core") {
    if (!LEARNER_REPLIES.has(m.type)) return `raft ${m.type} from non-core ${sender}`;
    if (m.term > term) return `raft ${m.type} from non-core ${sender} at term ${m.term} above ours (${term})`;
  }
  if (m.type !== "prop") return undefined;
  if (m.entries.some((e) => e.type === "conf")) return `raft prop with a configuration change from ${sender}`;
  if (m.from !== sender && roleOf(m.from) !== "core") return `raft prop forwarded for non-core ${m.from}`;
  return undefined;
}

/**
 * Folders of /shared/ only core members write: the Brain's (its model file, src/node/brain/service.ts
 * MODEL_PATH). A contributor's version there is dropped by every node before it is fetched, so it
 * cannot replace the cluster's model file on the disks (the Brain would refuse to load it, but the
 * good file would be gone).
 */
const CORE_FOLDERS = ["brain"];

export class SharedFolderPart {
  readonly folder: SharedFolder | undefined;

  constructor(ctx: SubsystemContext) {
    const files = ctx.files;
    this.folder = files === undefined ? undefined : new SharedFolder(ctx.id, files, ctx.store, {
      send: (to, message) => ctx.send(to, "stream", message),
      event: (type, data) => ctx.emit(type, data),
      membership: { liveIds: () => ctx.members.liveIds() },
      nowMs: () => Math.floor(ctx.clock.nowMs()),
      records: ctx.records,
      reserved: (origin, path) => {
        if (!CORE_FOLDERS.some((folder) => path === folder || path.startsWith(`${folder}/`))) return undefined;
        const role = origin === ctx.id ? ctx.members.self.role : ctx.members.roleOf(origin);
        return role === "contributor" ? `/shared/${path}: only core nodes write /shared/${path.split("/")[0]}/` : undefined;
      },
    });
    if (this.folder !== undefined) ctx.services.folder = this.folder;
  }

  step(from: string, message: SfsMessage): void {
    this.folder?.step(from, message);
  }

  tick(): void {
    this.folder?.tick();
  }

  onEvent(event: KernelEvent): void {
    const folder = this.folder;
    if (folder === undefined) return;
    const id = String(event.data.id);
    // The shared folder compares manifests with every member that comes alive (its clusters are
    // small: files are copied to every node).
    if (event.type === "member-alive") folder.core.syncWith(id);
    else if (event.type === "member-dead" || event.type === "member-left") folder.core.peerGone(id);
    else return;
    folder.flush();
  }
}

export class MeshPart {
  readonly mesh: MeshService;

  constructor(ctx: SubsystemContext, config: KernelConfig) {
    this.mesh = new MeshService(ctx.id, ctx.fork(), {
      send: (to, message) => ctx.send(to, "datagram", message),
      liveIds: () => ctx.members.liveIds(),
      tick: () => ctx.tick(),
      nowMs: () => ctx.clock.nowMs(),
    }, config.mesh);
  }

  step(from: string, message: MeshMessage): void {
    this.mesh.step(from, message);
  }

  tick(): void {
    this.mesh.tick();
  }

  onEvent(event: KernelEvent): void {
    if (event.type === "member-dead" || event.type === "member-left") this.mesh.memberGone(String(event.data.id));
  }
}
