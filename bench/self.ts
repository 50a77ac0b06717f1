// `npm run bench -- self [--quick] [--sizes 10000,100000] [--queries N (500)] [--skip-ann]`: the memory's
// search (issue 14, acceptance 4; ADR 014). Prints one JSON object; progress goes to stderr.
//
// 1. embed: embeddings per second of src/core/self/embed.ts, for short texts (the retrieval set's
//    memories, ~50 characters) and ~500-character texts (synthetic memories joined), the median of
//    5 timed rounds after a warm-up.
// 2. quality: test/testdata/self-retrieval.json — memories, distractors sharing their vocabulary,
//    and queries that name the one memory they look for. recall@1/@5/@10 and MRR (over the top 10)
//    for hybrid (the default fusion), BM25 alone, the vector alone, and hybrid with reciprocal-rank
//    fusion (the alternative the default was chosen over); for all queries and by split (tune:
//    what the weights and the concept table were tuned on; holdout: written after both were
//    frozen) and style (paraphrase: different words throughout; reworded: a key word kept).
// 3. ann, per size (default 10,000 and 100,000; --quick: 10,000 and 30,000): that many synthetic
//    memories (sentences from templates and a vocabulary, seeded, so every run sees the same
//    texts), embedded with the real embed(). Queries: half are memories reworded (a word dropped,
//    a word swapped for another of its slot), half fresh sentences of the same generator.
//    - exact: MemoryIndex's flat scan (no ANN) as the truth, and its queries per second (a sample
//      of 30 queries at sizes above 50,000);
//    - hnsw: src/adapters/vector-index.ts (usearch, the shipped parameters) built by adding one
//      vector at a time on one thread, as MemoryIndex.work() does (ms per vector); then recall@10
//      against exact (an answer counts when its inner product reaches the exact 10th best's, so
//      ties between equal texts do not count against it) and queries per second, one thread; the
//      time to save it (with its checksum) and load it again, and the file's size;
//    - index: MemoryIndex over the same memories with that HNSW attached (path "ann" above
//      exactMax) — vector and hybrid queries per second end to end (query embedding included),
//      and the vector path's recall@10 against exact.
// 4. chat overhead (bench/self-cluster.ts measureChatOverhead, under "chat"): one real node with a
//    local model of fixed latency (50 ms), 2,000 memories, 300 turns through POST /v1/chat; p50/p99
//    of the client's time minus that latency, and of the node's own (turn minus time in the mind).
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { EMBED_DIMS, EMBED_VERSION, embed } from "../src/core/self/embed.ts";
import { MemoryIndex, annKey, type SearchMode } from "../src/core/self/search.ts";
import { createRng, type Rng } from "../src/core/util/rng.ts";
import { VECTOR_INDEX_DEFAULTS, loadVectorIndex, openVectorIndex, usearchStatus, type VectorIndex } from "../src/adapters/vector-index.ts";
import { measureChatOverhead } from "./self-cluster.ts";

const SET_PATH = fileURLToPath(new URL("../test/testdata/self-retrieval.json", import.meta.url));

export interface RetrievalSet {
  readonly memories: readonly { readonly id: string; readonly text: string }[];
  readonly distractors: readonly { readonly id: string; readonly text: string }[];
  readonly queries: readonly { readonly query: string; readonly relevant: string; readonly split: string; readonly style: string }[];
}

export function loadRetrievalSet(): RetrievalSet {
  return JSON.parse(readFileSync(SET_PATH, "utf8")) as RetrievalSet;
}

export interface Quality {
  readonly queries: number;
  readonly recall1: number;
  readonly recall5: number;
  readonly recall10: number;
  readonly mrr: number;
}

/** recall@1/5/10 and MRR@10 of `index` over `queries`, in one mode. */
export function quality(index: MemoryIndex, queries: RetrievalSet["queries"], mode: SearchMode): Quality {
  let r1 = 0;
  let r5 = 0;
  let r10 = 0;
  let mrr = 0;
  for (const q of queries) {
    const rank = index.search(q.query, 10, { mode }).findIndex((h) => h.id === q.relevant);
    if (rank < 0) continue;
    if (rank === 0) r1++;
    if (rank < 5) r5++;
    r10++;
    mrr += 1 / (rank + 1);
  }
  const n = Math.max(1, queries.length);
  const round = (x: number): number => Math.round((x / n) * 1000) / 1000;
  return { queries: queries.length, recall1: round(r1), recall5: round(r5), recall10: round(r10), mrr: round(mrr) };
}

