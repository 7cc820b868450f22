/**
 * `toa doctor` checks. Each is a small function that takes what it looks at (file texts, probe
 * results, a cgroup query function) as parameters, with defaults that read the real system, and
 * returns one verdict with the fix. Nothing here decides by kernel version: features are probed.
 */
import { existsSync, readFileSync } from "node:fs";
import { arch, release } from "node:os";
import { basename } from "node:path";
import { bpffsMounts } from "../bpf/pin.js";
import { describeAttached, findCgroup2Mount } from "../bpf/cgroup.js";
import type { AttachTypeName } from "../bpf/program.js";
import { probe, type ProbeResult } from "../bpf/probes.js";
import { RECEIVER_FEATURES } from "../agent/receiver.js";
import { loadCommandFor, type Status } from "../agent/status.js";
import { formatCidr } from "../wire/cidr.js";
import { DEFAULT_PIN_DIR } from "../agent/pins.js";

/** ok: ready; "warn": works, but read the detail; false: not ready (doctor exits non-zero). */
export type Verdict = boolean | "warn";

/** One check's verdict. */
export interface Check {
  id: string;
  title: string;
  ok: Verdict;
  detail: string;
  /** What to do when not ok (a command when there is one). */
  fix?: string;
}

const readText = (path: string): string => readFileSync(path, "utf8");

/** Kernel release and architecture: informational only, never the reason for a verdict. */
export function kernelCheck(rel: string = release(), machine: string = arch()): Check {
  return {
    id: "kernel",
    title: "kernel",
    ok: true,
    detail: `Linux ${rel} ${machine} (information only: features are probed below, not guessed from the version)`,
  };
}

/**
 * One check per eBPF feature the receiver needs. `results` come from probe(); a missing feature
 * names what it is and the upstream version that added it.
 */
export function featureChecks(results: ProbeResult[] = RECEIVER_FEATURES.filter((id) => id !== "cgroup2").map((id) => probe(id))): Check[] {
  return results.map((r) => {
    const base = { id: `feature:${r.id}`, title: `eBPF ${r.id}` };
    if (r.available) return { ...base, ok: true, detail: `${r.name}: available (upstream Linux ${r.since})` };
    if (r.denied) {
      return {
        ...base,
        ok: "warn" as const,
        detail: `${r.name}: could not be probed without privileges (${r.error ?? "EPERM"})`,
        fix: "run `toa doctor` as root (or with CAP_BPF + CAP_NET_ADMIN) to probe the kernel",
      };
    }
    return {
      ...base,
      ok: false,
      detail: `missing: this kernel lacks ${r.name}, added in upstream Linux ${r.since}${r.error ? ` (${r.error})` : ""}`,
      fix:
        `boot a kernel that has ${r.name}: upstream Linux ${r.since} or later, or a distribution kernel that backports it (the receiver needs every feature listed here; upstream 5.10+ has all of them). ` +
        "Until then: keep toa.ko on this host, or have the balancer pass the client in the PROXY protocol instead (`toa lb --mode proxy-v2`, nginx `listen ... proxy_protocol`)",
    };
  });
}

/** A cgroup v2 mount, found in /proc/self/mountinfo (the receiver attaches to cgroup v2 folders). */
export function cgroup2Check(mountinfo: string = readText("/proc/self/mountinfo")): Check {
  try {
    const mount = findCgroup2Mount(mountinfo);
    return { id: "cgroup2", title: "cgroup v2 mount", ok: true, detail: `mounted at ${mount}` };
  } catch {
    return {
      id: "cgroup2",
      title: "cgroup v2 mount",
      ok: false,
      detail: "no cgroup2 file system in /proc/self/mountinfo: the programs attach to cgroup v2 folders, so there is nowhere to attach them",
      fix: "mount it: `mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified` (hybrid layout), or boot with systemd.unified_cgroup_hierarchy=1",
    };
  }
}

