// What this node's minds did, as plain numbers per mind (MindCounters), and their Prometheus face
// (mindMetrics). Labels are mind names and fixed words: never a key, a URL or a prompt.
import { Counter, Gauge, type Registry } from "prom-client";
import { MIND_OUTCOMES, type MindOutcome } from "../core/self/minds.ts";

/** One mind's counts since this process started. */
export interface MindCount {
  /** Chat calls, by how they ended. */
  readonly requests: Record<MindOutcome, number>;
  /** Embedding calls, by how they ended. */
  readonly embeds: Record<MindOutcome, number>;
  /** HTTP attempts, by status ("200", "429", ...) or "network" when no answer came. */
  readonly http: Record<string, number>;
  /** HTTP attempts in all (the sum of `http`). */
  attempts: number;
  /** Attempts that were retries (a call's second and later). */
  retries: number;
  inputTokens: number;
  outputTokens: number;
  /** Cost in micro-dollars (1e-6 USD; fractional), from the price table; 0 for local minds. */
  costMicroUsd: number;
  /** False when the mind's model has no known price (its cost counts 0). */
  priced: boolean;
  /** Sum of successful chat calls' latency (÷ requests.ok is the mean). */
  latencyMsSum: number;
}

/** Distinct statuses kept per mind (the rest count as "other"): a server picks its statuses. */
const STATUSES_KEPT = 32;

/** Counts per mind, shared by every MindClient of the node. */
export class MindCounters {
  readonly #minds = new Map<string, MindCount>();
  readonly #mindsMax: number;

  /** `mindsMax` bounds the minds counted; beyond it, new names count under "(other)". */
  constructor(mindsMax = 256) {
    this.#mindsMax = mindsMax;
  }

  /** The counts of `mind` (made at first use). */
  of(mind: string): MindCount {
    const found = this.#minds.get(mind);
    if (found !== undefined) return found;
    const name = this.#minds.size >= this.#mindsMax ? "(other)" : mind;
    const existing = this.#minds.get(name);
    if (existing !== undefined) return existing;
    const fresh: MindCount = {
      requests: outcomes(), embeds: outcomes(), http: {}, attempts: 0, retries: 0,
      inputTokens: 0, outputTokens: 0, costMicroUsd: 0, priced: true, latencyMsSum: 0,
    };
    this.#minds.set(name, fresh);
    return fresh;
  }

  /** Counts one HTTP attempt of `mind`. */
  attempt(mind: string, status: number | "network"): void {
    const count = this.of(mind);
    count.attempts++;
    let key = String(status);
    if (count.http[key] === undefined && Object.keys(count.http).length >= STATUSES_KEPT) key = "other";
    count.http[key] = (count.http[key] ?? 0) + 1;
  }

  /** Every mind counted, by name. */
  entries(): [string, MindCount][] {
    return [...this.#minds.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
}

function outcomes(): Record<MindOutcome, number> {
  return Object.fromEntries(MIND_OUTCOMES.map((o) => [o, 0])) as Record<MindOutcome, number>;
}

/**
 * Registers the minds' metrics, read from `counters` at each scrape:
 *   pk_mind_requests_total{mind,outcome}        chat calls by outcome (ok, timeout, rate-limited, ...)
 *   pk_mind_embed_requests_total{mind,outcome}  embedding calls by outcome
 *   pk_mind_attempts_total{mind,status}         HTTP attempts by status ("network": no answer)
 *   pk_mind_retries_total{mind}                 attempts that were retries
 *   pk_mind_tokens_total{mind,direction}        tokens in and out, as the provider counted them
 *   pk_mind_cost_usd_total{mind}                USD, from the price table (0 for local minds)
 *   pk_mind_priced{mind}                        1 when the model's price is known, 0 when its cost counts 0
 *   pk_mind_latency_seconds_total{mind}         summed latency of successful chat calls
 */
export function mindMetrics(counters: MindCounters, registry: Registry): void {
  const registers = [registry];
  const perMind = (name: string, help: string, value: (count: MindCount) => number): void => {
    new Counter({
      name, help, labelNames: ["mind"] as const, registers,
      collect() {
        this.reset();
        for (const [mind, count] of counters.entries()) this.inc({ mind }, value(count));
      },
    });
  };
  new Counter({
    name: "pk_mind_requests_total",
    help: "Chat calls to each mind, by outcome",
    labelNames: ["mind", "outcome"] as const,
    registers,
    collect() {
      this.reset();
      for (const [mind, count] of counters.entries()) for (const outcome of MIND_OUTCOMES) this.inc({ mind, outcome }, count.requests[outcome]);
    },
  });
  new Counter({
    name: "pk_mind_embed_requests_total",
    help: "Embedding calls to each mind, by outcome",
    labelNames: ["mind", "outcome"] as const,
    registers,
    collect() {
      this.reset();
      for (const [mind, count] of counters.entries()) {
        for (const outcome of MIND_OUTCOMES) if (count.embeds[outcome] > 0) this.inc({ mind, outcome }, count.embeds[outcome]);
      }
    },
  });
  new Counter({
    name: "pk_mind_attempts_total",
    help: "HTTP attempts to each mind, by status (network: no answer)",
    labelNames: ["mind", "status"] as const,
    registers,
    collect() {
      this.reset();
      for (const [mind, count] of counters.entries()) for (const [status, n] of Object.entries(count.http)) this.inc({ mind, status }, n);
    },
  });
  perMind("pk_mind_retries_total", "HTTP attempts to each mind that were retries (429, 5xx, no connection)", (c) => c.retries);
  new Counter({
    name: "pk_mind_tokens_total",
    help: "Tokens each mind read (in) and wrote (out), as its provider counted them",
    labelNames: ["mind", "direction"] as const,
    registers,
    collect() {
      this.reset();
      for (const [mind, count] of counters.entries()) {
        this.inc({ mind, direction: "in" }, count.inputTokens);
        this.inc({ mind, direction: "out" }, count.outputTokens);
      }
    },
  });
  perMind("pk_mind_cost_usd_total", "What each mind's tokens cost in USD, from the price table (local minds and unpriced models count 0)", (c) => c.costMicroUsd / 1e6);
  perMind("pk_mind_latency_seconds_total", "Summed latency of each mind's successful chat calls", (c) => c.latencyMsSum / 1000);
  new Gauge({
    name: "pk_mind_priced",
    help: "1 when the mind's model has a known price, 0 when its cost is unknown (counted as 0)",
    labelNames: ["mind"] as const,
    registers,
    collect() {
      this.reset();
      for (const [mind, count] of counters.entries()) this.set({ mind }, count.priced ? 1 : 0);
    },
  });
}
