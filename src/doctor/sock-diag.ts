/**
 * Which cgroup a listening socket belongs to, from the kernel: sock_diag's inet_diag dump reports,
 * per socket, the id of the cgroup it was made in (INET_DIAG_CGROUP_ID, Linux 5.7). The receiver's
 * hooks follow that cgroup, not the one of the process holding the socket: a listener made by systemd
 * (socket activation), inetd, or a process before it moved into a cgroup is covered only where it was
 * made.
 *
 *   struct inet_diag_req_v2 (56 bytes)                 struct inet_diag_msg (72 bytes) + attributes
 *   0 family 1 protocol 2 ext 3 pad 4 states           0 family 1 state 2 timer 3 retrans
 *   8 inet_diag_sockid (48: sport be16, dport be16,    4 inet_diag_sockid (48)
 *     src[16], dst[16], if u32, cookie u32[2])         52 expires 56 rqueue 60 wqueue 64 uid 68 inode
 */
import { readdirSync, readlinkSync, statSync } from "node:fs";
import { join } from "node:path";
import { netlink } from "../bpf/index.js";
import { AF_INET, AF_INET6, IPPROTO_TCP } from "../bpf/uapi.js";
import { procFdLinks, type FdLister } from "./proc.js";

const SOCK_DIAG_BY_FAMILY = 20;
const TCP_LISTEN = 10;
const INET_DIAG_CGROUP_ID = 21;

/** A listening TCP socket as inet_diag reports it. */
export interface DiagSocket {
  family: 4 | 6;
  port: number;
  inode: number;
  /** Undefined on kernels before 5.7 (no INET_DIAG_CGROUP_ID). */
  cgroupId?: bigint;
}

/** The inet_diag_req_v2 of a dump of listening TCP sockets of one family. */
export function inetDiagRequest(family: 4 | 6): Buffer {
  const b = Buffer.alloc(56);
  b.writeUInt8(family === 4 ? AF_INET : AF_INET6, 0);
  b.writeUInt8(IPPROTO_TCP, 1);
  b.writeUInt32LE(1 << TCP_LISTEN, 4);
  return b;
}

/** Decode one inet_diag_msg and its attributes. */
export function parseInetDiagMessage(payload: Buffer): DiagSocket {
  const attrs = netlink.parseAttrs(payload.subarray(72));
  const cg = attrs.get(INET_DIAG_CGROUP_ID);
  return {
    family: payload.readUInt8(0) === AF_INET6 ? 6 : 4,
    port: payload.readUInt16BE(4),
    inode: payload.readUInt32LE(68),
    cgroupId: cg && cg.length >= 8 ? cg.readBigUInt64LE(0) : undefined,
  };
}

/** Listening TCP sockets (both families) of the network namespace at `netns` (a /proc/PID/ns/net path), or ours. */
export function listeningSockets(netns?: string): DiagSocket[] {
  const same = netns === undefined || safeReadlink(netns) === safeReadlink("/proc/thread-self/ns/net");
  const sock = same ? netlink.NetlinkSocket.open(netlink.NETLINK_SOCK_DIAG) : netlink.NetlinkSocket.openIn(netns!, netlink.NETLINK_SOCK_DIAG);
  try {
    const out: DiagSocket[] = [];
    for (const family of [4, 6] as const) {
      const msgs = sock.dump(netlink.request(SOCK_DIAG_BY_FAMILY, 0, inetDiagRequest(family)), { command: "SOCK_DIAG_BY_FAMILY", detail: `listening TCP sockets (IPv${family})` });
      for (const m of msgs) if (m.type === SOCK_DIAG_BY_FAMILY && m.payload.length >= 72) out.push(parseInetDiagMessage(m.payload));
    }
    return out;
  } finally {
    sock.close();
  }
}

function safeReadlink(p: string): string {
  try {
    return readlinkSync(p);
  } catch {
    return "";
  }
}

/** Inodes of the sockets a process holds (its fd links `socket:[N]`). */
export function socketInodesOfPid(pid: number, fds: FdLister = procFdLinks): number[] {
  return fds(pid)
    .map((l) => /^socket:\[(\d+)\]$/.exec(l)?.[1])
    .filter((x): x is string => x !== undefined)
    .map(Number);
}

/** The cgroup v2 folder whose id (inode number on cgroupfs) is `id`, searched below `mount`. */
export function cgroupFolderById(id: bigint, mount: string): string | undefined {
  const walk = (dir: string): string | undefined => {
    try {
      if (statSync(dir, { bigint: true }).ino === id) return dir;
      for (const d of readdirSync(dir, { withFileTypes: true })) {
        if (!d.isDirectory()) continue;
        const found = walk(join(dir, d.name));
        if (found) return found;
      }
    } catch {
      /* removed meanwhile */
    }
    return undefined;
  };
  return walk(mount);
}

/** The listening sockets `pid` holds (on `port`, when given), each with the cgroup folder it was made in. */
export function listenersOfPid(pid: number, mount: string, port?: number, deps: { sockets?: (netns: string) => DiagSocket[]; fds?: FdLister } = {}): { socket: DiagSocket; folder?: string }[] {
  const inodes = new Set(socketInodesOfPid(pid, deps.fds));
  if (inodes.size === 0) return [];
  const all = (deps.sockets ?? listeningSockets)(`/proc/${pid}/ns/net`);
  return all
    .filter((s) => inodes.has(s.inode) && (port === undefined || s.port === port))
    .map((s) => ({ socket: s, folder: s.cgroupId === undefined ? undefined : cgroupFolderById(s.cgroupId, mount) }));
}
