// The interaction environment behind the data-driven Raft scenarios (test/testdata/raft/**.txt,
// run by raft-scenarios.test.ts). It drives a set of Raft cores by hand, the way etcd-raft's
// rafttest package does: every node's Ready is processed explicitly (persist into a MemoryDisk,
// queue the messages, apply the committed entries), queued messages are delivered explicitly, and
// everything that happens is printed as short, exact lines, so a scenario file states the whole
// message trace it expects.
//
// One command per line; run(line) returns the lines it printed. Commands:
//
//   output off|on (hide the output of setup commands) | reset (forget every node and message: the next case of a table)
//   add-nodes N [voters=(1,2,3)] [learners=(4)] [index=K] [prevote=B] [checkquorum=B]
//             [readonly=safe|lease] [election=T] [heartbeat=T] [max-inflight=N]
//             [max-inflight-bytes=N] [max-msg-bytes=N] [max-uncommitted-bytes=N]
//   campaign ID | tick ID [N] | tick-election ID | tick-heartbeat ID
//   propose ID TEXT | propose-conf-change ID [v4 l5 r3 ...] [transition=auto|explicit] [joint=true]
//   read-index ID CTX | transfer-leader FROM TO | report-unreachable ID PEER | report-snapshot ID PEER ok|fail
//   process-ready ID... | deliver-msgs [ID...] [drop=(ids)] | stabilize [ID...]
//   isolate ID | cut A B | drop TYPE | recover
//   step FROM->TO TYPE field=... (inject a message, same syntax as printed)
//   compact ID [INDEX] | restart ID | set-log ID terms=(1,1,2) | set-hardstate ID [term=T] [vote=V] [commit=C]
//   set-randomized-election-timeout ID N
//   status ID | log ID | raft-state
//   election-timeouts ID trials=N role=follower|candidate
//   election-conflicts voters=N trials=N role=follower|candidate [max-rate=R]
//
// Unlike RAFT_DEFAULTS, nodes start with pre-vote and check-quorum off (the plain algorithm of the
// paper); scenarios turn them on. index=K starts the founding members from a snapshot at index K
// holding their configuration, so that nodes added later (add-nodes without voters) catch up from
// a snapshot rather than from a log whose first entries assume a configuration they lack.
import { createRng } from "../../src/core/util/rng.ts";
import { decodeConfChange, describeConfState, encodeConfChange } from "../../src/core/collective/raft/confchange.ts";
import { Raft, RAFT_DEFAULTS, type RaftConfig, type Ready } from "../../src/core/collective/raft/raft.ts";
import {
  EMPTY_CONF, NONE, message,
  type ConfChange, type ConfChangeSingle, type ConfState, type Entry, type Message, type MessageType, type NodeId,
} from "../../src/core/collective/raft/types.ts";
import { MemoryDisk } from "./raft-harness.ts";

/** Every node's randomized election timeouts come from this seed, on a stream fixed by its id. */
const SEED = 20140601;

const ENV_DEFAULTS: Partial<RaftConfig> = { preVote: false, checkQuorum: false, readOnly: "safe", electionTicks: 10, heartbeatTicks: 1 };

const MESSAGE_TYPES: readonly MessageType[] = [
  "hup", "beat", "prop", "app", "app-resp", "vote", "vote-resp", "prevote", "prevote-resp", "snap", "heartbeat",
  "heartbeat-resp", "unreachable", "snap-status", "check-quorum", "transfer-leader", "timeout-now", "read-index", "read-index-resp",
];

interface Applied {
  readonly index: number;
  readonly text: string;
}

interface EnvNode {
  raft: Raft;
  readonly config: RaftConfig;
  readonly disk: MemoryDisk;
  /** The configuration the node was created with when it has no snapshot (a founding member). */
  readonly bootstrap: ConfState;
  /** The state machine: the normal entries applied, in order. */
  sm: Applied[];
  /** The configuration after each applied index where it changed, for snapshots. */
  confs: { index: number; conf: ConfState }[];
}

interface Watch {
  role: string;
  term: number;
  lead: NodeId;
}

export class InteractionEnv {
  readonly #nodes = new Map<NodeId, EnvNode>();
  /** Messages sent and not yet delivered, in send order. */
  #queue: Message[] = [];
  readonly #cut = new Set<string>();
  readonly #ignored = new Set<MessageType>();
  #out: string[] = [];
  #indent = "";
  /** "output off" runs commands silently (setup the file has already shown elsewhere). */
  #quiet = false;

