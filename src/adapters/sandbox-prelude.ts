// The guest side of a run (adapters/sandbox-engine.ts; docs/adr/017-sandbox.md): JavaScript the
// engine evaluates in each new QuickJS context before the program. It captures the ES intrinsics it
// needs before any program code runs, makes time and chance the run's own (Date and Math.random
// follow state.nowMs and state.seed), takes eval and the Function constructors away, and returns
// `setup(requestJson)`, which builds the capabilities the grants allow from the request's snapshot
// and returns `control(op, value)`:
//   op 0: value is the program's module namespace; calls its hook's export with the run's argument
//         and returns the report;
//   op 1: value is an error that escaped (the module's evaluation); returns the report with it;
//   op 2: returns the report as it stands (the logs of a run stopped by the meter).
// The report is one JSON text built by string concatenation from strings the prelude holds (never
// by walking objects the program could have shaped), plus the program's result serialised by
// JSON.stringify inside the guest, under the meter. The host parses it, bounded, and checks all of
// it again: nothing here is trusted, it only makes honest programs' runs exact and cheap.
//
// No host function is exposed to the guest: capabilities read the snapshot and write effects into
// the guest's own memory, so the guest has no way to call the host at all.
import type { Capability } from "../core/evolve/capabilities.ts";
import { grantedCapabilities, type Grants } from "../core/evolve/manifest.ts";
import { LIMITS } from "../core/util/limits.ts";

const RUN = LIMITS.evolve.run;

/** Bounds the guest API keeps (the host checks them again with checkEffects). */
const BOUNDS = {
  keyCharsMax: RUN.keyCharsMax,
  pathCharsMax: RUN.pathCharsMax,
  valueBytesMax: RUN.valueBytesMax,
  kvKeysMax: RUN.kvKeysMax,
  kvBytesMax: RUN.kvBytesMax,
  fileBytesMax: RUN.fileBytesMax,
  filesMax: RUN.filesMax,
  writesMax: RUN.writesMax,
  logLinesMax: RUN.logLinesMax,
  errorCharsMax: LIMITS.evolve.sandbox.errorCharsMax,
};

/** Name under which setup hands the capabilities to the "pk:program" module (deleted before the program runs). */
export const CAPS_GLOBAL = "__pk_program_capabilities__";

/** The "pk:program" module: every capability name is exported, bound to undefined unless granted. */
export const CAPABILITY_MODULE_SOURCE = `const c = globalThis.${CAPS_GLOBAL};
delete globalThis.${CAPS_GLOBAL};
export const log = c.log, topics = c.topics, kv = c.kv, sensors = c.sensors, files = c.files, clock = c.clock, random = c.random;
`;

