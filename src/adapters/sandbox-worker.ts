// The sandbox's thread (sandbox.ts): one SandboxEngine, runs one request at a time as they come and
// answers each with its outcome and the engine's counters. It posts "ready" once the QuickJS module
// is loaded; after a host failure the engine loads a new module before the next run.
import { parentPort, workerData } from "node:worker_threads";
import type { RunRequest } from "../core/evolve/run.ts";
import { SandboxEngine, failed } from "./sandbox-engine.ts";

const port = parentPort;
if (port === null) throw new Error("sandbox-worker.ts runs as a worker thread");
const { stackBytesCap } = workerData as { stackBytesCap?: number };
const engine = await SandboxEngine.create(stackBytesCap === undefined ? {} : { stackBytesCap });
port.on("message", (message: { id: number; req: RunRequest }) => {
  engine.runAsync(message.req).then(
    (outcome) => port.postMessage({ id: message.id, outcome, rebuilds: engine.stats.rebuilds }),
    (error: unknown) => port.postMessage({ id: message.id, outcome: failed("host", `the engine could not load: ${String(error)}`), rebuilds: engine.stats.rebuilds }),
  );
});
port.postMessage({ ready: true });
