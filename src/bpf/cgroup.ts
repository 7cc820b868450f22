/**
 * Attaching programs to cgroup v2 folders. `bpf_link` (Linux 5.7) first: the attachment is an object
 * that can be pinned, updated atomically and that goes away with its last reference. Without it,
 * BPF_PROG_ATTACH with ALLOW_MULTI (and REPLACE for atomic swaps).
 */
import { closeSync, openSync, readFileSync } from "node:fs";
import { BpfError, SyscallError } from "./errors.js";
import { BpfCommand, bpf, bpfTry, syscalls } from "./syscall.js";
import { AttachType, type AttachTypeName, type Program, programInfo } from "./program.js";
import { GetFdByIdAttr, LinkCreateAttr, LinkUpdateAttr, linkDetach, objGet, objPin, ProgAttachAttr, ProgQueryAttr } from "./sys.js";
import { zero } from "./struct.js";

/** Attach flags of BPF_PROG_ATTACH. */
export const AttachFlag = { ALLOW_OVERRIDE: 1, ALLOW_MULTI: 2, REPLACE: 4 } as const;

/**
 * The cgroup v2 mount point, read from /proc/self/mountinfo (fstype cgroup2). On hybrid layouts it is
 * /sys/fs/cgroup/unified, on unified ones /sys/fs/cgroup: never assume.
 */
export function findCgroup2Mount(mountinfo = readFileSync("/proc/self/mountinfo", "utf8"), filesystems = readOr("/proc/filesystems")): string {
  for (const line of mountinfo.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(" ")[0];
    if (fstype === "cgroup2") return unescapeMountPath(line.slice(0, sep).split(" ")[4]);
  }
  // The kernel has it but this process can't see it: `ip netns exec` mounts a fresh sysfs on /sys
  // for the namespace, which hides everything mounted below it (cgroup2, bpffs).
  if (/\bcgroup2\b/.test(filesystems)) {
    throw new BpfError(
      "BPF_ERR_CGROUP",
      "no cgroup v2 mount is visible to this process, though the kernel has cgroup v2 (/proc/filesystems): `ip netns exec` remounts /sys and hides /sys/fs/cgroup; run the command under `nsenter --net=/run/netns/NAME` instead (it switches only the network namespace), or mount it: `mount -t cgroup2 none /sys/fs/cgroup`",
    );
  }
  throw new BpfError("BPF_ERR_CGROUP", "no cgroup v2 mount in /proc/self/mountinfo: mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified` (or boot with systemd.unified_cgroup_hierarchy=1)");
}