  /** Runs one command line and returns what it printed. */
  run(line: string): string[] {
    this.#out = [];
    this.#indent = "";
    const tokens = tokenize(line);
    const [cmd, ...args] = tokens;
    if (cmd === undefined) return [];
    const handler = this.#handlers[cmd];
    if (handler === undefined) throw new Error(`unknown command: ${cmd}`);
    handler(args);
    return this.#quiet ? [] : this.#out;
  }

  readonly #handlers: Record<string, (args: string[]) => void> = {
    "add-nodes": (args) => this.#addNodes(args),
    output: (args) => {
      if (args[0] !== "on" && args[0] !== "off") throw new Error("output on|off");
      this.#quiet = args[0] === "off";
    },
    reset: () => {
      this.#nodes.clear();
      this.#queue = [];
      this.#cut.clear();
      this.#ignored.clear();
    },
    campaign: (args) => this.#each(args, (id) => this.#watch(id, (r) => r.campaign())),
    tick: (args) => {
      const { pos } = parseArgs(args);
      const id = need(pos[0], "tick ID [N]");
      const n = Number(pos[1] ?? 1);
      for (let i = 0; i < n; i++) this.#watch(id, (r) => r.tick());
    },
    "tick-election": (args) => this.#each(args, (id) => {
      for (let i = 0; i < this.#node(id).config.electionTicks; i++) this.#watch(id, (r) => r.tick());
    }),
    "tick-heartbeat": (args) => this.#each(args, (id) => {
      for (let i = 0; i < this.#node(id).config.heartbeatTicks; i++) this.#watch(id, (r) => r.tick());
    }),
    propose: (args) => {
      const id = need(args[0], "propose ID TEXT");
      const text = unquote(need(args[1], "propose ID TEXT"));
      const err = this.#watch(id, (r) => r.propose(new TextEncoder().encode(text)));
      if (err !== undefined) this.#print(`${id} refused proposal: ${err}`);
    },
    "propose-conf-change": (args) => {
      const { pos, kv } = parseArgs(args);
      const id = need(pos[0], "propose-conf-change ID [v4 l5 r3]");
      const changes: ConfChangeSingle[] = pos.slice(1).map(parseConfChangeSingle);
      const transition = kv.get("transition") ?? "auto";
      if (transition !== "auto" && transition !== "explicit") throw new Error(`bad transition ${transition}`);
      const change: ConfChange = { changes, transition, ...(kv.get("joint") === "true" ? { joint: true } : {}) };
      const err = this.#watch(id, (r) => r.proposeConfChange(change));
      if (err !== undefined) this.#print(`${id} refused conf change: ${err}`);
    },
    "read-index": (args) => {
      const id = need(args[0], "read-index ID CTX");
      const ctx = unquote(need(args[1], "read-index ID CTX"));
      const err = this.#watch(id, (r) => r.readIndex(new TextEncoder().encode(ctx)));
      if (err !== undefined) this.#print(`${id} refused read: ${err}`);
    },
    "transfer-leader": (args) => {
      const from = need(args[0], "transfer-leader FROM TO");
      const to = need(args[1], "transfer-leader FROM TO");
      this.#watch(from, (r) => r.transferLeader(to));
    },
    "report-unreachable": (args) => {
      const id = need(args[0], "report-unreachable ID PEER");
      this.#watch(id, (r) => r.reportUnreachable(need(args[1], "report-unreachable ID PEER")));
    },
    "report-snapshot": (args) => {
      const id = need(args[0], "report-snapshot ID PEER ok|fail");
      const peer = need(args[1], "report-snapshot ID PEER ok|fail");
      const ok = need(args[2], "report-snapshot ID PEER ok|fail");
      if (ok !== "ok" && ok !== "fail") throw new Error("report-snapshot: ok or fail");
      this.#watch(id, (r) => r.reportSnapshot(peer, ok === "ok"));
    },
    "process-ready": (args) => this.#each(args, (id) => this.#processReady(id)),
    "deliver-msgs": (args) => {
      const { pos, kv } = parseArgs(args);
      const drop = kv.get("drop");
      if (drop !== undefined) {
        for (const id of parseIdList(drop)) this.#dropQueued(id);
        return;
      }
      const targets = pos.length > 0 ? pos : this.#ids();
      for (const id of targets) this.#deliver(id);
    },
    stabilize: (args) => this.#stabilize(args.length > 0 ? args : this.#ids()),
    isolate: (args) => {
      const id = need(args[0], "isolate ID");
      for (const other of this.#ids()) if (other !== id) this.#cutLink(id, other);
    },
    cut: (args) => this.#cutLink(need(args[0], "cut A B"), need(args[1], "cut A B")),
    drop: (args) => {
      const type = need(args[0], "drop TYPE") as MessageType;
      if (!MESSAGE_TYPES.includes(type)) throw new Error(`unknown message type ${type}`);
      this.#ignored.add(type);
    },
    recover: () => {
      this.#cut.clear();
      this.#ignored.clear();
    },
    step: (args) => {
      const m = parseMessage(args);
      this.#print(formatMessage(m));
      this.#indent = "  ";
      this.#watch(m.to, (r) => r.step(m));
    },
    compact: (args) => this.#compact(need(args[0], "compact ID [INDEX]"), args[1] === undefined ? undefined : Number(args[1])),
    restart: (args) => this.#each(args, (id) => this.#restart(id)),
    "set-log": (args) => {
      const { pos, kv } = parseArgs(args);
      const id = need(pos[0], "set-log ID terms=(...)");
      const node = this.#node(id);
      const base = node.disk.snapshot?.meta.index ?? 0;
      const terms = parseNumberList(need(kv.get("terms"), "set-log ID terms=(...)"));
      node.disk.entries = terms.map((term, i) => ({ term, index: base + 1 + i, type: "normal", data: new Uint8Array(0) }));
      this.#restart(id, true);
    },
    "set-hardstate": (args) => {
      const { pos, kv } = parseArgs(args);
      const id = need(pos[0], "set-hardstate ID [term=T] [vote=V] [commit=C]");
      const node = this.#node(id);
      const hs = node.disk.hardState;
      node.disk.hardState = {
        term: Number(kv.get("term") ?? hs.term),
        vote: kv.has("vote") ? (kv.get("vote") === "none" ? NONE : kv.get("vote")!) : hs.vote,
        commit: Number(kv.get("commit") ?? hs.commit),
      };
      this.#restart(id, true);
    },
    "set-randomized-election-timeout": (args) => {
      const id = need(args[0], "set-randomized-election-timeout ID N");
      this.#node(id).raft.setRandomizedElectionTimeout(Number(need(args[1], "set-randomized-election-timeout ID N")));
    },
    status: (args) => this.#each(args, (id) => this.#status(id)),
    log: (args) => this.#each(args, (id) => this.#log(id)),
    "raft-state": () => {
      for (const id of this.#ids()) {
        const r = this.#node(id).raft;
        const conf = r.conf;
        const member = conf.voters.includes(id) || conf.votersOutgoing.includes(id) ? "voter"
          : conf.learners.includes(id) || conf.learnersNext.includes(id) ? "learner" : "non-member";
        this.#print(`${id}: ${r.role} (${member}) term=${r.term} vote=${r.vote || "none"} lead=${r.lead || "none"} commit=${r.log.committed} applied=${r.log.applied} last=${r.log.lastIndex()}`);
      }
    },
    "election-timeouts": (args) => this.#electionTimeouts(args),
    "election-conflicts": (args) => this.#electionConflicts(args),
  };

  // -------------------------------------------------------------------------------------------
  // Nodes

  #addNodes(args: string[]): void {
    const { pos, kv } = parseArgs(args);
    const n = Number(need(pos[0], "add-nodes N"));
    const voters = kv.has("voters") ? parseIdList(kv.get("voters")!) : [];
    const learners = kv.has("learners") ? parseIdList(kv.get("learners")!) : [];
    const index = Number(kv.get("index") ?? 0);
    const overrides: Record<string, unknown> = { ...ENV_DEFAULTS };
    const bool = (key: string, field: string): void => {
      if (kv.has(key)) overrides[field] = kv.get(key) === "true";
    };
    const num = (key: string, field: string): void => {
      if (kv.has(key)) overrides[field] = Number(kv.get(key));
    };
    bool("prevote", "preVote");
    bool("checkquorum", "checkQuorum");
    num("election", "electionTicks");
    num("heartbeat", "heartbeatTicks");
    num("max-inflight", "maxInflight");
    num("max-inflight-bytes", "maxInflightBytes");
    num("max-msg-bytes", "maxMsgBytes");
    num("max-uncommitted-bytes", "maxUncommittedBytes");
    if (kv.has("readonly")) overrides.readOnly = kv.get("readonly");
    const conf: ConfState = { ...EMPTY_CONF, voters, learners };
    const first = this.#ids().reduce((max, id) => Math.max(max, Number(id)), 0) + 1;
    for (let i = 0; i < n; i++) {
      const id = String(first + i);
      const config: RaftConfig = { ...RAFT_DEFAULTS, ...(overrides as Partial<RaftConfig>), id };
      const disk = new MemoryDisk();
      if (index > 0) {
        // Start from a snapshot at `index` (term 1) holding the configuration, as etcd's tests do.
        disk.snapshot = { meta: { index, term: 1, conf }, data: encodeSm([]) };
        disk.hardState = { term: 1, vote: NONE, commit: index };
      }
      const node: EnvNode = { raft: undefined as unknown as Raft, config, disk, bootstrap: index > 0 ? EMPTY_CONF : conf, sm: [], confs: [] };
      this.#nodes.set(id, node);
      this.#boot(node);
    }
  }

  /** Builds the node's Raft from its disk, as a process (re)start does. */
  #boot(node: EnvNode): void {
    const { disk } = node;
    node.raft = new Raft(node.config, createRng(SEED, Number(node.config.id)), {
      hardState: disk.hardState,
      entries: disk.entries,
      ...(disk.snapshot !== undefined ? { snapshot: disk.snapshot } : { conf: node.bootstrap }),
    });
    node.sm = disk.snapshot !== undefined ? decodeSm(disk.snapshot.data) : [];
    node.confs = [{ index: disk.snapshot?.meta.index ?? 0, conf: disk.snapshot?.meta.conf ?? node.bootstrap }];
  }

  #restart(id: NodeId, quiet = false): void {
    const node = this.#node(id);
    this.#boot(node);
    if (quiet) return;
    const r = node.raft;
    const state = node.sm.map((a) => JSON.stringify(a.text)).join(" ");
    this.#print(`${id} restarted: term=${r.term} vote=${r.vote || "none"} commit=${r.log.committed} applied=${r.log.applied} log=${r.log.firstIndex()}..${r.log.lastIndex()} ${describeConfState(r.conf)} state=[${state}]`);
  }

  #compact(id: NodeId, index: number | undefined): void {
    const node = this.#node(id);
    const at = index ?? node.raft.log.applied;
    let conf = node.confs[0]!.conf;
    for (const c of node.confs) if (c.index <= at) conf = c.conf;
    const snapshot = node.raft.compact(at, conf, encodeSm(node.sm.filter((a) => a.index <= at)));
    node.disk.snapshot = snapshot;
    node.disk.entries = node.disk.entries.filter((e) => e.index > at);
    this.#print(`${id} snapshot ${snapshot.meta.term}/${snapshot.meta.index} ${describeConfState(snapshot.meta.conf)}; log now ${node.raft.log.firstIndex()}..${node.raft.log.lastIndex()}`);
  }

  // -------------------------------------------------------------------------------------------
  // Ready, delivery

  #processReady(id: NodeId): boolean {
    const node = this.#node(id);
    if (!node.raft.hasReady()) return false;
    // The header is printed with the first line: a Ready that only changes the soft state (already
    // printed as a transition) shows nothing.
    const start = this.#out.length;
    const saved = this.#indent;
    this.#indent = saved + "  ";
    while (node.raft.hasReady()) {
      const rd: Ready = node.raft.ready();
      this.#handleReady(node, rd);
    }
    this.#indent = saved;
    if (this.#out.length > start) this.#out.splice(start, 0, `${saved}> ${id} ready`);
    return true;
  }

  #handleReady(node: EnvNode, rd: Ready): void {
    const id = node.config.id;
    if (rd.hardState !== undefined) this.#print(`hardstate term=${rd.hardState.term} vote=${rd.hardState.vote || "none"} commit=${rd.hardState.commit}`);
    if (rd.snapshot !== undefined) {
      const texts = decodeSm(rd.snapshot.data).map((a) => JSON.stringify(a.text));
      this.#print(`snapshot ${rd.snapshot.meta.term}/${rd.snapshot.meta.index} ${describeConfState(rd.snapshot.meta.conf)} state=[${texts.join(" ")}]`);
    }
    for (const e of rd.entries) this.#print(`persist ${formatEntry(e)}`);
    node.disk.persist(rd);
    for (const m of rd.messages) {
      this.#print(`send ${formatMessage(m)}`);
      this.#queue.push(m);
    }
    if (rd.snapshot !== undefined) {
      node.sm = decodeSm(rd.snapshot.data);
      node.confs = [{ index: rd.snapshot.meta.index, conf: rd.snapshot.meta.conf }];
    }
    for (const e of rd.committed) {
      this.#print(`apply ${formatEntry(e)}`);
      if (e.type === "normal") {
        if (e.data.length > 0) node.sm.push({ index: e.index, text: new TextDecoder().decode(e.data) });
        continue;
      }
      const change = decodeConfChange(e.data);
      if (change === undefined) {
        this.#print("  conf change undecodable");
        continue;
      }
      const result = this.#watch(id, (r) => r.applyConfChange(change), "  ");
      if (result.error !== undefined) this.#print(`  conf change refused: ${result.error}`);
      else {
        this.#print(`  conf ${describeConfState(result.conf)}`);
        node.confs.push({ index: e.index, conf: result.conf });
      }
    }
    for (const rs of rd.readStates) this.#print(`read-state index=${rs.index} ctx=${formatContext(rs.context)}`);
    this.#watch(id, (r) => r.advance(rd));
  }

  #deliver(id: NodeId): boolean {
    if (!this.#nodes.has(id)) return false;
    const mine = this.#queue.filter((m) => m.to === id);
    if (mine.length === 0) return false;
    this.#queue = this.#queue.filter((m) => m.to !== id);
    this.#print(`> ${id} receive`);
    const saved = this.#indent;
    this.#indent = saved + "  ";
    for (const m of mine) {
      if (this.#cut.has(`${m.from}->${m.to}`) || this.#ignored.has(m.type)) {
        this.#print(`dropped ${formatMessage(m)}`);
        continue;
      }
      this.#print(formatMessage(m));
      this.#watch(id, (r) => r.step(m), "  ");
    }
    this.#indent = saved;
    return true;
  }

  #dropQueued(id: NodeId): void {
    for (const m of this.#queue) if (m.to === id) this.#print(`dropped ${formatMessage(m)}`);
    this.#queue = this.#queue.filter((m) => m.to !== id);
  }

  #stabilize(ids: readonly NodeId[]): void {
    for (let round = 0; ; round++) {
      if (round > 10_000) throw new Error("stabilize: no quiescence after 10000 rounds");
      let busy = false;
      for (const id of ids) if (this.#processReady(id)) busy = true;
      for (const id of ids) if (this.#deliver(id)) busy = true;
      if (!busy) return;
    }
  }

  #cutLink(a: NodeId, b: NodeId): void {
    this.#cut.add(`${a}->${b}`);
    this.#cut.add(`${b}->${a}`);
  }

  // -------------------------------------------------------------------------------------------
  // Inspection

  #status(id: NodeId): void {
    const s = this.#node(id).raft.status();
    this.#print(`${id}: ${s.role} term=${s.term} vote=${s.vote || "none"} lead=${s.lead || "none"} commit=${s.commit} applied=${s.applied} log=${s.firstIndex}..${s.lastIndex} ${describeConfState(s.conf)}${s.leadTransferee !== NONE ? ` transferee=${s.leadTransferee}` : ""}`);
    for (const [peer, pr] of [...s.progress].sort((a, b) => Number(a[0]) - Number(b[0]))) {
      const flags = [
        pr.inflight > 0 ? `inflight=${pr.inflight}` : "",
        pr.paused ? "paused" : "",
        pr.recentActive ? "" : "inactive",
        pr.learner ? "learner" : "",
        pr.pendingSnapshot > 0 ? `pending-snapshot=${pr.pendingSnapshot}` : "",
      ].filter((f) => f !== "");
      this.#print(`  ${peer}: ${pr.state} match=${pr.match} next=${pr.next}${flags.length > 0 ? " " + flags.join(" ") : ""}`);
    }
  }

  #log(id: NodeId): void {
    const log = this.#node(id).raft.log;
    const snap = log.snapshotMeta;
    const base = snap.index > 0 ? ` after snapshot ${snap.term}/${snap.index}` : "";
    this.#print(`${id} log: ${log.lastIndex() < log.firstIndex() ? "empty" : `${log.firstIndex()}..${log.lastIndex()}`}${base} commit=${log.committed}`);
    for (let i = log.firstIndex(); i <= log.lastIndex(); i++) this.#print(`  ${formatEntry(log.entry(i)!)}`);
  }

  // -------------------------------------------------------------------------------------------
  // Randomized election timeouts (§5.2), measured on scratch nodes that do not touch the scenario

  #electionTimeouts(args: string[]): void {
    const { pos, kv } = parseArgs(args);
    const id = need(pos[0], "election-timeouts ID trials=N role=R");
    const trials = Number(kv.get("trials") ?? 1000);
    const role = kv.get("role") ?? "follower";
    const node = this.#node(id);
    const r = new Raft(node.config, createRng(SEED, Number(id)), { conf: node.raft.conf });
    const other = node.raft.conf.voters.find((v) => v !== id) ?? "2";
    const seen = new Map<number, number>();
    for (let t = 0; t < trials; t++) {
      if (role === "follower") r.step(message({ type: "heartbeat", from: other, to: id, term: r.term + 1 }));
      else r.campaign();
      drainReady(r);
      let ticks = 0;
      for (;;) {
        r.tick();
        ticks++;
        if (drainReady(r) > 0) break;
        if (ticks > 100 * node.config.electionTicks) throw new Error("election-timeouts: no election");
      }
      seen.set(ticks, (seen.get(ticks) ?? 0) + 1);
    }
    const keys = [...seen.keys()].sort((a, b) => a - b);
    this.#print(`${role} ${id}: ${trials} timeouts, min=${keys[0]} max=${keys[keys.length - 1]} distinct=${keys.length}`);
    this.#print(`seen: ${keys.join(" ")}`);
  }

  #electionConflicts(args: string[]): void {
    const { kv } = parseArgs(args);
    const n = Number(kv.get("voters") ?? 5);
    const trials = Number(kv.get("trials") ?? 1000);
    const role = kv.get("role") ?? "follower";
    const election = Number(kv.get("election") ?? 10);
    const voters = Array.from({ length: n }, (_, i) => String(i + 1));
    const rafts = voters.map((id) => new Raft({ ...RAFT_DEFAULTS, ...ENV_DEFAULTS, electionTicks: election, id }, createRng(SEED, Number(id)), { conf: { ...EMPTY_CONF, voters } }));
    let conflicts = 0;
    for (let t = 0; t < trials; t++) {
      for (const r of rafts) {
        // A message of a higher term that is not from a leader: the node becomes a follower with no leader.
        if (role === "follower") r.step(message({ type: "heartbeat-resp", from: r.id === "1" ? "2" : "1", to: r.id, term: r.term + 1 }));
        else r.campaign();
        drainReady(r);
      }
      let fired = 0;
      while (fired === 0) {
        for (const r of rafts) {
          r.tick();
          if (drainReady(r) > 0) fired++;
        }
      }
      if (fired > 1) conflicts++;
    }
    const rate = conflicts / trials;
    this.#print(`${role}s: ${n} voters, ${trials} rounds, ${conflicts} rounds where more than one timed out in the same tick (rate ${rate.toFixed(3)})`);
    const max = kv.get("max-rate");
    if (max !== undefined) this.#print(rate <= Number(max) ? `rate <= ${max}: ok` : `rate > ${max}: TOO MANY CONFLICTS`);
  }

  // -------------------------------------------------------------------------------------------
  // Helpers

  #ids(): NodeId[] {
    return [...this.#nodes.keys()].sort((a, b) => Number(a) - Number(b));
  }

  #node(id: NodeId): EnvNode {
    const node = this.#nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  #each(args: string[], fn: (id: NodeId) => void): void {
    for (const id of args) fn(id);
  }

  #print(line: string): void {
    this.#out.push(this.#indent + line);
  }

  /** Runs fn on the node's Raft and prints a line when its role, term or leader changed. */
  #watch<T>(id: NodeId, fn: (r: Raft) => T, extraIndent = ""): T {
    const r = this.#node(id).raft;
    const before: Watch = { role: r.role, term: r.term, lead: r.lead };
    const result = fn(r);
    if (r.role !== before.role || r.term !== before.term || r.lead !== before.lead) {
      this.#print(`${extraIndent}${id} becomes ${r.role} term=${r.term} lead=${r.lead || "none"}`);
    }
    return result;
  }
}

