// Shell commands of the Collective layer: raft, kv, topic, spawn, route.
import { describeConfState } from "../../core/collective/raft/confchange.ts";
import { LIMITS } from "../../core/util/limits.ts";
import type { KvOutcome } from "./consensus.ts";
import type { NodeContext } from "../context.ts";
import type { NodeView as Kernel } from "../view.ts";
import { formatFields, formatTable, UsageError, type Command } from "../shell.ts";

const TOPIC_ROWS_MAX = LIMITS.shell.topicRowsMax;
const utf8 = new TextEncoder();
const text = new TextDecoder();

function short(id: string): string {
  return id === "" ? "-" : id;
}

export const raft: Command<NodeContext> = {
  name: "raft",
  summary: "consensus state: role, term, leader, commit, applied, voters, learners, follower progress",
  usage: "raft",
  run(args, { kernel }) {
    if (args.length > 0) throw new UsageError("takes no arguments");
    const consensus = kernel.consensus;
    const status = consensus.status();
    const stats = consensus.stats;
    const fields: [string, string][] = [
      ["id", status.id],
      ["state", status.role],
      ["term", String(status.term)],
      ["leader", short(status.lead)],
      ["commit", String(status.commit)],
      ["applied", String(status.applied)],
      ["log", `${status.firstIndex}..${status.lastIndex} (snapshot at ${consensus.raft.snapshot?.meta.index ?? 0})`],
      ["config", describeConfState(status.conf)],
      ["config epoch", `${consensus.confEpoch} (${stats.regenerations} regenerations here; ${consensus.config.regenerate ? "regeneration on" : "regeneration off"})`],
      ["requests", `${stats.proposals} writes, ${stats.reads} reads, ${stats.timeouts} timed out`],
      ["disk", `${stats.fsyncs} fsyncs for ${stats.persistedEntries} entries (${perEntry(stats.fsyncs, stats.persistedEntries)} per entry; ${stats.batches} batches); `
        + `${stats.snapshotsTaken} snapshots taken, ${stats.snapshotsInstalled} installed`],
    ];
    const head = formatFields(fields);
    if (status.role !== "leader") return head;
    const rows = [...status.progress.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, pr]) => [
      id, pr.learner ? "learner" : "voter", pr.state, String(pr.match), String(pr.next), String(pr.inflight),
      pr.recentActive ? "yes" : "no", kernel.swim.stateOf(id) ?? (id === kernel.id ? "self" : "unknown"),
    ]);
    return `${head}\n\n${formatTable(["FOLLOWER", "KIND", "STATE", "MATCH", "NEXT", "INFLIGHT", "ACTIVE", "SWIM"], rows)}`;
  },
  json(args, { kernel }) {
    if (args.length > 0) throw new UsageError("takes no arguments");
    const consensus = kernel.consensus;
    const status = consensus.status();
    const stats = consensus.stats;
    return {
      id: status.id, state: status.role, term: status.term, leader: status.lead === "" ? null : status.lead,
      commit: status.commit, applied: status.applied, log: { first: status.firstIndex, last: status.lastIndex, snapshot: consensus.raft.snapshot?.meta.index ?? 0 },
      config: { voters: [...status.conf.voters], learners: [...status.conf.learners], votersOutgoing: [...status.conf.votersOutgoing], learnersNext: [...status.conf.learnersNext], epoch: consensus.confEpoch },
      stats: { ...stats },
      followers: status.role !== "leader" ? [] : [...status.progress.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, pr]) => ({
        id, kind: pr.learner ? "learner" : "voter", state: pr.state, match: pr.match, next: pr.next, inflight: pr.inflight, active: pr.recentActive,
      })),
    };
  },
};

/** Fsyncs per persisted entry, two decimals ("-" before the first entry). */
function perEntry(fsyncs: number, entries: number): string {
  return entries === 0 ? "-" : (fsyncs / entries).toFixed(2);
}

function outcomeText(outcome: KvOutcome, what: string): string {
  switch (outcome.code) {
    case "ok": return what;
    case "not-found": throw new Error("no such key");
    case "conflict": throw new Error(outcome.value === undefined ? "compare failed: the key is absent" : `compare failed: the key holds ${JSON.stringify(text.decode(outcome.value))}`);
    case "full": throw new Error("the key-value store is full");
    case "invalid": throw new UsageError(outcome.detail ?? "invalid request");
    default: throw new Error(`${outcome.code}: ${outcome.detail ?? ""}`.trim());
  }
}

function ask(kernel: Kernel, start: (kernel: Kernel, done: (outcome: KvOutcome) => void) => void): Promise<KvOutcome> {
  return new Promise((resolve) => start(kernel, resolve));
}