/** An index over the set's memories and distractors. */
export function retrievalIndex(set: RetrievalSet, config: ConstructorParameters<typeof MemoryIndex>[0] = {}): MemoryIndex {
  const index = new MemoryIndex(config);
  for (const m of [...set.memories, ...set.distractors]) index.add(m.id, m.text);
  return index;
}

// ---- synthetic memories ----------------------------------------------------------------------

const PEOPLE = ["Emma", "Leo", "Sam", "Priya", "Tom", "Grandma", "Dad", "Mum", "Marcus", "Anna", "Olivia", "Ben", "Kate", "Ahmed", "Sara", "Jake", "Helen", "Aisha", "Daniel", "Fatima", "Chris", "Lucy", "Nikhil", "Rachel", "Yusuf", "Hannah", "my daughter", "my son", "my wife", "my husband", "my partner", "my brother", "my sister", "our neighbour", "my boss", "my friend"];
const EVENTS = ["piano lesson", "football practice", "dentist appointment", "swimming class", "school play", "parents' evening", "book club", "birthday party", "doctor's appointment", "violin exam", "team meeting", "yoga class", "haircut", "job interview", "flight", "train journey", "dinner reservation", "vet visit", "car service", "boiler check", "chess club", "choir rehearsal", "climbing session", "pottery class", "driving lesson", "quiz night", "band practice", "parkrun", "coffee catch-up", "wedding"];
const DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "the weekend", "the 3rd", "the 14th", "the 22nd", "next week", "the first of the month", "every other Sunday", "tomorrow"];
const PLACES = ["at the leisure centre", "in town", "at the library", "at the community hall", "at school", "at the surgery", "at the station", "online", "at home", "at the pub", "at the office", "at the park", "in the church hall", "at the sports centre", "at the hospital"];
const DEVICES = ["Raspberry Pi", "NAS", "router", "mini PC", "laptop", "printer", "smart speaker", "3D printer", "UPS", "switch", "access point", "server", "camera", "thermostat", "doorbell", "tablet", "desktop", "weather station", "Zigbee hub", "media player"];
const ROOMS = ["garage", "loft", "hallway", "kitchen", "living room", "garden office", "spare room", "basement", "shed", "bedroom", "study", "utility room"];
const PROBLEMS = ["runs hot", "drops off the network", "reboots at night", "needs a firmware update", "makes a rattling noise", "is running out of space", "loses its settings", "gets slow", "needs a new power supply", "stops responding", "fills its disk with logs", "has a flaky cable"];
const SEASONS = ["in summer", "in winter", "after a power cut", "every few weeks", "when it rains", "under load", "since the last update", "when the heating is on", "at weekends", "on Mondays"];
const FOODS = ["Thai curry", "sourdough bread", "lasagne", "porridge", "sushi", "pizza", "chilli", "roast chicken", "pad thai", "risotto", "tacos", "fish and chips", "ramen", "falafel", "cheesecake", "apple crumble", "broccoli", "coriander", "mushrooms", "olives", "spicy food", "oat milk", "dark chocolate", "peanuts"];
const LIKES = ["loves", "hates", "can't eat", "is allergic to", "always orders", "never touches", "wants to learn to cook", "asked for"];
const THINGS = ["the spare key", "the passports", "the Christmas decorations", "the tool box", "the camping gear", "the insurance papers", "the bike pump", "the first aid kit", "the spare bulbs", "the birthday presents", "the old photos", "the travel adapter", "the warranty cards", "the car manual", "the fuse wire", "the paint tins"];
const SPOTS = ["in the top drawer of the desk", "in the loft in the green box", "under the stairs", "in the garage on the left shelf", "in the blue folder", "behind the boiler", "in the kitchen cupboard", "in the shed", "in the glovebox", "with our neighbour", "in the spare room wardrobe", "in the sideboard"];
const BILLS = ["rent", "council tax", "broadband", "phone contract", "gym membership", "car insurance", "home insurance", "energy bill", "TV licence", "water bill", "streaming subscriptions", "pension contribution"];
const AMOUNTS = ["20", "35", "48", "60", "89", "120", "140", "250", "420", "1,450"];
const WHEN_PAID = ["on the 1st", "on the 28th", "every month", "once a year", "by direct debit", "in January", "every quarter", "on payday"];
const NODES = ["node 1", "node 2", "node 3", "node 4", "node 5", "the GPU node", "the Raft leader", "the oldest node", "the Pi cluster", "the backup node"];
const ACTIONS = ["was moved to the rack", "lost its SSD", "now boots from USB", "runs the Minecraft server", "serves the dashboard", "holds the model file", "draws 180 W under load", "was updated last Saturday", "needs a new fan", "runs Home Assistant", "keeps the photo backups", "joined the cluster last month"];

