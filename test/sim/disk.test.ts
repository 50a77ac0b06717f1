import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { SimDisk, SimStore, crc32 } from "../../src/sim/disk.ts";
import { createRng } from "../../src/core/util/rng.ts";
import type { StoreWrite } from "../../src/node/ports.ts";
import type { Rng } from "../../src/core/util/rng.ts";

const text = new TextEncoder();
const bytes = (s: string): Uint8Array => text.encode(s);
const str = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));

/** An Rng whose chance() answers come from a script (then false), to force each write's fate. */
function scriptedRng(chances: readonly boolean[]): Rng {
  let draw = 0;
  const rng: Rng = {
    nextU32: () => 0,
    next: () => 0,
    int: () => 0,
    chance: () => chances[draw++] ?? false,
    fork: () => rng,
  };
  return rng;
}

test("crc32 matches the standard check value", () => {
  assert.equal(crc32(bytes("123456789")), 0xcbf43926);
  assert.equal(crc32(bytes("56789"), crc32(bytes("1234"))), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});

test("SimDisk: fsynced writes survive a crash, unsynced ones are lost when nothing is kept or torn", () => {
  const disk = new SimDisk();
  const file = disk.open("f");
  file.append(bytes("durable"));
  file.fsync();
  file.append(bytes("-volatile"));
  file.write(0, bytes("D"));
  assert.equal(str(file.read()), "Durable-volatile");
  const report = disk.crash(createRng(1), { tornProbability: 0 });
  assert.deepEqual(report, { kept: 0, torn: 0, lost: 2, corrupted: 0 });
  assert.equal(str(file.read()), "durable");
  assert.equal(disk.generation, 1);
});

test("SimDisk: a torn write leaves a proper prefix; a kept write survives whole", () => {
  const rng = createRng(2);
  const torn = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const disk = new SimDisk();
    const file = disk.open("f");
    file.append(bytes("0123456789"));
    disk.crash(rng, { tornProbability: 1 });
    const after = str(file.read()) as string;
    assert.ok(after.length >= 1 && after.length < 10 && "0123456789".startsWith(after), after);
    torn.add(after.length);
  }
  assert.equal(torn.size, 9, "every prefix length 1..9 occurs");
  const disk = new SimDisk();
  const file = disk.open("f");
  file.append(bytes("abc"));
  assert.deepEqual(disk.crash(rng, { keepProbability: 1 }), { kept: 1, torn: 0, lost: 0, corrupted: 0 });
  assert.equal(str(file.read()), "abc");
});

test("SimDisk: a lost write before a kept one leaves a hole of zeros; an unsynced truncate can be undone", () => {
  const disk = new SimDisk();
  const file = disk.open("f");
  file.append(bytes("keep"));
  file.fsync();
  file.truncate(2);
  file.append(bytes("XY"));
  file.append(bytes("ZZ"));
  // Fates, in draw order: truncate not kept; "XY" not kept, not torn; "ZZ" kept.
  disk.crash(scriptedRng([false, false, false, true]), { keepProbability: 0.5, tornProbability: 0.5 });
  // Undo gives "keep"; truncate lost; "XY" (at offset 2) lost; "ZZ" (at offset 4) kept.
  assert.deepEqual([...file.read()], [...bytes("keep"), ...bytes("ZZ")]);

  const holes = new SimDisk();
  const f = holes.open("h");
  f.append(bytes("ab"));
  f.fsync();
  f.append(bytes("cd"));
  f.append(bytes("ef"));
  // "cd" not kept, not torn; "ef" kept.
  holes.crash(scriptedRng([false, false, true]), { keepProbability: 0.5, tornProbability: 0.5 });
  assert.deepEqual([...f.read()], [97, 98, 0, 0, 101, 102]);
});

test("SimDisk: corruption flips a byte of a surviving unsynced write only", () => {
  const disk = new SimDisk();
  const file = disk.open("f");
  file.append(bytes("synced"));
  file.fsync();
  file.append(bytes("unsynced"));
  const report = disk.crash(createRng(3), { keepProbability: 1, corruptProbability: 1 });
  assert.equal(report.corrupted, 1);
  const after = file.read();
  assert.equal(str(after.subarray(0, 6)), "synced");
  const tail = after.subarray(6);
  let differing = 0;
  for (let i = 0; i < tail.length; i++) if (tail[i] !== bytes("unsynced")[i]) differing++;
  assert.equal(differing, 1);
});

test("SimStore: get, scan in key order with limit, delete, and reopen", () => {
  const disk = new SimDisk();
  const store = SimStore.recover(disk);
  store.write([{ key: "b/2", value: bytes("two") }, { key: "a", value: bytes("A") }, { key: "b/1", value: bytes("one") }, { key: "c", value: bytes("C") }], { durable: true });
  store.write([{ key: "b/3", value: bytes("three") }, { key: "c", value: undefined }], { durable: false });
  assert.equal(str(store.get("a")), "A");
  assert.equal(store.get("c"), undefined);
  assert.deepEqual(store.scan("b/").map(([k, v]) => [k, str(v)]), [["b/1", "one"], ["b/2", "two"], ["b/3", "three"]]);
  assert.deepEqual(store.scan("b/", 2).map(([k]) => k), ["b/1", "b/2"]);
  assert.deepEqual(store.scan("").map(([k]) => k), ["a", "b/1", "b/2", "b/3"]);
  assert.deepEqual(store.scan("zz"), []);
  store.close();
  assert.throws(() => store.get("a"), /after close/);
  const reopened = SimStore.recover(disk);
  assert.deepEqual(reopened.recovery, { records: 2, truncatedBytes: 0 });
  assert.deepEqual(reopened.scan("").map(([k]) => k), ["a", "b/1", "b/2", "b/3"]);
});

