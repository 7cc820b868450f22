/**
 * tc attachment without a kernel: the tcx BPF_LINK_CREATE attr, the rtnetlink requests byte by byte
 * (clsact qdisc, bpf filter, delete, dump, link lookup), ACK/error parsing with the extended ACK
 * text, and the attach/detach sequences against a fake kernel that speaks netlink.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { openSync } from "node:fs";
import {
  attachTc,
  BpfCommand,
  BpfError,
  ifindexOf,
  netlink,
  Program,
  resetTcxDetection,
  setSyscallBackend,
  SyscallError,
  tcNetlink,
  tcxLinkCreateAttr,
  TcxFlag,
  UnsupportedFeatureError,
} from "../../src/bpf/index.js";
import { FakeKernel } from "../harness/fake-kernel.js";

const { encodeMessage, encodeAttrs, nla, parseAck, parseMessages, NlmFlag, NlmsgType } = netlink;
const { addBpfFilterRequest, replaceBpfFilterRequest, addClsactRequest, deleteClsactRequest, deleteFilterRequest, dumpFiltersRequest, getLinkRequest, parseFilter, Rtm, tcmsg, TcHandle } = tcNetlink;

/** Hex with spaces and comments allowed, for byte layouts written field by field. */
const hex = (s: string) => Buffer.from(s.replace(/#[^\n]*/g, "").replace(/\s+/g, ""), "hex");

test("tcxLinkCreateAttr puts each field at its UAPI offset (bpf.h link_create.tcx)", async (t) => {
  const cases = [
    { name: "ingress, append", have: tcxLinkCreateAttr(7, 3, "ingress"), want: { 0: 7, 4: 3, 8: 46, 12: 0, 16: 0 }, revision: 0n },
    { name: "egress", have: tcxLinkCreateAttr(8, 12, "egress"), want: { 0: 8, 4: 12, 8: 47, 12: 0, 16: 0 }, revision: 0n },
    {
      name: "before program id 55 at revision 9",
      have: tcxLinkCreateAttr(7, 3, "ingress", TcxFlag.BEFORE | TcxFlag.ID, 55, 9n),
      want: { 0: 7, 4: 3, 8: 46, 12: (1 << 3) | (1 << 5), 16: 55 },
      revision: 9n,
    },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      assert.equal(c.have.length, 32); // offsetofend(expected_revision)
      for (const [off, v] of Object.entries(c.want)) assert.equal(c.have.readUInt32LE(Number(off)), v, `u32 at ${off}`);
      assert.equal(c.have.readUInt32LE(20), 0, "hole before expected_revision");
      assert.equal(c.have.readBigUInt64LE(24), c.revision);
    });
  }
});

