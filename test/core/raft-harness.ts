// An in-memory network of Raft cores for tests (etcd-raft's newNetwork, raft-rs's harness Network):
// every node's ready is "persisted" into a MemoryDisk, its messages are queued, and send() delivers
// queued messages until none are left, with per-link drops and per-type filters.
import { createRng } from "../../src/core/util/rng.ts";
import { decodeConfChange } from "../../src/core/collective/raft/confchange.ts";
import { Raft, RAFT_DEFAULTS, type RaftConfig, type Ready } from "../../src/core/collective/raft/raft.ts";
import type { ConfState, Entry, HardState, Message, MessageType, NodeId, ReadState, Snapshot } from "../../src/core/collective/raft/types.ts";

/** What a node made durable: the input of a restart. */
export class MemoryDisk {
  hardState: HardState = { term: 0, vote: "", commit: 0 };
  snapshot: Snapshot | undefined;
  entries: Entry[] = [];

  persist(rd: Ready): void {
    if (rd.hardState !== undefined) this.hardState = rd.hardState;
    if (rd.snapshot !== undefined) {
      this.snapshot = rd.snapshot;
      this.entries = [];
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index;
      const base = this.snapshot?.meta.index ?? 0;
      this.entries.length = Math.max(0, Math.min(this.entries.length, first - base - 1));
      this.entries.push(...rd.entries);
    }
  }
}

export interface HarnessNode {
  readonly raft: Raft;
  readonly disk: MemoryDisk;
  /** Committed entries applied, in order (normal entries' data as text; conf entries marked). */
  readonly applied: Entry[];
  /** Read states handed out by ready(), in order (answers to readIndex). */
  readonly readStates: ReadState[];
}

export function ids(n: number): NodeId[] {
  return Array.from({ length: n }, (_, i) => String(i + 1));
}

export function newRaft(id: NodeId, voters: readonly NodeId[], overrides: Partial<RaftConfig> = {}, seed = 1, learners: readonly NodeId[] = []): Raft {
  const conf: ConfState = { voters, votersOutgoing: [], learners, learnersNext: [], autoLeave: false };
  return new Raft({ ...RAFT_DEFAULTS, ...overrides, id }, createRng(seed, Number(id) || 7), { conf });
}

export class Network {
  readonly nodes = new Map<NodeId, HarnessNode>();
  readonly #dropped = new Set<string>();
  readonly #ignored = new Set<MessageType>();
  /** Every message delivered, for traces. */
  readonly trace: Message[] = [];
  readonly #rng = createRng(99);
  #dropRate = new Map<string, number>();

  constructor(rafts: readonly Raft[]) {
    for (const raft of rafts) this.nodes.set(raft.id, { raft, disk: new MemoryDisk(), applied: [], readStates: [] });
  }

  static of(n: number, overrides: Partial<RaftConfig> = {}): Network {
    const voters = ids(n);
    return new Network(voters.map((id) => newRaft(id, voters, overrides)));
  }

  node(id: NodeId): HarnessNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  raft(id: NodeId): Raft {
    return this.node(id).raft;
  }

  /** Runs ready/advance on one node: persist, collect messages, apply. */
  drain(id: NodeId): Message[] {
    const node = this.node(id);
    const out: Message[] = [];
    while (node.raft.hasReady()) {
      const rd = node.raft.ready();
      node.disk.persist(rd);
      out.push(...rd.messages);
      node.readStates.push(...rd.readStates);
      for (const entry of rd.committed) {
        node.applied.push(entry);
        if (entry.type === "conf") {
          const change = decodeConfChange(entry.data);
          if (change !== undefined) node.raft.applyConfChange(change);
        }
      }
      node.raft.advance(rd);
    }
    return out;
  }

  /** Delivers `msgs` and everything they cause until the network is quiet. */
  send(...msgs: Message[]): void {
    const queue = [...msgs];
    for (const id of this.nodes.keys()) queue.push(...this.drain(id));
    let steps = 0;
    while (queue.length > 0) {
      if (++steps > 100_000) throw new Error("Network.send: no quiescence after 100000 messages");
      const m = queue.shift()!;
      if (!this.#deliverable(m)) continue;
      const target = this.nodes.get(m.to);
      if (target === undefined) continue;
      this.trace.push(m);
      target.raft.step(m);
      queue.push(...this.drain(m.to));
    }
  }

  /** Ticks node `id` once and delivers what follows. */
  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) {
      this.raft(id).tick();
      this.send();
    }
  }

  campaign(id: NodeId): void {
    this.raft(id).campaign();
    this.send();
  }

  propose(id: NodeId, text: string): void {
    this.raft(id).propose(new TextEncoder().encode(text));
    this.send();
  }

  #deliverable(m: Message): boolean {
    if (this.#ignored.has(m.type)) return false;
    const key = `${m.from}->${m.to}`;
    if (this.#dropped.has(key)) return false;
    const rate = this.#dropRate.get(key);
    if (rate !== undefined && this.#rng.chance(rate)) return false;
    return true;
  }

  cut(a: NodeId, b: NodeId): void {
    this.#dropped.add(`${a}->${b}`);
    this.#dropped.add(`${b}->${a}`);
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) if (other !== id) this.cut(id, other);
  }

  drop(from: NodeId, to: NodeId, rate: number): void {
    this.#dropRate.set(`${from}->${to}`, rate);
  }

  ignore(type: MessageType): void {
    this.#ignored.add(type);
  }

  recover(): void {
    this.#dropped.clear();
    this.#ignored.clear();
    this.#dropRate.clear();
  }

  leader(): NodeId | undefined {
    for (const [id, node] of this.nodes) if (node.raft.role === "leader") return id;
    return undefined;
  }

  appliedTexts(id: NodeId): string[] {
    return this.node(id).applied.filter((e) => e.type === "normal" && e.data.length > 0).map((e) => new TextDecoder().decode(e.data));
  }
}
