// Helpers for the Self layer's real-process tests (test/cli/self.test.ts): a swarm of `pk node`
// processes started one by one (so each may have its own --mind flags and its own environment),
// each with its stdout and stderr in files of its own that outlive a kill -9 and a restart, the
// mind-server (test/fakes/mind-server.ts) as a process with its JSONL log, and small clients for
// the chat, memory, shell and event routes. Everything started is killed by pid when the test ends,
// and the temp dir removed, even when it fails.
import { type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { makeToken } from "../../src/adapters/seal.ts";
import { bearer, BIN } from "./cluster-helpers.ts";

const MIND_SERVER = fileURLToPath(new URL("../fakes/mind-server.ts", import.meta.url));

/** Variables a node must not inherit from the machine running the tests: another cluster's token, real provider keys. */
const INHERITED_OUT = /^(PK_|OPENAI_|ANTHROPIC_|GEMINI_|GOOGLE_)/;

/** This process's environment without a token or provider keys, plus `extra`. */
export function cleanEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!INHERITED_OUT.test(name)) env[name] = value;
  return { ...env, ...extra };
}

/** Until `ok()` holds, polled every `everyMs`; fails naming `what` after `ms`. */
export async function until<T>(what: string, ok: () => T | undefined | false | Promise<T | undefined | false>, ms = 15_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await ok();
    if (value !== undefined && value !== false) return value;
    assert.ok(Date.now() < deadline, `timed out after ${ms} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILL by pid, then waits until the process is gone (reaped by this process: its exit event). */
export async function kill9(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGKILL");
  await exited;
}

export interface SwarmNode {
  readonly name: string;
  readonly data: string;
  /** stdout and stderr, appended across restarts. */
  readonly out: string;
  readonly err: string;
  id: string;
  listen: string;
  api: string;
  child: ChildProcess;
  /** Flags after --data/--listen/--api, kept for a restart. */
  readonly flags: readonly string[];
  readonly env: NodeJS.ProcessEnv;
}

export interface NodeOptions {
  /** The node joins this one (and takes the owner key it keeps); none: it founds the cluster. */
  readonly join?: SwarmNode;
  /** More flags: --mind URL#MODEL. */
  readonly flags?: readonly string[];
  /** More environment: provider keys. */
  readonly env?: Readonly<Record<string, string>>;
}

/** A cluster of `pk node` processes in a temp dir of its own, all killed and removed after the test. */
export class Swarm {
  readonly dir: string;
  readonly token: string;
  readonly tokenFile: string;
  readonly nodes: SwarmNode[] = [];
  /** Every process this swarm started (nodes, restarts, mind-servers): killed at the end. */
  readonly #children: ChildProcess[] = [];

  constructor(t: TestContext) {
    this.dir = mkdtempSync(join(tmpdir(), "pk-self-"));
    this.token = makeToken();
    this.tokenFile = join(this.dir, "token");
    writeFileSync(this.tokenFile, `${this.token}\n`, { mode: 0o600 });
    mkdirSync(join(this.dir, "logs"), { mode: 0o700 });
    t.after(async () => {
      await Promise.all(this.#children.map((child) => kill9(child)));
      rmSync(this.dir, { recursive: true, force: true });
    });
  }

  /** Starts `pk node` and resolves once it printed its ready line. */
  async start(name: string, options: NodeOptions = {}): Promise<SwarmNode> {
    const data = join(this.dir, name);
    const join_ = options.join;
    const flags = [
      "--token-file", this.tokenFile, "--name", name, "--no-discover",
      ...(join_ === undefined ? [] : ["--join", join_.listen, "--owner-key", join(join_.data, "owner.key")]),
      ...(options.flags ?? []),
    ];
    const env = cleanEnv(options.env);
    const out = join(this.dir, "logs", `${name}.out`);
    const err = join(this.dir, "logs", `${name}.err`);
    const node: SwarmNode = { name, data, out, err, id: "", listen: "127.0.0.1:0", api: "127.0.0.1:0", child: undefined as unknown as ChildProcess, flags, env };
    await this.#spawn(node);
    this.nodes.push(node);
    return node;
  }

  /** Starts a node again after it stopped, with its data dir and the ports it had. */
  async restart(node: SwarmNode): Promise<void> {
    assert.ok(node.child.exitCode !== null || node.child.signalCode !== null, `${node.name} is stopped before its restart`);
    await this.#spawn(node);
  }

  /** SIGTERM (a graceful stop), then waits for the exit; SIGKILL after 10 s. */
  async stop(node: SwarmNode): Promise<void> {
    const child = node.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  async #spawn(node: SwarmNode): Promise<void> {
    const api = node.api.replace(/^http:\/\//, "");
    const args = [BIN, "node", "--data", node.data, "--listen", node.listen, "--api", api, ...node.flags];
    const before = existsSync(node.out) ? readFileSync(node.out).length : 0;
    const out = openSync(node.out, "a", 0o600);
    const err = openSync(node.err, "a", 0o600);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, args, { stdio: ["ignore", out, err], env: node.env });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    this.#children.push(child);
    node.child = child;
    const ready = await until(`${node.name}'s ready line`, () => {
      if (child.exitCode !== null) assert.fail(`${node.name} exited ${child.exitCode}: ${readFileSync(node.err, "utf8").slice(-2_000)}`);
      const line = readFileSync(node.out).subarray(before).toString("utf8").split("\n").find((l) => l.startsWith("{\"ready\":true"));
      return line === undefined ? undefined : JSON.parse(line) as { id: string; listen: string; api: string };
    }, 20_000);
    node.id = ready.id;
    node.listen = ready.listen;
    node.api = ready.api;
  }

  /** The mind-server as a process: an OpenAI-compatible local model logging every request it gets. */
  async mindServer(name: string, latencyMs: number, replies?: string): Promise<MindServer> {
    const log = join(this.dir, "logs", `${name}.jsonl`);
    writeFileSync(log, "");
    const args = [MIND_SERVER, "--port", "0", "--latency-ms", String(latencyMs), "--log", log, ...(replies === undefined ? [] : ["--replies", replies])];
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: cleanEnv() });
    this.#children.push(child);
    let text = "";
    child.stdout?.on("data", (chunk: Buffer) => { text += chunk.toString(); });
    child.stderr?.on("data", (chunk: Buffer) => { text += chunk.toString(); });
    const ready = await until("the mind-server's port", () => {
      if (child.exitCode !== null) assert.fail(`mind-server exited ${child.exitCode}: ${text}`);
      const line = text.split("\n").find((l) => l.startsWith("{\"port\""));
      return line === undefined ? undefined : JSON.parse(line) as { port: number; url: string };
    });
    return new MindServer(child, ready.url, log);
  }
}

