// Progress of a long `pk` operation (issue 17): joining, shared-folder and bundle transfers,
// training, long simulations. Progress goes to stderr, so stdout keeps only the result.
//
// - "bar" (stderr is a terminal): one line redrawn in place at most 10 times a second — the task,
//   a bar, done/total, the rate over the last few seconds and the time left — then a final line.
// - "lines" (stderr is a pipe or a file): a plain line every few seconds, and a final one.
// - "json" (--json): one JSON object per line on stderr at the plain-line interval, and a final
//   one with "finished": true; stdout keeps its one JSON document.
// - "off": nothing (PK_PROGRESS=off).
// PK_PROGRESS=bar|lines|json|off overrides the choice (documented in README).
//
// The clock and the output are injected: the tests drive it without a terminal or a timer. It
// chose no library: the small npm bars (progress, cli-progress) draw only on a terminal and keep
// their own clock; plain lines for logs and JSON lines are the larger half of this.
import { parseProgressLine, PROGRESS_LINE_DEFAULTS, PROGRESS_LINE_PREFIX } from "../core/util/progress-line.ts";

export type ProgressMode = "bar" | "lines" | "json" | "off";

export const PROGRESS_DEFAULTS = Object.freeze({
  /** Milliseconds between two redraws of the bar (10 a second at most). */
  barIntervalMs: 100,
  /** Milliseconds between two plain (or JSON) lines. */
  lineIntervalMs: 2_000,
  /** The rate is measured over this many milliseconds of the latest samples. */
  rateWindowMs: 5_000,
  /** Samples kept for the rate. */
  samplesMax: 64,
  /** Cells of the bar itself. */
  barCells: 20,
  /** Columns assumed when the terminal does not say. */
  columns: 80,
});

export interface ProgressOptions {
  /** What runs, shown first ("sim", "train", "join"...). */
  readonly label: string;
  /** What is counted: "ticks", "steps", "bytes" (bytes are shown in KiB, MiB, GiB). */
  readonly unit: string;
  /** How much there is, when known. */
  readonly total?: number | undefined;
  readonly mode: ProgressMode;
  /** Where it is written (process.stderr.write). */
  readonly write: (text: string) => void;
  /** Milliseconds, monotonic (performance.now). */
  readonly now: () => number;
  /** The terminal's width, for the bar (process.stderr.columns). */
  readonly columns?: () => number | undefined;
  readonly barIntervalMs?: number;
  readonly lineIntervalMs?: number;
}

/** The mode for a command: --json wins, then PK_PROGRESS, then whether stderr is a terminal. */
export function progressMode(options: { json?: boolean | undefined; isTTY: boolean | undefined; env?: Readonly<Record<string, string | undefined>> }): ProgressMode {
  const forced = options.env?.["PK_PROGRESS"];
  if (forced === "off") return "off";
  if (options.json === true) return "json";
  if (forced === "bar" || forced === "lines" || forced === "json") return forced;
  return options.isTTY === true ? "bar" : "lines";
}

/** A Progress on this process's stderr, its mode chosen by progressMode. */
export function stderrProgress(label: string, unit: string, total: number | undefined, json = false): Progress {
  return new Progress({
    label, unit, total,
    mode: progressMode({ json, isTTY: process.stderr.isTTY, env: process.env }),
    write: (text) => process.stderr.write(text),
    now: () => performance.now(),
    columns: () => process.stderr.columns,
  });
}

interface Sample {
  readonly at: number;
  readonly done: number;
}

export class Progress {
  readonly #o: ProgressOptions;
  readonly #started: number;
  readonly #samples: Sample[] = [];
  #done = 0;
  /** What was done already at the first update (a follower that starts late): the rate counts only what came after. */
  #baseDone: number | undefined;
  #baseAt = 0;
  #total: number | undefined;
  #stage: string | undefined;
  #lastDraw: number | undefined;
  #drawn = false;
  #finished = false;

  constructor(options: ProgressOptions) {
    this.#o = options;
    this.#started = options.now();
    this.#total = options.total;
    this.#samples.push({ at: this.#started, done: 0 });
  }

  get finished(): boolean {
    return this.#finished;
  }

