// The cluster simulator (DESIGN.md §2.3): N kernels — the real node code of src/node/kernel.ts —
// on a simulated network, simulated disks and simulated clocks, in virtual time, all from one
// seed. Each tick the network delivers the packets due, then every live kernel ticks. Nothing reads
// the wall clock or ambient randomness, so a seed replays exactly; `traceHash` folds every
// delivered packet, in order, into one fingerprint of the run.
//
// With `sharedFolder`, every node also gets a files port on its simulated disk (src/sim/files.ts):
// the shared folder and the Brain's model file run as on a real node. Its operations complete at
// ticks of the simulation and their Promise callbacks run between ticks, so a cluster with a
// shared folder is driven by runAsync (run() would leave the callbacks until it returns).
import { createIdentityFromSeed } from "../adapters/identity.ts";
import { issueCert } from "../core/body/trust.ts";
import { createSimIdentity } from "./identity.ts";
import { createSeal } from "../adapters/seal.ts";
import { assert } from "../core/util/assert.ts";
import { LIMITS } from "../core/util/limits.ts";
import { createRng, type Rng } from "../core/util/rng.ts";
import { Kernel, KERNEL_DEFAULTS, DROP_REASONS, type DropReason, type KernelConfig } from "../node/kernel.ts";
import type { Identity, NodeTrust, Seal, Transport } from "../node/ports.ts";
import type { SubsystemSpec } from "../node/subsystem.ts";
import type { Role } from "../core/wire/messages.ts";
import type { Channel } from "../core/wire/envelope.ts";
import { SimClock } from "./clock.ts";
import { SimDisk, SimStore } from "./disk.ts";
import { SimFiles } from "./files.ts";
import { SFS_DEFAULTS } from "../core/collective/sfs.ts";
import { SimNetwork, randomFaults, type LinkFaults, type SimEndpoint } from "./network.ts";
import { createSimSeal } from "./seal.ts";

export type FaultProfile = "none" | "lossy" | "random";

export interface ClusterOptions {
  readonly nodes: number;
  readonly seed: number;
  /** Network faults: none (1-tick links), lossy (delay, jitter, 5% loss, 1% duplication), random (drawn from the seed). */
  readonly faults?: FaultProfile;
  /** "sim": checksum seal (fast); "real": the ChaCha20-Poly1305 seal real nodes use. */
  readonly seal?: "sim" | "real";
  /** Clock offset and drift per node (on by default). */
  readonly clockSkew?: boolean;
  readonly kernel?: Partial<Omit<KernelConfig, "name" | "join">>;
  /** A files port on each node's simulated disk: the shared folder (and the Brain's model file) on. Default off. */
  readonly sharedFolder?: boolean;
  /** Each node's role by index (default: every node core). */
  readonly roles?: readonly Role[];
  /** The subsystems every node runs (default: the registry's). */
  readonly subsystems?: readonly SubsystemSpec[];
}

export interface SimNode {
  readonly index: number;
  readonly address: string;
  readonly identity: Identity;
  readonly disk: SimDisk;
  kernel: Kernel;
  /** The files port of the running process (sharedFolder), a new one at every boot. */
  files: SimFiles | undefined;
  /** The last failure of the shared folder's boot scan, if any. */
  filesError: string | undefined;
  endpoint: SimEndpoint;
  alive: boolean;
  /** While now < stalledUntil the node's event loop is frozen: no ticks, inbound packets queue. */
  stalledUntil: number;
  stallTicks: number;
  readonly backlog: Array<[Uint8Array, Channel, string]>;
}

/** Packets queued for a stalled node (a socket's receive buffer); beyond it they are lost. */
const STALL_BACKLOG_MAX = LIMITS.sim.stallBacklogMax;
/** Ticks a node runs at once after a stall, as run.ts's catch-up bound. */
const CATCH_UP_TICKS_MAX = LIMITS.node.catchUpTicksMax;

export interface SimResult {
  readonly seed: number;
  readonly nodes: number;
  readonly ticks: number;
  /** Packets delivered by the network. */
  readonly messages: number;
  readonly sent: number;
  readonly traceHash: string;
  /** First tick at which every live node knew every live node; null if not reached. */
  readonly convergedAtTick: number | null;
  readonly membersKnown: { readonly min: number; readonly mean: number };
  readonly kernelDrops: Record<DropReason, number>;
  readonly faults: FaultProfile;
}

const SIM_TOKEN = "p-kernel-simulated-cluster-token";
const LOSSY: Partial<LinkFaults> = {
  minDelayTicks: 1,
  jitter: { kind: "exponential", meanTicks: 2, maxTicks: 20 },
  lossRate: 0.05,
  duplicateRate: 0.01,
  reorderRate: 0.01,
  reorderDelayTicksMax: 10,
};

