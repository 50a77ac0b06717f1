// The world a program sees (docs/protocols/programs.md): the capability API, declared as the text
// of a `.d.ts` (core reads no files, so the declaration is a string the verifier hands to the
// TypeScript checker), and the hooks a program may attach to, each with its contract. Nothing else
// exists for a program: no Node, no timers, no network, no `globalThis` beyond the ES library, and
// each capability only when its manifest asks for it (manifest.ts) and the node grants it.
//
// `checkHookResult` is the contract's other half: what a run returned, checked by the host before
// the kernel uses it (the sandbox and the dry run call it).

/** The one module a program may import: the capability API. */
export const CAPABILITY_MODULE = "pk:program";

/** What a manifest may ask for, by the name a program imports. */
export const CAPABILITIES = ["log", "topics", "kv", "sensors", "files", "clock", "random"] as const;
export type Capability = (typeof CAPABILITIES)[number];

/** The hooks the kernel offers; `topic:NAME` is written with the topic's name in a manifest. */
export const HOOK_KINDS = ["sensor.prefilter", "task", "command", "probe", "topic"] as const;
export type HookKind = (typeof HOOK_KINDS)[number];

/** The function a program exports for its hook. */
export const HOOK_EXPORTS: Readonly<Record<HookKind, string>> = {
  "sensor.prefilter": "prefilter",
  task: "task",
  command: "command",
  probe: "probe",
  topic: "onTopic",
};

/** One line per hook, for prompts and reports. */
export const HOOK_SUMMARIES: Readonly<Record<HookKind, string>> = {
  "sensor.prefilter": "export function prefilter(readings: readonly Reading[]): readonly Reading[] — the sensor readings before the Brain sees them; returns those to keep (no more than it was given, each of a sensor it was given)",
  task: "export function task(): void — runs every periodMs (manifest), guardable: a guarded task moves to a survivor with its KV namespace",
  command: "export function command(args: readonly string[]): string — a new shell command named after the program; returns its output",
  probe: "export function probe(): ProbeResult — a health check: { ok, detail? }",
  topic: "export function onTopic(row: TopicRow): void — called for each new row of the topic named in the hook (topic:NAME)",
};

/**
 * The capability API as a TypeScript declaration. Programs import from "pk:program" by name
 * (`import { log, type Reading } from "pk:program"`); a value imported without its grant is refused
 * by the verifier, and the sandbox binds only granted capabilities.
 */
export const CAPABILITY_DTS = `// The capability API of a p-kernel program. Nothing else exists for a program.
declare module "${CAPABILITY_MODULE}" {
  /** One sensor reading. */
  export interface Reading {
    /** The sensor: temperature, humidity, pressure, light, or another the node reads. */
    readonly sensor: string;
    /** Its value, a finite number. */
    readonly value: number;
    /** When it was read, in milliseconds on the program's clock. */
    readonly at: number;
  }

  /** One row of a gossip topic. */
  export interface TopicRow {
    readonly topic: string;
    readonly key: string;
    /** The row's value as text; undefined when the row was deleted. */
    readonly value: string | undefined;
    /** The node that wrote it. */
    readonly origin: string;
  }

  /** What a probe answers. */
  export interface ProbeResult {
    readonly ok: boolean;
    readonly detail?: string;
  }

  /** Capability "log": lines into the program's log (ps, evolve log), counted against its output bound. */
  export const log: {
    info(message: string): void;
    warn(message: string): void;
    error(message: string): void;
  };

  /** Capability "topics": gossip topics, within the manifest's patterns (topics.read, topics.publish). */
  export const topics: {
    /** The live rows of a topic the grant lets it read. */
    read(topic: string): readonly TopicRow[];
    /** One row's value, or undefined. */
    get(topic: string, key: string): string | undefined;
    /** Writes a row; false when the grant does not cover the topic or the output bound is spent. */
    publish(topic: string, key: string, value: string): boolean;
  };

  /** Capability "kv": a key-value namespace of the program's own (other programs' keys are not visible). */
  export const kv: {
    get(key: string): string | undefined;
    /** False when the namespace's bound is spent. */
    set(key: string, value: string): boolean;
    delete(key: string): boolean;
    keys(prefix?: string): readonly string[];
  };

  /** Capability "sensors": the node's sensor readings. */
  export const sensors: {
    /** The newest reading of each sensor. */
    latest(): readonly Reading[];
  };

  /** Capability "files": a folder of the program's own; paths are relative to it, without "..". */
  export const files: {
    read(path: string): string | undefined;
    /** False when the folder's bound is spent or the path is not allowed. */
    write(path: string, text: string): boolean;
    list(): readonly string[];
    remove(path: string): boolean;
  };

  /** Capability "clock": replayable time. */
  export const clock: {
    /** The run's time in milliseconds since the epoch: fixed for one run, recorded with it, so a replay sees the same. */
    now(): number;
  };

  /** Capability "random": seeded randomness (the seed is recorded with the run, so a replay draws the same numbers). */
  export const random: {
    /** A number in [0, 1). */
    next(): number;
    /** A whole number in [0, below). */
    int(below: number): number;
  };

  /** The hooks, by kind: a program exports the function of its manifest's hook. */
  export interface Hooks {
    /** export function prefilter: the readings before the Brain sees them; returns those to keep (no more than given, each of a sensor given). */
    "sensor.prefilter": (readings: readonly Reading[]) => readonly Reading[];
    /** export function task: runs every periodMs of the manifest. */
    task: () => void;
    /** export function command: a shell command named after the program; returns its output. */
    command: (args: readonly string[]) => string;
    /** export function probe: a health check. */
    probe: () => ProbeResult;
    /** export function onTopic: each new row of the topic named in the hook (topic:NAME). */
    topic: (row: TopicRow) => void;
  }
}
`;