test("SimStore: values are copied on write; a store from before a crash refuses to be used", () => {
  const disk = new SimDisk();
  const store = SimStore.recover(disk);
  const value = bytes("v1");
  store.write([{ key: "k", value }], { durable: true });
  value[1] = 0x39;
  assert.equal(str(store.get("k")), "v1");
  disk.crash(createRng(1));
  assert.throws(() => store.get("k"), /disk crashed/);
  assert.equal(str(SimStore.recover(disk).get("k")), "v1");
});

test("SimStore: recovery truncates a corrupt tail and later writes append after it", () => {
  const disk = new SimDisk();
  const store = SimStore.recover(disk);
  store.write([{ key: "a", value: bytes("1") }], { durable: true });
  store.write([{ key: "b", value: bytes("2") }], { durable: false });
  disk.crash(createRng(5), { keepProbability: 1, corruptProbability: 1 });
  const recovered = SimStore.recover(disk);
  assert.equal(recovered.recovery.records, 1);
  assert.ok(recovered.recovery.truncatedBytes > 0);
  assert.equal(recovered.get("b"), undefined);
  recovered.write([{ key: "c", value: bytes("3") }], { durable: true });
  disk.crash(createRng(6));
  const again = SimStore.recover(disk);
  assert.deepEqual(again.scan("").map(([k, v]) => [k, str(v)]), [["a", "1"], ["c", "3"]]);
});

test("SimStore: compaction bounds the log and keeps the state", () => {
  const disk = new SimDisk();
  const store = SimStore.recover(disk, { compactBytesMin: 4096 });
  for (let i = 0; i < 2000; i++) store.write([{ key: `k${i % 10}`, value: bytes(`value-${i}`) }], { durable: i % 3 === 0 });
  assert.ok(store.logBytes < 8192, `log is ${store.logBytes} bytes`);
  disk.crash(createRng(7), { keepProbability: 0.5 });
  const recovered = SimStore.recover(disk, { compactBytesMin: 4096 });
  assert.equal(recovered.size, 10);
  // The last durable write of each key (i % 3 === 0) or something later survived.
  for (let k = 0; k < 10; k++) {
    const value = Number(str(recovered.get(`k${k}`))?.slice("value-".length));
    assert.ok(value >= 1990 - 30 && value % 10 === k, `k${k} = ${value}`);
  }
  assert.deepEqual(disk.names(), ["store.wal"]);
});

// The Store port's crash contract, as a property: after a crash the store holds every durable batch
// and a prefix of the others — the state after some prefix of the batches, at least as long as
// the last durable one — never a torn batch. Several crash/recover cycles per case.
test("SimStore: after crashes the state is the state after a prefix of batches including every durable one", () => {
  const key = fc.constantFrom("a", "b", "c", "d", "e/1", "e/2", "ü");
  const write = fc.record({
    key,
    value: fc.option(fc.uint8Array({ minLength: 0, maxLength: 40 }), { nil: undefined }),
  });
  const batch = fc.record({ writes: fc.array(write, { minLength: 0, maxLength: 5 }), durable: fc.boolean() });
  const cycle = fc.array(batch, { minLength: 0, maxLength: 12 });
  const crashFaults = fc.record({
    keepProbability: fc.constantFrom(0, 0.3, 0.7, 1),
    tornProbability: fc.constantFrom(0, 0.5, 1),
    corruptProbability: fc.constantFrom(0, 0.2),
  });
  fc.assert(
    fc.property(fc.array(cycle, { minLength: 1, maxLength: 4 }), crashFaults, fc.integer(), fc.boolean(), (cycles, faults, seed, smallLog) => {
      const rng = createRng(seed);
      const disk = new SimDisk();
      const options = smallLog ? { compactBytesMin: 64 } : {};
      let store = SimStore.recover(disk, options);
      let state = new Map<string, string>(); // the recovered state, as the model knows it
      for (const batches of cycles) {
        // The candidate states: after 0, 1, ... batches of this cycle.
        const states = [new Map(state)];
        let lastDurable = 0;
        for (const [i, { writes, durable }] of batches.entries()) {
          store.write(writes as StoreWrite[], { durable });
          const next = new Map(states[i]);
          for (const w of writes) {
            if (w.value === undefined) next.delete(w.key);
            else next.set(w.key, Buffer.from(w.value).toString("hex"));
          }
          states.push(next);
          if (durable) lastDurable = i + 1;
        }
        disk.crash(rng, faults);
        store = SimStore.recover(disk, options);
        const recovered = new Map(store.scan("").map(([k, v]) => [k, Buffer.from(v).toString("hex")]));
        const prefix = states.findIndex((s, i) => i >= lastDurable && mapsEqual(s, recovered));
        assert.ok(prefix >= 0, `recovered ${JSON.stringify([...recovered])} is no prefix state at or after batch ${lastDurable}`);
        state = recovered;
      }
    }),
    { numRuns: 400 },
  );
});

function mapsEqual(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
