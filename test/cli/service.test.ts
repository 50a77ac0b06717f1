// `pk service` (src/cli/service.ts): the unit it writes (checked by systemd-analyze when the machine
// has it), every argument checked before anything is written, the clear error on a machine without
// systemd (this one when systemd is not PID 1; Termux), and install → status → uninstall against a
// stand-in for systemctl — the outermost edge: the real one needs a running systemd.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { planInstall, REAL_HOST, service, unitText, type ServiceHost } from "../../src/cli/service.ts";

interface Captured {
  host: ServiceHost;
  out: string[];
  err: string[];
  calls: string[][];
}

function host(options: { env?: Record<string, string | undefined>; uid?: number; systemd?: boolean; systemctlCode?: number } = {}): Captured {
  const out: string[] = [];
  const err: string[] = [];
  const calls: string[][] = [];
  return {
    out, err, calls,
    host: {
      env: options.env ?? {},
      uid: options.uid ?? 1000,
      systemdRunning: () => options.systemd ?? true,
      systemctl(args) {
        calls.push([...args]);
        return { code: args.includes("status") ? 3 : options.systemctlCode ?? 0, out: args.includes("status") ? "○ pk-node.service - p-kernel node\n   Active: inactive (dead)" : "" };
      },
      account: (user) => (user === "pk" ? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 } : undefined),
      out: (text) => void out.push(text),
      err: (text) => void err.push(text),
    },
  };
}