/**
 * A module that type-checks only if the program (imported as "./program") exports its hook's
 * function with the hook's type. The verifier compiles it beside the program.
 */
export function hookContractSource(kind: HookKind): string {
  const name = HOOK_EXPORTS[kind];
  return `import type { Hooks } from "${CAPABILITY_MODULE}";\n`
    + `import { ${name} } from "./program";\n`
    + `export const contract: Hooks[${JSON.stringify(kind)}] = ${name};\n`;
}

/** A sensor reading as the host hands it to a prefilter and checks what comes back. */
export interface HookReading {
  readonly sensor: string;
  readonly value: number;
  readonly at: number;
}

/** A problem with what a run of `kind` returned, or undefined when it keeps the hook's contract. */
export function checkHookResult(kind: HookKind, result: unknown, input: { readonly readings?: readonly HookReading[]; readonly outputBytesMax: number }): string | undefined {
  switch (kind) {
    case "sensor.prefilter": {
      const given = input.readings ?? [];
      if (!Array.isArray(result)) return "prefilter must return an array of readings";
      if (result.length > given.length) return `prefilter returned ${result.length} readings for ${given.length} given`;
      const sensors = new Set(given.map((r) => r.sensor));
      for (let i = 0; i < result.length; i++) {
        const r: unknown = result[i];
        if (typeof r !== "object" || r === null) return `reading ${i} is not an object`;
        const { sensor, value, at } = r as Record<string, unknown>;
        if (typeof sensor !== "string" || !sensors.has(sensor)) return `reading ${i} is of a sensor it was not given`;
        if (typeof value !== "number" || !Number.isFinite(value)) return `reading ${i} has no finite value`;
        if (typeof at !== "number" || !Number.isFinite(at)) return `reading ${i} has no finite time`;
      }
      return undefined;
    }
    case "task":
    case "topic":
      return result === undefined ? undefined : `${HOOK_EXPORTS[kind]} must return nothing`;
    case "command":
      if (typeof result !== "string") return "command must return a string";
      return utf8Length(result) > input.outputBytesMax ? `command output is over ${input.outputBytesMax} bytes` : undefined;
    case "probe": {
      if (typeof result !== "object" || result === null || Array.isArray(result)) return "probe must return { ok, detail? }";
      const { ok, detail } = result as Record<string, unknown>;
      if (typeof ok !== "boolean") return "probe's ok must be a boolean";
      if (detail !== undefined && typeof detail !== "string") return "probe's detail must be a string";
      if (typeof detail === "string" && utf8Length(detail) > input.outputBytesMax) return `probe's detail is over ${input.outputBytesMax} bytes`;
      return undefined;
    }
  }
}

/** UTF-8 length of a string without encoding it (lone surrogates count as the 3 bytes of U+FFFD). */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