/** bpffs at /sys/fs/bpf (where the pins live). `toa load` mounts it itself, so missing is a warning. */
export function bpffsCheck(mountinfo: string = readText("/proc/self/mountinfo"), pinDir: string = DEFAULT_PIN_DIR): Check {
  const mounts = bpffsMounts(mountinfo);
  const base = { id: "bpffs", title: "bpffs (pins)" };
  if (mounts.includes("/sys/fs/bpf")) {
    const covered = pinDir.startsWith("/sys/fs/bpf/") || pinDir === "/sys/fs/bpf" || mounts.some((m) => pinDir === m || pinDir.startsWith(`${m}/`));
    if (covered) return { ...base, ok: true, detail: `mounted at /sys/fs/bpf${mounts.length > 1 ? ` (also ${mounts.filter((m) => m !== "/sys/fs/bpf").join(", ")})` : ""}` };
    return { ...base, ok: false, detail: `--pin-dir ${pinDir} is not on a bpffs mount (${mounts.join(", ")})`, fix: `use a folder under /sys/fs/bpf, e.g. --pin-dir /sys/fs/bpf/${basename(pinDir) || "toa"}` };
  }
  return {
    ...base,
    ok: "warn",
    detail: `no bpffs at /sys/fs/bpf${mounts.length ? ` (bpffs at ${mounts.join(", ")})` : ""}; \`toa load\` mounts it itself, but other tools (bpftool, systemd) expect it there`,
    fix: "mount -t bpf bpf /sys/fs/bpf   (permanent: `bpf /sys/fs/bpf bpf defaults 0 0` in /etc/fstab)",
  };
}

/** Capability bits of CapEff in /proc/PID/status. */
export const Cap = { NET_ADMIN: 12, SYS_ADMIN: 21, BPF: 39 } as const;

/** The CapEff mask of a /proc/PID/status text. */
export function capEff(status: string): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)/im.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/** Root, or CAP_BPF (or CAP_SYS_ADMIN on kernels before 5.8) + CAP_NET_ADMIN in CapEff. */
export function privilegesCheck(status: string = readText("/proc/self/status"), uid: number = process.getuid?.() ?? -1): Check {
  const eff = capEff(status);
  const has = (bit: number): boolean => (eff & (1n << BigInt(bit))) !== 0n;
  const names = [has(Cap.BPF) && "CAP_BPF", has(Cap.NET_ADMIN) && "CAP_NET_ADMIN", has(Cap.SYS_ADMIN) && "CAP_SYS_ADMIN"].filter(Boolean).join(", ") || "none of CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN";
  const base = { id: "privileges", title: "privileges" };
  const enough = has(Cap.NET_ADMIN) && (has(Cap.BPF) || has(Cap.SYS_ADMIN));
  const who = uid === 0 ? "root" : `uid ${uid}`;
  if (enough) return { ...base, ok: true, detail: `${who} with ${names} (CapEff ${eff.toString(16)})` };
  return {
    ...base,
    ok: false,
    detail: `${who} with ${names} (CapEff ${eff.toString(16)}): loading and attaching the programs needs CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN${uid === 0 ? "; this root has them dropped (a container?)" : ""}`,
    fix:
      uid === 0
        ? "give the container CAP_BPF, CAP_NET_ADMIN (docker run --cap-add BPF --cap-add NET_ADMIN; Kubernetes securityContext.capabilities.add), or run toa on the host"
        : "run as root (sudo toa ...), or grant the capabilities: `sudo setcap cap_bpf,cap_net_admin+ep $(readlink -f $(which node))`, or AmbientCapabilities=CAP_BPF CAP_NET_ADMIN in a systemd unit",
  };
}

