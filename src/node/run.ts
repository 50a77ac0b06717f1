// A real node process (`pk node`): the adapters plugged into the Kernel, the one place wall time
// becomes ticks, and the HTTP API. Boot order: data directory, identity, store, cluster token,
// transport, kernel (which restores local state before any traffic), tick loop, API; then one
// JSON line on stdout says the node is ready (pk up reads it from the log).
import { createEvolvePorts } from "../adapters/evolve-ports.ts";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { availableParallelism, hostname, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseAuthority, startApi, type Api } from "../adapters/http.ts";
import { loadOrCreateIdentity } from "../adapters/identity.ts";
import { formatAddress, openTransport, parseAddress, transportMetrics } from "../adapters/net.ts";
import { createSeal, makeToken, tokenFingerprint } from "../adapters/seal.ts";
import { BEACON_PORT, startBeacon, type Beacon } from "../adapters/beacon.ts";
import { openStore } from "../adapters/store.ts";
import { SharedFiles } from "../adapters/sfs-files.ts";
import { BundleFiles } from "../adapters/bundle-files.ts";
import { openVectorIndex, type VectorIndex } from "../adapters/vector-index.ts";
import { EMBED_DIMS } from "../core/self/embed.ts";
import { MindConfigError, MindCounters, mindConfigs, mindMetrics, openMind, type MindFlags } from "../adapters/minds.ts";
import { SFS_DEFAULTS } from "../core/collective/sfs.ts";
import { AssertionFailure } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";
import { createRng } from "../core/util/rng.ts";
import type { Role } from "../core/wire/messages.ts";
import { nodeApi } from "./api.ts";
import { createNodeShell, type HostStats } from "./commands.ts";
import { Kernel, KERNEL_DEFAULTS, type HostVitals } from "./kernel.ts";
import type { NodeContributionConfig } from "./body/contribution.ts";
import type { Clock, Identity, NodeTrust, Seal, SelfPorts, Store, SupervisorPort, Transport } from "./ports.ts";
import { CERT_FILE, loadTrust, saveGrant } from "../adapters/trust-files.ts";
import { decodeInvite, type InviteCode } from "./body/invites.ts";
import { redeemInvite } from "./redeem.ts";
import { KEY_EPOCH, readNumber, writeNumber } from "./store-values.ts";
import type { SubsystemSpec } from "./subsystem.ts";
import type { DmnPartConfig } from "./self/dmn.ts";

/** Ticks one wakeup of the loop may run to catch up; beyond that they are skipped and counted. */
export const CATCH_UP_TICKS_MAX = LIMITS.node.catchUpTicksMax;
/** Exit code of a node whose invariant broke (EX_SOFTWARE). */
export const EXIT_ASSERTION = 70;
/** Sampling period of the event-loop delay histogram, in ms. */
const LOOP_DELAY_RESOLUTION_MS = 10;
/** Milliseconds a graceful stop may take before the process exits anyway. */
const STOP_DEADLINE_MS = 5_000;
/** Milliseconds a stopping node keeps ticking after its graceful leave, for the news to go out. */
const LEAVE_GOSSIP_MS = 300;
/** Least interval between two log lines about survivable transport errors. */
const LOG_INTERVAL_MS = 10_000;

