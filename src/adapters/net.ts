// The real Transport: one UDP socket and one TCP listener on the same host and port
// (DESIGN.md §6, docs/protocols/wire.md "Transport").
//
// Datagrams are single envelopes of at most LIMITS.datagramBytesMax bytes. Stream frames are a
// 4-byte big-endian length and then one envelope of 1 to LIMITS.frameBytesMax bytes; a zero length
// closes the connection as `decode`, a length over the bound as `oversize`.
//
// Outbound frames to one destination share one cached TCP connection, opened lazily. While it
// connects, up to LIMITS.peerQueueFramesMax frames (and LIMITS.connectionBufferBytesMax bytes) wait
// in its queue; beyond that, and when the socket's own write buffer is over
// LIMITS.connectionBufferBytesMax (a peer that stopped reading), frames are dropped and counted.
// A failed connection is closed and the next send to that destination reconnects; a connection
// idle for `idleMs` is closed. Nothing here retries or acknowledges: the protocols above tolerate
// loss.
//
// Inbound connections are held to LIMITS.connectionsMax, and to LIMITS.net.connectionsPerAddressMax
// from one remote IP address, each with a receive buffer bound of LIMITS.connectionBufferBytesMax,
// and all of them together to LIMITS.connectionBuffersTotalBytesMax. Anyone can open a TCP
// connection, so before authentication a connection gets almost nothing: it is unauthenticated
// until one of its frames makes the packet handler answer true (the kernel's seal opened it); until
// then its frames may be at most LIMITS.net.firstFrameBytesMax (a longer length prefix closes it
// before a byte of the frame is buffered), a frame that does not authenticate closes it at once,
// and if none has authenticated LIMITS.net.firstFrameMsMax after its accept it is closed. When a
// cap is reached (the total, or the newcomer's address's), the oldest unauthenticated connection
// (of that address, for the per-address cap) is closed to make room; when every one is
// authenticated, the newcomer is refused. Each of these is counted in `stats.refused`. The
// sending kernel puts a small frame right ahead of every stream frame over that bound (kernel.ts
// #seal), so a connection opened for a large frame has authenticated by the time it arrives.
//
// The UDP socket asks the OS for a 4 MiB receive buffer (bursts of gossip and probes from many
// peers arrive between two turns of the event loop) and a 1 MiB send buffer; an OS that refuses
// keeps a smaller one, silently (Linux caps it at net.core.rmem_max / wmem_max).
//
// Every packet handed up is a plain Uint8Array view (never a Buffer, whose slice() does not copy).
// The inbound handler runs synchronously inside the socket's event: an exception it throws is a
// broken invariant of the kernel and is not caught here (DESIGN.md §2 rule 5).
import dgram from "node:dgram";
import net from "node:net";
import { lookup } from "node:dns/promises";
import { Counter, type Registry } from "prom-client";
import type { Transport } from "../node/ports.ts";
import type { Channel } from "../core/wire/envelope.ts";
import { LIMITS } from "../core/util/limits.ts";

export interface TransportOptions {
  /** Address to bind: an IPv4 or IPv6 literal ("0.0.0.0", "::", "127.0.0.1") or a host name. */
  readonly host: string;
  /** Port for both UDP and TCP; 0 picks a free one (the same for both). */
  readonly port: number;
  /** Errors the transport survived (a failed send or connection), for logs. Never thrown. */
  readonly onError?: (error: Error) => void;
  /** Outbound connections idle this long are closed (inbound ones after twice this). Default 60 s. */
  readonly idleMs?: number;
  /** Bound on bytes buffered across all inbound connections; default LIMITS.connectionBuffersTotalBytesMax (smaller in tests). */
  readonly connectionBuffersTotalBytesMax?: number;
  /** Inbound connections open at once; default and upper bound LIMITS.connectionsMax (smaller in tests). */
  readonly connectionsMax?: number;
  /** Inbound connections from one IP address; default and upper bound LIMITS.net.connectionsPerAddressMax (smaller in tests). */
  readonly connectionsPerAddressMax?: number;
  /** Milliseconds an inbound connection has to authenticate; default and upper bound LIMITS.net.firstFrameMsMax (smaller in tests). */
  readonly firstFrameMs?: number;
}

