/** `toa doctor` checks fed fake inputs: verdicts and fixes without touching the system. */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  attachedCheck,
  commonParent,
  socketCgroupCheck,
  bpffsCheck,
  capEff,
  cgroup2Check,
  cgroupFolderOfPid,
  featureChecks,
  foreignCheck,
  isReady,
  kernelCheck,
  listeningInodes,
  loadedCheck,
  modulesCheck,
  pidsHoldingSockets,
  pidsListeningOn,
  privilegesCheck,
  trustCheck,
  type DescribeAttached,
} from "../../src/doctor/index.js";
import type { Status } from "../../src/agent/status.js";
import type { StoredSettings } from "../../src/agent/settings.js";

const CG2 = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
const BPF = "42 23 0:39 / /sys/fs/bpf rw,relatime - bpf bpf rw\n";
const V1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";

const settings = (over: Partial<StoredSettings> = {}): StoredSettings => ({
  version: 1,
  cgroup: "/sys/fs/cgroup/unified/app",
  pinDir: "/sys/fs/bpf/toa",
  kinds: [254, 253, 200],
  trust: [{ family: 4, address: "100.125.0.0", prefix: 16 }],
  syn: true,
  mode: "link",
  loadedAt: "2025-01-01T00:00:00.000Z",
  programs: { receiver: 10, getpeer4: 11, getpeer6: 12, nat64: 13 },
  ...over,
});
const status = (s?: StoredSettings, attached = true, pinDir = "/sys/fs/bpf/toa"): Status => ({
  loaded: !!s,
  pinDir,
  settings: s,
  attached: s ? ["CGROUP_SOCK_OPS", "CGROUP_INET4_GETPEERNAME"].map((hook, i) => ({ hook, programId: 10 + i, attached: attached || i === 0 })) : [],
  foreign: [],
  features: [],
  warnings: [],
  gone: s && !attached ? ["CGROUP_INET4_GETPEERNAME"] : [],
});

test("kernel: informational, always ok, names release and arch", () => {
  const c = kernelCheck("4.18.0-372.el8.x86_64", "x64");
  assert.equal(c.ok, true);
  assert.match(c.detail, /4\.18\.0-372/);
  assert.match(c.detail, /information only/);
});

test("features: a missing one fails, naming the feature and the upstream version", () => {
  const [ok, missing, denied] = featureChecks([
    { id: "sk-storage", name: "socket-local storage maps", since: "5.2", available: true },
    { id: "sock-ops-hdr-opt", name: "TCP header option helpers in sock_ops", since: "5.10", available: false, error: "EINVAL: unknown func" },
    { id: "lpm-trie", name: "LPM trie maps", since: "4.11", available: false, error: "EPERM: Operation not permitted", denied: true },
  ]);
  assert.equal(ok.ok, true);
  assert.equal(missing.ok, false);
  assert.match(missing.detail, /TCP header option helpers/);
  assert.match(missing.detail, /5\.10/);
  assert.match(missing.fix!, /5\.10/);
  assert.match(missing.fix!, /keep toa\.ko on this host, or .*PROXY protocol .*toa lb --mode proxy-v2/, "what works on an older kernel");
  assert.equal(denied.ok, "warn", "EPERM means unknown, not missing");
  assert.match(denied.fix!, /root/);
});

test("cgroup2: found in mountinfo, or a fix that mounts it", () => {
  assert.equal(cgroup2Check(V1 + CG2).ok, true);
  assert.match(cgroup2Check(CG2).detail, /\/sys\/fs\/cgroup\/unified/);
  const c = cgroup2Check(V1);
  assert.equal(c.ok, false);
  assert.match(c.fix!, /mount -t cgroup2/);
});

