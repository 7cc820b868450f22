/**
 * Error paths of the toolkit through a fake kernel (setSyscallBackend): errno → SyscallError with a
 * hint, the verifier log in VerifierError, the log buffer growing on ENOSPC, EINTR/EAGAIN retries,
 * and the element commands' attr layout. No privileges, no kernel.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import {
  BpfCommand,
  BpfError,
  clearProbeCache,
  probe,
  requireFeatures,
  UnsupportedFeatureError,
  BpfMap,
  bpf,
  bpfTry,
  codec,
  errnoName,
  Program,
  type ProgramSpec,
  type RawResult,
  setSyscallBackend,
  SyscallError,
  UpdateFlag,
  VerifierError,
} from "../../src/bpf/index.js";
import { exit, mov, R0, R2 } from "../../src/bpf/asm/index.js";
import { type BpfAnswer, type BpfCall, FakeKernel } from "../harness/fake-kernel.js";

const E = { EPERM: 1, ENOENT: 2, EINTR: 4, E2BIG: 7, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EEXIST: 17, EINVAL: 22, ENOSPC: 28 } as const;
const ok = (ret: number): RawResult => ({ ret, errno: 0 });
const fail = (errno: number): RawResult => ({ ret: -1, errno });

function useFake(t: TestContext, answer: BpfAnswer): FakeKernel {
  const k = new FakeKernel(answer);
  const previous = setSyscallBackend(k);
  t.after(() => setSyscallBackend(previous));
  return k;
}

/** Fill bpf_map_info (OBJ_GET_INFO_BY_FD) the way the kernel does. */
function writeMapInfo(k: FakeKernel, attr: Buffer, info: { type: number; id: number; keySize: number; valueSize: number; maxEntries: number; name: string }): void {
  const out = k.buffer(attr.readBigUInt64LE(8));
  out.writeUInt32LE(info.type, 0);
  out.writeUInt32LE(info.id, 4);
  out.writeUInt32LE(info.keySize, 8);
  out.writeUInt32LE(info.valueSize, 12);
  out.writeUInt32LE(info.maxEntries, 16);
  out.write(info.name, 24, "latin1");
}

const hashSpec = { name: "h", type: "HASH", keySize: 4, valueSize: 8, maxEntries: 16 } as const;

test("errno becomes a SyscallError naming the command, the errno and a hint", async (t) => {
  const cases = [
    { name: "EPERM", have: E.EPERM, hint: /run as root, or grant CAP_BPF/ },
    { name: "E2BIG", have: E.E2BIG, hint: /non-zero bytes the kernel does not know/ },
    { name: "EINVAL", have: E.EINVAL, hint: /does not accept these BPF_MAP_CREATE arguments/ },
    { name: "ENOMEM", have: E.ENOMEM, hint: /out of memory for BPF objects/ },
    { name: "EBADF", have: E.EBADF, hint: /file descriptor is closed/ },
  ];
  for (const c of cases) {
    await t.test(c.name, (t) => {
      const k = useFake(t, () => fail(c.have));
      assert.throws(() => BpfMap.create(hashSpec), (e: unknown) => {
        assert.ok(e instanceof SyscallError, String(e));
        assert.equal(e.code, "BPF_ERR_SYSCALL");
        assert.equal(e.command, "BPF_MAP_CREATE");
        assert.equal(e.errno, c.have);
        assert.equal(e.errnoName, c.name);
        assert.match(e.hint, c.hint);
        assert.ok(e.message.startsWith(`BPF_MAP_CREATE (map h, type HASH): ${c.name}: `), e.message);
        assert.match(e.message, c.hint);
        return true;
      });
      // EPERM is tried once more after raising RLIMIT_MEMLOCK (kernels before 5.11)
      assert.deepEqual(k.commands(), c.have === E.EPERM ? [BpfCommand.MAP_CREATE, BpfCommand.MAP_CREATE] : [BpfCommand.MAP_CREATE]);
      assert.equal(k.calls[0].size, 64);
    });
  }
  await t.test("errno names: known, Linux-internal ENOTSUPP, unknown", () => {
    assert.equal(errnoName(13), "EACCES");
    assert.equal(errnoName(524), "ENOTSUPP");
    assert.equal(errnoName(9999), "errno 9999");
    // Linux's names, not the os.constants aliases EWOULDBLOCK / ENOTSUP.
    assert.equal(errnoName(11), "EAGAIN");
    assert.equal(errnoName(95), "EOPNOTSUPP");
  });
});

