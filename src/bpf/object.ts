/**
 * What a bpffs pin holds: a map, a program or a link, with the kernel's facts about it. Used to make
 * sure a pin is the object we expect before removing it (never unlink what another tool pinned).
 *
 * The kind comes from the fd's anonymous inode name (`anon_inode:bpf-map`, `bpf-prog`, `bpf-link`,
 * as /proc/self/fd shows it); the details from BPF_OBJ_GET_INFO_BY_FD.
 */
import { closeSync, readlinkSync } from "node:fs";
import { mapInfo, type MapInfo } from "./map.js";
import { LinkInfoStruct, objGet, objInfo } from "./sys.js";
import { programInfo, type ProgramInfo } from "./program.js";
import { SyscallError } from "./errors.js";

/** Link types (enum bpf_link_type). */
export const LinkType = { RAW_TRACEPOINT: 1, TRACING: 2, CGROUP: 3, ITER: 4, NETNS: 5, XDP: 6, PERF_EVENT: 7, KPROBE_MULTI: 8, STRUCT_OPS: 9, NETFILTER: 10, TCX: 11 } as const;

/** Kernel facts about a link (struct bpf_link_info; the cgroup member of its union). */
export interface LinkInfo {
  type: number;
  id: number;
  programId: number;
  /** Cgroup links: the cgroup's id (its inode number on cgroupfs); 0 once the cgroup went away (the link is defunct). */
  cgroupId: bigint;
  /** Cgroup links: enum bpf_attach_type. */
  attachType: number;
  /** tcx links: the device's ifindex (the union's first u32); 0 once the device went away (defunct). */
  ifindex: number;
}

/** Read bpf_link_info for a link fd. */
export function linkInfo(fd: number): LinkInfo {
  const { type, id, progId, cgroupId, attachType } = objInfo(fd, LinkInfoStruct);
  // The union's first member: the cgroup id (u64) for cgroup links, { ifindex, attach_type } for tcx.
  const ifindex = type === LinkType.TCX ? Number(cgroupId & 0xffffffffn) : 0;
  return { type, id, programId: progId, cgroupId, attachType, ifindex };
}

/** What a pin holds. */
export type PinnedObject =
  | { kind: "map"; info: MapInfo }
  | { kind: "program"; info: ProgramInfo }
  | { kind: "link"; info: LinkInfo }
  | { kind: "other"; what: string };

/** The kind of BPF object an fd refers to, from its anonymous inode's name. */
export function objectKind(fd: number): "map" | "program" | "link" | string {
  let target: string;
  try {
    target = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return "unknown";
  }
  if (target === "anon_inode:bpf-map") return "map";
  if (target === "anon_inode:bpf-prog") return "program";
  if (target === "anon_inode:bpf-link" || target === "anon_inode:bpf_link") return "link";
  return target;
}

/**
 * Open the pin at `path` and say what it is; undefined when `path` is not a pin BPF_OBJ_GET can open
 * (a plain file, a folder, nothing there).
 */
export function inspectPin(path: string): PinnedObject | undefined {
  let fd: number;
  try {
    fd = objGet(path);
  } catch (e) {
    if (e instanceof SyscallError) return undefined;
    throw e;
  }
  try {
    const kind = objectKind(fd);
    if (kind === "map") return { kind, info: mapInfo(fd) };
    if (kind === "program") return { kind, info: programInfo(fd) };
    if (kind === "link") return { kind, info: linkInfo(fd) };
    return { kind: "other", what: kind };
  } finally {
    closeSync(fd);
  }
}
