// Shell commands of the Collective layer so far: raft, kv, topic.
import { describeConfState } from "../core/collective/raft/confchange.ts";
import type { KvOutcome } from "./consensus.ts";
import type { NodeContext } from "./commands.ts";
import type { Kernel } from "./kernel.ts";
import { formatFields, formatTable, UsageError, type Command } from "./shell.ts";

const TOPIC_ROWS_MAX = 200;
const utf8 = new TextEncoder();
const text = new TextDecoder();

function short(id: string): string {
  return id === "" ? "-" : id;
}

const raft: Command<NodeContext> = {
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
      ["disk", `${stats.fsyncs} fsyncs for ${stats.persistedEntries} entries; ${stats.snapshotsTaken} snapshots taken, ${stats.snapshotsInstalled} installed`],
    ];
    const head = formatFields(fields);
    if (status.role !== "leader") return head;
    const rows = [...status.progress.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, pr]) => [
      id, pr.learner ? "learner" : "voter", pr.state, String(pr.match), String(pr.next), String(pr.inflight),
      pr.recentActive ? "yes" : "no", kernel.swim.stateOf(id) ?? (id === kernel.id ? "self" : "unknown"),
    ]);
    return `${head}\n\n${formatTable(["FOLLOWER", "KIND", "STATE", "MATCH", "NEXT", "INFLIGHT", "ACTIVE", "SWIM"], rows)}`;
  },
};

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

const kv: Command<NodeContext> = {
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
};

const topic: Command<NodeContext> = {
  name: "topic",
  summary: "topics: consensus topics are the keys of the Raft key-value store",
  usage: "topic list",
  run(args, { kernel }) {
    if (args.length !== 1 || args[0] !== "list") throw new UsageError("only `topic list` exists so far");
    const store = kernel.consensus.kv;
    const rows = store.keys("", TOPIC_ROWS_MAX);
    const table = formatTable(["TOPIC", "CLASS", "REVISION", "BYTES"], rows.map(([name, record]) => [name, "consensus", String(record.revision), String(record.value.length)]));
    const more = store.size > rows.length ? `\n... and ${store.size - rows.length} more` : "";
    return rows.length === 0 ? "no topics" : `${table}${more}`;
  },
};

export const COLLECTIVE_COMMANDS: readonly Command<NodeContext>[] = [raft, kv, topic];