test("EINTR and EAGAIN are retried, at most 5 times", async (t) => {
  const sequence = (errnos: number[], final: RawResult) => {
    let i = 0;
    return () => (i < errnos.length ? fail(errnos[i++]) : final);
  };
  const cases = [
    { name: "EINTR then success", have: [E.EINTR], calls: 2, want: 7 },
    { name: "EINTR, EAGAIN, EINTR then success", have: [E.EINTR, E.EAGAIN, E.EINTR], calls: 4, want: 7 },
    { name: "five EAGAIN then success", have: [E.EAGAIN, E.EAGAIN, E.EAGAIN, E.EAGAIN, E.EAGAIN], calls: 6, want: 7 },
  ];
  for (const c of cases) {
    await t.test(`bpf: ${c.name}`, (t) => {
      const k = useFake(t, sequence(c.have, ok(7)));
      assert.equal(bpf(BpfCommand.MAP_CREATE, Buffer.alloc(64)), c.want);
      assert.equal(k.calls.length, c.calls);
    });
    await t.test(`bpfTry: ${c.name}`, (t) => {
      const k = useFake(t, sequence(c.have, ok(7)));
      assert.deepEqual(bpfTry(BpfCommand.MAP_CREATE, Buffer.alloc(64)), ok(7));
      assert.equal(k.calls.length, c.calls);
    });
  }
  await t.test("six EAGAIN in a row: the sixth is thrown", (t) => {
    const k = useFake(t, () => fail(E.EAGAIN));
    assert.throws(() => bpf(BpfCommand.PROG_QUERY, Buffer.alloc(40)), (e: unknown) => e instanceof SyscallError && e.errnoName === "EAGAIN" && e.command === "BPF_PROG_QUERY");
    assert.equal(k.calls.length, 6);
  });
  await t.test("other errors are not retried", (t) => {
    const k = useFake(t, () => fail(E.EPERM));
    assert.throws(() => bpf(BpfCommand.PROG_QUERY, Buffer.alloc(40)), SyscallError);
    assert.equal(k.calls.length, 1);
  });
});

test("EPERM from an allocating command: RLIMIT_MEMLOCK is raised once and the command retried; the hint says which cause it was", async (t) => {
  await t.test("the limit was the cause (a kernel before 5.11): the retry succeeds", (t) => {
    let refuse = true;
    let raised = 0;
    const k = useFake(t, () => (refuse ? fail(E.EPERM) : ok(7)));
    k.raiseMemlock = () => ((raised++, (refuse = false)), ok(0));
    assert.equal(bpf(BpfCommand.MAP_CREATE, Buffer.alloc(64)), 7);
    assert.deepEqual([k.calls.length, raised], [2, 1]);
    // Once per process: a later EPERM is not a memlock question any more.
    refuse = true;
    assert.throws(() => bpf(BpfCommand.PROG_LOAD, Buffer.alloc(144)), /EPERM: run as root/);
    assert.deepEqual([k.calls.length, raised], [3, 1]);
  });
  await t.test("raised and still refused: privileges", (t) => {
    const k = useFake(t, () => fail(E.EPERM));
    assert.throws(() => bpf(BpfCommand.BTF_LOAD, Buffer.alloc(40)), (e: unknown) => {
      assert.ok(e instanceof SyscallError);
      assert.match(e.message, /run as root.*RLIMIT_MEMLOCK was raised and the kernel still refused: it is the privileges/);
      return true;
    });
    assert.equal(k.calls.length, 2);
  });
  await t.test("the limit could not be raised: the hint names it and the fix", (t) => {
    const k = useFake(t, () => fail(E.EPERM));
    k.raiseMemlock = () => fail(E.EPERM);
    assert.throws(() => bpf(BpfCommand.MAP_CREATE, Buffer.alloc(64)), /RLIMIT_MEMLOCK is too low and could not be raised \(setrlimit: EPERM\): run `ulimit -l unlimited`/);
    assert.equal(k.calls.length, 1);
  });
});

