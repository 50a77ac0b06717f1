// The `bundle` subsystem (Evolution layer, issue 16; docs/protocols/bundle.md, ADR 020): members
// advertise the code version they run and the newest signed bundle they hold; a node that is
// behind fetches the newer bundle's chunks from every peer that holds it at once (BundleFetch:
// a window per peer, re-asked elsewhere on a timeout or a bad chunk), verifies the metadata
// against the owner key and every chunk against the signed address, installs it beside the
// running code (DATA/bundles/<address>/) and announces it: the `bundle-ready` event and ready().
// Restarting into it is the rollout's work, not this subsystem's.
//
// Refusals are counted by reason and peer (`bundle status`, pk_bundle_refusals_total). Any member
// may serve chunks — they verify themselves — but only metadata signed by the owner's root and its
// release keys is believed, whoever relays it.
import { hash } from "node:crypto";
import { Counter, Gauge } from "prom-client";
import { bytesEqual, toHex } from "../../core/util/bytes.ts";
import { BundleFetch, BUNDLE_FETCH_DEFAULTS, HASH_LIST_INDEX, type BundleFetchConfig } from "../../core/evolve/bundle-fetch.ts";
import { chunkLength, checkStream, decodeBundleFile, verifyRelease, type BundleCrypto, type BundleRefusal, type Release, type VerifiedRelease } from "../../core/evolve/bundle.ts";
import type { Rng } from "../../core/util/rng.ts";
import type { MessageOf } from "../../core/wire/messages.ts";
import type { NodeContext } from "../context.ts";
import type { KernelEvent } from "../events.ts";
import { formatDuration, mib } from "../format.ts";
import { formatFields, formatTable, UsageError, type Command } from "../shell.ts";
import { followProgress } from "../progress-follow.ts";
import { defineSubsystem, type Subsystem, type SubsystemContext } from "../subsystem.ts";

type BundleKind = "bundle-have" | "bundle-get" | "bundle-chunk";

export interface BundlePartConfig {
  /** Ticks between advert rounds. */
  readonly advertTicks: number;
  /** Random live members advertised to per round (a member that is behind is answered at once: push-pull). */
  readonly advertFanout: number;
  /** Members told at once when this node comes to hold a newer bundle, at most. */
  readonly advertPeersMax: number;
  /** Ticks between verifications of one peer's adverts (a peer cannot make us verify signatures in a loop). */
  readonly verifyEveryTicks: number;
  /** Chunks served to one peer per tick; beyond, `busy`. */
  readonly servesPerPeerPerTick: number;
  /** Start a fetch by itself when a newer verified bundle is known (else only on `bundle fetch`). */
  readonly autoFetch: boolean;
  readonly fetch: BundleFetchConfig;
}

export const BUNDLE_PART_DEFAULTS: BundlePartConfig = {
  advertTicks: 200, advertFanout: 3, advertPeersMax: 64, verifyEveryTicks: 50, servesPerPeerPerTick: 32, autoFetch: true, fetch: BUNDLE_FETCH_DEFAULTS,
};

const CRYPTO_SHA = (data: Uint8Array): Uint8Array => new Uint8Array(hash("sha256", data, "buffer"));

interface Held {
  readonly verified: VerifiedRelease;
  readonly path: string;
  stream?: Uint8Array;
}

interface PeerInfo {
  running: number;
  claimed: number;
  holds: string | undefined;
  lastVerifyTick: number;
  lastReplyTick: number;
}

/** What the rollout reads: a verified bundle installed and newer than the running code. */
export interface BundleReady {
  readonly id: string;
  readonly version: number;
  readonly path: string;
  readonly node: string;
}