function drainReady(r: Raft): number {
  let sent = 0;
  while (r.hasReady()) {
    const rd = r.ready();
    sent += rd.messages.length;
    for (const e of rd.committed) {
      if (e.type === "conf") {
        const change = decodeConfChange(e.data);
        if (change !== undefined) r.applyConfChange(change);
      }
    }
    r.advance(rd);
  }
  return sent;
}

// ---------------------------------------------------------------------------------------------
// Formatting

export function formatEntry(e: Entry): string {
  if (e.type === "normal") return `${e.term}/${e.index} ${JSON.stringify(new TextDecoder().decode(e.data))}`;
  const change = decodeConfChange(e.data);
  return `${e.term}/${e.index} conf(${change === undefined ? "?" : formatConfChange(change)})`;
}

function formatConfChange(change: ConfChange): string {
  const parts = change.changes.map((c) => `${c.type === "add-voter" ? "v" : c.type === "add-learner" ? "l" : "r"}${c.node}`);
  if (parts.length === 0) parts.push("leave");
  if (change.transition === "explicit") parts.push("transition=explicit");
  if (change.joint === true) parts.push("joint=true");
  return parts.join(" ");
}

const TRANSFER_CONTEXT = 0x74;

function formatContext(ctx: Uint8Array): string {
  return JSON.stringify(new TextDecoder().decode(ctx));
}