/** Whether a receiver is loaded at `--pin-dir` and the kernel still has each of its programs attached. */
export function loadedCheck(s: Status): Check {
  const base = { id: "loaded", title: "receiver loaded" };
  const pinFlag = s.pinDir === DEFAULT_PIN_DIR ? "" : ` --pin-dir ${s.pinDir}`;
  if (!s.settings) {
    return {
      ...base,
      ok: false,
      detail: `nothing loaded at ${s.pinDir} (no pinned settings)`,
      fix: `toa load --trust <load balancer CIDRs>${pinFlag}   (whole host; add --cgroup DIR for one container or service)`,
    };
  }
  const gone = s.attached.filter((a) => !a.attached);
  if (gone.length) {
    return {
      ...base,
      ok: false,
      detail: `pins at ${s.pinDir} say the receiver is on ${s.settings.cgroup}, but the kernel no longer has ${gone.map((g) => g.hook).join(", ")} attached there (cgroup removed and re-created? programs detached by another tool?)`,
      fix: s.fix ?? loadCommandFor(s.settings),
    };
  }
  return { ...base, ok: true, detail: `on ${s.settings.cgroup} since ${s.settings.loadedAt} (${s.settings.mode === "link" ? "bpf_link" : "multi"}, kinds ${s.settings.kinds.join(",")}, pins ${s.pinDir})` };
}

/** An empty trust list: any host that reaches the backend directly can forge its address. */
export function trustCheck(s: Status): Check | undefined {
  if (!s.settings) return undefined;
  const base = { id: "trust", title: "trust list" };
  if (s.settings.trust.length) return { ...base, ok: true, detail: `TOA believed only from ${s.settings.trust.map(formatCidr).join(", ")}` };
  const pinFlag = s.pinDir === DEFAULT_PIN_DIR ? "" : ` --pin-dir ${s.pinDir}`;
  return {
    ...base,
    ok: "warn",
    detail: "empty: a TOA from ANY source is believed, so a client that can reach this host directly can forge its address (toa.ko behaves the same way)",
    fix: `reload with the load balancers' source addresses: toa load --cgroup ${s.settings.cgroup}${pinFlag} --trust <CIDRs>   (Huawei ELB: 100.125.0.0/16); the reload swaps programs atomically`,
  };
}

/** Lists the programs attached (effective) at a cgroup folder for one hook. */
export type DescribeAttached = (folder: string, attachType: AttachTypeName, effective: boolean) => { id: number; name: string }[];

/** The hooks an application needs for accept()/getpeername() to return the client, and our program names. */
export const NEEDED_HOOKS: { attachType: AttachTypeName; program: string; what: string }[] = [
  { attachType: "CGROUP_SOCK_OPS", program: "toa_receiver", what: "reads the TOA (sock_ops)" },
  { attachType: "CGROUP_INET4_GETPEERNAME", program: "toa_getpeer4", what: "rewrites IPv4 peers (getpeername4)" },
  { attachType: "CGROUP_INET6_GETPEERNAME", program: "toa_getpeer6", what: "rewrites IPv6 and ::ffff: peers (getpeername6)" },
];

/** Who the application is: a pid (maybe found through a port) and its cgroup v2 folder. */
export interface Target {
  pid: number;
  folder: string;
  /** How it was found, for messages: "pid 123" or "port 80 (pid 123)". */
  label: string;
}

/**
 * Whether our programs are effective in the application's cgroup folder (attached there or on an
 * ancestor). `s` is the status of --pin-dir, to say where the receiver is instead.
 */