/** Why an inbound connection was refused or closed before it authenticated (`stats.refused`). */
export const CONNECTION_REFUSAL_REASONS = ["connections", "per-address", "unauthenticated", "first-frame-size", "first-frame-deadline", "evicted"] as const;
export type ConnectionRefusal = (typeof CONNECTION_REFUSAL_REASONS)[number];

export interface TransportStats {
  readonly datagramsSent: number;
  readonly datagramsReceived: number;
  readonly framesSent: number;
  readonly framesReceived: number;
  /** Outbound packets refused before sending: empty, over the channel's bound, or after close(). */
  readonly sendRefused: number;
  /** Outbound packets whose destination was not a valid "host:port" for this socket. */
  readonly badAddress: number;
  /** Outbound frames dropped because the peer's queue or write buffer was full or it failed. */
  readonly queueDrops: number;
  /** Socket-level failures: failed datagram sends, failed or broken connections. */
  readonly socketErrors: number;
  /**
   * Inbound connections refused or closed, by reason: `connections`, refused because the cap on
   * inbound connections was reached and all of them had authenticated; `per-address`, the same for
   * the cap per remote address; `unauthenticated`, closed because a frame sent before any had
   * authenticated did not (the handler answered false, or its length was zero); `first-frame-size`,
   * closed because such a frame's length was over LIMITS.net.firstFrameBytesMax;
   * `first-frame-deadline`, closed because none had authenticated in time; `evicted`, an
   * unauthenticated connection closed to make room for a newcomer.
   */
  readonly refused: Readonly<Record<ConnectionRefusal, number>>;
  readonly inboundConnections: number;
  /** Inbound connections none of whose frames has authenticated yet. */
  readonly inboundUnauthenticated: number;
  readonly outboundConnections: number;
  /** Bytes of partial frames buffered across all inbound connections right now. */
  readonly inboundBufferedBytes: number;
  /** The UDP socket's receive and send buffer sizes as the OS reports them (0 if unknown). */
  readonly udpReceiveBufferBytes: number;
  readonly udpSendBufferBytes: number;
}

