// `dmn`: the Default Mode Network's state, its jobs and what it did; on, off, and one job now.
import { DMN_JOBS, type DmnJob } from "../../core/self/dmn.ts";
import type { NodeContext } from "../context.ts";
import { formatFields, formatTable, UsageError, type Command } from "../shell.ts";

export const dmn: Command<NodeContext> = {
  name: "dmn",
  summary: "dmn: the Default Mode Network — idle work (memory consolidation, self-review, the GA, training the seed model)",
  usage: "dmn [status] | dmn on | dmn off | dmn run consolidate|review|ga|train",
  async run(args, { kernel }) {
    const part = kernel.dmn;
    const clock = part.clock;
    const [sub, ...rest] = args;
    const tickSeconds = kernel.config.tickMs / 1000;
    switch (sub ?? "status") {
      case "status": {
        if (rest.length > 0) throw new UsageError("status takes no arguments");
        if (!part.available) return "the DMN runs on a real node only (this one has no event loop to yield to)";
        const now = kernel.tickCount;
        const jobs = formatTable(["JOB", "EVERY", "RUNS", "PREEMPTED", "FAILED", "LAST", "RESULT"], DMN_JOBS.map((job) => {
          const s = clock.jobs[job];
          return [job, `${(clock.config.everyTicks[job] * tickSeconds).toFixed(0)} s`, String(s.runs), String(s.preempted), String(s.failed),
            s.runs + s.preempted + s.failed === 0 || s.lastTick === undefined ? "not yet" : `${((now - s.lastTick) * tickSeconds).toFixed(0)} s ago`, s.lastSummary.slice(0, 90) || "-"];
        }));
        const history = clock.history().slice(-8).map((e) => `${((now - e.endTick) * tickSeconds).toFixed(0).padStart(5)} s ago  ${e.job.padEnd(11)} ${e.outcome.padEnd(9)} ${e.summary.slice(0, 100)}`);
        const w = part.work;
        const work = `${(w.busyMs / 1000).toFixed(1)} s on the event loop in ${w.slices} slices (longest ${w.longestSliceMs.toFixed(1)} ms)`;
        return `${formatFields([["state", clock.state(now)], ["work", work]])}\n${jobs}${history.length === 0 ? "" : `\nrecent:\n${history.join("\n")}`}`;
      }
      case "on":
      case "off":
        if (rest.length > 0) throw new UsageError(`${sub} takes no arguments`);
        clock.enabled = sub === "on";
        return sub === "on" ? "the DMN works when the node is idle" : "the DMN is off (no idle work) until dmn on";
      case "run": {
        const job = rest[0];
        if (rest.length !== 1 || !DMN_JOBS.includes(job as DmnJob)) throw new UsageError(`run takes one of ${DMN_JOBS.join(", ")}`);
        return `${job}: ${await part.runNow(job as DmnJob)}`;
      }
      default:
        throw new UsageError(`unknown subcommand ${JSON.stringify(String(sub).slice(0, 40))}`);
    }
  },
};
