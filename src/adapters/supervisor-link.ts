// A supervised kernel's side of its supervisor (src/cli/supervise.ts, docs/protocols/upgrade.md):
// the IPC channel Node opens between a parent and a child started with an "ipc" stdio slot.
//
//   child → supervisor   {t:"ready"}                       the node is up (its ready line is out)
//                        {t:"restart", id, version, mode, node}  restart me into the installed bundle id
//                        {t:"healthy", id}                  the new code is healthy: keep it
//   supervisor → child   {t:"refused", id, reason}          that restart was refused before any stop
//
// What the supervisor says at a boot comes in the environment: PK_SUPERVISED=1, PK_UPGRADE_TRIAL
// (this boot is a trial, JSON {id, version, mode, atMs}) and PK_UPGRADE_ROLLED_BACK (JSON {id,
// reason}: the supervisor rolled back from id and started this code again). When the channel
// closes — the supervisor died, even by kill -9 — the kernel exits at once: a supervised kernel
// never outlives its supervisor.
import type { SupervisorPort } from "../node/ports.ts";
import { LIMITS } from "../core/util/limits.ts";
import { isBundleId, UpgradeFiles, type Trial } from "./upgrade-files.ts";

const REASON_CHARS = LIMITS.evolve.upgrade.reasonCharsMax;

export interface SupervisorLink extends SupervisorPort {
  /** Tells the supervisor the node is up. */
  ready(): void;
}

function parseJson(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined || text === "") return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === "object" && v !== null ? v as Record<string, unknown> : undefined;
  } catch {
    return undefined;
  }
}

/** The link when this process runs under a supervisor; undefined otherwise. */
export function connectSupervisor(dataDir: string, env: Readonly<Record<string, string | undefined>> = process.env): SupervisorLink | undefined {
  const send = process.send?.bind(process);
  if (send === undefined || env["PK_SUPERVISED"] !== "1") return undefined;
  process.on("disconnect", () => {
    process.stderr.write("pk node: the supervisor is gone, exiting\n");
    process.exit(1);
  });
  const t = parseJson(env["PK_UPGRADE_TRIAL"]);
  const trial: Trial | undefined = t !== undefined && typeof t["id"] === "string" && isBundleId(t["id"]) && typeof t["version"] === "number" && typeof t["mode"] === "string"
    ? { id: t["id"], version: t["version"], mode: t["mode"].slice(0, 16), atMs: typeof t["atMs"] === "number" ? t["atMs"] : 0 }
    : undefined;
  const r = parseJson(env["PK_UPGRADE_ROLLED_BACK"]);
  const rolledBack = r !== undefined && typeof r["id"] === "string" && isBundleId(r["id"]) && typeof r["reason"] === "string" ? { id: r["id"], reason: r["reason"].slice(0, REASON_CHARS) } : undefined;
  const failed = new Map<string, string>(new UpgradeFiles(dataDir).failed().map((f) => [f.id, f.reason]));
  const refusals: Array<{ id: string; reason: string }> = [];
  process.on("message", (message: unknown) => {
    const m = message as Record<string, unknown> | null;
    if (m === null || typeof m !== "object" || m["t"] !== "refused" || typeof m["id"] !== "string" || !isBundleId(m["id"]) || typeof m["reason"] !== "string") return;
    const reason = m["reason"].slice(0, REASON_CHARS);
    failed.set(m["id"], reason);
    if (refusals.length < 16) refusals.push({ id: m["id"], reason });
  });
  const post = (message: Record<string, unknown>): void => {
    try {
      send(message);
    } catch {
      // The channel is closing: the disconnect handler ends the process.
    }
  };
  return {
    trial,
    rolledBack,
    failed: () => failed,
    restartInto: (request) => post({ t: "restart", id: request.id, version: request.version, mode: request.mode, node: request.node }),
    healthy: (id) => post({ t: "healthy", id }),
    refusals: () => refusals.splice(0),
    ready: () => post({ t: "ready" }),
  };
}
