// The C compiler's thread (adapters/compile-c.ts): one CCompiler, its toolchain loaded on the first
// C program, off the kernel's event loop. It takes { id, source, beside? } and answers { id, result }
// or { id, error }.
import { parentPort } from "node:worker_threads";
import { CCompiler } from "./compile-c.ts";

const compiler = new CCompiler();
const port = parentPort;
if (port === null) throw new Error("compile-c-worker: not a worker thread");
// One compile at a time: the toolchain's instances are not shared between compiles.
let queue: Promise<void> = Promise.resolve();
port.on("message", (message: { id: number; source: string; beside?: unknown }) => {
  queue = queue.then(() => compiler.compile(message.source, message.beside)).then(
    (result) => port.postMessage({ id: message.id, result }),
    (error: unknown) => port.postMessage({ id: message.id, error: error instanceof Error ? error.message : String(error) }),
  );
});