test("rtnetlink requests are laid out as the kernel's structs and attributes", async (t) => {
  const cases: { name: string; have: Buffer; want: Buffer }[] = [
    {
      name: "tc qdisc add dev (3) clsact",
      have: encodeMessage(addClsactRequest(3), 7),
      want: hex(`
        30000000 2400 0106 07000000 00000000  # nlmsghdr: len 48, RTM_NEWQDISC, REQUEST|EXCL|CREATE, seq 7, pid 0
        00 00 0000 03000000                   # tcmsg: family, pads, ifindex 3
        0000ffff f1ffffff 00000000            # handle ffff:0, parent TC_H_CLSACT, info 0
        0b00 0100 636c736163740000            # TCA_KIND "clsact\\0", padded to 12
      `),
    },
    {
      name: "tc filter add dev (3) ingress prio 1 protocol all bpf da fd 9 name toa:t",
      have: encodeMessage(addBpfFilterRequest({ ifindex: 3, direction: "ingress", priority: 1, programFd: 9, name: "toa:t" }), 1),
      want: hex(`
        4c000000 2c00 0906 01000000 00000000  # len 76, RTM_NEWTFILTER, REQUEST|ECHO|EXCL|CREATE
        00 00 0000 03000000 00000000          # ifindex 3, handle 0 (the kernel picks)
        f2ffffff                              # parent ffff:fff2 (clsact ingress)
        00030100                              # info: prio 1 << 16 | htons(ETH_P_ALL)
        0800 0100 62706600                    # TCA_KIND "bpf"
        2000 0280                             # TCA_OPTIONS | NLA_F_NESTED, 32 bytes
          0800 0600 09000000                  #   TCA_BPF_FD 9
          0a00 0700 746f613a74000000          #   TCA_BPF_NAME "toa:t\\0" + pad
          0800 0800 01000000                  #   TCA_BPF_FLAGS ACT_DIRECT
      `),
    },
    {
      name: "egress filter with the kernel's priority choice",
      have: encodeMessage(addBpfFilterRequest({ ifindex: 300, direction: "egress", priority: 0, programFd: 1, name: "x" }), 2).subarray(16, 36),
      want: hex("00 00 0000 2c010000 00000000 f3ffffff 00030000"),
    },
    {
      name: "tc filter replace: the filter's own handle and priority, CREATE|REPLACE (no EXCL)",
      have: encodeMessage(replaceBpfFilterRequest({ ifindex: 3, direction: "ingress", priority: 0, programFd: 9, name: "toa:t" }, { ifindex: 3, parent: TcHandle.INGRESS, priority: 49152, handle: 1 }), 1).subarray(0, 36),
      want: hex(`
        4c000000 2c00 0905 01000000 00000000  # len 76, RTM_NEWTFILTER, REQUEST|ECHO|REPLACE|CREATE
        00 00 0000 03000000 01000000          # ifindex 3, handle 1
        f2ffffff 0003 00c0                    # parent ingress, info 49152 << 16 | htons(ETH_P_ALL)
      `),
    },
    {
      name: "tc filter del: exactly one filter (handle, prio, parent)",
      have: encodeMessage(deleteFilterRequest({ ifindex: 3, parent: TcHandle.EGRESS, priority: 49152, handle: 2 }), 9),
      want: hex(`
        2c000000 2d00 0100 09000000 00000000  # len 44, RTM_DELTFILTER, REQUEST
        00 00 0000 03000000 02000000          # ifindex 3, handle 2
        f3ffffff 0003 00c0                    # parent egress, info 49152 << 16 | htons(3)
        0800 0100 62706600                    # TCA_KIND "bpf"
      `),
    },
    {
      name: "tc qdisc del dev (5) clsact",
      have: encodeMessage(deleteClsactRequest(5), 4),
      want: hex("30000000 2500 0100 04000000 00000000 00000000 05000000 0000ffff f1ffffff 00000000 0b00 0100 636c736163740000"),
    },
    {
      name: "filter dump of one parent (NLM_F_DUMP is added by the socket)",
      have: encodeMessage(dumpFiltersRequest(5, TcHandle.INGRESS), 1),
      want: hex("24000000 2e00 0100 01000000 00000000 00000000 05000000 00000000 f2ffffff 00000000"),
    },
    {
      name: "link lookup by name: ifinfomsg with index 0, IFLA_IFNAME",
      have: encodeMessage(getLinkRequest("eth0"), 3),
      want: hex("2c000000 1200 0100 03000000 00000000 00000000 00000000 00000000 00000000 0900 0300 65746830 00000000"),
    },
  ];
  for (const c of cases) await t.test(c.name, () => assert.equal(c.have.toString("hex"), c.want.toString("hex")));
  await t.test("deleting handle 0 is refused (it would delete every filter at that priority)", () => {
    assert.throws(() => deleteFilterRequest({ ifindex: 3, parent: TcHandle.INGRESS, priority: 1, handle: 0 }), BpfError);
  });
});

