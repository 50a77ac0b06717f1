// The verifier (issue 15; docs/adr/016-verify.md): the gate a generated program passes before it
// runs anywhere. TypeScript's compiler API in process, with one warm checker state reused across
// programs: an in-memory CompilerHost holding the ES2022 library files (parsed and bound once),
// the capability API (core/evolve/capabilities.ts) and, per program, the program and a contract
// module that type-checks only if the program exports its hook's function with the hook's type.
// The host never touches the file system after the library is read: a `/// <reference path>` or
// an import of anything but "pk:program" finds nothing.
//
// Order: size (bytes, then the syntax tree's nodes and depth, measured without recursion, before
// any recursive pass: TypeScript's parser recurses and its checker is quadratic in a left-deep
// chain) → syntax → the static rules over the syntax tree (names resolved by the checker, so a
// local `self` is not the global one) → types and the hook's contract (skipped when the program
// holds type-level computation that could make the checker run away) → emit, when nothing failed.
// Every rule of RULES gets a verdict. Anything the compiler throws fails the `checker` rule, and
// the warm state is dropped and rebuilt: no program can leave the checker broken.
//
// The checker runs on the calling thread: 3–20 ms warm for a typical program, and, for the worst
// programs within the bounds found so far (thousands of overload resolutions, arrays of thousands
// of distinct object shapes), about a second. It cannot be interrupted, so the node runs it off its
// tick (a worker), never inside one.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import ts from "typescript";
import { CAPABILITIES, CAPABILITY_DTS, CAPABILITY_MODULE, HOOK_EXPORTS, HOOK_SUMMARIES, hookContractSource, utf8Length, type Capability, type HookKind } from "../core/evolve/capabilities.ts";
import { grantedCapabilities, hookName, readManifest, type Manifest, type Program } from "../core/evolve/manifest.ts";
import { RULE_NAMES, type Finding, type RuleName, type RuleResult, type Verdict, type VerifyReport } from "../core/evolve/verdict.ts";
import { LIMITS } from "../core/util/limits.ts";

const VERIFY = LIMITS.evolve.verify;
const SOURCE_BYTES_MAX = LIMITS.evolve.program.sourceBytesMax;

const PROGRAM_FILE = "/program.ts";
const CONTRACT_FILE = "/contract.ts";
const CAPABILITY_FILE = "/pk-program.d.ts";
const LIB_FOLDER = "/lib/";
const LIB_ROOT = "lib.es2022.d.ts";

/** Strict, ES2022, no default library (the host hands in the ES library files: no lib.dom), no @types. */
const OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  noLib: true,
  types: [],
  strict: true,
  noImplicitReturns: true,
  noUncheckedIndexedAccess: true,
  noFallthroughCasesInSwitch: true,
  noImplicitOverride: true,
  useUnknownInCatchVariables: true,
  isolatedModules: true,
  skipLibCheck: true,
  skipDefaultLibCheck: true,
  removeComments: true,
  newLine: ts.NewLineKind.LineFeed,
  sourceMap: false,
  declaration: false,
  noEmitOnError: false,
  allowJs: false,
};

/** Globals a program has no business naming (rule `globals`); a local of the same name is fine. */
const GLOBALS: ReadonlyMap<string, string> = new Map([
  ["globalThis", "globalThis: the global object"],
  ["global", "global: the global object"],
  ["window", "window: the global object"],
  ["self", "self: the global object"],
  ["process", "process: the host process"],
  ["module", "module: CommonJS"],
  ["exports", "exports: CommonJS"],
  ["Buffer", "Buffer: Node's buffer"],
  ["Deno", "Deno"],
  ["Bun", "Bun"],
  ["console", "console: there is none; use log from \"pk:program\""],
  ["setTimeout", "setTimeout: no timers; a task hook runs periodically"],
  ["setInterval", "setInterval: no timers; a task hook runs periodically"],
  ["setImmediate", "setImmediate: no timers"],
  ["queueMicrotask", "queueMicrotask: no job queue"],
  ["fetch", "fetch: no network"],
  ["XMLHttpRequest", "XMLHttpRequest: no network"],
  ["WebSocket", "WebSocket: no network"],
  ["importScripts", "importScripts: no code loading"],
  ["postMessage", "postMessage: no messages out of the sandbox"],
]);

/** Property names that lead out through prototypes and functions (rule `prototype`). */
const PROTO_NAMES: ReadonlySet<string> = new Set([
  "constructor", "__proto__", "prototype", "caller", "callee", "arguments",
  "__defineGetter__", "__defineSetter__", "__lookupGetter__", "__lookupSetter__",
  "prepareStackTrace", "captureStackTrace",
]);

/** Members of Object that reflect on or reshape objects (rule `reflection`). */
const OBJECT_REFLECTION: ReadonlySet<string> = new Set([
  "defineProperty", "defineProperties", "setPrototypeOf", "getPrototypeOf", "getOwnPropertyDescriptor",
  "getOwnPropertyDescriptors", "getOwnPropertyNames", "getOwnPropertySymbols", "create",
]);

