// Every bound in the system, in one place (DESIGN.md §2 rule 4, aesthetics rule 11). Nothing grows
// without limit because a peer asked it to: each queue, buffer, message, table and loop names its
// bound here. Where a bound follows from a formula, the comment gives it.

export const LIMITS = {
  /** Largest UDP datagram we send or accept, envelope included (fits a 1,280-byte IPv6 MTU). */
  datagramBytesMax: 1200,
  /** Largest TCP frame (length prefix excluded), envelope included. */
  frameBytesMax: 16 * 1024 * 1024,
  /** Bytes buffered per TCP connection before it is cut as abusive. */
  connectionBufferBytesMax: 32 * 1024 * 1024,
  /**
   * Bytes buffered across all inbound TCP connections together: without it, connectionsMax
   * connections each holding just under connectionBufferBytesMax could pin 8 GiB. A connection
   * whose data would push the total over this bound is cut (counted as `oversize`).
   */
  connectionBuffersTotalBytesMax: 256 * 1024 * 1024,
  /** Inbound TCP connections held open at once. */
  connectionsMax: 256,
  /** Outbound frames queued per peer connection before new ones are dropped. */
  peerQueueFramesMax: 1024,
  /**
   * Width of the sliding replay window per sender and channel, in counters: how far out of order a
   * datagram may arrive and still be accepted. Streams arrive in order; datagram protocols here
   * keep few packets in flight per peer. 256 bits = 32 bytes per sender.
   */
  replayWindow: 256,
  /** Senders whose replay windows are remembered; the least recently heard is evicted first. */
  replaySendersMax: 65536,
  /** Members in the membership table (the simulator's scale test runs 10,000). */
  membersMax: 100_000,
  /**
   * SWIM updates piggybacked on one datagram. The byte budget binds first: the smallest update
   * (suspect/dead/left tuple) is 41 bytes, so a 1,200-byte datagram holds at most 26.
   */
  swimUpdatesMax: 32,
  /** Indirect probes (ping-req helpers) per failed direct probe; memberlist's IndirectChecks is 3. */
  swimIndirectChecksMax: 8,
  /** Members gossiped to per gossip period; memberlist's GossipNodes is 3 (LAN) or 4 (WAN). */
  swimGossipNodesMax: 8,
  /**
   * Indirect probes a node relays at once for others (ping-req in flight). Each prober sends at
   * most swimIndirectChecksMax per probe period, so 1,024 covers 128 probers picking this node in
   * the same period; beyond it ping-reqs are dropped and the prober counts a missing nack.
   */
  swimRelaysMax: 1024,
  /** Local health multiplier bound (Lifeguard's S, memberlist's AwarenessMaxMultiplier): score 0..7. */
  swimAwarenessMax: 8,
  /** Independent suspicion confirmations counted per suspect (Lifeguard's K is suspicionMult − 2). */
  swimConfirmationsMax: 16,
  /** Guarded tasks in the cluster (heal): the whole table travels in one frame. */
  guardedTasksMax: 256,
  /** Longest guarded-task name, in characters. */
  guardNameCharsMax: 64,
  /** Longest guarded-task command line, in characters. */
  guardCommandCharsMax: 1024,
  /** Longest guarded-task period: one day of 10 ms ticks. */
  guardEveryTicksMax: 8_640_000,
  /** Own vital-sign samples kept (and persisted): ten minutes at one per second. */
  vitalHistoryMax: 600,
  /** Confirmation probes of suspects in flight at once on one node (swim.ts confirmProbes). */
  swimConfirmProbesMax: 16,
  /** Handshakes in progress at once on one node (challenges outstanding). */
  handshakesMax: 1024,
  /** Ticks a challenge stays valid. */
  handshakeTicksMax: 500,
  /** Longest node name, in characters. */
  nameCharsMax: 64,
  /** Longest "host:port" address, in characters. */
  addressCharsMax: 260,
  /** Events kept in the node's event ring for /v1/events and `events`. */
  eventRingMax: 1024,
  /** Tasks in the task table. */
  tasksMax: 4096,
  /** Largest HTTP request body the API accepts. */
  httpBodyBytesMax: 1024 * 1024,
  /** Longest shell line. */
  shellLineCharsMax: 4096,
  /** Largest value the durable store accepts in one put. */
  storeValueBytesMax: 8 * 1024 * 1024,
  /** Ticks of the kernel loop per second at the default 10 ms interval. */
  ticksPerSecond: 100,
} as const;