/** A kernel reply: nlmsghdr + payload, padded. */
function reply(type: number, flags: number, seq: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(16 + ((payload.length + 3) & ~3));
  b.writeUInt32LE(16 + payload.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  b.writeUInt32LE(seq, 8);
  b.writeUInt32LE(4242, 12);
  payload.copy(b, 16);
  return b;
}

/** NLMSG_ERROR as the kernel builds it; `request` is echoed whole unless capped. */
function errorReply(seq: number, errno: number, opts: { message?: string; offset?: number; request?: Buffer; capped?: boolean } = {}): Buffer {
  const code = Buffer.alloc(4);
  code.writeInt32LE(-errno);
  const req = opts.request ?? encodeMessage(addClsactRequest(1), seq);
  const echoed = opts.capped === false ? req : req.subarray(0, 16);
  const tlvs: netlink.NlAttr[] = [];
  if (opts.message) tlvs.push(nla.string(1, opts.message));
  if (opts.offset !== undefined) tlvs.push(nla.u32(2, opts.offset));
  const flags = (opts.capped === false ? 0 : NlmFlag.CAPPED) | (tlvs.length ? NlmFlag.ACK_TLVS : 0);
  return reply(NlmsgType.ERROR, flags, seq, Buffer.concat([code, echoed, encodeAttrs(tlvs)]));
}

test("ACK and error messages: errno and the kernel's extended ACK text", async (t) => {
  const cases = [
    { name: "plain ACK", have: errorReply(1, 0), want: { errno: 0 } },
    { name: "error without TLVs", have: errorReply(1, 2), want: { errno: 2 } },
    {
      name: "capped error with message and offset",
      have: errorReply(1, 17, { message: "Exclusivity flag on, cannot modify", offset: 36 }),
      want: { errno: 17, message: "Exclusivity flag on, cannot modify", offset: 36 },
    },
    {
      name: "uncapped: the whole request is echoed before the TLVs",
      have: errorReply(1, 22, { message: "Parent Qdisc doesn't exists", capped: false, request: encodeMessage(addBpfFilterRequest({ ifindex: 3, direction: "ingress", priority: 1, programFd: 9, name: "toa:t" }), 1) }),
      want: { errno: 22, message: "Parent Qdisc doesn't exists" },
    },
    { name: "NLMSG_DONE carries an int error too", have: reply(NlmsgType.DONE, NlmFlag.MULTI, 1, hex("f9ffffff")), want: { errno: 7 } },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const [msg] = parseMessages(c.have);
      assert.deepEqual(parseAck(msg), c.want);
    });
  }
  await t.test("a length running past the datagram is refused", () => {
    const bad = reply(NlmsgType.ERROR, 0, 1, Buffer.alloc(20));
    bad.writeUInt32LE(400, 0);
    assert.throws(() => parseMessages(bad), /malformed netlink reply/);
  });
  await t.test("two messages in one datagram, each aligned to 4", () => {
    const two = Buffer.concat([reply(Rtm.NEWTFILTER, NlmFlag.MULTI, 5, Buffer.alloc(21)), reply(NlmsgType.DONE, NlmFlag.MULTI, 5, Buffer.alloc(4))]);
    assert.deepEqual(parseMessages(two).map((m) => [m.type, m.payload.length]), [[Rtm.NEWTFILTER, 21], [NlmsgType.DONE, 4]]);
  });
});

/** An RTM_NEWTFILTER as the kernel dumps a bpf filter (cls_bpf_dump). */
function filterMessage(seq: number, f: { ifindex: number; handle: number; parent: number; priority: number; name?: string; id?: number }): Buffer {
  const attrs: netlink.NlAttr[] = [nla.string(1, "bpf"), nla.u32(11, 0)];
  if (f.handle) {
    const tag = { type: 10, value: hex("0102030405060708") };
    attrs.push({ type: 2, value: [nla.u32(11, f.id ?? 0), tag, nla.string(7, f.name ?? ""), nla.u32(8, 1)] });
  }
  return reply(Rtm.NEWTFILTER, NlmFlag.MULTI, seq, Buffer.concat([tcmsg(f.ifindex, f.handle, f.parent, ((f.priority << 16) | 0x0300) >>> 0), encodeAttrs(attrs)]));
}