const TS_DIRECTIVE = /@ts-(ignore|expect-error|nocheck)\b/g;
const TRIPLE_SLASH = /^[ \t]*\/\/\/[ \t]*<(reference|amd-module|amd-dependency)\b/gm;
/** A group holding a quantifier, itself quantified: `(a+)+`, `(\w*x)*`, `(a|b{2,})+` (a backtracking hazard). */
const NESTED_QUANTIFIER = /\((?:[^()\\]|\\.)*(?:[+*]|\{\d+,?\d*\})(?:[^()\\]|\\.)*\)(?:[+*]|\{\d+,?\d*\})/;

class Rules {
  readonly #results = new Map<RuleName, { verdict: Verdict; findings: Finding[]; count: number; reason?: string }>();
  /** The parsed program, once there is one: findings then carry their line and column. */
  sf: ts.SourceFile | undefined;

  constructor() {
    for (const rule of RULE_NAMES) this.#results.set(rule, { verdict: "pass", findings: [], count: 0 });
  }

  /** A finding at a node (or a position, or the whole program: 0:0). */
  add(rule: RuleName, verdict: "fail" | "warn", at: ts.Node | number | undefined, message: string): void {
    const result = this.#results.get(rule);
    if (result === undefined || result.verdict === "skip") return;
    if (verdict === "fail" || result.verdict === "pass") result.verdict = verdict;
    result.count++;
    if (result.findings.length >= VERIFY.findingsPerRuleMax) return;
    let line = 0;
    let col = 0;
    if (at !== undefined && this.sf !== undefined) {
      const pos = typeof at === "number" ? at : at.getStart(this.sf);
      const lc = this.sf.getLineAndCharacterOfPosition(Math.min(pos, this.sf.text.length));
      line = lc.line + 1;
      col = lc.character + 1;
    }
    const text = message.length > VERIFY.findingCharsMax ? `${message.slice(0, VERIFY.findingCharsMax - 3)}...` : message;
    result.findings.push({ line, col, message: text });
  }

  skip(rule: RuleName, reason: string): void {
    const result = this.#results.get(rule);
    if (result !== undefined && result.verdict === "pass") this.#results.set(rule, { verdict: "skip", findings: [], count: 0, reason });
  }

  skipAllBut(keep: readonly RuleName[], reason: string): void {
    for (const rule of RULE_NAMES) if (!keep.includes(rule)) this.skip(rule, reason);
  }

