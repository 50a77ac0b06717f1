// Progress lines (docs/protocols/progress.md): how a long operation inside a node (training, a
// bundle fetch, a shared-folder transfer) tells the `pk` command that started it how far it is,
// through the shell's streamed output. One line, version 1:
//
//   pk-progress/1 {"task":"train","done":120,"total":400,"unit":"steps","stage":"epoch 3"}
//
// The reader is strict: a line that is not exactly this (wrong prefix or version, bad JSON, an
// unknown key, a value of the wrong type or out of its bounds) is not progress, and the caller
// shows it as ordinary text. Pure and sans-IO: the emitter takes its clock and its output.

/** The prefix of a version-1 progress line. A later version gets a new prefix, never new meaning. */
export const PROGRESS_LINE_PREFIX = "pk-progress/1 ";

export const PROGRESS_LINE_DEFAULTS = Object.freeze({
  /** Characters of one progress line, prefix included; a longer line is text. */
  lineCharsMax: 512,
  /** Characters of `stage`. */
  stageCharsMax: 120,
  /** Characters of `unit`. */
  unitCharsMax: 16,
  /** Milliseconds between two lines the emitter sends (the first and the last are always sent). */
  intervalMs: 200,
});

export interface ProgressReport {
  /** What runs: a lowercase word (train, bundle-fetch, sfs-fetch...). */
  readonly task: string;
  /** How much is done, in `unit`s: a non-negative number, at most `total`. */
  readonly done: number;
  /** How much there is in all; null while unknown. */
  readonly total: number | null;
  /** What done and total count: "steps", "bytes", "chunks"... ("bytes" is shown as KiB/MiB). */
  readonly unit: string;
  /** Where it is, in words ("epoch 3", "waiting for a peer"); optional. */
  readonly stage?: string;
}

const TASK = /^[a-z][a-z0-9-]{0,31}$/;
const UNIT = /^[a-z][a-z -]*$/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const KEYS = new Set(["task", "done", "total", "unit", "stage"]);

/** The line for `report` (with its newline), or an Error for a report the reader would refuse. */
export function formatProgressLine(report: ProgressReport): string {
  const problem = reportProblem(report);
  if (problem !== undefined) throw new RangeError(`progress line: ${problem}`);
  const body: Record<string, unknown> = { task: report.task, done: report.done, total: report.total, unit: report.unit };
  if (report.stage !== undefined) body["stage"] = report.stage;
  const line = `${PROGRESS_LINE_PREFIX}${JSON.stringify(body)}`;
  if (line.length > PROGRESS_LINE_DEFAULTS.lineCharsMax) throw new RangeError("progress line: too long");
  return `${line}\n`;
}

/** The report a line carries (without its newline), or undefined when the line is not a valid version-1 progress line. */
export function parseProgressLine(line: string): ProgressReport | undefined {
  if (!line.startsWith(PROGRESS_LINE_PREFIX) || line.length > PROGRESS_LINE_DEFAULTS.lineCharsMax) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line.slice(PROGRESS_LINE_PREFIX.length));
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const object = value as Record<string, unknown>;
  if (Object.keys(object).some((key) => !KEYS.has(key))) return undefined;
  const { task, done, total, unit, stage } = object;
  if (typeof task !== "string" || typeof done !== "number" || (total !== null && typeof total !== "number") || typeof unit !== "string") return undefined;
  if (stage !== undefined && typeof stage !== "string") return undefined;
  const report: ProgressReport = { task, done, total, unit, ...(stage === undefined ? {} : { stage }) };
  return reportProblem(report) === undefined ? report : undefined;
}

function reportProblem(r: ProgressReport): string | undefined {
  if (!TASK.test(r.task)) return `task ${JSON.stringify(r.task.slice(0, 40))} is not a lowercase word`;
  if (!Number.isFinite(r.done) || r.done < 0 || r.done > Number.MAX_SAFE_INTEGER) return "done must be a finite non-negative number";
  if (r.total !== null && (!Number.isFinite(r.total) || r.total < 0 || r.total > Number.MAX_SAFE_INTEGER)) return "total must be null or a finite non-negative number";
  if (r.total !== null && r.done > r.total) return "done is more than total";
  if (r.unit.length > PROGRESS_LINE_DEFAULTS.unitCharsMax || !UNIT.test(r.unit)) return "unit must be a short lowercase word";
  if (r.stage !== undefined && (r.stage.length > PROGRESS_LINE_DEFAULTS.stageCharsMax || CONTROL.test(r.stage))) return "stage is too long or holds control characters";
  return undefined;
}

/**
 * Sends progress lines for one operation, at most one per `intervalMs` (by the injected clock);
 * the first report, a change of stage and the final one (done = total, or finish()) always go out.
 */
export class ProgressEmitter {
  readonly #out: (line: string) => void;
  readonly #nowMs: () => number;
  readonly #intervalMs: number;
  #lastMs: number | undefined;
  #lastStage: string | undefined;
  #pending: ProgressReport | undefined;

  constructor(out: (line: string) => void, nowMs: () => number, intervalMs: number = PROGRESS_LINE_DEFAULTS.intervalMs) {
    this.#out = out;
    this.#nowMs = nowMs;
    this.#intervalMs = intervalMs;
  }

  /** Reports where the operation is; sent now or held until the interval has passed. */
  report(report: ProgressReport): void {
    const now = this.#nowMs();
    const final = report.total !== null && report.done >= report.total;
    if (this.#lastMs === undefined || final || report.stage !== this.#lastStage || now - this.#lastMs >= this.#intervalMs) {
      this.#send(report, now);
    } else this.#pending = report;
  }

  /** Sends the last held report, if any (call when the operation ends). */
  finish(): void {
    if (this.#pending !== undefined) this.#send(this.#pending, this.#nowMs());
  }

  #send(report: ProgressReport, now: number): void {
    this.#out(formatProgressLine(report));
    this.#lastMs = now;
    this.#lastStage = report.stage;
    this.#pending = undefined;
  }
}