export interface NodeOptions {
  /** Data directory; created with mode 0700. */
  readonly data: string;
  /** "host:port" for UDP and TCP; default 127.0.0.1:0. */
  readonly listen?: string;
  /**
   * "host:port" peers are told to reach this node at; default the bound listen address. Required
   * when listen is a wildcard (0.0.0.0 or ::), which is no address a peer can send to.
   */
  readonly advertise?: string;
  /** "host:port" for the HTTP API; default 127.0.0.1:0. */
  readonly api?: string;
  readonly join?: readonly string[];
  /**
   * The cluster token; else PK_TOKEN from `env`, else DATA/token (made on a founder's first boot).
   * `pk node` reads it from --token-file or PK_TOKEN, never from its command line.
   */
  readonly token?: string;
  /**
   * Names ("host" or "host:port") the HTTP API answers to besides its loopback names and its bound
   * address (`pk node --public-name`): Host and Origin must be one of these (src/adapters/http.ts).
   */
  readonly publicNames?: readonly string[];
  readonly role?: Role;
  /** A file holding the cluster's owner key (PKCS#8 PEM): the node certifies itself with it. */
  readonly ownerKey?: string;
  /** An invite code (`invite` on a core node): the node redeems it for its certificate and joins its seed. */
  readonly invite?: string;
  readonly name?: string;
  readonly tickMs?: number;
  /** Regeneration after a majority of voters died (ADR 008); default on. */
  readonly regenerate?: boolean;
  /**
   * Zero-configuration discovery (src/adapters/beacon.ts): a node without --join announces itself
   * on a multicast group and, on its first boot, listens DISCOVER_WAIT_MS for nodes of its cluster
   * (same token) before it decides to found a cluster or to join one. Default off here; `pk node`
   * turns it on unless --no-discover.
   */
  readonly discover?: boolean;
  /** The multicast port (default 7399). */
  readonly discoverPort?: number;
  /**
   * The node owns its process (`pk node`): it installs SIGTERM/SIGINT handlers that stop it and
   * exit 0, exits 70 on a broken invariant, and prints the ready line on stdout. Default false
   * (in-process use, as in tests).
   */
  readonly ownProcess?: boolean;
  /**
   * The subsystems this node runs (default: the registry's SUBSYSTEMS). A test adds one of its own
   * to drive the node from inside, as test/cli/attacks.test.ts's attacker does.
   */
  readonly subsystems?: readonly SubsystemSpec[];
  /**
   * The models this node can ask (src/adapters/mind-config.ts): --mind URL#MODEL for a local model
   * it serves to the swarm; frontier minds come from provider keys in `env` (PK_MIND_FRONTIER=off: none).
   */
  readonly minds?: MindFlags;
  /** The supervisor this node runs under (`pk node --supervise`, src/adapters/supervisor-link.ts): it may upgrade. */
  readonly supervisor?: SupervisorPort;
  /** Environment to read PK_TOKEN and provider keys from; default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The contribution policy and caps (`pk node --contribute, --cpu-cap, ...`; ADR 027); default KERNEL_DEFAULTS.contribution. */
  readonly contribution?: Partial<NodeContributionConfig>;
}

export interface RunningNode {
  readonly id: string;
  /** The transport's bound "host:port". */
  readonly listen: string;
  /** The "host:port" peers are told (the member address): --advertise, or else `listen`. */
  readonly advertise: string;
  /** The API's base URL. */
  readonly api: string;
  readonly token: string;
  readonly kernel: Kernel;
  stop(): Promise<void>;
  /** Resolves when the node has stopped. */
  readonly stopped: Promise<void>;
}

/** An error in the node's configuration or environment, reported as one line. */
export class NodeStartError extends Error {
  override name = "NodeStartError";
}

/** Splits "host:port" or "[v6]:port"; the port must be 0–65535. */
export function parseHostPort(value: string, what: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(value);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || !(port >= 0 && port <= 65535)) {
    throw new NodeStartError(`${what} must be HOST:PORT (e.g. 127.0.0.1:7401), got ${JSON.stringify(value.slice(0, 80))}`);
  }
  return { host: match[1] ?? match[2] ?? "", port };
}

/** Whether `host` is an IP literal meaning "every interface" (0.0.0.0, ::, ::0, 0:0:…:0). */
export function isWildcardHost(host: string): boolean {
  const family = isIP(host);
  if (family === 4) return host === "0.0.0.0";
  if (family === 6) return host.split(":").every((group) => /^0*$/.test(group));
  return false;
}

/**
 * The address peers are told: --advertise when given (a concrete HOST:PORT with a real port),
 * else the listen address, which must then not be a wildcard. Undefined means "the bound address"
 * (listen port 0 is known only after binding).
 */
