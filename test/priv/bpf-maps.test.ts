/** Map types against the real kernel: lookups, updates, flags, iteration, per-CPU values, LPM, fd hygiene. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { requireRoot } from "../harness/privileged.js";
import { BpfMap, btf, codec, type Codec, MapType, possibleCpus, SyscallError, UpdateFlag } from "../../src/bpf/index.js";

const u32u64 = { key: codec.u32, value: codec.u64 };

test("HASH, LRU_HASH and ARRAY: update, lookup, delete, iterate", async (t) => {
  if (!requireRoot(t)) return;
  for (const type of ["HASH", "LRU_HASH"] as const) {
    await t.test(type, (t) => {
      const m = BpfMap.create({ name: `test_${type.toLowerCase()}`, type, keySize: 4, valueSize: 8, maxEntries: 64 }, u32u64);
      t.after(() => m.close());
      assert.equal(m.info.type, MapType[type]);
      assert.equal(m.info.maxEntries, 64);
      assert.equal(m.lookup(1), undefined);
      for (let k = 1; k <= 10; k++) m.update(k, BigInt(k) * 1000n);
      assert.equal(m.lookup(3), 3000n);
      assert.deepEqual([...m.keys()].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.deepEqual(new Map(m.entries()), new Map(Array.from({ length: 10 }, (_, i) => [i + 1, BigInt(i + 1) * 1000n])));
      assert.equal(m.delete(3), true);
      assert.equal(m.delete(3), false);
      assert.equal(m.lookup(3), undefined);
      assert.equal([...m.keys()].length, 9);
    });
  }
  await t.test("ARRAY: every index exists, zeroed; delete is refused", (t) => {
    const m = BpfMap.create({ name: "test_array", type: "ARRAY", keySize: 4, valueSize: 8, maxEntries: 4 }, u32u64);
    t.after(() => m.close());
    assert.deepEqual([...m.entries()], [
      [0, 0n],
      [1, 0n],
      [2, 0n],
      [3, 0n],
    ]);
    m.update(2, 77n);
    assert.equal(m.lookup(2), 77n);
    assert.equal(m.lookup(4), undefined, "out of range is a miss");
    assert.throws(() => m.delete(2), (e: unknown) => e instanceof SyscallError && e.errnoName === "EINVAL");
    assert.throws(() => m.update(9, 1n), (e: unknown) => e instanceof SyscallError && e.errnoName === "E2BIG");
  });
  await t.test("LRU_HASH evicts instead of failing when full", (t) => {
    const m = BpfMap.create({ name: "test_lru_full", type: "LRU_HASH", keySize: 4, valueSize: 8, maxEntries: 16 }, u32u64);
    t.after(() => m.close());
    for (let k = 0; k < 200; k++) m.update(k, BigInt(k));
    const n = [...m.keys()].length;
    assert.ok(n > 0 && n <= 16, `${n} entries`);
    assert.equal(m.lookup(199), 199n, "the newest entry is there");
  });
  await t.test("HASH full: a new key is E2BIG", (t) => {
    const m = BpfMap.create({ name: "test_hash_full", type: "HASH", keySize: 4, valueSize: 8, maxEntries: 2 }, u32u64);
    t.after(() => m.close());
    m.update(1, 1n);
    m.update(2, 2n);
    assert.throws(() => m.update(3, 3n), (e: unknown) => e instanceof SyscallError && e.errnoName === "E2BIG");
  });
});

test("update flags: NOEXIST on a present key is EEXIST, EXIST on a missing key is ENOENT", (t) => {
  if (!requireRoot(t)) return;
  const m = BpfMap.create({ name: "test_flags", type: "HASH", keySize: 4, valueSize: 8, maxEntries: 8 }, u32u64);
  t.after(() => m.close());
  m.update(1, 10n, UpdateFlag.NOEXIST);
  assert.throws(() => m.update(1, 11n, UpdateFlag.NOEXIST), (e: unknown) => {
    assert.ok(e instanceof SyscallError);
    assert.equal(e.errnoName, "EEXIST");
    assert.equal(e.command, "BPF_MAP_UPDATE_ELEM");
    assert.match(e.message, /map test_flags/);
    return true;
  });
  assert.throws(() => m.update(2, 20n, UpdateFlag.EXIST), (e: unknown) => e instanceof SyscallError && e.errnoName === "ENOENT");
  m.update(1, 12n, UpdateFlag.EXIST);
  assert.equal(m.lookup(1), 12n);
});

test("PERCPU_ARRAY: one slot per possible CPU; lookupPerCpu and the sum", (t) => {
  if (!requireRoot(t)) return;
  const m = BpfMap.create({ name: "test_percpu", type: "PERCPU_ARRAY", keySize: 4, valueSize: 8, maxEntries: 4 }, u32u64);
  t.after(() => m.close());
  const cpus = possibleCpus();
  assert.ok(m.isPerCpu);
  assert.equal(m.valueBufferSize, 8 * cpus);
  assert.deepEqual(m.lookupPerCpu(1), Array(cpus).fill(0n));
  m.update(1, 5n); // the same value on every CPU
  const values = m.lookupPerCpu(1)!;
  assert.equal(values.length, cpus);
  assert.equal(values.reduce((a, b) => a + b, 0n), 5n * BigInt(cpus));
  assert.equal(m.lookup(1), 5n, "lookup decodes CPU 0's slot");
});

test("PERCPU_ARRAY with a 4-byte value: slots are 8-byte aligned", (t) => {
  if (!requireRoot(t)) return;
  const m = BpfMap.create({ name: "test_percpu4", type: "PERCPU_ARRAY", keySize: 4, valueSize: 4, maxEntries: 1 }, { key: codec.u32, value: codec.u32 });
  t.after(() => m.close());
  m.update(0, 0xabcdef01);
  assert.deepEqual(m.lookupPerCpu(0), Array(possibleCpus()).fill(0xabcdef01));
});

/** LPM key: u32 prefix length (host order) + IPv4 address bytes. */
interface Prefix {
  len: number;
  addr: string;
}
const lpmKey: Codec<Prefix> = {
  size: 8,
  encode: ({ len, addr }) => {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(len, 0);
    addr.split(".").forEach((x, i) => (b[4 + i] = Number(x)));
    return b;
  },
  decode: (b) => ({ len: b.readUInt32LE(0), addr: [...b.subarray(4, 8)].join(".") }),
};