/** One request the mind-server logged (test/fakes/mind-server.ts). */
export interface MindRequestLog {
  readonly seq: number;
  readonly op: string;
  readonly stream: boolean;
  readonly model: string;
  readonly messages: ReadonlyArray<{ role: string; content: string }>;
  readonly atMs: number;
}

export class MindServer {
  readonly child: ChildProcess;
  /** Its OpenAI base URL (…/v1). */
  readonly url: string;
  readonly log: string;
  constructor(child: ChildProcess, url: string, log: string) {
    this.child = child;
    this.url = url;
    this.log = log;
  }

  requests(): MindRequestLog[] {
    return readFileSync(this.log, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as MindRequestLog);
  }

  /** The chat requests whose system prompt says they come from node `name` (chat's prompt names its node). */
  from(name: string): MindRequestLog[] {
    return this.requests().filter((r) => r.op === "chat" && system(r).includes(`this node is ${name}.`));
  }

  stop(): Promise<void> {
    return kill9(this.child);
  }
}

/** The system prompt of a logged request. */
export function system(request: MindRequestLog): string {
  return request.messages.filter((m) => m.role === "system").map((m) => m.content).join("\n");
}

// ---------------------------------------------------------------------------------------------
// The API

export interface StatusBody {
  id: string;
  mode: string;
  members: Array<{ id: string; name: string; state: string }>;
}

export async function statusOf(api: string): Promise<StatusBody | undefined> {
  try {
    const response = await fetch(`${api}/v1/status`, { signal: AbortSignal.timeout(2_000) });
    return response.ok ? await response.json() as StatusBody : undefined;
  } catch {
    return undefined;
  }
}

/** Until every node lists `count` members alive (and the optional check holds). */
export async function converged(nodes: readonly SwarmNode[], count: number, ms = 20_000, check: (s: StatusBody) => boolean = () => true): Promise<StatusBody[]> {
  return await until(`${nodes.map((n) => n.name).join(", ")} to see ${count} alive`, async () => {
    const all = await Promise.all(nodes.map((n) => statusOf(n.api)));
    return all.every((s) => s !== undefined && s.members.filter((m) => m.state === "alive").length === count && check(s)) ? all as StatusBody[] : undefined;
  }, ms, 50);
}

/** GET with the token: the status and the body's text. */
export async function getText(api: string, path: string, token: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`${api}${path}`, { headers: bearer(token), signal: AbortSignal.timeout(10_000) });
  return { status: response.status, text: await response.text() };
}