export const kv: Command<NodeContext> = {
  name: "kv",
  summary: "the consensus key-value store: linearizable get, put, del, cas; list keys",
  usage: "kv get KEY | kv put KEY VALUE | kv del KEY | kv cas KEY EXPECTED VALUE | kv list [PREFIX]",
  run(args, { kernel }) {
    const [sub, key, ...rest] = args;
    switch (sub) {
      case "get":
        if (key === undefined || rest.length > 0) throw new UsageError("get takes one KEY");
        return ask(kernel, (k, done) => k.kvGet(key, done)).then((o) => outcomeText(o, o.value === undefined ? "" : text.decode(o.value)));
      case "put":
        if (key === undefined || rest.length !== 1) throw new UsageError("put takes KEY VALUE (quote a value with spaces)");
        return ask(kernel, (k, done) => k.kvPut(key, utf8.encode(rest[0]!), done)).then((o) => outcomeText(o, `ok (revision ${o.revision ?? 0})`));
      case "del":
        if (key === undefined || rest.length > 0) throw new UsageError("del takes one KEY");
        return ask(kernel, (k, done) => k.kvDelete(key, done)).then((o) => outcomeText(o, `deleted (revision ${o.revision ?? 0})`));
      case "cas":
        if (key === undefined || rest.length !== 2) throw new UsageError("cas takes KEY EXPECTED VALUE");
        return ask(kernel, (k, done) => k.kvCas(key, utf8.encode(rest[0]!), utf8.encode(rest[1]!), done)).then((o) => outcomeText(o, `ok (revision ${o.revision ?? 0})`));
      case "list": {
        if (rest.length > 0) throw new UsageError("list takes at most a PREFIX");
        // This node's applied state: it may lag the leader by the entries in flight.
        const rows = kernel.consensus.kv.keys(key ?? "", TOPIC_ROWS_MAX);
        if (rows.length === 0) return "no keys";
        return formatTable(["KEY", "REVISION", "BYTES", "VALUE"], rows.map(([name, record]) => [
          name, String(record.revision), String(record.value.length), JSON.stringify(text.decode(record.value).slice(0, 40)),
        ]));
      }
      default:
        throw new UsageError(sub === undefined ? "needs a subcommand" : `unknown subcommand ${JSON.stringify(sub.slice(0, 40))}`);
    }
  },
  async json(args, { kernel }) {
    const [sub, key, ...rest] = args;
    if (sub === "list") {
      if (rest.length > 0) throw new UsageError("list takes at most a PREFIX");
      return { keys: kernel.consensus.kv.keys(key ?? "", TOPIC_ROWS_MAX).map(([name, record]) => ({ key: name, revision: record.revision, value: text.decode(record.value) })) };
    }
    if (sub !== "get") throw new UsageError("--json is for kv get KEY and kv list [PREFIX]");
    if (key === undefined || rest.length > 0) throw new UsageError("get takes one KEY");
    const o = await ask(kernel, (k, done) => k.kvGet(key, done));
    if (o.code === "not-found") return { key, found: false, value: null, revision: null };
    outcomeText(o, "");
    return { key, found: true, value: o.value === undefined ? null : text.decode(o.value), revision: o.revision ?? null };
  },
};

/** Longest wait of `topic sub`, in seconds. */
const SUB_SECONDS_MAX = LIMITS.shell.subSecondsMax;

function showValue(value: Uint8Array | undefined): string {
  return value === undefined ? "(deleted)" : JSON.stringify(text.decode(value).slice(0, 60));
}

export const topic: Command<NodeContext> = {
  name: "topic",
  summary: "topics: gossip topics (rows replicated to every node, last writer wins) and consensus topics (the Raft key-value store)",
  usage: "topic list | topic pub TOPIC KEY VALUE | topic get TOPIC [KEY] | topic del TOPIC KEY | topic sub TOPIC [SECONDS]",
  run(args, { kernel }) {
    const [sub, name, ...rest] = args;
    const gossip = kernel.gossip;
    switch (sub) {
      case "list": {
        if (name !== undefined) throw new UsageError("list takes no arguments");
        const rows: string[][] = gossip.topics().slice(0, TOPIC_ROWS_MAX).map((t) => [t.topic, "gossip", `${t.keys} keys`, "-"]);
        const store = kernel.consensus.kv;
        for (const [key, record] of store.keys("", TOPIC_ROWS_MAX)) rows.push([key, "consensus", `${record.value.length} bytes`, String(record.revision)]);
        if (rows.length === 0) return "no topics";
        const more = store.size > TOPIC_ROWS_MAX ? `\n... and ${store.size - TOPIC_ROWS_MAX} more consensus topics` : "";
        return `${formatTable(["TOPIC", "CLASS", "SIZE", "REVISION"], rows)}${more}`;
      }
      case "pub": {
        if (name === undefined || rest.length !== 2) throw new UsageError("pub takes TOPIC KEY VALUE (quote a value with spaces)");
        const error = kernel.topicPublish(name, rest[0]!, utf8.encode(rest[1]!));
        if (error !== undefined) throw new UsageError(error);
        return `published (version ${gossip.selfVersion}); it reaches every node by gossip`;
      }
      case "del": {
        if (name === undefined || rest.length !== 1) throw new UsageError("del takes TOPIC KEY");
        const error = kernel.topicPublish(name, rest[0]!, undefined);
        if (error !== undefined) throw new UsageError(error);
        return "deleted (a tombstone reaches every node by gossip)";
      }
      case "get": {
        if (name === undefined || rest.length > 1) throw new UsageError("get takes TOPIC [KEY]");
        const rows = rest.length === 1 ? [gossip.get(name, rest[0]!)].filter((r) => r !== undefined) : gossip.entries(name);
        const live = rows.filter((row) => row.value !== undefined);
        if (live.length === 0) return rest.length === 1 ? "no such key" : "no rows";
        return formatTable(["KEY", "VALUE", "ORIGIN", "VERSION"], live.slice(0, TOPIC_ROWS_MAX).map((row) => [row.key, showValue(row.value), row.origin, String(row.version)]));
      }
      case "sub": {
        if (name === undefined || rest.length > 1) throw new UsageError("sub takes TOPIC [SECONDS]");
        const seconds = rest[0] === undefined ? 5 : Number(rest[0]);
        if (!(seconds > 0 && seconds <= SUB_SECONDS_MAX)) throw new UsageError(`SECONDS must be in (0, ${SUB_SECONDS_MAX}]`);
        const subscription = gossip.subscribe(name);
        if (subscription === undefined) throw new Error("too many subscriptions on this node");
        return new Promise((resolve) => {
          setTimeout(() => {
            const changes = subscription.take();
            const dropped = subscription.dropped;
            subscription.close();
            if (changes.length === 0) return resolve(`no changes to ${name} in ${seconds} s`);
            const table = formatTable(["KEY", "VALUE", "ORIGIN", "VERSION"], changes.map((c) => [c.key, showValue(c.value), c.origin, String(c.version)]));
            resolve(dropped > 0 ? `${table}\n(${dropped} older changes dropped: the queue is bounded)` : table);
          }, seconds * 1000).unref();
        });
      }
      default:
        throw new UsageError(sub === undefined ? "needs a subcommand" : `unknown subcommand ${JSON.stringify(sub.slice(0, 40))}`);
    }
  },
};

