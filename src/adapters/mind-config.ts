// Which minds this node has, from its flags and its environment (docs/adr/013-minds.md).
//
// A local mind (an OpenAI-compatible server: Ollama, llama.cpp's llama-server, vLLM, LM Studio):
//   --mind URL#MODEL                  e.g. --mind http://127.0.0.1:11434/v1#llama3.2
//   --mind URL --mind-model MODEL     the same; a URL with no path gets /v1
//   --mind-embed-model MODEL          its embedding model (no embeddings without it)
//   --mind-key-file FILE              a key the server wants (vLLM --api-key), mode 0600
//   --mind-name NAME                  its name (default: the model's name, cut to 64 characters)
// --mind may repeat, each with its own #MODEL (--mind-model, --mind-name then only for one).
//
// Frontier minds, each enabled when its key is there (PK_MIND_FRONTIER=off disables them all):
//   OpenAI      key OPENAI_API_KEY or the file PK_OPENAI_KEY_FILE; PK_OPENAI_MODEL (gpt-4.1-mini),
//               PK_OPENAI_EMBED_MODEL (text-embedding-3-small; "none" for none), OPENAI_BASE_URL
//   Anthropic   key ANTHROPIC_API_KEY or PK_ANTHROPIC_KEY_FILE; PK_ANTHROPIC_MODEL
//               (claude-haiku-4-5), ANTHROPIC_BASE_URL; no embeddings
//   Gemini      key GEMINI_API_KEY, GOOGLE_API_KEY or PK_GEMINI_KEY_FILE; PK_GEMINI_MODEL
//               (gemini-2.5-flash), PK_GEMINI_EMBED_MODEL (gemini-embedding-001), GOOGLE_GEMINI_BASE_URL
// A key file wins over the variable. A key file must be a regular file (not a link) owned by this
// user and readable by no one else (mode 0600 or 0400). A frontier mind's URL must be https
// unless it is on this host (loopback). Keys live in MindKey, which prints as "[redacted]".
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { inspect } from "node:util";
import { LIMITS } from "../core/util/limits.ts";
import type { Provider } from "../core/self/minds.ts";
import type { Price } from "./mind-cost.ts";

/** A mind's settings: what `openMind` builds a client from. */
export interface MindConfig {
  /** Its name among this node's minds. */
  readonly name: string;
  readonly provider: Provider;
  readonly kind: "local" | "frontier";
  readonly model: string;
  /** Its embedding model, if it embeds. */
  readonly embedModel: string | undefined;
  /** The API's base URL, as the SDK takes it (OpenAI's includes /v1). */
  readonly baseURL: string;
  readonly key: MindKey | undefined;
  /** The node that serves it (this one). */
  readonly node: string;
  /** Overrides the price table (USD per million tokens). */
  readonly price?: Price | undefined;
}

/** The mind flags of `pk up`, as parsed. */
export interface MindFlags {
  /** --mind URL or URL#MODEL; may repeat. */
  readonly mind?: string | readonly string[] | undefined;
  readonly mindModel?: string | undefined;
  readonly mindEmbedModel?: string | undefined;
  readonly mindKeyFile?: string | undefined;
  readonly mindName?: string | undefined;
}

/** A configuration that cannot be used; the message says which flag or variable and why. */
export class MindConfigError extends Error {
  override name = "MindConfigError";
}

/** Longest key accepted (any provider's is far shorter), model and mind names (what the wire and an advert take), URL. */
const { keyCharsMax: KEY_CHARS, modelCharsMax: MODEL_CHARS, nameCharsMax: NAME_CHARS, urlCharsMax: URL_CHARS } = LIMITS.self.mind;

export const FRONTIER_DEFAULTS = {
  openai: { model: "gpt-4.1-mini", embedModel: "text-embedding-3-small", baseURL: "https://api.openai.com/v1" },
  anthropic: { model: "claude-haiku-4-5", embedModel: undefined, baseURL: "https://api.anthropic.com" },
  gemini: { model: "gemini-2.5-flash", embedModel: "gemini-embedding-001", baseURL: "https://generativelanguage.googleapis.com" },
} as const;

/**
 * A provider key. It never prints: toString, toJSON and util.inspect give "[redacted]"; only
 * `reveal()` (called where an SDK client is built) gives the key.
 */
export class MindKey {
  readonly #value: string;