function resolveAdvertise(options: NodeOptions, listen: { host: string; port: number }): string | undefined {
  if (options.advertise === undefined) {
    if (isWildcardHost(listen.host)) {
      const port = listen.port === 0 ? "PORT" : String(listen.port);
      throw new NodeStartError(`--listen ${(options.listen ?? "").slice(0, 80)} binds every interface, which is no address peers can reach; pass --advertise HOST:${port} with the address other machines reach this node at`);
    }
    return undefined;
  }
  const given = options.advertise;
  const parsed = parseAddress(given);
  if (parsed === undefined) {
    throw new NodeStartError(`--advertise must be HOST:PORT with a port from 1 to 65535 (e.g. 192.168.1.20:7401; IPv6 as [addr]:port), got ${JSON.stringify(given.slice(0, 80))}`);
  }
  if (isWildcardHost(parsed.host)) {
    throw new NodeStartError(`--advertise must be an address peers can reach, not the wildcard ${JSON.stringify(given.slice(0, 80))}`);
  }
  return formatAddress(parsed.host, parsed.port);
}

/** The transport as the kernel sees it: the same sockets, with `address` the advertised one. */
function advertisedAs(transport: Transport, address: string): Transport {
  return {
    address,
    send: (to, channel, packet) => transport.send(to, channel, packet),
    onPacket: (handler) => transport.onPacket(handler),
    onDrop: (handler) => transport.onDrop(handler),
    close: () => transport.close(),
  };
}

const wallClock: Clock = {
  // Wall time with sub-millisecond resolution (RTTs on loopback are tens of microseconds).
  nowMs: () => performance.timeOrigin + performance.now(),
};

function resolveToken(options: NodeOptions, dataDir: string, invite: InviteCode | undefined): string {
  const env = options.env ?? process.env;
  const given = options.token ?? env["PK_TOKEN"];
  if (given !== undefined && given.trim() !== "") return given.trim();
  const file = join(dataDir, "token");
  if (invite !== undefined && !existsSync(file)) {
    // The code carries the token; kept like a founder's, so a restart needs no code.
    writeFileSync(file, `${invite.token}\n`, { mode: 0o600, flag: "wx" });
    return invite.token;
  }
  if (existsSync(file)) {
    const stored = readFileSync(file, "utf8").trim();
    if (stored === "") throw new NodeStartError(`${file} is empty; delete it, or give the token with --token-file FILE or PK_TOKEN`);
    return stored;
  }
  if ((options.join ?? []).length > 0) {
    throw new NodeStartError(`joining a cluster needs its token: pass --token-file FILE, set PK_TOKEN, or put it in ${file}`);
  }
  const token = makeToken();
  writeFileSync(file, `${token}\n`, { mode: 0o600, flag: "wx" });
  return token;
}

function defaultName(): string {
  return hostname().slice(0, LIMITS.nameCharsMax);
}