const badSpec: ProgramSpec = { name: "bad", type: "SOCK_OPS", instructions: [mov(R0, R2), exit()] };

/** A verifier that refuses every program; writes `log` like the kernel: truncated + ENOSPC when it does not fit. */
function refusingVerifier(log: string, opts: { trueSize?: boolean; errno?: number } = {}) {
  const needed = Buffer.byteLength(log) + 1;
  return (call: BpfCall, k: FakeKernel, live: Buffer): RawResult => {
    if (call.cmd !== BpfCommand.PROG_LOAD) return fail(E.EINVAL);
    const logAddr = call.attr.readBigUInt64LE(32);
    const logSize = call.attr.readUInt32LE(28);
    if (logAddr === 0n) return fail(opts.errno ?? E.EACCES);
    const buf = k.buffer(logAddr);
    assert.equal(buf.length, logSize, "log_size is the buffer's length");
    if (logSize < needed) {
      buf.write(log.slice(0, logSize - 1), 0, "utf8");
      buf[logSize - 1] = 0;
      if (opts.trueSize) live.writeUInt32LE(needed, 140); // log_true_size, Linux 6.4+
      return fail(E.ENOSPC);
    }
    buf.write(log, 0, "utf8");
    buf[needed - 1] = 0;
    if (opts.trueSize) live.writeUInt32LE(needed, 140);
    return fail(opts.errno ?? E.EACCES);
  };
}

const logSizes = (k: FakeKernel) => k.calls.filter((c) => c.cmd === BpfCommand.PROG_LOAD).map((c) => c.attr.readUInt32LE(28));
const logLevels = (k: FakeKernel) => k.calls.filter((c) => c.cmd === BpfCommand.PROG_LOAD).map((c) => c.attr.readUInt32LE(24));

test("PROG_LOAD refused: VerifierError carries the log the kernel wrote", (t) => {
  const log = "0: (bf) r0 = r2\nR2 !read_ok\nprocessed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";
  const k = useFake(t, refusingVerifier(log));
  assert.throws(() => Program.load(badSpec), (e: unknown) => {
    assert.ok(e instanceof VerifierError, String(e));
    assert.equal(e.code, "BPF_ERR_VERIFIER");
    assert.equal(e.errnoName, "EACCES");
    assert.equal(e.log, log);
    assert.match(e.message, /^load program bad: EACCES: the verifier refused the program/);
    assert.match(e.message, /R2 !read_ok/);
    return true;
  });
  // First without a log (cheap), then again with a branch-level log.
  assert.deepEqual(logSizes(k), [0, 64 * 1024]);
  assert.deepEqual(logLevels(k), [0, 1]);
  const insns = k.calls[1].attr;
  assert.equal(insns.readUInt32LE(0), 13);
  assert.equal(insns.readUInt32LE(4), 2);
  assert.equal(k.calls[1].size, 144);
});

