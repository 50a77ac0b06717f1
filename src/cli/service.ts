// `pk service install|uninstall|status`: run a node as a systemd service (a Raspberry Pi, a server,
// a laptop), so it starts at boot and comes back when it fails (docs/guides/raspberry-pi.md).
//
// install writes a unit that runs `pk node --data DATA --supervise ...` with this Node and this
// package's bin/pk.js — a user unit (systemctl --user, ~/.config/systemd/user/) by default, a
// system unit (/etc/systemd/system/) with --system, which root installs for an unprivileged
// account (--as USER, or the sudo caller): the node needs no privileges and never runs as root.
// Restart=on-failure brings back a node that crashed (exit 70 on a broken invariant: it recovers
// from its data folder); the supervisor (--supervise) restarts it into newer signed bundles.
//
// Hardening that does not break it: NoNewPrivileges everywhere; in a system unit also a read-only
// file system (ProtectSystem=strict, ProtectHome=read-only) with ReadWritePaths=DATA (the store,
// the shared folder, bundles, the supervisor's socket all live there), PrivateTmp, no kernel
// tunables, modules, logs or control groups, no SUID, no realtime, no personality changes. Not
// MemoryDenyWriteExecute (V8's JIT writes code) and no system-call filter (Node's worker threads
// and io_uring vary by release). A user manager may lack the user namespaces the Protect* options
// need, so a user unit carries NoNewPrivileges only.
//
// Every argument is checked before anything is written; a machine without systemd (Android under
// Termux has none) gets a clear error that says what to use instead. --dry-run prints the unit.
import { spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { packageRoot } from "../adapters/bundle-files.ts";
import { contributionFromFlags } from "../node/body/contribution.ts";
import { parseHostPort } from "../node/run.ts";

export const SERVICE_USAGE = `usage:
  pk service install --data DIR [--system [--as USER]] [--unit NAME] [--dry-run] [--no-start]
                     [--listen HOST:PORT] [--advertise HOST:PORT] [--api HOST:PORT] [--join HOST:PORT]...
                     [--token-file FILE] [--invite-file FILE] [--owner-key FILE] [--name NAME]
                     [--role core|contributor] [--public-name HOST[:PORT]]... [--no-discover]
                     [--contribute auto|always|charging|never] [--cpu-cap PERCENT] [--memory-cap MIB]
                     [--bandwidth-cap KIBPS] [--min-battery PERCENT]
  pk service uninstall [--system] [--unit NAME] [--dry-run]
  pk service status [--system] [--unit NAME]`;

const UNIT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;
/** Paths a unit names: no spaces, quotes, % or $ (systemd would read them as separators or specifiers). */
const SAFE_PATH = /^\/[A-Za-z0-9._/@+,=-]*$/;
const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;
const NODE_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const PUBLIC_NAME = /^[A-Za-z0-9.-]{1,253}(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/;

/** What `pk service install` will write and run. */
export interface ServicePlan {
  readonly unit: string;
  readonly system: boolean;
  /** The account a system unit runs the node as. */
  readonly user: string | undefined;
  readonly data: string;
  readonly node: string;
  readonly pk: string;
  /** Arguments after `pk node`. */
  readonly args: readonly string[];
}

/** What the command touches of the machine; tests give their own. */
export interface ServiceHost {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly uid: number;
  /** Whether systemd runs this machine (sd_booted: /run/systemd/system exists). */
  systemdRunning(): boolean;
  systemctl(args: readonly string[]): { code: number; out: string };
  /** A local account's uid and gid, or undefined when there is none by that name. */
  account(user: string): { uid: number; gid: number } | undefined;
  out(text: string): void;
  err(text: string): void;
}

export const REAL_HOST: ServiceHost = {
  env: process.env,
  uid: typeof process.getuid === "function" ? process.getuid() : -1,
  systemdRunning: () => existsSync("/run/systemd/system"),
  systemctl(args) {
    const result = spawnSync("systemctl", [...args], { encoding: "utf8", timeout: 60_000 });
    if (result.error !== undefined) return { code: 127, out: `systemctl: ${result.error.message}` };
    return { code: result.status ?? 1, out: `${result.stdout}${result.stderr}`.trim() };
  },
  account(user) {
    const id = (flag: string) => {
      const result = spawnSync("id", [flag, "--", user], { encoding: "utf8", timeout: 10_000 });
      const n = result.status === 0 ? Number(result.stdout.trim()) : NaN;
      return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
    };
    const uid = id("-u");
    const gid = id("-g");
    return uid === undefined || gid === undefined ? undefined : { uid, gid };
  },
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

class ServiceError extends Error {
  readonly code: 1 | 2;
  constructor(message: string, code: 1 | 2) {
    super(message);
    this.code = code;
  }
}

/** `pk service ...`; the exit code (0 done, 1 failed, 2 bad arguments). */
export async function service(args: string[], host: ServiceHost = REAL_HOST): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case "install":
        return install(rest, host);
      case "uninstall":
        return uninstall(rest, host);
      case "status":
        return status(rest, host);
      case undefined:
      case "help":
      case "--help":
        host.out(`${SERVICE_USAGE}\n`);
        return sub === undefined ? 2 : 0;
      default:
        throw new ServiceError(`unknown subcommand ${JSON.stringify(sub.slice(0, 40))}`, 2);
    }
  } catch (error) {
    if (error instanceof ServiceError) {
      host.err(`pk service: ${error.message}\n${error.code === 2 ? `${SERVICE_USAGE}\n` : ""}`);
      return error.code;
    }
    if (error instanceof Error && "code" in error && typeof error.code === "string" && error.code.startsWith("ERR_PARSE_ARGS")) {
      host.err(`pk service: ${error.message}\n${SERVICE_USAGE}\n`);
      return 2;
    }
    throw error;
  }
}