const PRELUDE_SOURCE = `(function () {
"use strict";
const G = globalThis;
const B = ${JSON.stringify(BOUNDS)};
const stringify = JSON.stringify, parse = JSON.parse, freeze = Object.freeze, keysOf = Object.keys;
const create = Object.create, hasOwn = Object.hasOwn, defineProperty = Object.defineProperty;
const getPrototypeOf = Object.getPrototypeOf, isArray = Array.isArray, apply = Reflect.apply;
const sortArray = Array.prototype.sort, toStr = String, floor = Math.floor, imul = Math.imul;
const RealDate = G.Date, InternalErr = G.InternalError, ErrorCtor = G.Error;

function mulberry32(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) | 0;
    let t = imul(a ^ (a >>> 15), 1 | a);
    t = (t + imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function refuse() { throw new TypeError("no code from strings in a program"); }
function utf8(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { n += 4; i++; }
    else n += 3;
  }
  return n;
}
function hasControl(s) {
  for (let i = 0; i < s.length; i++) { const c = s.charCodeAt(i); if (c < 0x20 || c === 0x7f) return true; }
  return false;
}
function keyProblem(k) {
  if (typeof k !== "string" || k.length === 0) return "a key must be a non-empty string";
  if (k.length > B.keyCharsMax) return "a key is at most " + B.keyCharsMax + " characters";
  if (hasControl(k)) return "a key has no control characters";
  return undefined;
}
function show(v) {
  const s = typeof v === "string" ? v : typeof v;
  return stringify(s.length > 64 ? s.slice(0, 64) + "..." : s);
}
function sortedKeys(o, prefix) {
  const ks = keysOf(o), out = [];
  for (let i = 0; i < ks.length; i++) if (prefix === undefined || ks[i].startsWith(prefix)) out[out.length] = ks[i];
  return freeze(apply(sortArray, out, []));
}
function describe(e) {
  let name = "Error", message = "";
  try {
    if (typeof e === "object" && e !== null) {
      const n = e.name, m = e.message;
      name = typeof n === "string" ? n : "Error";
      message = typeof m === "string" ? m : "";
    } else message = toStr(e);
  } catch (_) { message = "(an error that cannot be read)"; }
  let kind = "throw";
  try {
    if (InternalErr !== undefined && e instanceof InternalErr) {
      if (message === "out of memory") kind = "memory";
      else if (message === "stack overflow") kind = "stack";
    }
  } catch (_) { /* kind stays throw */ }
  let text = name + ": " + message;
  if (text.length > B.errorCharsMax) text = text.slice(0, B.errorCharsMax);
  return [kind, text];
}

// Time and chance are the run's; no code from strings.
const DateProto = RealDate.prototype;
let nowMs = 0;
function PkDate(a, b, c, d, e, f, g) {
  const n = arguments.length;
  if (new.target === undefined) return new RealDate(nowMs).toString();
  if (n === 0) return new RealDate(nowMs);
  if (n === 1) return new RealDate(a);
  return new RealDate(a, b, n > 2 ? c : 1, n > 3 ? d : 0, n > 4 ? e : 0, n > 5 ? f : 0, n > 6 ? g : 0);
}
PkDate.prototype = DateProto;
PkDate.now = function now() { return nowMs; };
PkDate.parse = RealDate.parse;
PkDate.UTC = RealDate.UTC;
defineProperty(DateProto, "constructor", { value: PkDate, writable: true, configurable: true, enumerable: false });
G.Date = PkDate;
let mathRandom = mulberry32(0);
Math.random = function random() { return mathRandom(); };
const fnKinds = [function () {}, function* () {}, async function () {}, async function* () {}];
for (let i = 0; i < fnKinds.length; i++) defineProperty(getPrototypeOf(fnKinds[i]), "constructor", { value: refuse, writable: false, configurable: false, enumerable: false });
const FunctionProto = getPrototypeOf(fnKinds[0]);
function PkFunction() { refuse(); }
PkFunction.prototype = FunctionProto;
G.Function = PkFunction;
delete G.eval;
delete G.SharedArrayBuffer;
delete G.Atomics;
delete G.WeakRef;
delete G.FinalizationRegistry;

return function setup(json) {
  const R = parse(json);
  const S = R.state, grants = R.grants, outputMax = R.outputBytes;
  nowMs = S.nowMs;
  mathRandom = mulberry32((S.seed ^ 0x9e3779b9) >>> 0);
  let out = 0, overflow = false, lines = 0, dropped = 0;
  let logsJ = "", kvJ = "", filesJ = "", pubJ = "", nKv = 0, nFiles = 0, nPub = 0;
  function line(level, text) {
    if (lines < B.logLinesMax) { logsJ += (lines === 0 ? "" : ",") + "[" + stringify(level) + "," + stringify(text) + "]"; lines++; }
    else dropped++;
  }
  function warn(text) { line("warn", "sandbox: " + text); }
  function spend(bytes) {
    if (overflow) return false;
    out += bytes;
    if (out > outputMax) { overflow = true; warn("output bound of " + outputMax + " bytes spent"); return false; }
    return true;
  }
  const caps = create(null);

/*<log>*/
  if (grants.log) {
    const emit = function (level, m) {
      const text = typeof m === "string" ? m : toStr(m);
      if (spend(utf8(text))) line(level, text);
    };
    caps.log = freeze({
      info(m) { emit("info", m); },
      warn(m) { emit("warn", m); },
      error(m) { emit("error", m); },
    });
  }

/*<kv>*/
  if (grants.kv) {
    const kv = create(null);
    let kvCount = 0, kvBytes = 0;
    const ks = keysOf(S.kv);
    for (let i = 0; i < ks.length; i++) { const v = S.kv[ks[i]]; kv[ks[i]] = v; kvCount++; kvBytes += utf8(ks[i]) + utf8(v); }
    caps.kv = freeze({
      get(key) {
        const p = keyProblem(key);
        if (p !== undefined) { warn("kv.get " + show(key) + ": " + p); return undefined; }
        return hasOwn(kv, key) ? kv[key] : undefined;
      },
      set(key, value) {
        const p = keyProblem(key);
        if (p !== undefined) { warn("kv.set " + show(key) + ": " + p); return false; }
        if (typeof value !== "string") { warn("kv.set " + show(key) + ": a value is a string"); return false; }
        const vb = utf8(value);
        if (vb > B.valueBytesMax) { warn("kv.set " + show(key) + ": a value is at most " + B.valueBytesMax + " bytes"); return false; }
        if (nKv >= B.writesMax) { warn("kv.set: at most " + B.writesMax + " writes in one run"); return false; }
        const had = hasOwn(kv, key), kb = utf8(key);
        const count = kvCount + (had ? 0 : 1), bytes = kvBytes - (had ? kb + utf8(kv[key]) : 0) + kb + vb;
        if (count > B.kvKeysMax || bytes > B.kvBytesMax) { warn("kv.set " + show(key) + ": the namespace's bound is spent"); return false; }
        kv[key] = value; kvCount = count; kvBytes = bytes;
        kvJ += (nKv === 0 ? "" : ",") + "[" + stringify(key) + "," + stringify(value) + "]"; nKv++;
        return true;
      },
      delete(key) {
        const p = keyProblem(key);
        if (p !== undefined) { warn("kv.delete " + show(key) + ": " + p); return false; }
        if (!hasOwn(kv, key)) return false;
        if (nKv >= B.writesMax) { warn("kv.delete: at most " + B.writesMax + " writes in one run"); return false; }
        kvCount--; kvBytes -= utf8(key) + utf8(kv[key]);
        delete kv[key];
        kvJ += (nKv === 0 ? "" : ",") + "[" + stringify(key) + ",null]"; nKv++;
        return true;
      },
      keys(prefix) { return sortedKeys(kv, typeof prefix === "string" ? prefix : undefined); },
    });
  }

/*<topics>*/
function matches(patterns, topic) {
  if (typeof topic !== "string") return false;
  for (let i = 0; i < patterns.length; i++) {
    const p = patterns[i];
    if (p.endsWith("*") ? topic.startsWith(p.slice(0, -1)) : topic === p) return true;
  }
  return false;
}
  const readPatterns = grants.topics.read, publishPatterns = grants.topics.publish;
  if (readPatterns.length > 0 || publishPatterns.length > 0) {
    const mine = create(null);
    const rowsOf = function (topic) {
      const given = hasOwn(S.topics, topic) ? S.topics[topic] : [];
      const own = hasOwn(mine, topic) ? mine[topic] : undefined;
      const rows = [];
      for (let i = 0; i < given.length; i++) {
        const r = given[i];
        if (own !== undefined && hasOwn(own, r.key)) continue;
        rows[rows.length] = freeze({ topic: r.topic, key: r.key, value: r.value === null ? undefined : r.value, origin: r.origin });
      }
      if (own !== undefined) {
        const ok = keysOf(own);
        for (let i = 0; i < ok.length; i++) rows[rows.length] = freeze({ topic, key: ok[i], value: own[ok[i]], origin: "self" });
      }
      return rows;
    };
    caps.topics = freeze({
      read(topic) {
        if (!matches(readPatterns, topic)) { warn("topics.read " + show(topic) + ": not granted"); return freeze([]); }
        return freeze(rowsOf(topic));
      },
      get(topic, key) {
        if (!matches(readPatterns, topic)) { warn("topics.get " + show(topic) + ": not granted"); return undefined; }
        const rows = rowsOf(topic);
        for (let i = 0; i < rows.length; i++) if (rows[i].key === key) return rows[i].value;
        return undefined;
      },
      publish(topic, key, value) {
        if (typeof topic !== "string" || !topic.startsWith("p.") || !matches(publishPatterns, topic)) { warn("topics.publish " + show(topic) + ": not granted"); return false; }
        const p = keyProblem(key);
        if (p !== undefined) { warn("topics.publish " + show(topic) + " " + show(key) + ": " + p); return false; }
        if (typeof value !== "string") { warn("topics.publish " + show(topic) + ": a value is a string"); return false; }
        if (nPub >= B.writesMax) { warn("topics.publish: at most " + B.writesMax + " publishes in one run"); return false; }
        if (!spend(utf8(value))) return false;
        if (!hasOwn(mine, topic)) mine[topic] = create(null);
        mine[topic][key] = value;
        pubJ += (nPub === 0 ? "" : ",") + "[" + stringify(topic) + "," + stringify(key) + "," + stringify(value) + "]"; nPub++;
        return true;
      },
    });
  }

/*<sensors>*/
  if (grants.sensors) {
    caps.sensors = freeze({
      latest() {
        const out = [];
        for (let i = 0; i < S.sensors.length; i++) { const r = S.sensors[i]; out[i] = freeze({ sensor: r.sensor, value: r.value, at: r.at }); }
        return freeze(out);
      },
    });
  }

/*<files>*/
function pathProblem(p) {
  if (typeof p !== "string" || p.length === 0) return "a path must be a non-empty string";
  if (p.length > B.pathCharsMax) return "a path is at most " + B.pathCharsMax + " characters";
  if (p[0] === "/") return "paths are relative to the program's folder";
  if (hasControl(p) || p.indexOf("\\\\") >= 0) return "a path has no control characters or backslashes";
  const parts = p.split("/");
  for (let i = 0; i < parts.length; i++) { const q = parts[i]; if (q === "" || q === "." || q === "..") return "a path has no empty, . or .. parts"; }
  return undefined;
}
  if (grants.files) {
    const fs = create(null);
    let fileCount = 0;
    const fk = keysOf(S.files);
    for (let i = 0; i < fk.length; i++) { fs[fk[i]] = S.files[fk[i]]; fileCount++; }
    caps.files = freeze({
      read(path) {
        const p = pathProblem(path);
        if (p !== undefined) { warn("files.read " + show(path) + ": " + p); return undefined; }
        return hasOwn(fs, path) ? fs[path] : undefined;
      },
      write(path, text) {
        const p = pathProblem(path);
        if (p !== undefined) { warn("files.write " + show(path) + ": " + p); return false; }
        if (typeof text !== "string" || utf8(text) > B.fileBytesMax) { warn("files.write " + show(path) + ": a file is a string of at most " + B.fileBytesMax + " bytes"); return false; }
        const had = hasOwn(fs, path);
        if (!had && fileCount >= B.filesMax) { warn("files.write " + show(path) + ": at most " + B.filesMax + " files"); return false; }
        if (nFiles >= B.writesMax) { warn("files.write: at most " + B.writesMax + " writes in one run"); return false; }
        fs[path] = text; if (!had) fileCount++;
        filesJ += (nFiles === 0 ? "" : ",") + "[" + stringify(path) + "," + stringify(text) + "]"; nFiles++;
        return true;
      },
      list() { return sortedKeys(fs, undefined); },
      remove(path) {
        const p = pathProblem(path);
        if (p !== undefined) { warn("files.remove " + show(path) + ": " + p); return false; }
        if (!hasOwn(fs, path)) return false;
        if (nFiles >= B.writesMax) { warn("files.remove: at most " + B.writesMax + " writes in one run"); return false; }
        delete fs[path]; fileCount--;
        filesJ += (nFiles === 0 ? "" : ",") + "[" + stringify(path) + ",null]"; nFiles++;
        return true;
      },
    });
  }

/*<clock>*/
  if (grants.clock) caps.clock = freeze({ now() { return S.nowMs; } });

/*<random>*/
  if (grants.random) {
    const next = mulberry32(S.seed);
    caps.random = freeze({
      next() { return next(); },
      int(below) {
        const b = floor(+below);
        if (!(b >= 1)) return 0;
        return floor(next() * (b > 4294967296 ? 4294967296 : b));
      },
    });
  }
/*<>*/

  defineProperty(G, "${CAPS_GLOBAL}", { value: freeze(caps), writable: false, configurable: true, enumerable: false });

  function report(error, resultJ) {
    let text = "{\\"out\\":" + out + ",\\"dropped\\":" + dropped + ",\\"logs\\":[" + logsJ + "],\\"kv\\":[" + kvJ + "],\\"files\\":[" + filesJ + "],\\"publish\\":[" + pubJ + "]";
    if (overflow && error === undefined) error = ["output", "over the output bound of " + outputMax + " bytes"];
    if (error !== undefined) text += ",\\"error\\":[" + stringify(error[0]) + "," + stringify(error[1]) + "]";
    else if (resultJ !== undefined) text += ",\\"result\\":" + resultJ;
    return text + "}";
  }

  return function control(op, value) {
    if (op === 2) return report(undefined, undefined);
    if (op === 1) return report(describe(value), undefined);
    let fn;
    try { fn = value[R.exportName]; } catch (e) { return report(describe(e), undefined); }
    if (typeof fn !== "function") return report(["contract", "the program exports no function " + R.exportName], undefined);
    const a = R.arg;
    let result;
    try {
      if (a.kind === "sensor.prefilter") {
        const rs = [];
        for (let i = 0; i < a.readings.length; i++) { const r = a.readings[i]; rs[i] = freeze({ sensor: r.sensor, value: r.value, at: r.at }); }
        result = fn(freeze(rs));
      } else if (a.kind === "command") {
        const xs = [];
        for (let i = 0; i < a.args.length; i++) xs[i] = a.args[i];
        result = fn(freeze(xs));
      } else if (a.kind === "topic") {
        const r = a.row;
        result = fn(freeze({ topic: r.topic, key: r.key, value: r.value === null ? undefined : r.value, origin: r.origin }));
      } else result = fn();
    } catch (e) { return report(describe(e), undefined); }
    if (result === undefined) return report(undefined, undefined);
    if (a.kind === "command" && typeof result === "string" && !spend(utf8(result))) return report(undefined, undefined);
    let resultJ;
    try { resultJ = stringify(result); } catch (e) { return report(["contract", "the result is not JSON data: " + describe(e)[1]], undefined); }
    if (typeof resultJ !== "string") return report(["contract", "the result is not JSON data"], undefined);
    return report(undefined, resultJ);
  };
};
})()`;

const BLOCK = /\/\*<(\w*)>\*\/\n/;
const PARTS = PRELUDE_SOURCE.split(BLOCK);
const cache = new Map<string, string>();

/** The prelude with the blocks of the capabilities granted (QuickJS compiles about 10 KB a millisecond: less text, a faster start). */
export function preludeSource(grants: Grants): string {
  const granted = grantedCapabilities(grants);
  const key = [...granted].sort().join(",");
  let text = cache.get(key);
  if (text === undefined) {
    const out = [PARTS[0] ?? ""];
    for (let i = 1; i + 1 < PARTS.length; i += 2) {
      const name = PARTS[i] ?? "";
      if (name === "" || granted.has(name as Capability)) out.push(PARTS[i + 1] ?? "");
    }
    text = out.join("").replace(/^[ \t]+/gm, "");
    cache.set(key, text);
  }
  return text;
}
