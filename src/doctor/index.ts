/**
 * `toa doctor`: every check in order, for the receiver at `pinDir` and, given a pid or a port, for the
 * cgroup the application runs in. `ready` is true when no check failed (warnings allowed).
 */
import { readFileSync } from "node:fs";
import { findCgroup2Mount } from "../bpf/cgroup.js";
import { receiverStatus, type Status } from "../agent/status.js";
import {
  attachedCheck,
  bpffsCheck,
  cgroup2Check,
  type Check,
  type DescribeAttached,
  featureChecks,
  foreignCheck,
  isReady,
  kernelCheck,
  loadedCheck,
  modulesCheck,
  privilegesCheck,
  type Listener,
  socketCgroupCheck,
  type Target,
  trustCheck,
} from "./checks.js";
import { listenersOfPid } from "./sock-diag.js";
import { cgroupFolderOfPid, pidsListeningOn } from "./proc.js";

export * from "./checks.js";
export * from "./proc.js";

export interface DoctorOptions {
  pinDir: string;
  pid?: number;
  port?: number;
}

export interface DoctorReport {
  ready: boolean;
  checks: Check[];
}

/** Seams for tests. */
export interface DoctorDeps {
  status?: (pinDir: string) => Status;
  describe?: DescribeAttached;
  pidsListeningOn?: (port: number) => number[];
  /** The listening sockets a pid holds (on a port) and the cgroup folders they were made in. */
  listeners?: (pid: number, mount: string, port?: number) => Listener[];
}

/** Listeners from the kernel's sock_diag; none (no check) when it can't be asked. */
function kernelListeners(pid: number, mount: string, port?: number): Listener[] {
  try {
    return listenersOfPid(pid, mount, port).map((l) => ({ port: l.socket.port, inode: l.socket.inode, folder: l.folder }));
  } catch {
    return [];
  }
}

/** Find the application's cgroup folder(s) from --pid or --port; a failed check when it can't. */
function targets(o: DoctorOptions, mount: string, deps: DoctorDeps): Target[] | Check {
  const title = o.port !== undefined ? `attached, port ${o.port}` : `attached, pid ${o.pid}`;
  let pids: { pid: number; label: string }[];
  if (o.port !== undefined) {
    const found = (deps.pidsListeningOn ?? pidsListeningOn)(o.port);
    if (found.length === 0) {
      return {
        id: "attached",
        title,
        ok: false,
        detail: `no process listens on TCP port ${o.port} (searched /proc/net/tcp and tcp6 of every network namespace this process can see)`,
        fix: "start the application first, or give its pid with --pid N",
      };
    }
    pids = found.map((pid) => ({ pid, label: `port ${o.port} pid ${pid}` }));
  } else {
    pids = [{ pid: o.pid!, label: `pid ${o.pid}` }];
  }
  const out: Target[] = [];
  for (const p of pids) {
    const r = cgroupFolderOfPid(p.pid, mount);
    if ("error" in r) return { id: "attached", title, ok: false, detail: r.error, fix: "check the pid (ps -p PID), or give --port N" };
    // Workers of one server usually share a folder: check each folder once.
    if (!out.some((t) => t.folder === r.folder)) out.push({ pid: p.pid, folder: r.folder, label: p.label });
  }
  return out;
}

/** Run every check. */
export function runDoctor(o: DoctorOptions, deps: DoctorDeps = {}): DoctorReport {
  const mountinfo = readFileSync("/proc/self/mountinfo", "utf8");
  const checks: Check[] = [kernelCheck(), ...featureChecks(), cgroup2Check(mountinfo), bpffsCheck(mountinfo, o.pinDir), privilegesCheck(), modulesCheck()];
  let status: Status;
  try {
    status = (deps.status ?? receiverStatus)(o.pinDir);
  } catch (e) {
    checks.push({ id: "loaded", title: "receiver loaded", ok: false, detail: `cannot read the pins at ${o.pinDir}: ${(e as Error).message}`, fix: "run `toa doctor` as root" });
    return { ready: false, checks };
  }
  const loaded = loadedCheck(status);
  checks.push(loaded);
  const trust = trustCheck(status);
  if (trust) checks.push(trust);

  let mount: string | undefined;
  try {
    mount = findCgroup2Mount(mountinfo);
  } catch {
    /* reported by cgroup2Check */
  }
  let foreignFolder = status.settings?.cgroup ?? mount;
  if ((o.pid !== undefined || o.port !== undefined) && mount) {
    const t = targets(o, mount, deps);
    if (Array.isArray(t)) {
      const attached = t.map((x) => attachedCheck(x, status, deps.describe));
      checks.push(...attached);
      for (const x of t) {
        const c = socketCgroupCheck(x, (deps.listeners ?? kernelListeners)(x.pid, mount, o.port), status, deps.describe);
        if (c) checks.push(c);
      }
      foreignFolder = t[0]?.folder ?? foreignFolder;
      // Programs effective for the application count, even when they were pinned elsewhere.
      if (loaded.ok === false && !status.settings && attached.every((a) => a.ok === true)) {
        loaded.ok = "warn";
        loaded.detail += `, but the programs are effective for ${t.map((x) => x.label).join(", ")}: loaded with another --pin-dir?`;
        loaded.fix = "pass the --pin-dir it was loaded with (ls /sys/fs/bpf) to see its settings and trust list";
      }
    } else checks.push(t);
  }
  if (foreignFolder) checks.push(foreignCheck(foreignFolder, deps.describe));
  return { ready: isReady(checks), checks };
}

/** Text report: one line per check, the fix under each one that is not ok. */
export function formatReport(r: DoctorReport): string {
  const mark = (ok: Check["ok"]): string => (ok === true ? "ok  " : ok === "warn" ? "warn" : "FAIL");
  const width = Math.min(28, Math.max(...r.checks.map((c) => c.title.length)));
  const lines: string[] = [];
  for (const c of r.checks) {
    lines.push(`${mark(c.ok)}  ${c.title.padEnd(width)}  ${c.detail}`);
    if (c.ok !== true && c.fix) lines.push(`${" ".repeat(6 + width + 2)}fix: ${c.fix}`);
  }
  const failed = r.checks.filter((c) => c.ok === false).length;
  const warned = r.checks.filter((c) => c.ok === "warn").length;
  lines.push("");
  lines.push(
    r.ready
      ? `ready${warned ? ` (${warned} warning${warned > 1 ? "s" : ""})` : ""}${r.checks.some((c) => c.id === "attached") ? ": the application sees client addresses from TOA" : ""}`
      : `not ready: ${failed} check${failed > 1 ? "s" : ""} failed${warned ? `, ${warned} warning${warned > 1 ? "s" : ""}` : ""}; apply the fixes above and run toa doctor again`,
  );
  return lines.join("\n");
}