export class SimCluster {
  readonly seed: number;
  readonly network: SimNetwork;
  /** The cluster's owner key: it certified every node (core ones keep it). */
  readonly owner: Identity;
  readonly nodes: SimNode[] = [];
  readonly #rng: Rng;
  readonly #options: ClusterOptions;
  #now = 0;
  #convergedAtTick: number | null = null;

  constructor(options: ClusterOptions) {
    assert(Number.isInteger(options.nodes) && options.nodes >= 1, "SimCluster: nodes must be a positive integer");
    this.seed = options.seed;
    this.#options = options;
    this.#rng = createRng(options.seed);
    const faults = options.faults ?? "none";
    const networkRng = this.#rng.fork();
    const linkFaults = faults === "none" ? {} : faults === "lossy" ? LOSSY : randomFaults(this.#rng.fork());
    this.network = new SimNetwork({ rng: networkRng, faults: linkFaults });
    const seedAddress = addressOf(0);
    // The cluster's owner key, apart from the run's randomness (its draws stay as they were).
    const ownerSeed = new Uint8Array(32);
    const ownerRng = createRng(options.seed, 0x0be7);
    for (let i = 0; i < 32; i += 4) new DataView(ownerSeed.buffer).setUint32(i, ownerRng.nextU32());
    this.owner = options.seal === "real" ? createIdentityFromSeed(ownerSeed) : createSimIdentity(ownerSeed);
    for (let index = 0; index < options.nodes; index++) {
      const keySeed = new Uint8Array(32);
      for (let i = 0; i < 32; i += 4) new DataView(keySeed.buffer).setUint32(i, this.#rng.nextU32());
      const identity = options.seal === "real" ? createIdentityFromSeed(keySeed) : createSimIdentity(keySeed);
      const disk = new SimDisk();
      const address = addressOf(index);
      const node: SimNode = {
        index, address, identity, disk,
        endpoint: this.network.createEndpoint(address),
        kernel: undefined as unknown as Kernel,
        files: undefined,
        filesError: undefined,
        alive: true,
        stalledUntil: 0,
        stallTicks: 0,
        backlog: [],
      };
      node.kernel = this.#boot(node, index === 0 ? [] : [seedAddress]);
      this.nodes.push(node);
    }
  }

  get now(): number {
    return this.#now;
  }

  /** Advances virtual time by one tick: deliver what is due, then tick every live kernel. */
  tick(): void {
    this.#now++;
    this.network.deliverDue(this.#now);
    for (const node of this.nodes) {
      if (!node.alive) continue;
      if (node.stalledUntil === 0) {
        node.files?.run(this.#now);
        node.kernel.tick();
      } else if (node.stalledUntil <= this.#now) this.#unstall(node);
    }
    if (this.#convergedAtTick === null && this.#now % 10 === 0 && this.#converged()) this.#convergedAtTick = this.#now;
  }

  run(ticks: number): void {
    for (let i = 0; i < ticks; i++) this.tick();
  }

  /**
   * Like run(), and after every tick lets the Promise callbacks it caused run (the files port's
   * completions, the shared folder's and the Brain's continuations) before the next tick: a
   * setImmediate runs once the microtask queue is empty, and nothing else is queued in a
   * simulation, so the interleaving depends on the seed alone.
   */
  async runAsync(ticks: number): Promise<void> {
    for (let i = 0; i < ticks; i++) {
      this.tick();
      await settle();
    }
  }

  /**
   * Freezes a node's event loop for `ticks` (a long GC pause, a blocked disk): it neither ticks nor
   * reads packets, which queue as in a socket buffer. Afterwards it runs like run.ts does: it notes
   * the loop delay, reads what queued, then catches up at most CATCH_UP_TICKS_MAX ticks.
   */
  stall(index: number, ticks: number): void {
    const node = this.#node(index);
    assert(node.alive && node.stalledUntil === 0, `SimCluster: node ${index} cannot stall now`);
    assert(Number.isInteger(ticks) && ticks > 0, "SimCluster: stall ticks must be a positive integer");
    node.stalledUntil = this.#now + ticks;
    node.stallTicks = ticks;
  }

  #unstall(node: SimNode): void {
    const stalled = node.stallTicks;
    node.stalledUntil = 0;
    node.kernel.noteLoopDelay(stalled * node.kernel.config.tickMs);
    const backlog = node.backlog.splice(0);
    for (const [packet, channel, from] of backlog) node.kernel.receive(packet, channel, from);
    for (let i = 0; i < Math.min(stalled, CATCH_UP_TICKS_MAX); i++) node.kernel.tick();
  }

  /** Kills a node as a power loss would: its packets stop, its unsynced writes are lost or torn. */
  crash(index: number): void {
    const node = this.#node(index);
    assert(node.alive, `SimCluster: node ${index} is already down`);
    node.kernel.stop();
    node.files?.kill();
    node.endpoint.closeNow();
    node.stalledUntil = 0;
    node.backlog.length = 0;
    node.disk.crash(this.#rng, { tornProbability: 0.5 });
    node.alive = false;
    this.#convergedAtTick = null;
  }

  /** Boots a crashed node again from what its disk kept, at the same address with the same key. */
  restart(index: number): void {
    const node = this.#node(index);
    assert(!node.alive, `SimCluster: node ${index} is running`);
    node.endpoint = this.network.createEndpoint(node.address);
    node.kernel = this.#boot(node, index === 0 ? [] : [addressOf(0)]);
    node.alive = true;
  }

  result(): SimResult {
    const live = this.nodes.filter((node) => node.alive);
    let min = Number.POSITIVE_INFINITY;
    let sum = 0;
    const kernelDrops = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
    for (const node of live) {
      const known = node.kernel.swim.size;
      min = Math.min(min, known);
      sum += known;
      for (const reason of DROP_REASONS) kernelDrops[reason] += node.kernel.stats.dropped[reason];
    }
    return {
      seed: this.seed,
      nodes: this.nodes.length,
      ticks: this.#now,
      messages: this.network.delivered,
      sent: this.network.stats.sent,
      traceHash: this.network.traceHash,
      convergedAtTick: this.#convergedAtTick,
      membersKnown: { min: live.length === 0 ? 0 : min, mean: live.length === 0 ? 0 : sum / live.length },
      kernelDrops,
      faults: this.#options.faults ?? "none",
    };
  }

  #boot(node: SimNode, join: readonly string[]): Kernel {
    const options = this.#options;
    const clock = options.clockSkew === false
      ? new SimClock(this.network)
      : SimClock.random(this.network, this.#rng.fork());
    const seal: Seal = options.seal === "real" ? createSeal(SIM_TOKEN, node.identity) : createSimSeal(node.identity.id, { publicKey: node.identity.publicKey });
    const role = options.roles?.[node.index] ?? "core";
    const trust: NodeTrust = {
      owner: this.owner.publicKey,
      cert: issueCert(this.owner, node.identity.publicKey, { role, issuedMs: 0, expiresMs: 0 }),
      ...(role === "core" ? { ownerKey: this.owner } : {}),
    };
    const files = options.sharedFolder === true
      ? new SimFiles(node.disk, { chunkBytes: SFS_DEFAULTS.chunkBytes, clockMs: () => clock.nowMs(), rng: this.#rng.fork() })
      : undefined;
    node.files = files;
    const kernel = new Kernel(
      {
        transport: this.#transportOf(node), store: SimStore.recover(node.disk), clock, seal, identity: node.identity, trust, rng: this.#rng.fork(),
        ...(files === undefined ? {} : { files }),
      },
      {
        ...KERNEL_DEFAULTS,
        ...options.kernel,
        ...(options.roles?.[node.index] === undefined ? {} : { role: options.roles[node.index] }),
        name: `n${node.index}`,
        join,
      },
      ...(options.subsystems === undefined ? [] : [options.subsystems]),
    );
    kernel.start();
    // As run.ts: the boot scan, then the model file.
    kernel.sharedFolder?.boot().then(() => kernel.brain.load()).catch((error: unknown) => {
      node.filesError = error instanceof Error ? error.message : String(error);
    });
    return kernel;
  }

  /** The node's endpoint, with inbound packets queued while the node is stalled. */
  #transportOf(node: SimNode): Transport {
    const endpoint = node.endpoint;
    return {
      address: endpoint.address,
      send: (to, channel, packet) => endpoint.send(to, channel, packet),
      onPacket: (handler) => endpoint.onPacket((packet, channel, from) => {
        if (node.stalledUntil === 0) handler(packet, channel, from);
        else if (node.backlog.length < STALL_BACKLOG_MAX) node.backlog.push([packet, channel, from]);
      }),
      onDrop: (handler) => endpoint.onDrop(handler),
      close: () => endpoint.close(),
    };
  }

  #node(index: number): SimNode {
    const node = this.nodes[index];
    assert(node !== undefined, `SimCluster: no node ${index}`);
    return node;
  }

  #converged(): boolean {
    let live = 0;
    for (const node of this.nodes) if (node.alive) live++;
    for (const node of this.nodes) if (node.alive && node.kernel.swim.size !== live) return false;
    return true;
  }
}

function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function addressOf(index: number): string {
  return `sim${index}:7400`;
}