export async function getJson<T>(api: string, path: string, token: string): Promise<T> {
  const { status, text } = await getText(api, path, token);
  assert.equal(status, 200, `GET ${path}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as T;
}

/** A memory as /v1/memory shows it. */
export interface MemoryView {
  id: string;
  origin: string;
  atMs: number;
  speaker: string;
  kind: string;
  conv: string | null;
  by: string | null;
  text: string;
}

/** Every memory a node holds (superseded and redacted included). */
export async function memories(api: string, token: string): Promise<MemoryView[]> {
  return (await getJson<{ memories: MemoryView[] }>(api, "/v1/memory?all=1&limit=500", token)).memories;
}

export async function searchMemory(api: string, q: string, token: string, k = 5): Promise<MemoryView[]> {
  return (await getJson<{ hits: Array<{ memory: MemoryView }> }>(api, `/v1/memory?q=${encodeURIComponent(q)}&k=${k}`, token)).hits.map((h) => h.memory);
}

export interface ChatReport {
  answer: string;
  source: "mind" | "memory";
  mind: { name: string; kind: string; model: string } | null;
  note: string | null;
  conv: string;
  asked: string;
  answered: string;
}

/** POST /v1/chat, whole: the HTTP status and the text (a report when 200). */
export async function chatRaw(api: string, token: string, body: Record<string, unknown>, signal?: AbortSignal): Promise<{ status: number; text: string }> {
  const response = await fetch(`${api}/v1/chat`, {
    method: "POST", headers: { "Content-Type": "application/json", ...bearer(token) }, body: JSON.stringify(body), signal: signal ?? AbortSignal.timeout(30_000),
  });
  return { status: response.status, text: await response.text() };
}

export async function chat(api: string, token: string, body: Record<string, unknown>): Promise<ChatReport> {
  const { status, text } = await chatRaw(api, token, body);
  assert.equal(status, 200, `POST /v1/chat: ${text.slice(0, 500)}`);
  return JSON.parse(text) as ChatReport;
}

/** One shell line through POST /v1/shell (bounded by `ms`: `mind test` waits for a mind). */
export async function shell(api: string, line: string, token: string, ms = 20_000): Promise<{ ok: boolean; output: string }> {
  const response = await fetch(`${api}/v1/shell`, {
    method: "POST", headers: { "Content-Type": "application/json", ...bearer(token) }, body: JSON.stringify({ line }), signal: AbortSignal.timeout(ms),
  });
  const text = await response.text();
  assert.equal(response.status, 200, `shell ${line}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as { ok: boolean; output: string };
}

/** GET /v1/events, read until `stop()`, which resolves with everything the stream sent. */
export function openEvents(api: string, token: string): { stop(): Promise<string> } {
  const abort = new AbortController();
  let text = "";
  let failure: unknown;
  // Never rejects (a test that fails before stop() must not leave a rejection behind); stop() reports.
  const done = (async () => {
    try {
      const response = await fetch(`${api}/v1/events`, { headers: bearer(token), signal: abort.signal });
      if (response.status !== 200) throw new Error(`GET /v1/events: ${response.status}`);
      const decoder = new TextDecoder();
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) text += decoder.decode(chunk, { stream: true });
    } catch (error) {
      if (!abort.signal.aborted) failure = error;
    }
  })();
  return {
    async stop() {
      abort.abort();
      await done;
      if (failure !== undefined) throw failure;
      return text;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Looking for a secret

/**
 * The byte strings that betray `secret`: itself (UTF-8 and UTF-16LE), its hex (both cases), its
 * base64 and base64url at each of the three alignments it can have inside a longer encoded text
 * (the characters its own bytes alone decide), and every `window`-character piece of `core` (the
 * secret's random part: a key shown masked or cut still gives one away).
 */
export function needles(secret: string, core: string, window = 12): Array<{ form: string; bytes: Buffer }> {
  const raw = Buffer.from(secret, "utf8");
  const out: Array<{ form: string; bytes: Buffer }> = [
    { form: "raw", bytes: raw },
    { form: "utf16le", bytes: Buffer.from(secret, "utf16le") },
    { form: "hex", bytes: Buffer.from(raw.toString("hex")) },
    { form: "HEX", bytes: Buffer.from(raw.toString("hex").toUpperCase()) },
  ];
  for (let skip = 0; skip < 3; skip++) {
    const aligned = raw.subarray(skip, skip + Math.floor((raw.length - skip) / 3) * 3);
    out.push({ form: `base64+${skip}`, bytes: Buffer.from(aligned.toString("base64")) });
    out.push({ form: `base64url+${skip}`, bytes: Buffer.from(aligned.toString("base64url")) });
  }
  for (let at = 0; at + window <= core.length; at++) out.push({ form: `piece@${at}`, bytes: Buffer.from(core.slice(at, at + window)) });
  return out;
}

/** Every regular file under `dir`. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

/** Where any needle occurs in `haystack` (`where` names it): "where: form", one per hit. */
export function findIn(where: string, haystack: Buffer, wanted: ReadonlyArray<{ form: string; bytes: Buffer }>): string[] {
  const hits: string[] = [];
  for (const needle of wanted) if (haystack.includes(needle.bytes)) hits.push(`${where}: ${needle.form}`);
  return hits;
}

/** A free TCP port on loopback (a supervised node restarts on the ports it had: they are given, not 0). */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}