const TEMPLATES: ((r: Rng) => string)[] = [
  (r) => `${cap(pick(r, PEOPLE))}'s ${pick(r, EVENTS)} is on ${pick(r, DAYS)} at ${1 + r.int(12)}${r.chance(0.5) ? ":30" : ""} ${pick(r, PLACES)}.`,
  (r) => `The ${pick(r, DEVICES)} in the ${pick(r, ROOMS)} ${pick(r, PROBLEMS)} ${pick(r, SEASONS)}.`,
  (r) => `${cap(pick(r, PEOPLE))} ${pick(r, LIKES)} ${pick(r, FOODS)}${r.chance(0.4) ? `, but not ${pick(r, FOODS)}` : ""}.`,
  (r) => `We keep ${pick(r, THINGS)} ${pick(r, SPOTS)}.`,
  (r) => `The ${pick(r, BILLS)} is ${pick(r, AMOUNTS)} pounds and goes out ${pick(r, WHEN_PAID)}.`,
  (r) => `${cap(pick(r, NODES))} ${pick(r, ACTIONS)}${r.chance(0.5) ? ` and ${pick(r, ACTIONS)}` : ""}.`,
  (r) => `Remember that ${pick(r, PEOPLE)} has a ${pick(r, EVENTS)} ${pick(r, PLACES)} on ${pick(r, DAYS)}, so ${pick(r, PEOPLE)} needs a lift.`,
  (r) => `${cap(pick(r, PEOPLE))} moved ${pick(r, THINGS)} ${pick(r, SPOTS)} after the ${pick(r, EVENTS)}.`,
  (r) => `The ${pick(r, DEVICES)} that ${pick(r, PEOPLE)} uses ${pick(r, PROBLEMS)}; ${pick(r, NODES)} ${pick(r, ACTIONS)} instead.`,
];

function pick<T>(r: Rng, list: readonly T[]): T {
  return list[r.int(list.length)] as T;
}

function cap(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** n synthetic memories, the same for the same seed. */
export function syntheticMemories(n: number, seed = 14): string[] {
  const r = createRng(seed);
  return Array.from({ length: n }, () => pick(r, TEMPLATES)(r));
}

/** Queries over `memories`: half reworded memories (a word dropped, one replaced by a generated word), half fresh sentences. */
export function syntheticQueries(memories: readonly string[], n: number, seed = 41): string[] {
  const r = createRng(seed);
  const fresh = syntheticMemories(n, seed + 1);
  return Array.from({ length: n }, (_, i) => {
    if (i % 2 === 1) return fresh[i] as string;
    const words = (memories[r.int(memories.length)] as string).split(" ");
    if (words.length > 3) words.splice(r.int(words.length), 1);
    const other = (fresh[r.int(fresh.length)] as string).split(" ");
    words[r.int(words.length)] = other[r.int(other.length)] as string;
    return words.join(" ");
  });
}

// ---- measuring ------------------------------------------------------------------------------

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function perSecond(rounds: number, items: number, fn: () => void): number {
  fn(); // warm-up
  const rates: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    fn();
    rates.push(items / ((performance.now() - t0) / 1000));
  }
  return Math.round(median(rates));
}

