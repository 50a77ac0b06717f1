// The verifier's thread (adapters/verifier.ts): one warm ProgramVerifier, off the kernel's event
// loop. It takes { id, source, beside? } and answers { id, result } (the report) or { id, error }.
import { parentPort } from "node:worker_threads";
import { ProgramVerifier } from "./verify-ts.ts";

const verifier = new ProgramVerifier();
const port = parentPort;
if (port === null) throw new Error("verifier-worker: not a worker thread");
port.on("message", (message: { id: number; source: string; beside?: unknown }) => {
  try {
    port.postMessage({ id: message.id, result: verifier.verifySource(message.source, message.beside) });
  } catch (error) {
    port.postMessage({ id: message.id, error: error instanceof Error ? error.message : String(error) });
  }
});