/** The Transport port plus counters for `net` and metrics. */
export interface NetTransport extends Transport {
  readonly stats: TransportStats;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Registers the transport's counters on a /metrics registry: `pk_transport_refused_total{reason}`. */
export function transportMetrics(transport: NetTransport, registry: Registry): void {
  new Counter({
    name: "pk_transport_refused_total",
    help: "Inbound TCP connections refused, or closed before they authenticated, by reason",
    labelNames: ["reason"] as const,
    registers: [registry],
    collect() {
      this.reset();
      const { refused } = transport.stats;
      for (const reason of CONNECTION_REFUSAL_REASONS) this.inc({ reason }, refused[reason]);
    },
  });
}

/** Default idle time before an outbound connection is closed. */
export const IDLE_MS_DEFAULT = 60_000;
/** A connection attempt that has not completed after this long is abandoned. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** UDP receive buffer asked of the OS; halved on refusal down to UDP_BUFFER_BYTES_MIN. */
export const UDP_RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024;
/** UDP send buffer asked of the OS; halved on refusal down to UDP_BUFFER_BYTES_MIN. */
export const UDP_SEND_BUFFER_BYTES = 1024 * 1024;
const UDP_BUFFER_BYTES_MIN = 256 * 1024;
/** Attempts at finding a port free for both UDP and TCP when asked for port 0. */
const BIND_ATTEMPTS_MAX = LIMITS.net.bindAttemptsMax;
/** Frames up to this size are copied into one buffer with their prefix (one write, one segment). */
const COALESCE_BYTES_MAX = LIMITS.net.coalesceBytesMax;
const PREFIX_BYTES = 4;
/** Parsed destination addresses remembered (cleared when full: peers are far fewer). */
const PARSED_ADDRESSES_MAX = LIMITS.net.parsedAddressesMax;

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * Parses "host:port", "[v6]:port" or "name:port". Returns undefined for anything else: a bare IPv6
 * address without brackets, a port outside 1–65535, an empty or malformed host, or a string longer
 * than LIMITS.addressCharsMax.
 */
export function parseAddress(address: string): HostPort | undefined {
  if (typeof address !== "string" || address.length === 0 || address.length > LIMITS.addressCharsMax) return undefined;
  let host: string;
  let portText: string;
  if (address.startsWith("[")) {
    const close = address.indexOf("]");
    if (close < 0 || address[close + 1] !== ":") return undefined;
    host = address.slice(1, close);
    portText = address.slice(close + 2);
    if (net.isIPv6(host) === false) return undefined;
  } else {
    const colon = address.lastIndexOf(":");
    if (colon <= 0) return undefined;
    host = address.slice(0, colon);
    portText = address.slice(colon + 1);
    if (host.includes(":")) return undefined; // bare IPv6: ambiguous without brackets
    if (!net.isIPv4(host) && !HOSTNAME.test(host)) return undefined;
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return { host, port };
}

/** "host:port", with IPv6 hosts in brackets ("[::1]:7401"). IPv4-mapped IPv6 is shown as IPv4. */
export function formatAddress(host: string, port: number): string {
  const plain = unmapIPv4(host);
  return net.isIPv6(plain) ? `[${plain}]:${port}` : `${plain}:${port}`;
}

function unmapIPv4(host: string): string {
  if (host.toLowerCase().startsWith("::ffff:")) {
    const rest = host.slice(7);
    if (net.isIPv4(rest)) return rest;
  }
  return host;
}

/**
 * Binds the UDP socket and TCP listener and resolves with the transport. Rejects with a clear
 * error when the host does not resolve or the port is taken.
 */
export async function openTransport(options: TransportOptions): Promise<NetTransport> {
  const { port } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`openTransport: port must be an integer in 0–65535, got ${port}`);
  const idleMs = options.idleMs ?? IDLE_MS_DEFAULT;
  if (!(idleMs > 0)) throw new Error(`openTransport: idleMs must be positive, got ${idleMs}`);
  const inboundBytesMax = options.connectionBuffersTotalBytesMax ?? LIMITS.connectionBuffersTotalBytesMax;
  if (!(Number.isSafeInteger(inboundBytesMax) && inboundBytesMax > 0)) {
    throw new Error(`openTransport: connectionBuffersTotalBytesMax must be a positive integer, got ${inboundBytesMax}`);
  }
  const inbound: InboundBounds = {
    connectionsMax: boundOption("connectionsMax", options.connectionsMax, LIMITS.connectionsMax),
    perAddressMax: boundOption("connectionsPerAddressMax", options.connectionsPerAddressMax, LIMITS.net.connectionsPerAddressMax),
    firstFrameMs: boundOption("firstFrameMs", options.firstFrameMs, LIMITS.net.firstFrameMsMax),
  };
  let host = options.host;
  let family = net.isIP(host);
  if (family === 0) {
    try {
      const resolved = await lookup(host);
      host = resolved.address;
      family = resolved.family;
    } catch (error) {
      throw new Error(`openTransport: cannot resolve host ${JSON.stringify(options.host)}: ${messageOf(error)}`, { cause: error });
    }
  }
  const type = family === 6 ? "udp6" : "udp4";

  for (let attempt = 1; ; attempt++) {
    let udp: dgram.Socket;
    try {
      udp = await bindUdp(type, host, port);
    } catch (error) {
      throw new Error(`openTransport: cannot bind UDP ${formatAddress(host, port)}: ${messageOf(error)}`, { cause: error });
    }
    const udpPort = udp.address().port;
    try {
      const server = await listenTcp(host, udpPort);
      growBuffer((size) => udp.setRecvBufferSize(size), UDP_RECEIVE_BUFFER_BYTES);
      growBuffer((size) => udp.setSendBufferSize(size), UDP_SEND_BUFFER_BYTES);
      return new SocketTransport({ host, port: udpPort, family: family === 6 ? 6 : 4, udp, server, idleMs, inboundBytesMax, inbound, onError: options.onError });
    } catch (error) {
      await closeUdp(udp);
      if (port === 0 && errorCode(error) === "EADDRINUSE" && attempt < BIND_ATTEMPTS_MAX) continue;
      throw new Error(`openTransport: cannot listen on TCP ${formatAddress(host, udpPort)}: ${messageOf(error)}`, { cause: error });
    }
  }
}

/** An option that may lower a bound of LIMITS, never raise it: an integer in 1..bound, default the bound. */
function boundOption(name: string, value: number | undefined, bound: number): number {
  if (value === undefined) return bound;
  if (!(Number.isSafeInteger(value) && value >= 1 && value <= bound)) throw new Error(`openTransport: ${name} must be an integer in 1–${bound}, got ${value}`);
  return value;
}

/**
 * Asks for a socket buffer of `bytes`, halving on refusal (macOS answers ENOBUFS above its
 * kern.ipc.maxsockbuf); if even UDP_BUFFER_BYTES_MIN is refused the OS default stays. Silent: a
 * smaller buffer only means more drops under bursts, which the protocols tolerate.
 */
function growBuffer(set: (bytes: number) => void, bytes: number): void {
  for (let size = bytes; size >= UDP_BUFFER_BYTES_MIN; size /= 2) {
    try {
      set(size);
      return;
    } catch {
      // Refused: try half.
    }
  }
}

function bufferSize(get: () => number): number {
  try {
    return get();
  } catch {
    return 0;
  }
}

function bindUdp(type: "udp4" | "udp6", host: string, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type });
    const onError = (error: Error): void => {
      try {
        socket.close();
      } catch {
        // Already closed by the failed bind.
      }
      reject(error);
    };
    socket.once("error", onError);
    socket.bind({ port, address: host, exclusive: true }, () => {
      socket.off("error", onError);
      resolve(socket);
    });
  });
}

