// What a shell command sees: the node (NodeView) and what the process around it measures.
import type { NodeView } from "./view.ts";

/** What the process around the kernel measures (run.ts); absent in the simulator. */
export interface HostStats {
  /** Ticks the loop skipped because the event loop was late beyond the catch-up bound. */
  readonly ticksSkipped: number;
  /** Event-loop delay over the last sampling window, in milliseconds. */
  readonly loopDelayP50Ms: number;
  readonly loopDelayP99Ms: number;
  readonly loopDelayMaxMs: number;
}

export interface NodeContext {
  readonly kernel: NodeView;
  /** The host's measurements, when a real process runs the kernel. */
  readonly host: () => HostStats | undefined;
}