test("parseFilter reads a dumped bpf filter and skips the per-classifier header message", () => {
  const [head, filter] = parseMessages(
    Buffer.concat([filterMessage(1, { ifindex: 4, handle: 0, parent: TcHandle.INGRESS, priority: 49152 }), filterMessage(1, { ifindex: 4, handle: 1, parent: TcHandle.INGRESS, priority: 49152, name: "toa:count", id: 77 })]),
  );
  assert.equal(parseFilter(head), undefined);
  assert.deepEqual(parseFilter(filter), {
    ifindex: 4,
    handle: 1,
    parent: TcHandle.INGRESS,
    direction: "ingress",
    priority: 49152,
    protocol: 3,
    kind: "bpf",
    chain: 0,
    name: "toa:count",
    programId: 77,
    programTag: "0102030405060708",
    directAction: true,
  });
});

function useFake(t: TestContext, k: FakeKernel): FakeKernel {
  const previous = setSyscallBackend(k);
  resetTcxDetection();
  t.after(() => {
    setSyscallBackend(previous);
    resetTcxDetection();
  });
  return k;
}

/** A SCHED_CLS program object around a fake fd (never closed: the fd is not real). */
const schedCls = new Program(9, { name: "t_count", type: "SCHED_CLS" }, { type: 3, id: 77, tag: "", name: "t_count", xlatedLength: 8, mapIds: 0, runTimeNs: 0n, runCount: 0n });

/** The usual kernel: every request ACKed; a new filter echoed with handle 1 at prio 49152; dumps empty. */
function rtnetlink(overrides: Partial<Record<number, (m: netlink.NetlinkMessage) => Buffer[]>> = {}) {
  return (m: netlink.NetlinkMessage): Buffer[] => {
    const o = overrides[m.type];
    if (o) return o(m);
    if (m.type === Rtm.NEWTFILTER) return [filterMessage(m.seq, { ifindex: 3, handle: 1, parent: m.payload.readUInt32LE(12), priority: 49152, name: m.payload.includes("toa:t_count") ? "toa:t_count" : "bpf:t_count", id: 77 }), errorReply(m.seq, 0)];
    if (m.type === Rtm.GETTFILTER) return [reply(NlmsgType.DONE, NlmFlag.MULTI, m.seq, Buffer.alloc(4))];
    return [errorReply(m.seq, 0)];
  };
}

const EINVAL = { ret: -1, errno: 22 };

test("no tcx (EINVAL from BPF_LINK_CREATE): clsact + direct-action filter, then exactly that filter is deleted", (t) => {
  const k = useFake(t, new FakeKernel(({ cmd }) => (cmd === BpfCommand.LINK_CREATE ? EINVAL : { ret: 0, errno: 0 }), rtnetlink()));
  const a = attachTc(3, schedCls, "ingress");
  assert.equal(a.mode, "netlink");
  // The default name: the application's ("bpf" until setApplication names it) and the program's.
  assert.deepEqual(a.filter, { ifindex: 3, parent: TcHandle.INGRESS, priority: 49152, handle: 1, name: "bpf:t_count" });
  const { REQUEST, ACK, ECHO, EXCL, CREATE, DUMP } = NlmFlag;
  assert.deepEqual(k.requests(), [
    [Rtm.NEWQDISC, REQUEST | ACK | EXCL | CREATE],
    [Rtm.NEWTFILTER, REQUEST | ACK | ECHO | EXCL | CREATE],
  ]);
  assert.equal(k.sent[1].payload.toString("hex"), addBpfFilterRequest({ ifindex: 3, direction: "ingress", priority: 0, programFd: 9, name: "bpf:t_count" }).payload.toString("hex"));
  assert.deepEqual(k.closed, [1000], "one socket per operation, closed");

  a.detach();
  // We created the qdisc: after our filter, both directions are dumped and, being empty, it goes.
  assert.deepEqual(k.requests().slice(2), [
    [Rtm.DELTFILTER, REQUEST | ACK],
    [Rtm.GETTFILTER, REQUEST | DUMP],
    [Rtm.GETTFILTER, REQUEST | DUMP],
    [Rtm.DELQDISC, REQUEST | ACK],
  ]);
  assert.equal(k.sent[2].payload.toString("hex"), deleteFilterRequest({ ifindex: 3, parent: TcHandle.INGRESS, priority: 49152, handle: 1 }).payload.toString("hex"));
  a.detach();
  assert.equal(k.sent.length, 6, "detach is idempotent");

  // The first EINVAL is remembered: the next attach goes straight to netlink.
  const linkCreates = k.calls.filter((c) => c.cmd === BpfCommand.LINK_CREATE).length;
  attachTc(3, schedCls, "egress").detach();
  assert.equal(k.calls.filter((c) => c.cmd === BpfCommand.LINK_CREATE).length, linkCreates);
});