  failed(rule?: RuleName): boolean {
    if (rule !== undefined) return this.#results.get(rule)?.verdict === "fail";
    return [...this.#results.values()].some((r) => r.verdict === "fail");
  }

  list(): RuleResult[] {
    return RULE_NAMES.map((rule) => {
      const r = this.#results.get(rule) as { verdict: Verdict; findings: Finding[]; count: number; reason?: string };
      return r.reason === undefined ? { rule, verdict: r.verdict, findings: r.findings, count: r.count } : { rule, verdict: r.verdict, findings: r.findings, count: r.count, reason: r.reason };
    });
  }
}

/** Nodes and depth of a syntax tree, walked with an explicit stack; stops counting past the bounds. */
function treeSize(sf: ts.SourceFile): { nodes: number; depth: number } {
  let nodes = 0;
  let depth = 0;
  const stack: [ts.Node, number][] = [[sf, 0]];
  while (stack.length > 0) {
    const [node, d] = stack.pop() as [ts.Node, number];
    nodes++;
    if (d > depth) depth = d;
    if (nodes > VERIFY.astNodesMax || depth > VERIFY.astDepthMax) break;
    ts.forEachChild(node, (child) => {
      stack.push([child, d + 1]);
    });
  }
  return { nodes, depth };
}

function flatten(diagnostic: ts.Diagnostic): string {
  return ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n").replace(/\s+/g, " ");
}

function hasModifier(node: ts.Node, kind: ts.SyntaxKind): boolean {
  return ts.canHaveModifiers(node) && (ts.getModifiers(node)?.some((m) => m.kind === kind) ?? false);
}

/** A literal's truthiness when it is a constant (true, 1, "x", !0, !false), else undefined. */
function constantTruth(expr: ts.Expression | undefined): boolean | undefined {
  if (expr === undefined) return true;
  while (ts.isParenthesizedExpression(expr)) expr = expr.expression;
  if (expr.kind === ts.SyntaxKind.TrueKeyword) return true;
  if (expr.kind === ts.SyntaxKind.FalseKeyword) return false;
  if (ts.isNumericLiteral(expr)) return Number(expr.text) !== 0;
  if (ts.isStringLiteral(expr) || ts.isNoSubstitutionTemplateLiteral(expr)) return expr.text !== "";
  if (ts.isPrefixUnaryExpression(expr) && expr.operator === ts.SyntaxKind.ExclamationToken) {
    const inner = constantTruth(expr.operand);
    return inner === undefined ? undefined : !inner;
  }
  return undefined;
}

type Loop = ts.WhileStatement | ts.DoStatement | ts.ForStatement;

/** True when something in the loop's body can leave it: a break aimed at it, a return, or a throw outside any try. */
function loopCanExit(loop: Loop): boolean {
  const inner = new Set<string>();
  const collect = (node: ts.Node): void => {
    if (ts.isLabeledStatement(node)) inner.add(node.label.text);
    ts.forEachChild(node, collect);
  };
  collect(loop.statement);
  let exits = false;
  const visit = (node: ts.Node, nested: boolean, inTry: boolean): void => {
    if (exits || ts.isFunctionLike(node) || ts.isClassLike(node)) return;
    if (ts.isReturnStatement(node)) exits = true;
    else if (ts.isThrowStatement(node) && !inTry) exits = true;
    // An unlabelled break leaves the innermost loop or switch; a labelled one leaves this loop
    // unless its label is inside the loop.
    else if (ts.isBreakStatement(node) && (node.label === undefined ? !nested : !inner.has(node.label.text))) exits = true;
    const nestedHere = nested || ts.isIterationStatement(node, false) || ts.isSwitchStatement(node);
    if (ts.isTryStatement(node)) {
      visit(node.tryBlock, nestedHere, true);
      if (node.catchClause !== undefined) visit(node.catchClause, nestedHere, inTry);
      if (node.finallyBlock !== undefined) visit(node.finallyBlock, nestedHere, inTry);
      return;
    }
    ts.forEachChild(node, (child) => visit(child, nestedHere, inTry));
  };
  visit(loop.statement, false, false);
  return exits;
}

/** The name a declaration gives a property, when it is written literally. */
function literalName(name: ts.PropertyName | ts.BindingName | undefined): string | undefined {
  if (name === undefined) return undefined;
  if (ts.isIdentifier(name) || ts.isPrivateIdentifier(name) || ts.isStringLiteral(name) || ts.isNoSubstitutionTemplateLiteral(name) || ts.isNumericLiteral(name)) return name.text;
  return undefined;
}

interface Warm {
  readonly libs: readonly ts.SourceFile[];
  readonly capability: ts.SourceFile;
  readonly loadMs: number;
}

/** Reads the ES2022 library files (following their `/// <reference lib>` chain) from the typescript package. */
function loadLibrary(): Warm {
  const started = performance.now();
  const folder = dirname(ts.getDefaultLibFilePath(OPTIONS));
  const libs: ts.SourceFile[] = [];
  const seen = new Set<string>();
  const queue = [LIB_ROOT];
  while (queue.length > 0) {
    const name = queue.pop() as string;
    if (seen.has(name)) continue;
    seen.add(name);
    const text = readFileSync(join(folder, name), "utf8");
    const sf = ts.createSourceFile(LIB_FOLDER + name, text, { languageVersion: ts.ScriptTarget.ES2022 }, false, ts.ScriptKind.TS);
    libs.push(sf);
    for (const ref of sf.libReferenceDirectives) queue.push(`lib.${ref.fileName.toLowerCase()}.d.ts`);
  }
  const capability = ts.createSourceFile(CAPABILITY_FILE, CAPABILITY_DTS, { languageVersion: ts.ScriptTarget.ES2022 }, false, ts.ScriptKind.TS);
  return { libs, capability, loadMs: performance.now() - started };
}

export interface VerifierStats {
  /** Programs verified by this verifier. */
  readonly programs: number;
  /** Times the warm state was built (1, plus one after each compiler failure). */
  readonly warmups: number;
  readonly libFiles: number;
  /** Milliseconds the last warm-up took to read and parse the library. */
  readonly loadMs: number;
}

/**
 * Verifies programs against the capability API. One instance is meant to live as long as the node:
 * the library's syntax trees are parsed and bound once and shared by every program checked.
 */
export class ProgramVerifier {
  #warm: Warm | undefined;
  #programs = 0;
  #warmups = 0;

  get stats(): VerifierStats {
    return { programs: this.#programs, warmups: this.#warmups, libFiles: this.#warm?.libs.length ?? 0, loadMs: this.#warm?.loadMs ?? 0 };
  }

  /** Reads the library now (otherwise the first program pays for it). */
  warmUp(): void {
    this.#ensureWarm();
  }

  /** Verifies a source whose manifest is its header, or comes beside it (manifest.ts readManifest). */
  verifySource(source: string, beside?: unknown): VerifyReport {
    const manifest = readManifest(source, beside);
    return manifest.ok ? this.#run(source, manifest.value, []) : this.#run(source, undefined, manifest.errors);
  }

  /** Verifies a program whose manifest is already decoded. */
  verify(program: Program): VerifyReport {
    return this.#run(program.source, program.manifest, []);
  }

  #ensureWarm(): Warm {
    if (this.#warm === undefined) {
      this.#warm = loadLibrary();
      this.#warmups++;
    }
    return this.#warm;
  }

