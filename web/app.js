// The dashboard. Live from three sources of the node it is served by: GET /v1/status every second
// (members, their vital signs, Raft, mode), the event stream GET /v1/events (the event log, and a
// refresh as soon as a member, the mode or the leader changes) and GET /v1/dashboard every few
// seconds (the snapshot of everything else). It writes only through the routes a user would use:
// /v1/kv/, /v1/chat (streamed), /v1/memory, /v1/infer, /v1/shell. No framework, no build; the
// plots are uPlot's (/vendor/uplot.js, served by the node: no CDN), and the page works without
// them. Everything from the node is shown with textContent, never parsed as HTML: names, keys,
// log lines and answers come from other machines and from models.
const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "pk-token";
/** Bounds of what the page keeps. */
const HISTORY_POINTS = 120;
const EVENTS_KEPT = 200;
const LATENCY_POINTS = 300;
const CHAT_TURNS_KEPT = 50;
/** Members with a vital-signs card (this node first); the table lists them all. */
const VITAL_CARDS_MAX = 32;
const MODES = ["local", "pipeline", "tensor", "dkva", "moe"];
const MODE_COLORS = ["#0969da", "#8250df", "#bf3989", "#1a7f37", "#9a6700"];
const uPlotReady = typeof globalThis.uPlot === "function";

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "className") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  return node;
}

function row(cells, props = {}) {
  return el("tr", props, ...cells.map((c) => (c instanceof Node ? c : el("td", { text: c ?? "-" }))));
}

function td(text, className) {
  return el("td", { text: text ?? "-", className });
}

function fields(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v ?? "-" })]));
}

function empty(body, columns, text) {
  body.replaceChildren(el("tr", {}, el("td", { text, colspan: columns, className: "dim" })));
}

function duration(ms) {
  if (ms === null || ms === undefined) return "never";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1073741824) return `${(n / 1048576).toFixed(1)} MiB`;
  return `${(n / 1073741824).toFixed(2)} GiB`;
}

function pct(x) {
  return x === null || x === undefined ? "-" : `${(100 * x).toFixed(1)}%`;
}

function short(id) {
  return typeof id === "string" ? id.slice(0, 8) : "-";
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body?.error?.message ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function needToken(response) {
  if (response.status !== 401) return false;
  $("auth").hidden = false;
  $("error").textContent = "this node needs the cluster token";
  return true;
}

/** GET a JSON route; undefined (and the error shown) when it fails. */
async function getJson(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  if (needToken(response)) return undefined;
  if (!response.ok) throw new Error(`${path}: ${await errorText(response)}`);
  return await response.json();
}

// ---------------------------------------------------------------------------------------------
// Plots

/** A uPlot chart in `container`, its width following the container's. */
function chart(container, series, options = {}) {
  if (!uPlotReady || container === null) return undefined;
  const width = () => Math.max(120, container.clientWidth || 300);
  const plot = new globalThis.uPlot({
    width: width(), height: options.height ?? 160,
    scales: { x: { time: options.time ?? true } },
    legend: { show: options.legend ?? true, live: false },
    cursor: options.cursor === false ? { show: false } : {},
    axes: options.axes ?? [options.time === false ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] } : {}, { size: 50 }],
    series: [{}, ...series],
  }, [[], ...series.map(() => [])], container);
  addEventListener("resize", () => plot.setSize({ width: width(), height: options.height ?? 160 }));
  return plot;
}

/** A sparkline: one series, no axes, no legend. */
function sparkline(container, color) {
  return chart(container, [{ stroke: color, fill: `${color}22`, width: 1.5, spanGaps: true }], {
    height: 32, legend: false, cursor: false, axes: [{ show: false }, { show: false }],
  });
}

// ---------------------------------------------------------------------------------------------
// Status: members, vital signs, Raft (every second)

const history = new Map(); // member id → { t: [], rss: [], loop: [], load: [] }
const vitalCards = new Map(); // member id → { card, plots }
const commitHistory = { t: [], commit: [] };
let commitPlot;
let lastStatus;