function listenTcp(host: string, port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ noDelay: true });
    const onError = (error: Error): void => {
      server.close();
      reject(error);
    };
    server.once("error", onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.off("error", onError);
      resolve(server);
    });
  });
}

function closeUdp(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

interface Counters {
  datagramsSent: number;
  datagramsReceived: number;
  framesSent: number;
  framesReceived: number;
  sendRefused: number;
  badAddress: number;
  queueDrops: number;
  socketErrors: number;
  readonly refused: Record<ConnectionRefusal, number>;
}

/** The bounds on inbound connections (see TransportOptions). */
interface InboundBounds {
  readonly connectionsMax: number;
  readonly perAddressMax: number;
  readonly firstFrameMs: number;
}

/** One accepted inbound connection. */
interface Inbound {
  readonly socket: net.Socket;
  /** The remote IP address (IPv4-mapped IPv6 as IPv4): the key of the per-address cap. */
  readonly ip: string;
  readonly reader: FrameReader;
  /** Whether one of its frames has authenticated. */
  authenticated: boolean;
  /** Closes it unless it has authenticated by then; cleared when it does. */
  deadline: NodeJS.Timeout | undefined;
  /** Bytes of its reader counted in #inboundBuffered. */
  counted: number;
}

/** One cached outbound connection. */
interface Peer {
  readonly key: string;
  readonly socket: net.Socket;
  connected: boolean;
  /** Framed writes waiting for the connection (each already prefixed, as one or two chunks). */
  readonly queue: Array<readonly Uint8Array[]>;
  queuedBytes: number;
}

interface SocketTransportInit {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
  readonly udp: dgram.Socket;
  readonly server: net.Server;
  readonly idleMs: number;
  readonly inboundBytesMax: number;
  readonly inbound: InboundBounds;
  readonly onError: ((error: Error) => void) | undefined;
}

type PacketHandler = (packet: Uint8Array, channel: Channel, from: string) => boolean;
type DropHandler = (reason: "oversize" | "decode") => void;

class SocketTransport implements NetTransport {
  readonly address: string;
  readonly #family: 4 | 6;
  readonly #udp: dgram.Socket;
  readonly #server: net.Server;
  readonly #idleMs: number;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #counters: Counters = {
    datagramsSent: 0, datagramsReceived: 0, framesSent: 0, framesReceived: 0, sendRefused: 0,
    badAddress: 0, queueDrops: 0, socketErrors: 0,
    refused: { connections: 0, "per-address": 0, unauthenticated: 0, "first-frame-size": 0, "first-frame-deadline": 0, evicted: 0 },
  };
  // Map order is recency: a send re-inserts its peer, so the first one is least recently used.
  readonly #peers = new Map<string, Peer>();
  readonly #parsed = new Map<string, HostPort>();
  /** Sockets corked until the next tick (see #write). */
  readonly #corked = new WeakSet<net.Socket>();
  readonly #inbound = new Set<Inbound>();
  /** The inbound connections not yet authenticated; Set order is age, oldest first. */
  readonly #unauthenticated = new Set<Inbound>();
  /** Inbound connections open per remote IP address. */
  readonly #perAddress = new Map<string, number>();
  readonly #bounds: InboundBounds;
  readonly #inboundBytesMax: number;
  /** Sum over inbound connections of the bytes their frame readers hold. */
  #inboundBuffered = 0;
  #packetHandler: PacketHandler | undefined;
  #dropHandler: DropHandler | undefined;
  #closing: Promise<void> | undefined;

  constructor(init: SocketTransportInit) {
    this.address = formatAddress(init.host, init.port);
    this.#family = init.family;
    this.#udp = init.udp;
    this.#server = init.server;
    this.#idleMs = init.idleMs;
    this.#inboundBytesMax = init.inboundBytesMax;
    this.#bounds = init.inbound;
    this.#onError = init.onError;
    this.#udp.on("message", (message, remote) => this.#receiveDatagram(message, remote));
    this.#udp.on("error", (error) => this.#report("udp socket", error));
    this.#server.on("connection", (socket) => this.#accept(socket));
    this.#server.on("error", (error) => this.#report("tcp listener", error));
  }

  get stats(): TransportStats {
    return {
      ...this.#counters,
      refused: { ...this.#counters.refused },
      inboundConnections: this.#inbound.size,
      inboundUnauthenticated: this.#unauthenticated.size,
      outboundConnections: this.#peers.size,
      inboundBufferedBytes: this.#inboundBuffered,
      udpReceiveBufferBytes: this.#closing === undefined ? bufferSize(() => this.#udp.getRecvBufferSize()) : 0,
      udpSendBufferBytes: this.#closing === undefined ? bufferSize(() => this.#udp.getSendBufferSize()) : 0,
    };
  }

  onPacket(handler: PacketHandler): void {
    this.#packetHandler = handler;
  }

  onDrop(handler: DropHandler): void {
    this.#dropHandler = handler;
  }

  send(to: string, channel: Channel, packet: Uint8Array): void {
    const bound = channel === "datagram" ? LIMITS.datagramBytesMax : LIMITS.frameBytesMax;
    if (this.#closing !== undefined || packet.length === 0 || packet.length > bound) {
      this.#counters.sendRefused++;
      return;
    }
    const destination = this.#parse(to);
    if (destination === undefined) {
      this.#counters.badAddress++;
      return;
    }
    if (channel === "datagram") this.#sendDatagram(destination, packet);
    else this.#sendFrame(destination, packet);
  }

  /** parseAddress, remembered: the same few peer addresses are parsed on every send. */
  #parse(address: string): HostPort | undefined {
    const known = this.#parsed.get(address);
    if (known !== undefined) return known;
    const parsed = parseAddress(address);
    if (parsed === undefined) return undefined;
    if (this.#parsed.size >= PARSED_ADDRESSES_MAX) this.#parsed.clear();
    this.#parsed.set(address, parsed);
    return parsed;
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    for (const peer of this.#peers.values()) peer.socket.destroy();
    this.#peers.clear();
    for (const connection of this.#inbound) {
      this.#forget(connection);
      connection.socket.destroy();
    }
    const server = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#closing = Promise.all([closeUdp(this.#udp), server]).then(() => undefined);
    return this.#closing;
  }

  // --- datagrams ---

  #sendDatagram(destination: HostPort, packet: Uint8Array): void {
    let host = destination.host;
    if (this.#family === 4 && net.isIPv6(host)) {
      this.#counters.badAddress++;
      return;
    }
    if (this.#family === 6 && net.isIPv4(host)) host = `::ffff:${host}`;
    this.#udp.send(packet, destination.port, host, (error) => {
      if (error === null || error === undefined) return;
      this.#counters.socketErrors++;
      this.#report(`datagram to ${formatAddress(destination.host, destination.port)}`, error);
    });
    this.#counters.datagramsSent++;
  }

  #receiveDatagram(message: Buffer, remote: dgram.RemoteInfo): void {
    if (this.#closing !== undefined) return;
    if (message.length > LIMITS.datagramBytesMax) return this.#drop("oversize");
    if (message.length === 0) return this.#drop("decode");
    this.#counters.datagramsReceived++;
    this.#packetHandler?.(view(message), "datagram", formatAddress(remote.address, remote.port));
  }

  // --- outbound streams ---

  #sendFrame(destination: HostPort, packet: Uint8Array): void {
    const peer = this.#peerFor(destination);
    // Re-insert so the map's first entry stays the least recently used.
    this.#peers.delete(peer.key);
    this.#peers.set(peer.key, peer);
    const chunks = frame(packet);
    const bytes = packet.length + PREFIX_BYTES;
    if (!peer.connected) {
      if (peer.queue.length >= LIMITS.peerQueueFramesMax || peer.queuedBytes + bytes > LIMITS.connectionBufferBytesMax) {
        this.#counters.queueDrops++;
        return;
      }
      peer.queue.push(chunks);
      peer.queuedBytes += bytes;
      return;
    }
    if (peer.socket.writableLength + bytes > LIMITS.connectionBufferBytesMax) {
      this.#counters.queueDrops++;
      return;
    }
    this.#write(peer.socket, chunks);
  }

  /**
   * Frames written to one socket in the same turn of the event loop (a Raft ready's messages, a
   * gossip round) leave in one writev: the socket is corked at the first and uncorked on the next
   * tick, so a burst costs one system call instead of one per frame.
   */
  #write(socket: net.Socket, chunks: readonly Uint8Array[]): void {
    if (!this.#corked.has(socket)) {
      this.#corked.add(socket);
      socket.cork();
      process.nextTick(() => {
        this.#corked.delete(socket);
        socket.uncork();
      });
    }
    for (const chunk of chunks) socket.write(chunk);
    this.#counters.framesSent++;
  }

  #peerFor(destination: HostPort): Peer {
    const key = formatAddress(destination.host, destination.port);
    const existing = this.#peers.get(key);
    if (existing !== undefined) return existing;
    if (this.#peers.size >= LIMITS.connectionsMax) {
      const oldest = this.#peers.values().next().value;
      if (oldest !== undefined) this.#closePeer(oldest);
    }
    const socket = net.connect({ host: destination.host, port: destination.port, noDelay: true });
    const peer: Peer = { key, socket, connected: false, queue: [], queuedBytes: 0 };
    this.#peers.set(key, peer);
    socket.setTimeout(CONNECT_TIMEOUT_MS);
    socket.once("connect", () => {
      peer.connected = true;
      socket.setTimeout(this.#idleMs);
      const queued = peer.queue.splice(0);
      peer.queuedBytes = 0;
      for (const chunks of queued) this.#write(socket, chunks);
    });
    socket.on("timeout", () => {
      // Connecting too long, or idle (no bytes either way) for idleMs: close; the next send reconnects.
      if (!peer.connected) this.#report(`stream to ${key}`, new Error(`connect timed out after ${CONNECT_TIMEOUT_MS} ms`));
      this.#closePeer(peer);
    });
    socket.on("error", (error) => {
      this.#counters.socketErrors++;
      this.#report(`stream to ${key}`, error);
    });
    socket.on("close", () => this.#forgetPeer(peer));
    // Peers never write on our outbound connection; discard anything that arrives so a remote close
    // is noticed (a paused socket would not see the FIN).
    socket.resume();
    return peer;
  }

  #closePeer(peer: Peer): void {
    peer.socket.destroy();
    this.#forgetPeer(peer);
  }

  #forgetPeer(peer: Peer): void {
    if (this.#peers.get(peer.key) === peer) this.#peers.delete(peer.key);
    this.#counters.queueDrops += peer.queue.length;
    peer.queue.length = 0;
    peer.queuedBytes = 0;
  }

  // --- inbound streams ---

  #accept(socket: net.Socket): void {
    const remoteAddress = socket.remoteAddress;
    const remotePort = socket.remotePort;
    if (this.#closing !== undefined || remoteAddress === undefined || remotePort === undefined) {
      // Closing, or the connection is already gone (reset before its accept): nothing to count.
      socket.destroy();
      return;
    }
    const ip = unmapIPv4(remoteAddress);
    // At a cap, the oldest unauthenticated connection makes room (of the newcomer's address for the
    // per-address cap): strangers cannot hold slots members need. Only members left: refused.
    if ((this.#perAddress.get(ip) ?? 0) >= this.#bounds.perAddressMax && !this.#evictOldest(ip)) return this.#refuse(socket, "per-address");
    if (this.#inbound.size >= this.#bounds.connectionsMax && !this.#evictOldest(undefined)) return this.#refuse(socket, "connections");
    const connection: Inbound = { socket, ip, reader: new FrameReader(LIMITS.net.firstFrameBytesMax), authenticated: false, deadline: undefined, counted: 0 };
    this.#inbound.add(connection);
    this.#unauthenticated.add(connection);
    this.#perAddress.set(ip, (this.#perAddress.get(ip) ?? 0) + 1);
    connection.deadline = setTimeout(() => this.#close(connection, "first-frame-deadline"), this.#bounds.firstFrameMs);
    connection.deadline.unref();
    const from = formatAddress(remoteAddress, remotePort);
    socket.setNoDelay(true);
    socket.setTimeout(this.#idleMs * 2);
    socket.on("timeout", () => socket.destroy());
    socket.on("error", () => {
      // A peer resetting its end is ordinary; the connection is gone and 'close' follows.
      this.#counters.socketErrors++;
    });
    socket.on("close", () => this.#forget(connection));
    socket.on("data", (chunk: Buffer) => this.#receiveChunk(connection, chunk, from));
  }

  #receiveChunk(connection: Inbound, chunk: Buffer, from: string): void {
    if (!this.#inbound.has(connection)) return;
    const { reader } = connection;
    // The chunk is held (in part) until its frames complete: refuse it if that would take all
    // inbound connections together over their bound.
    if (this.#inboundBuffered + chunk.length > this.#inboundBytesMax) {
      this.#close(connection, undefined);
      this.#drop("oversize");
      return;
    }
    const verdict = reader.push(chunk, (packet) => {
      if (this.#closing !== undefined || !this.#inbound.has(connection)) return false;
      this.#counters.framesReceived++;
      const authenticated = this.#packetHandler?.(packet, "stream", from) === true;
      if (!this.#inbound.has(connection)) return false; // the handler closed the transport
      if (connection.authenticated) return true;
      if (!authenticated) {
        this.#close(connection, "unauthenticated");
        return false;
      }
      connection.authenticated = true;
      this.#unauthenticated.delete(connection);
      clearTimeout(connection.deadline);
      connection.deadline = undefined;
      // The next length prefix is read against the full bound (this runs before the reader reads it).
      reader.frameBytesMax = LIMITS.frameBytesMax;
      return true;
    });
    if (!this.#inbound.has(connection)) return;
    this.#inboundBuffered += reader.buffered - connection.counted;
    connection.counted = reader.buffered;
    if (verdict === "ok") return;
    // A bad length (or too much buffered) ends the connection; before any of its frames has
    // authenticated, that is also a refusal: a stranger's, or a member's first frame over the bound.
    const reason = connection.authenticated ? undefined : verdict === "oversize" ? "first-frame-size" : "unauthenticated";
    this.#close(connection, reason);
    this.#drop(verdict);
  }

  /** Closes the oldest unauthenticated inbound connection (from `ip`, if given); false if there is none. */
  #evictOldest(ip: string | undefined): boolean {
    for (const connection of this.#unauthenticated) {
      if (ip !== undefined && connection.ip !== ip) continue;
      this.#close(connection, "evicted");
      return true;
    }
    return false;
  }

  #refuse(socket: net.Socket, reason: ConnectionRefusal): void {
    this.#counters.refused[reason]++;
    socket.destroy();
  }

  /** Closes an inbound connection now, its slot free at once; `reason` is counted if given. */
  #close(connection: Inbound, reason: ConnectionRefusal | undefined): void {
    if (!this.#inbound.has(connection)) return;
    if (reason !== undefined) this.#counters.refused[reason]++;
    this.#forget(connection);
    connection.socket.destroy();
  }

  /** Releases what an inbound connection holds (its slot, its address's count, its bytes, its timer); idempotent. */
  #forget(connection: Inbound): void {
    if (!this.#inbound.delete(connection)) return;
    this.#unauthenticated.delete(connection);
    clearTimeout(connection.deadline);
    connection.deadline = undefined;
    const left = (this.#perAddress.get(connection.ip) ?? 1) - 1;
    if (left > 0) this.#perAddress.set(connection.ip, left);
    else this.#perAddress.delete(connection.ip);
    this.#inboundBuffered -= connection.counted;
    connection.counted = 0;
  }

  #drop(reason: "oversize" | "decode"): void {
    this.#dropHandler?.(reason);
  }

  #report(context: string, error: Error): void {
    if (this.#onError === undefined) return;
    const wrapped = new Error(`transport ${this.address}: ${context}: ${error.message}`, { cause: error });
    this.#onError(wrapped);
  }
}

/** The prefixed frame as one chunk (small packets) or prefix and packet (large ones, no copy). */
function frame(packet: Uint8Array): readonly Uint8Array[] {
  if (packet.length <= COALESCE_BYTES_MAX) {
    const out = Buffer.allocUnsafe(PREFIX_BYTES + packet.length);
    out.writeUInt32BE(packet.length, 0);
    out.set(packet, PREFIX_BYTES);
    return [out];
  }
  const prefix = Buffer.allocUnsafe(PREFIX_BYTES);
  prefix.writeUInt32BE(packet.length, 0);
  return [prefix, packet];
}

export type FrameVerdict = "ok" | "oversize" | "decode";

/**
 * Splits a byte stream into length-prefixed frames. Holds at most one partial frame and its
 * prefix; a length of 0 or over `frameBytesMax`, or more than LIMITS.connectionBufferBytesMax
 * bytes buffered, is a verdict that ends the connection. A length is checked as soon as its prefix
 * is complete, before any byte of its frame is kept. Exported for tests.
 */
export class FrameReader {
  /**
   * Longest frame accepted; read when each length prefix completes, so it may change between
   * frames (from inside `emit`: the inbound side raises it once a connection has authenticated).
   */
  frameBytesMax: number;
  readonly #chunks: Buffer[] = [];
  /** Bytes of #chunks[0] already consumed. */
  #head = 0;
  #buffered = 0;
  /** Length of the frame being read, or -1 while its prefix is still incomplete. */
  #frameLength = -1;
  #failed: FrameVerdict = "ok";

  constructor(frameBytesMax: number = LIMITS.frameBytesMax) {
    this.frameBytesMax = frameBytesMax;
  }

  /** Bytes held: the unread part of a partial frame (and its prefix). */
  get buffered(): number {
    return this.#buffered;
  }

  /** Takes a chunk; calls emit for each complete frame until emit returns false. */
  push(chunk: Buffer, emit: (packet: Uint8Array) => boolean): FrameVerdict {
    if (this.#failed !== "ok") return this.#failed;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    if (this.#buffered > LIMITS.connectionBufferBytesMax) return this.#fail("oversize");
    for (;;) {
      if (this.#frameLength < 0) {
        if (this.#buffered < PREFIX_BYTES) return "ok";
        const length = this.#take(PREFIX_BYTES).readUInt32BE(0);
        if (length === 0) return this.#fail("decode");
        if (length > this.frameBytesMax) return this.#fail("oversize");
        this.#frameLength = length;
      }
      if (this.#buffered < this.#frameLength) return "ok";
      const packet = this.#take(this.#frameLength);
      this.#frameLength = -1;
      if (!emit(view(packet))) return "ok";
    }
  }

  #fail(verdict: FrameVerdict): FrameVerdict {
    this.#failed = verdict;
    this.#chunks.length = 0;
    this.#buffered = 0;
    return verdict;
  }

  /** Removes and returns the next n buffered bytes (n ≤ #buffered); copies only across chunks. */
  #take(n: number): Buffer {
    const first = this.#chunks[0] as Buffer;
    if (first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n);
      this.#advance(first, n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[0] as Buffer;
      const count = Math.min(chunk.length - this.#head, n - filled);
      chunk.copy(out, filled, this.#head, this.#head + count);
      filled += count;
      this.#advance(chunk, count);
    }
    return out;
  }

  #advance(chunk: Buffer, count: number): void {
    this.#head += count;
    this.#buffered -= count;
    if (this.#head === chunk.length) {
      this.#chunks.shift();
      this.#head = 0;
    }
  }
}

function view(bytes: Buffer): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

function errorCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error && typeof error.code === "string") return error.code;
  return undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