test("PROG_LOAD log buffer grows on ENOSPC until the whole log fits", async (t) => {
  const line = (i: number) => `${i}: (07) r1 += 1  ; R1_w=scalar(smin=${i}) R10=fp0 frame states and a long tail of verifier text\n`;
  const log = Array.from({ length: 1200 }, (_, i) => line(i)).join("") + "back-edge from insn 1199 to 0\n";
  const needed = Buffer.byteLength(log) + 1;
  assert.ok(needed > 65536 && needed < 262144, `log of ${needed} bytes`);
  const cases = [
    { name: "before Linux 6.4: no log_true_size, grow by 4x", trueSize: false, stats: false, sizes: [0, 1024, 4096, 16384, 65536, 262144], levels: [0, 1, 1, 1, 1, 1] },
    { name: "Linux 6.4+: jump to log_true_size", trueSize: true, stats: false, sizes: [0, 1024, needed], levels: [0, 1, 1] },
    { name: "with stats requested", trueSize: true, stats: true, sizes: [4096, 1024, needed], levels: [4, 5, 5] },
  ];
  for (const c of cases) {
    await t.test(c.name, (t) => {
      const k = useFake(t, refusingVerifier(log, { trueSize: c.trueSize }));
      assert.throws(() => Program.load(badSpec, { logSize: 1024, stats: c.stats }), (e: unknown) => {
        assert.ok(e instanceof VerifierError, String(e));
        assert.equal(e.errnoName, "EACCES");
        assert.equal(e.log, log);
        assert.match(e.message, /back-edge from insn 1199 to 0/);
        return true;
      });
      assert.deepEqual(logSizes(k), c.sizes);
      assert.deepEqual(logLevels(k), c.levels);
    });
  }
});

test("PROG_LOAD refused before verification: EINVAL with an empty log says so", (t) => {
  useFake(t, refusingVerifier("", { errno: E.EINVAL }));
  assert.throws(() => Program.load({ ...badSpec, type: "CGROUP_SOCK_ADDR" }), (e: unknown) => {
    assert.ok(e instanceof VerifierError);
    assert.equal(e.errnoName, "EINVAL");
    assert.equal(e.log, "");
    assert.match(e.message, /gave no verifier log: the attach type or program type was refused/);
    return true;
  });
});

test("PROG_LOAD EPERM without a log is a SyscallError with the permission hint", (t) => {
  const k = useFake(t, () => fail(E.EPERM));
  assert.throws(() => Program.load(badSpec), (e: unknown) => {
    assert.ok(e instanceof SyscallError && !(e instanceof VerifierError), String(e));
    assert.equal(e.command, "BPF_PROG_LOAD");
    assert.equal(e.errnoName, "EPERM");
    assert.match(e.message, /program bad.*run as root/);
    return true;
  });
  // refused, refused again once RLIMIT_MEMLOCK was raised, then asked for a log
  assert.equal(k.calls.length, 3);
});

test("PROG_LOAD with stats: success keeps the processed-instruction count", (t) => {
  const k = useFake(t, (call, k) => {
    if (call.cmd === BpfCommand.PROG_LOAD) {
      k.buffer(call.attr.readBigUInt64LE(32)).write("processed 2 insns (limit 1000000) max_states_per_insn 0\n\0");
      return ok(100042);
    }
    if (call.cmd === BpfCommand.OBJ_GET_INFO_BY_FD) {
      const info = k.buffer(call.attr.readBigUInt64LE(8));
      info.writeUInt32LE(13, 0);
      info.writeUInt32LE(77, 4);
      info.write("good", 64, "latin1");
      return ok(0);
    }
    return fail(E.EINVAL);
  });
  const p = Program.load({ name: "good", type: "SOCK_OPS", instructions: [mov(R0, 1), exit()] }, { stats: true });
  assert.equal(p.verifierStats?.processedInstructions, 2);
  assert.equal(p.info.id, 77);
  assert.equal(p.info.name, "good");
  assert.equal(p.fd, 100042);
  assert.deepEqual(k.commands(), [BpfCommand.PROG_LOAD, BpfCommand.OBJ_GET_INFO_BY_FD]);
  assert.equal(k.calls[1].attr.readUInt32LE(0), 100042, "info asked for the new fd");
  // Not closed: 100042 is not a real fd.
});

