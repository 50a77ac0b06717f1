import { test } from "node:test";
import assert from "node:assert/strict";
import { formatProgressLine, parseProgressLine, ProgressEmitter, PROGRESS_LINE_PREFIX } from "../../src/core/util/progress-line.ts";

test("a progress line round-trips through format and parse", () => {
  const report = { task: "train", done: 120, total: 400, unit: "steps", stage: "epoch 3" };
  const line = formatProgressLine(report);
  assert.ok(line.startsWith(PROGRESS_LINE_PREFIX) && line.endsWith("\n"));
  assert.deepEqual(parseProgressLine(line.slice(0, -1)), report);
  assert.deepEqual(parseProgressLine(formatProgressLine({ task: "sfs-fetch", done: 0, total: null, unit: "bytes" }).trimEnd()),
    { task: "sfs-fetch", done: 0, total: null, unit: "bytes" });
});

test("the parser refuses every malformed line, so the caller shows it as text", () => {
  const bad = [
    "",
    "epoch 3: loss 0.5",
    "pk-progress/2 {\"task\":\"train\",\"done\":1,\"total\":2,\"unit\":\"steps\"}",
    "pk-progress/1 ",
    "pk-progress/1 {",
    "pk-progress/1 []",
    "pk-progress/1 null",
    "pk-progress/1 {\"task\":\"train\",\"done\":1,\"total\":2}",
    "pk-progress/1 {\"task\":\"Train\",\"done\":1,\"total\":2,\"unit\":\"steps\"}",
    "pk-progress/1 {\"task\":\"train\",\"done\":3,\"total\":2,\"unit\":\"steps\"}",
    "pk-progress/1 {\"task\":\"train\",\"done\":-1,\"total\":2,\"unit\":\"steps\"}",
    "pk-progress/1 {\"task\":\"train\",\"done\":\"1\",\"total\":2,\"unit\":\"steps\"}",
    "pk-progress/1 {\"task\":\"train\",\"done\":1,\"total\":2,\"unit\":\"steps\",\"extra\":1}",
    "pk-progress/1 {\"task\":\"train\",\"done\":1,\"total\":2,\"unit\":\"steps\",\"stage\":\"a\\u001b[2Jb\"}",
    "pk-progress/1 {\"task\":\"train\",\"done\":1,\"total\":1e400,\"unit\":\"steps\"}",
    `pk-progress/1 {"task":"train","done":1,"total":2,"unit":"steps","stage":"${"x".repeat(600)}"}`,
  ];
  for (const line of bad) assert.equal(parseProgressLine(line), undefined, line.slice(0, 80));
  assert.throws(() => formatProgressLine({ task: "train", done: 5, total: 2, unit: "steps" }), RangeError);
});

test("the emitter sends the first, one per interval, a new stage and the last report", () => {
  let now = 0;
  const lines: string[] = [];
  const emitter = new ProgressEmitter((line) => lines.push(line), () => now, 200);
  for (let done = 0; done <= 100; done++) {
    emitter.report({ task: "train", done, total: 100, unit: "steps", ...(done >= 50 ? { stage: "second half" } : {}) });
    now += 10;
  }
  emitter.finish();
  const reports = lines.map((l) => parseProgressLine(l.trimEnd()));
  assert.ok(reports.every((r) => r !== undefined));
  const dones = reports.map((r) => r!.done);
  assert.equal(dones[0], 0);
  assert.equal(dones[dones.length - 1], 100);
  assert.ok(dones.includes(50), "the change of stage goes out at once");
  // 1,000 ms of reports at one per 200 ms, plus the first, the stage change and the last.
  assert.ok(lines.length >= 5 && lines.length <= 9, `${lines.length} lines`);
});