/** A member by id, id prefix (at least 4 characters) or name; a clear error otherwise. */
export function resolveMember(kernel: Kernel, what: string): string {
  const members = kernel.memberStatuses();
  const exact = members.find((m) => m.id === what) ?? members.filter((m) => m.name === what).at(0);
  if (exact !== undefined) return exact.id;
  const prefixed = what.length >= 4 ? members.filter((m) => m.id.startsWith(what)) : [];
  if (prefixed.length === 1) return prefixed[0]!.id;
  throw new UsageError(prefixed.length > 1 ? `"${what}" matches ${prefixed.length} members` : `no member "${what}" (an id, an id prefix of 4+ characters, or a name)`);
}

const ROUTE_PING_TICKS = 200;

export const route: Command<NodeContext> = {
  name: "route",
  summary: "mesh routing: links, the route to every member (next hop, metric, seqno); route ping MEMBER",
  usage: "route | route ping MEMBER",
  run(args, { kernel }) {
    const mesh = kernel.mesh;
    const names = new Map(kernel.memberStatuses().map((m) => [m.id, m.name === "" ? m.id : m.name]));
    const label = (id: string | undefined) => (id === undefined ? "-" : names.get(id) ?? id);
    if (args[0] === "ping") {
      if (args.length !== 2) throw new UsageError("ping takes one MEMBER");
      const target = resolveMember(kernel, args[1]!);
      if (target === kernel.id) throw new UsageError("that is this node");
      return new Promise<string>((resolve, reject) => {
        mesh.echo(target, ROUTE_PING_TICKS, (result) => {
          if (result.ok) resolve(`reply from ${label(target)} via ${label(mesh.core.nextHop(target))}: ${result.hops} hop${result.hops === 1 ? "" : "s"}, ${(result.ms ?? 0).toFixed(1)} ms`);
          else reject(new Error(`${label(target)}: ${result.error ?? "failed"}`));
        });
      });
    }
    if (args.length > 0) throw new UsageError("route takes no arguments but ping MEMBER");
    const stats = mesh.stats;
    const links = mesh.links().sort((a, b) => (label(a.id) < label(b.id) ? -1 : 1))
      .map((l) => `${label(l.id)}${l.outbound ? "" : " (in)"}`);
    const head = formatFields([
      ["mesh", mesh.active ? `on, seqno ${mesh.core.seqno}` : `off (more than ${mesh.config.membersMax} members)`],
      ["links", links.length === 0 ? "none" : links.join(", ")],
      ["data", `${stats.dataSent} sent, ${stats.dataDelivered} delivered, ${stats.dataForwarded} forwarded, ${stats.dropNoRoute} without route, ${stats.dropTtl} out of hops`],
    ]);
    const rows = mesh.routes().filter((r) => r.destination !== kernel.id)
      .sort((a, b) => (label(a.destination) < label(b.destination) ? -1 : 1))
      .map((r) => [label(r.destination), label(r.nextHop), r.metric >= 0xffff ? "unreachable" : String(r.metric), String(r.seqno ?? "-")]);
    return `${head}\n\n${formatTable(["DESTINATION", "NEXT HOP", "METRIC", "SEQNO"], rows)}`;
  },
};

