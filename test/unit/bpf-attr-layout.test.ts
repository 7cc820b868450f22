/** bpf_attr layouts for MAP_CREATE and PROG_LOAD (include/uapi/linux/bpf.h), and map spec checks. */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import {
  BpfError,
  mapCreateAttr,
  type MapSpec,
  progLoadAttr,
  type ProgramSpec,
  setSyscallBackend,
  type SyscallBackend,
  validateMapSpec,
  btf,
} from "../../src/bpf/index.js";
import { exit, mov, R0 } from "../../src/bpf/asm/index.js";

// progLoadAttr writes buffer addresses: a fake backend hands out recognisable ones.
const addresses = new Map<Buffer, bigint>();
const fake: SyscallBackend = {
  bpf: () => ({ ret: -1, errno: 38 }),
  address(buf) {
    let a = addresses.get(buf);
    if (a === undefined) {
      a = 0x1000n * BigInt(addresses.size + 1);
      addresses.set(buf, a);
    }
    return a;
  },
  mount: () => ({ ret: -1, errno: 1 }),
  raiseMemlock: () => ({ ret: 0, errno: 0 }),
};
const previous = setSyscallBackend(fake);
after(() => setSyscallBackend(previous));

test("mapCreateAttr puts each field at its UAPI offset", async (t) => {
  const base = { name: "conn_store", keySize: 4, valueSize: 16, maxEntries: 0, key: btf.s32 } as const;
  const cases: { name: string; spec: MapSpec; btfIds?: { fd: number; keyId: number; valueId: number }; want: Record<number, number> }[] = [
    {
      name: "SK_STORAGE with BTF gets NO_PREALLOC",
      spec: { ...base, type: "SK_STORAGE" },
      btfIds: { fd: 9, keyId: 1, valueId: 3 },
      want: { 0: 24, 4: 4, 8: 16, 12: 0, 16: 1, 48: 9, 52: 1, 56: 3 },
    },
    {
      name: "LPM_TRIE gets NO_PREALLOC on top of the given flags",
      spec: { name: "prefixes", type: "LPM_TRIE", keySize: 8, valueSize: 4, maxEntries: 128, flags: 8 },
      want: { 0: 11, 4: 8, 8: 4, 12: 128, 16: 9, 48: 0, 52: 0, 56: 0 },
    },
    {
      name: "HASH keeps flags 0 (preallocated)",
      spec: { name: "h", type: "HASH", keySize: 8, valueSize: 8, maxEntries: 1024 },
      want: { 0: 1, 4: 8, 8: 8, 12: 1024, 16: 0, 48: 0, 52: 0, 56: 0 },
    },
    {
      name: "PERCPU_ARRAY",
      spec: { name: "counters", type: "PERCPU_ARRAY", keySize: 4, valueSize: 8, maxEntries: 16 },
      want: { 0: 6, 4: 4, 8: 8, 12: 16, 16: 0 },
    },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const attr = mapCreateAttr(c.spec, c.btfIds);
      assert.equal(attr.length, 64);
      for (const [off, want] of Object.entries(c.want)) assert.equal(attr.readUInt32LE(Number(off)), want, `u32 at offset ${off}`);
      // map_name[16] at 28, NUL-terminated.
      assert.equal(attr.toString("latin1", 28, 28 + c.spec.name.length), c.spec.name);
      assert.equal(attr[28 + c.spec.name.length], 0);
      // Nothing else set: inner_map_fd 20, numa_node 24, map_ifindex 44, btf_vmlinux_value_type_id 60.
      for (const off of [20, 24, 44, 60]) assert.equal(attr.readUInt32LE(off), 0, `offset ${off} must stay 0`);
    });
  }
  await t.test("a 15-character name fills map_name and keeps the NUL", () => {
    const attr = mapCreateAttr({ name: "abcdefghijklmno", type: "ARRAY", keySize: 4, valueSize: 4, maxEntries: 1 });
    assert.equal(attr.toString("latin1", 28, 43), "abcdefghijklmno");
    assert.equal(attr[43], 0);
  });
});

