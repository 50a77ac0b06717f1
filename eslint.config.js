// Lint: typescript-eslint's recommended rules everywhere, plus the purity rules of DESIGN.md §2
// for src/core: no node: modules, no ambient time, randomness or timers, no imports from the
// layers that do I/O.
import tseslint from "typescript-eslint";

const ambient = [
  { name: "setTimeout", message: "Core counts time in ticks: use Timeout from src/core/util/timeout.ts." },
  { name: "setInterval", message: "Core counts time in ticks: the node's tick loop drives it." },
  { name: "setImmediate", message: "Core is synchronous." },
  { name: "process", message: "Core receives its configuration; it does not read the process." },
  { name: "performance", message: "Core receives time from the node." },
];

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
        patterns: [
          { group: ["node:*"], message: "src/core is pure: no node: modules (DESIGN.md §2)." },
          { group: ["**/adapters/**", "**/node/**", "**/cli/**", "**/sim/**"],
            message: "src/core must not import the I/O layers." },
        ],
      }],
      "no-restricted-syntax": ["error",
        { selector: "MemberExpression[object.name='Date'][property.name='now']", message: "No ambient time in core." },
        { selector: "NewExpression[callee.name='Date']", message: "No ambient time in core." },
        { selector: "MemberExpression[object.name='Math'][property.name='random']", message: "Use the injected Rng." },
        { selector: "MemberExpression[object.name='performance'][property.name='now']", message: "No ambient time in core." },
        { selector: "MemberExpression[object.name='crypto'][property.name=/^(randomUUID|getRandomValues|randomBytes|randomInt)$/]", message: "Use the injected Rng." },
        { selector: "CallExpression[callee.name='require']", message: "ESM only." },
      ],
    },
  },
);
