// The import graph of src/ has no cycle (issue 12; ADR 010). Run by `npm run lint` after ESLint:
//   depcruise src --config .dependency-cruiser.mjs
// ESLint checks what each file may import by name (eslint.config.js); this checks the graph the
// imports make, with every specifier resolved to its file.
/** @type {import("dependency-cruiser").IConfiguration} */
export default {
  forbidden: [
    {
      name: "no-cycle",
      severity: "error",
      comment:
        "No import cycle anywhere under src/, type-only imports and dynamic import() included: a runtime " +
        "cycle lets a module read another's bindings before they are initialised, and a type-only one " +
        "still ties two layers or concepts into one. Move the shared part (often a type) into a file " +
        "both import, or pass it in (ADR 010).",
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    // Keep `import type` edges in the graph (they vanish when types are stripped).
    tsPreCompilationDeps: true,
    doNotFollow: { path: "node_modules" },
    exclude: { path: "node_modules" },
    moduleSystems: ["es6"],
  },
};
