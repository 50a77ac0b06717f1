// The Self layer's memory (issue 14; docs/protocols/memory.md): every chat turn and every
// `remember` becomes a memory, replicated to every node by a gossip table of its own (the `memory`
// message kind, on the stream channel), durable before it is acknowledged (this node's rows are
// fsynced in the turn that writes them), restored from the store at boot before any sync (Topics
// reads its rows in its constructor), superseded but never silently lost, and redactable: a
// redaction replaces the text everywhere. Search is hybrid over an index kept beside the table.
import { GOSSIP_DEFAULTS, type GossipConfig, type GossipRow } from "../../core/collective/gossip.ts";
import {
  MEMORY_LIMITS, MEMORY_TOPIC, admitMemory, boundText, checkName, decodeMemory, encodeMemory, memoryOrigin, redaction,
  type Memory, type MemoryHit, type MemoryKind, type MemoryRecord, type RememberInput,
} from "../../core/self/memory-record.ts";

export type { Memory, MemoryHit, RememberInput } from "../../core/self/memory-record.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { Rng } from "../../core/util/rng.ts";
import type { MessageOf } from "../../core/wire/messages.ts";
import { MemoryIndex, type AnnPort } from "../../core/self/search.ts";
import { Topics } from "../collective/topics.ts";
import type { MindPort, StoreWrite } from "../ports.ts";
import type { MemoryService, PersistSection, SubsystemContext } from "../subsystem-context.ts";

/** A search's filter: a speaker, kinds, and the mode. */
export interface SearchFilter {
  readonly speaker?: string | undefined;
  readonly mode?: "hybrid" | "bm25" | "vector";
  readonly kinds?: readonly MemoryKind[];
}

/** Memories embedded by the mind per call, how long a call may take, the wait after a failure. */
const EMBED_BATCH = 32;
const EMBED_TIMEOUT_MS = 30_000;
const EMBED_RETRY_TICKS = 3_000;
/** How long a recall waits for the mind's embedding of its query. */
const MIND_QUERY_MS = 2_000;

export interface MemoryConfig {
  /** The memory table's gossip (a stream-channel deployment: rows up to 16 KiB). */
  readonly gossip: GossipConfig;
  /** Peers a new memory of this node is pushed to at once (an exchange started), besides the period's. */
  readonly pushFanout: number;
  /** Vectors moved into the ANN index per tick while it lags (bounded work; exact search meanwhile). */
  readonly annPerTick: number;
}

export const MEMORY_DEFAULTS: MemoryConfig = {
  gossip: {
    ...GOSSIP_DEFAULTS,
    channel: "stream",
    budgetBytes: 256 * 1024,
    catchUpBytes: 1024 * 1024,
    digestEntriesMax: 256,
    priorityEntriesMax: 32,
    topicsMax: 4,
    keysPerTopicMax: 262_144,
    rowsMax: 262_144,
    keyBytesMax: MEMORY_LIMITS.keyCharsMax,
    valueBytesMax: MEMORY_LIMITS.valueBytesMax,
  },
  pushFanout: 4,
  annPerTick: 8,
};

export interface MemoryStats {
  readonly memories: number;
  readonly redacted: number;
  readonly superseded: number;
  readonly byKind: Readonly<Record<string, number>>;
  readonly origins: number;
  readonly speakers: number;
  readonly textBytes: number;
  /** Rows refused by the table's rule (a memory under another node's key, a malformed value, a delete). */
  readonly refused: number;
  readonly rowsMax: number;
}

/** Listeners of the memory: the search index, chat's waiters. */
export interface MemoryListener {
  added(memory: Memory): void;
  removed(id: string): void;
}

export class MemoryPart implements MemoryService {
  readonly topics: Topics;
  readonly #ctx: SubsystemContext;
  readonly #config: MemoryConfig;
  readonly #memories = new Map<string, Memory>();
  /** Superseded id → the ids that supersede it (also for ids not held yet). */
  readonly #supersededBy = new Map<string, string[]>();
  readonly #listeners: MemoryListener[] = [];
  readonly #rng: Rng;
  #counter = 0;
  readonly #index: MemoryIndex;
  /** This node's own mind that embeds, if any: memories get its vectors too (here only: not replicated). */
  readonly #embedder: MindPort | undefined;
  readonly #embedQueue = new Set<string>();
  #embedding = false;
  #embedRetryTick = 0;
  /** Memories given the mind's vectors, and batches that failed. */
  readonly embedStats = { done: 0, failed: 0 };