function scratch(t: { after: (fn: () => void) => void }, base = tmpdir()): string {
  const dir = mkdtempSync(join(base, ".pk-service-test-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const WHERE = { node: "/usr/local/bin/node", pk: "/opt/p-kernel/bin/pk.js" };

test("service unit: a user unit runs pk node --supervise with the data folder, restarts on failure, and keeps NoNewPrivileges", () => {
  const plan = planInstall(["--data", "/home/pi/.pk-node", "--join", "192.168.1.20:7401", "--name", "pi4", "--role", "contributor", "--contribute", "always", "--memory-cap", "512"], { env: {}, uid: 1000 }, WHERE);
  const text = unitText(plan);
  assert.match(text, /^ExecStart=\/usr\/local\/bin\/node \/opt\/p-kernel\/bin\/pk\.js node --data \/home\/pi\/\.pk-node --supervise --join 192\.168\.1\.20:7401 --name pi4 --role contributor --contribute always --memory-cap 512$/m);
  assert.match(text, /^Restart=on-failure$/m);
  assert.match(text, /^WorkingDirectory=\/home\/pi\/\.pk-node$/m);
  assert.match(text, /^NoNewPrivileges=yes$/m);
  assert.match(text, /^WantedBy=default\.target$/m);
  assert.doesNotMatch(text, /ProtectSystem|User=/, "a user manager may lack the namespaces ProtectSystem needs");
});

test("service unit: a system unit runs as the given account with a read-only system and the data folder writable", () => {
  const plan = planInstall(["--data", "/var/lib/pk-node", "--system", "--as", "pk", "--advertise", "203.0.113.7:7401", "--listen", "0.0.0.0:7401"], { env: {}, uid: 0 }, WHERE);
  const text = unitText(plan);
  for (const line of ["User=pk", "ProtectSystem=strict", "ProtectHome=read-only", "ReadWritePaths=/var/lib/pk-node", "PrivateTmp=yes", "NoNewPrivileges=yes", "Restart=on-failure", "WantedBy=multi-user.target"]) {
    assert.ok(text.split("\n").includes(line), `missing ${line}\n${text}`);
  }
  assert.doesNotMatch(text, /MemoryDenyWriteExecute/, "V8's JIT writes code");
  assert.match(text, /--listen 0\.0\.0\.0:7401 --advertise 203\.0\.113\.7:7401|--advertise 203\.0\.113\.7:7401/);
  assert.equal(planInstall(["--data", "/var/lib/pk-node", "--system"], { env: { SUDO_USER: "pi" }, uid: 0 }, WHERE).user, "pi", "the sudo caller by default");
});

test("service unit: systemd's specifiers and variables are escaped and odd words quoted", () => {
  const text = unitText({ unit: "pk-node", system: false, user: undefined, data: "/d", node: "/n", pk: "/p", args: ["--name", "50% of $HOME \"x\"", "a\\b"] });
  assert.match(text, /^ExecStart=\/n \/p node --name "50%% of \$\$HOME \\"x\\"" "a\\\\b"$/m);
  assert.throws(() => unitText({ unit: "pk-node", system: false, user: undefined, data: "/d", node: "/n", pk: "/p", args: ["a\nExecStartPre=/bin/evil"] }), /control character/);
});

test("service unit: systemd-analyze verify accepts the units (where the machine has it)", (t) => {
  const analyze = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" });
  if (analyze.error !== undefined) {
    t.diagnostic("systemd-analyze is not installed here: the units were not verified by systemd");
    return;
  }
  const dir = scratch(t);
  const node = process.execPath;
  const pk = join(import.meta.dirname, "..", "..", "bin", "pk.js");
  for (const [name, args, uid] of [
    ["pk-user", ["--data", join(dir, "data"), "--join", "10.0.0.2:7401"], 1000],
    ["pk-system", ["--data", "/var/lib/pk-node", "--system", "--as", "pk", "--no-discover"], 0],
  ] as const) {
    const file = join(dir, `${name}.service`);
    writeFileSync(file, unitText(planInstall([...args], { env: {}, uid }, { node, pk })));
    const result = spawnSync("systemd-analyze", ["verify", file], { encoding: "utf8", cwd: dir });
    assert.equal(result.status, 0, `${name}: ${result.stdout}${result.stderr}`);
    t.diagnostic(`${name}: systemd-analyze verify passed${result.stderr.trim() === "" ? "" : ` (${result.stderr.trim().split("\n").join("; ")})`}`);
  }
});

test("service: every bad argument is refused with a message naming it, before anything is written", async (t) => {
  const dir = scratch(t);
  const token = join(dir, "token");
  writeFileSync(token, "secret\n");
  const cases: Array<[string[], number, RegExp, { env?: Record<string, string>; uid?: number }?]> = [
    [["install"], 2, /--data DIR is required/],
    [["install", "--data", join(dir, "with space")], 2, /no spaces/],
    [["install", "--data", join(dir, "d"), "--join", "nohost"], 2, /--join must be HOST:PORT/],
    [["install", "--data", join(dir, "d"), "--listen", "1.2.3.4:99999"], 2, /--listen must be HOST:PORT/],
    [["install", "--data", join(dir, "d"), "--role", "king"], 2, /--role must be core or contributor/],
    [["install", "--data", join(dir, "d"), "--cpu-cap", "lots"], 2, /--cpu-cap must be/],
    [["install", "--data", join(dir, "d"), "--contribute", "sometimes"], 2, /--contribute must be/],
    [["install", "--data", join(dir, "d"), "--token-file", join(dir, "missing")], 1, /is not a file/],
    [["install", "--data", join(dir, "d"), "--token-file", dir], 1, /is not a file/],
    [["install", "--data", join(dir, "d"), "--name", "bad name"], 2, /--name must be/],
    [["install", "--data", join(dir, "d"), "--unit", "../../etc/passwd"], 2, /--unit must be/],
    [["install", "--data", join(dir, "d"), "--frobnicate"], 2, /Unknown option '--frobnicate'/],
    [["install", "--data", join(dir, "d"), "--as", "pk"], 2, /--as is for --system/],
    [["install", "--data", join(dir, "d")], 2, /as root, install a --system unit/, { uid: 0 }],
    [["install", "--data", "/var/lib/pk-node", "--system"], 2, /pass --as USER/, { uid: 0 }],
    [["install", "--data", "/var/lib/pk-node", "--system", "--as", "root"], 2, /needs no privileges/, { uid: 0 }],
    [["install", "--data", "/var/lib/pk-node", "--system", "--as", "pk", "--token-file", token], 2, /private \/tmp/, { uid: 0 }],
    [["install", "--data", "/var/lib/pk-node", "--system", "--as", "nosuchuser"], 1, /no account nosuchuser/, { uid: 0 }],
    [["install", "--data", join(homedir(), ".pk-x"), "--system", "--as", "pk"], 1, /run it as root/, { uid: 1000 }],
    [["frob"], 2, /unknown subcommand "frob"/],
  ];
  for (const [args, code, message, options] of cases) {
    const c = host(options);
    assert.equal(await service(args, c.host), code, args.join(" "));
    assert.match(c.err.join(""), message, args.join(" "));
    assert.deepEqual(c.calls, [], `${args.join(" ")}: systemctl was not run`);
  }
  assert.ok(!existsSync(join(dir, "d")), "no data folder was made");
});

test("service: without systemd it says so and points Termux users to their guide", async (t) => {
  const dir = scratch(t);
  const plain = host({ systemd: false });
  assert.equal(await service(["install", "--data", join(dir, "d")], plain.host), 1);
  assert.match(plain.err.join(""), /systemd is not running on this machine \(no \/run\/systemd\/system\).*--dry-run/);
  const termux = host({ systemd: false, env: { TERMUX_VERSION: "0.118.1", PREFIX: "/data/data/com.termux/files/usr" } });
  assert.equal(await service(["install", "--data", join(dir, "d")], termux.host), 1);
  assert.match(termux.err.join(""), /Android has no systemd.*termux-services.*Termux:Boot.*docs\/guides\/android-termux\.md/);
  for (const sub of ["status", "uninstall"]) {
    const c = host({ systemd: false });
    assert.equal(await service([sub], c.host), 1, sub);
    assert.match(c.err.join(""), /systemd is not running/);
  }
  assert.ok(!existsSync(join(dir, "d")));
  // This machine, as it is: when systemd does not run it, the real host gives the same error.
  if (!REAL_HOST.systemdRunning()) {
    const err: string[] = [];
    const real: ServiceHost = { ...REAL_HOST, uid: 1000, err: (text) => void err.push(text), out: () => undefined };
    assert.equal(await service(["install", "--data", join(dir, "real")], real), 1);
    assert.match(err.join(""), /systemd is not running on this machine/);
  } else {
    t.diagnostic("systemd runs this machine: the real-host error path was not exercised");
  }
});

test("service: --dry-run prints the unit and where it would go; install, status and uninstall drive systemctl", async (t) => {
  const dir = scratch(t);
  const config = join(dir, "config");
  const env = { XDG_CONFIG_HOME: config, HOME: dir };
  const dry = host({ env });
  assert.equal(await service(["install", "--data", join(dir, "data"), "--dry-run"], dry.host), 0);
  assert.match(dry.out.join(""), new RegExp(`^# ${config}/systemd/user/pk-node\\.service\\n`));
  assert.match(dry.out.join(""), /ExecStart=.*bin\/pk\.js node --data .*--supervise/);
  assert.ok(!existsSync(join(dir, "data")) && !existsSync(config), "a dry run writes nothing");

  const c = host({ env });
  assert.equal(await service(["install", "--data", join(dir, "data"), "--unit", "pk-test"], c.host), 0, c.err.join(""));
  const unit = join(config, "systemd", "user", "pk-test.service");
  assert.match(readFileSync(unit, "utf8"), /^Restart=on-failure$/m);
  assert.equal(statSync(join(dir, "data")).mode & 0o777, 0o700, "the data folder is private");
  assert.deepEqual(c.calls, [["--user", "daemon-reload"], ["--user", "enable", "--now", "pk-test.service"]]);
  assert.match(c.out.join(""), /loginctl enable-linger/);

  const s = host({ env });
  assert.equal(await service(["status", "--unit", "pk-test"], s.host), 0, "a stopped unit is an answer (systemctl exits 3)");
  assert.match(s.out.join(""), /inactive \(dead\)/);
  assert.deepEqual(s.calls, [["--user", "status", "--no-pager", "--lines", "20", "pk-test.service"]]);

  const failing = host({ env, systemctlCode: 1 });
  assert.equal(await service(["install", "--data", join(dir, "data"), "--unit", "pk-test"], failing.host), 1);
  assert.match(failing.err.join(""), /systemctl --user daemon-reload failed \(exit 1\)/);

  const u = host({ env });
  assert.equal(await service(["uninstall", "--unit", "pk-test"], u.host), 0);
  assert.ok(!existsSync(unit));
  assert.ok(existsSync(join(dir, "data")), "the data folder stays");
  assert.deepEqual(u.calls, [["--user", "disable", "--now", "pk-test.service"], ["--user", "daemon-reload"]]);
  const again = host({ env });
  assert.equal(await service(["uninstall", "--unit", "pk-test"], again.host), 1);
  assert.match(again.err.join(""), /no unit at/);
});