function remember(series, t, value) {
  series.t.push(t);
  for (const [key, v] of Object.entries(value)) series[key].push(v);
  if (series.t.length > HISTORY_POINTS) for (const key of Object.keys(series)) series[key].shift();
}

function contributionText(c) {
  if (c === null || c === undefined) return undefined;
  const power = c.power ?? {};
  const source = power.source === "battery" ? `on battery${typeof power.percent === "number" ? ` ${power.percent}%` : ""}${power.charging ? ", charging" : ""}`
    : power.source === "ac" ? "on mains" : undefined;
  return `${c.contributing ? "contributing" : "not contributing"}${c.reason ? `: ${c.reason}` : ""}${source === undefined ? "" : ` (${source})`}`;
}

function vitalCard(member, status) {
  let entry = vitalCards.get(member.id);
  if (entry === undefined) {
    const title = el("h4", {}, el("span", { text: member.name || short(member.id) }), el("span", { className: "state" }));
    const lines = ["rss", "loop", "load"].map((key) => {
      const value = el("span");
      const plot = el("div", { className: "chart" });
      return { key, value, plot, box: el("div", { className: "spark" }, value, plot) };
    });
    const contribution = el("div", { className: "contribution dim" });
    const card = el("div", { className: "card", "data-id": member.id }, title, ...lines.map((l) => l.box), contribution);
    $("vitals").append(card);
    const colors = { rss: "#0969da", loop: "#bf3989", load: "#1a7f37" };
    entry = { card, title, contribution, lines: lines.map((l) => ({ ...l, chart: sparkline(l.plot, colors[l.key]) })) };
    vitalCards.set(member.id, entry);
  }
  entry.card.className = `card state-${member.state}`;
  entry.title.lastChild.textContent = member.id === status.id ? `${member.state} · this node` : member.state;
  entry.title.lastChild.className = `state-${member.state}`;
  const h = history.get(member.id);
  const v = member.vital;
  const labels = {
    rss: v ? `rss ${bytes(v.rssBytes)}` : "rss -",
    loop: v ? `loop ${v.loopDelayP99Ms.toFixed(1)} ms` : "loop -",
    load: v ? `load ${v.load1.toFixed(2)}` : "load -",
  };
  for (const line of entry.lines) {
    line.value.textContent = labels[line.key];
    if (line.chart && h) line.chart.setData([h.t, h[line.key]]);
  }
  const contribution = member.id === status.id ? contributionText(status.contribution) : undefined;
  entry.contribution.textContent = contribution ?? "";
  entry.contribution.hidden = contribution === undefined;
}