  /** Records how far the work is (total and stage when they change) and redraws when it is time. */
  update(done: number, total?: number | null, stage?: string): void {
    if (this.#finished) return;
    const now = this.#o.now();
    if (total !== undefined) this.#total = total === null ? undefined : total;
    if (this.#baseDone === undefined || done < this.#done) {
      // The first update (or it went back, a retry): the rate is measured from here.
      this.#baseDone = done;
      this.#baseAt = now;
      this.#samples.length = 0;
    }
    this.#done = done;
    const stageChanged = stage !== undefined && stage !== this.#stage;
    if (stage !== undefined) this.#stage = stage;
    this.#sample(now, done);
    // Off a terminal the last line is finish()'s: a "0 s left" line just before it says nothing.
    if (this.#o.mode !== "bar" && this.#total !== undefined && done >= this.#total) return;
    const interval = this.#o.mode === "bar" ? (this.#o.barIntervalMs ?? PROGRESS_DEFAULTS.barIntervalMs) : (this.#o.lineIntervalMs ?? PROGRESS_DEFAULTS.lineIntervalMs);
    const due = this.#lastDraw === undefined ? (this.#o.mode === "bar" || now - this.#started >= interval) : now - this.#lastDraw >= interval;
    if (due || (stageChanged && this.#o.mode === "bar")) this.#draw(now, false);
  }

  /** Other output is about to be written: on a terminal the bar's line is cleared, and drawn again at the next update. */
  interrupt(): void {
    if (this.#o.mode !== "bar" || !this.#drawn || this.#finished) return;
    this.#o.write("\r\x1b[K");
    this.#lastDraw = undefined;
  }

  /** Ends the progress: the last state drawn, with `summary` ("done", "failed: ..."), then a newline. */
  finish(summary = "done"): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#draw(this.#o.now(), true, summary);
  }

  /** Items per second over the latest samples (the whole run while there are few), or undefined before any progress. */
  rate(now: number = this.#o.now()): number | undefined {
    const window = this.#o.mode === "bar" ? PROGRESS_DEFAULTS.rateWindowMs : Math.max(PROGRESS_DEFAULTS.rateWindowMs, this.#o.lineIntervalMs ?? PROGRESS_DEFAULTS.lineIntervalMs);
    const first = this.#samples.find((s) => now - s.at <= window) ?? this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (first === undefined || last === undefined || last.at - first.at <= 0 || last.done <= first.done) return undefined;
    return (last.done - first.done) / ((last.at - first.at) / 1000);
  }

  /** Seconds left at the current rate, or undefined when the total or the rate is unknown. */
  secondsLeft(now: number = this.#o.now()): number | undefined {
    const rate = this.rate(now);
    if (this.#total === undefined || rate === undefined || rate <= 0) return undefined;
    return Math.max(0, this.#total - this.#done) / rate;
  }

  #sample(now: number, done: number): void {
    // The newest sample moves with every update; a new one is kept only every window/samplesMax
    // milliseconds, so the samples span the whole window however often updates come.
    const gap = PROGRESS_DEFAULTS.rateWindowMs / PROGRESS_DEFAULTS.samplesMax;
    const n = this.#samples.length;
    const previous = this.#samples[n - 2];
    if (n >= 2 && previous !== undefined && now - previous.at < gap) this.#samples[n - 1] = { at: now, done };
    else this.#samples.push({ at: now, done });
    if (this.#samples.length > PROGRESS_DEFAULTS.samplesMax) this.#samples.splice(0, this.#samples.length - PROGRESS_DEFAULTS.samplesMax);
  }

  #draw(now: number, final: boolean, summary?: string): void {
    this.#lastDraw = now;
    const mode = this.#o.mode;
    if (mode === "off") return;
    if (mode === "json") {
      this.#o.write(`${JSON.stringify(this.#json(now, final, summary))}\n`);
      return;
    }
    if (mode === "lines") {
      this.#o.write(`${this.#plain(now, final, summary)}\n`);
      return;
    }
    if (final && !this.#drawn && summary !== undefined && summary !== "done") {
      // A bar never drawn: just the outcome.
      this.#o.write(`${this.#barLine(now, true, summary)}\n`);
      return;
    }
    this.#drawn = true;
    const line = this.#barLine(now, final, summary);
    this.#o.write(`\r${line}\x1b[K${final ? "\n" : ""}`);
  }

  #json(now: number, final: boolean, summary?: string): Record<string, unknown> {
    const rate = final ? this.#overallRate(now) : this.rate(now);
    const left = final ? undefined : this.secondsLeft(now);
    return {
      progress: this.#o.label, done: this.#done, total: this.#total ?? null, unit: this.#o.unit,
      rate: rate === undefined ? null : round(rate, 3), leftS: left === undefined ? null : round(left, 1),
      elapsedS: round((now - this.#started) / 1000, 3),
      ...(this.#stage === undefined ? {} : { stage: this.#stage }),
      ...(final ? { finished: true, outcome: summary ?? "done" } : {}),
    };
  }

  #overallRate(now: number): number | undefined {
    const seconds = (now - (this.#baseDone === undefined ? this.#started : this.#baseAt)) / 1000;
    const done = this.#done - (this.#baseDone ?? 0);
    return seconds > 0 && done > 0 ? done / seconds : undefined;
  }

  /** "450/1,000 ticks (45%)" or "450 ticks" when the total is unknown. */
  #amount(withPercent = true): string {
    const unit = this.#o.unit;
    if (this.#total === undefined) return formatAmount(this.#done, unit, true);
    const pct = this.#total === 0 ? 100 : Math.floor((100 * Math.min(this.#done, this.#total)) / this.#total);
    return `${formatAmount(this.#done, unit, false)}/${formatAmount(this.#total, unit, true)}${withPercent ? ` (${pct}%)` : ""}`;
  }

  #speed(now: number, final: boolean): string | undefined {
    const rate = final ? this.#overallRate(now) : this.rate(now);
    return rate === undefined ? undefined : `${formatAmount(rate, this.#o.unit, true, true)}/s`;
  }

  #plain(now: number, final: boolean, summary?: string): string {
    const parts = [this.#amount()];
    const speed = this.#speed(now, final);
    if (speed !== undefined) parts.push(speed);
    if (final) parts.push(`${summary ?? "done"} in ${formatDuration((now - this.#started) / 1000)}`);
    else {
      const left = this.secondsLeft(now);
      if (left !== undefined) parts.push(`about ${formatDuration(left)} left`);
    }
    if (this.#stage !== undefined) parts.push(this.#stage);
    return `${this.#o.label}: ${parts.join(", ")}`;
  }

  #barLine(now: number, final: boolean, summary?: string): string {
    const bar = (cells: number): string => {
      if (this.#total !== undefined) {
        const filled = this.#total === 0 ? cells : Math.min(cells, Math.floor((cells * this.#done) / this.#total));
        const pct = this.#total === 0 ? 100 : Math.floor((100 * Math.min(this.#done, this.#total)) / this.#total);
        return `${String(pct).padStart(3)}% [${"#".repeat(filled)}${".".repeat(cells - filled)}]`;
      }
      // Unknown total: a marker that moves with the work.
      const at = this.#done === 0 ? 0 : Math.floor(now / 100) % cells;
      return `[${".".repeat(at)}#${".".repeat(cells - at - 1)}]`;
    };
    const rest: string[] = [this.#amount(false)];
    const speed = this.#speed(now, final);
    if (speed !== undefined) rest.push(speed);
    if (final) rest.push(`${summary ?? "done"} in ${formatDuration((now - this.#started) / 1000)}`);
    else {
      // With no total there is no time left to tell.
      const left = this.secondsLeft(now);
      if (this.#total !== undefined) rest.push(left === undefined ? "time left unknown" : `${formatDuration(left)} left`);
    }
    // A pseudo-terminal without a size says 0 columns.
    const reported = this.#o.columns?.();
    const columns = (reported === undefined || reported < 20 ? PROGRESS_DEFAULTS.columns : reported) - 1;
    // The bar gives up cells (down to 8) before the figures are cut.
    const tail = rest.join("  ");
    const full = PROGRESS_DEFAULTS.barCells;
    const overflow = this.#o.label.length + 1 + bar(full).length + 1 + tail.length - columns;
    const cells = Math.max(8, full - Math.max(0, overflow));
    const head = `${this.#o.label} ${bar(cells)} ${tail}`;
    const stage = this.#stage;
    // The final line keeps its stage whole: on a line of its own when it does not fit.
    if (final && stage !== undefined && head.length + 2 + stage.length > columns) return `${head}\x1b[K\n  ${stage}`;
    // A line wider than the terminal wraps, and \r then redraws only its last row: the stage is
    // shortened first, so the amount, the rate and the time left stay whole.
    if (head.length > columns) return `${head.slice(0, columns - 1)}…`;
    const room = columns - head.length - 2;
    if (stage === undefined || room < 8) return head;
    return `${head}  ${stage.length > room ? `${stage.slice(0, room - 1)}…` : stage}`;
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"] as const;

/** A count in its unit: bytes scaled (KiB, MiB...), other counts grouped ("12,345 ticks"); rates keep a decimal when small. */
export function formatAmount(value: number, unit: string, withUnit: boolean, rate = false): string {
  if (unit === "bytes") {
    let scaled = value;
    let i = 0;
    while (scaled >= 1024 && i < BYTE_UNITS.length - 1) {
      scaled /= 1024;
      i++;
    }
    const text = i === 0 ? String(Math.round(scaled)) : scaled.toFixed(scaled < 10 ? 2 : 1);
    return withUnit ? `${text} ${BYTE_UNITS[i]}` : text + (i === 0 ? "" : ` ${BYTE_UNITS[i]}`);
  }
  const text = rate && value < 10 ? value.toFixed(value < 1 ? 2 : 1) : Math.round(value).toLocaleString("en-US");
  return withUnit ? `${text} ${unit}` : text;
}

/** "0.4 s", "12 s", "3 min 05 s", "2 h 07 min". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const whole = Math.round(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
  return `${Math.floor(whole / 3600)} h ${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")} min`;
}

/**
 * Splits a node's streamed shell output into progress (version-1 lines, see
 * src/core/util/progress-line.ts) and text. Text passes through at once (a chat answer streams word
 * by word); only a line that begins like a progress line is held until its newline, then parsed;
 * one that is not valid progress is passed on as text, as it came.
 */
export class ProgressLineSplitter {
  readonly #text: (chunk: string) => void;
  readonly #progress: (line: string) => boolean;
  /** The start of a line that may be progress. */
  #held = "";
  #atLineStart = true;

  /** `progress` takes a candidate line and says whether it was progress (else it is shown as text). */
  constructor(text: (chunk: string) => void, progress: (line: string) => boolean) {
    this.#text = text;
    this.#progress = progress;
  }

  push(chunk: string): void {
    let out = "";
    let rest = chunk;
    while (rest !== "") {
      if (!this.#atLineStart) {
        const newline = rest.indexOf("\n");
        if (newline < 0) {
          out += rest;
          rest = "";
        } else {
          out += rest.slice(0, newline + 1);
          rest = rest.slice(newline + 1);
          this.#atLineStart = true;
        }
        continue;
      }
      const newline = rest.indexOf("\n");
      const piece = newline < 0 ? rest : rest.slice(0, newline);
      this.#held += piece;
      rest = newline < 0 ? "" : rest.slice(newline + 1);
      const candidate = this.#held.startsWith(PROGRESS_LINE_PREFIX) ? this.#held.length <= PROGRESS_LINE_DEFAULTS.lineCharsMax : PROGRESS_LINE_PREFIX.startsWith(this.#held);
      if (newline >= 0) {
        if (!this.#progress(this.#held)) out += `${this.#held}\n`;
        this.#held = "";
      } else if (!candidate) {
        out += this.#held;
        this.#held = "";
        this.#atLineStart = false;
      }
    }
    if (out !== "") this.#text(out);
  }

  /** Passes on what is held (a last line without its newline). */
  flush(): void {
    if (this.#held === "") return;
    const rest = this.#held;
    this.#held = "";
    if (!this.#progress(rest)) this.#text(rest);
  }
}

/**
 * Shows the progress a node streams (pk-progress/1 lines) while the rest of its output goes on as
 * text: one Progress per task, finished when the task reports its end or the answer comes.
 */
export class StreamedProgress {
  readonly #splitter: ProgressLineSplitter;
  readonly #make: (task: string, unit: string, total: number | undefined) => Progress;
  readonly #text: (chunk: string) => void;
  #current: { task: string; progress: Progress } | undefined;
  /** The task last finished: its repeated final reports draw nothing more. */
  #finished: string | undefined;

  constructor(text: (chunk: string) => void, make: (task: string, unit: string, total: number | undefined) => Progress) {
    this.#text = text;
    this.#make = make;
    this.#splitter = new ProgressLineSplitter((chunk) => {
      this.#current?.progress.interrupt();
      this.#text(chunk);
    }, (line) => this.#line(line));
  }

  /** A chunk of the node's streamed output. */
  push(chunk: string): void {
    this.#splitter.push(chunk);
  }

  /** The answer came: what is held goes out, and a bar still open is finished with `outcome`. */
  end(outcome: string): void {
    this.#splitter.flush();
    this.#current?.progress.finish(outcome);
    this.#current = undefined;
  }

  #line(line: string): boolean {
    const report = parseProgressLine(line);
    if (report === undefined) return false;
    const final = report.total !== null && report.done >= report.total;
    if (this.#current === undefined && final && this.#finished === report.task) return true;
    if (this.#current !== undefined && this.#current.task !== report.task) {
      this.#current.progress.finish();
      this.#current = undefined;
    }
    this.#current ??= { task: report.task, progress: this.#make(report.task, report.unit, report.total ?? undefined) };
    const progress = this.#current.progress;
    progress.update(report.done, report.total, report.stage);
    if (final) {
      progress.finish();
      this.#current = undefined;
      this.#finished = report.task;
    }
    return true;
  }
}