test("LPM_TRIE: longest prefix match", (t) => {
  if (!requireRoot(t)) return;
  const m = BpfMap.create({ name: "test_lpm", type: "LPM_TRIE", keySize: 8, valueSize: 4, maxEntries: 16 }, { key: lpmKey, value: codec.u32 });
  t.after(() => m.close());
  assert.equal(m.info.flags & 1, 1, "NO_PREALLOC was added");
  m.update({ len: 24, addr: "192.0.2.0" }, 24);
  m.update({ len: 25, addr: "192.0.2.128" }, 25);
  m.update({ len: 32, addr: "192.0.2.200" }, 32);
  m.update({ len: 0, addr: "0.0.0.0" }, 0);
  const cases = [
    { have: "192.0.2.200", want: 32 },
    { have: "192.0.2.201", want: 25 },
    { have: "192.0.2.5", want: 24 },
    { have: "198.51.100.1", want: 0 },
  ];
  for (const c of cases) assert.equal(m.lookup({ len: 32, addr: c.have }), c.want, c.have);
  assert.equal(m.delete({ len: 0, addr: "0.0.0.0" }), true);
  assert.equal(m.lookup({ len: 32, addr: "198.51.100.1" }), undefined);
  const keys = [...m.keys()].map((k) => `${k.addr}/${k.len}`).sort();
  assert.deepEqual(keys, ["192.0.2.0/24", "192.0.2.128/25", "192.0.2.200/32"]);
});

test("creating and closing 100 maps leaks no fd (BTF fds included)", (t) => {
  if (!requireRoot(t)) return;
  const fds = () => readdirSync("/proc/self/fd").length;
  // Warm up lazily created fds (koffi, the cpu count) before counting.
  BpfMap.create({ name: "test_warm", type: "PERCPU_ARRAY", keySize: 4, valueSize: 8, maxEntries: 1 }).close();
  const before = fds();
  for (let i = 0; i < 100; i++) {
    BpfMap.create({ name: "test_leak", type: "HASH", keySize: 4, valueSize: 8, maxEntries: 4 }).close();
    BpfMap.create({ name: "test_leak_sk", type: "SK_STORAGE", keySize: 4, valueSize: 8, maxEntries: 0, key: btf.s32, value: btf.u64 }).close();
  }
  assert.equal(fds(), before);
  // A failed create leaks nothing either (BTF loaded, map refused).
  assert.throws(() => BpfMap.create({ name: "test_bad", type: "SK_STORAGE", keySize: 4, valueSize: 8, maxEntries: 0, key: btf.s32, value: btf.u64, flags: 1 << 30 }));
  assert.equal(fds(), before);
});

test("a closed map refuses use with BPF_ERR_CLOSED", (t) => {
  if (!requireRoot(t)) return;
  const m = BpfMap.create({ name: "test_closed", type: "HASH", keySize: 4, valueSize: 8, maxEntries: 4 }, u32u64);
  m.close();
  assert.throws(() => m.lookup(1), (e: unknown) => (e as { code?: string }).code === "BPF_ERR_CLOSED");
  m.close(); // idempotent
});

test("entries() reads hash maps in batches: every entry exactly once, across chunk boundaries; LPM falls back to key walks", (t) => {
  if (!requireRoot(t)) return;
  for (const type of ["HASH", "LRU_HASH", "ARRAY"] as const) {
    const n = 5000;
    const m = BpfMap.create({ name: "batch", type, keySize: 4, valueSize: 8, maxEntries: type === "LRU_HASH" ? n * 2 : n }, { key: codec.u32, value: codec.u64 });
    t.after(() => m.close());
    for (let i = 0; i < n; i++) m.update(i, BigInt(i) * 3n);
    for (const chunk of [7, 1000, 4096]) {
      const seen = new Map<number, bigint>();
      for (const [k, v] of m.entries(chunk)) {
        assert.ok(!seen.has(k), `${type}: key ${k} twice`);
        seen.set(k, v);
      }
      assert.equal(seen.size, n, `${type}, chunk ${chunk}`);
      for (const [k, v] of seen) assert.equal(v, BigInt(k) * 3n);
    }
  }
  const empty = BpfMap.create({ name: "empty", type: "HASH", keySize: 4, valueSize: 4, maxEntries: 4 });
  t.after(() => empty.close());
  assert.deepEqual([...empty.entries()], []);
  const lpm = BpfMap.create({ name: "lpm", type: "LPM_TRIE", keySize: 8, valueSize: 4, maxEntries: 8, flags: 1 });
  t.after(() => lpm.close());
  lpm.update(Buffer.from([24, 0, 0, 0, 192, 0, 2, 0]), Buffer.from([1, 0, 0, 0]));
  assert.equal([...lpm.entries()].length, 1);
});
