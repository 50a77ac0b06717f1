// The shared folder service of one node (issue 5, sfs): the Sfs core (src/core/collective/sfs.ts)
// joined to the node's /shared/ folder on disk (the SharedFolderPort), the store and the network.
// Like the kernel it is synchronous; the disk's work is asynchronous and comes back through
// completions. Every drain of the core's ready goes: records to the store durably, then messages,
// then effects to the disk, then events (and answers to the shell's local operations). The disk's
// free space is measured (the port's freeBytes, statfs) at boot and then every FREE_MEASURE_TICKS
// while files wait for their content, so the core keeps fetches within the disk's reserve. Versions
// are signed by their origin and peers' checked with the node's RecordSigner (host.records); its
// refusals show in /metrics (pk_records_refused_total{kind="sfs"}).
import { Sfs, SFS_DEFAULTS, type SfsConfig, type SfsLocalResult, type SfsMembership, type SfsSigner } from "../../core/collective/sfs.ts";
import { isSfsRecordWire, type SfsMessage, type SfsRecordWire } from "../../core/collective/sfs-wire.ts";
import { LIMITS } from "../../core/util/limits.ts";
import { packValue, unpackValue } from "../../core/wire/codec.ts";
import type { SharedFolderPort, Store, StoreWrite } from "../ports.ts";

const PREFIX_FILE = "sfs/file/";
const KEY_CLOCK = "sfs/clock";
/** Records read at boot at most (the manifest bound). */
const RECORDS_MAX = LIMITS.node.sfsRecordsMax;
/** Ticks between two measures of the disk's free space while files wait for their content (1 s). */
const FREE_MEASURE_TICKS = 100;

export interface SharedFolderHost {
  send(to: string, message: SfsMessage): void;
  event(type: string, data: Record<string, unknown>): void;
  membership: SfsMembership;
  nowMs(): number;
  /** Signs this node's versions and checks other origins' (the node's RecordSigner, ctx.records). */
  records: SfsSigner;
  /** Why `origin` may not write `path` (a folder only core members write), else undefined. */
  reserved?(origin: string, path: string): string | undefined;
}

export class SharedFolder {
  readonly core: Sfs;
  readonly files: SharedFolderPort;
  readonly #store: Store;
  readonly #host: SharedFolderHost;
  /** Local operations (shell writes, removes) waiting for their sfs-local-done events. */
  readonly #waiting = new Map<number, (error: string | undefined) => void>();
  #booted = false;
  #ticks = 0;
  /** Tick of the last measure of free space asked for; undefined while one is in flight. */
  #measuredAt: number | undefined = -FREE_MEASURE_TICKS;
  /** Why the last measure failed, if it did (shown by `sfs status`). */
  measureError: string | undefined;

  /** `config`: the shared folder's bounds, quotas and disk reserve (SFS_DEFAULTS unless given). */
  constructor(id: string, files: SharedFolderPort, store: Store, host: SharedFolderHost, config: SfsConfig = SFS_DEFAULTS) {
    this.core = new Sfs(id, config, host.records, (origin, path) => host.reserved?.(origin, path));
    this.files = files;
    this.#store = store;
    this.#host = host;
    const records: SfsRecordWire[] = [];
    for (const [, value] of store.scan(PREFIX_FILE, RECORDS_MAX)) {
      const record = unpackValue(value);
      if (isSfsRecordWire(record)) records.push(record);
    }
    const clock = unpackValue(store.get(KEY_CLOCK) ?? new Uint8Array(0));
    this.core.restore(records, typeof clock === "number" ? clock : 0);
  }

  get booted(): boolean {
    return this.#booted;
  }

  /** The boot scan: files changed while the node was down are taken in (asynchronous). */
  async boot(): Promise<void> {
    this.#measureFree();
    const { items, complete } = await this.files.scan({ cleanTemp: true });
    const { rehash } = this.core.reconcile(items, complete);
    for (const path of rehash) this.core.localWrite(path, await this.files.hashFile(path));
    this.#booted = true;
    this.flush();
  }

  /** `sfs sync`: rescan the folder for changes made behind the node's back, then exchange at once. */
  async sync(): Promise<number> {
    const mark = this.core.scanMark();
    const { items, complete } = await this.files.scan({ cleanTemp: false });
    const { rehash } = this.core.reconcile(items, complete, mark);
    for (const path of rehash) this.core.localWrite(path, await this.files.hashFile(path));
    this.core.syncNow(this.#host.membership);
    this.flush();
    return rehash.length;
  }

  tick(): void {
    this.#ticks++;
    if (this.#measuredAt !== undefined && this.#ticks - this.#measuredAt >= FREE_MEASURE_TICKS && this.core.pendingCount > 0) this.#measureFree();
    this.core.tick(this.#host.membership, this.#host.nowMs());
    if (this.core.hasReady()) this.flush();
  }

  /** Asks the port for the disk's free space (one measure in flight at a time) and hands it to the core. */
  #measureFree(): void {
    if (this.#measuredAt === undefined) return;
    this.#measuredAt = undefined;
    void this.files.freeBytes().then((bytes) => {
      this.measureError = undefined;
      this.core.diskFree(bytes);
    }, (error: unknown) => {
      // Unmeasured, the core keeps the last measure it had.
      this.measureError = error instanceof Error ? error.message : String(error);
    }).finally(() => {
      this.#measuredAt = this.#ticks;
      this.flush();
    });
  }

  step(from: string, message: SfsMessage): void {
    const chunk = message.t === "sfs-chunk" && message.s === 0 ? this.files.sha256Hex(message.d) : undefined;
    this.core.step(from, message, chunk);
    if (this.core.hasReady()) this.flush();
  }

  /** Waits until every operation of a local change is done; the first error, if any. */
  wait(result: SfsLocalResult): Promise<string | undefined> {
    if (!result.ok) return Promise.resolve(result.error);
    this.flush();
    return Promise.all(result.ops.map((op) => new Promise<string | undefined>((resolve) => this.#waiting.set(op, resolve))))
      .then((errors) => errors.find((e) => e !== undefined));
  }

  flush(): void {
    for (let round = 0; round < LIMITS.node.sfsFlushRoundsMax && this.core.hasReady(); round++) {
      const ready = this.core.ready();
      const writes: StoreWrite[] = [];
      for (const { path, record } of ready.changed) writes.push({ key: PREFIX_FILE + path, value: packValue(record) });
      for (const path of ready.forgotten) writes.push({ key: PREFIX_FILE + path, value: undefined });
      if (ready.clock !== undefined) writes.push({ key: KEY_CLOCK, value: packValue(ready.clock) });
      // The manifest is durable before any peer hears of it.
      if (writes.length > 0) this.#store.write(writes, { durable: true });
      for (const outbound of ready.messages) this.#host.send(outbound.to, outbound.message);
      for (const effect of ready.effects) {
        void this.files.perform(effect).then((done) => {
          this.core.complete(done);
          this.flush();
        });
      }
      for (const event of ready.events) {
        if (event.type === "sfs-local-done") {
          const resolve = this.#waiting.get(event.op);
          this.#waiting.delete(event.op);
          resolve?.(event.error);
        } else {
          this.#host.event(event.type, { ...event });
        }
      }
    }
  }
}