/** Starts a node; resolves when it is ready (transport open, kernel started, API listening). */
export async function runNode(options: NodeOptions): Promise<RunningNode> {
  const dataDir = resolve(options.data);
  const listen = parseHostPort(options.listen ?? "127.0.0.1:0", "--listen");
  const advertise = resolveAdvertise(options, listen);
  const apiAddr = parseHostPort(options.api ?? "127.0.0.1:0", "--api");
  for (const join of options.join ?? []) {
    if (parseHostPort(join, "--join").port === 0) throw new NodeStartError(`--join needs a real port, got ${JSON.stringify(join.slice(0, 80))}`);
  }
  const name = options.name ?? defaultName();
  if (name.length > LIMITS.nameCharsMax) throw new NodeStartError(`--name is longer than ${LIMITS.nameCharsMax} characters`);
  const publicNames = options.publicNames ?? [];
  if (publicNames.length > LIMITS.api.publicNamesMax) throw new NodeStartError(`--public-name may be given at most ${LIMITS.api.publicNamesMax} times`);
  for (const publicName of publicNames) {
    if (parseAuthority(publicName, 1) === undefined) {
      throw new NodeStartError(`--public-name must be HOST or HOST:PORT (a DNS name or an IP address, IPv6 in brackets), got ${JSON.stringify(publicName.slice(0, 80))}`);
    }
  }
  const tickMs = options.tickMs ?? KERNEL_DEFAULTS.tickMs;
  if (!(tickMs > 0 && tickMs <= 1000)) throw new NodeStartError(`tick interval must be in (0, 1000] ms, got ${tickMs}`);

  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    chmodSync(dataDir, 0o700);
  } catch (error) {
    throw new NodeStartError(`cannot use data directory ${dataDir}: ${(error as Error).message}`);
  }
  let identity: Identity;
  let token: string;
  let seal: Seal;
  const invite = options.invite === undefined ? undefined : decodeInvite(options.invite);
  if (typeof invite === "string") throw new NodeStartError(`--invite-file: ${invite}`);
  try {
    identity = loadOrCreateIdentity(dataDir);
    token = resolveToken(options, dataDir, invite);
    seal = createSeal(token, identity);
  } catch (error) {
    if (error instanceof NodeStartError) throw error;
    throw new NodeStartError(error instanceof Error ? error.message : String(error));
  }

  const closers: Array<() => Promise<void> | void> = [];
  const unwind = async (): Promise<void> => {
    for (const close of closers.reverse()) {
      try {
        await close();
      } catch {
        // Best effort while unwinding a failed start.
      }
    }
  };
  let store: Store;
  let transport: Transport;
  let boundAddress: string;
  let kernel: Kernel;
  let api: Api;
  let beacon: Beacon | undefined;
  const ticker = { timer: undefined as NodeJS.Timeout | undefined, skipped: 0 };
  const delay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  try {
    store = openStore(join(dataDir, "state.db"));
    const openedStore = store;
    closers.push(() => openedStore.close());
    const openedTransport = await openTransport({ host: listen.host, port: listen.port, onError: rateLimitedLog("transport") });
    transport = openedTransport;
    closers.push(() => openedTransport.close());
    if (advertise !== undefined) transport = advertisedAs(openedTransport, advertise);
    boundAddress = openedTransport.address;

    let joinAddrs = options.join ?? [];
    if (invite !== undefined && !existsSync(join(dataDir, CERT_FILE))) {
      // Before the kernel: the invite is redeemed for this node's certificate, then it joins the seed.
      const epoch = Math.max((readNumber(store.get(KEY_EPOCH)) ?? 0) + 1, Date.now());
      store.write([{ key: KEY_EPOCH, value: writeNumber(epoch) }], { durable: true });
      try {
        const granted = await redeemInvite({ transport, seal, identity, code: invite, epoch, timeoutMs: LIMITS.trust.redeemTimeoutMs });
        saveGrant(dataDir, invite.owner, granted.cert);
      } catch (error) {
        throw new NodeStartError(error instanceof Error ? error.message : String(error));
      }
    }
    if (invite !== undefined && joinAddrs.length === 0) joinAddrs = [invite.seed.addr];
    if (joinAddrs.length === 0 && options.discover === true) {
      const opened = await startBeacon({
        fingerprint: tokenFingerprint(token), id: identity.id, addr: transport.address, interface: listen.host,
        port: options.discoverPort ?? BEACON_PORT, onError: rateLimitedLog("beacon"),
      });
      beacon = opened;
      closers.push(() => opened.close());
      joinAddrs = await discoverJoin(opened, identity.id, store);
    }

    // What the cluster's owner granted this node (docs/adr/012-trust.md): its certificate, made
    // here when it founds the cluster or was given the owner key.
    let trust: NodeTrust;
    try {
      trust = { ...loadTrust(dataDir, identity, { found: joinAddrs.length === 0, ownerKeyFile: options.ownerKey, role: invite === undefined ? options.role : undefined }), token };
    } catch (error) {
      throw new NodeStartError(error instanceof Error ? error.message : String(error));
    }

    // The /shared/ folder (issue 5, sfs): its boot scan runs once the kernel has started.
    const files = await SharedFiles.open(dataDir, { chunkBytes: SFS_DEFAULTS.chunkBytes });

    // The minds (issue 14): clients built here, where the environment is read; keys stay inside them.
    let self: SelfPorts;
    try {
      const counters = new MindCounters();
      const minds = mindConfigs(options.minds ?? {}, options.env ?? process.env, identity.id).map((config) => openMind(config, { counters }));
      // The memory's HNSW index (usearch); where its binary does not load, search stays exact.
      const ann = (): VectorIndex | undefined => {
        const opened = openVectorIndex(EMBED_DIMS);
        if (!opened.ok) process.stderr.write(`memory: vector index unavailable, exact search only (${opened.error})\n`);
        return opened.ok ? opened.index : undefined;
      };
      self = { minds, ann, metrics: (registry) => mindMetrics(counters, registry) };
    } catch (error) {
      if (error instanceof MindConfigError) throw new NodeStartError(error.message);
      throw error;
    }

    const seed = randomBytes(16);
    const rng = createRng(seed.readBigUInt64BE(0), seed.readBigUInt64BE(8));
    // The verifier's thread and the sandbox's worker start when a program is first verified or run.
    const evolve = createEvolvePorts();
    closers.push(() => evolve.close());
    const host: HostVitals = {
      cores: availableParallelism(),
      sample: () => ({
        load1: loadavg()[0] ?? 0,
        rssBytes: process.memoryUsage.rss(),
        heapUsedBytes: process.memoryUsage().heapUsed,
        loopDelayP99Ms: loopDelayMs(delay, delay.percentile(99)),
      }),
    };
    kernel = new Kernel(
      // Raft's ready is deferred to setImmediate: every packet and request handled in one turn of
      // the event loop shares one fsync (group commit).
      { transport, store, clock: wallClock, seal, identity, trust, rng, host, defer: (fn) => setImmediate(fn), files, self, evolve, bundles: new BundleFiles(dataDir), ...(options.supervisor === undefined ? {} : { supervisor: options.supervisor }) },
      {
        ...KERNEL_DEFAULTS, tickMs, name, role: options.role ?? "core", join: joinAddrs,
        dmn: dmnConfig(options.env ?? process.env, tickMs),
        contribution: { ...KERNEL_DEFAULTS.contribution, ...options.contribution },
        consensus: {
          ...KERNEL_DEFAULTS.consensus,
          regenerate: options.regenerate ?? KERNEL_DEFAULTS.consensus.regenerate,
          ...(process.env["PK_RAFT_DISK_THREAD"] === "0" ? { diskThread: false } : {}),
        },
      },
      options.subsystems,
    );
    kernel.start();
    beacon?.setMember(true);
    const folder = kernel.sharedFolder;
    if (folder !== undefined) folder.boot().then(() => kernel.brain.load()).catch(rateLimitedLog("shared folder boot scan"));
    const startedKernel = kernel;
    closers.push(() => startedKernel.stop());

    delay.enable();
    closers.push(() => {
      delay.disable();
    });
    const hostStats = (): HostStats => ({
      ticksSkipped: ticker.skipped,
      loopDelayP50Ms: loopDelayMs(delay, delay.percentile(50)),
      loopDelayP99Ms: loopDelayMs(delay, delay.percentile(99)),
      loopDelayMaxMs: loopDelayMs(delay, delay.max),
    });
    startTicking(kernel, tickMs, ticker, delay);
    closers.push(() => clearInterval(ticker.timer));

    const shell = createNodeShell(kernel, hostStats);
    // A guarded task's command runs in this node's shell; its output is kept for `heal list`.
    kernel.guardRunner = (command) => shell.execute(command).output;
    const apiNode = nodeApi(kernel, shell, hostStats);
    const metrics: typeof apiNode.metrics = (registry) => {
      apiNode.metrics(registry);
      transportMetrics(openedTransport, registry);
    };
    api = await startApi({ node: { ...apiNode, metrics }, host: apiAddr.host, port: apiAddr.port, token, publicNames });
    const openedApi = api;
    closers.push(() => openedApi.close());
  } catch (error) {
    await unwind();
    if (error instanceof AssertionFailure) throw error;
    throw new NodeStartError(error instanceof Error ? error.message : String(error));
  }

  let stopping: Promise<void> | undefined;
  let markStopped = (): void => undefined;
  const stopped = new Promise<void>((resolveStopped) => {
    markStopped = resolveStopped;
  });
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // The API first: new requests are refused (503 SHUTTING_DOWN: nothing done, ask another
      // node) while those in flight finish with the loop still ticking, instead of being cut
      // (an unknown outcome for the client). Then leave gracefully: SWIM's leave news goes out
      // with the next gossip rounds while the loop still ticks, so the others mark this node left
      // rather than suspect it. Then stop ticking and the kernel, so nothing is sent while the
      // sockets close.
      const apiClosed = api.close();
      kernel.leave();
      await sleep(LEAVE_GOSSIP_MS);
      await apiClosed;
      clearInterval(ticker.timer);
      kernel.stop();
      await beacon?.close();
      await transport.close();
      store.close();
      delay.disable();
      markStopped();
    })();
    return stopping;
  };

  const node: RunningNode = { id: kernel.id, listen: boundAddress, advertise: transport.address, api: api.url, token, kernel, stop, stopped };
  if (options.ownProcess === true) {
    // DATA/pid: `pk down` finds a node restarted by hand (cluster.json holds the pid pk up started).
    writeFileSync(join(dataDir, "pid"), `${process.pid}\n`, { mode: 0o600 });
    ownTheProcess(node);
  }
  return node;
}