test("a clsact that was there already (EEXIST) stays after detach, and so does one with other filters", (t) => {
  const k = useFake(t, new FakeKernel(() => EINVAL, rtnetlink({ [Rtm.NEWQDISC]: (m) => [errorReply(m.seq, 17, { message: "Exclusivity flag on, cannot modify" })] })));
  const a = attachTc(3, schedCls, "egress", { mode: "netlink", priority: 5, name: "mine" });
  assert.equal(k.sent[1].payload.readUInt32LE(16), ((5 << 16) | 0x0300) >>> 0);
  a.detach();
  assert.deepEqual(k.requests().map(([type]) => type), [Rtm.NEWQDISC, Rtm.NEWTFILTER, Rtm.DELTFILTER]);

  const k2 = useFake(t, new FakeKernel(() => EINVAL, rtnetlink({ [Rtm.GETTFILTER]: (m) => [filterMessage(m.seq, { ifindex: 3, handle: 4, parent: TcHandle.INGRESS, priority: 2, name: "theirs" }), reply(NlmsgType.DONE, NlmFlag.MULTI, m.seq, Buffer.alloc(4))] })));
  attachTc(3, schedCls, "egress", { mode: "netlink" }).detach();
  assert.deepEqual(k2.requests().map(([type]) => type), [Rtm.NEWQDISC, Rtm.NEWTFILTER, Rtm.DELTFILTER, Rtm.GETTFILTER]);
});

test("a filter already gone (ENOENT) detaches quietly; other errors carry errno, the kernel's text and a hint", (t) => {
  const k = useFake(t, new FakeKernel(() => EINVAL, rtnetlink({ [Rtm.NEWQDISC]: (m) => [errorReply(m.seq, 17)], [Rtm.DELTFILTER]: (m) => [errorReply(m.seq, 2, { message: "Specified filter handle not found" })] })));
  const a = attachTc(3, schedCls, "ingress", { mode: "netlink" });
  assert.doesNotThrow(() => a.detach());
  assert.equal(k.sent.at(-1)?.type, Rtm.DELTFILTER);

  useFake(t, new FakeKernel(() => EINVAL, rtnetlink({ [Rtm.NEWTFILTER]: (m) => [errorReply(m.seq, 2, { message: "Error: Specified classifier not found" })] })));
  const err = (() => {
    try {
      attachTc(3, schedCls, "ingress", { mode: "netlink" });
    } catch (e) {
      return e as SyscallError;
    }
    assert.fail("attach must fail");
  })();
  assert.ok(err instanceof SyscallError);
  assert.equal(err.errnoName, "ENOENT");
  assert.equal(err.command, "RTM_NEWTFILTER");
  assert.match(err.message, /the kernel says: Error: Specified classifier not found/);
  assert.match(err.hint, /cls_bpf/);
});