/** One message on one line; every field that is set is shown. */
export function formatMessage(m: Message): string {
  const parts = [`${m.from || "none"}->${m.to || "none"}`, m.type, `term=${m.term}`];
  const withLog = m.type === "app" || m.type === "vote" || m.type === "prevote";
  if (withLog) parts.push(`log=${m.logTerm}/${m.index}`);
  else if (m.type === "app-resp" || m.type === "read-index-resp" || m.index !== 0) parts.push(`index=${m.index}`);
  if (m.type === "app" || m.type === "heartbeat" || m.commit !== 0) parts.push(`commit=${m.commit}`);
  if (m.reject) parts.push("rejected");
  if (m.reject && m.type === "app-resp") parts.push(`hint=${m.logTerm}/${m.rejectHint}`);
  else {
    if (!withLog && m.logTerm !== 0) parts.push(`logterm=${m.logTerm}`);
    if (m.rejectHint !== 0) parts.push(`hint=0/${m.rejectHint}`);
  }
  if (m.entries.length > 0) parts.push(`entries=[${m.entries.map(formatEntry).join(", ")}]`);
  if (m.snapshot !== undefined) parts.push(`snapshot=${m.snapshot.meta.term}/${m.snapshot.meta.index} ${describeConfState(m.snapshot.meta.conf)}`);
  if (m.context !== undefined) {
    if ((m.type === "vote" || m.type === "prevote") && m.context.length === 1 && m.context[0] === TRANSFER_CONTEXT) parts.push("transfer");
    else parts.push(`ctx=${formatContext(m.context)}`);
  }
  return parts.join(" ");
}