export function attachedCheck(target: Target, s: Status, describe: DescribeAttached = describeAttached, mount: string | undefined = findCgroup2MountSafe()): Check {
  const base = { id: "attached", title: `attached, ${target.label}` };
  const missing: string[] = [];
  const found: string[] = [];
  for (const h of NEEDED_HOOKS) {
    let progs: { id: number; name: string }[];
    try {
      progs = describe(target.folder, h.attachType, true);
    } catch (e) {
      return { ...base, ok: false, detail: `cannot query ${h.attachType} on ${target.folder}: ${(e as Error).message}`, fix: "run `toa doctor` as root" };
    }
    const ours = progs.find((p) => p.name === h.program);
    if (ours) found.push(`${h.program} (id ${ours.id})`);
    else missing.push(`${h.program} (${h.attachType})`);
  }
  if (missing.length === 0) return { ...base, ok: true, detail: `${target.folder}: ${found.join(", ")} effective` };
  const where = s.settings ? `the receiver pinned at ${s.pinDir} is attached to ${s.settings.cgroup}, which does not contain ${target.folder}` : `nothing is loaded at ${s.pinDir}`;
  const isRoot = target.folder === mount;
  const name = basename(target.folder).replace(/[^A-Za-z0-9_.-]/g, "_") || "app";
  const fix = s.settings
    ? isRoot
      ? `the application runs in the cgroup v2 root: load for the whole host with \`toa load --pin-dir /sys/fs/bpf/toa-host --trust <CIDRs>\`, or start the application inside ${s.settings.cgroup}`
      : `load one for the application's cgroup: toa load --cgroup ${target.folder} --pin-dir /sys/fs/bpf/toa-${name} --trust <CIDRs>; or start the application inside ${s.settings.cgroup}; or load on a common parent (the cgroup v2 root covers the whole host)`
    : `toa load --cgroup ${target.folder}${s.pinDir === DEFAULT_PIN_DIR ? "" : ` --pin-dir ${s.pinDir}`} --trust <CIDRs>   (or plain \`toa load\` for the whole host)`;
  return { ...base, ok: false, detail: `${target.label} runs in cgroup ${target.folder}, where ${missing.join("; ")} ${missing.length === 1 ? "is" : "are"} not effective: ${where}`, fix };
}

/** Other getpeername programs (Cilium, Alinux vtoa) effective on the cgroup: they rewrite the peer too. */
export function foreignCheck(folder: string, describe: DescribeAttached = describeAttached): Check {
  const base = { id: "foreign", title: "other getpeername programs" };
  const others: string[] = [];
  for (const attachType of ["CGROUP_INET4_GETPEERNAME", "CGROUP_INET6_GETPEERNAME"] as const) {
    let progs: { id: number; name: string }[] = [];
    try {
      progs = describe(folder, attachType, true);
    } catch (e) {
      return { ...base, ok: "warn", detail: `cannot query ${attachType} on ${folder}: ${(e as Error).message}` };
    }
    for (const p of progs) if (!p.name.startsWith("toa_")) others.push(`${attachType}: id ${p.id} "${p.name}"`);
  }
  if (others.length === 0) return { ...base, ok: true, detail: `none on ${folder}` };
  return {
    ...base,
    ok: "warn",
    detail: `${others.join("; ")} effective on ${folder} (Cilium's socket LB, Alinux vtoa...): it rewrites the peer address too and the last program to run wins`,
    fix: `see what it is: bpftool prog show id ${/id (\d+)/.exec(others[0])?.[1] ?? "N"}; if it is Cilium, disable its socket-level getpeername (bpf-lb-sock-hostns-only) or load toa on a cgroup below it; if it is vtoa, unload it`,
  };
}

/** Whether toa.ko (or another TOA module) is loaded: two rewriters at once, and the module ignores our trust list. */
export function modulesCheck(modules: string = safeRead("/proc/modules"), toaStats: boolean = existsSync("/proc/net/toa_stats")): Check {
  const base = { id: "module", title: "TOA kernel module" };
  const loaded = modules
    .split("\n")
    .filter((l) => l.startsWith("toa ") || l.startsWith("vtoa"))
    .map((l) => l.split(" ")[0]);
  if (loaded.length === 0 && !toaStats) return { ...base, ok: true, detail: "no toa.ko / vtoa.ko loaded" };
  const what = loaded.length ? `${loaded.join(", ")} loaded (/proc/modules)` : "/proc/net/toa_stats exists (a TOA module is loaded)";
  return {
    ...base,
    ok: false,
    detail: `${what}: it rewrites accept()/getpeername() in the whole host as well, ignoring the trust list; two rewriters make the result depend on which runs last`,
    fix: `rmmod ${loaded[0] ?? "toa"}, and remove it from /etc/modules-load.d and /etc/modules so it doesn't come back at boot`,
  };
}