function renderStatus(status) {
  lastStatus = status;
  const now = Date.now() / 1000;
  const alive = status.members.filter((m) => m.state === "alive").length;
  $("swarm").textContent = `${alive}/${status.members.length} alive`;
  $("swarm").className = `swarm ${status.mode === "FULL" ? "" : status.mode === "SOLO" ? "solo" : "degraded"}`;
  $("id").textContent = short(status.id);
  $("name").textContent = status.name || "-";
  $("role").textContent = `${status.role} · ${status.raft.state}`;
  $("mode").textContent = status.mode;
  $("mode").className = `mode-${status.mode}`;
  $("uptime").textContent = duration(status.uptimeMs);
  const nameOf = (id) => status.members.find((m) => m.id === id)?.name || short(id);
  $("leader").textContent = status.raft.leader === null ? "none" : nameOf(status.raft.leader);
  $("term").textContent = String(status.raft.term);
  $("regen").textContent = String(status.raft.confEpoch);
  const rows = status.members.map((member) => {
    const raft = member.id === status.raft.leader ? "leader" : status.raft.voters.includes(member.id) ? "voter" : status.raft.learners.includes(member.id) ? "learner" : "-";
    return row([
      td(member.name || "-"), td(short(member.id)), td(member.state, `state-${member.state}`), td(member.role), td(raft), td(member.incarnation),
      td(member.id === status.id ? "self" : duration(member.lastHeardMs)), td(member.addr),
    ], { "data-id": member.id, "data-state": member.state, className: `state-${member.state}` });
  });
  $("members").replaceChildren(...rows);
  const carded = [...status.members].sort((x, y) => (x.id === status.id ? -1 : y.id === status.id ? 1 : 0)).slice(0, VITAL_CARDS_MAX);
  for (const member of carded) {
    let h = history.get(member.id);
    if (h === undefined) history.set(member.id, h = { t: [], rss: [], loop: [], load: [] });
    const v = member.vital;
    remember(h, now, { rss: v ? v.rssBytes : null, loop: v ? v.loopDelayP99Ms : null, load: v ? v.load1 : null });
    vitalCard(member, status);
  }
  $("vitals-more").textContent = status.members.length > carded.length ? `… and ${status.members.length - carded.length} more members (listed above)` : "";
  for (const [id, entry] of vitalCards) {
    if (!carded.some((m) => m.id === id)) {
      entry.card.remove();
      vitalCards.delete(id);
      history.delete(id);
    }
  }
  fields($("raft"), [
    ["state", `${status.raft.state}, term ${status.raft.term}`],
    ["leader", status.raft.leader === null ? "none" : `${nameOf(status.raft.leader)} (${short(status.raft.leader)})`],
    ["commit / applied", `${status.raft.commitIndex} / ${status.raft.appliedIndex}`],
    ["voters", status.raft.voters.map(nameOf).join(", ") || "-"],
    ["learners", status.raft.learners.map(nameOf).join(", ") || "-"],
    ["regenerations", `configuration epoch ${status.raft.confEpoch}`],
    ["guarded tasks", (status.guarded ?? []).map((g) => `${g.name}@${nameOf(g.owner)}${g.runningHere ? " (here)" : ""}`).join(", ") || "none"],
  ]);
  remember(commitHistory, now, { commit: status.raft.commitIndex });
  commitPlot ??= chart($("commit-chart"), [{ label: "commit index", stroke: "#0969da", width: 1.5 }], { height: 110 });
  commitPlot?.setData([commitHistory.t, commitHistory.commit]);
}

async function pollStatus() {
  try {
    const status = await getJson("/v1/status");
    if (status === undefined) return;
    $("error").textContent = "";
    renderStatus(status);
  } catch (error) {
    $("error").textContent = `node unreachable: ${error.message}`;
  }
}

// ---------------------------------------------------------------------------------------------
// The snapshot: KV, topics, shared folder, Brain, minds, memory, Evolution (every few seconds)

let roundsPlot;

function failed(part, body, columns) {
  if (part && typeof part === "object" && "error" in part && typeof part.error === "string") {
    if (body) empty(body, columns, `unavailable: ${part.error}`);
    return true;
  }
  return false;
}

function more(list, body, columns) {
  if (list.total > list.items.length) body.append(el("tr", {}, el("td", { colspan: columns, className: "dim", text: `… ${list.total - list.items.length} more` })));
}