  constructor(value: string, source: string) {
    const key = value.trim();
    if (key.length === 0) throw new MindConfigError(`${source}: the key is empty`);
    if (key.length > KEY_CHARS) throw new MindConfigError(`${source}: the key is longer than ${KEY_CHARS} characters`);
    if (!/^[\x21-\x7e]+$/.test(key)) throw new MindConfigError(`${source}: the key holds spaces, control or non-ASCII characters`);
    this.#value = key;
  }

  /** The key itself: for the SDK client and for scrubbing error text, nothing else. */
  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return "[redacted]";
  }

  toJSON(): string {
    return "[redacted]";
  }

  [inspect.custom](): string {
    return "MindKey [redacted]";
  }
}

/**
 * Reads a key file: a regular file (not a symlink), owned by this user, with no permission for
 * group or others, at most 4 KiB; its content trimmed is the key.
 */
export function readKeyFile(path: string): MindKey {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ELOOP") throw new MindConfigError(`key file ${path}: a symbolic link, not a regular file`);
    throw new MindConfigError(`key file ${path}: cannot open it (${code ?? "error"})`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new MindConfigError(`key file ${path}: not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      throw new MindConfigError(`key file ${path}: mode ${(stat.mode & 0o777).toString(8).padStart(4, "0")} lets others read it; run chmod 600 ${path}`);
    }
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid) throw new MindConfigError(`key file ${path}: owned by uid ${stat.uid}, not by this user (${uid})`);
    if (stat.size > KEY_CHARS + 2) throw new MindConfigError(`key file ${path}: larger than ${KEY_CHARS} bytes`);
    const buffer = Buffer.alloc(KEY_CHARS + 3);
    const read = readSync(fd, buffer, 0, buffer.length, 0);
    return new MindKey(buffer.subarray(0, read).toString("utf8"), `key file ${path}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * A mind's base URL, checked: http or https, a host, no user or password, no query. `source`
 * names the flag or variable for the error. An OpenAI-compatible URL with no path gets /v1.
 */
export function mindURL(text: string, source: string, options: { addV1?: boolean; frontier?: boolean } = {}): string {
  if (text.length > URL_CHARS) throw new MindConfigError(`${source}: the URL is longer than ${URL_CHARS} characters`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new MindConfigError(`${source}: not a URL: ${JSON.stringify(text.slice(0, 100))} (expected e.g. http://127.0.0.1:11434/v1)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new MindConfigError(`${source}: only http and https URLs, not ${url.protocol}`);
  if (url.hostname === "") throw new MindConfigError(`${source}: the URL has no host`);
  if (url.username !== "" || url.password !== "") throw new MindConfigError(`${source}: no user or password in the URL (a key goes in a key file)`);
  if (url.search !== "") throw new MindConfigError(`${source}: no query in the URL`);
  if (options.frontier === true && url.protocol === "http:" && !loopback(url.hostname)) {
    throw new MindConfigError(`${source}: a key is sent only over https (or to this host): ${url.origin}`);
  }
  let path = url.pathname.replace(/\/+$/, "");
  if (path === "" && options.addV1 === true) path = "/v1";
  return `${url.origin}${path}`;
}

function loopback(host: string): boolean {
  return host === "localhost" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function modelName(text: string, source: string): string {
  const model = text.trim();
  if (model.length === 0) throw new MindConfigError(`${source}: the model name is empty`);
  if (model.length > MODEL_CHARS) throw new MindConfigError(`${source}: the model name is longer than ${MODEL_CHARS} characters`);
  if (!/^[\x21-\x7e]+$/.test(model)) throw new MindConfigError(`${source}: the model name holds spaces or control characters: ${JSON.stringify(model.slice(0, 60))}`);
  return model;
}

function mindName(text: string, source: string): string {
  const name = text.trim();
  if (name.length === 0 || name.length > NAME_CHARS || !/^[\x21-\x7e]+$/.test(name)) {
    throw new MindConfigError(`${source}: a mind's name is 1 to ${NAME_CHARS} printable characters without spaces`);
  }
  return name;
}

/**
 * The minds of a node started with `flags` in `env`: the local ones of --mind first, then each
 * frontier provider whose key is there. Throws MindConfigError on anything wrong (a bad URL, a
 * missing model, a key file others can read) — a node should not start half-configured.
 */
export function mindConfigs(flags: MindFlags, env: Readonly<Record<string, string | undefined>>, node: string): MindConfig[] {
  const out: MindConfig[] = [];
  const urls = flags.mind === undefined ? [] : typeof flags.mind === "string" ? [flags.mind] : [...flags.mind];
  if (urls.length === 0) {
    for (const [flag, value] of [["--mind-model", flags.mindModel], ["--mind-embed-model", flags.mindEmbedModel], ["--mind-key-file", flags.mindKeyFile], ["--mind-name", flags.mindName]] as const) {
      if (value !== undefined) throw new MindConfigError(`${flag} needs --mind URL`);
    }
  }
  if (urls.length > 1 && (flags.mindModel !== undefined || flags.mindName !== undefined)) {
    throw new MindConfigError("with several --mind, give each its model as URL#MODEL (--mind-model and --mind-name are for one)");
  }
  const localKey = flags.mindKeyFile === undefined ? undefined : readKeyFile(flags.mindKeyFile);
  for (const text of urls) {
    const hash = text.indexOf("#");
    const fromUrl = hash < 0 ? undefined : decodeURIComponent(text.slice(hash + 1));
    if (fromUrl !== undefined && flags.mindModel !== undefined && fromUrl !== flags.mindModel) {
      throw new MindConfigError(`--mind ${text.slice(0, hash)}: the model is given twice (#${fromUrl} and --mind-model ${flags.mindModel})`);
    }
    const modelText = fromUrl ?? flags.mindModel;
    if (modelText === undefined) throw new MindConfigError(`--mind ${text}: which model? Add #MODEL to the URL or --mind-model MODEL`);
    const model = modelName(modelText, "--mind");
    out.push({
      name: flags.mindName !== undefined ? mindName(flags.mindName, "--mind-name") : model.slice(0, NAME_CHARS),
      provider: "openai",
      kind: "local",
      model,
      embedModel: flags.mindEmbedModel === undefined ? undefined : modelName(flags.mindEmbedModel, "--mind-embed-model"),
      baseURL: mindURL(hash < 0 ? text : text.slice(0, hash), "--mind", { addV1: true }),
      key: localKey,
      node,
    });
  }
  const value = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  const frontier = value("PK_MIND_FRONTIER");
  if (frontier !== undefined && !["on", "off", "1", "0", "true", "false"].includes(frontier)) {
    throw new MindConfigError(`PK_MIND_FRONTIER: on or off, not ${JSON.stringify(frontier.slice(0, 20))}`);
  }
  if (frontier === undefined || ["on", "1", "true"].includes(frontier)) {
    const providers: { provider: Provider; upper: string; keys: string[]; baseEnv: string }[] = [
      { provider: "openai", upper: "OPENAI", keys: ["OPENAI_API_KEY"], baseEnv: "OPENAI_BASE_URL" },
      { provider: "anthropic", upper: "ANTHROPIC", keys: ["ANTHROPIC_API_KEY"], baseEnv: "ANTHROPIC_BASE_URL" },
      { provider: "gemini", upper: "GEMINI", keys: ["GEMINI_API_KEY", "GOOGLE_API_KEY"], baseEnv: "GOOGLE_GEMINI_BASE_URL" },
    ];
    for (const { provider, upper, keys, baseEnv } of providers) {
      const file = value(`PK_${upper}_KEY_FILE`);
      const keyVar = keys.find((k) => value(k) !== undefined);
      const key = file !== undefined ? readKeyFile(file) : keyVar !== undefined ? new MindKey(value(keyVar) as string, keyVar) : undefined;
      if (key === undefined) continue;
      const defaults = FRONTIER_DEFAULTS[provider];
      const model = modelName(value(`PK_${upper}_MODEL`) ?? defaults.model, `PK_${upper}_MODEL`);
      const embedText = provider === "anthropic" ? undefined : value(`PK_${upper}_EMBED_MODEL`) ?? defaults.embedModel;
      const base = value(baseEnv);
      out.push({
        name: model.slice(0, NAME_CHARS),
        provider,
        kind: "frontier",
        model,
        embedModel: embedText === undefined || embedText === "none" ? undefined : modelName(embedText, `PK_${upper}_EMBED_MODEL`),
        baseURL: base === undefined ? defaults.baseURL : mindURL(base, baseEnv, { frontier: true }),
        key,
        node,
      });
    }
  }
  const seen = new Set<string>();
  for (const config of out) {
    if (seen.has(config.name)) throw new MindConfigError(`two minds would be named ${config.name}: give one --mind-name, or another model`);
    seen.add(config.name);
  }
  return out;
}
