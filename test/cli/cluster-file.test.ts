// cluster.json validation (DESIGN.md §8): a malformed file is refused with a message that says
// where and what, and the schema is TypeBox (the project's one validation library).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readCluster } from "../../src/cli/main.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

const goodNode = { id: "0123456789abcdef", pid: 123, listen: "127.0.0.1:7401", api: "http://127.0.0.1:7501", data: "/tmp/n1", argv: ["node", "pk.js"] };

function withFile(t: { after: (fn: () => void) => void }, content: string): string {
  const dir = mkdtempSync(join(tmpdir(), "pk-cluster-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "cluster.json"), content);
  return dir;
}

test("cluster.json: a valid file is read back as written; none at all is undefined", (t) => {
  const cluster = { token: "tok", nodes: [goodNode, { ...goodNode, id: "fedcba9876543210", pid: null, name: "n2", state: "stopped" }] };
  assert.deepEqual(readCluster(withFile(t, JSON.stringify(cluster))), cluster);
  const empty = mkdtempSync(join(tmpdir(), "pk-cluster-"));
  t.after(() => rmSync(empty, { recursive: true, force: true }));
  assert.equal(readCluster(empty), undefined);
});

test("cluster.json: each malformation is reported with where and what", (t) => {
  const cases: Array<[unknown, string]> = [
    [[], "the file: expected object, got []"],
    [{ nodes: [] }, "token: missing"],
    [{ token: "", nodes: [] }, "token: expected a non-empty string, got \"\""],
    [{ token: "t", nodes: {} }, "nodes: expected an array of at most 64 nodes, got {}"],
    [{ token: "t", nodes: Array.from({ length: 65 }, () => goodNode) }, "nodes: expected an array of at most 64 nodes, got [{"],
    [{ token: "t", nodes: [goodNode, { ...goodNode, pid: "12" }] }, "nodes[1].pid: expected a positive integer or null, got \"12\""],
    [{ token: "t", nodes: [{ ...goodNode, pid: 0 }] }, "nodes[0].pid: expected a positive integer or null, got 0"],
    [{ token: "t", nodes: [{ ...goodNode, argv: ["node"] }] }, "nodes[0].argv: expected an array of at least 2 strings (the node's command line), got [\"node\"]"],
    [{ token: "t", nodes: [{ ...goodNode, argv: ["node", 7] }] }, "nodes[0].argv[1]: expected string, got 7"],
    [{ token: "t", nodes: [{ ...goodNode, state: "gone" }] }, "nodes[0].state: expected \"running\" or \"stopped\", got \"gone\""],
    [{ token: "t", nodes: [{ ...goodNode, listen: undefined }] }, "nodes[0].listen: missing"],
  ];
  for (const [content, problem] of cases) {
    const dir = withFile(t, JSON.stringify(content));
    const path = join(dir, "cluster.json");
    assert.throws(() => readCluster(dir), (error: Error) => {
      assert.ok(error.message.startsWith(`${path} is not a cluster file (${problem}`), `${error.message}\n  wanted: ${problem}`);
      assert.ok(error.message.endsWith("; move it away to start over"), error.message);
      return true;
    });
  }
  const dir = withFile(t, "{ not json");
  assert.throws(() => readCluster(dir), /cluster\.json is not valid JSON; move it away to start over/);
});

test("zod is gone: not a dependency, not imported anywhere", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as Record<string, Record<string, string> | undefined>;
  for (const field of ["dependencies", "devDependencies", "peerDependencies", "optionalDependencies"]) {
    assert.ok(pkg[field]?.["zod"] === undefined, `zod in ${field}`);
  }
  const walk = (dir: string): string[] => readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : /\.[cm]?[jt]s$/.test(name) ? [path] : [];
  });
  for (const file of [...walk(join(ROOT, "src")), ...walk(join(ROOT, "bin"))]) {
    assert.doesNotMatch(readFileSync(file, "utf8"), /from\s+["']zod["']|import\(\s*["']zod["']\s*\)|require\(\s*["']zod["']\s*\)/, file);
  }
});