function renderSnapshot(s) {
  const nameOf = (id) => lastStatus?.members.find((m) => m.id === id)?.name || short(id);
  // Mode changes: ticks are the node's, so their age is (now − change) × the tick length.
  const tickMs = s.uptimeMs > 0 && s.tick > 0 ? s.uptimeMs / s.tick : 10;
  $("modes").textContent = (s.modeHistory ?? []).length === 0 ? "" : `mode changes: ${s.modeHistory.map((c) => `${c.previous}→${c.mode} with ${c.alive} alive, ${duration((s.tick - c.tick) * tickMs)} ago`).join(" · ")}`;
  // Raft & KV
  if (!failed(s.raft, $("kv-keys"), 3)) {
    $("kv-count").textContent = `${s.raft.kv.keys} keys, ${bytes(s.raft.kv.bytes)}`;
    const keys = s.raft.kv.first;
    if (keys.length === 0) empty($("kv-keys"), 3, "no keys");
    else $("kv-keys").replaceChildren(...keys.map((k) => row([td(k.key, "wrap"), td(k.revision), td(k.bytes)])));
  }
  // Topics and files
  if (!failed(s.topics, $("topics"), 2)) {
    if (s.topics.items.length === 0) empty($("topics"), 2, "no gossip topics");
    else $("topics").replaceChildren(...s.topics.items.map((t) => row([el("td", { className: "wrap" }, el("button", { type: "button", className: "link", "data-topic": t.name, text: t.name })), td(t.keys)])));
    more(s.topics, $("topics"), 2);
  }
  if (s.sharedFolder === null) {
    $("sfs-summary").textContent = "this node has no shared folder";
    $("sfs").replaceChildren();
  } else if (!failed(s.sharedFolder, $("sfs"), 4)) {
    const f = s.sharedFolder;
    $("sfs-summary").textContent = `${f.entries} entries, ${f.transfers} transfers, ${f.freeBytes === null ? "disk not measured yet" : `${bytes(f.freeBytes)} free`}`;
    if (f.files.items.length === 0) empty($("sfs"), 4, "empty");
    else $("sfs").replaceChildren(...f.files.items.map((e) => row([td(`/shared/${e.path}${e.dir ? "/" : ""}`, "wrap"), td(e.dir ? "-" : bytes(e.size)), td(e.version), td(e.state)])));
    more(f.files, $("sfs"), 4);
  }
  // Brain
  if (!failed(s.brain)) {
    const b = s.brain;
    fields($("brain-model"), [
      ["model", `v${b.model.version} ${b.model.kind}${b.model.origin ? ` by ${nameOf(b.model.origin)}` : ""} · tag ${b.model.tag.slice(0, 12)}${b.model.chain ? ` · ${b.model.chain} GA mutations` : ""}`],
      ["shape", `d_model ${b.model.shape.dModel}, ${b.model.shape.heads} heads, ${b.model.shape.layers} layers, FFN ${b.model.shape.ffn}`],
      ["held-out accuracy", b.model.heldOutAccuracy === null ? "- (not trained)" : `${pct(b.model.heldOutAccuracy)} (single-feature baseline ${pct(b.model.baselineAccuracy)})`],
      ["training", b.training ?? (b.lastTrain ? `last here: ${b.lastTrain.epochs} epochs, loss ${b.lastTrain.loss.toFixed(4)}, held-out ${pct(b.lastTrain.heldOutAccuracy)}` : "none here")],
      ["inferences", Object.entries(b.inferences).map(([k, v]) => `${k} ${v}`).join(", ") + ` · reduced ${b.fallbacks.reduced}, solo ${b.fallbacks.solo}`],
      ["calls", `${b.calls.sent} sent, ${b.calls.timedOut} timed out, ${b.calls.failed} failed, ${b.calls.served} served`],
      ["spot checks", `${b.spotChecks.audited} audited, ${b.spotChecks.caught} wrong, ${b.spotChecks.banned} banned`],
      ["model files", `${b.modelFiles.loaded} loaded, ${b.modelFiles.refused} refused, ${b.modelFiles.untrusted} untrusted${b.modelFiles.lastError ? ` (${b.modelFiles.lastError})` : ""}`],
      ["role", b.core ? "core: publishes models" : "contributor"],
    ]);
    const rounds = b.rounds.items;
    if (rounds.length === 0) empty($("rounds"), 6, `no federated rounds coordinated here (fl train)`);
    else $("rounds").replaceChildren(...rounds.map((r) => row([td(r.round), td(r.participants), td(r.failed), td(r.rule), td(r.rejected), td(pct(r.heldOutAccuracy))])));
    if (rounds.length > 0) {
      roundsPlot ??= chart($("rounds-chart"), [{ label: "held-out accuracy %", stroke: "#1a7f37", width: 2, points: { show: true } }], { time: false, height: 130 });
      roundsPlot?.setData([rounds.map((r) => r.round), rounds.map((r) => 100 * r.heldOutAccuracy)]);
    }
    fields($("ga"), [
      ["state", `${b.ga.enabled ? "on" : "off"}${b.ga.blocker ? ` · not now: ${b.ga.blocker}` : ""}`],
      ["here", `${b.ga.generations} generations, ${b.ga.kept} kept; ${b.ga.followed} followed, ${b.ga.refused} refused`],
      ["held-out loss", b.ga.lastLoss === null ? "-" : b.ga.lastLoss.toFixed(4)],
      ...(b.ga.lastError ? [["last error", b.ga.lastError]] : []),
    ]);
    if (b.moe.items.length === 0) empty($("moe"), 4, "no probes yet (moe probe)");
    else $("moe").replaceChildren(...b.moe.items.map((r) => row([td(nameOf(r.node)), td(r.class), td(r.probes), td(pct(r.accuracy))])));
  }
  // Self
  if (!failed(s.minds, $("minds"), 6)) {
    if (s.minds.items.length === 0) empty($("minds"), 6, "no minds (pk node --mind URL#MODEL)");
    else $("minds").replaceChildren(...s.minds.items.map((m) => row([td(m.name), td(m.kind), td(m.model), td(m.here ? "here" : nameOf(m.node)), td(m.latencyMs === null ? "-" : `${Math.round(m.latencyMs)} ms`), td(`${m.successes}/${m.failures}`)])));
  }
  if (!failed(s.memory)) $("memory-stats").textContent = `${s.memory.memories} memories (${s.memory.superseded} superseded, ${s.memory.redacted} redacted) from ${s.memory.origins} nodes, ${s.memory.speakers} speakers`;
  // Evolution
  if (!failed(s.programs, $("programs"), 7)) {
    if (s.programs.items.length === 0) empty($("programs"), 7, "no programs (evolve, or evolve --from FILE)");
    else $("programs").replaceChildren(...s.programs.items.map((p) => row([
      td(p.name), td(p.track === "canary" ? `${p.version} (canary)` : p.version), td(`${p.hook}${p.attached ? "" : " (detached)"}`), td(p.runs), td(p.errors), td(bytes(p.memoryPeak)), td(p.lastError, "wrap"),
    ])));
  }
  if (!failed(s.rollouts)) renderRollouts(s.rollouts, nameOf);
  if (!failed(s.evolve)) {
    const pending = s.evolve.pending.items;
    $("pending").textContent = pending.length === 0 ? "" : `waiting for approval: ${pending.map((p) => `#${p.n} ${p.line} (${p.reason})`).join("; ")}`;
    const log = s.evolve.log;
    if (log.length === 0) $("evolve-log").replaceChildren(el("li", { className: "dim", text: "the evolve log is empty" }));
    else $("evolve-log").replaceChildren(...log.slice().reverse().map((step) => el("li", {}, el("span", { className: "dim", text: `${new Date(step.atMs).toLocaleTimeString()} ${nameOf(step.node)} ` }), el("span", { className: "type", text: step.step }), ` ${step.text}`)));
  }
}

