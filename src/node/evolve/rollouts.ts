// Rollouts on a node (issue 16; docs/protocols/rollout.md, ADR 021). A program's new version is
// started as a canary by the core node that deploys it: its source goes to the consensus store
// under `psrc/NAME`, and a record signed by that node under `rollout/NAME` says which version, with
// which source hash, runs on which nodes, replacing which. Every node publishes the health of the
// version it runs on the gossip topic `evolve.health` (ProgramsPart measures it); the Raft leader
// judges each canary (core/evolve/rollout.ts judge()) and promotes it (the source moves to
// `prog/NAME`, which every node runs) or rolls it back (the canaries return to `prog/NAME`). Each
// decision is a compare-and-set on the record, so two deciders never both win; each is written to
// the evolve log, the audit trail.
import { hash } from "node:crypto";
import { decodeHealth, decodeModelHealth, decodeRecord, encodeModelHealth, encodeRecord, judge, judgeModel, signedBody, type ModelHealth, type ProgramHealth, type RolloutConfig, type RolloutRecord } from "../../core/evolve/rollout.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { SubsystemContext } from "../subsystem-context.ts";

export const ROLLOUT_PREFIX = "rollout/";
export const CANDIDATE_PREFIX = "psrc/";
export const HEALTH_TOPIC = "evolve.health";
/** Each node's check of the current model version (key NODEID/model). */
export const MODEL_TOPIC = "evolve.model";
const JUDGE_EVERY_MS = 500;
const KV_TRIES = 10;
const KV_RETRY_MS = 500;
const RETRIED = new Set(["no-leader", "busy", "timeout", "leader-changed"]);

export function sourceHash(source: Uint8Array): string {
  return hash("sha256", source, "hex");
}

/** A deploy's choices: how long the canary runs, and on what share of the core nodes. */
export interface RolloutOptions {
  readonly windowMs?: number;
  readonly canaryShare?: number;
}

export interface HeldRecord {
  readonly record: RolloutRecord;
  readonly bytes: Uint8Array;
  /** Why the record cannot be believed (bad signature, approver not core); undefined when it can. */
  readonly untrusted: string | undefined;
}

export class Rollouts {
  readonly #ctx: SubsystemContext;
  readonly config: RolloutConfig;
  readonly #audit: (step: string, text: string) => void;
  #judgeAtMs = 0;
  #modelPublished: string | undefined;
  #modelRestoring = false;
  /** Model versions judged (on this node, while it led): kept or rolled back, and why. */
  readonly #modelDecided = new Map<number, { verdict: string; reason: string }>();
  readonly #deciding = new Set<string>();
  /** Decoded records by the replica's value object (null: malformed). */
  readonly #records = new WeakMap<Uint8Array, HeldRecord | null>();
  /** Records and health rows refused, by reason: what `rollout list` shows under "refused". */
  readonly refused = new Map<string, number>();

  constructor(ctx: SubsystemContext, config: RolloutConfig, audit: (step: string, text: string) => void) {
    this.#ctx = ctx;
    this.config = config;
    this.#audit = audit;
  }

  /** The node's clock (what records' times are read against). */
  nowMs(): number {
    return this.#ctx.clock.nowMs();
  }

  /** Whether this node may decide a rollout (a core node). */
  get core(): boolean {
    return this.#ctx.members.self.role === "core";
  }

