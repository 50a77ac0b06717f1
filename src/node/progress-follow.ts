// Following a long operation that runs inside the node (a bundle fetch, a shared-folder
// transfer) for a shell caller that takes a stream: looks at it every few ticks' worth of time
// and streams progress lines (pk-progress/1, docs/protocols/progress.md) until it is over, it
// stalls, or the caller goes away. The operation itself does not wait for anyone.
import { setTimeout as sleep } from "node:timers/promises";
import { ProgressEmitter, type ProgressReport } from "../core/util/progress-line.ts";
import type { ShellStream } from "./shell.ts";

export const FOLLOW_DEFAULTS = Object.freeze({
  /** Milliseconds between two looks. */
  everyMs: 100,
  /** Milliseconds without any change before the follower gives up (the operation goes on). */
  stallMs: 60_000,
});

/** One look: where the operation is, and whether it is over; undefined when it is gone (replaced, dropped). */
export type Look = () => { readonly report: ProgressReport; readonly over: boolean } | undefined;

export type FollowEnd = "over" | "gone" | "stalled" | "aborted";

export async function followProgress(stream: ShellStream, look: Look, options: { everyMs?: number; stallMs?: number } = {}): Promise<FollowEnd> {
  const everyMs = options.everyMs ?? FOLLOW_DEFAULTS.everyMs;
  const stallMs = options.stallMs ?? FOLLOW_DEFAULTS.stallMs;
  const emitter = new ProgressEmitter(stream.out, () => performance.now());
  let last = "";
  let changed = performance.now();
  for (;;) {
    if (stream.signal?.aborted === true) return "aborted";
    const seen = look();
    if (seen === undefined) {
      emitter.finish();
      return "gone";
    }
    emitter.report(seen.report);
    if (seen.over) {
      emitter.finish();
      return "over";
    }
    const key = `${seen.report.done}/${seen.report.total}/${seen.report.stage ?? ""}`;
    if (key !== last) {
      last = key;
      changed = performance.now();
    } else if (performance.now() - changed > stallMs) {
      emitter.finish();
      return "stalled";
    }
    try {
      await sleep(everyMs, undefined, stream.signal === undefined ? {} : { signal: stream.signal });
    } catch {
      return "aborted";
    }
  }
}
