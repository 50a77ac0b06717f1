// What verifying a program says (docs/adr/016-verify.md): every rule by name, each with its
// verdict and where it applies. The rules are checked by adapters/verify-ts.ts; this file names them,
// says what each one asks, and renders a report for the shell and `evolve log`.
import { LIMITS } from "../util/limits.ts";

/** The rules, in the order a report lists them, with what each one asks of a program. */
export const RULES = {
  manifest: "the manifest is given once (header or beside) and decodes strictly",
  size: `the source is within ${LIMITS.evolve.program.sourceBytesMax} bytes, its syntax tree within ${LIMITS.evolve.verify.astNodesMax} nodes and ${LIMITS.evolve.verify.astDepthMax} levels`,
  syntax: "the source parses as TypeScript",
  types: "it type-checks, strictly, against the ES2022 library and the capability API alone",
  hook: "it exports its hook's function with the hook's type",
  imports: "it imports only names from \"pk:program\": no other module, require, import(), import.meta, import =, export ... from",
  grants: "every capability it imports is granted by its manifest",
  "dynamic-code": "no eval and no Function (called or constructed): no code made from strings",
  globals: "no globalThis, global, window, self, process, require, module, exports, Buffer",
  prototype: "no constructor, __proto__, prototype, caller, callee, __defineGetter__ and kin, prepareStackTrace: no prototype escapes",
  "computed-keys": "a[k] only with a number, a symbol or literal keys that name no forbidden property",
  reflection: "no Reflect, no Proxy, no Object.defineProperty, getPrototypeOf, setPrototypeOf, getOwnPropertyDescriptor(s) or kin, no Object as a value",
  webassembly: "no WebAssembly",
  "shared-memory": "no SharedArrayBuffer, no Atomics",
  with: "no with statement",
  ambient: "no declare, namespace or module declarations, no /// directives, no @ts-ignore, @ts-expect-error or @ts-nocheck",
  casts: "no type assertions (x as T, <T>x) but `as const`, no any: the checker's word stands",
  determinism: "no Date.now, new Date() or Date() without arguments, Math.random, Intl, no Date or Math as values: time and chance come from clock and random",
  async: "no async functions, await or Promise: hooks run to completion",
  "type-complexity": "no conditional, mapped, infer or template literal types: the checker's time stays bounded",
  loops: "a loop that cannot end is refused; other loops are bounded by gas (warning)",
  recursion: "a function that calls itself is bounded by the stack and gas (warning)",
  regex: "a regular expression built at run time, or with a quantified group holding a quantifier, is bounded by gas and wall time (warning)",
  checker: "the compiler ran to the end on it (a compiler failure refuses the program and rebuilds the checker)",
  emit: "it compiles to JavaScript",
} as const;

export type RuleName = keyof typeof RULES;
export const RULE_NAMES = Object.keys(RULES) as RuleName[];

/** pass; fail (the program is refused); warn (allowed, noted); skip (not checked: an earlier rule failed in a way that makes it unsafe or meaningless). */
export type Verdict = "pass" | "fail" | "warn" | "skip";

export interface Finding {
  /** Line and column in the source, from 1; 0 when the finding is about the whole program. */
  readonly line: number;
  readonly col: number;
  readonly message: string;
}

export interface RuleResult {
  readonly rule: RuleName;
  readonly verdict: Verdict;
  /** The first findingsPerRuleMax places; `count` says how many there were. */
  readonly findings: readonly Finding[];
  readonly count: number;
  /** Why it was skipped. */
  readonly reason?: string;
}

export interface VerifyReport {
  /** True when no rule failed: the program may go on to its dry run. */
  readonly ok: boolean;
  readonly program: { readonly name: string; readonly version: string; readonly hook: string } | undefined;
  /** Every rule of RULES, in order. */
  readonly rules: readonly RuleResult[];
  /** The emitted JavaScript (an ES module importing "pk:program"), when ok. */
  readonly js: string | undefined;
  readonly stats: { readonly sourceBytes: number; readonly astNodes: number; readonly astDepth: number };
  /** Milliseconds spent (measured, for the bench and `evolve log`; never a verdict). */
  readonly timings: { readonly totalMs: number; readonly checkMs: number; readonly emitMs: number };
}

/** The rules that failed, as "rule line:col message" lines (the first finding of each). */
export function failures(report: VerifyReport): string[] {
  return report.rules.filter((r) => r.verdict === "fail").map((r) => {
    const f = r.findings[0];
    return f === undefined ? r.rule : `${r.rule} ${f.line}:${f.col} ${f.message}`;
  });
}

/** The report as text: one line per rule, its findings indented under it. */
export function formatReport(report: VerifyReport): string {
  const lines: string[] = [];
  const head = report.program === undefined ? "program" : `${report.program.name} ${report.program.version} (${report.program.hook})`;
  lines.push(`${head}: ${report.ok ? "verified" : "refused"} in ${report.timings.totalMs.toFixed(1)} ms`);
  for (const rule of report.rules) {
    lines.push(`  ${rule.verdict.padEnd(4)} ${rule.rule}${rule.reason === undefined ? "" : ` (${rule.reason})`}`);
    for (const f of rule.findings) lines.push(`         ${f.line}:${f.col} ${f.message}`);
    if (rule.count > rule.findings.length) lines.push(`         and ${rule.count - rule.findings.length} more`);
  }
  return lines.join("\n");
}