  /** The record of NAME's newest rollout in this node's replica, if any and well-formed. */
  held(name: string): HeldRecord | undefined {
    const bytes = this.#ctx.services.kv?.valueLocal(ROLLOUT_PREFIX + name);
    if (bytes === undefined) return undefined;
    // The replica hands out the same bytes until the key changes: each record is decoded and its
    // signature checked once (an untrusted one again, as the approver may become known).
    const cached = this.#records.get(bytes);
    if (cached === null) return undefined;
    if (cached !== undefined && cached.untrusted === undefined && !this.#ctx.members.isRevoked(cached.record.approver)) return cached;
    const decoded = cached === undefined ? decodeRecord(bytes) : { ok: true as const, value: cached.record };
    if (!decoded.ok || decoded.value.name !== name) {
      this.#records.set(bytes, null);
      this.#refuse("record");
      return undefined;
    }
    const held: HeldRecord = { record: decoded.value, bytes, untrusted: this.#untrusted(decoded.value) };
    if (held.untrusted !== undefined && cached === undefined) this.#refuse("record untrusted");
    this.#records.set(bytes, held);
    return held;
  }

  names(): string[] {
    const kv = this.#ctx.services.kv;
    if (kv === undefined) return [];
    return kv.keysLocal(ROLLOUT_PREFIX, LIMITS.evolve.programsMax * 4).map((k) => k.slice(ROLLOUT_PREFIX.length));
  }

  /** Believed only with the approver's signature, and only from a core node (the one that deployed). */
  #untrusted(r: RolloutRecord): string | undefined {
    const pub = this.#ctx.members.publicKeyOf(r.approver);
    if (pub === undefined) return `approver ${r.approver} is not a member this node knows`;
    const role = r.approver === this.#ctx.id ? this.#ctx.members.self.role : this.#ctx.members.roleOf(r.approver);
    if (role !== "core") return `approver ${r.approver} is not a core node`;
    const refusal = this.#ctx.records.check("rollout", r.approver, pub, signedBody(r), Buffer.from(r.sig, "base64"));
    return refusal === undefined ? undefined : `the approver's signature does not verify (${refusal})`;
  }

  /** Starts a canary: the candidate's source, then the record (only if NAME's record is still `previous`). */
  async start(candidate: { name: string; version: string; source: Uint8Array; from: RolloutRecord["from"] }, previous: Uint8Array | undefined, options: RolloutOptions = {}): Promise<{ ok: true; record: RolloutRecord } | { ok: false; reason: string }> {
    const ctx = this.#ctx;
    const put = await this.kv((kv, done) => kv.put(CANDIDATE_PREFIX + candidate.name, candidate.source, done));
    if (put !== "ok") return { ok: false, reason: `the new version could not be stored in the cluster KV: ${put}` };
    const canary = this.#canaryNodes(options.canaryShare ?? this.config.canaryShare);
    const fields = { name: candidate.name, version: candidate.version, hash: sourceHash(candidate.source), from: candidate.from, canary, windowMs: options.windowMs ?? this.config.windowMs, startedMs: Math.floor(ctx.clock.nowMs()), approver: ctx.id };
    const record: RolloutRecord = { ...fields, sig: Buffer.from(ctx.records.sign("rollout", signedBody(fields))).toString("base64"), phase: "canary" };
    const encoded = encodeRecord(record);
    const cas = await this.kv((kv, done) => kv.cas(ROLLOUT_PREFIX + candidate.name, previous, encoded, done), (current) => current !== undefined && Buffer.from(current).equals(encoded));
    if (cas !== "ok") return { ok: false, reason: `another rollout of ${candidate.name} started first (${cas})` };
    this.#audit("rollout", `${candidate.name} ${candidate.version}: canary on ${canary.length} node${canary.length === 1 ? "" : "s"} (${canary.map((c) => c.slice(0, 8)).join(", ")}) for ${Math.round(record.windowMs / 1000)} s, ${candidate.from === null ? "a new program" : `replacing ${candidate.from.version}`}`);
    return { ok: true, record };
  }

  /** This node first, then a share of the other live core nodes. */
  #canaryNodes(share: number): string[] {
    const ctx = this.#ctx;
    const core = ctx.members.everyone().filter((m) => m.id !== ctx.id && m.role === "core" && (m.state === "alive" || m.state === "suspect")).map((m) => m.id).sort();
    const extra = Math.min(core.length, Math.floor((core.length + 1) * share) - 1, LIMITS.evolve.rollout.canaryNodesMax - 1);
    return [ctx.id, ...core.slice(0, Math.max(0, extra))];
  }

  /** Every node's newest health row (each node writes only its own: the topic admits rows under ID/). */
  health(): ProgramHealth[] {
    const topics = this.#ctx.services.topics;
    if (topics === undefined) return [];
    const out: ProgramHealth[] = [];
    for (const row of topics.entries(HEALTH_TOPIC)) {
      const h = decodeHealth(row.value);
      if (!h.ok || h.value.node !== row.origin || row.key !== `${row.origin}/${h.value.name}`) {
        this.#refuse("health");
        continue;
      }
      out.push(h.value);
    }
    return out;
  }

