// `npm run bench -- report [--in DIR] [--out FILE]`: turns the benchmarks' saved JSON
// (bench-results/NAME.json, written by bench/run.ts on every run) into one self-contained HTML
// page — inline CSS and SVG, no script, no external resource — with p-kernel side by side with
// the peers a benchmark measured (etcd in raft, serf in swim) wherever its JSON holds both.
//
// A comparison is found by shape, not by benchmark name: an object with a p-kernel key ("pk" or
// "pkernel") and a peer key ("etcd", "serf") whose values hold numbers. An array of such objects
// is a series (x: their "clients", "nodes", "members", "size" or "rounds", else their position)
// and becomes one line chart per measure; a single one becomes paired bars per measure. Every
// string from the files is escaped; a file that is not a saved run is listed as skipped.
import { readdirSync, readFileSync, statSync, writeFileSync, mkdirSync, renameSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

export const REPORT_DEFAULTS = Object.freeze({
  /** Saved runs read at most. */
  filesMax: 200,
  /** Bytes of one saved run read at most. */
  fileBytesMax: 16 * 1024 * 1024,
  /** Measures charted per comparison at most. */
  measuresMax: 8,
  /** Points of one series at most. */
  pointsMax: 64,
  /** Rows of one benchmark's key-figures table at most. */
  figuresMax: 40,
  /** Depth of the JSON walked for comparisons and figures. */
  depthMax: 8,
});

const SELF_KEYS = ["pk", "pkernel"] as const;
const PEER_KEYS = ["etcd", "serf"] as const;
const X_KEYS = ["clients", "nodes", "members", "size", "rounds"] as const;
const COLOURS = { self: "#2563eb", peer: "#ea580c" };

export interface SavedRun {
  readonly bench: string;
  readonly args: readonly string[];
  readonly savedAt: string;
  readonly result: unknown;
}

export interface Comparison {
  /** Where in the result: "levels", "failover", "" (the top). */
  readonly path: string;
  readonly peer: string;
  readonly selfKey: string;
  /** A series (points along x) or a single pair (one point). */
  readonly kind: "series" | "single";
  readonly xName: string | undefined;
  readonly points: ReadonlyArray<{ readonly x: string; readonly self: ReadonlyMap<string, number>; readonly peer: ReadonlyMap<string, number> }>;
  /** Measures both sides have, in first-seen order (at most measuresMax). */
  readonly measures: readonly string[];
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The finite numbers in `value` by dotted path (arrays skipped), down to `depth` levels. */
export function numbersOf(value: unknown, prefix = "", depth = 3, out = new Map<string, number>()): Map<string, number> {
  if (typeof value === "number" && Number.isFinite(value)) {
    out.set(prefix === "" ? "value" : prefix, value);
    return out;
  }
  if (!isObject(value) || depth === 0) return out;
  for (const [key, child] of Object.entries(value)) numbersOf(child, prefix === "" ? key : `${prefix}.${key}`, depth - 1, out);
  return out;
}

function pairOf(value: unknown): { selfKey: string; peer: string } | undefined {
  if (!isObject(value)) return undefined;
  const selfKey = SELF_KEYS.find((k) => k in value);
  const peer = PEER_KEYS.find((k) => k in value);
  return selfKey === undefined || peer === undefined ? undefined : { selfKey, peer };
}

function commonMeasures(points: Comparison["points"]): string[] {
  const seen: string[] = [];
  for (const p of points) for (const key of p.self.keys()) if (p.peer.has(key) && !seen.includes(key)) seen.push(key);
  return seen.slice(0, REPORT_DEFAULTS.measuresMax);
}

/** Every p-kernel-versus-peer comparison in a benchmark's result. */
export function findComparisons(result: unknown): Comparison[] {
  const found: Comparison[] = [];
  const walk = (value: unknown, path: string, depth: number): void => {
    if (depth > REPORT_DEFAULTS.depthMax) return;
    if (Array.isArray(value)) {
      const pairs = value.map(pairOf);
      const first = pairs[0];
      if (first !== undefined && pairs.every((p) => p !== undefined && p.selfKey === first.selfKey && p.peer === first.peer)) {
        const items = value.slice(0, REPORT_DEFAULTS.pointsMax) as Record<string, unknown>[];
        const xName = X_KEYS.find((k) => items.every((item) => typeof item[k] === "number" || typeof item[k] === "string"));
        const points = items.map((item, i) => ({
          x: xName === undefined ? String(i + 1) : String(item[xName]),
          self: numbersOf(item[first.selfKey]), peer: numbersOf(item[first.peer]),
        }));
        const measures = commonMeasures(points);
        if (measures.length > 0) found.push({ path, peer: first.peer, selfKey: first.selfKey, kind: "series", xName, points, measures });
        return;
      }
      value.slice(0, REPORT_DEFAULTS.pointsMax).forEach((item, i) => walk(item, `${path}[${i}]`, depth + 1));
      return;
    }
    if (!isObject(value)) return;
    const pair = pairOf(value);
    if (pair !== undefined) {
      const points = [{ x: "", self: numbersOf(value[pair.selfKey]), peer: numbersOf(value[pair.peer]) }];
      const measures = commonMeasures(points);
      if (measures.length > 0) found.push({ path, peer: pair.peer, selfKey: pair.selfKey, kind: "single", xName: undefined, points, measures });
    }
    for (const [key, child] of Object.entries(value)) {
      if (pair !== undefined && (key === pair.selfKey || key === pair.peer)) continue;
      walk(child, path === "" ? key : `${path}.${key}`, depth + 1);
    }
  };
  walk(result, "", 0);
  return found;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" })[c] ?? c);
}

/** A number for people: 3 significant digits, thousands grouped. */
export function formatNumber(x: number): string {
  if (x === 0) return "0";
  const abs = Math.abs(x);
  if (abs >= 1000) return Math.round(x).toLocaleString("en-US");
  if (abs >= 100) return x.toFixed(0);
  if (abs >= 10) return x.toFixed(1);
  if (abs >= 1) return x.toFixed(2);
  return x.toPrecision(2);
}

function niceMax(x: number): number {
  if (!(x > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(x));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= x) return step * power;
  return 10 * power;
}

function label(selfKey: string): string {
  return selfKey === "pk" || selfKey === "pkernel" ? "p-kernel" : selfKey;
}

/** One line chart: a measure along the series, p-kernel and the peer. */
function lineChart(c: Comparison, measure: string): string {
  const width = 420;
  const height = 220;
  const m = { left: 56, right: 12, top: 28, bottom: 36 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const values = c.points.flatMap((p) => [p.self.get(measure), p.peer.get(measure)]).filter((v): v is number => v !== undefined);
  const top = niceMax(Math.max(0, ...values));
  const x = (i: number): number => m.left + (c.points.length === 1 ? w / 2 : (i * w) / (c.points.length - 1));
  const y = (v: number): number => m.top + h - (Math.max(0, v) / top) * h;
  const parts: string[] = [];
  for (let t = 0; t <= 4; t++) {
    const v = (top * t) / 4;
    parts.push(`<line x1="${m.left}" x2="${m.left + w}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e5e7eb"/>`);
    parts.push(`<text x="${m.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" font-size="11" fill="#6b7280">${escapeHtml(formatNumber(v))}</text>`);
  }
  c.points.forEach((p, i) => {
    parts.push(`<text x="${x(i).toFixed(1)}" y="${m.top + h + 16}" text-anchor="middle" font-size="11" fill="#374151">${escapeHtml(p.x)}</text>`);
  });
  parts.push(`<text x="${m.left + w / 2}" y="${height - 4}" text-anchor="middle" font-size="11" fill="#6b7280">${escapeHtml(c.xName ?? "run")}</text>`);
  for (const [side, colour, name] of [["self", COLOURS.self, label(c.selfKey)], ["peer", COLOURS.peer, c.peer]] as const) {
    const pts = c.points.map((p, i) => ({ i, v: p[side].get(measure) })).filter((p): p is { i: number; v: number } => p.v !== undefined);
    if (pts.length > 1) parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts.map((p) => `${x(p.i).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ")}"/>`);
    for (const p of pts) {
      parts.push(`<circle cx="${x(p.i).toFixed(1)}" cy="${y(p.v).toFixed(1)}" r="3.5" fill="${colour}"><title>${escapeHtml(`${name}, ${c.xName ?? "run"} ${c.points[p.i]?.x ?? ""}: ${formatNumber(p.v)}`)}</title></circle>`);
    }
  }
  parts.push(`<text x="${m.left}" y="16" font-size="13" font-weight="600" fill="#111827">${escapeHtml(measure)}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(`${measure}: ${label(c.selfKey)} and ${c.peer}`)}">${parts.join("")}</svg>`;
}

/** Paired bars, one pair per measure, each pair on its own scale (the measures have different units). */
function barChart(c: Comparison): string {
  const p = c.points[0];
  if (p === undefined) return "";
  const rowH = 34;
  const width = 560;
  const labelW = 170;
  const barW = 300;
  const height = 24 + rowH * c.measures.length;
  const parts: string[] = [];
  c.measures.forEach((measure, i) => {
    const a = p.self.get(measure) ?? 0;
    const b = p.peer.get(measure) ?? 0;
    const top = Math.max(Math.abs(a), Math.abs(b)) || 1;
    const y0 = 20 + i * rowH;
    const name = measure.length > 26 ? `${measure.slice(0, 25)}…` : measure;
    parts.push(`<text x="${labelW - 8}" y="${y0 + 16}" text-anchor="end" font-size="12" fill="#111827">${escapeHtml(name)}<title>${escapeHtml(measure)}</title></text>`);
    for (const [j, v, colour, name] of [[0, a, COLOURS.self, label(c.selfKey)], [1, b, COLOURS.peer, c.peer]] as const) {
      const len = (Math.abs(v) / top) * barW;
      const y = y0 + j * 13;
      parts.push(`<rect x="${labelW}" y="${y}" width="${len.toFixed(1)}" height="11" fill="${colour}"><title>${escapeHtml(`${name}: ${formatNumber(v)}`)}</title></rect>`);
      parts.push(`<text x="${(labelW + len + 4).toFixed(1)}" y="${y + 10}" font-size="11" fill="#374151">${escapeHtml(formatNumber(v))}</text>`);
    }
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(`${c.path || "result"}: ${label(c.selfKey)} and ${c.peer}`)}">${parts.join("")}</svg>`;
}

function legend(c: Comparison): string {
  return `<p class="legend"><span style="background:${COLOURS.self}"></span>${escapeHtml(label(c.selfKey))} <span style="background:${COLOURS.peer}"></span>${escapeHtml(c.peer)}</p>`;
}

/** The numbers at the top levels of a result, for the table under the charts. */
function keyFigures(result: unknown): Array<[string, number]> {
  return [...numbersOf(result, "", 2)].slice(0, REPORT_DEFAULTS.figuresMax);
}

/** The whole page. */
export function renderReport(runs: readonly SavedRun[], skipped: readonly string[], generatedAt: string): string {
  const sections = runs.map((run) => {
    const comparisons = findComparisons(run.result);
    const charts = comparisons.map((c) => {
      const title = `${label(c.selfKey)} and ${c.peer}${c.path === "" ? "" : ` — ${c.path}`}`;
      const body = c.kind === "series" ? `<div class="charts">${c.measures.map((m) => lineChart(c, m)).join("")}</div>` : barChart(c);
      return `<h3>${escapeHtml(title)}</h3>${legend(c)}${body}`;
    }).join("");
    const figures = keyFigures(run.result);
    const table = figures.length === 0 ? "" : `<details><summary>key figures (${figures.length})</summary><table>${figures.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td class="n">${escapeHtml(formatNumber(v))}</td></tr>`).join("")}</table></details>`;
    const note = comparisons.length === 0 ? "<p class=\"muted\">no peer measured in this run: its figures alone</p>" : "";
    return `<section id="${escapeHtml(run.bench)}"><h2>${escapeHtml(run.bench)}</h2><p class="muted">run ${escapeHtml(run.savedAt)}${run.args.length === 0 ? "" : `, arguments <code>${escapeHtml(run.args.join(" "))}</code>`}</p>${note}${charts}${table}</section>`;
  }).join("\n");
  const skippedText = skipped.length === 0 ? "" : `<p class="muted">skipped: ${skipped.map(escapeHtml).join("; ")}</p>`;
  const index = runs.map((run) => `<a href="#${escapeHtml(run.bench)}">${escapeHtml(run.bench)}</a>`).join(" · ");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>p-kernel benchmarks</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1320px;padding:0 1rem;color:#111827}
h1{font-size:1.5rem}h2{border-bottom:1px solid #e5e7eb;padding-bottom:.2rem;margin-top:2.2rem}h3{font-size:1rem;margin:1.2rem 0 .2rem}
.muted{color:#6b7280}.charts{display:flex;flex-wrap:wrap;gap:.5rem}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .8rem;vertical-align:-1px}.legend span:first-child{margin-left:0}
table{border-collapse:collapse;margin:.4rem 0}td{padding:.1rem .8rem .1rem 0;border-bottom:1px solid #f3f4f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f3f4f6;padding:0 .25rem}
</style></head><body>
<h1>p-kernel benchmarks</h1>
<p class="muted">${runs.length} saved run${runs.length === 1 ? "" : "s"}, page made ${escapeHtml(generatedAt)} by <code>npm run bench -- report</code>; each run as <code>npm run bench -- NAME</code> left it in bench-results/. ${index}</p>
${skippedText}
${sections}
</body></html>
`;
}

/** A saved run read from a file, or why it was skipped. */
export function readSavedRun(path: string): SavedRun | string {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > REPORT_DEFAULTS.fileBytesMax) return `${path}: over ${REPORT_DEFAULTS.fileBytesMax} bytes`;
    text = readFileSync(path, "utf8");
  } catch (error) {
    return `${path}: ${(error as Error).message}`;
  }
  let value: Json;
  try {
    value = JSON.parse(text) as Json;
  } catch (error) {
    return `${path}: not JSON (${(error as Error).message})`;
  }
  if (!isObject(value) || typeof value["bench"] !== "string" || !("result" in value)) return `${path}: not a saved run (bench/run.ts writes {bench, args, savedAt, result})`;
  const args = Array.isArray(value["args"]) ? value["args"].filter((a): a is string => typeof a === "string") : [];
  return { bench: value["bench"], args, savedAt: typeof value["savedAt"] === "string" ? value["savedAt"] : "?", result: value["result"] };
}

export async function run(args: string[]): Promise<unknown> {
  const here = dirname(fileURLToPath(import.meta.url));
  const { values } = parseArgs({ args, options: { in: { type: "string" }, out: { type: "string" } }, strict: true });
  const folder = resolve(values.in ?? process.env["PK_BENCH_RESULTS"] ?? join(here, "..", "bench-results"));
  let files: string[];
  try {
    files = readdirSync(folder).filter((f) => f.endsWith(".json")).sort().slice(0, REPORT_DEFAULTS.filesMax);
  } catch (error) {
    throw new Error(`no saved runs in ${folder} (${(error as Error).message}): run a benchmark first, e.g. npm run bench -- raft`);
  }
  const runs: SavedRun[] = [];
  const skipped: string[] = [];
  for (const file of files) {
    const saved = readSavedRun(join(folder, file));
    if (typeof saved === "string") skipped.push(saved);
    else runs.push(saved);
  }
  const out = resolve(values.out ?? join(folder, "report.html"));
  mkdirSync(dirname(out), { recursive: true });
  const html = renderReport(runs, skipped, new Date().toISOString());
  writeFileSync(`${out}.tmp`, html);
  renameSync(`${out}.tmp`, out);
  return {
    html: out, bytes: Buffer.byteLength(html),
    benchmarks: runs.map((r) => ({ bench: r.bench, savedAt: r.savedAt, comparisons: findComparisons(r.result).map((c) => `${c.path || "result"}: ${label(c.selfKey)} vs ${c.peer} (${c.kind}, ${c.measures.length} measures)`) })),
    skipped,
  };
}