function renderRollouts(r, nameOf) {
  const boxes = r.items.map((o) => {
    const health = o.health.items.map((h) => row([
      td(nameOf(h.node)), td(h.version), td(h.canary ? "canary" : "baseline"), td(h.runs), td(h.failures), td(bytes(h.memoryPeak)),
      td(h.probeMs === null ? "-" : `${h.probeMs.toFixed(1)} ms${h.probeFailed ? `, ${h.probeFailed} failed` : ""}`),
      td(h.accuracy === null ? "-" : `${pct(h.accuracy)} (without ${pct(h.accuracyWithout)})`), td(`${h.loopDelayMs.toFixed(0)} ms`),
    ]));
    const table = el("table", {}, el("thead", {}, row(["node", "version", "role", "runs", "failed", "memory", "probe", "accuracy", "loop"].map((h) => el("th", { text: h })))), el("tbody", {}, ...health));
    return el("div", { className: "rollout" },
      el("div", {}, el("b", { text: o.name }), ` ${o.version}${o.from === null ? " (new)" : ` replacing ${o.from}`} · `, el("span", { className: `phase-${o.phase}`, text: o.phase + (o.refused ? ` (refused: ${o.refused})` : "") }),
        el("span", { className: "dim", text: ` · canary ${o.canary.map(nameOf).join(", ") || "-"}, window ${Math.round(o.windowMs / 1000)} s${o.reason ? ` · ${o.reason}` : ""}` })),
      health.length === 0 ? el("div", { className: "dim small", text: "no health rows yet" }) : el("div", { className: "scroll" }, table));
  });
  if (r.model) boxes.push(el("div", { className: "small" }, `model v${r.model.version}: ${r.model.verdict}: ${r.model.reason}`));
  $("rollouts").replaceChildren(...(boxes.length === 0 ? [el("div", { className: "dim small", text: "no rollouts (evolve starts one)" })] : boxes));
}