/**
 * The tick loop: one interval; each wakeup runs the ticks wall time says are due, at most
 * CATCH_UP_TICKS_MAX of them (a node that was frozen does not replay minutes of ticks at once),
 * after reading what arrived while it was frozen. A broken invariant inside a tick is fatal.
 */
function startTicking(kernel: Kernel, tickMs: number, ticker: { timer: NodeJS.Timeout | undefined; skipped: number }, delay: { reset(): void }): void {
  const startedAt = performance.now();
  let done = 0;
  let sinceReset = 0;
  ticker.timer = setInterval(() => {
    const due = Math.floor((performance.now() - startedAt) / tickMs);
    let pending = due - done;
    if (pending > CATCH_UP_TICKS_MAX) {
      ticker.skipped += pending - CATCH_UP_TICKS_MAX;
      done += pending - CATCH_UP_TICKS_MAX;
      pending = CATCH_UP_TICKS_MAX;
    }
    done += pending;
    // Event-loop delay percentiles cover roughly the last minute.
    sinceReset += pending;
    if (sinceReset >= 60 * LIMITS.ticksPerSecond) {
      sinceReset = 0;
      delay.reset();
    }
    if (pending <= 1) {
      if (pending === 1) kernel.tick();
      return;
    }
    // A wakeup this late means the event loop was blocked, and what peers sent meanwhile (acks,
    // Raft heartbeats) waits in the sockets. SWIM stretches its timeouts (Lifeguard), and the missed
    // ticks run after this loop iteration's poll phase has read those sockets (setImmediate): run
    // at once, they judged peers silent whose messages were already here — with every process of a
    // loaded machine stalled alike, followers started elections under a live leader.
    kernel.noteLoopDelay((pending - 1) * tickMs);
    const missed = pending;
    setImmediate(() => {
      for (let i = 0; i < missed; i++) kernel.tick();
    });
  }, tickMs);
}

