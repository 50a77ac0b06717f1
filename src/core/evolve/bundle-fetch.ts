// Fetching one verified release's chunks from several peers at once (docs/protocols/bundle.md).
// Sans-IO: the node steps replies in and ticks it; it answers what to send. First the chunk-hash
// list (checked against the signed address), then the chunks: a window of requests per peer,
// a request that times out or brings a bad chunk asked again of another peer, a peer that sends
// bad data too often dropped for this fetch. Every chunk is checked against the verified list
// before it is kept; the stream is assembled in one buffer of the signed length.
import { checkChunk, checkHashList, type BundleCrypto, type BundleRefusal, type VerifiedRelease } from "./bundle.ts";

export interface BundleFetchConfig {
  /** Requests in flight per peer. */
  readonly windowPerPeer: number;
  /** Ticks before an unanswered request is asked of another peer. */
  readonly requestTimeoutTicks: number;
  /** Bad answers (modified chunks, a wrong hash list) after which a peer is dropped from this fetch. */
  readonly peerStrikesMax: number;
  /** Peers asked at once. */
  readonly peersMax: number;
}

export const BUNDLE_FETCH_DEFAULTS: BundleFetchConfig = { windowPerPeer: 16, requestTimeoutTicks: 300, peerStrikesMax: 3, peersMax: 16 };

/** The chunk-hash list's index in requests and answers. */
export const HASH_LIST_INDEX = -1;

export interface FetchRequest {
  readonly to: string;
  readonly index: number;
}

interface PeerState {
  inflight: number;
  strikes: number;
  received: number;
  bytes: number;
  dropped: boolean;
}

interface Pending {
  readonly peer: string;
  readonly sentTick: number;
}

export type FetchAnswer =
  | { readonly kind: "kept" }
  | { readonly kind: "ignored"; readonly why: string }
  | { readonly kind: "refused"; readonly reason: BundleRefusal; readonly detail: string };

export class BundleFetch {
  readonly release: VerifiedRelease;
  readonly #config: BundleFetchConfig;
  readonly #crypto: Pick<BundleCrypto, "sha256">;
  readonly #peers = new Map<string, PeerState>();
  #hashes: Uint8Array | undefined;
  readonly #stream: Uint8Array;
  readonly #have: Uint8Array;
  #done = 0;
  /** Index → the request in flight for it (one per index). */
  readonly #pending = new Map<number, Pending>();
  /** Index → peers that failed it (timeout, bad data, miss): asked last. */
  readonly #failedBy = new Map<number, Set<string>>();
  #next = 0;
  #rr = 0;
  readonly startedTick: number;
  #finishedTick: number | undefined;

  constructor(release: VerifiedRelease, tick: number, crypto: Pick<BundleCrypto, "sha256">, config: BundleFetchConfig = BUNDLE_FETCH_DEFAULTS) {
    this.release = release;
    this.#config = config;
    this.#crypto = crypto;
    this.#stream = new Uint8Array(release.targets.length);
    this.#have = new Uint8Array(release.targets.chunks);
    this.startedTick = tick;
    if (release.targets.chunks === 0) this.#finishedTick = tick;
  }