let snapshotBusy = false;
async function pollSnapshot() {
  if (snapshotBusy) return;
  snapshotBusy = true;
  try {
    const snapshot = await getJson("/v1/dashboard");
    if (snapshot !== undefined) renderSnapshot(snapshot);
  } catch (error) {
    $("error").textContent = error.message;
  } finally {
    snapshotBusy = false;
  }
}

// ---------------------------------------------------------------------------------------------
// The event stream

let source;
let eventsSeen = 0;
let refreshSoon;
function connectEvents() {
  source?.close();
  source = new EventSource("/v1/events");
  source.onopen = () => {
    $("live").textContent = "● events";
    $("live").className = "live on";
  };
  source.onerror = () => {
    $("live").textContent = "○ events (reconnecting)";
    $("live").className = "live";
    // A refused stream (no session yet) is closed for good by the browser: try again later.
    if (source.readyState === EventSource.CLOSED) setTimeout(connectEvents, 5_000);
  };
  source.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    eventsSeen++;
    const list = $("events");
    const data = JSON.stringify(event.data ?? {});
    list.prepend(el("li", {}, el("span", { className: "dim", text: `#${event.seq} ` }), el("span", { className: "type", text: String(event.type) }), ` ${data.length > 300 ? `${data.slice(0, 300)}…` : data}`));
    while (list.children.length > EVENTS_KEPT) list.lastChild.remove();
    $("events-count").textContent = `${eventsSeen} seen, newest first`;
    if (/^(member-|mode-|raft-)/.test(String(event.type))) {
      clearTimeout(refreshSoon);
      refreshSoon = setTimeout(() => {
        pollStatus();
        pollSnapshot();
      }, 100);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Inference latency by mode, measured by the page through /v1/infer

const latency = { round: [], ...Object.fromEntries(MODES.map((m) => [m, []])) };
let latencyRounds = 0;
let latencyPlot;
let latencyBusy = false;

async function measureLatency() {
  if (latencyBusy) return;
  latencyBusy = true;
  $("latency-run").disabled = true;
  try {
    // One round: one inference in each mode, plotted at the round's number.
    const round = Object.fromEntries(MODES.map((m) => [m, null]));
    for (const mode of MODES) {
      const values = Array.from({ length: 4 }, () => Math.round((Math.random() * 4 - 2) * 100) / 100);
      const response = await fetch("/v1/infer", { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify({ mode, values }) });
      if (needToken(response)) return;
      if (response.ok) round[mode] = (await response.json()).ms;
      else $("latency-note").textContent = `${mode}: ${await errorText(response)}`;
    }
    latency.round.push(++latencyRounds);
    for (const m of MODES) latency[m].push(round[m]);
    while (latency.round.length > LATENCY_POINTS) for (const key of Object.keys(latency)) latency[key].shift();
    latencyPlot ??= chart($("latency-chart"), MODES.map((mode, i) => ({ label: `${mode} ms`, stroke: MODE_COLORS[i], width: 1.5, spanGaps: true, points: { show: true, size: 5 } })), { height: 180, time: false });
    latencyPlot?.setData([latency.round, ...MODES.map((m) => latency[m])]);
    const lastOf = (m) => latency[m].findLast((v) => v !== null);
    $("latency-note").textContent = MODES.map((m) => `${m} ${lastOf(m) === undefined ? "-" : `${lastOf(m).toFixed(1)} ms`}`).join(" · ");
    pollSnapshot();
  } catch (error) {
    $("latency-note").textContent = error.message;
  } finally {
    latencyBusy = false;
    $("latency-run").disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Chat, streamed from POST /v1/chat as server-sent events

const conv = `dashboard-${Math.random().toString(36).slice(2, 10)}`;

function turn(who, text, className) {
  const node = el("div", { className: `turn ${className}` }, el("div", { className: "who", text: who }), el("div", { className: "text", text }));
  const log = $("chat-log");
  log.append(node);
  while (log.children.length > CHAT_TURNS_KEPT) log.firstChild.remove();
  log.scrollTop = log.scrollHeight;
  return node;
}

async function sendChat(text) {
  turn("you", text, "user");
  const answer = turn("swarm", "", "assistant streaming");
  answer.dataset.state = "streaming";
  answer.dataset.deltas = "0";
  answer.id = "chat-live";
  for (const old of document.querySelectorAll(".turn[id='chat-live']")) if (old !== answer) old.removeAttribute("id");
  const body = answer.querySelector(".text");
  const who = answer.querySelector(".who");
  $("chat-send").disabled = true;
  try {
    const response = await fetch("/v1/chat", { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify({ text, conv, stream: true, speaker: "dashboard" }) });
    if (needToken(response)) throw new Error("this node needs the cluster token");
    if (!response.ok || response.body === null) throw new Error(await errorText(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const type = /^event: (.*)$/m.exec(block)?.[1] ?? "message";
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data === "") continue;
        const payload = JSON.parse(data);
        if (type === "delta") {
          body.textContent += payload.text;
          answer.dataset.deltas = String(Number(answer.dataset.deltas) + 1);
          $("chat-log").scrollTop = $("chat-log").scrollHeight;
        } else if (type === "done") {
          if (body.textContent === "") body.textContent = payload.answer;
          const mind = payload.mind ? `${payload.mind.name} (${payload.mind.kind})` : "memory alone";
          who.textContent = `swarm · ${mind} · ${payload.recalled?.length ?? 0} memories recalled · ${Math.round(payload.totalMs)} ms${payload.note ? ` · ${payload.note}` : ""}`;
        } else if (type === "error") {
          throw new Error(payload.message);
        }
      }
    }
    answer.dataset.state = "done";
  } catch (error) {
    body.textContent += `${body.textContent === "" ? "" : "\n"}error: ${error.message}`;
    answer.classList.add("error");
    answer.dataset.state = "error";
  } finally {
    answer.classList.remove("streaming");
    $("chat-send").disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Forms

$("shell").addEventListener("submit", async (event) => {
  event.preventDefault();
  const line = $("line").value;
  const output = $("output");
  try {
    const response = await fetch("/v1/shell", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ line }),
    });
    if (needToken(response)) return;
    if (!response.ok) throw new Error(await errorText(response));
    const result = await response.json();
    output.textContent = result.output;
    output.className = result.ok ? "out" : "out error";
  } catch (error) {
    output.textContent = error.message;
    output.className = "out error";
  }
});

function kvPath() {
  const key = $("kv-key").value.trim();
  if (key === "") throw new Error("a key is needed");
  return `/v1/kv/${encodeURIComponent(key)}`;
}

async function kv(method) {
  const out = $("kv-result");
  out.className = "out small";
  try {
    const path = kvPath();
    const init = method === "PUT" ? { method, headers: headers({ "Content-Type": "application/octet-stream" }), body: $("kv-value").value } : { headers: headers(), cache: "no-store" };
    const response = await fetch(path, init);
    if (needToken(response)) return;
    if (response.status === 404 && method === "GET") {
      out.textContent = `${$("kv-key").value.trim()}: no such key`;
      return;
    }
    if (!response.ok) throw new Error(await errorText(response));
    if (method === "PUT") {
      const result = await response.json();
      out.textContent = `put ${result.key}: revision ${result.revision} (committed by Raft)`;
      out.dataset.revision = String(result.revision);
      pollSnapshot();
    } else {
      out.textContent = `${$("kv-key").value.trim()} = ${await response.text()} (revision ${response.headers.get("X-Revision") ?? "?"})`;
    }
  } catch (error) {
    out.textContent = error.message;
    out.className = "out small error";
  }
}

$("kv").addEventListener("submit", (event) => {
  event.preventDefault();
  kv("PUT");
});
$("kv-get").addEventListener("click", () => kv("GET"));

$("chat").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  if (text === "") return;
  $("chat-input").value = "";
  sendChat(text);
});