/** Milliseconds a fresh node listens for beacons before it founds a cluster or joins one. */
const DISCOVER_WAIT_MS = 1_500;

/**
 * Whom a node without --join joins. A node with state from an earlier boot rejoins the members it
 * remembers (nobody to join here). A fresh one listens for beacons of its cluster: it joins a node
 * that already runs in the cluster, or — when everyone heard is as fresh as itself — the lowest id
 * among them, which founds the cluster (so nodes started together make one cluster, not several).
 */
async function discoverJoin(beacon: Beacon, selfId: string, store: Store): Promise<string[]> {
  if (store.get("raft/hard") !== undefined || store.scan("roster/member/", 1).length > 0) return [];
  await sleep(DISCOVER_WAIT_MS);
  const peers = beacon.peers();
  const member = peers.find((peer) => peer.member);
  if (member !== undefined) return [member.addr];
  const lowest = peers.filter((peer) => peer.id < selfId).sort((a, b) => (a.id < b.id ? -1 : 1))[0];
  return lowest === undefined ? [] : [lowest.addr];
}

/** Logs survivable errors on stderr, at most one line per LOG_INTERVAL_MS (with a count of the rest). */
function rateLimitedLog(what: string): (error: Error) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (error) => {
    const now = performance.now();
    if (now - last < LOG_INTERVAL_MS) {
      suppressed++;
      return;
    }
    last = now;
    const more = suppressed > 0 ? ` (${suppressed} more since the last report)` : "";
    suppressed = 0;
    process.stderr.write(`pk node: ${what}: ${error.message.slice(0, 300)}${more}\n`);
  };
}

