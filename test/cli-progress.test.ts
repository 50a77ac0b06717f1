// The progress renderer of `pk` (src/cli/progress.ts), driven by an injected clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatAmount, formatDuration, Progress, ProgressLineSplitter, progressMode, StreamedProgress, type ProgressMode } from "../src/cli/progress.ts";
import { formatProgressLine, parseProgressLine } from "../src/core/util/progress-line.ts";

function drive(mode: ProgressMode, steps: number, msPerStep: number, total: number | null = steps): { out: string; writes: number } {
  let now = 1_000;
  let out = "";
  let writes = 0;
  const progress = new Progress({ label: "sim", unit: "ticks", total: total ?? undefined, mode, write: (t) => { out += t; writes++; }, now: () => now, columns: () => 100 });
  for (let i = 1; i <= steps; i++) {
    now += msPerStep;
    progress.update(i);
  }
  progress.finish();
  return { out, writes };
}

test("on a terminal the bar is redrawn in place at most 10 times a second, with rate and time left, and finishes", () => {
  const { out, writes } = drive("bar", 1000, 5); // 5 s of work, 1,000 updates
  assert.ok(writes <= 5 * 10 + 2, `${writes} redraws for 5 s`);
  assert.ok(writes >= 40, `${writes} redraws`);
  const frames = out.split("\r").filter((f) => f !== "");
  assert.ok(frames.every((f) => f.includes("\x1b[K")), "every frame clears the rest of the line");
  const middle = frames[Math.floor(frames.length / 2)]!;
  assert.match(middle, /^sim  \d\d% \[#+\.+\] \d+\/1,000 ticks  200 ticks\/s  \d+\.\d s left/);
  const last = frames[frames.length - 1]!;
  assert.match(last, /^sim 100% \[#{20}\] 1,000\/1,000 ticks  200 ticks\/s  done in 5\.0 s\x1b\[K\n$/);
  assert.equal(out.split("\n").length, 2, "one newline, at the end");
});

test("off a terminal it writes plain lines at an interval, no escapes, and a final line", () => {
  const { out } = drive("lines", 1000, 10); // 10 s
  assert.ok(!out.includes("\r") && !out.includes("\x1b"));
  const lines = out.trimEnd().split("\n");
  assert.ok(lines.length >= 4 && lines.length <= 7, `${lines.length} lines in 10 s at one per 2 s`);
  assert.match(lines[0]!, /^sim: \d+\/1,000 ticks \(\d+%\), 100 ticks\/s, about \d+(\.\d)? s left$/);
  assert.equal(lines[lines.length - 1], "sim: 1,000/1,000 ticks (100%), 100 ticks/s, done in 10 s");
});

test("with --json progress goes as JSON lines, the last one finished", () => {
  const { out } = drive("json", 300, 10);
  const objects = out.trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(objects.length >= 2);
  assert.deepEqual(Object.keys(objects[0]!).sort(), ["done", "elapsedS", "leftS", "progress", "rate", "total", "unit"]);
  assert.equal(objects[0]!["rate"], 100);
  const last = objects[objects.length - 1]!;
  assert.equal(last["finished"], true);
  assert.equal(last["done"], 300);
  assert.equal(drive("off", 300, 10).out, "");
});

test("an unknown total shows the amount and rate, and no time left", () => {
  const { out } = drive("bar", 50, 20, null);
  assert.match(out, /sim \[[.#]+\] \d+ ticks  50 ticks\/s\x1b\[K/);
  assert.ok(!out.includes("left"));
});

test("the mode: --json, then PK_PROGRESS, then the terminal", () => {
  assert.equal(progressMode({ isTTY: true }), "bar");
  assert.equal(progressMode({ isTTY: false }), "lines");
  assert.equal(progressMode({ isTTY: undefined }), "lines");
  assert.equal(progressMode({ isTTY: true, json: true }), "json");
  assert.equal(progressMode({ isTTY: true, env: { PK_PROGRESS: "lines" } }), "lines");
  assert.equal(progressMode({ isTTY: false, json: true, env: { PK_PROGRESS: "off" } }), "off");
});

test("amounts and durations read as people write them", () => {
  assert.equal(formatAmount(3 * 1024 * 1024, "bytes", true), "3.00 MiB");
  assert.equal(formatAmount(12345, "ticks", true), "12,345 ticks");
  assert.equal(formatAmount(0.5, "steps", true, true), "0.50 steps");
  assert.equal(formatDuration(4.25), "4.3 s");
  assert.equal(formatDuration(185), "3 min 05 s");
  assert.equal(formatDuration(7500), "2 h 05 min");
});

test("the splitter takes progress lines out of streamed text and passes everything else as it came", () => {
  let text = "";
  const seen: string[] = [];
  const splitter = new ProgressLineSplitter((t) => { text += t; }, (line) => {
    const report = parseProgressLine(line);
    if (report !== undefined) seen.push(`${report.done}/${report.total}`);
    return report !== undefined;
  });
  const good = formatProgressLine({ task: "train", done: 3, total: 9, unit: "steps" });
  const stream = `epoch 1: loss 0.9\n${good}pk-progress/1 {broken}\nchat words stream`;
  // Fed in awkward pieces, a character at a time.
  for (const ch of stream) splitter.push(ch);
  assert.equal(text, "epoch 1: loss 0.9\npk-progress/1 {broken}\nchat words stream", "text arrives before the stream ends");
  splitter.push(" on\n");
  splitter.push(good.slice(0, 20));
  splitter.flush();
  assert.deepEqual(seen, ["3/9"]);
  assert.equal(text, `epoch 1: loss 0.9\npk-progress/1 {broken}\nchat words stream on\n${good.slice(0, 20)}`);
});

test("streamed progress: one bar per task, finished at done = total, repeated final reports draw nothing", () => {
  let now = 0;
  let drawn = "";
  let text = "";
  const made: string[] = [];
  const streamed = new StreamedProgress((t) => { text += t; }, (task, unit, total) => {
    made.push(task);
    return new Progress({ label: task, unit, total, mode: "lines", write: (t) => { drawn += t; }, now: () => now, lineIntervalMs: 1_000 });
  });
  for (let done = 0; done <= 10; done++) {
    now += 300;
    streamed.push(formatProgressLine({ task: "sfs-fetch", done, total: 10, unit: "bytes" }));
  }
  streamed.push(formatProgressLine({ task: "sfs-fetch", done: 10, total: 10, unit: "bytes", stage: "synced" }));
  streamed.push("is here\n");
  streamed.push(formatProgressLine({ task: "train", done: 1, total: 4, unit: "steps" }));
  streamed.end("failed");
  assert.deepEqual(made, ["sfs-fetch", "train"]);
  assert.equal(text, "is here\n");
  assert.match(drawn, /^sfs-fetch: 10\/10 B \(100%\), [\d.]+ B\/s, done in 3\.0 s$/m);
  assert.match(drawn, /^train: 1\/4 steps \(25%\), failed in 0\.0 s$/m);
  assert.equal(drawn.match(/done in/g)?.length, 1);
});

test("a joining node's stages: reaching, member, in Raft catching up, caught up", async () => {
  const { joinStage } = await import("../src/cli/main.ts");
  type Status = Parameters<typeof joinStage>[0];
  const member = (id: string, state: string) => ({ id, addr: "", state, incarnation: 0, name: "", role: "core", lastHeardMs: null, vital: null });
  const base: Status = {
    id: "me", name: "", role: "core", mode: "SOLO", uptimeMs: 0, guarded: [],
    raft: { state: "learner", term: 1, leader: null, commitIndex: 0, appliedIndex: 0, voters: ["a"], learners: [], confEpoch: 0 },
    members: [member("me", "alive")],
  } as unknown as Status;
  assert.equal(joinStage(base, undefined).stage, 0);
  const withPeer = { ...base, members: [member("me", "alive"), member("a", "alive")] } as unknown as Status;
  assert.deepEqual(joinStage(withPeer, undefined), { stage: 1, text: "member, 2 alive, not in Raft yet" });
  const inRaft = { ...withPeer, raft: { ...withPeer.raft, leader: "a", learners: ["me"], commitIndex: 40, appliedIndex: 12 } } as unknown as Status;
  assert.deepEqual(joinStage(inRaft, 40), { stage: 2, text: "learner, applied 12/40" });
  const caught = { ...inRaft, mode: "REDUCED", raft: { ...inRaft.raft, appliedIndex: 40 } } as unknown as Status;
  assert.deepEqual(joinStage(caught, 40), { stage: 3, text: "learner, caught up at entry 40, 2 alive, mode REDUCED" });
});