  #run(source: string, manifest: Manifest | undefined, manifestErrors: readonly string[]): VerifyReport {
    const started = performance.now();
    this.#programs++;
    const rules = new Rules();
    const sourceBytes = utf8Length(source);
    let stats = { sourceBytes, astNodes: 0, astDepth: 0 };
    let js: string | undefined;
    let checkMs = 0;
    let emitMs = 0;
    const finish = (): VerifyReport => {
      const ok = !rules.failed();
      return {
        ok,
        program: manifest === undefined ? undefined : { name: manifest.name, version: manifest.version, hook: hookName(manifest.hook) },
        rules: rules.list(),
        js: ok ? js : undefined,
        stats,
        timings: { totalMs: performance.now() - started, checkMs, emitMs },
      };
    };

    for (const error of manifestErrors) rules.add("manifest", "fail", undefined, error);
    if (manifest === undefined && manifestErrors.length === 0) rules.add("manifest", "fail", undefined, "no manifest");
    if (manifest === undefined) {
      rules.skip("hook", "no manifest: the hook is not known");
      rules.skip("grants", "no manifest: nothing is granted");
    }
    if (sourceBytes > SOURCE_BYTES_MAX) {
      rules.add("size", "fail", undefined, `the source is ${sourceBytes} bytes, over ${SOURCE_BYTES_MAX}`);
      rules.skipAllBut(["manifest", "size"], "the source is too large to parse");
      return finish();
    }

    let sf: ts.SourceFile;
    try {
      sf = ts.createSourceFile(PROGRAM_FILE, source, { languageVersion: ts.ScriptTarget.ES2022 }, true, ts.ScriptKind.TS);
    } catch (error) {
      // The parser recurses: a program nested thousands deep overflows the stack before the tree can be measured.
      rules.add("size", "fail", undefined, error instanceof RangeError ? "nested too deeply for the parser" : `the parser failed: ${String(error)}`);
      rules.skipAllBut(["manifest", "size"], "the source could not be parsed");
      return finish();
    }
    rules.sf = sf;
    const size = treeSize(sf);
    stats = { sourceBytes, astNodes: size.nodes, astDepth: size.depth };
    if (size.nodes > VERIFY.astNodesMax) rules.add("size", "fail", undefined, `the syntax tree has over ${VERIFY.astNodesMax} nodes`);
    if (size.depth > VERIFY.astDepthMax) rules.add("size", "fail", undefined, `the syntax tree is over ${VERIFY.astDepthMax} levels deep`);
    if (rules.failed("size")) {
      rules.skipAllBut(["manifest", "size"], "the program is too large to check");
      return finish();
    }

