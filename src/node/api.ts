// The node as the HTTP adapter sees it (src/adapters/http.ts's ApiNode): status, the shell, the
// event bus, every subsystem's routes and metrics, and the kernel's own counters.
import { Counter, Gauge, type Registry } from "prom-client";
import type { ApiNode, ApiRoute } from "../adapters/http.ts";
import type { VitalSigns } from "../core/body/vital.ts";
import type { HostStats, NodeContext } from "./context.ts";
import { dashboardRoutes } from "./dashboard-routes.ts";
import { DROP_REASONS, type Kernel, type MemberState } from "./kernel.ts";
import type { Shell } from "./shell.ts";
import type { ContributionStatus } from "./subsystem-context.ts";

export function nodeApi(kernel: Kernel, shell: Shell<NodeContext>, hostStats: () => HostStats | undefined = () => undefined): ApiNode {
  const routes: ApiRoute[] = [...kernel.specs.flatMap((spec) => spec.routes?.(kernel) ?? []), ...dashboardRoutes(kernel)];
  return {
    status: () => statusOf(kernel),
    shell: (line, stream) => shell.executeAsync(line, stream),
    events: kernel.events,
    routes,
    onRequest: () => void kernel.stats.requests++,
    metrics(registry) {
      kernelMetrics(kernel, hostStats, registry);
      for (const spec of kernel.specs) spec.metrics?.(kernel, registry);
    },
  };
}

export interface StatusMember {
  readonly id: string;
  readonly addr: string;
  readonly state: MemberState;
  readonly incarnation: number;
  readonly name: string;
  readonly role: string;
  /** Milliseconds since the member was last heard from; 0 for this node, null if never. */
  readonly lastHeardMs: number | null;
  /** The member's latest vital signs as heard here, and their age; null before the first. */
  readonly vital: (VitalSigns & { readonly ageMs: number }) | null;
}

export interface NodeStatusBody {
  readonly id: string;
  readonly name: string;
  readonly role: string;
  readonly mode: "FULL" | "REDUCED" | "SOLO";
  readonly uptimeMs: number;
  readonly raft: {
    readonly state: "leader" | "follower" | "candidate" | "learner";
    readonly term: number;
    readonly leader: string | null;
    readonly commitIndex: number;
    readonly appliedIndex: number;
    readonly voters: string[];
    readonly learners: string[];
    /** Regenerations so far raise the configuration epoch (ADR 008). */
    readonly confEpoch: number;
  };
  readonly members: StatusMember[];
  /** Guarded tasks (heal): owner, adoption epoch, and whether this node runs each. */
  readonly guarded: Array<{ readonly name: string; readonly owner: string; readonly epoch: number; readonly runningHere: boolean }>;
  /** Whether this node lends itself to the cluster now (ADR 027); null when it runs no contribution subsystem. */
  readonly contribution: ContributionStatus | null;
}

/** The body of GET /v1/status. */
export function statusOf(kernel: Kernel): NodeStatusBody {
  const self = kernel.self;
  const tickMs = kernel.config.tickMs;
  const vitals = kernel.vitalTable();
  const vitalOf = (row: (typeof vitals)[number] | undefined): StatusMember["vital"] =>
    row?.signs === undefined || row.ageTicks === undefined ? null : { ...row.signs, ageMs: row.ageTicks * tickMs };
  return {
    id: kernel.id,
    name: self.name,
    role: self.role,
    mode: kernel.mode,
    uptimeMs: Math.max(0, Math.round(kernel.uptimeMs)),
    raft: raftStatusOf(kernel),
    members: kernel.memberStatuses().map((member, i) => ({
      id: member.id,
      addr: member.addr,
      state: member.state,
      incarnation: member.incarnation,
      name: member.name,
      role: member.role,
      lastHeardMs: member.lastHeardTicks === undefined ? null : member.lastHeardTicks * tickMs,
      vital: vitalOf(vitals[i]),
    })),
    guarded: kernel.guardStatuses().filter(({ task }) => !task.removed).map(({ task, running }) => ({
      name: task.name, owner: task.owner, epoch: task.epoch, runningHere: running !== undefined,
    })),
    contribution: kernel.services.contribution?.status() ?? null,
  };
}