test("map element commands: key at 8, value at 16, flags at 24; ENOENT is a miss, EEXIST an error", (t) => {
  const store = new Map<string, Buffer>();
  const k = useFake(t, (call, k) => {
    const a = call.attr;
    switch (call.cmd) {
      case BpfCommand.MAP_CREATE:
        return ok(100500);
      case BpfCommand.OBJ_GET_INFO_BY_FD:
        writeMapInfo(k, a, { type: 1, id: 5, keySize: 4, valueSize: 8, maxEntries: 16, name: "h" });
        return ok(0);
    }
    assert.equal(a.readUInt32LE(0), 100500, "map_fd");
    const key = k.buffer(a.readBigUInt64LE(8)).toString("hex");
    switch (call.cmd) {
      case BpfCommand.MAP_UPDATE_ELEM: {
        const flags = a.readBigUInt64LE(24);
        if (flags === 1n && store.has(key)) return fail(E.EEXIST);
        if (flags === 2n && !store.has(key)) return fail(E.ENOENT);
        store.set(key, Buffer.from(k.buffer(a.readBigUInt64LE(16))));
        return ok(0);
      }
      case BpfCommand.MAP_LOOKUP_ELEM: {
        const v = store.get(key);
        if (!v) return fail(E.ENOENT);
        v.copy(k.buffer(a.readBigUInt64LE(16)));
        return ok(0);
      }
      case BpfCommand.MAP_DELETE_ELEM:
        return store.delete(key) ? ok(0) : fail(E.ENOENT);
    }
    return fail(E.EINVAL);
  });
  const m = BpfMap.create(hashSpec, { key: codec.u32, value: codec.u64 });
  assert.equal(m.lookup(1), undefined);
  m.update(1, 42n);
  assert.equal(m.lookup(1), 42n);
  assert.equal(store.get("01000000")?.toString("hex"), "2a00000000000000");
  assert.throws(() => m.update(1, 43n, UpdateFlag.NOEXIST), (e: unknown) => e instanceof SyscallError && e.errnoName === "EEXIST" && /BPF_MAP_UPDATE_ELEM \(map h\): EEXIST/.test(e.message));
  assert.throws(() => m.update(2, 43n, UpdateFlag.EXIST), (e: unknown) => e instanceof SyscallError && e.errnoName === "ENOENT");
  m.update(1, 44n, UpdateFlag.EXIST);
  assert.equal(m.lookup(1), 44n);
  assert.equal(m.delete(1), true);
  assert.equal(m.delete(1), false);
  // The kernel's CHECK_ATTR: every byte after the command's last field must be zero.
  // Lookup and update end at flags (32 bytes); delete ends at key (16 bytes).
  const lastField = new Map<number, number>([
    [BpfCommand.MAP_LOOKUP_ELEM, 32],
    [BpfCommand.MAP_UPDATE_ELEM, 32],
    [BpfCommand.MAP_DELETE_ELEM, 16],
  ]);
  for (const c of k.calls) {
    const end = lastField.get(c.cmd);
    if (end === undefined) continue;
    const tail = c.attr.subarray(end, c.size);
    assert.ok(tail.every((b) => b === 0), `command ${c.cmd}: bytes ${end}..${c.size} must be zero, got ${tail.toString("hex")}`);
  }
  // Not closed: 100500 is not a real fd.
});

test("a probe refused with EPERM is 'denied', not missing: requireFeatures says so instead of blaming the kernel", (t) => {
  const k = useFake(t, () => fail(E.EPERM));
  k.raiseMemlock = () => fail(E.EPERM);
  clearProbeCache();
  t.after(() => clearProbeCache());
  const r = probe("bpf-syscall");
  assert.equal(r.available, false);
  assert.equal(r.denied, true);
  assert.throws(() => requireFeatures(["bpf-syscall"]), (e: unknown) => {
    assert.ok(e instanceof BpfError && !(e instanceof UnsupportedFeatureError), String(e));
    assert.equal(e.code, "BPF_ERR_PERMISSION");
    assert.match(e.message, /could not be tried: .*EPERM: run as root.*RLIMIT_MEMLOCK is too low/);
    assert.doesNotMatch(e.message, /not supported/);
    return true;
  });
});

test("a probe refused with EINVAL is missing: UnsupportedFeatureError names the feature and the kernel", (t) => {
  useFake(t, () => fail(E.EINVAL));
  clearProbeCache();
  t.after(() => clearProbeCache());
  assert.throws(() => requireFeatures(["sk-storage"]), (e: unknown) => e instanceof UnsupportedFeatureError && /socket-local storage.*5\.2/.test(e.message));
});