// ---------------------------------------------------------------------------------------------
// Parsing

/** Splits on spaces, keeping "quoted strings", (lists) and [brackets] whole. */
export function tokenize(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      cur += c;
      if (c === "\\") cur += line[++i] ?? "";
      else if (c === '"') quoted = false;
      continue;
    }
    if (c === '"') quoted = true;
    else if (c === "(" || c === "[") depth++;
    else if (c === ")" || c === "]") depth--;
    if (c === " " && depth === 0) {
      if (cur !== "") out.push(cur);
      cur = "";
    } else cur += c;
  }
  if (quoted || depth !== 0) throw new Error(`unbalanced quotes or brackets: ${line}`);
  if (cur !== "") out.push(cur);
  return out;
}

function parseArgs(args: readonly string[]): { pos: string[]; kv: Map<string, string> } {
  const pos: string[] = [];
  const kv = new Map<string, string>();
  for (const a of args) {
    const eq = a.indexOf("=");
    if (eq > 0 && !a.startsWith('"')) kv.set(a.slice(0, eq), a.slice(eq + 1));
    else pos.push(a);
  }
  return { pos, kv };
}

function need<T>(value: T | undefined, usage: string): T {
  if (value === undefined) throw new Error(`usage: ${usage}`);
  return value;
}

