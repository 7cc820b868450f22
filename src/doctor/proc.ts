/**
 * What /proc says about a process or a listening port: the cgroup v2 folder a pid runs in, the
 * socket inodes listening on a TCP port, the pids holding a socket. Every function takes the text or
 * the directory reader it needs, so unit tests feed them fake inputs.
 */
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";

/** The path of the "0::" (cgroup v2) line of a /proc/PID/cgroup text, or undefined. */
export function cgroupV2Path(procPidCgroup: string): string | undefined {
  const line = procPidCgroup.split("\n").find((l) => l.startsWith("0::"));
  return line === undefined ? undefined : line.slice(3).trim() || "/";
}

/** The cgroup v2 folder of `pid` (mount + the "0::" path), or an explanation of why not. */
export function cgroupFolderOfPid(pid: number, mount: string, read: (path: string) => string = (p) => readFileSync(p, "utf8")): { folder: string } | { error: string } {
  let text: string;
  try {
    text = read(`/proc/${pid}/cgroup`);
  } catch (e) {
    return { error: `no process ${pid} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` };
  }
  const path = cgroupV2Path(text);
  if (path === undefined) return { error: `/proc/${pid}/cgroup has no cgroup v2 ("0::") line` };
  return { folder: path === "/" ? mount : join(mount, path) };
}

/**
 * Inodes of the sockets listening (state 0A) on `port` in /proc/net/tcp or tcp6 texts:
 * `sl local_address rem_address st ... uid timeout inode`, addresses as HEXADDR:HEXPORT.
 */
export function listeningInodes(port: number, tables: string[]): number[] {
  const out: number[] = [];
  for (const table of tables) {
    for (const line of table.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== "0A") continue;
      const local = f[1];
      const p = parseInt(local.slice(local.lastIndexOf(":") + 1), 16);
      const inode = Number(f[9]);
      if (p === port && inode > 0 && !out.includes(inode)) out.push(inode);
    }
  }
  return out;
}

/** Reads a process's fd links: (pid) => link targets such as "socket:[1234]". */
export type FdLister = (pid: number) => string[];

/** Numeric entries of /proc. */
export function listPids(readdir: (p: string) => string[] = (p) => readdirSync(p)): number[] {
  return readdir("/proc")
    .filter((n) => /^\d+$/.test(n))
    .map(Number);
}

/** The fd link targets of a process (empty when it exited or we may not look). */
export const procFdLinks: FdLister = (pid) => {
  try {
    return readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return "";
      }
    });
  } catch {
    return [];
  }
};

/** Pids holding one of the socket `inodes` (via their fd links `socket:[inode]`). */
export function pidsHoldingSockets(inodes: number[], pids: number[], fds: FdLister = procFdLinks): number[] {
  const wanted = new Set(inodes.map((i) => `socket:[${i}]`));
  return pids.filter((pid) => fds(pid).some((l) => wanted.has(l)));
}

/**
 * The TCP tables to search for a port: ours (/proc/net/tcp, tcp6), then one process's view per
 * other network namespace (/proc/PID/net/tcp), so a server inside a container or netns is found too.
 */
export function tcpTables(pids: number[] = listPids()): { netns: string; tables: string[] }[] {
  const read = (p: string): string => {
    try {
      return readFileSync(p, "utf8");
    } catch {
      return "";
    }
  };
  const ns = (pid: number | "self"): string => {
    try {
      return readlinkSync(`/proc/${pid}/ns/net`);
    } catch {
      return "";
    }
  };
  const own = ns("self");
  const out = [{ netns: own, tables: [read("/proc/net/tcp"), read("/proc/net/tcp6")] }];
  const seen = new Set([own]);
  for (const pid of pids) {
    const n = ns(pid);
    if (!n || seen.has(n)) continue;
    seen.add(n);
    out.push({ netns: n, tables: [read(`/proc/${pid}/net/tcp`), read(`/proc/${pid}/net/tcp6`)] });
  }
  return out;
}

/** Pids of the processes listening on TCP `port` (in any network namespace we can see). */
export function pidsListeningOn(port: number, pids: number[] = listPids(), tables = tcpTables(pids), fds: FdLister = procFdLinks): number[] {
  const inodes = tables.flatMap((t) => listeningInodes(port, t.tables));
  if (inodes.length === 0) return [];
  return pidsHoldingSockets(inodes, pids, fds);
}