    const checkStarted = performance.now();
    try {
      const warm = this.#ensureWarm();
      const contract = manifest === undefined ? undefined
        : ts.createSourceFile(CONTRACT_FILE, hookContractSource(manifest.hook.kind), { languageVersion: ts.ScriptTarget.ES2022 }, true, ts.ScriptKind.TS);
      const files = new Map<string, ts.SourceFile>();
      for (const lib of warm.libs) files.set(lib.fileName, lib);
      files.set(CAPABILITY_FILE, warm.capability);
      files.set(PROGRAM_FILE, sf);
      if (contract !== undefined) files.set(CONTRACT_FILE, contract);
      // A new program each time (passing the last one as oldProgram measured no faster, and would
      // keep its checker alive): what is shared is the library's parsed and bound syntax trees.
      const program = ts.createProgram({ rootNames: [...files.keys()], options: OPTIONS, host: memoryHost(files) });
      const checker = program.getTypeChecker();

      for (const d of program.getSyntacticDiagnostics(sf)) rules.add("syntax", "fail", d.start, flatten(d));
      typeComplexity(sf, rules);
      const checkerSafe = !rules.failed("type-complexity");
      if (!checkerSafe) {
        for (const rule of ["types", "hook", "computed-keys"] as const) rules.skip(rule, "type-level computation refused (type-complexity): not type-checked");
      }
      staticRules(sf, checker, checkerSafe, manifest, rules);
      if (checkerSafe) {
        for (const d of program.getSemanticDiagnostics(sf)) {
          if (d.category === ts.DiagnosticCategory.Error) rules.add("types", "fail", d.start, flatten(d));
        }
        for (const d of program.getGlobalDiagnostics()) rules.add("types", "fail", undefined, flatten(d));
        if (manifest !== undefined && contract !== undefined) checkHook(sf, program, checker, contract, manifest.hook.kind, rules);
      }
      checkMs = performance.now() - checkStarted;

      if (rules.failed()) rules.skip("emit", "a rule failed: nothing is compiled");
      else {
        const emitStarted = performance.now();
        let out: string | undefined;
        const result = program.emit(sf, (name, text) => {
          if (name.endsWith(".js")) out = text;
        });
        emitMs = performance.now() - emitStarted;
        if (result.emitSkipped || out === undefined) rules.add("emit", "fail", undefined, "the compiler emitted nothing");
        for (const d of result.diagnostics) if (d.category === ts.DiagnosticCategory.Error) rules.add("emit", "fail", d.start, flatten(d));
        js = out;
      }
    } catch (error) {
      // The compiler threw (a stack overflow, an internal assertion): the program is refused, what
      // was not checked says so, and the warm state is rebuilt for the next program.
      rules.add("checker", "fail", undefined, `the compiler failed: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
      rules.skipAllBut(["manifest", "size", "checker"], "the compiler failed");
      this.#warm = undefined;
      checkMs = performance.now() - checkStarted;
      js = undefined;
    }
    return finish();
  }
}

function memoryHost(files: ReadonlyMap<string, ts.SourceFile>): ts.CompilerHost {
  return {
    getSourceFile: (name) => files.get(name),
    getDefaultLibFileName: () => LIB_FOLDER + LIB_ROOT,
    getDefaultLibLocation: () => LIB_FOLDER,
    writeFile: () => undefined,
    getCurrentDirectory: () => "/",
    getCanonicalFileName: (name) => name,
    useCaseSensitiveFileNames: () => true,
    getNewLine: () => "\n",
    fileExists: (name) => files.has(name),
    readFile: () => undefined,
    directoryExists: () => false,
    getDirectories: () => [],
    realpath: (name) => name,
    // Only the contract's "./program" resolves (to the program); "pk:program" is the capability
    // file's ambient module; anything else is not found.
    resolveModuleNameLiterals: (literals, containingFile) => literals.map((literal) => (
      containingFile === CONTRACT_FILE && literal.text === "./program"
        ? { resolvedModule: { resolvedFileName: PROGRAM_FILE, extension: ts.Extension.Ts, isExternalLibraryImport: false } }
        : { resolvedModule: undefined })),
    resolveTypeReferenceDirectiveReferences: (references) => references.map(() => ({ resolvedTypeReferenceDirective: undefined })),
  };
}

/** Rule type-complexity: type-level computation, which can make the checker run for seconds. */
function typeComplexity(sf: ts.SourceFile, rules: Rules): void {
  const visit = (node: ts.Node): void => {
    if (ts.isConditionalTypeNode(node)) rules.add("type-complexity", "fail", node, "a conditional type");
    else if (ts.isMappedTypeNode(node)) rules.add("type-complexity", "fail", node, "a mapped type");
    else if (ts.isInferTypeNode(node)) rules.add("type-complexity", "fail", node, "an infer type");
    else if (ts.isTemplateLiteralTypeNode(node)) rules.add("type-complexity", "fail", node, "a template literal type");
    ts.forEachChild(node, visit);
  };
  visit(sf);
}

/** The hook's contract: the export is there, and the contract module assigning it to the hook's type checks. */
function checkHook(sf: ts.SourceFile, program: ts.Program, checker: ts.TypeChecker, contract: ts.SourceFile, kind: HookKind, rules: Rules): void {
  const name = HOOK_EXPORTS[kind];
  const moduleSymbol = checker.getSymbolAtLocation(sf);
  const exported = moduleSymbol === undefined ? undefined : checker.getExportsOfModule(moduleSymbol).find((s) => s.name === name);
  if (exported === undefined) {
    rules.add("hook", "fail", undefined, `the program must export its hook's function: ${HOOK_SUMMARIES[kind]}`);
    return;
  }
  const at = exported.declarations?.find((d) => d.getSourceFile() === sf);
  for (const d of program.getSemanticDiagnostics(contract)) {
    if (d.category !== ts.DiagnosticCategory.Error) continue;
    rules.add("hook", "fail", at, `${name} does not fit the hook ${kind}: ${flatten(d)} (${HOOK_SUMMARIES[kind]})`);
  }
}

/** Every rule that reads the syntax tree, in one walk. */
function staticRules(sf: ts.SourceFile, checker: ts.TypeChecker, checkerSafe: boolean, manifest: Manifest | undefined, rules: Rules): void {
  const text = sf.text;
  for (const m of text.matchAll(TS_DIRECTIVE)) rules.add("ambient", "fail", m.index, `@ts-${m[1] ?? ""}: the checker's word stands`);
  for (const m of text.matchAll(TRIPLE_SLASH)) rules.add("ambient", "fail", m.index, `/// <${m[1] ?? ""}>: no directives`);

  const granted = manifest === undefined ? new Set<Capability>() : grantedCapabilities(manifest.capabilities);
  const capabilityNames: ReadonlySet<string> = new Set<string>(CAPABILITIES);

  /** True when the identifier names a global (or nothing at all), not a declaration of the program. */
  const isGlobal = (id: ts.Identifier): boolean => {
    // `{ globalThis }` names a property and reads a value: the value's symbol is the one that counts.
    const symbol = ts.isShorthandPropertyAssignment(id.parent) && id.parent.name === id
      ? checker.getShorthandAssignmentValueSymbol(id.parent)
      : checker.getSymbolAtLocation(id);
    if (symbol === undefined) return true;
    return !(symbol.declarations ?? []).some((d) => d.getSourceFile() === sf);
  };

  /** True when the identifier is read as a value (not a property's name, not a declaration's name, not in a type). */
  const isValueReference = (id: ts.Identifier): boolean => {
    const parent = id.parent;
    if (ts.isPropertyAccessExpression(parent) && parent.name === id) return false;
    if (ts.isQualifiedName(parent) && parent.right === id) return false;
    if (ts.isPropertyAssignment(parent) && parent.name === id) return false;
    if (ts.isShorthandPropertyAssignment(parent)) return true; // { process } reads process
    if ((parent as { name?: ts.Node }).name === id) return false; // a declaration's own name
    if (ts.isBindingElement(parent) && parent.propertyName === id) return false;
    if (ts.isLabeledStatement(parent) || ts.isBreakOrContinueStatement(parent)) return false;
    if (ts.isImportSpecifier(parent) || ts.isExportSpecifier(parent) || ts.isImportClause(parent) || ts.isNamespaceImport(parent)) return false;
    if (ts.isMetaProperty(parent)) return false;
    return true;
  };

  const proto = (at: ts.Node, name: string | undefined): void => {
    if (name !== undefined && PROTO_NAMES.has(name)) rules.add("prototype", "fail", at, `${name}: no prototype or function internals`);
  };

  /** A computed key read: a number, a symbol, or literals that name no forbidden property. */
  const computedKey = (at: ts.Node, key: ts.Expression): void => {
    const literal = ts.isStringLiteral(key) || ts.isNoSubstitutionTemplateLiteral(key) ? key.text : ts.isNumericLiteral(key) ? key.text : undefined;
    if (literal !== undefined) {
      proto(at, literal);
      return;
    }
    if (!checkerSafe) return;
    const type = checker.getTypeAtLocation(key);
    const parts = type.isUnion() ? type.types : [type];
    for (const part of parts) {
      if (part.flags & (ts.TypeFlags.NumberLike | ts.TypeFlags.ESSymbolLike)) continue;
      if (part.isStringLiteral()) {
        proto(at, part.value);
        continue;
      }
      rules.add("computed-keys", "fail", key, `a computed key of type ${checker.typeToString(type)}: use a number, a literal key or a Map`);
      return;
    }
  };

  const checkImport = (node: ts.ImportDeclaration): void => {
    const from = ts.isStringLiteral(node.moduleSpecifier) ? node.moduleSpecifier.text : "";
    if (from !== CAPABILITY_MODULE) {
      rules.add("imports", "fail", node, `import from ${JSON.stringify(from.slice(0, 60))}: only "${CAPABILITY_MODULE}" exists for a program`);
      return;
    }
    const clause = node.importClause;
    if (clause === undefined) {
      rules.add("imports", "fail", node, `import "${CAPABILITY_MODULE}" without names: import the capabilities by name`);
      return;
    }
    if (clause.isTypeOnly) return;
    if (clause.name !== undefined) rules.add("imports", "fail", clause.name, `a default import: import the capabilities by name, import { log } from "${CAPABILITY_MODULE}"`);
    const bindings = clause.namedBindings;
    if (bindings === undefined) return;
    if (ts.isNamespaceImport(bindings)) {
      rules.add("imports", "fail", bindings, `import * as ${bindings.name.text}: import the capabilities by name, import { log } from "${CAPABILITY_MODULE}"`);
      return;
    }
    for (const spec of bindings.elements) {
      if (spec.isTypeOnly) continue;
      const imported = (spec.propertyName ?? spec.name).text;
      if (capabilityNames.has(imported) && manifest !== undefined && !granted.has(imported as Capability)) {
        rules.add("grants", "fail", spec, `${imported} is not granted: the manifest's capabilities do not ask for it`);
      }
    }
  };

  /** Rule determinism and reflection for the global Date, Math and Object: only as their members, in safe forms. */
  const checkNamespaceUse = (id: ts.Identifier, name: string): void => {
    const parent = id.parent;
    const member = ts.isPropertyAccessExpression(parent) && parent.expression === id ? parent.name.text : undefined;
    if (name === "Math") {
      if (member === undefined) rules.add("determinism", "fail", id, "Math as a value: use its members (Math.max...), and random from \"pk:program\"");
      else if (member === "random") rules.add("determinism", "fail", parent, "Math.random: use random from \"pk:program\" (seeded, replayable)");
    } else if (name === "Date") {
      if (member === "now") rules.add("determinism", "fail", parent, "Date.now: use clock from \"pk:program\" (replayable)");
      else if (member === "UTC" || member === "parse") return;
      else if (ts.isNewExpression(parent) && parent.expression === id) {
        if ((parent.arguments?.length ?? 0) === 0) rules.add("determinism", "fail", parent, "new Date() reads the time: new Date(clock.now())");
      } else if (ts.isCallExpression(parent) && parent.expression === id) rules.add("determinism", "fail", parent, "Date() reads the time: use clock from \"pk:program\"");
      else rules.add("determinism", "fail", id, "Date as a value: only new Date(ms), Date.UTC and Date.parse");
    } else if (name === "Object") {
      if (member === undefined) rules.add("reflection", "fail", id, "Object as a value: only its members, e.g. Object.keys");
      else if (OBJECT_REFLECTION.has(member)) rules.add("reflection", "fail", parent, `Object.${member}: no reflection`);
    }
  };

  const checkIdentifier = (id: ts.Identifier): void => {
    const name = id.text;
    if (!isValueReference(id)) return;
    const interesting = name === "eval" || name === "Function" || name === "require" || GLOBALS.has(name) || name === "Reflect" || name === "Proxy"
      || name === "WebAssembly" || name === "SharedArrayBuffer" || name === "Atomics" || name === "Promise" || name === "Intl"
      || name === "Date" || name === "Math" || name === "Object" || name === "RegExp";
    if (!interesting || !isGlobal(id)) return;
    switch (name) {
      case "eval": rules.add("dynamic-code", "fail", id, "eval: no code from strings"); return;
      case "Function": rules.add("dynamic-code", "fail", id, "Function: no code from strings"); return;
      case "require": rules.add("imports", "fail", id, `require: only import { ... } from "${CAPABILITY_MODULE}"`); return;
      case "Reflect": case "Proxy": rules.add("reflection", "fail", id, `${name}: no reflection`); return;
      case "WebAssembly": rules.add("webassembly", "fail", id, "WebAssembly: no machine code from a program"); return;
      case "SharedArrayBuffer": case "Atomics": rules.add("shared-memory", "fail", id, `${name}: no shared memory (a timer, a way to block)`); return;
      case "Promise": rules.add("async", "fail", id, "Promise: hooks run to completion"); return;
      case "Intl": rules.add("determinism", "fail", id, "Intl: its results depend on the host (locale, time zone, time)"); return;
      case "RegExp": {
        const call = id.parent;
        if ((ts.isNewExpression(call) || ts.isCallExpression(call)) && call.expression === id) {
          const first = call.arguments?.[0];
          if (first === undefined || !(ts.isStringLiteral(first) || ts.isNoSubstitutionTemplateLiteral(first)) || NESTED_QUANTIFIER.test(first.text)) {
            rules.add("regex", "warn", call, "a regular expression built at run time: its matching is bounded by gas and wall time only");
          }
        }
        return;
      }
      case "Date": case "Math": case "Object": checkNamespaceUse(id, name); return;
      default: rules.add("globals", "fail", id, GLOBALS.get(name) ?? name);
    }
  };

  /** The function-like declarations enclosing a node, nearest first, by their symbols (for recursion). */
  const functionSymbols = new Map<ts.Node, ts.Symbol | undefined>();
  const functionSymbol = (fn: ts.SignatureDeclaration): ts.Symbol | undefined => {
    if (functionSymbols.has(fn)) return functionSymbols.get(fn);
    let nameNode: ts.Node | undefined = fn.name;
    if (nameNode === undefined && (ts.isArrowFunction(fn) || ts.isFunctionExpression(fn)) && ts.isVariableDeclaration(fn.parent)) nameNode = fn.parent.name;
    const symbol = nameNode === undefined ? undefined : checker.getSymbolAtLocation(nameNode);
    functionSymbols.set(fn, symbol);
    return symbol;
  };
  /** True when a call's callee is a function the call is inside of (direct recursion). */
  const callsItself = (call: ts.Node, callee: ts.Symbol): boolean => {
    for (let at: ts.Node | undefined = call.parent; at !== undefined; at = at.parent) {
      if (ts.isFunctionLike(at) && functionSymbol(at) === callee) return true;
    }
    return false;
  };

  const visit = (node: ts.Node, inType: boolean): void => {
    const type = inType || (ts.isTypeNode(node) && !ts.isExpressionWithTypeArguments(node)) || ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node);
    if (node.kind === ts.SyntaxKind.AnyKeyword) {
      rules.add("casts", "fail", node, "any: the checker's word stands");
    }
    if (hasModifier(node, ts.SyntaxKind.DeclareKeyword)) rules.add("ambient", "fail", node, "declare: a program declares nothing it does not define");
    if (type) {
      ts.forEachChild(node, (child) => visit(child, true));
      return;
    }
    switch (node.kind) {
      case ts.SyntaxKind.Identifier:
        checkIdentifier(node as ts.Identifier);
        break;
      case ts.SyntaxKind.ImportDeclaration:
        checkImport(node as ts.ImportDeclaration);
        return;
      case ts.SyntaxKind.ImportEqualsDeclaration:
        rules.add("imports", "fail", node, "import = require(...): only import { ... } from \"pk:program\"");
        return;
      case ts.SyntaxKind.ExportDeclaration:
        if ((node as ts.ExportDeclaration).moduleSpecifier !== undefined) rules.add("imports", "fail", node, "export ... from: a program re-exports nothing");
        break;
      case ts.SyntaxKind.ExportAssignment:
        if ((node as ts.ExportAssignment).isExportEquals === true) rules.add("imports", "fail", node, "export =: CommonJS; export the hook's function by name");
        break;
      case ts.SyntaxKind.CallExpression: {
        const call = node as ts.CallExpression;
        if (call.expression.kind === ts.SyntaxKind.ImportKeyword) {
          rules.add("imports", "fail", node, "import(): no dynamic import");
        } else if (ts.isIdentifier(call.expression)) {
          const callee = checker.getSymbolAtLocation(call.expression);
          if (callee !== undefined && callsItself(call, callee)) {
            rules.add("recursion", "warn", call, `${call.expression.text} calls itself: bounded by the stack and gas only`);
          }
        }
        break;
      }
      case ts.SyntaxKind.MetaProperty:
        if ((node as ts.MetaProperty).keywordToken === ts.SyntaxKind.ImportKeyword) rules.add("imports", "fail", node, "import.meta: nothing about the module is visible");
        break;
      case ts.SyntaxKind.PropertyAccessExpression:
        proto((node as ts.PropertyAccessExpression).name, (node as ts.PropertyAccessExpression).name.text);
        break;
      case ts.SyntaxKind.ElementAccessExpression:
        computedKey(node, (node as ts.ElementAccessExpression).argumentExpression);
        break;
      case ts.SyntaxKind.BindingElement: {
        const element = node as ts.BindingElement;
        if (ts.isObjectBindingPattern(element.parent)) {
          if (element.propertyName !== undefined && ts.isComputedPropertyName(element.propertyName)) computedKey(element, element.propertyName.expression);
          else proto(element, literalName(element.propertyName ?? element.name));
        }
        break;
      }
      case ts.SyntaxKind.PropertyAssignment:
      case ts.SyntaxKind.ShorthandPropertyAssignment:
      case ts.SyntaxKind.MethodDeclaration:
      case ts.SyntaxKind.PropertyDeclaration:
      case ts.SyntaxKind.GetAccessor:
      case ts.SyntaxKind.SetAccessor:
        proto(node, literalName((node as ts.NamedDeclaration).name as ts.PropertyName | undefined));
        break;
      case ts.SyntaxKind.WithStatement:
        rules.add("with", "fail", node, "with: no dynamic scopes");
        break;
      case ts.SyntaxKind.ModuleDeclaration:
        rules.add("ambient", "fail", node, "a namespace or module declaration: a program is one module");
        return;
      case ts.SyntaxKind.AsExpression: {
        const target = (node as ts.AsExpression).type;
        if (!(ts.isTypeReferenceNode(target) && ts.isIdentifier(target.typeName) && target.typeName.text === "const")) {
          rules.add("casts", "fail", node, "a type assertion (as): the checker's word stands");
        }
        break;
      }
      case ts.SyntaxKind.TypeAssertionExpression:
        rules.add("casts", "fail", node, "a type assertion (<T>x): the checker's word stands");
        break;
      case ts.SyntaxKind.AwaitExpression:
        rules.add("async", "fail", node, "await: hooks run to completion");
        break;
      case ts.SyntaxKind.ForOfStatement:
        if ((node as ts.ForOfStatement).awaitModifier !== undefined) rules.add("async", "fail", node, "for await: hooks run to completion");
        break;
      case ts.SyntaxKind.WhileStatement:
      case ts.SyntaxKind.DoStatement:
      case ts.SyntaxKind.ForStatement: {
        const loop = node as Loop;
        const condition = ts.isForStatement(loop) ? loop.condition : loop.expression;
        const word = ts.isWhileStatement(loop) ? "while" : ts.isDoStatement(loop) ? "do...while" : "for";
        if (constantTruth(condition) === true && !loopCanExit(loop)) rules.add("loops", "fail", node, `a ${word} loop that never ends: its condition is always true and nothing leaves it`);
        else rules.add("loops", "warn", node, `a ${word} loop: bounded by gas`);
        break;
      }
      case ts.SyntaxKind.RegularExpressionLiteral: {
        const body = (node as ts.RegularExpressionLiteral).text;
        if (NESTED_QUANTIFIER.test(body)) rules.add("regex", "warn", node, "a quantified group holding a quantifier: matching may backtrack for long, bounded by gas and wall time only");
        break;
      }
      default:
        break;
    }
    if (ts.isFunctionLike(node) && hasModifier(node, ts.SyntaxKind.AsyncKeyword)) {
      rules.add("async", "fail", node, "an async function: hooks run to completion");
    }
    ts.forEachChild(node, (child) => visit(child, false));
  };
  visit(sf, false);
}