function unquote(s: string): string {
  return s.startsWith('"') ? (JSON.parse(s) as string) : s;
}

function parseIdList(s: string): NodeId[] {
  const inner = s.replace(/^\(/, "").replace(/\)$/, "").trim();
  return inner === "" ? [] : inner.split(/[ ,]+/);
}

function parseNumberList(s: string): number[] {
  return parseIdList(s).map(Number);
}

function parseConfChangeSingle(token: string): ConfChangeSingle {
  const match = /^([vlr])(\w+)$/.exec(token);
  if (match === null) throw new Error(`bad conf change ${token}: want v<id>, l<id> or r<id>`);
  const type = match[1] === "v" ? "add-voter" : match[1] === "l" ? "add-learner" : "remove";
  return { type, node: match[2]! };
}

/** Parses a message written as formatMessage prints it (snapshots excepted). */
export function parseMessage(tokens: readonly string[]): Message {
  const [route, type, ...rest] = tokens;
  const arrow = /^(\w+)->(\w+)$/.exec(route ?? "");
  if (arrow === null || type === undefined) throw new Error("step FROM->TO TYPE [term=T] [log=LT/I] [index=I] [commit=C] [rejected] [hint=LT/I] [entries=[...]] [ctx=\"...\"] [transfer]");
  if (!MESSAGE_TYPES.includes(type as MessageType)) throw new Error(`unknown message type ${type}`);
  const fields: { -readonly [K in keyof Message]?: Message[K] } = { type: type as MessageType, from: arrow[1]!, to: arrow[2]! };
  for (const token of rest) {
    const eq = token.indexOf("=");
    const key = eq < 0 ? token : token.slice(0, eq);
    const value = eq < 0 ? "" : token.slice(eq + 1);
    const pair = (): [number, number] => {
      const [a, b] = value.split("/").map(Number);
      return [a ?? 0, b ?? 0];
    };
    switch (key) {
      case "term": fields.term = Number(value); break;
      case "log": [fields.logTerm, fields.index] = pair(); break;
      case "index": fields.index = Number(value); break;
      case "commit": fields.commit = Number(value); break;
      case "logterm": fields.logTerm = Number(value); break;
      case "rejected": fields.reject = true; break;
      case "hint": [fields.logTerm, fields.rejectHint] = pair(); break;
      case "entries": fields.entries = parseEntries(value); break;
      case "ctx": fields.context = new TextEncoder().encode(unquote(value)); break;
      case "transfer": fields.context = new Uint8Array([TRANSFER_CONTEXT]); break;
      default: throw new Error(`unknown message field ${key}`);
    }
  }
  return message(fields as Partial<Message> & Pick<Message, "type">);
}

function parseEntries(s: string): Entry[] {
  const out: Entry[] = [];
  const re = /(\d+)\/(\d+) ("(?:[^"\\]|\\.)*"|conf\(([^)]*)\))/g;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    const term = Number(m[1]);
    const index = Number(m[2]);
    if (m[4] !== undefined) {
      const { pos, kv } = parseArgs(m[4].split(" ").filter((t) => t !== "" && t !== "leave"));
      const transition = kv.get("transition") === "explicit" ? "explicit" : "auto";
      const change: ConfChange = { changes: pos.map(parseConfChangeSingle), transition, ...(kv.get("joint") === "true" ? { joint: true } : {}) };
      out.push({ term, index, type: "conf", data: encodeConfChange(change) });
    } else {
      out.push({ term, index, type: "normal", data: new TextEncoder().encode(JSON.parse(m[3]!) as string) });
    }
  }
  return out;
}

function encodeSm(sm: readonly Applied[]): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(sm));
}

function decodeSm(data: Uint8Array): Applied[] {
  return data.length === 0 ? [] : (JSON.parse(new TextDecoder().decode(data)) as Applied[]);
}
