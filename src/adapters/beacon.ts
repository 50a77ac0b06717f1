// Zero-configuration discovery (DESIGN.md §8, docs/protocols/beacon.md): a node announces itself
// on a UDP multicast group once a second, and listens there for others of its cluster.
//
//   beacon = MessagePack [1, fingerprint, id, addr, member]     (to 239.255.80.75:7399 by default)
//
// `fingerprint` is tokenFingerprint(token) (8 hex characters): it tells beacons of this cluster
// from those of others on the same LAN without revealing the token. A beacon is only a hint of an
// address: joining still runs the authenticated handshake (roster), so a forged beacon can cause
// at most one failed join attempt. `member` is true once the sender runs as part of a cluster
// (false while a fresh node is still listening before it decides to found or to join).
import { createSocket, type Socket } from "node:dgram";
import { isIP } from "node:net";
import { LIMITS } from "../core/util/limits.ts";
import { packValue, unpackValue } from "../core/wire/codec.ts";

export const BEACON_GROUP = "239.255.80.75";
export const BEACON_PORT = 7399;
/** Milliseconds between announcements. */
export const BEACON_PERIOD_MS = 1_000;
/** Beacons larger than this are not ours. */
const BEACON_BYTES_MAX = LIMITS.net.beaconBytesMax;
/** Peers remembered at once (the oldest is forgotten first). */
const PEERS_MAX = LIMITS.net.beaconPeersMax;

export interface BeaconPeer {
  readonly id: string;
  readonly addr: string;
  /** The sender already runs in a cluster (a fresh node still deciding says false). */
  member: boolean;
  /** performance.now() of the last beacon heard from it. */
  heardAt: number;
}

export interface BeaconOptions {
  readonly fingerprint: string;
  readonly id: string;
  /** The address peers join this node at ("host:port"). */
  readonly addr: string;
  /** The interface to send and listen on: the node's listen host when it is an IPv4 address. */
  readonly interface?: string;
  readonly group?: string;
  readonly port?: number;
  readonly onError?: (error: Error) => void;
}

export interface Beacon {
  /** Cluster peers heard so far (this node excluded), most recent first. */
  peers(): BeaconPeer[];
  /** Says from now on that this node runs in a cluster. */
  setMember(member: boolean): void;
  /** Counts of beacons heard and ignored (other clusters, malformed). */
  readonly stats: { heard: number; ignored: number; sent: number };
  close(): Promise<void>;
}

export async function startBeacon(options: BeaconOptions): Promise<Beacon> {
  const group = options.group ?? BEACON_GROUP;
  const port = options.port ?? BEACON_PORT;
  const iface = options.interface !== undefined && isIP(options.interface) === 4 ? options.interface : undefined;
  const socket: Socket = createSocket({ type: "udp4", reuseAddr: true });
  const peers = new Map<string, BeaconPeer>();
  const stats = { heard: 0, ignored: 0, sent: 0 };
  let own = packValue([1, options.fingerprint, options.id, options.addr, false]);
  socket.on("error", (error) => options.onError?.(error));
  socket.on("message", (message) => {
    if (message.length > BEACON_BYTES_MAX) {
      stats.ignored++;
      return;
    }
    const value = unpackValue(message);
    if (!Array.isArray(value) || value.length !== 5 || value[0] !== 1) {
      stats.ignored++;
      return;
    }
    const [, fingerprint, id, addr, member] = value as unknown[];
    if (fingerprint !== options.fingerprint || typeof id !== "string" || !/^[0-9a-f]{16}$/.test(id) || typeof addr !== "string" || addr.length > LIMITS.net.beaconAddressCharsMax || typeof member !== "boolean") {
      stats.ignored++;
      return;
    }
    if (id === options.id) return;
    stats.heard++;
    peers.delete(id);
    peers.set(id, { id, addr, member, heardAt: performance.now() });
    if (peers.size > PEERS_MAX) peers.delete(peers.keys().next().value as string);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  socket.addMembership(group, iface);
  if (iface !== undefined) socket.setMulticastInterface(iface);
  socket.setMulticastLoopback(true);
  socket.setMulticastTTL(1);
  const announce = (): void => {
    socket.send(own, port, group, (error) => {
      if (error !== null && error !== undefined) options.onError?.(error);
      else stats.sent++;
    });
  };
  announce();
  const timer = setInterval(announce, BEACON_PERIOD_MS);
  timer.unref();
  return {
    peers: () => [...peers.values()].reverse(),
    setMember(member: boolean) {
      own = packValue([1, options.fingerprint, options.id, options.addr, member]);
    },
    stats,
    close: () => new Promise<void>((resolve) => {
      clearInterval(timer);
      socket.close(() => resolve());
    }),
  };
}
