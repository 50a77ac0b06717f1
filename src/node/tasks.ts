// The task table (DESIGN.md §5): kernel daemons, one per subsystem, and later user programs and
// guarded tasks. `ps` lists it. Bounded by LIMITS.tasksMax.
import { LIMITS } from "../core/util/limits.ts";

export type TaskKind = "daemon" | "program" | "guarded";
export type TaskState = "running" | "stopped";

export interface Task {
  readonly tid: number;
  readonly name: string;
  readonly kind: TaskKind;
  state: TaskState;
  readonly startedTick: number;
  /** Work items handled: ticks for daemons, messages for protocol daemons. */
  steps: number;
}

export class TaskTable {
  readonly #tasks = new Map<number, Task>();
  #nextTid = 1;

  spawn(name: string, kind: TaskKind, startedTick: number): Task | undefined {
    if (this.#tasks.size >= LIMITS.tasksMax) return undefined;
    const task: Task = { tid: this.#nextTid++, name, kind, state: "running", startedTick, steps: 0 };
    this.#tasks.set(task.tid, task);
    return task;
  }

  get(tid: number): Task | undefined {
    return this.#tasks.get(tid);
  }

  list(): Task[] {
    return [...this.#tasks.values()];
  }

  /** Forgets a stopped task (guarded tasks come and go; their table rows must not pile up). */
  reap(tid: number): boolean {
    const task = this.#tasks.get(tid);
    if (task === undefined || task.state !== "stopped") return false;
    return this.#tasks.delete(tid);
  }

  stop(tid: number): boolean {
    const task = this.#tasks.get(tid);
    if (task === undefined || task.state === "stopped") return false;
    task.state = "stopped";
    return true;
  }
}