const usage = (message: string) => new ServiceError(message, 2);
const failure = (message: string) => new ServiceError(message, 1);

function parse(args: string[], options: NonNullable<Parameters<typeof parseArgs>[0]>["options"]) {
  return parseArgs({ args, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | string[] | undefined>;
}

const COMMON = {
  system: { type: "boolean" },
  unit: { type: "string" },
  "dry-run": { type: "boolean" },
} as const;

function unitName(value: unknown): string {
  const name = typeof value === "string" ? value.replace(/\.service$/, "") : "pk-node";
  if (!UNIT_NAME.test(name)) throw usage(`--unit must be 1-64 letters, digits, _ . @ -, got ${JSON.stringify(String(value).slice(0, 80))}`);
  return name;
}

/** The plan of `install` from its arguments: every one checked (files must exist and be files). */
export function planInstall(args: string[], host: Pick<ServiceHost, "env" | "uid">, where: { node: string; pk: string } = { node: process.execPath, pk: join(packageRoot(), "bin", "pk.js") }): ServicePlan {
  const v = parse(args, {
    ...COMMON,
    "no-start": { type: "boolean" },
    as: { type: "string" },
    data: { type: "string" },
    listen: { type: "string" },
    advertise: { type: "string" },
    api: { type: "string" },
    join: { type: "string", multiple: true },
    "token-file": { type: "string" },
    "invite-file": { type: "string" },
    "owner-key": { type: "string" },
    name: { type: "string" },
    role: { type: "string" },
    "public-name": { type: "string", multiple: true },
    "no-discover": { type: "boolean" },
    contribute: { type: "string" },
    "cpu-cap": { type: "string" },
    "memory-cap": { type: "string" },
    "bandwidth-cap": { type: "string" },
    "min-battery": { type: "string" },
  });
  const system = v.system === true;
  if (typeof v.data !== "string" || v.data === "") throw usage("--data DIR is required (the node's data folder)");
  const data = resolve(v.data);
  if (!SAFE_PATH.test(data)) throw usage(`--data ${JSON.stringify(data.slice(0, 120))}: a unit names it, so it may hold only letters, digits and . _ / @ + , = - (no spaces)`);
  if (data === "/" || data === homedir()) throw usage(`--data ${data}: give the node a folder of its own (e.g. ${join(homedir(), ".pk-node")})`);
  if (existsSync(data) && !statSync(data).isDirectory()) throw failure(`--data ${data} exists and is not a folder`);
  if (system && (data.startsWith("/tmp/") || data.startsWith("/var/tmp/"))) throw usage(`--data ${data}: a system unit has a private /tmp; put the data folder elsewhere (e.g. /var/lib/pk-node)`);
  let user: string | undefined;
  if (system) {
    user = typeof v.as === "string" ? v.as : host.env["SUDO_USER"];
    if (user === undefined || user === "") throw usage("--system runs the node as an unprivileged account: pass --as USER (or run install through sudo)");
    if (!USER_NAME.test(user)) throw usage(`--as must be a user name (lowercase letters, digits, _ -), got ${JSON.stringify(user.slice(0, 40))}`);
    if (user === "root") throw usage("--as root: the node needs no privileges; run it as an ordinary account");
  } else if (v.as !== undefined) {
    throw usage("--as is for --system units (a user unit runs as the user who installs it)");
  } else if (host.uid === 0) {
    throw usage("a user unit for root would run the node as root: as root, install a --system unit with --as USER");
  }

  const out: string[] = ["--data", data, "--supervise"];
  const address = (flag: "listen" | "advertise" | "api") => {
    const value = v[flag];
    if (typeof value !== "string") return;
    try {
      parseHostPort(value, `--${flag}`);
    } catch (error) {
      throw usage((error as Error).message);
    }
    out.push(`--${flag}`, value);
  };
  address("listen");
  address("advertise");
  address("api");
  for (const join of (v.join as string[] | undefined) ?? []) {
    try {
      parseHostPort(join, "--join");
    } catch (error) {
      throw usage((error as Error).message);
    }
    out.push("--join", join);
  }
  for (const flag of ["token-file", "invite-file", "owner-key"] as const) {
    const value = v[flag];
    if (typeof value !== "string") continue;
    const path = resolve(value);
    if (!SAFE_PATH.test(path)) throw usage(`--${flag} ${JSON.stringify(path.slice(0, 120))}: the path may hold only letters, digits and . _ / @ + , = - (no spaces)`);
    if (!existsSync(path) || !statSync(path).isFile()) throw failure(`--${flag} ${path} is not a file`);
    if (system && (path.startsWith("/tmp/") || path.startsWith("/var/tmp/"))) throw usage(`--${flag} ${path}: a system unit has a private /tmp and would not see it; move the file (e.g. into the data folder)`);
    out.push(`--${flag}`, path);
  }
  if (typeof v.name === "string") {
    if (!NODE_NAME.test(v.name)) throw usage(`--name must be 1-64 letters, digits, . _ -, got ${JSON.stringify(v.name.slice(0, 80))}`);
    out.push("--name", v.name);
  }
  if (typeof v.role === "string") {
    if (v.role !== "core" && v.role !== "contributor") throw usage(`--role must be core or contributor, got ${JSON.stringify(v.role.slice(0, 40))}`);
    out.push("--role", v.role);
  }
  for (const name of (v["public-name"] as string[] | undefined) ?? []) {
    if (!PUBLIC_NAME.test(name)) throw usage(`--public-name must be HOST or HOST:PORT, got ${JSON.stringify(name.slice(0, 80))}`);
    out.push("--public-name", name);
  }
  if (v["no-discover"] === true) out.push("--no-discover");
  const flags = { contribute: "--contribute", "cpu-cap": "--cpu-cap", "memory-cap": "--memory-cap", "bandwidth-cap": "--bandwidth-cap", "min-battery": "--min-battery" } as const;
  const checked = contributionFromFlags({
    contribute: v.contribute as string | undefined, cpuCap: v["cpu-cap"] as string | undefined, memoryCap: v["memory-cap"] as string | undefined,
    bandwidthCap: v["bandwidth-cap"] as string | undefined, minBattery: v["min-battery"] as string | undefined,
  });
  if (typeof checked === "string") throw usage(checked);
  for (const [key, flag] of Object.entries(flags)) if (typeof v[key] === "string") out.push(flag, v[key]);

  for (const [what, path] of [["node", where.node], ["pk", where.pk]] as const) {
    if (!isAbsolute(path) || !SAFE_PATH.test(path)) throw failure(`the ${what} executable's path ${JSON.stringify(path)} cannot go in a unit (spaces or odd characters): install p-kernel under a plain path`);
  }
  return { unit: unitName(v.unit), system, user, data, node: where.node, pk: where.pk, args: out };
}

/** An ExecStart= word: quoted, with systemd's specifiers (%) and variables ($) escaped. */
function word(arg: string): string {
  if (/[\0-\x1f\x7f]/.test(arg)) throw failure(`an argument holds a control character: ${JSON.stringify(arg.slice(0, 40))}`);
  const escaped = arg.replaceAll("\\", "\\\\").replaceAll("\"", "\\\"").replaceAll("%", "%%").replaceAll("$", "$$$$");
  return /^[A-Za-z0-9._/@+,=:[\]-]+$/.test(arg) ? escaped : `"${escaped}"`;
}

/** The unit file's text. */
export function unitText(plan: ServicePlan): string {
  const exec = [plan.node, plan.pk, "node", ...plan.args].map(word).join(" ");
  const lines = [
    "# Written by `pk service install` (p-kernel); `pk service uninstall` removes it.",
    "[Unit]",
    `Description=p-kernel node (${plan.data})`,
    `Documentation=file://${dirname(dirname(plan.pk))}/docs/guides/raspberry-pi.md`,
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `ExecStart=${exec}`,
    `WorkingDirectory=${plan.data}`,
    "Restart=on-failure",
    "RestartSec=5s",
    // The node stops on SIGTERM within its own deadline (5 s), the supervisor's child with it.
    "KillSignal=SIGTERM",
    "TimeoutStopSec=20s",
    "NoNewPrivileges=yes",
  ];
  if (plan.system) {
    lines.push(
      `User=${plan.user ?? ""}`,
      "ProtectSystem=strict",
      "ProtectHome=read-only",
      `ReadWritePaths=${plan.data}`,
      "PrivateTmp=yes",
      "PrivateDevices=yes",
      "ProtectKernelTunables=yes",
      "ProtectKernelModules=yes",
      "ProtectKernelLogs=yes",
      "ProtectControlGroups=yes",
      "ProtectClock=yes",
      "ProtectHostname=yes",
      "RestrictSUIDSGID=yes",
      "RestrictRealtime=yes",
      "LockPersonality=yes",
      "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    );
  }
  lines.push("", "[Install]", `WantedBy=${plan.system ? "multi-user.target" : "default.target"}`, "");
  return lines.join("\n");
}

/** Where the unit file goes. */
export function unitPath(unit: string, system: boolean, env: Readonly<Record<string, string | undefined>>): string {
  if (system) return `/etc/systemd/system/${unit}.service`;
  const config = env["XDG_CONFIG_HOME"] !== undefined && isAbsolute(env["XDG_CONFIG_HOME"]) ? env["XDG_CONFIG_HOME"] : join(env["HOME"] ?? homedir(), ".config");
  return join(config, "systemd", "user", `${unit}.service`);
}

function isTermux(env: Readonly<Record<string, string | undefined>>): boolean {
  return env["TERMUX_VERSION"] !== undefined || (env["PREFIX"] ?? "").includes("/com.termux/");
}

/** A clear error when systemd does not run this machine. */
function needSystemd(host: ServiceHost): void {
  if (host.systemdRunning()) return;
  if (isTermux(host.env)) {
    throw failure("Android has no systemd. Under Termux, run the node with termux-services (pkg install termux-services; an sv service) "
      + "or start it at boot with the Termux:Boot app (a script in ~/.termux/boot/): see docs/guides/android-termux.md");
  }
  throw failure("systemd is not running on this machine (no /run/systemd/system), so there is no service manager to install into. "
    + "Run `pk node --data DIR --supervise ...` under your init system instead, or use --dry-run to print the unit for a machine that has systemd");
}

function systemctl(host: ServiceHost, plan: { system: boolean }, args: readonly string[]): void {
  const full = plan.system ? [...args] : ["--user", ...args];
  const result = host.systemctl(full);
  if (result.code !== 0) throw failure(`systemctl ${full.join(" ")} failed (exit ${result.code})${result.out === "" ? "" : `: ${result.out.slice(0, 2000)}`}`);
}

function install(args: string[], host: ServiceHost): number {
  const plan = planInstall(args, host);
  const v = { "dry-run": args.includes("--dry-run"), "no-start": args.includes("--no-start") };
  const text = unitText(plan);
  const path = unitPath(plan.unit, plan.system, host.env);
  if (v["dry-run"] === true) {
    host.out(`# ${path}\n${text}`);
    return 0;
  }
  needSystemd(host);
  if (plan.system && host.uid !== 0) throw failure("--system writes /etc/systemd/system: run it as root (sudo), or leave out --system for a user unit");
  const account = plan.user === undefined ? undefined : host.account(plan.user);
  if (plan.user !== undefined && account === undefined) throw failure(`no account ${plan.user} on this machine: create it (e.g. sudo adduser --system --group ${plan.user}) or pass another --as`);
  mkdirSync(plan.data, { recursive: true, mode: 0o700 });
  // The node runs as that account: its data folder must be its own.
  if (account !== undefined) chownSync(plan.data, account.uid, account.gid);
  mkdirSync(dirname(path), { recursive: true });
  const temp = `${path}.tmp-${process.pid}`;
  writeFileSync(temp, text, { mode: 0o644 });
  renameSync(temp, path);
  systemctl(host, plan, ["daemon-reload"]);
  systemctl(host, plan, v["no-start"] === true ? ["enable", `${plan.unit}.service`] : ["enable", "--now", `${plan.unit}.service`]);
  host.out(`installed ${path}\n${v["no-start"] === true ? "enabled (not started)" : "enabled and started"}: ${plan.unit}.service\n`
    + `check it:   pk service status${plan.system ? " --system" : ""}${plan.unit === "pk-node" ? "" : ` --unit ${plan.unit}`}\n`
    + `logs:       journalctl ${plan.system ? "" : "--user "}-u ${plan.unit} -f\n`
    + (plan.system ? "" : "at boot without logging in: loginctl enable-linger $USER\n"));
  return 0;
}

function uninstall(args: string[], host: ServiceHost): number {
  const v = parse(args, COMMON);
  const plan = { unit: unitName(v.unit), system: v.system === true };
  const path = unitPath(plan.unit, plan.system, host.env);
  if (v["dry-run"] === true) {
    host.out(`would stop and disable ${plan.unit}.service and remove ${path}\n`);
    return 0;
  }
  needSystemd(host);
  if (plan.system && host.uid !== 0) throw failure("--system removes from /etc/systemd/system: run it as root (sudo)");
  if (!existsSync(path)) throw failure(`no unit at ${path} (installed with another --unit, or ${plan.system ? "as a user unit" : "with --system"}?)`);
  systemctl(host, plan, ["disable", "--now", `${plan.unit}.service`]);
  rmSync(path);
  systemctl(host, plan, ["daemon-reload"]);
  host.out(`stopped, disabled and removed ${path} (the data folder stays)\n`);
  return 0;
}

function status(args: string[], host: ServiceHost): number {
  const v = parse(args, { system: COMMON.system, unit: COMMON.unit });
  const plan = { unit: unitName(v.unit), system: v.system === true };
  needSystemd(host);
  const path = unitPath(plan.unit, plan.system, host.env);
  if (!existsSync(path)) throw failure(`no unit at ${path}: install one with pk service install --data DIR${plan.system ? " --system" : ""}`);
  const full = [...(plan.system ? [] : ["--user"]), "status", "--no-pager", "--lines", "20", `${plan.unit}.service`];
  const result = host.systemctl(full);
  host.out(`${path}\n${result.out}\n`);
  // systemctl status exits 3 for a stopped unit: that is an answer, not a failure of this command.
  return result.code === 0 || result.code === 3 ? 0 : 1;
}