/** Writes a fatal error and exits: 70 for a broken invariant, 1 for anything else. */
/**
 * The DMN's configuration: its defaults, or with PK_DMN_EVERY_MS every job due that often once the
 * node is idle (a benchmark's or a demo's knob: bench/dmn.ts keeps the DMN working through a run).
 */
function dmnConfig(env: Readonly<Record<string, string | undefined>>, tickMs: number): DmnPartConfig {
  const every = env["PK_DMN_EVERY_MS"];
  if (every === undefined || every === "") return KERNEL_DEFAULTS.dmn;
  const ms = Number(every);
  if (!Number.isInteger(ms) || ms < tickMs || ms > 86_400_000) throw new NodeStartError(`PK_DMN_EVERY_MS must be a whole number of milliseconds from ${tickMs} to 86400000`);
  const ticks = Math.ceil(ms / tickMs);
  const all = { consolidate: ticks, review: ticks, ga: ticks, train: ticks };
  return { ...KERNEL_DEFAULTS.dmn, everyTicks: all, idleTicksFor: { ...KERNEL_DEFAULTS.dmn.idleTicksFor, train: KERNEL_DEFAULTS.dmn.idleTicks } };
}

export function exitOnFatal(error: unknown): never {
  if (error instanceof AssertionFailure) {
    process.stderr.write(`pk node: invariant violated, exiting (the node recovers from its data directory on restart): ${error.message}\n${error.stack ?? ""}\n`);
    process.exit(EXIT_ASSERTION);
  }
  const text = error instanceof Error ? `${error.message}\n${error.stack ?? ""}` : String(error);
  process.stderr.write(`pk node: fatal error: ${text}\n`);
  process.exit(1);
}

function ownTheProcess(node: RunningNode): void {
  process.on("uncaughtException", exitOnFatal);
  process.on("unhandledRejection", exitOnFatal);
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`pk node: ${signal}, stopping\n`);
    const deadline = setTimeout(() => {
      process.stderr.write("pk node: stop took too long, exiting\n");
      process.exit(1);
    }, STOP_DEADLINE_MS);
    deadline.unref();
    node.stop().then(() => process.exit(0), exitOnFatal);
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  process.stdout.write(`${JSON.stringify({ ready: true, id: node.id, listen: node.listen, advertise: node.advertise, api: node.api })}\n`);
}

/**
 * The histogram records the time between samples, so an idle loop reads as the resolution itself;
 * the delay is what exceeds it.
 */
function loopDelayMs(delay: { count: number }, nanoseconds: number): number {
  if (delay.count === 0) return 0;
  return Math.max(0, nanoseconds / 1e6 - LOOP_DELAY_RESOLUTION_MS);
}
