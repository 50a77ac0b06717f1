// Lint: typescript-eslint's recommended rules everywhere, plus the boundaries of DESIGN.md §2-§3
// (issue 12; ADR 010):
//   src/core      pure and synchronous: no Node built-ins (node:x or bare x), no imports from the
//                 layers above it, no ambient time, randomness, timers or I/O, and no async,
//                 await, Promise or dynamic import();
//   src/adapters  may not import src/node, src/cli or src/sim; they see the node through the
//                 interfaces of src/node/ports.ts, and import only types from there.
// Import cycles are the graph's business, not a file's: .dependency-cruiser.mjs, also run by
// `npm run lint`. test/lint/ plants a violation of each rule and checks that it is reported.
import { builtinModules } from "node:module";
import tseslint from "typescript-eslint";

const ambient = [
  { name: "setTimeout", message: "Core counts time in ticks: use Timeout from src/core/util/timeout.ts." },
  { name: "setInterval", message: "Core counts time in ticks: the node's tick loop drives it." },
  { name: "setImmediate", message: "Core is synchronous." },
  { name: "queueMicrotask", message: "Core is synchronous." },
  { name: "fetch", message: "Core does no I/O: adapters do." },
  { name: "process", message: "Core receives its configuration; it does not read the process." },
  { name: "performance", message: "Core receives time from the node." },
];

const sync = "src/core is synchronous (DESIGN.md §2.1): return what is to be done and let the node run it";

export default tseslint.config(
  { ignores: ["node_modules/**", "dist/**", ".pk/**", "web/vendor/**"] },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
    },
  },
  {
    files: ["src/core/**/*.ts"],
    rules: {
      "no-restricted-globals": ["error", ...ambient],
      "no-restricted-imports": ["error", {
        // Bare built-in names ("fs", "crypto", "fs/promises") as exact names: as patterns, "util"
        // would also match src/core/util/.
        paths: builtinModules.map((name) => ({ name, message: "src/core is pure: no Node built-ins (DESIGN.md §2)." })),
        patterns: [
          { group: ["node:*"], message: "src/core is pure: no node: modules (DESIGN.md §2)." },
          { group: ["**/adapters", "**/adapters/**", "**/node", "**/node/**", "**/cli", "**/cli/**", "**/sim", "**/sim/**"],
            message: "src/core must not import the layers above it (DESIGN.md §3)." },
        ],
      }],
      "no-restricted-syntax": ["error",
        { selector: "MemberExpression[object.name='Date'][property.name='now']", message: "No ambient time in core." },
        { selector: "NewExpression[callee.name='Date']", message: "No ambient time in core." },
        { selector: "MemberExpression[object.name='Math'][property.name='random']", message: "Use the injected Rng." },
        { selector: "MemberExpression[object.name='performance'][property.name='now']", message: "No ambient time in core." },
        { selector: "MemberExpression[object.name='crypto'][property.name=/^(randomUUID|getRandomValues|randomBytes|randomInt)$/]", message: "Use the injected Rng." },
        { selector: "CallExpression[callee.name='require']", message: "ESM only." },
        { selector: ":function[async=true]", message: `${sync}: no async functions.` },
        { selector: "AwaitExpression", message: `${sync}: no await.` },
        { selector: "ForOfStatement[await=true]", message: `${sync}: no for await.` },
        { selector: "Identifier[name=/^Promise(Like|Constructor)?$/]", message: `${sync}: no Promise, as a value or a type.` },
        { selector: "ImportExpression", message: `${sync}: no dynamic import(), which returns a Promise.` },
      ],
    },
  },
  {
    files: ["src/adapters/**/*.ts"],
    rules: {
      "@typescript-eslint/no-restricted-imports": ["error", {
        patterns: [
          { group: ["**/node", "**/node/**", "!**/node/ports.ts", "**/cli", "**/cli/**", "**/sim", "**/sim/**"],
            message: "src/adapters never import the node, the CLI or the simulator: they see the node through the interfaces of src/node/ports.ts (DESIGN.md §3)." },
          { group: ["**/node/ports.ts"], allowTypeImports: true,
            message: "src/adapters import only types from src/node/ports.ts (`import type`)." },
        ],
      }],
      "no-restricted-syntax": ["error",
        { selector: "ImportExpression[source.value=/(^|\\/)(node|cli|sim)(\\/|$)/]",
          message: "src/adapters never import the node, the CLI or the simulator, not even by import() (DESIGN.md §3)." },
      ],
    },
  },
);