test("tcx: one BPF_LINK_CREATE; detach is LINK_DETACH + close; forcing tcx on a kernel without it names the feature", (t) => {
  const k = useFake(t, new FakeKernel(({ cmd }) => (cmd === BpfCommand.LINK_CREATE ? { ret: openSync("/dev/null", "r"), errno: 0 } : { ret: 0, errno: 0 }), rtnetlink()));
  const a = attachTc(5, schedCls, "egress");
  assert.equal(a.mode, "tcx");
  assert.equal(k.sent.length, 0, "no netlink when tcx works");
  assert.equal(k.calls[0].attr.toString("hex"), tcxLinkCreateAttr(9, 5, "egress").toString("hex"));
  const fd = a.fd;
  a.detach();
  a.detach();
  assert.deepEqual(k.calls.map((c) => c.cmd), [BpfCommand.LINK_CREATE, BpfCommand.LINK_DETACH]);
  assert.equal(k.calls[1].attr.readUInt32LE(0), fd);
  assert.equal(a.fd, -1);

  useFake(t, new FakeKernel(() => EINVAL, rtnetlink()));
  assert.throws(() => attachTc(5, schedCls, "egress", { mode: "tcx" }), (e: unknown) => e instanceof UnsupportedFeatureError && /tcx links/.test(e.message) && e.minimumKernel === "6.6");

  useFake(t, new FakeKernel(() => ({ ret: -1, errno: 19 }), rtnetlink()));
  assert.throws(() => attachTc(5, schedCls, "egress"), (e: unknown) => e instanceof SyscallError && e.errnoName === "ENODEV" && /network namespace/.test(e.hint));
});

test("options are checked where they enter, before any call", (t) => {
  const k = useFake(t, new FakeKernel(() => EINVAL, rtnetlink()));
  const sockOps = new Program(9, { name: "ops", type: "SOCK_OPS" }, { type: 13, id: 1, tag: "", name: "ops", xlatedLength: 8, mapIds: 0, runTimeNs: 0n, runCount: 0n });
  const cases: [string, () => unknown, RegExp][] = [
    ["ifindex", () => attachTc(0, schedCls, "ingress"), /ifindex must be a positive integer/],
    ["direction", () => attachTc(3, schedCls, "sideways" as "ingress"), /direction must be "ingress" or "egress"/],
    ["priority", () => attachTc(3, schedCls, "ingress", { priority: 70000 }), /priority must be an integer from 1 to 65535/],
    ["mode", () => attachTc(3, schedCls, "ingress", { mode: "xdp" as "tcx" }), /mode must be "tcx" or "netlink"/],
    ["program type", () => attachTc(3, sockOps, "ingress"), /tc needs SCHED_CLS/],
    ["device name", () => ifindexOf("a/b"), /device name must be/],
  ];
  for (const [, fn, re] of cases) assert.throws(fn, (e: unknown) => e instanceof BpfError && e.code === "BPF_ERR_INVALID_ARG" && re.test(e.message));
  assert.equal(k.calls.length + k.sent.length, 0);
});

test("ifindexOf asks rtnetlink (the caller's namespace) and names a missing device", (t) => {
  const newlink = (seq: number, index: number) => reply(Rtm.NEWLINK, 0, seq, Buffer.concat([hex("00 00 0100"), Buffer.from(Int32Array.of(index).buffer), Buffer.alloc(8)]));
  const k = useFake(t, new FakeKernel(() => EINVAL, rtnetlink({ [Rtm.GETLINK]: (m) => [newlink(m.seq, 7), errorReply(m.seq, 0)] })));
  assert.equal(ifindexOf("veth0"), 7);
  assert.equal(k.sent[0].payload.toString("hex"), getLinkRequest("veth0").payload.toString("hex"));

  useFake(t, new FakeKernel(() => EINVAL, rtnetlink({ [Rtm.GETLINK]: (m) => [errorReply(m.seq, 19)] })));
  assert.throws(() => ifindexOf("nosuch0"), /no network device "nosuch0" in this network namespace/);
});

test("a request the kernel never answers times out with a hint instead of hanging", (t) => {
  useFake(t, new FakeKernel(() => EINVAL, () => []));
  assert.throws(() => attachTc(3, schedCls, "ingress", { mode: "netlink" }), (e: unknown) => e instanceof SyscallError && e.errnoName === "EAGAIN" && /did not answer in time/.test(e.hint));
});