test("bpffs: missing is a warning (toa load mounts it) with the mount command; a pin dir off bpffs fails", () => {
  assert.equal(bpffsCheck(CG2 + BPF).ok, true);
  const w = bpffsCheck(CG2);
  assert.equal(w.ok, "warn");
  assert.equal(w.fix?.startsWith("mount -t bpf bpf /sys/fs/bpf"), true);
  assert.match(w.detail, /toa load/);
  const off = bpffsCheck(CG2 + BPF, "/tmp/pins");
  assert.equal(off.ok, false);
  assert.match(off.fix!, /\/sys\/fs\/bpf\//);
});

test("privileges: CapEff bits 39 (BPF) / 21 (SYS_ADMIN) with 12 (NET_ADMIN)", () => {
  const st = (hex: string) => `Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t${hex}\n`;
  assert.equal(capEff(st("000001ffffffffff")), 0x1ffffffffffn);
  assert.equal(privilegesCheck(st("000001ffffffffff"), 0).ok, true);
  const bpfNet = (1n << 39n) | (1n << 12n);
  assert.equal(privilegesCheck(st(bpfNet.toString(16).padStart(16, "0")), 1000).ok, true);
  const sysNet = (1n << 21n) | (1n << 12n);
  assert.equal(privilegesCheck(st(sysNet.toString(16).padStart(16, "0")), 1000).ok, true);
  const onlyBpf = privilegesCheck(st((1n << 39n).toString(16).padStart(16, "0")), 1000);
  assert.equal(onlyBpf.ok, false);
  assert.match(onlyBpf.detail, /CAP_BPF/);
  assert.match(onlyBpf.fix!, /sudo|setcap/);
  const droppedRoot = privilegesCheck(st("00000000a80425fb"), 0);
  assert.equal(droppedRoot.ok, false);
  assert.match(droppedRoot.fix!, /cap-add/);
});

test("module: toa.ko or vtoa in /proc/modules, or /proc/net/toa_stats, fails with rmmod", () => {
  assert.equal(modulesCheck("nf_tables 1 0 - Live 0x0\n", false).ok, true);
  const toa = modulesCheck("toa 16384 0 - Live 0x0000000000000000\nnf_tables 1 0 - Live 0x0\n", false);
  assert.equal(toa.ok, false);
  assert.match(toa.fix!, /rmmod toa/);
  assert.match(modulesCheck("vtoa 16384 0 - Live 0x0\n", false).fix!, /rmmod vtoa/);
  assert.equal(modulesCheck("", true).ok, false);
  assert.equal(modulesCheck("toaster 1 0 - Live 0x0\n", false).ok, true, "only the module named toa");
});

test("loaded: not loaded fails with `toa load`; a detached hook fails with reload; loaded is ok", () => {
  const none = loadedCheck(status());
  assert.equal(none.ok, false);
  assert.match(none.fix!, /^toa load/);
  assert.match(loadedCheck(status(undefined, true, "/sys/fs/bpf/x")).fix!, /--pin-dir \/sys\/fs\/bpf\/x/);
  const gone = loadedCheck(status(settings(), false));
  assert.equal(gone.ok, false);
  assert.match(gone.detail, /CGROUP_INET4_GETPEERNAME/);
  // Loading again re-attaches (keeping the socket storage): no unload first, which would drop open connections' addresses.
  assert.equal(gone.fix, "toa load --cgroup /sys/fs/cgroup/unified/app --trust 100.125.0.0/16");
  assert.equal(loadedCheck(status(settings())).ok, true);
});

test("trust: empty list warns with --trust; not loaded: no check", () => {
  assert.equal(trustCheck(status()), undefined);
  assert.equal(trustCheck(status(settings()))!.ok, true);
  const w = trustCheck(status(settings({ trust: [] })))!;
  assert.equal(w.ok, "warn");
  assert.match(w.fix!, /--trust/);
  assert.match(w.detail, /forge/);
});

const describeFrom =
  (table: Record<string, Record<string, { id: number; name: string }[]>>): DescribeAttached =>
  (folder, attachType, effective) => {
    assert.equal(effective, true, "effective programs: inherited ones run too");
    return table[folder]?.[attachType] ?? [];
  };
const ours = { CGROUP_SOCK_OPS: [{ id: 10, name: "toa_receiver" }], CGROUP_INET4_GETPEERNAME: [{ id: 11, name: "toa_getpeer4" }], CGROUP_INET6_GETPEERNAME: [{ id: 12, name: "toa_getpeer6" }] };

test("attached: ok when toa_receiver and toa_getpeer4/6 are effective in the pid's folder", () => {
  const c = attachedCheck({ pid: 5, folder: "/cg/app", label: "pid 5" }, status(settings()), describeFrom({ "/cg/app": ours }), "/cg");
  assert.equal(c.ok, true);
  assert.match(c.detail, /toa_receiver \(id 10\)/);
});

test("attached: elsewhere fails naming the pid's cgroup, where it is loaded and the fix", () => {
  const c = attachedCheck({ pid: 5, folder: "/cg/other", label: "pid 5" }, status(settings()), describeFrom({ "/cg/app": ours }), "/cg");
  assert.equal(c.ok, false);
  assert.match(c.detail, /\/cg\/other/);
  assert.match(c.detail, /attached to \/sys\/fs\/cgroup\/unified\/app/);
  assert.match(c.fix!, /toa load --cgroup \/cg\/other --pin-dir \/sys\/fs\/bpf\/toa-other/);
  const partial = attachedCheck({ pid: 5, folder: "/cg/app", label: "pid 5" }, status(settings()), describeFrom({ "/cg/app": { CGROUP_SOCK_OPS: ours.CGROUP_SOCK_OPS } }), "/cg");
  assert.equal(partial.ok, false);
  assert.match(partial.detail, /toa_getpeer4 \(CGROUP_INET4_GETPEERNAME\); toa_getpeer6/);
  assert.doesNotMatch(partial.detail, /toa_receiver/);
  const notLoaded = attachedCheck({ pid: 5, folder: "/cg/other", label: "pid 5" }, status(), describeFrom({}), "/cg");
  assert.match(notLoaded.fix!, /^toa load --cgroup \/cg\/other/);
  const root = attachedCheck({ pid: 1, folder: "/cg", label: "pid 1" }, status(settings()), describeFrom({}), "/cg");
  assert.match(root.fix!, /whole host/);
});

test("foreign: a getpeername program not named toa_* warns (Cilium)", () => {
  assert.equal(foreignCheck("/cg/app", describeFrom({ "/cg/app": ours })).ok, true);
  const c = foreignCheck("/cg/app", describeFrom({ "/cg/app": { ...ours, CGROUP_INET4_GETPEERNAME: [{ id: 77, name: "cil_sock4_getpeername" }, { id: 11, name: "toa_getpeer4" }] } }));
  assert.equal(c.ok, "warn");
  assert.match(c.detail, /id 77 "cil_sock4_getpeername"/);
  assert.match(c.fix!, /bpftool prog show id 77/);
});

test("ready: warnings allowed, one failure is not ready", () => {
  assert.equal(isReady([{ id: "a", title: "a", ok: true, detail: "" }, { id: "b", title: "b", ok: "warn", detail: "" }]), true);
  assert.equal(isReady([{ id: "a", title: "a", ok: true, detail: "" }, { id: "b", title: "b", ok: false, detail: "" }]), false);
});

test("proc: cgroup folder of a pid from its 0:: line", () => {
  const read = (text: string) => () => text;
  assert.deepEqual(cgroupFolderOfPid(7, "/sys/fs/cgroup/unified", read("4:memory:/x\n0::/system.slice/nginx.service\n")), { folder: "/sys/fs/cgroup/unified/system.slice/nginx.service" });
  assert.deepEqual(cgroupFolderOfPid(7, "/sys/fs/cgroup", read("0::/\n")), { folder: "/sys/fs/cgroup" });
  assert.match((cgroupFolderOfPid(7, "/m", read("1:cpu:/\n")) as { error: string }).error, /0::/);
  const gone = cgroupFolderOfPid(7, "/m", () => {
    throw Object.assign(new Error("nope"), { code: "ENOENT" });
  });
  assert.match((gone as { error: string }).error, /no process 7 \(ENOENT\)/);
});

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0200007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6000 1 0000000000000000 100 0 0 10 0
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
`;

test("proc: listening inodes on a port (state 0A only, tcp and tcp6), pids holding them", () => {
  assert.deepEqual(listeningInodes(8080, [TCP, TCP6]), [4242, 4343]);
  assert.deepEqual(listeningInodes(80, [TCP]), [6000]);
  assert.deepEqual(listeningInodes(9999, [TCP, TCP6]), []);
  const fds: Record<number, string[]> = { 10: ["/dev/null", "socket:[4242]"], 11: ["socket:[5555]"], 12: ["socket:[4343]", "pipe:[1]"] };
  assert.deepEqual(pidsHoldingSockets([4242, 4343], [10, 11, 12], (p) => fds[p] ?? []), [10, 12]);
  assert.deepEqual(pidsListeningOn(8080, [10, 11, 12], [{ netns: "net:[1]", tables: [TCP, TCP6] }], (p) => fds[p] ?? []), [10, 12]);
  assert.deepEqual(pidsListeningOn(443, [10], [{ netns: "net:[1]", tables: [TCP] }], (p) => fds[p] ?? []), []);
});

test("socket cgroup: a listener made elsewhere fails with both places to attach; covered there or made inside passes", () => {
  const target = { pid: 7, folder: "/sys/fs/cgroup/unified/system.slice/app.service", label: "port 80 pid 7" };
  const socketUnit = "/sys/fs/cgroup/unified/system.slice/app.socket";
  const none: DescribeAttached = () => [];
  const ours: DescribeAttached = () => [{ id: 1, name: "toa_receiver" }, { id: 2, name: "toa_getpeer4" }, { id: 3, name: "toa_getpeer6" }];
  assert.equal(socketCgroupCheck(target, [], status(settings()), none), undefined, "no listener: nothing to say");
  const inside = socketCgroupCheck(target, [{ port: 80, inode: 9, folder: target.folder }], status(settings()), none)!;
  assert.equal(inside.ok, true);
  const bad = socketCgroupCheck(target, [{ port: 80, inode: 9, folder: socketUnit }], status(settings()), none)!;
  assert.equal(bad.ok, false);
  assert.match(bad.detail, /port 80 \(inode 9\) was made in cgroup .*app\.socket, not in .*app\.service where port 80 pid 7 runs/);
  assert.match(bad.fix!, /attach at a parent of both: toa load --cgroup \/sys\/fs\/cgroup\/unified\/system\.slice .*or where the socket was made .*toa load --cgroup .*app\.socket/);
  assert.equal(socketCgroupCheck(target, [{ port: 80, inode: 9, folder: socketUnit }], status(settings()), ours)!.ok, true, "covered where it was made");
  assert.equal(socketCgroupCheck(target, [{ port: 80, inode: 9 }], status(settings()), none)!.ok, "warn", "kernel before 5.7");
  assert.equal(commonParent("/a/b/c", "/a/b/d/e"), "/a/b");
});