function log(message: string): void {
  process.stderr.write(`bench self: ${message}\n`);
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;

function embedSpeed(set: RetrievalSet): unknown {
  const short = [...set.memories, ...set.distractors].map((m) => m.text);
  const synthetic = syntheticMemories(4_000, 7);
  const long: string[] = [];
  for (let i = 0; long.length < 400; i += 8) long.push(synthetic.slice(i, i + 12).join(" ").slice(0, 500));
  const shortChars = short.reduce((s, t) => s + t.length, 0) / short.length;
  const longChars = long.reduce((s, t) => s + t.length, 0) / long.length;
  return {
    dims: EMBED_DIMS,
    version: EMBED_VERSION,
    short: { chars: Math.round(shortChars), perSecond: perSecond(5, short.length, () => short.forEach((t) => embed(t))) },
    long: { chars: Math.round(longChars), perSecond: perSecond(5, long.length, () => long.forEach((t) => embed(t))) },
  };
}

function retrievalQuality(set: RetrievalSet): unknown {
  const index = retrievalIndex(set);
  const rrf = retrievalIndex(set, { config: { fusion: "rrf" } });
  const groups: Record<string, RetrievalSet["queries"][number][]> = { all: [...set.queries] };
  for (const q of set.queries) {
    for (const key of [q.split, q.style, `${q.split}/${q.style}`]) (groups[key] ??= []).push(q);
  }
  const out: Record<string, unknown> = {};
  for (const [name, queries] of Object.entries(groups)) {
    out[name] = {
      hybrid: quality(index, queries, "hybrid"),
      bm25: quality(index, queries, "bm25"),
      vector: quality(index, queries, "vector"),
      hybridRrf: quality(rrf, queries, "hybrid"),
    };
  }
  return { memories: set.memories.length, distractors: set.distractors.length, queries: set.queries.length, ...out };
}

/** recall@10 of `found` against the exact top 10, tie-aware: a found id whose exact score reaches the 10th best's counts. */
function recallAt10(found: readonly string[], exact: readonly { id: string; score: number }[], scoreOf: (id: string) => number): number {
  if (exact.length === 0) return 1;
  const floor = (exact[exact.length - 1] as { score: number }).score - 1e-6;
  let hit = 0;
  for (const id of found.slice(0, exact.length)) if (scoreOf(id) >= floor) hit++;
  return hit / exact.length;
}

async function annAt(size: number, queryCount: number, withAnn: boolean): Promise<unknown> {
  log(`${size}: generating and embedding memories`);
  const texts = syntheticMemories(size);
  const t0 = performance.now();
  const vectors = texts.map((t) => embed(t));
  const embedSeconds = (performance.now() - t0) / 1000;
  const queries = syntheticQueries(texts, queryCount);
  const qv = queries.map((q) => embed(q));

  // Exact: MemoryIndex without an ANN (its flat scan).
  const exact = new MemoryIndex({ exactMax: Number.MAX_SAFE_INTEGER });
  texts.forEach((t, i) => exact.add(`m${i}`, t, vectors[i]));
  const truth = qv.map((v) => exact.search("", 10, { mode: "vector", queryVector: v }));
  const exactQueries = Math.min(qv.length, size > 50_000 ? 30 : 200);
  const exactQps = perSecond(3, exactQueries, () => {
    for (let i = 0; i < exactQueries; i++) exact.search("", 10, { mode: "vector", queryVector: qv[i] as Float32Array });
  });
  const scoreOf = (q: Float32Array) => (id: string): number => {
    const v = vectors[Number(id.slice(1))];
    if (v === undefined) return -Infinity;
    let s = 0;
    for (let i = 0; i < v.length; i++) s += (v[i] as number) * (q[i] as number);
    return s;
  };
  const result: Record<string, unknown> = { size, queries: queries.length, embedPerSecond: Math.round(size / embedSeconds), exact: { queriesPerSecond: exactQps } };
  if (!withAnn) return result;

  const opened = openVectorIndex(EMBED_DIMS);
  if (!opened.ok) return { ...result, hnsw: { error: opened.error } };
  const ann: VectorIndex = opened.index;
  // Keys as MemoryIndex makes them, so the same index serves it below (as a saved one would).
  const keys = vectors.map((v, i) => annKey(`m${i}`, v, 0));
  const idOfKey = new Map(keys.map((key, i) => [key, `m${i}`]));
  log(`${size}: building HNSW one vector at a time`);
  const tb = performance.now();
  for (let i = 0; i < size; i++) {
    ann.add(keys[i] as number, vectors[i] as Float32Array);
    if (i > 0 && i % 20_000 === 0) log(`${size}: ${i} added, ${((performance.now() - tb) / i).toFixed(3)} ms per vector`);
  }
  const buildSeconds = (performance.now() - tb) / 1000;
  let recall = 0;
  qv.forEach((v, i) => {
    const found = ann.search(v, 10).map((h) => idOfKey.get(h.key) ?? "");
    recall += recallAt10(found, truth[i] as { id: string; score: number }[], scoreOf(v));
  });
  const annQps = perSecond(3, qv.length, () => qv.forEach((v) => ann.search(v, 10)));
  const dir = mkdtempSync(join(tmpdir(), "pk-bench-self-"));
  let disk: Record<string, unknown>;
  try {
    const path = join(dir, "memory.usearch");
    const ts = performance.now();
    const saved = ann.save(path);
    const saveMs = performance.now() - ts;
    const tl = performance.now();
    const reloaded = loadVectorIndex(path, EMBED_DIMS);
    const loadMs = performance.now() - tl;
    disk = saved.ok && reloaded.ok
      ? { megabytes: Math.round(statSync(path).size / 1e5) / 10, saveMs: Math.round(saveMs), loadMs: Math.round(loadMs) }
      : { error: saved.ok ? (reloaded as { error: string }).error : saved.error };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  // MemoryIndex with that HNSW attached: every document is found in it (AnnPort.has), none queued.
  const index = new MemoryIndex({ ann });
  texts.forEach((t, i) => index.add(`m${i}`, t, vectors[i]));
  index.work(Number.MAX_SAFE_INTEGER);
  let indexRecall = 0;
  qv.forEach((v, i) => {
    const found = index.search("", 10, { mode: "vector", queryVector: v }).map((h) => h.id);
    indexRecall += recallAt10(found, truth[i] as { id: string; score: number }[], scoreOf(v));
  });
  const some = queries.slice(0, Math.min(queries.length, 300));
  return {
    ...result,
    hnsw: {
      ...VECTOR_INDEX_DEFAULTS,
      buildMsPerVector: r3((buildSeconds * 1000) / size),
      buildSeconds: Math.round(buildSeconds * 10) / 10,
      recallAt10: r3(recall / qv.length),
      queriesPerSecond: annQps,
      overExact: Math.round((annQps / exactQps) * 10) / 10,
      disk,
    },
    index: {
      path: index.stats().path,
      pendingAfterLoad: index.stats().pendingAnn,
      vectorRecallAt10: r3(indexRecall / qv.length),
      vectorQueriesPerSecond: perSecond(3, some.length, () => some.forEach((q) => index.search(q, 10, { mode: "vector" }))),
      hybridQueriesPerSecond: perSecond(3, some.length, () => some.forEach((q) => index.search(q, 10))),
      exactHybridQueriesPerSecond: perSecond(1, Math.min(some.length, 50), () => some.slice(0, 50).forEach((q) => exact.search(q, 10))),
    },
  };
}

/**
 * The lead's hook for acceptance 4's last line (chat overhead beyond the mind's own time, p50/p99,
 * with a mind of fixed latency): pass it to run() and its result is printed under "chat".
 */
export type ChatOverhead = (options: { quick: boolean }) => Promise<unknown>;

export async function run(args: string[], chatOverhead: ChatOverhead | undefined = measureChatOverhead): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      sizes: { type: "string" },
      queries: { type: "string" },
      "skip-ann": { type: "boolean", default: false },
    },
    strict: true,
  });
  const quick = values.quick === true;
  const sizes = (values.sizes ?? (quick ? "10000,30000" : "10000,100000")).split(",").map(Number);
  const queryCount = Number(values.queries ?? (quick ? 200 : 500));
  if (sizes.some((n) => !Number.isSafeInteger(n) || n < 100 || n > 2_000_000) || !(queryCount >= 10 && queryCount <= 100_000)) {
    throw new Error("--sizes: integers in [100, 2000000]; --queries in [10, 100000]");
  }
  const set = loadRetrievalSet();
  log("embedding speed");
  const embedResult = embedSpeed(set);
  log("retrieval quality");
  const qualityResult = retrievalQuality(set);
  const status = usearchStatus();
  const ann: unknown[] = [];
  for (const size of sizes) ann.push(await annAt(size, queryCount, values["skip-ann"] !== true && status.ok));
  return {
    bench: "self",
    embed: embedResult,
    quality: qualityResult,
    usearch: status.ok ? "loaded" : status.error,
    ann,
    ...(chatOverhead === undefined ? {} : { chat: await chatOverhead({ quick }) }),
  };
}