$("memory").addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = $("memory-q").value.trim();
  const list = $("memory-hits");
  if (q === "") return;
  try {
    const result = await getJson(`/v1/memory?q=${encodeURIComponent(q)}&k=8`);
    if (result === undefined) return;
    list.replaceChildren(...(result.hits.length === 0 ? [el("li", { className: "dim", text: "nothing found" })] : result.hits.map((h) =>
      el("li", {}, el("span", { className: "dim", text: `${h.score.toFixed(3)} ${h.memory.speaker}: ` }), h.memory.text))));
  } catch (error) {
    list.replaceChildren(el("li", { className: "error", text: error.message }));
  }
});

// A topic's rows (GET /v1/topics/T), shown under the list when its name is clicked.
const TOPIC_ROWS_SHOWN = 50;
$("topics").addEventListener("click", async (event) => {
  const topic = event.target?.dataset?.topic;
  if (topic === undefined) return;
  const out = $("topic-rows");
  out.hidden = false;
  try {
    const result = await getJson(`/v1/topics/${encodeURIComponent(topic)}`);
    if (result === undefined) return;
    const rows = result.rows.slice(0, TOPIC_ROWS_SHOWN).map((r) => {
      const value = r.value === null ? "(deleted)" : r.encoding === "base64" ? `(${Math.floor(r.value.length * 3 / 4)} bytes)` : r.value;
      return `${r.key} = ${value.length > 200 ? `${value.slice(0, 200)}…` : value}  [${short(r.origin)}]`;
    });
    out.textContent = `${topic}: ${result.rows.length} rows${result.rows.length > TOPIC_ROWS_SHOWN ? ` (first ${TOPIC_ROWS_SHOWN})` : ""}\n${rows.join("\n")}`;
    out.className = "out small";
  } catch (error) {
    out.textContent = error.message;
    out.className = "out small error";
  }
});

$("latency-run").addEventListener("click", measureLatency);
let latencyTimer;
$("latency-auto").addEventListener("change", () => {
  clearInterval(latencyTimer);
  if ($("latency-auto").checked) latencyTimer = setInterval(measureLatency, 5_000);
});

$("auth").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("auth").hidden = true;
  pollStatus();
  // The event stream cannot send a header: the token buys it a session cookie.
  try {
    const response = await fetch("/v1/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }) });
    if (response.ok) connectEvents();
  } catch {
    // the stream stays off; everything else works with the token
  }
  pollSnapshot();
});

pollStatus();
pollSnapshot();
connectEvents();
setInterval(pollStatus, 1_000);
setInterval(pollSnapshot, 3_000);