export class BundlePart implements Subsystem<BundleKind> {
  readonly #ctx: SubsystemContext;
  readonly #config: BundlePartConfig;
  readonly #crypto: BundleCrypto;
  readonly #held = new Map<string, Held>();
  readonly #peers = new Map<string, PeerInfo>();
  /** reason → peer → count. */
  readonly refusals = new Map<BundleRefusal, Map<string, number>>();
  #runningId: string | undefined;
  #runningVersion = 0;
  /** The newest verified release known (held or not). */
  #newest: VerifiedRelease | undefined;
  #fetch: BundleFetch | undefined;
  #installing = false;
  /** Tell every live member at the next tick (a newer bundle is held). */
  #announce = false;
  /** Forked on first use: a fork draws from the node's RNG, which would change every simulated run (no adverts there). */
  #rng: Rng | undefined;
  /** The fetch whose stream was handed to the installer (once per fetch). */
  #installed: BundleFetch | undefined;
  /** The peers a fetch may ask (startFetch's `from`); undefined: every peer that holds it. */
  #fetchFrom: ReadonlySet<string> | undefined;
  #loaded = false;
  #lastError: string | undefined;
  #lastFetch: { id: string; version: number; bytes: number; ms: number; peers: number } | undefined;
  readonly #events: Array<[string, Record<string, unknown>]> = [];
  readonly #served = new Map<string, number>();
  #servedTick = -1;
  #readyAnnounced: string | undefined;

  readonly #tickMsValue: number;

  constructor(ctx: SubsystemContext, tickMs: number, config: BundlePartConfig = BUNDLE_PART_DEFAULTS) {
    this.#ctx = ctx;
    this.#tickMsValue = tickMs;
    this.#config = config;
    this.#crypto = { sha256: CRYPTO_SHA, verify: (pub, data, sig) => ctx.identity.verify(pub, data, sig) };
  }

  start(): void {
    void this.rescan();
  }