  /** This node's check of the current model version, on the topic (when it has one and it changed). */
  publishModel(): void {
    const check = this.#ctx.services.brain?.modelCheck;
    const topics = this.#ctx.services.topics;
    if (check === undefined || topics === undefined || check.tag === this.#modelPublished) return;
    const row: ModelHealth = { node: this.#ctx.id, version: check.version, tag: check.tag, accuracy: check.accuracy, previousVersion: check.previousVersion, previousAccuracy: check.previousAccuracy, atMs: Math.floor(this.#ctx.clock.nowMs()) };
    if (topics.publish(MODEL_TOPIC, `${this.#ctx.id}/model`, encodeModelHealth(row)) === undefined) this.#modelPublished = check.tag;
  }

  /** Every node's newest model check. */
  modelHealth(): ModelHealth[] {
    const topics = this.#ctx.services.topics;
    if (topics === undefined) return [];
    const out: ModelHealth[] = [];
    for (const row of topics.entries(MODEL_TOPIC)) {
      const h = decodeModelHealth(row.value);
      if (!h.ok || h.value.node !== row.origin || row.key !== `${row.origin}/model`) {
        this.#refuse("model health");
        continue;
      }
      out.push(h.value);
    }
    return out;
  }

  /** The current model version and the verdict on it so far (for `rollout list`). */
  modelVerdict(): { version: number; verdict: string; reason: string } | undefined {
    const check = this.#ctx.services.brain?.modelCheck;
    if (check === undefined) return undefined;
    const decided = this.#modelDecided.get(check.version);
    if (decided !== undefined) return { version: check.version, verdict: decided.verdict, reason: decided.reason };
    const v = judgeModel(check.version, check.tag, this.modelHealth(), this.#ctx.members.size, this.config);
    return { version: check.version, verdict: v.verdict === "wait" ? "measuring" : v.verdict, reason: v.reason };
  }

  /** The leader judges a new model version once enough nodes measured it; a worse one is restored from its predecessor. */
  #judgeModel(): void {
    const brain = this.#ctx.services.brain;
    const check = brain?.modelCheck;
    if (brain === undefined || check === undefined || this.#modelDecided.has(check.version) || this.#modelRestoring) return;
    const v = judgeModel(check.version, check.tag, this.modelHealth(), this.#ctx.members.size, this.config);
    if (v.verdict === "wait") return;
    // A restored version is never rolled back in turn (that would bring back the worse one).
    if (v.verdict === "promote" || check.kind === "restored") {
      this.#modelDecided.set(check.version, { verdict: "kept", reason: v.reason });
      this.#audit("model", `${v.reason}: kept`);
      return;
    }
    this.#modelRestoring = true;
    brain.restore(check.version).then((header) => {
      const line = header === undefined ? `${v.reason}: rolled back by another version already` : `${v.reason}: rolled back, v${check.previousVersion}'s weights published again as v${header.version}`;
      this.#modelDecided.set(check.version, { verdict: "rolled-back", reason: line });
      this.#audit("model", line);
      this.#ctx.emit("model-rolled-back", { version: check.version, restoredAs: header?.version ?? null, reason: v.reason });
    }, (error: unknown) => {
      this.#audit("model", `${v.reason}: the rollback failed: ${error instanceof Error ? error.message : String(error)}`);
    }).finally(() => {
      this.#modelRestoring = false;
    });
  }

  /** The leader judges every canary, twice a second. */
  tick(): void {
    const ctx = this.#ctx;
    const kv = ctx.services.kv;
    const now = ctx.clock.nowMs();
    if (kv === undefined || !kv.isLeader || now < this.#judgeAtMs || ctx.members.self.role !== "core") return;
    this.#judgeAtMs = now + JUDGE_EVERY_MS;
    this.#judgeModel();
    let health: ProgramHealth[] | undefined;
    for (const name of this.names()) {
      const held = this.held(name);
      if (held === undefined || held.record.phase !== "canary" || this.#deciding.has(name)) continue;
      if (held.untrusted !== undefined) {
        void this.decide(name, "rollback", `refused: ${held.untrusted}`);
        continue;
      }
      // No canary left to learn from (each dead or gone): the new version is not promoted blind.
      // (A guarded task program is the exception: its guard moves it to a survivor on purpose.)
      const live = held.record.canary.filter((c) => c === ctx.id || ["alive", "suspect"].includes(ctx.members.stateOf(c) ?? "dead"));
      if (live.length === 0 && kv.valueLocal(`pguard/${name}`) === undefined) {
        void this.decide(name, "rollback", `the canary node${held.record.canary.length === 1 ? " is" : "s are"} gone (${held.record.canary.map((c) => c.slice(0, 8)).join(", ")})`);
        continue;
      }
      health ??= this.health();
      const verdict = judge(held.record, health, now, this.config);
      if (verdict.verdict !== "wait") void this.decide(name, verdict.verdict, verdict.reason);
    }
  }

  /** Promotes or rolls back NAME's canary (the leader's verdict, or a person's); the outcome in words. */
  async decide(name: string, verdict: "promote" | "rollback", reason: string): Promise<string> {
    if (this.#deciding.has(name)) return `${name}: a decision is being written already`;
    this.#deciding.add(name);
    try {
      const held = this.held(name);
      if (held === undefined) return `${name}: no rollout`;
      const r = held.record;
      if (r.phase !== "canary") return `${name} ${r.version}: already ${r.phase}`;
      const kv = this.#ctx.services.kv;
      if (verdict === "promote") {
        if (held.untrusted !== undefined) return `${name} ${r.version}: not promoted: ${held.untrusted}`;
        const source = kv?.valueLocal(CANDIDATE_PREFIX + name);
        if (source === undefined || sourceHash(source) !== r.hash) return `${name} ${r.version}: not promoted: the new version's source is missing here or does not match the record`;
        const put = await this.kv((k, done) => k.put(`prog/${name}`, source, done));
        if (put !== "ok") return `${name} ${r.version}: not promoted: ${put}`;
      }
      const decided: RolloutRecord = { ...r, phase: verdict === "promote" ? "promoted" : "rolled-back", decidedMs: Math.floor(this.#ctx.clock.nowMs()), decidedBy: this.#ctx.id, reason: reason.slice(0, LIMITS.evolve.rollout.reasonCharsMax) };
      const encoded = encodeRecord(decided);
      const cas = await this.kv((k, done) => k.cas(ROLLOUT_PREFIX + name, held.bytes, encoded, done), (current) => current !== undefined && Buffer.from(current).equals(encoded));
      if (cas !== "ok") return `${name} ${r.version}: the decision was not written (${cas})`;
      const line = `${name} ${r.version}: ${verdict === "promote" ? "promoted everywhere" : `rolled back${r.from === null ? " (removed)" : ` to ${r.from.version}`}`}: ${decided.reason ?? ""}`;
      this.#audit(verdict === "promote" ? "promoted" : "rollback", line);
      this.#ctx.emit(verdict === "promote" ? "rollout-promoted" : "rollout-rolled-back", { program: name, version: r.version, reason: decided.reason ?? "" });
      return line;
    } finally {
      this.#deciding.delete(name);
    }
  }

  #refuse(reason: string): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1);
  }

  /**
   * One KV operation, tried again (up to KV_TRIES times, KV_RETRY_MS apart) while the answer is
   * "no leader", "busy" or an unknown outcome (a timeout, a leader change). Every operation here
   * may be repeated: a put writes the same bytes; a compare-and-set that failed because its own
   * earlier attempt landed is recognised by `landed`.
   */
  async kv(op: (kv: NonNullable<SubsystemContext["services"]["kv"]>, done: (answer: { code: string; value?: Uint8Array | undefined }) => void) => void, landed?: (current: Uint8Array | undefined) => boolean): Promise<string> {
    const kv = this.#ctx.services.kv;
    if (kv === undefined) return "no-kv";
    let unknown = false;
    for (let attempt = 1; ; attempt++) {
      const answer = await new Promise<{ code: string; value?: Uint8Array | undefined }>((resolve) => op(kv, resolve));
      if (answer.code === "conflict" && unknown && landed?.(answer.value) === true) return "ok";
      if (!RETRIED.has(answer.code) || attempt >= KV_TRIES) return answer.code;
      if (answer.code === "timeout" || answer.code === "leader-changed") unknown = true;
      await new Promise((resolve) => setTimeout(resolve, KV_RETRY_MS));
    }
  }
}

