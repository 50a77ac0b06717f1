// Every bound in the system, in one place (DESIGN.md §2 rule 4, aesthetics rule 11). Nothing grows
// without limit because a peer asked it to: each queue, buffer, message, table and loop names its
// bound here. Where a bound follows from a formula, the comment gives it.
//
// A module may keep a local name for a bound (KV_LIMITS, MESH_LIMITS, SFS_WIRE, GA_CHAIN_MAX...),
// but the value lives here and the local name is an alias of it. What is not here, on purpose:
// - tunables: a core's *_DEFAULTS config (SWIM_DEFAULTS, GOSSIP_DEFAULTS, SFS_DEFAULTS,
//   MESH_DEFAULTS, RAFT_DEFAULTS...), which a node may change within the hard bounds below;
// - sizes of a format (envelope HEADER_BYTES, the gossip encoding's measured sizes, the SFS digest's
//   bucket count) and the ranges of integer types (u32, 2^53), which are facts, not choices.
// test/core/limits.test.ts checks every value here and fails on a numeric *_MAX / *Max constant
// elsewhere in src/core.

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
  /** Keys of one MessagePack map the decoder accepts (codec.ts): our messages have a handful; a forged map header cannot make it allocate more. */
  messageMapKeysMax: 64,
  /** Largest HLC logical counter before the clock refuses to advance (a peer pushing an absurd counter); the counter is a u32. */
  hlcLogicalMax: 0xffff_ffff,
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
  /** Largest incarnation a member may reach (it travels as a u32); refuting past it is an invariant failure. */
  swimIncarnationMax: 0xffff_ffff,
  /** Alive updates too large for what is left of a datagram's budget that piggybacking skips before it stops looking (a loop bound). */
  swimAliveSkipsMax: 32,
  /** Member tables up to this length are scanned when sampling; above it, members are drawn at random (a loop bound). */
  swimSampleScanMax: 64,
  /**
   * Bytes of a SWIM datagram body without its updates and addresses: map header 1, "t" 2, tag ≤ 14,
   * "seq" 4 + 5, "target" 7 + 17, "targetAddr" 11, "addr" 5, "updates" 8 + array header 3 = 77.
   */
  swimFixedBytesMax: 80,
  /**
   * Bytes of a suspect/dead/left update: at most 1 + 1 + 17 + 5 + 17 + 66 (the claim's signature)
   * = 107 (the piggyback budget counts 108).
   */
  swimStateUpdateBytesMax: 108,
  /** Guarded tasks in the cluster (heal): the whole table travels in one frame. */
  guardedTasksMax: 256,
  /** Longest guarded-task name, in characters. */
  guardNameCharsMax: 64,
  /** Longest guarded-task command line, in characters. */
  guardCommandCharsMax: 1024,
  /** Longest guarded-task period: one day of 10 ms ticks. */
  guardEveryTicksMax: 8_640_000,
  /** Largest guarded-task epoch (a u32 on the wire); a task whose epoch reached it is no longer changed. */
  guardEpochMax: 0xffff_ffff,
  /**
   * Largest guarded-task epoch heal takes from a peer as it comes (heal.ts). Above it a peer's record
   * is taken only up to guardEpochStepMax above the record held for that name: the upper half of the
   * u32 is room for the changes nodes make themselves, which a peer cannot use up in one message.
   */
  guardEpochTakenMax: 0x7fff_ffff,
  /** How far above the held record a peer's epoch may be once past guardEpochTakenMax (heal.ts). */
  guardEpochStepMax: 1024,
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
  /** Rows a listing (KV keys, shared-folder entries) returns when its caller names no limit. */
  listRowsDefault: 1000,
  /** Ticks of the kernel loop per second at the default 10 ms interval. */
  ticksPerSecond: 100,

  // ---------------------------------------------------------------------------------------------
  // Collective

  /** Raft messages on the wire (raft/wire.ts, raft/confchange.ts). */
  raft: {
    /** Entries per message: the core counts 16 bytes of overhead per entry against 1 MiB per message. */
    entriesPerMessageMax: 65_536,
    /** Bytes of one entry's data a peer may send: 1 MiB, RAFT_DEFAULTS.maxMsgBytes (the KV map's values are far smaller). */
    entryBytesMax: 1 << 20,
    /** Members of a configuration; the leader keeps at most 5 voters, learners are bounded by members. */
    confMembersMax: 1024,
    /** Read contexts are request ids. */
    contextBytesMax: 64,
    /** A snapshot travels in one frame (frameBytesMax, 16 MiB), with 1 MiB left for the rest of the message. */
    snapshotBytesMax: 15 * 1024 * 1024,
    /** Characters of a node id in an encoded configuration change (ids are 16; 64 leaves room, refuses junk). */
    nodeIdCharsMax: 64,
  },

  /** The consensus key-value map behind /v1/kv (kv.ts: KV_LIMITS). */
  kv: {
    /** UTF-8 bytes of a key. */
    keyBytesMax: 512,
    /** Bytes of a value (also the HTTP body a PUT may carry). */
    valueBytesMax: 64 * 1024,
    /** Keys in the map. */
    keysMax: 100_000,
    /** The whole map travels as one snapshot frame and one store value (8 MiB). */
    totalBytesMax: 7 * 1024 * 1024,
  },

  /** Gossip messages (gossip-wire.ts: GOSSIP_WIRE_BOUNDS): generous enough for a stream-channel budget of 64 KiB. */
  gossip: {
    /** Longest topic name in characters (ASCII only, so also bytes). */
    topicCharsMax: 64,
    /** Longest key in UTF-16 code units; the core also bounds its UTF-8 bytes. */
    keyCharsMax: 256,
    /** Largest value in bytes. */
    valueBytesMax: 60 * 1024,
    /** Digest entries per message. */
    digestMax: 1024,
    /** Origin groups per message. */
    deltasMax: 1024,
    /** Rows per origin group. */
    rowsPerDeltaMax: 4096,
    /** Horizons per message. */
    horizonsMax: 256,
    /**
     * Largest HLC logical counter accepted in a row. The clock refuses to advance past 2^32 − 1 (an
     * assertion); a peer's row near it would leave our next local stamp no room, so rows are refused
     * well before: 65,535 stamps of headroom within one millisecond.
     */
    rowLogicalMax: 0xffff_0000,
    /**
     * Largest row version (an origin's write counter) taken from a peer or written by this node
     * (gossip.ts): a delta, digest entry or horizon above it is dropped and counted. 2^40 below
     * 2^53, so version + 1 stays exact. A node never takes a version of its own origin from a peer.
     */
    versionMax: 2 ** 53 - 2 ** 40,
    /**
     * A node that boots without its own version (a new or wiped store) keeps a floor of its boot
     * epoch (ms) times this (gossip.ts selfVersionFloor) and moves its sequence there once a peer
     * shows it lost its store: above every version it wrote before, unless it wrote over 1,024 rows
     * a millisecond on average since its first boot.
     */
    bootVersionsPerMs: 1024,
  },

  /** Mesh routing messages (mesh-wire.ts: MESH_LIMITS), each sized so the largest fits one datagram. */
  mesh: {
    /**
     * Route entries per `mesh-update`. An entry is at most 24 bytes of MessagePack (fixarray 1, a
     * 16-character id 17, seqno and metric as uint16 3 + 3) and the rest of the message at most 36
     * (map, `t`, `iv` up to 65,535, `n` up to 2^32 − 1, `q`, the array header), so 40 entries take
     * ≤ 996 bytes: with the 52-byte envelope (36 header + 16 tag) ≤ 1,048 of the 1,200-byte datagram
     * (datagramBytesMax). Measured in test/core/mesh.test.ts ("bounds").
     */
    updateEntriesMax: 40,
    /**
     * Largest payload of one routed datagram. The rest of a `mesh-data` is at most 57 bytes (map,
     * `t`, `d`, two ids, ttl, hops, a bin16 header), so ≤ 1,081 + 44 = 1,125 bytes on the wire.
     */
    payloadBytesMax: 1024,
    /** Hop limit (TTL) and hop count fit one byte; so does a seqno request's hop count. */
    hopsMax: 255,
    /** Largest link cost a caller may set; a path of 16 such links is still below infinity (0xFFFF). */
    linkCostMax: 4096,
    /** Largest update interval a neighbour may announce (ticks): 655 s at 10 ms (a u16). */
    intervalTicksMax: 0xffff,
  },

  /** Shared-folder protocol maxima (sfs-wire.ts: SFS_WIRE): what a peer may send at all. The node's SfsConfig stays within them. */
  sfsWire: {
    /** Manifest entries (tombstones included) a node keeps; also the largest list in one message. */
    filesMax: 65_536,
    /** Smallest chunk size a file may be split in. */
    chunkBytesMin: 1024,
    /** Largest chunk size: four of them fill one 16 MiB frame (sfs.ts asserts chunkBytes × 4 ≤ frameBytesMax). */
    chunkBytesMax: 4 * 1024 * 1024,
    /** Chunks of one file: 4,096 × 1 MiB = 4 GiB at the default chunk size. */
    chunksMax: 4096,
    /** Largest file. */
    fileBytesMax: 4 * 1024 * 1024 * 1024,
    /** Origins in one version vector (distinct writers of one path that are remembered). */
    vvEntriesMax: 32,
    /**
     * Largest Lamport counter taken from a peer (sfs-version.ts: SFS_COUNTER_MAX): 2^48 writes is
     * beyond any real cluster, and refusing larger ones keeps a peer from pushing the clock to its
     * end (after which nothing could be written).
     */
    counterMax: 2 ** 48,
    /**
     * Largest counter the Lamport clock takes from a peer's version (sfs.ts): a version up to
     * counterMax is kept, but the clock stops here, so 2^32 of this node's own versions always fit
     * under counterMax (where peers still take them).
     */
    clockAdoptMax: 2 ** 48 - 2 ** 32,
  },

  /** The shared folder's defaults per node (SFS_DEFAULTS): what one origin may announce, and the disk kept free. */
  sfs: {
    /** Live entries (files and folders) of one origin taken into the manifest: half of SFS_DEFAULTS.filesMax (10,000). */
    originFilesMax: 5_000,
    /** Bytes of one origin's live files taken into the manifest: 64 GiB. */
    originBytesMax: 64 * 1024 * 1024 * 1024,
    /** Free disk space a fetch or local copy must leave: 1 GiB. */
    diskReserveBytes: 1024 * 1024 * 1024,
  },

  /** Paths in the shared folder (sfs-path.ts: SFS_PATH). */
  sfsPath: {
    /** UTF-8 bytes of a whole path. */
    bytesMax: 1024,
    /** UTF-8 bytes of one segment (the common file-name limit, NAME_MAX). */
    segmentBytesMax: 255,
    /** Segments (directory depth + 1). */
    depthMax: 32,
    /** Extensions longer than this stay part of the stem in a conflict name (a loop bound). */
    conflictExtensionCharsMax: 16,
  },

  // ---------------------------------------------------------------------------------------------
  // Brain

  /** Upper bounds of a model this code accepts (transformer.ts: MODEL_BOUNDS, validateConfig). */
  model: {
    vocab: 1 << 20,
    seqLen: 1 << 14,
    dModel: 1 << 14,
    nHeads: 1 << 10,
    dFF: 1 << 16,
    nLayers: 1 << 10,
    nClasses: 1 << 16,
    /** Parameters in total: 2^28 f32 = 1 GiB. */
    params: 1 << 28,
  },

  /** Model files (model-file.ts: MODEL_FILE). */
  modelFile: {
    /** Largest file decodeModelFile accepts by default: 256 MiB (about 67 M parameters). */
    bytesMax: 256 * 1024 * 1024,
    /** Largest JSON header. A header with the most mutations is about 0.5 MiB. */
    headerBytesMax: 1024 * 1024,
    /** `tag` and `origin`, in UTF-16 code units. */
    stringMax: 64,
    /** Mutations in a model's lineage (replayed onto its base). */
    mutationsMax: 10_000,
    /** `version` and `lineage.base` are 1..versionMax (a u32, as on the wire). */
    versionMax: 0xffff_ffff,
  },

  /** Brain messages and tensor frames (brain-wire.ts: BRAIN_WIRE). */
  brainWire: {
    /** Largest message or tensor frame accepted by default. */
    bytesMax: 64 * 1024 * 1024,
    /** Bytes of a session id. */
    sessionBytesMax: 64,
    /** Bytes of an error code. */
    codeBytesMax: 64,
    /** Bytes of an error message. */
    messageBytesMax: 1024,
    /** Dimensions of a tensor. */
    rankMax: 4,
    /** Tokens in an expert request (T). */
    expertTokensMax: 4096,
    /** Logits in an expert response (C): model.nClasses. */
    logitsMax: 65536,
  },

  /** Distributed K/V attention (dkva.ts). */
  dkva: {
    /** Largest global position a shard stores (positions travel as u32). */
    positionMax: 0xffff_ffff,
  },

  /** Mixture-of-experts routing (moe.ts). */
  moe: {
    /** Classes the gate and the experts output. */
    classesMax: 1024,
    /** Probe outcomes remembered per (node, class), at most (the default window is 100). */
    windowMax: 65_536,
    /** Nodes tracked at once (least recently probed evicted first). */
    nodesMax: 4096,
    /** Probes one planProbes call may plan in total. */
    probePlanMax: 65_536,
  },

  /** Genetic search over models (ga.ts). */
  ga: {
    /** Mutants proposed per gaStep, at most. */
    populationMax: 256,
    /** Mutations replayed onto a base model, at most (a peer's seed chain is bounded by this). */
    chainMax: 4096,
  },

  /** Training (train.ts). */
  train: {
    /** Epochs one training may run, at most. */
    epochsMax: 100_000,
    /** Examples one training or evaluation may use, at most. */
    examplesMax: 10_000_000,
  },

  /** Federated averaging (fedlearn.ts). */
  fed: {
    /** Updates aggregated per round, at most. */
    updatesMax: 4096,
    /** Default cap on a participant's self-reported example count n when aggregate() runs FedAvg (a caller may pass its own). */
    nCapDefault: 10_000,
  },

  /** The synthetic sensor data (data.ts). */
  data: {
    /** Examples generated per call, at most. */
    examplesMax: 1_000_000,
  },

  /** Distributed inference and the node's Brain service (parallel.ts, node/brain/service.ts). */
  brain: {
    /** Peers one distributed run may name (parallel.ts: MAX_PEERS): a refusal bound far above any cluster's brain peers (BRAIN_DEFAULTS.peersMax is 2). */
    peersMax: 255,
    /** UTF-8 bytes of a Coordinator's id (parallel.ts): it prefixes the temporary session ids; a node id has 16. */
    coordinatorIdBytesMax: 24,
    /** Runs waiting behind the one in progress, per session (parallel.ts): a caller that queues more is not waiting for answers. */
    sessionQueueMax: 64,
    /** Local decode sessions a node keeps at once, oldest evicted first (service.ts): each holds a KV cache of the model's seqLen. */
    localSessionsMax: 16,
    /** GA chain rows a node follows per tick (service.ts): each replays a mutation over all weights, so a long chain is spread over ticks. */
    gaFollowRowsPerTickMax: 16,
    /** Federated round reports a node keeps (service.ts; `fl status` shows the last 20), oldest dropped first. */
    fedRoundsKeptMax: 100,
    /** Peers caught answering wrong that a node (service.ts) and each Coordinator (parallel.ts) keep banned, oldest forgotten first. */
    bannedPeersMax: 1024,
  },

  // ---------------------------------------------------------------------------------------------
  // Node (src/node): the kernel, its subsystems, the shell and the HTTP API

  /** The kernel and its subsystems' drain loops (a loop over a core's ready stops after its bound; the rest waits for the next call). */
  node: {
    /** Rounds of the kernel's flush loop per turn (kernel.ts): work left after them stays queued for the next turn. */
    flushRoundsMax: 8,
    /**
     * Ticks between two introductions (our signed entry in an intro packet, peer-seal.ts) to one
     * member, or answers to one address: 50 ticks (0.5 s at 10 ms), the rate limit of asked-for
     * and reconnecting introductions.
     */
    introTicks: 50,
    /**
     * Ticks after boot during which a node introduces itself, unasked, to each member before its
     * first packet to it (peer-seal.ts): one push-pull period of the LAN profile (30 s at 10 ms),
     * the time its alive news takes to reach everyone; later, members that do not know it ask.
     */
    introWindowTicks: 3000,
    /** Ticks one wakeup of the loop may run to catch up (run.ts, and the simulator's stalled nodes): one second of ticks; beyond, they are skipped and counted. */
    catchUpTicksMax: 100,
    /** Rounds of Raft's ready drained per pass (consensus.ts): persisting and applying one ready can make another. */
    raftDrainRoundsMax: 64,
    /** Rounds of the shared folder's ready flushed per call (shared-folder.ts). */
    sfsFlushRoundsMax: 16,
    /** Rounds of the roster's and SWIM's ready drained per call (membership.ts). */
    membershipDrainRoundsMax: 5,
    /** Rounds of heal's ready drained per call (guard.ts). */
    guardDrainRoundsMax: 5,
    /** Shared-folder records read from the store at boot (shared-folder.ts): twice SFS_DEFAULTS.filesMax (10,000), the manifest bound. */
    sfsRecordsMax: 20_000,
    /** Characters of a guarded command's last output kept for `heal` (guard.ts). */
    guardOutputCharsMax: 200,
    /** Mode changes kept for `degrade` (membership.ts). */
    modeHistoryMax: 32,
    /** Largest RTT sample taken, in milliseconds (pinger.ts): one above a minute is a stale ack, not a round trip. */
    rttSampleMsMax: 60_000,
  },

  /** The node's shell (shell.ts and the subsystems' commands): what one command prints or waits, sized for a terminal. */
  shell: {
    /** Commands one shell holds (shell.ts): far more than the built-ins will ever need. */
    commandsMax: 256,
    /** Rows `nodes` prints before it summarises the rest (node/commands.ts). */
    nodesRowsMax: 200,
    /** Peers `net` lists RTTs for (node/commands.ts). */
    rttRowsMax: 50,
    /** Rows `vital` prints before it summarises the rest (body/commands.ts). */
    vitalRowsMax: 200,
    /** Rows `kv list`, `topic list` and `topic get` print (collective/commands.ts). */
    topicRowsMax: 200,
    /** Longest wait of `topic sub`, in seconds (collective/commands.ts). */
    subSecondsMax: 60,
    /** Bytes `cat` prints at most (sfs-commands.ts): 64 KiB. */
    catBytesMax: 64 * 1024,
    /** Rows `ls` and `sfs list` print (sfs-commands.ts). */
    sfsListRowsMax: 200,
  },

  /** The HTTP API (adapters/http.ts and the subsystems' routes); its body bound is httpBodyBytesMax above. */
  api: {
    /** Concurrent TCP connections the API accepts (server.maxConnections), as connectionsMax for peers. */
    connectionsMax: 256,
    /** Bytes of a request's headers (node:http maxHeaderSize): 16 KiB, Node's default. */
    headerBytesMax: 16 * 1024,
    /** Headers of one request (server.maxHeadersCount): our clients send a handful. */
    headersCountMax: 64,
    /** Requests served on one keep-alive connection before it is closed (server.maxRequestsPerSocket). */
    requestsPerSocketMax: 1_000,
    /** Event streams open at once: each holds a connection and a buffer. */
    sseClientsMax: 64,
    /** Bytes an event stream may have buffered (a stalled reader) before it is cut: 1 MiB. */
    sseBufferBytesMax: 1024 * 1024,
    /** Rows GET /v1/topics/T lists (collective/routes.ts). */
    topicRowsMax: 10_000,
    /** Tokens one /v1/infer request may carry (brain/routes.ts). */
    inferTokensMax: 4096,
    /** Dashboard sessions (pk_session cookies) a node keeps at once; a new login evicts the oldest. */
    sessionsMax: 64,
    /** One-time login codes (POST /v1/login-code) outstanding at once; a new one evicts the oldest. */
    loginCodesMax: 16,
    /** Names given with --public-name that the API accepts in Host and Origin besides its own. */
    publicNamesMax: 16,
    /** Bytes of a --token-file (pk node, pk shell) read at most: the token is 43 characters. */
    tokenFileBytesMax: 4096,
    /** Characters of the code or token a POST /v1/login body may hold (ours are 32 and 43). */
    loginSecretCharsMax: 256,
  },

  // ---------------------------------------------------------------------------------------------
  // Adapters (src/adapters)

  /** Sockets (net.ts), the LAN beacon (beacon.ts) and the cluster token (seal.ts). */
  net: {
    /** Attempts at finding a port free for both UDP and TCP when asked for port 0 (net.ts). */
    bindAttemptsMax: 8,
    /** Frames up to this size are copied into one buffer with their length prefix (net.ts: one write, one segment). */
    coalesceBytesMax: 64 * 1024,
    /** Parsed destination addresses remembered (net.ts), cleared when full: peers are far fewer. */
    parsedAddressesMax: 4096,
    /**
     * Inbound TCP connections from one IP address open at once (net.ts): a member opens one to each
     * peer, and `pk up` runs up to cli.upNodesMax (64) nodes on one host, so 63 from 127.0.0.1.
     */
    connectionsPerAddressMax: 64,
    /**
     * Largest frame an inbound connection may send before one of its frames has authenticated
     * (net.ts): a stranger's frame is never buffered or decrypted beyond this. A member's first
     * frame on a new connection must fit it.
     */
    firstFrameBytesMax: 64 * 1024,
    /** Milliseconds an inbound connection has, from its accept, to send a frame that authenticates (net.ts). */
    firstFrameMsMax: 5_000,
    /** Beacons larger than this are not ours (beacon.ts): ours, with a 128-character address, pack to 159 bytes. */
    beaconBytesMax: 256,
    /** Characters of the address in a beacon (beacon.ts). */
    beaconAddressCharsMax: 128,
    /** Peers a beacon listener remembers at once, oldest forgotten first (beacon.ts). */
    beaconPeersMax: 1024,
    /** Longest cluster token accepted, in characters (seal.ts): a guard against pasting a file by mistake. */
    tokenCharsMax: 1024,
  },

  /** Files on the host's disk (identity.ts, sfs-files.ts). */
  disk: {
    /** Largest identity file read (identity.ts): a PEM Ed25519 key is about 120 bytes. */
    identityFileBytesMax: 16 * 1024,
    /** Tries at hashing a shared file that keeps changing under us before giving up (sfs-files.ts). */
    hashTriesMax: 3,
    /** Items one scan of the shared folder lists by default (sfs-files.ts); beyond, it stops and says it is incomplete. */
    sfsScanItemsMax: 200_000,
  },

  // ---------------------------------------------------------------------------------------------
  // Simulator (src/sim) and CLI (src/cli)

  /** The deterministic simulator: what a scenario may ask of the simulated world (a larger ask is a bug in the scenario). */
  sim: {
    /** Largest clock drift, in parts per million (clock.ts): real quartz is within ~100; 10^4 is a broken clock. */
    driftPpmMax: 10_000,
    /** Largest clock offset, in milliseconds (clock.ts): a day either way. */
    offsetMsMax: 86_400_000,
    /** Packets queued for a stalled node, a socket's receive buffer (cluster.ts); beyond, they are lost. */
    stallBacklogMax: 4096,
    /** Packets in flight by default (network.ts): 4 Mi, about 0.5 GiB of packet records. */
    inFlightPacketsMax: 1 << 22,
    /** Addresses one network knows (network.ts): 2^21, so a directed pair key from * 2^21 + to is exact in a double. */
    addressesMax: 1 << 21,
    /** Symmetric partitions in force at once (network.ts). */
    partitionsMax: 64,
    /** Directed pairs that have ever carried a stream frame, one small record each (network.ts). */
    connectionsMax: 1 << 24,
    /** Longest delay one packet may be given, in ticks (network.ts: bounds jitter and reorder settings). */
    delayTicksMax: 1_000_000,
    /** Packets due further ahead than this many ticks are not copied into slab memory (network.ts). */
    slabDelayTicksMax: 64,
    /** Largest slab (slab.ts): 16 MiB. */
    slabBytesMax: 16 * 1024 * 1024,
    /** Entries one heap holds (heap.ts): 2^27, 2 GiB of keys, far beyond any simulation. */
    heapEntriesMax: 1 << 27,
    /** Largest simulated file (disk.ts): 1 GiB. */
    fileBytesMax: 1 << 30,
    /** Files on one simulated disk (disk.ts). */
    filesMax: 4096,
    /** Bytes of a simulated store key (disk.ts): 64 KiB. */
    keyBytesMax: 64 * 1024,
    /** Shared-folder operations queued at once on the simulated disk (files.ts): the sfs core bounds its effects far below. */
    filesQueueMax: 65_536,
    /** Senders whose tag prefix one simulated seal remembers (seal.ts), cleared when full: the cache is only for speed. */
    senderSeedsMax: 1 << 16,
    /** Nemesis actions a failed linearizability run reports (raft-lin.ts); it keeps at most four times as many. */
    nemesisLogLinesMax: 12,
  },

  /** Trust between strangers' nodes: invites (node/body/invites.ts, node/redeem.ts). */
  trust: {
    /** Invite redemptions a core node checks at once (each waits for two consensus round trips); more are dropped, counted. */
    redeemsPendingMax: 16,
    /** Longest life of an invite: 30 days. */
    inviteTtlMaxMs: 30 * 24 * 3_600_000,
    /** Characters of an invite code read (a code is about 200). */
    inviteCodeCharsMax: 4_096,
    /** Interval between two redeem messages of an invited node waiting for its grant (redeem.ts). */
    redeemResendMs: 500,
    /** Bytes of a redeem's box: the 16-byte secret and its 16-byte tag, with room for a longer secret later. */
    redeemBoxBytesMax: 64,
    /** Characters of a grant's refusal text. */
    grantErrorCharsMax: 200,
    /** Ticks between two looks at the revocations a node's consensus replica holds (invites.ts): 1 s at 10 ms. */
    revokePollTicks: 100,
    /** Refusals from the seed that end an invited node's wait (unauthenticated: one is not enough). */
    redeemRefusalsMax: 3,
    /** How long an invited node waits for its grant before it gives up (run.ts). */
    redeemTimeoutMs: 30_000,
  },

  /** The Self layer (issue 14): memories, asking minds, their configuration. */
  self: {
    /** A memory (core/self/memory-record.ts, docs/protocols/memory.md). */
    memory: {
      /** Text in UTF-8 bytes (a longer answer is kept cut, marked). */
      textBytesMax: 8 * 1024,
      /** Speaker, conversation and `by` in characters. */
      nameCharsMax: 64,
      /** Memories one memory supersedes (a merge). */
      supersedesMax: 32,
      /** The whole encoded value. */
      valueBytesMax: 16 * 1024,
      /** Key: a 16-hex origin, "/", and a local name. */
      keyCharsMax: 64,
      /** Memories `memory list` and GET /v1/memory show at most. */
      listMax: 500,
      /** Hits a search returns at most. */
      searchKMax: 100,
    },
    /** Asking a member's mind (core/self/mind-wire.ts, docs/protocols/minds.md). */
    mind: {
      /** Messages in one prompt. */
      messagesMax: 128,
      /** Characters of one prompt message. */
      contentCharsMax: 64 * 1024,
      /** Characters of the prompt in all (the serving node checks it; the schema bounds each part). */
      promptCharsMax: 256 * 1024,
      /** Characters of one streamed piece. */
      deltaCharsMax: 16 * 1024,
      /** Characters of a whole answer. */
      answerCharsMax: 256 * 1024,
      /** A mind's name. */
      nameCharsMax: 64,
      /** A model's name. */
      modelCharsMax: 128,
      /** An error's detail. */
      detailCharsMax: 512,
      /** Largest max_tokens asked for. */
      maxTokensMax: 1_000_000,
      /** Local minds one node advertises. */
      advertisedMax: 16,
      /** Characters of an API key read from the environment or a key file (adapters/mind-config.ts). */
      keyCharsMax: 4_096,
      /** Characters of a mind's URL. */
      urlCharsMax: 2_048,
    },
  },

  /** Evolution (issue 15): a mind's reply, programs and their verification (core/evolve/, adapters/verify-ts.ts; docs/protocols/programs.md). */
  evolve: {
    /** A mind's reply (core/evolve/reply.ts). */
    reply: {
      /** The whole reply in UTF-8 bytes: the three sections and their markers. */
      replyBytesMax: 128 * 1024,
      /** The [ANALYSIS] section. */
      analysisBytesMax: 16 * 1024,
      /** The [CODE] section: the program's source with its fences; equal to the program's own bound. */
      codeBytesMax: 64 * 1024,
      /** The [CMD] section. */
      cmdBytesMax: 8 * 1024,
      /** Commands in [CMD] (one JSON object a line). */
      commandsMax: 16,
      /** Arguments of one `exec` command. */
      argsMax: 16,
      /** Characters of one argument. */
      argCharsMax: 256,
    },
    /** A program and its manifest (core/evolve/manifest.ts). */
    program: {
      /** Characters of a program's name (lowercase letters, digits and dashes). */
      nameCharsMax: 48,
      /** Characters of a manifest's summary. */
      summaryCharsMax: 200,
      /** Each of a version's three numbers. */
      versionPartMax: 999_999,
      /** The manifest's JSON text in UTF-8 bytes. */
      manifestBytesMax: 4 * 1024,
      /** Topic patterns in one of a manifest's grants (topics.read, topics.publish). */
      topicPatternsMax: 16,
      /** Characters of a topic pattern: a gossip topic name, with an optional trailing `*`. */
      topicPatternCharsMax: 65,
      /** The program's TypeScript source in UTF-8 bytes, manifest header included. */
      sourceBytesMax: 64 * 1024,
      /** Gas of one run: units of the sandbox's meter (QuickJS: one interrupt poll, about 10,000 bytecode steps). */
      gasMax: 100_000,
      /** Heap of one run's engine. */
      memoryBytesMax: 64 * 1024 * 1024,
      /** Smallest heap a run may ask for (a QuickJS runtime and context alone take a few hundred KiB). */
      memoryBytesMin: 1024 * 1024,
      /**
       * Stack of one run's engine. 256 KiB is the largest at which QuickJS-in-WebAssembly reports a
       * guest `stack overflow`; above it the host's own stack runs out first and a host RangeError
       * escapes (research/node24-deps.md, Sandbox).
       */
      stackBytesMax: 256 * 1024,
      /** Smallest stack a run may ask for. */
      stackBytesMin: 16 * 1024,
      /** Wall-clock time of one run (the backstop behind gas: a run blocked in a capability call). */
      wallMsMax: 10_000,
      /** Output of one run: its log lines, its command output, what it publishes. */
      outputBytesMax: 1024 * 1024,
      /** Shortest period of a `task` program. */
      periodMsMin: 100,
      /** Longest period of a `task` program: a day. */
      periodMsMax: 86_400_000,
    },
    /** `evolve` and its log (node/evolve/evolve.ts). */
    log: {
      /** Steps each node keeps in the replicated evolve log (rows of the topic evolve.log under its id). */
      rowsPerNodeMax: 64,
      /** Characters of one step's text. */
      stepCharsMax: 2_000,
      /** [CMD] lines held for `evolve approve` at once. */
      pendingMax: 32,
      /** Tokens a mind may answer with. */
      replyTokensMax: 8_192,
    },
    /** Programs one node holds (deployed or loaded to run). */
    programsMax: 32,
    /** Rollouts (core/evolve/rollout.ts, node/evolve/rollouts.ts). */
    rollout: {
      /** A rollout record's JSON in the consensus store. */
      recordBytesMax: 4 * 1024,
      /** A health row's JSON in the gossip topic evolve.health. */
      healthBytesMax: 2 * 1024,
      /** Nodes in one canary. */
      canaryNodesMax: 64,
      /** A canary's window. */
      windowMsMax: 24 * 60 * 60 * 1000,
      /** Characters of a decision's reason or a health row's last error. */
      reasonCharsMax: 400,
    },
    /** One run of a program (core/evolve/run.ts, adapters/sandbox.ts). */
    run: {
      /** Characters of a KV key in a program's namespace. */
      keyCharsMax: 128,
      /** Characters of a path in a program's folder. */
      pathCharsMax: 128,
      /** Bytes of one KV value. */
      valueBytesMax: 16 * 1024,
      /** Keys of one program's KV namespace. */
      kvKeysMax: 1_024,
      /** Bytes of one program's KV namespace (keys and values). */
      kvBytesMax: 256 * 1024,
      /** Bytes of one file in a program's folder. */
      fileBytesMax: 64 * 1024,
      /** Files in a program's folder. */
      filesMax: 64,
      /** Writes of one kind (KV, files, publishes) in one run. */
      writesMax: 256,
      /** Log lines kept from one run. */
      logLinesMax: 100,
      /** Rows of one topic handed to a run. */
      topicRowsMax: 256,
      /** Readings a node keeps for a prefilter's dry run (recorded data). */
      dryReadingsMax: 400,
      /** Bytes of a run's request to the engine (state and argument, as JSON). */
      requestBytesMax: 2 * 1024 * 1024,
    },
    /** The sandbox that runs programs (adapters/sandbox*.ts, docs/adr/017-sandbox.md). */
    sandbox: {
      /** Characters of a guest error's message kept in a run's outcome. */
      errorCharsMax: 500,
      /**
       * Characters of the report a run hands back from the guest (effects, logs, result as JSON):
       * 256 writes of a 64 KiB file and 256 of a 16 KiB KV value fit, with room for the rest.
       */
      reportCharsMax: 32 * 1024 * 1024,
      /**
       * The WebAssembly memory of one engine's QuickJS module. QuickJS's own limit (a run's
       * memoryBytes) misses large allocations in the WebAssembly build, so this cap is what bounds
       * them: twice the largest memoryBytes a run may ask for.
       */
      wasmBytesMax: 128 * 1024 * 1024,
      /** Runs waiting for one sandbox's worker; more are refused (kind "host"). */
      queuedRunsMax: 1_024,
    },
    /** C programs, an optional component (adapters/compile-c.ts, docs/adr/019-c-programs.md). */
    c: {
      /** Bytes of a C program's linked WebAssembly module. */
      wasmBytesMax: 1024 * 1024,
      /** Characters of the JavaScript wasm2js makes of it: a run's request (2 MiB) carries it. */
      jsCharsMax: 1024 * 1024,
      /** Characters of the compiler's diagnostics read for findings. */
      diagnosticsCharsMax: 64 * 1024,
      /** Milliseconds one compile may take (the first loads the compiler) before its thread is terminated. */
      compileMsMax: 120_000,
      /** Compiles waiting for the compiler's thread; more are refused. */
      queuedCompilesMax: 16,
    },
    /** Rolling upgrades into bundles (node/evolve/upgrade.ts, adapters/upgrade-files.ts, docs/protocols/upgrade.md). */
    upgrade: {
      /** Bundles a node remembers it rolled back (DATA/bundles/failed); the oldest are forgotten. */
      failedMax: 64,
      /** Characters of a failure's reason (in DATA/bundles/failed and upgrade/halt/<address>). */
      reasonCharsMax: 400,
      /** Halted bundles `upgrade status` lists. */
      haltsShownMax: 32,
    },
    /** The verifier (adapters/verify-ts.ts, docs/adr/016-verify.md). */
    verify: {
      /** Nodes of a program's syntax tree: the checker's and emitter's work grows with it (eBPF's instruction limit). */
      astNodesMax: 20_000,
      /**
       * Depth of a program's syntax tree. TypeScript's checker and emitter take time quadratic in the
       * depth of a left-deep chain (`1+1+…+1`: 10,000 terms took 2.6 s here), and its recursive
       * parser overflows the stack a few thousand levels down; no hand-written program nests 200 deep.
       */
      astDepthMax: 200,
      /** Places reported for one rule (the verdict counts all of them). */
      findingsPerRuleMax: 20,
      /** Characters of one finding's message (a type error can print a long type). */
      findingCharsMax: 400,
    },
  },

  /** The `pk` command line (cli/main.ts). */
  cli: {
    /** Nodes `pk up` starts at most: a local cluster, not a load test. */
    upNodesMax: 64,
    /** Lines kept in ~/.pk_history. */
    historyLinesMax: 1_000,
  },
} as const;