  /** A peer that says it holds the release. */
  addPeer(id: string): void {
    if (this.#peers.has(id) || this.#peers.size >= this.#config.peersMax) return;
    this.#peers.set(id, { inflight: 0, strikes: 0, received: 0, bytes: 0, dropped: false });
  }

  /** A peer gone (dead, left): its requests are asked of others at once. */
  removePeer(id: string): void {
    const peer = this.#peers.get(id);
    if (peer === undefined) return;
    peer.dropped = true;
    for (const [index, p] of this.#pending) if (p.peer === id) this.#fail(index, id);
  }

  get done(): boolean {
    return this.#finishedTick !== undefined;
  }

  /** The whole stream once every chunk is in. */
  stream(): Uint8Array | undefined {
    return this.done ? this.#stream : undefined;
  }

  progress(tick: number): { chunks: number; done: number; bytes: number; inflight: number; ticks: number; hashList: boolean; peers: Array<{ id: string; received: number; bytes: number; inflight: number; strikes: number; dropped: boolean }> } {
    let bytes = 0;
    for (const p of this.#peers.values()) bytes += p.bytes;
    return {
      chunks: this.release.targets.chunks, done: this.#done, bytes, inflight: this.#pending.size, ticks: (this.#finishedTick ?? tick) - this.startedTick,
      hashList: this.#hashes !== undefined,
      peers: [...this.#peers].map(([id, p]) => ({ id, received: p.received, bytes: p.bytes, inflight: p.inflight, strikes: p.strikes, dropped: p.dropped })),
    };
  }

  /** What to ask now: timed-out requests moved, then each peer's window filled, round robin. */
  tick(tick: number): FetchRequest[] {
    for (const [index, p] of this.#pending) if (tick - p.sentTick >= this.#config.requestTimeoutTicks) this.#fail(index, p.peer);
    if (this.done) return [];
    const live = [...this.#peers].filter(([, p]) => !p.dropped);
    if (live.length === 0) return [];
    const out: FetchRequest[] = [];
    if (this.#hashes === undefined) {
      if (!this.#pending.has(HASH_LIST_INDEX)) {
        const to = this.#pick(HASH_LIST_INDEX, live);
        if (to !== undefined) out.push(this.#send(HASH_LIST_INDEX, to, tick));
      }
      return out;
    }
    const wanted = this.#wanted();
    let progress = true;
    while (wanted.length > 0 && progress) {
      progress = false;
      for (let k = 0; k < live.length && wanted.length > 0; k++) {
        const [id, p] = live[(this.#rr + k) % live.length] as [string, PeerState];
        if (p.inflight >= this.#config.windowPerPeer) continue;
        // The first wanted chunk this peer has not failed; a chunk every live peer failed is asked again anyway.
        const at = wanted.findIndex((i) => !(this.#failedBy.get(i)?.has(id) ?? false) || this.#failedByAll(i, live));
        if (at < 0) continue;
        const [index] = wanted.splice(at, 1) as [number];
        out.push(this.#send(index, id, tick));
        progress = true;
      }
    }
    this.#rr = (this.#rr + 1) % live.length;
    return out;
  }

  /** An answer from `from` for `index`: data (status 0), a miss (1) or busy (2). */
  step(from: string, index: number, status: number, data: Uint8Array, tick: number): FetchAnswer {
    const pending = this.#pending.get(index);
    if (pending === undefined || pending.peer !== from) return { kind: "ignored", why: "not asked of this peer" };
    const peer = this.#peers.get(from) as PeerState;
    this.#pending.delete(index);
    peer.inflight--;
    if (status !== 0) {
      this.#failedByAdd(index, from);
      return { kind: "ignored", why: status === 1 ? "miss" : "busy" };
    }
    if (index === HASH_LIST_INDEX) {
      const list = checkHashList(data, this.release.targets, this.#crypto);
      if (!list.ok) return this.#strike(index, from, list.reason, list.detail);
      this.#hashes = list.value;
      peer.received++;
      peer.bytes += data.length;
      return { kind: "kept" };
    }
    const hashes = this.#hashes;
    if (hashes === undefined) return { kind: "ignored", why: "no hash list yet" };
    const ok = checkChunk(data, index, this.release.targets, hashes, this.#crypto);
    if (!ok.ok) return this.#strike(index, from, ok.reason, ok.detail);
    if (this.#have[index] === 0) {
      this.#stream.set(data, index * this.release.targets.chunkBytes);
      this.#have[index] = 1;
      this.#done++;
      if (this.#done === this.release.targets.chunks) this.#finishedTick = tick;
    }
    peer.received++;
    peer.bytes += data.length;
    return { kind: "kept" };
  }

  #strike(index: number, from: string, reason: BundleRefusal, detail: string): FetchAnswer {
    const peer = this.#peers.get(from) as PeerState;
    peer.strikes++;
    if (peer.strikes >= this.#config.peerStrikesMax) this.removePeer(from);
    this.#failedByAdd(index, from);
    return { kind: "refused", reason, detail };
  }

  #send(index: number, to: string, tick: number): FetchRequest {
    this.#pending.set(index, { peer: to, sentTick: tick });
    (this.#peers.get(to) as PeerState).inflight++;
    return { to, index };
  }

  #fail(index: number, peer: string): void {
    const p = this.#pending.get(index);
    if (p === undefined || p.peer !== peer) return;
    this.#pending.delete(index);
    const state = this.#peers.get(peer);
    if (state !== undefined) state.inflight--;
    this.#failedByAdd(index, peer);
  }

  #failedByAdd(index: number, peer: string): void {
    let set = this.#failedBy.get(index);
    if (set === undefined) this.#failedBy.set(index, (set = new Set()));
    set.add(peer);
  }

  #failedByAll(index: number, live: ReadonlyArray<readonly [string, PeerState]>): boolean {
    const set = this.#failedBy.get(index);
    return set !== undefined && live.every(([id]) => set.has(id));
  }

  #pick(index: number, live: ReadonlyArray<readonly [string, PeerState]>): string | undefined {
    const failed = this.#failedBy.get(index);
    const fresh = live.filter(([id]) => !(failed?.has(id) ?? false));
    const from = fresh.length > 0 ? fresh : live;
    const chosen = from[this.#rr++ % from.length];
    return chosen?.[0];
  }

  /** Chunks not held and not asked, in order (at most what the windows can take this tick). */
  #wanted(): number[] {
    const limit = this.#peers.size * this.#config.windowPerPeer;
    const out: number[] = [];
    const n = this.release.targets.chunks;
    for (let k = 0; k < n && out.length < limit; k++) {
      const i = (this.#next + k) % n;
      if (this.#have[i] === 0 && !this.#pending.has(i)) out.push(i);
    }
    if (out.length > 0) this.#next = out[0] as number;
    return out;
  }
}
