// The verifier's thread (adapters/verifier.ts): one warm ProgramVerifier, off the kernel's event
// loop. It takes { id, source, beside? } and answers { id, report } or { id, error }.
import { parentPort } from "node:worker_threads";
import { ProgramVerifier } from "./verify-ts.ts";

const verifier = new ProgramVerifier();
const port = parentPort;
if (port === null) throw new Error("verifier-worker: not a worker thread");
port.on("message", (message: { id: number; source: string; beside?: unknown; warm?: boolean }) => {
  try {
    if (message.warm === true) {
      verifier.warmUp();
      port.postMessage({ id: message.id, warm: verifier.stats });
      return;
    }
    port.postMessage({ id: message.id, report: verifier.verifySource(message.source, message.beside) });
  } catch (error) {
    port.postMessage({ id: message.id, error: error instanceof Error ? error.message : String(error) });
  }
});