  /** `ann` is an approximate-nearest-neighbour index for large memories (usearch on a real node; none in the simulator). */
  constructor(ctx: SubsystemContext, config: MemoryConfig = MEMORY_DEFAULTS, ann?: AnnPort) {
    this.#ctx = ctx;
    this.#config = config;
    this.#rng = ctx.fork();
    this.topics = new Topics(ctx, ctx.fork(), config.gossip, {
      kind: "memory",
      prefix: "memory",
      admit: (row) => admitMemory(row, (id) => (id === ctx.id ? ctx.members.self.role : ctx.members.roleOf(id)) === "core"),
      onRows: (changed) => {
        for (const row of changed) this.#take(row);
      },
    });
    this.#index = new MemoryIndex(ann === undefined ? {} : { ann });
    this.#embedder = ctx.self?.minds.find((m) => m.info.embeds && m.embed !== undefined);
    // What recall may use is indexed: neither redacted nor superseded.
    this.#listeners.push({
      added: (memory) => {
        if (!this.isCurrent(memory)) return this.#index.remove(memory.id);
        this.#index.add(memory.id, memory.text);
        if (this.#embedder !== undefined) this.#embedQueue.add(memory.id);
      },
      removed: (id) => this.#index.remove(id),
    });
    // Restored with the table, before any sync.
    for (const row of this.topics.gossip.entries(MEMORY_TOPIC)) this.#take(row);
  }

  /** Hybrid (BM25 and vector) search over current memories, best first. */
  /**
   * Search with the mind's embedding of the query too, when this node has a mind that embeds
   * (fused as a third list with the memories' own mind embeddings); plain search otherwise, or when
   * the mind does not answer within MIND_QUERY_MS.
   */
  async recall(query: string, k: number, options: SearchFilter = {}): Promise<MemoryHit[]> {
    const embedder = this.#embedder;
    if (embedder === undefined || this.embedStats.done === 0) return this.search(query, k, options);
    try {
      const [vector] = await embedder.embed!([query], AbortSignal.timeout(MIND_QUERY_MS));
      if (vector !== undefined) return this.search(query, k, { ...options, extraQuery: { space: embedder.info.name, vector } });
    } catch {
      this.embedStats.failed++;
    }
    return this.search(query, k, options);
  }

  search(query: string, k: number, options: SearchFilter & { extraQuery?: { space: string; vector: Float32Array } } = {}): MemoryHit[] {
    const { speaker, kinds } = options;
    const filter = speaker === undefined && kinds === undefined ? undefined : (id: string) => {
      const memory = this.#memories.get(id);
      return memory !== undefined && (speaker === undefined || memory.speaker === speaker) && (kinds === undefined || kinds.includes(memory.kind));
    };
    const hits = this.#index.search(query, k, {
      mode: options.mode ?? "hybrid", ...(filter === undefined ? {} : { filter }), ...(options.extraQuery === undefined ? {} : { extraQuery: options.extraQuery }),
    });
    const out: MemoryHit[] = [];
    for (const hit of hits) {
      const memory = this.#memories.get(hit.id);
      if (memory !== undefined) out.push({ memory, score: hit.score, bm25: hit.bm25, vector: hit.vector });
    }
    return out;
  }

  /** The index in one line, for `memory stat`. */
  indexStats(): string {
    const s = this.#index.stats();
    const mind = this.#embedder === undefined ? "no mind embeddings (no mind here embeds)"
      : `${this.embedStats.done} embedded by ${this.#embedder.info.name}, ${this.#embedQueue.size} waiting, ${this.embedStats.failed} failed batches`;
    const hnsw = s.ann ? `HNSW index ${s.annSize} vectors, ${s.pendingAnn} pending` : `no HNSW index${s.annError === undefined ? "" : ` (${s.annError})`}`;
    return `${s.docs} indexed; vector search ${s.path === "ann" ? "through HNSW" : `exact up to ${s.exactMax}`} (${hnsw}); ${mind}`;
  }

  /** Hears every memory added (or replaced by its redaction: removed, then added) from now on; `replay` sends the held ones first. */
  listen(listener: MemoryListener, replay = true): void {
    this.#listeners.push(listener);
    if (replay) for (const memory of this.#memories.values()) listener.added(memory);
  }

  /**
   * Writes a memory of this node; its id, or an error text. Durable when the kernel turn that
   * called this ends (kernel.within), and pushed to a few live peers at once.
   */
  remember(input: RememberInput): { id: string } | { error: string } {
    const text = boundText(input.text.trim());
    if (text.length === 0) return { error: "nothing to remember: the text is empty" };
    const problem = checkName("speaker", input.speaker) ?? (input.conv === undefined ? undefined : checkName("conversation", input.conv));
    if (problem !== undefined) return { error: problem };
    const supersedes = input.supersedes ?? [];
    if (supersedes.length > MEMORY_LIMITS.supersedesMax) return { error: `a memory supersedes at most ${MEMORY_LIMITS.supersedesMax} others` };
    for (const id of supersedes) if (!this.#memories.has(id)) return { error: `no memory ${id}` };
    const by = input.by === undefined ? undefined : input.by.slice(0, MEMORY_LIMITS.nameCharsMax);
    const record: MemoryRecord = { kind: input.kind ?? "note", text, speaker: input.speaker, atMs: Math.floor(this.#ctx.clock.nowMs()), conv: input.conv, supersedes, by };
    const id = `${this.#ctx.id}/${this.#ctx.epoch.toString(36)}.${(this.#counter++).toString(36)}`;
    const error = this.topics.publish(MEMORY_TOPIC, id, encodeMemory(record));
    if (error !== undefined) return { error };
    this.#push();
    return { id };
  }

  /** Redacts a memory (its text goes from every node); an error text, or undefined. */
  redact(id: string): string | undefined {
    const memory = this.#memories.get(id);
    if (memory === undefined) return `no memory ${id}`;
    if (memory.kind === "redacted") return `memory ${id} is already redacted`;
    if (memory.origin !== this.#ctx.id && this.#ctx.members.self.role !== "core") {
      return "only the node that wrote a memory, or a core member, may redact it";
    }
    const error = this.topics.publish(MEMORY_TOPIC, id, encodeMemory(redaction(memory, this.#ctx.id)));
    if (error !== undefined) return error;
    this.#push();
    return undefined;
  }

  get(id: string): Memory | undefined {
    return this.#memories.get(id);
  }

  /** A memory by id or by a unique prefix of its local part or id (at least 4 characters). */
  resolve(what: string): Memory | string {
    const exact = this.#memories.get(what);
    if (exact !== undefined) return exact;
    if (what.length < 4) return `no memory ${what} (give at least 4 characters of its id)`;
    const found: Memory[] = [];
    for (const memory of this.#memories.values()) {
      if (memory.id.startsWith(what) || memory.id.slice(17).startsWith(what)) found.push(memory);
      if (found.length > 1) return `${what} names more than one memory`;
    }
    return found[0] ?? `no memory ${what}`;
  }

  /** Memories newest first, at most `limit`; redacted and superseded ones only with `all`. */
  list(options: { limit: number; speaker?: string | undefined; conv?: string | undefined; all?: boolean }): Memory[] {
    const picked: Memory[] = [];
    for (const memory of this.#memories.values()) {
      if (!options.all && !this.isCurrent(memory)) continue;
      if (options.speaker !== undefined && memory.speaker !== options.speaker) continue;
      if (options.conv !== undefined && memory.conv !== options.conv) continue;
      picked.push(memory);
    }
    picked.sort((a, b) => b.atMs - a.atMs || (a.id < b.id ? 1 : -1));
    return picked.slice(0, options.limit);
  }

  /** Neither redacted nor superseded: what recall may use. */
  isCurrent(memory: Memory): boolean {
    return memory.kind !== "redacted" && memory.supersededBy.length === 0;
  }

  get size(): number {
    return this.#memories.size;
  }

  stats(): MemoryStats {
    const byKind: Record<string, number> = {};
    const origins = new Set<string>();
    const speakers = new Set<string>();
    let textBytes = 0;
    let superseded = 0;
    for (const memory of this.#memories.values()) {
      byKind[memory.kind] = (byKind[memory.kind] ?? 0) + 1;
      origins.add(memory.origin);
      speakers.add(memory.speaker);
      textBytes += memory.text.length;
      if (memory.supersededBy.length > 0) superseded++;
    }
    return {
      memories: this.#memories.size, redacted: byKind["redacted"] ?? 0, superseded, byKind, origins: origins.size, speakers: speakers.size, textBytes,
      refused: this.topics.gossip.stats().notAdmitted, rowsMax: this.#config.gossip.rowsMax,
    };
  }

  step(from: string, message: MessageOf<"memory">): void {
    this.topics.step(from, message);
  }

  tick(tick: number): void {
    this.topics.tick();
    this.#index.work(this.#config.annPerTick);
    if (this.#embedQueue.size > 0 && !this.#embedding && tick >= this.#embedRetryTick) this.#embedSome(tick);
  }

  /** Asks this node's embedding mind for the next batch of memories' vectors (one batch at a time). */
  #embedSome(tick: number): void {
    const embedder = this.#embedder!;
    const ids: string[] = [];
    for (const id of this.#embedQueue) {
      this.#embedQueue.delete(id);
      const memory = this.#memories.get(id);
      if (memory !== undefined && this.isCurrent(memory)) ids.push(id);
      if (ids.length >= EMBED_BATCH) break;
    }
    if (ids.length === 0) return;
    this.#embedding = true;
    embedder.embed!(ids.map((id) => this.#memories.get(id)!.text), AbortSignal.timeout(EMBED_TIMEOUT_MS)).then(
      (vectors) => {
        this.#embedding = false;
        ids.forEach((id, i) => {
          const memory = this.#memories.get(id);
          const vector = vectors[i];
          if (memory === undefined || !this.isCurrent(memory) || vector === undefined) return;
          this.#index.add(id, memory.text, this.#index.vector(id), { space: embedder.info.name, vector });
          this.embedStats.done++;
        });
      },
      () => {
        this.#embedding = false;
        this.embedStats.failed++;
        for (const id of ids) this.#embedQueue.add(id);
        this.#embedRetryTick = tick + EMBED_RETRY_TICKS;
      },
    );
  }

  persist(): StoreWrite[] {
    return this.topics.persist();
  }

  sections(): PersistSection[] {
    // The rows' values (what the store holds besides keys and signatures).
    let bytes = 0;
    for (const row of this.topics.gossip.entries(MEMORY_TOPIC)) bytes += row.value?.length ?? 0;
    return [{ name: "memory", keys: this.topics.gossip.size, bytes, durable: true }];
  }

  /** A row of the table changed here (restored, taken from a peer, or written): the held memory follows it. */
  #take(row: GossipRow): void {
    const origin = memoryOrigin(row.key);
    const record = decodeMemory(row.value);
    // The table admitted it, so neither is undefined; a row that is not a memory is not held.
    if (origin === undefined || record === undefined) return;
    const previous = this.#memories.get(row.key);
    const memory: Memory = { ...record, id: row.key, origin, supersededBy: this.#supersededBy.get(row.key) ?? [] };
    this.#memories.set(row.key, memory);
    if (previous !== undefined) for (const listener of this.#listeners) listener.removed(row.key);
    for (const old of record.supersedes) this.#supersede(old, row.key);
    for (const listener of this.#listeners) listener.added(memory);
  }

  #supersede(old: string, by: string): void {
    const list = this.#supersededBy.get(old) ?? [];
    if (list.includes(by) || list.length >= LIMITS.membersMax) return;
    list.push(by);
    this.#supersededBy.set(old, list);
    const held = this.#memories.get(old);
    if (held === undefined) return;
    const updated: Memory = { ...held, supersededBy: list.slice() };
    this.#memories.set(old, updated);
    for (const listener of this.#listeners) {
      listener.removed(old);
      listener.added(updated);
    }
  }

  /** Starts an exchange with a few live peers at once, so a new memory reaches them in a round trip. */
  #push(): void {
    const live = this.#ctx.members.liveIds();
    const fanout = Math.min(this.#config.pushFanout, live.length);
    for (let i = 0; i < fanout; i++) {
      const j = i + this.#rng.int(live.length - i);
      [live[i], live[j]] = [live[j]!, live[i]!];
      this.topics.syncWith(live[i]!);
    }
  }
}