  /** Reads DATA/bundles/ again: the running bundle and every held one, each verified. */
  async rescan(): Promise<void> {
    const port = this.#ctx.bundles;
    if (port === undefined) {
      this.#loaded = true;
      return;
    }
    try {
      const [running, list] = await Promise.all([port.running(), port.list()]);
      for (const { id, release } of list) {
        if (this.#held.has(id)) continue;
        const verdict = this.#verify(release, 0, 0);
        if (verdict.ok && verdict.value.id === id) {
          this.#held.set(id, { verified: verdict.value, path: `${port.dir}/${id}` });
          this.#announce = true;
        }
      }
      this.#runningId = running;
      // The running bundle's version counts even once its metadata expired (only the signatures are checked).
      const mine = running === undefined ? undefined : list.find((b) => b.id === running);
      const runningVerdict = mine === undefined ? undefined : verifyRelease(mine.release, { owner: this.#ctx.trust.owner, nowMs: 0, runningVersion: 0 }, this.#crypto);
      this.#runningVersion = runningVerdict?.ok === true && runningVerdict.value.id === running ? runningVerdict.value.targets.version : 0;
      for (const h of this.#held.values()) this.#consider(h.verified);
    } catch (error) {
      this.#lastError = `reading ${port.dir}: ${(error as Error).message}`;
    }
    this.#loaded = true;
  }

  /** Verifies against the owner key, the running version, and the highest root version accepted so far (rollback). */
  #verify(release: Release, runningVersion: number, rootVersion = this.#newest?.root.version ?? 0): ReturnType<typeof verifyRelease> {
    return verifyRelease(release, { owner: this.#ctx.trust.owner, nowMs: this.#ctx.clock.nowMs(), runningVersion, rootVersion }, this.#crypto);
  }

  /** A bundle now held; only the newest held keeps its stream in memory (the others are read again when asked for). */
  #hold(held: Held): void {
    this.#held.set(held.verified.id, held);
    this.#announce = true;
    const newest = this.#newestHeld();
    for (const h of this.#held.values()) if (h !== newest) delete h.stream;
  }

  #consider(v: VerifiedRelease): void {
    if (this.#newest === undefined || v.targets.version > this.#newest.targets.version) this.#newest = v;
  }

  #count(reason: BundleRefusal, peer: string, detail: string): void {
    let byPeer = this.refusals.get(reason);
    if (byPeer === undefined) this.refusals.set(reason, (byPeer = new Map()));
    byPeer.set(peer, (byPeer.get(peer) ?? 0) + 1);
    this.#lastError = `${peer}: ${reason}: ${detail}`;
  }

  /**
   * The newest held bundle newer than the running code, installed and verified: what the rollout
   * restarts into. `skip`: addresses it will not run again (bundles it rolled back).
   */
  ready(skip: ReadonlySet<string> = new Set()): BundleReady | undefined {
    let best: Held | undefined;
    for (const h of this.#held.values()) {
      if (skip.has(h.verified.id) || h.verified.targets.version <= this.#runningVersion) continue;
      if (best === undefined || h.verified.targets.version > best.verified.targets.version) best = h;
    }
    return best === undefined ? undefined : { id: best.verified.id, version: best.verified.targets.version, path: best.path, node: best.verified.targets.node };
  }

  get running(): { version: number; id: string | undefined } {
    return { version: this.#runningVersion, id: this.#runningId };
  }

  get newest(): VerifiedRelease | undefined {
    return this.#newest;
  }

  /** Installs a bundle file (what `pk bundle` writes) after verifying it. */
  async add(file: Uint8Array): Promise<BundleReady | { error: string }> {
    const port = this.#ctx.bundles;
    if (port === undefined) return { error: "this node keeps no bundles" };
    const decoded = decodeBundleFile(file);
    if (!decoded.ok) return { error: decoded.detail };
    const verdict = this.#verify(decoded.value.release, this.#runningVersion);
    if (!verdict.ok) return { error: `${verdict.reason}: ${verdict.detail}` };
    const whole = checkStream(decoded.value.stream, verdict.value.targets, this.#crypto);
    if (!whole.ok) return { error: `${whole.reason}: ${whole.detail}` };
    const path = await port.install(verdict.value.id, verdict.value.release, decoded.value.stream);
    this.#hold({ verified: verdict.value, path, stream: decoded.value.stream.slice() });
    this.#consider(verdict.value);
    return { id: verdict.value.id, version: verdict.value.targets.version, path, node: verdict.value.targets.node };
  }

  /**
   * Starts fetching the newest known bundle from the peers that hold it; `from` limits the peers,
   * `force` fetches it again though it is held (benchmarks). An error when there is nothing to fetch.
   */
  startFetch(options: { from?: readonly string[]; force?: boolean } = {}): string | undefined {
    const newest = this.#newest;
    if (newest === undefined) return "no bundle is known";
    if (this.#fetch !== undefined && !this.#fetch.done) return `already fetching v${this.#fetch.release.targets.version}`;
    if (this.#installing) return "installing the last fetch";
    if (!options.force && this.#held.has(newest.id)) return `v${newest.targets.version} is already held`;
    if (!options.force && newest.targets.version <= this.#runningVersion) return `v${newest.targets.version} is not newer than the running v${this.#runningVersion}`;
    const fetch = new BundleFetch(newest, this.#ctx.tick(), { sha256: CRYPTO_SHA }, this.#config.fetch);
    const live = new Set(this.#ctx.members.liveIds());
    this.#fetchFrom = options.from === undefined ? undefined : new Set(options.from);
    for (const [id, peer] of this.#peers) if (peer.holds === newest.id && live.has(id) && (this.#fetchFrom?.has(id) ?? true)) fetch.addPeer(id);
    this.#fetch = fetch;
    this.#events.push(["bundle-fetch-started", { id: newest.id, version: newest.targets.version, peers: fetch.progress(this.#ctx.tick()).peers.length }]);
    return undefined;
  }

  get fetch(): BundleFetch | undefined {
    return this.#fetch;
  }

  get lastFetch(): { id: string; version: number; bytes: number; ms: number; peers: number } | undefined {
    return this.#lastFetch;
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  tick(tick: number): void {
    for (const [type, data] of this.#events.splice(0)) this.#ctx.emit(type, data);
    if (!this.#loaded) return;
    // A node without DATA/bundles/ (the simulator) neither advertises nor fetches.
    if (this.#ctx.bundles === undefined) return;
    if (this.#announce) {
      this.#announce = false;
      this.#advert(this.#ctx.members.liveIds().slice(0, this.#config.advertPeersMax));
    }
    if (tick % this.#config.advertTicks === 0) this.#advert(this.#pick(this.#ctx.members.liveIds(), this.#config.advertFanout));
    // A fetch of a bundle that arrived by other means (`bundle scan`, add) is over.
    if (this.#fetch !== undefined && !this.#fetch.done && this.#held.has(this.#fetch.release.id)) this.#fetch = undefined;
    const fetch = this.#fetch;
    if (fetch !== undefined && !fetch.done) {
      // Peers that said they hold it since the fetch began join it.
      for (const [id, peer] of this.#peers) if (peer.holds === fetch.release.id && (this.#fetchFrom?.has(id) ?? true)) fetch.addPeer(id);
      this.#pump(fetch, tick);
    }
    if (fetch !== undefined && fetch.done && this.#installed !== fetch && !this.#held.has(fetch.release.id)) this.#install(fetch, tick);
    else if (this.#config.autoFetch && (fetch === undefined || fetch.done) && !this.#installing) {
      const newest = this.#newest;
      if (newest !== undefined && newest.targets.version > this.#runningVersion && !this.#held.has(newest.id) && [...this.#peers.values()].some((p) => p.holds === newest.id)) this.startFetch();
    }
    const ready = this.ready();
    if (ready !== undefined && ready.id !== this.#readyAnnounced) {
      this.#readyAnnounced = ready.id;
      this.#ctx.emit("bundle-ready", { id: ready.id, version: ready.version, path: ready.path, node: ready.node });
    }
  }

  /** Sends what the fetch asks for now: on every tick, and on every answer (a window refills at once). */
  #pump(fetch: BundleFetch, tick: number): void {
    for (const r of fetch.tick(tick)) this.#ctx.send(r.to, "stream", { t: "bundle-get", h: fetch.release.targets.address, i: r.index });
  }

  #install(fetch: BundleFetch, tick: number): void {
    const port = this.#ctx.bundles;
    const stream = fetch.stream();
    if (port === undefined || stream === undefined) return;
    this.#installing = true;
    this.#installed = fetch;
    const release = fetch.release;
    const progress = fetch.progress(tick);
    port.install(release.id, release.release, stream).then((path) => {
      this.#hold({ verified: release, path, stream });
      this.#lastFetch = { id: release.id, version: release.targets.version, bytes: progress.bytes, ms: progress.ticks * this.#tickMs(), peers: progress.peers.filter((p) => p.received > 0).length };
      this.#events.push(["bundle-fetched", { id: release.id, version: release.targets.version, bytes: progress.bytes, ticks: progress.ticks, peers: this.#lastFetch.peers }]);
    }, (error: unknown) => {
      this.#lastError = `installing ${release.id.slice(0, 16)}: ${(error as Error).message}`;
      this.#fetch = undefined;
    }).finally(() => {
      this.#installing = false;
    });
  }

  #tickMs(): number {
    return this.#tickMsValue;
  }

  /** Forgets a held bundle (benchmarks fetch it again). */
  async forget(id: string): Promise<void> {
    this.#held.delete(id);
    if (this.#fetch?.release.id === id) this.#fetch = undefined;
    await this.#ctx.bundles?.remove(id);
  }

  /** `n` of `ids` at random. */
  #pick(ids: string[], n: number): string[] {
    for (let i = 0; i < Math.min(n, ids.length); i++) {
      this.#rng ??= this.#ctx.fork();
      const j = i + this.#rng.int(ids.length - i);
      [ids[i], ids[j]] = [ids[j] as string, ids[i] as string];
    }
    return ids.slice(0, n);
  }

  #advert(to: readonly string[]): void {
    const newest = this.#newestHeld();
    const message: MessageOf<"bundle-have"> = newest === undefined
      ? { t: "bundle-have", v: this.#runningVersion, n: 0 }
      : { t: "bundle-have", v: this.#runningVersion, n: newest.verified.targets.version, r: newest.verified.release.root, g: newest.verified.release.targets };
    for (const id of to) this.#ctx.send(id, "stream", message);
  }

  #newestHeld(): Held | undefined {
    let best: Held | undefined;
    for (const h of this.#held.values()) if (best === undefined || h.verified.targets.version > best.verified.targets.version) best = h;
    return best;
  }

  step(from: string, message: MessageOf<BundleKind>): void {
    switch (message.t) {
      case "bundle-have": return this.#have(from, message);
      case "bundle-get": return this.#serve(from, message);
      case "bundle-chunk": return this.#chunk(from, message);
    }
  }

  #have(from: string, m: MessageOf<"bundle-have">): void {
    let peer = this.#peers.get(from);
    if (peer === undefined) {
      if (this.#peers.size >= this.#config.fetch.peersMax * 64) return;
      this.#peers.set(from, (peer = { running: 0, claimed: 0, holds: undefined, lastVerifyTick: -Infinity, lastReplyTick: -Infinity }));
    }
    // Push-pull: a member that says it holds less than this node does hears of it at once (once per round).
    const mine = this.#newestHeld();
    const tick = this.#ctx.tick();
    if (mine !== undefined && m.n < mine.verified.targets.version && tick - peer.lastReplyTick >= this.#config.advertTicks) {
      peer.lastReplyTick = tick;
      this.#advert([from]);
    }
    peer.running = m.v;
    peer.claimed = m.n;
    if (m.r === undefined || m.g === undefined) {
      peer.holds = undefined;
      return;
    }
    // The same release as one we verified: it holds it, nothing to check.
    for (const v of [this.#newest, ...[...this.#held.values()].map((h) => h.verified)]) {
      if (v !== undefined && bytesEqual(v.release.root, m.r) && bytesEqual(v.release.targets, m.g)) {
        peer.holds = v.id;
        return;
      }
    }
    peer.holds = undefined;
    // Something else: worth verifying only when it claims to be newer than what we know.
    const known = Math.max(this.#runningVersion, this.#newest?.targets.version ?? 0);
    if (m.n <= known) return;
    if (tick - peer.lastVerifyTick < this.#config.verifyEveryTicks) return;
    peer.lastVerifyTick = tick;
    const verdict = this.#verify({ root: m.r, targets: m.g }, this.#runningVersion);
    if (!verdict.ok) return this.#count(verdict.reason, from, verdict.detail);
    if (verdict.value.targets.version <= known) return this.#count("older", from, `says v${m.n}, signed v${verdict.value.targets.version}, not newer than v${known}`);
    peer.holds = verdict.value.id;
    this.#consider(verdict.value);
    this.#events.push(["bundle-known", { id: verdict.value.id, version: verdict.value.targets.version, from }]);
  }

  #serve(from: string, m: MessageOf<"bundle-get">): void {
    const id = toHex(m.h);
    const held = this.#held.get(id);
    const answer = (s: 0 | 1 | 2, d: Uint8Array = new Uint8Array(0)) => this.#ctx.send(from, "stream", { t: "bundle-chunk", h: m.h, i: m.i, s, d });
    if (held === undefined) return answer(1);
    const tick = this.#ctx.tick();
    if (tick !== this.#servedTick) {
      this.#served.clear();
      this.#servedTick = tick;
    }
    const served = this.#served.get(from) ?? 0;
    if (served >= this.#config.servesPerPeerPerTick) return answer(2);
    // Serving chunks is voluntary work: a node that does not contribute now (ADR 027), or is over
    // its bandwidth cap, answers busy and the fetcher asks another holder.
    if (this.#ctx.services.contribution?.admit(held.verified.targets.chunkBytes) !== undefined) return answer(2);
    this.#served.set(from, served + 1);
    const stream = held.stream;
    if (stream === undefined) {
      this.#loadStream(held);
      return answer(2);
    }
    const t = held.verified.targets;
    if (m.i === HASH_LIST_INDEX) return answer(0, this.#hashList(held));
    if (m.i >= t.chunks) return answer(1);
    const start = m.i * t.chunkBytes;
    return answer(0, stream.subarray(start, start + chunkLength(t, m.i)));
  }

  readonly #lists = new Map<string, Uint8Array>();
  #hashList(held: Held): Uint8Array {
    let list = this.#lists.get(held.verified.id);
    if (list === undefined && held.stream !== undefined) {
      const whole = checkStream(held.stream, held.verified.targets, this.#crypto);
      list = whole.ok ? whole.value : new Uint8Array(0);
      this.#lists.set(held.verified.id, list);
    }
    return list ?? new Uint8Array(0);
  }

  #loading = new Set<string>();
  #loadStream(held: Held): void {
    const port = this.#ctx.bundles;
    if (port === undefined || this.#loading.has(held.verified.id)) return;
    this.#loading.add(held.verified.id);
    void port.readStream(held.verified.id).then((stream) => {
      if (stream !== undefined && checkStream(stream, held.verified.targets, this.#crypto).ok) held.stream = stream;
      else this.#lastError = `the stream of ${held.verified.id.slice(0, 16)} on disk does not match its metadata`;
    }, () => undefined).finally(() => this.#loading.delete(held.verified.id));
  }

  #chunk(from: string, m: MessageOf<"bundle-chunk">): void {
    const fetch = this.#fetch;
    if (fetch === undefined || fetch.done || !bytesEqual(m.h, fetch.release.targets.address)) return;
    const tick = this.#ctx.tick();
    const answer = fetch.step(from, m.i, m.s, m.d, tick);
    if (answer.kind === "refused") this.#count(answer.reason, from, answer.detail);
    if (answer.kind === "kept" && !fetch.done) this.#pump(fetch, tick);
  }

  onEvent(event: KernelEvent): void {
    if (event.type !== "member-dead" && event.type !== "member-left") return;
    const id = event.data["id"];
    if (typeof id !== "string") return;
    this.#fetch?.removePeer(id);
    this.#peers.delete(id);
  }

  /** `bundle status --json`. */
  statusJson(): Record<string, unknown> {
    const ready = this.ready();
    const fetch = this.#fetch;
    return {
      running: { version: this.#runningVersion, id: this.#runningId ?? null },
      newest: this.#newest === undefined ? null : { version: this.#newest.targets.version, id: this.#newest.id, bytes: this.#newest.targets.length, chunks: this.#newest.targets.chunks, node: this.#newest.targets.node },
      held: [...this.#held.values()].map((h) => h.verified.targets.version),
      ready: ready === undefined ? null : { version: ready.version, path: ready.path },
      fetch: fetch === undefined ? null : { version: fetch.release.targets.version, finished: fetch.done, ...fetch.progress(this.#ctx.tick()) },
      lastFetch: this.#lastFetch ?? null,
      refusals: [...this.refusals].flatMap(([reason, byPeer]) => [...byPeer].map(([peer, count]) => ({ reason, peer, count }))),
    };
  }

  /** Everything `bundle status` shows. */
  status(): string {
    const tick = this.#ctx.tick();
    const ready = this.ready();
    const rows: Array<[string, string]> = [
      ["running", this.#runningId === undefined ? `v${this.#runningVersion} (not a bundle: a checkout)` : `v${this.#runningVersion} ${this.#runningId.slice(0, 16)}`],
      ["newest known", this.#newest === undefined ? "-" : `v${this.#newest.targets.version} ${this.#newest.id.slice(0, 16)} (${mib(this.#newest.targets.length)}, ${this.#newest.targets.chunks} chunks, node ${this.#newest.targets.node})`],
      ["held", [...this.#held.values()].map((h) => `v${h.verified.targets.version}`).join(", ") || "-"],
      ["ready", ready === undefined ? "-" : `v${ready.version} at ${ready.path}`],
    ];
    const fetch = this.#fetch;
    if (fetch !== undefined) {
      const p = fetch.progress(tick);
      const seconds = Math.max(p.ticks * this.#tickMs(), 1) / 1000;
      rows.push(["fetch", `v${fetch.release.targets.version}: ${p.done}/${p.chunks} chunks, ${mib(p.bytes)} in ${formatDuration(p.ticks * this.#tickMs())} (${mib(p.bytes / seconds)}/s), ${p.inflight} in flight${fetch.done ? ", done" : ""}${this.#installing ? ", installing" : ""}`]);
    }
    if (this.#lastError !== undefined) rows.push(["last refusal or error", this.#lastError]);
    let out = formatFields(rows);
    if (fetch !== undefined) {
      const p = fetch.progress(tick);
      out += `\n\n${formatTable(["PEER", "CHUNKS", "BYTES", "IN FLIGHT", "STRIKES", ""], p.peers.map((q) => [q.id, String(q.received), mib(q.bytes), String(q.inflight), String(q.strikes), q.dropped ? "dropped" : ""]))}`;
    }
    const refusals = [...this.refusals].flatMap(([reason, byPeer]) => [...byPeer].map(([peer, n]) => [reason, peer, String(n)]));
    out += `\n\n${refusals.length === 0 ? "no refusals" : formatTable(["REFUSED", "PEER", "COUNT"], refusals)}`;
    const peers = [...this.#peers].map(([id, p]) => [id, `v${p.running}`, p.claimed === 0 ? "-" : `v${p.claimed}`, p.holds === undefined ? "-" : p.holds.slice(0, 16)]);
    if (peers.length > 0) out += `\n\n${formatTable(["MEMBER", "RUNS", "SAYS IT HOLDS", "VERIFIED"], peers)}`;
    return out;
  }
}

const bundleCommand: Command<NodeContext> = {
  name: "bundle",
  summary: "the code bundles: the version running, the newest known, a fetch's progress (rate, peers), refusals",
  usage: "bundle status | bundle fetch | bundle scan | bundle wait",
  async run(args, { kernel, stream }) {
    const part = kernel.subsystem<BundlePart>("bundle");
    const [verb = "status", ...rest] = args;
    if (rest.length > 0) throw new UsageError("bundle takes one word: status, fetch, scan or wait");
    if (verb === "status") return part.status();
    if (verb === "scan") {
      await part.rescan();
      return part.status();
    }
    if (verb === "wait") {
      // Follows the fetch under way, or the next one to start (a newer bundle heard of), to its end.
      if (stream === undefined) return "bundle wait follows a fetch through pk shell (a streamed answer); see bundle status";
      const before = part.fetch !== undefined && part.fetch.done ? part.fetch : undefined;
      let followed: BundleFetch | undefined;
      const end = await followProgress(stream, () => {
        const fetch = part.fetch;
        if (followed !== undefined && fetch !== followed) return undefined;
        if (fetch === undefined || fetch === before) return { report: { task: "bundle-fetch", done: 0, total: null, unit: "chunks", stage: "waiting for a newer bundle" }, over: false };
        followed = fetch;
        const p = fetch.progress(kernel.tickCount);
        const peers = p.peers.filter((peer) => !peer.dropped).length;
        return {
          report: { task: "bundle-fetch", done: p.done, total: p.chunks, unit: "chunks", stage: `v${fetch.release.targets.version}, ${mib(p.bytes)} from ${peers} peer${peers === 1 ? "" : "s"}` },
          over: fetch.done,
        };
      });
      if (followed === undefined) throw new Error(end === "stalled" ? "no newer bundle came" : "stopped waiting");
      const p = followed.progress(kernel.tickCount);
      if (end === "over") return `fetched v${followed.release.targets.version}: ${p.chunks} chunks, ${mib(p.bytes)} in ${formatDuration(p.ticks * kernel.config.tickMs)}; installing (see bundle status)`;
      throw new Error(`the fetch of v${followed.release.targets.version} ${end === "stalled" ? "made no progress for a while" : end === "gone" ? "ended (the bundle came by other means, or the fetch was replaced)" : "is no longer followed"}: ${p.done}/${p.chunks} chunks; see bundle status`);
    }
    if (verb === "fetch") {
      const error = part.startFetch();
      // A fetch already under way (one started by itself, say) is followed like a new one.
      const underWay = part.fetch !== undefined && !part.fetch.done && stream !== undefined;
      if (error !== undefined && !underWay) return `nothing fetched: ${error}`;
      const fetch = part.fetch;
      const version = fetch?.release.targets.version ?? part.newest?.targets.version ?? 0;
      // A caller that takes a stream (pk shell) follows the fetch with a progress bar.
      if (stream === undefined || fetch === undefined) return `fetching v${version}; see bundle status`;
      const end = await followProgress(stream, () => {
        if (part.fetch !== fetch) return undefined;
        const p = fetch.progress(kernel.tickCount);
        const peers = p.peers.filter((peer) => !peer.dropped).length;
        return {
          report: { task: "bundle-fetch", done: p.done, total: p.chunks, unit: "chunks", stage: `v${version}, ${mib(p.bytes)} from ${peers} peer${peers === 1 ? "" : "s"}` },
          over: fetch.done,
        };
      });
      const p = fetch.progress(kernel.tickCount);
      if (end === "over") return `fetched v${version}: ${p.chunks} chunks, ${mib(p.bytes)} in ${formatDuration(p.ticks * kernel.config.tickMs)} from ${p.peers.filter((peer) => peer.received > 0).length} peer(s); installing (see bundle status)`;
      return `${end === "stalled" ? "no progress for a while" : end === "gone" ? "the fetch ended (the bundle came by other means, or the fetch was replaced)" : "stopped following"}: ${p.done}/${p.chunks} chunks; see bundle status`;
    }
    throw new UsageError(`unknown bundle command ${verb}: status, fetch, scan or wait`);
  },
  json(args, { kernel }) {
    if (args.length > 1 || (args[0] ?? "status") !== "status") throw new UsageError("--json is for bundle status");
    return kernel.subsystem<BundlePart>("bundle").statusJson();
  },
};

export const BUNDLE = defineSubsystem({
  name: "bundle",
  kinds: { "bundle-have": "member", "bundle-get": "member", "bundle-chunk": "member" },
  create: (ctx, config) => {
    const part = new BundlePart(ctx, config.tickMs);
    ctx.services.bundles = part;
    return part;
  },
  commands: [bundleCommand],
  metrics(kernel, registry) {
    new Counter({
      name: "pk_bundle_refusals_total",
      help: "Bundle metadata and chunks refused, by reason (malformed, unsigned, key, threshold, signature, older, expired, modified) and peer",
      labelNames: ["reason", "peer"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [reason, byPeer] of kernel.subsystem<BundlePart>("bundle").refusals) for (const [peer, n] of byPeer) this.inc({ reason, peer }, n);
      },
    });
    new Gauge({
      name: "pk_bundle_version",
      help: "Bundle versions: the one running, the newest verified one known, the newest ready (installed beside the running code)",
      labelNames: ["which"] as const,
      registers: [registry],
      collect() {
        const part = kernel.subsystem<BundlePart>("bundle");
        this.set({ which: "running" }, part.running.version);
        this.set({ which: "newest" }, part.newest?.targets.version ?? 0);
        this.set({ which: "ready" }, part.ready()?.version ?? 0);
      },
    });
  },
});