test("progLoadAttr puts each field at its UAPI offset", async (t) => {
  const insns = Buffer.alloc(3 * 8);
  const license = Buffer.from("GPL\0");
  const log = Buffer.alloc(4096);
  const spec: ProgramSpec = { name: "toa_getpeer4", type: "CGROUP_SOCK_ADDR", expectedAttachType: "CGROUP_INET4_GETPEERNAME", instructions: [mov(R0, 1), exit()] };
  await t.test("with a log buffer and an expected attach type", () => {
    const attr = progLoadAttr(spec, insns, license, log, 1);
    assert.equal(attr.length, 144);
    assert.equal(attr.readUInt32LE(0), 18, "prog_type");
    assert.equal(attr.readUInt32LE(4), 3, "insn_cnt counts 8-byte slots");
    assert.equal(attr.readBigUInt64LE(8), fake.address(insns), "insns");
    assert.equal(attr.readBigUInt64LE(16), fake.address(license), "license");
    assert.equal(attr.readUInt32LE(24), 1, "log_level");
    assert.equal(attr.readUInt32LE(28), 4096, "log_size");
    assert.equal(attr.readBigUInt64LE(32), fake.address(log), "log_buf");
    assert.equal(attr.toString("latin1", 48, 60), "toa_getpeer4", "prog_name");
    assert.equal(attr[60], 0);
    assert.equal(attr.readUInt32LE(68), 29, "expected_attach_type");
    assert.equal(attr.readUInt32LE(140), 0, "log_true_size is output only");
  });
  await t.test("without a log: level, size and buffer stay 0", () => {
    const attr = progLoadAttr({ ...spec, type: "SOCK_OPS", expectedAttachType: undefined }, insns, license);
    assert.equal(attr.readUInt32LE(0), 13);
    assert.equal(attr.readUInt32LE(24), 0);
    assert.equal(attr.readUInt32LE(28), 0);
    assert.equal(attr.readBigUInt64LE(32), 0n);
    assert.equal(attr.readUInt32LE(68), 0);
  });
  await t.test("getpeername6 attach type is 30", () => {
    const attr = progLoadAttr({ ...spec, expectedAttachType: "CGROUP_INET6_GETPEERNAME" }, insns, license);
    assert.equal(attr.readUInt32LE(68), 30);
  });
});

test("validateMapSpec names the bad field", async (t) => {
  const ok: MapSpec = { name: "ok", type: "HASH", keySize: 4, valueSize: 8, maxEntries: 16 };
  const cases: { name: string; have: MapSpec; want: RegExp }[] = [
    { name: "empty name", have: { ...ok, name: "" }, want: /map : name must be 1-15 characters/ },
    { name: "16-character name", have: { ...ok, name: "abcdefghijklmnop" }, want: /name must be 1-15 characters of \[A-Za-z0-9_\.\]/ },
    { name: "dash in the name", have: { ...ok, name: "toa-map" }, want: /map toa-map: name/ },
    { name: "unknown type", have: { ...ok, type: "RINGBUF" as MapSpec["type"] }, want: /map ok: type must be one of HASH, ARRAY/ },
    { name: "zero key size", have: { ...ok, keySize: 0 }, want: /map ok: keySize must be a positive integer/ },
    { name: "fractional value size", have: { ...ok, valueSize: 1.5 }, want: /map ok: valueSize must be a positive integer/ },
    { name: "zero max entries", have: { ...ok, maxEntries: 0 }, want: /map ok: maxEntries must be a positive integer/ },
    { name: "SK_STORAGE max entries", have: { ...ok, type: "SK_STORAGE", keySize: 4, maxEntries: 1, key: btf.s32, value: btf.u64 }, want: /maxEntries must be 0 for SK_STORAGE/ },
    { name: "SK_STORAGE key size", have: { ...ok, type: "SK_STORAGE", keySize: 8, maxEntries: 0, key: btf.u64, value: btf.u64 }, want: /keySize must be 4 for SK_STORAGE/ },
    { name: "SK_STORAGE without BTF", have: { ...ok, type: "SK_STORAGE", keySize: 4, maxEntries: 0 }, want: /key\/value BTF types are required for SK_STORAGE/ },
    { name: "key BTF size mismatch", have: { ...ok, key: btf.u64 }, want: /map ok: key BTF size 8 differs from keySize 4/ },
    { name: "value BTF size mismatch", have: { ...ok, key: btf.u32, value: btf.u32 }, want: /map ok: value BTF size 4 differs from valueSize 8/ },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      assert.throws(() => validateMapSpec(c.have), (e: unknown) => {
        assert.ok(e instanceof BpfError);
        assert.equal(e.code, "BPF_ERR_INVALID_ARG");
        assert.match(e.message, c.want);
        return true;
      });
    });
  }
  await t.test("valid specs pass", () => {
    validateMapSpec(ok);
    validateMapSpec({ name: "sk", type: "SK_STORAGE", keySize: 4, valueSize: 8, maxEntries: 0, key: btf.s32, value: btf.u64 });
  });
});