function readOr(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Open a cgroup v2 folder (O_RDONLY on a directory); the caller closes the fd. */
export function openCgroup(path: string): number {
  try {
    return openSync(path, "r");
  } catch (e) {
    throw new BpfError("BPF_ERR_CGROUP", `cannot open cgroup ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** How a program is attached. */
export type AttachMode = "link" | "multi";

/** One program attached to a cgroup. Close = detach, unless the link is pinned. */
export class CgroupAttachment {
  private linkFd: number;
  private closed = false;
  constructor(
    readonly cgroupPath: string,
    readonly attachType: AttachTypeName,
    readonly mode: AttachMode,
    linkFd: number,
    private programFd: number,
  ) {
    this.linkFd = linkFd;
  }

  /** Link fd (mode "link"). */
  get fd(): number {
    return this.linkFd;
  }

  /**
   * Swap the program atomically: no moment where no program runs. LINK_UPDATE for links; for
   * multi attachments PROG_ATTACH with REPLACE.
   */
  replace(next: Program): void {
    if (this.mode === "link") {
      const attr = LinkUpdateAttr.encode({ linkFd: this.linkFd, newProgFd: next.fd, flags: 0, oldProgFd: 0 });
      bpf(BpfCommand.LINK_UPDATE, attr, attr.length, `${this.attachType} on ${this.cgroupPath}`);
    } else {
      const cg = openCgroup(this.cgroupPath);
      try {
        progAttach(cg, next.fd, this.attachType, AttachFlag.ALLOW_MULTI | AttachFlag.REPLACE, this.programFd);
      } finally {
        closeSync(cg);
      }
    }
    this.programFd = next.fd;
  }

  /** Pin the link so the attachment outlives this process (mode "link" only). */
  pin(path: string): void {
    if (this.mode !== "link") throw new BpfError("BPF_ERR_INVALID_ARG", "only bpf_link attachments can be pinned; multi attachments persist by themselves");
    objPin(path, this.linkFd);
  }

  /** Detach now, even when pinned elsewhere (BPF_LINK_DETACH), and release our fds. */
  detach(): void {
    if (this.closed) return;
    if (this.mode === "link") {
      linkDetach(this.linkFd);
    } else {
      const cg = openCgroup(this.cgroupPath);
      try {
        progDetach(cg, this.programFd, this.attachType);
      } finally {
        closeSync(cg);
      }
    }
    this.close();
  }

  /** Release the link fd. An unpinned link detaches when its last fd closes; multi attachments stay. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.mode === "link" && this.linkFd >= 0) closeSync(this.linkFd);
    this.linkFd = -1;
  }
}

function linkCreate(cgroupFd: number, programFd: number, attachType: AttachTypeName): { ret: number; errno: number } {
  const attr = LinkCreateAttr.encode({ ...zero(LinkCreateAttr), progFd: programFd, targetFd: cgroupFd, attachType: AttachType[attachType] });
  // Cgroup links use no member of the union: the attr ends where it starts.
  return bpfTry(BpfCommand.LINK_CREATE, attr, LinkCreateAttr.relative);
}

/** BPF_PROG_ATTACH. */
export function progAttach(cgroupFd: number, programFd: number, attachType: AttachTypeName, flags: number, replaceFd = 0): void {
  const attr = ProgAttachAttr.encode({ targetFd: cgroupFd, attachBpfFd: programFd, attachType: AttachType[attachType], attachFlags: flags, replaceBpfFd: replaceFd });
  bpf(BpfCommand.PROG_ATTACH, attr, attr.length, attachType);
}

/** BPF_PROG_DETACH of one program. */
export function progDetach(cgroupFd: number, programFd: number, attachType: AttachTypeName): void {
  const attr = ProgAttachAttr.encode({ targetFd: cgroupFd, attachBpfFd: programFd, attachType: AttachType[attachType], attachFlags: 0, replaceBpfFd: 0 });
  bpf(BpfCommand.PROG_DETACH, attr, ProgAttachAttr.replaceBpfFd, attachType);
}

/** Attach a program to a cgroup folder: bpf_link when the kernel has it, else ALLOW_MULTI. */
export function attachCgroup(cgroupPath: string, program: Program, attachType: AttachTypeName, mode?: AttachMode): CgroupAttachment {
  const cg = openCgroup(cgroupPath);
  try {
    if (mode !== "multi") {
      const r = linkCreate(cg, program.fd, attachType);
      if (r.ret >= 0) return new CgroupAttachment(cgroupPath, attachType, "link", r.ret, program.fd);
      // EINVAL: no bpf_link for cgroups (before 5.7); other errors are real.
      if (mode === "link" || r.errno !== 22) throw new SyscallError("BPF_LINK_CREATE", r.errno, `${attachType} on ${cgroupPath}`);
    }
    progAttach(cg, program.fd, attachType, AttachFlag.ALLOW_MULTI);
    return new CgroupAttachment(cgroupPath, attachType, "multi", -1, program.fd);
  } finally {
    closeSync(cg);
  }
}

/** Open a pinned link. */
export function linkFromPin(path: string, cgroupPath: string, attachType: AttachTypeName, programFd = -1): CgroupAttachment {
  return new CgroupAttachment(cgroupPath, attachType, "link", objGet(path), programFd);
}

/** What is attached to a cgroup for one attach type (BPF_PROG_QUERY). */
export interface CgroupQuery {
  attachFlags: number;
  programIds: number[];
}

/** Programs attached at `cgroupPath` (`effective`: also those inherited from ancestors). */
export function queryCgroup(cgroupPath: string, attachType: AttachTypeName, effective = false): CgroupQuery {
  const cg = openCgroup(cgroupPath);
  try {
    const ids = Buffer.alloc(4 * 64);
    const attr = ProgQueryAttr.encode({ ...zero(ProgQueryAttr), targetFd: cg, attachType: AttachType[attachType], queryFlags: effective ? 1 : 0, progIds: syscalls().address(ids), progCnt: 64 });
    // Cgroups: up to prog_attach_flags (link_ids and the revision are tcx's, Linux 6.6).
    bpf(BpfCommand.PROG_QUERY, attr, ProgQueryAttr.linkIds, `${attachType} on ${cgroupPath}`);
    const { progCnt: count, attachFlags } = ProgQueryAttr.decode(attr);
    return {
      attachFlags,
      programIds: Array.from({ length: Math.min(count, 64) }, (_, i) => ids.readUInt32LE(4 * i)),
    };
  } finally {
    closeSync(cg);
  }
}

/** Name and id of each program attached at a cgroup, for status displays. */
export function describeAttached(cgroupPath: string, attachType: AttachTypeName, effective = false): { id: number; name: string }[] {
  return queryCgroup(cgroupPath, attachType, effective).programIds.map((id) => {
    const r = bpfTry(BpfCommand.PROG_GET_FD_BY_ID, GetFdByIdAttr.encode({ id, nextId: 0, openFlags: 0 }));
    if (r.ret < 0) return { id, name: "?" };
    try {
      return { id, name: programInfo(r.ret).name };
    } finally {
      closeSync(r.ret);
    }
  });
}