function raftStatusOf(kernel: Kernel): NodeStatusBody["raft"] {
  const consensus = kernel.consensus;
  const status = consensus.status();
  const conf = status.conf;
  const voters = [...new Set([...conf.voters, ...conf.votersOutgoing])].sort();
  const learners = [...new Set([...conf.learners, ...conf.learnersNext])].sort();
  const state = status.role === "leader" ? "leader"
    : status.role === "candidate" || status.role === "pre-candidate" ? "candidate"
    : voters.includes(kernel.id) ? "follower" : "learner";
  return {
    state, term: status.term, leader: status.lead === "" ? null : status.lead, commitIndex: status.commit, appliedIndex: status.applied,
    voters, learners, confEpoch: consensus.confEpoch,
  };
}

function kernelMetrics(kernel: Kernel, hostStats: () => HostStats | undefined, registry: Registry): void {
  const registers = [registry];
  new Counter({
    name: "pk_packets_dropped_total",
    help: "Inbound packets dropped before any core saw them, by reason",
    labelNames: ["reason"] as const,
    registers,
    collect() {
      this.reset();
      for (const reason of DROP_REASONS) this.inc({ reason }, kernel.stats.dropped[reason]);
    },
  });
  new Counter({
    name: "pk_packets_total",
    help: "Authenticated packets received and packets sent, by channel and direction",
    labelNames: ["channel", "direction"] as const,
    registers,
    collect() {
      this.reset();
      for (const channel of ["datagram", "stream"] as const) {
        this.inc({ channel, direction: "in" }, kernel.stats[channel].packetsIn);
        this.inc({ channel, direction: "out" }, kernel.stats[channel].packetsOut);
      }
    },
  });
  new Counter({
    name: "pk_bytes_total",
    help: "Bytes of authenticated packets received and of packets sent, by channel and direction",
    labelNames: ["channel", "direction"] as const,
    registers,
    collect() {
      this.reset();
      for (const channel of ["datagram", "stream"] as const) {
        this.inc({ channel, direction: "in" }, kernel.stats[channel].bytesIn);
        this.inc({ channel, direction: "out" }, kernel.stats[channel].bytesOut);
      }
    },
  });
  new Counter({
    name: "pk_send_failures_total",
    help: "Outbound messages not sent: unknown address or over the channel's size bound",
    registers,
    collect() {
      this.reset();
      this.inc(kernel.stats.sendFailures);
    },
  });
  new Counter({
    name: "pk_introductions_total",
    help: "Intro packets carrying this node's signed entry to members that might not know it yet",
    registers,
    collect() {
      this.reset();
      this.inc(kernel.stats.introductions);
    },
  });
  new Counter({
    name: "pk_records_refused_total",
    help: "Relayed claims that did not verify, by kind and reason: member entries, SWIM's claims about members' states, writers' records (row, sfs, heal)",
    labelNames: ["kind", "reason"] as const,
    registers,
    collect() {
      this.reset();
      for (const [reason, count] of Object.entries(kernel.membership.checker.refused)) this.inc({ kind: "entry", reason }, count);
      const swim = kernel.swim.stats;
      this.inc({ kind: "claim", reason: "signature" }, swim.claimsRefused);
      this.inc({ kind: "claim", reason: "leave" }, swim.leavesForged);
      for (const [kind, reasons] of Object.entries(kernel.records.refused)) {
        for (const [reason, count] of Object.entries(reasons)) this.inc({ kind, reason }, count);
      }
    },
  });
  new Gauge({
    name: "pk_members",
    help: "Members of the cluster as this node sees them (itself included), by state",
    labelNames: ["state"] as const,
    registers,
    collect() {
      const counts: Record<MemberState, number> = { alive: 0, suspect: 0, dead: 0, left: 0 };
      for (const member of kernel.memberStatuses()) counts[member.state]++;
      for (const [state, count] of Object.entries(counts)) this.set({ state }, count);
    },
  });
  new Counter({
    name: "pk_ticks_total",
    help: "Kernel ticks run since boot",
    registers,
    collect() {
      this.reset();
      this.inc(kernel.tickCount);
    },
  });
  new Counter({
    name: "pk_ticks_skipped_total",
    help: "Ticks skipped because the event loop was late beyond the catch-up bound",
    registers,
    collect() {
      this.reset();
      this.inc(hostStats()?.ticksSkipped ?? 0);
    },
  });
}