function findCgroup2MountSafe(): string | undefined {
  try {
    return findCgroup2Mount();
  } catch {
    return undefined;
  }
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/** Exit status rule: ready when no check failed (warnings allowed). */
export function isReady(checks: Check[]): boolean {
  return checks.every((c) => c.ok !== false);
}

/** A listening socket of the application and the cgroup folder it was made in (undefined: the kernel doesn't say). */
export interface Listener {
  port: number;
  inode: number;
  folder?: string;
}

/** The deepest folder containing both `a` and `b`. */
export function commonParent(a: string, b: string): string {
  const x = a.split("/");
  const y = b.split("/");
  let i = 0;
  while (i < x.length && i < y.length && x[i] === y[i]) i++;
  return x.slice(0, i).join("/") || "/";
}

/**
 * Whether the application's listening sockets were made in its own cgroup. The hooks run for a
 * socket's cgroup (set when it was made), not the holder's: a listener from systemd socket
 * activation, inetd, or opened before the process moved is covered only where it was made.
 */
export function socketCgroupCheck(target: Target, listeners: Listener[], s: Status, describe: DescribeAttached = describeAttached): Check | undefined {
  if (listeners.length === 0) return undefined;
  const base = { id: "socket-cgroup", title: `socket cgroup, ${target.label}` };
  const unknown = listeners.filter((l) => l.folder === undefined);
  const elsewhere = listeners.filter((l) => l.folder !== undefined && l.folder !== target.folder);
  if (elsewhere.length === 0) {
    if (unknown.length) return { ...base, ok: "warn", detail: `this kernel does not report the cgroup of sockets (INET_DIAG_CGROUP_ID, Linux 5.7): cannot check that the listener on port ${unknown[0].port} was made in ${target.folder}` };
    return { ...base, ok: true, detail: `listening socket${listeners.length > 1 ? "s" : ""} on port ${[...new Set(listeners.map((l) => l.port))].join(", ")} made in ${target.folder}, the process's own cgroup` };
  }
  const l = elsewhere[0];
  const folder = l.folder!;
  const missing = NEEDED_HOOKS.filter((h) => {
    try {
      return !describe(folder, h.attachType, true).some((p) => p.name === h.program);
    } catch {
      return true;
    }
  });
  const what = `the listening socket on port ${l.port} (inode ${l.inode}) was made in cgroup ${folder}, not in ${target.folder} where ${target.label} runs`;
  if (missing.length === 0) {
    return { ...base, ok: true, detail: `${what}; the programs are effective there too, so it is covered (the hooks follow the socket's cgroup)` };
  }
  const common = commonParent(folder, target.folder);
  const root = (f: string) => (f === findCgroup2MountSafe() ? " (the cgroup v2 root: the whole host)" : "");
  const own = `or let the application open its listener itself inside ${target.folder}`;
  const fix =
    common === folder
      ? `attach where the socket was made, which contains the process's cgroup too: toa load --cgroup ${folder} --pin-dir /sys/fs/bpf/toa-parent --trust <CIDRs>${root(folder)}; ${own}`
      : `attach at a parent of both: toa load --cgroup ${common} --pin-dir /sys/fs/bpf/toa-parent --trust <CIDRs>${root(common)}; or where the socket was made (for a systemd .socket unit, its own cgroup): toa load --cgroup ${folder} --pin-dir /sys/fs/bpf/toa-socket --trust <CIDRs>; ${own}`;
  return {
    ...base,
    ok: false,
    detail: `${what}: the receiver's hooks follow the socket's cgroup, not the process's, and ${missing.map((m) => m.program).join(", ")} ${missing.length === 1 ? "is" : "are"} not effective there, so connections accepted on it keep the load balancer's address (systemd socket activation, inetd, or a listener opened before the process moved into its cgroup)`,
    fix,
  };
}
