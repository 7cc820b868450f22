/**
 * Feature probes: each feature is detected by trying it (a tiny map or program), never by parsing
 * the kernel version: distribution kernels backport (RHEL 8.6 says 4.18 and has all of these).
 */
import { closeSync } from "node:fs";
import { exit, mov, call, st, FP, R0, R2, R3, R4, add } from "./asm/index.js";
import { UnsupportedFeatureError, BpfError, errnoName, SyscallError } from "./errors.js";
import { BpfMap } from "./map.js";
import { AttachType, Program, type ProgramSpec } from "./program.js";
import { LinkCreateAttr } from "./sys.js";
import { zero } from "./struct.js";
import { probeTcx } from "./tc.js";
import { findCgroup2Mount } from "./cgroup.js";
import { BpfCommand, bpfTry } from "./syscall.js";
import { s32 as btfInt } from "./btf.js";

/** A kernel feature the project may need. */
export interface Feature {
  id: string;
  /** What it is, for messages. */
  name: string;
  /** Upstream kernel that added it. */
  since: string;
  probe(): void;
}

const tinyProgram = (spec: Omit<ProgramSpec, "instructions">, body = [mov(R0, 1), exit()]) => () => Program.load({ ...spec, instructions: body }).close();

/** Every probe, in dependency order. */
export const features: Feature[] = [
  { id: "bpf-syscall", name: "the bpf(2) system call", since: "3.18", probe: () => BpfMap.create({ name: "probe_array", type: "ARRAY", keySize: 4, valueSize: 4, maxEntries: 1 }).close() },
  { id: "cgroup2", name: "a cgroup v2 mount", since: "4.5", probe: () => void findCgroup2Mount() },
  {
    id: "sk-storage",
    name: "socket-local storage maps (BPF_MAP_TYPE_SK_STORAGE)",
    since: "5.2",
    probe: () => BpfMap.create({ name: "probe_sk", type: "SK_STORAGE", keySize: 4, valueSize: 4, maxEntries: 0, key: btfInt, value: btfInt }).close(),
  },
  { id: "lpm-trie", name: "LPM trie maps", since: "4.11", probe: () => BpfMap.create({ name: "probe_lpm", type: "LPM_TRIE", keySize: 8, valueSize: 4, maxEntries: 1 }).close() },
  { id: "sock-ops", name: "sock_ops programs", since: "4.13", probe: tinyProgram({ name: "probe_sockops", type: "SOCK_OPS" }) },
  {
    id: "sock-ops-hdr-opt",
    name: "TCP header option helpers in sock_ops (bpf_load_hdr_opt)",
    since: "5.10",
    probe: tinyProgram({ name: "probe_hdropt", type: "SOCK_OPS" }, [
      st("DW", FP, -8, 0),
      mov(R2, FP),
      add(R2, -8),
      mov(R3, 8),
      mov(R4, 0),
      call("load_hdr_opt"),
      mov(R0, 1),
      exit(),
    ]),
  },
  {
    id: "getpeername-hooks",
    name: "cgroup getpeername hooks (BPF_CGROUP_INET4/6_GETPEERNAME)",
    since: "5.8",
    probe: tinyProgram({ name: "probe_getpeer", type: "CGROUP_SOCK_ADDR", expectedAttachType: "CGROUP_INET4_GETPEERNAME" }),
  },
  {
    id: "cgroup-sockopt",
    name: "cgroup getsockopt hooks (BPF_CGROUP_GETSOCKOPT)",
    since: "5.3",
    probe: tinyProgram({ name: "probe_sockopt", type: "CGROUP_SOCKOPT", expectedAttachType: "CGROUP_GETSOCKOPT" }),
  },
  {
    id: "bpf-link",
    name: "bpf_link for cgroups (BPF_LINK_CREATE)",
    since: "5.7",
    probe: () => {
      // Invalid fds: a kernel with the command answers EBADF, one without it EINVAL.
      const attr = LinkCreateAttr.encode({ ...zero(LinkCreateAttr), progFd: 0xffffffff, targetFd: 0xffffffff, attachType: AttachType.CGROUP_SOCK_OPS });
      const r = bpfTry(BpfCommand.LINK_CREATE, attr, LinkCreateAttr.relative);
      if (r.ret >= 0) closeSync(r.ret);
      else if (r.errno !== 9 /* EBADF */) throw new BpfError("BPF_ERR_UNSUPPORTED", `BPF_LINK_CREATE answered errno ${r.errno}`);
    },
  },
  {
    id: "tcx",
    name: "tcx links for tc programs (BPF_LINK_CREATE with BPF_TCX_INGRESS)",
    since: "6.6",
    probe: probeTcx,
  },
  { id: "sockmap", name: "sockmap (BPF_MAP_TYPE_SOCKMAP)", since: "4.14", probe: () => BpfMap.create({ name: "probe_sockmap", type: "SOCKMAP", keySize: 4, valueSize: 4, maxEntries: 1 }).close() },
];

/** Result of one probe. */
export interface ProbeResult {
  id: string;
  name: string;
  since: string;
  available: boolean;
  error?: string;
  /** The probe was refused for want of privileges: the kernel may well have the feature. */
  denied?: boolean;
}

const cache = new Map<string, ProbeResult>();

/** Run one probe (cached per process). */
export function probe(id: string): ProbeResult {
  const hit = cache.get(id);
  if (hit) return hit;
  const f = features.find((x) => x.id === id);
  if (!f) throw new BpfError("BPF_ERR_INVALID_ARG", `unknown feature ${id}`);
  let result: ProbeResult;
  try {
    f.probe();
    result = { id, name: f.name, since: f.since, available: true };
  } catch (e) {
    // EPERM says nothing about the kernel: the caller lacks privileges (RLIMIT_MEMLOCK was already
    // raised and retried by the syscall layer), so the feature is unknown, not missing.
    const denied = e instanceof SyscallError && e.errnoName === "EPERM";
    result = { id, name: f.name, since: f.since, available: false, error: (e as Error).message.split("\n")[0], ...(denied ? { denied } : {}) };
  }
  cache.set(id, result);
  return result;
}

/** Run every probe. */
export function probeAll(): ProbeResult[] {
  return features.map((f) => probe(f.id));
}

/** Throw {@link UnsupportedFeatureError} naming the first missing feature of `ids`. */
export function requireFeatures(ids: string[]): void {
  for (const id of ids) {
    const r = probe(id);
    if (r.denied) throw new BpfError("BPF_ERR_PERMISSION", `${r.name} could not be tried: ${r.error}`);
    // A mount, not a kernel feature: its own message says why it is missing and what to do.
    if (id === "cgroup2" && !r.available) throw new BpfError("BPF_ERR_CGROUP", r.error ?? "no cgroup v2 mount");
    if (!r.available) throw new UnsupportedFeatureError(r.name, r.since, r.error);
  }
}

/** Forget cached results (tests). */
export function clearProbeCache(): void {
  cache.clear();
}
