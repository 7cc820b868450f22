/**
 * Attaching SCHED_CLS programs to a network device's ingress or egress (Linux 5.10+).
 *
 * tcx links first (Linux 6.6): BPF_LINK_CREATE with BPF_TCX_INGRESS/EGRESS. The attachment is a
 * bpf_link: it goes away with its last fd, so a crashed process leaves nothing attached. Without tcx,
 * classic tc over rtnetlink: a `clsact` qdisc and a direct-action `bpf` filter (tc-netlink.ts).
 * Classic filters outlive the process; they carry a name (TCA_BPF_NAME, default "<application>:<program>",
 * see setApplication) so that a restarted process can find and remove what a crash left
 * ({@link removeTcFilters}).
 *
 * Which one the kernel has is found by trying tcx on the first attach, never from the kernel version.
 * Everything acts in the calling process's network namespace: ifindexes are per namespace.
 */
import { closeSync } from "node:fs";
import { BpfError, currentApplication, errnoName, SyscallError, UnsupportedFeatureError } from "./errors.js";
import { BpfCommand, bpf, bpfTry, syscalls } from "./syscall.js";
import { AttachType, Program, ProgramType } from "./program.js";
import { exit, mov, R0 } from "./asm/index.js";
import { LinkCreateAttr, linkDetach, LinkUpdateAttr, objGet, objPin, ProgQueryAttr } from "./sys.js";
import { linkInfo, LinkType } from "./object.js";
import { zero } from "./struct.js";
import {
  addBpfFilter,
  deleteClsactIfEmpty,
  deleteFilter,
  ensureClsact,
  type FilterAddress,
  getLinkRequest,
  listFilters,
  replaceBpfFilter,
  parseLinkIndex,
  type TcDirection,
  type TcFilter,
  withRtnetlink,
} from "./tc-netlink.js";

export type { TcDirection, TcFilter } from "./tc-netlink.js";

/** How a program is attached: a tcx link, or a classic tc filter over netlink. */
export type TcMode = "tcx" | "netlink";

/** Verdicts of a tc program: defined with the kernel's other constants. */
export { TcAction } from "./uapi.js";

/**
 * Prefix of the default filter name, "<application>:" (setApplication; "bpf:" by default): how
 * {@link removeTcFilters} recognises the application's filters.
 */
export function tcFilterNamePrefix(): string {
  return `${currentApplication().name}:`;
}

/** Flags of tcx attachments (BPF_F_* in bpf.h), for placing a program relative to another. */
export const TcxFlag = { BEFORE: 1 << 3, AFTER: 1 << 4, ID: 1 << 5, LINK: 1 << 13 } as const;

/**
 * The BPF_LINK_CREATE attr of a tcx attachment (exported for unit tests of the layout):
 *
 *   0         4                8             12      16                     24                  32
 *   | prog_fd | target_ifindex | attach_type | flags | relative_fd / id | - | expected_revision |
 */
export function tcxLinkCreateAttr(programFd: number, ifindex: number, direction: TcDirection, flags = 0, relative = 0, expectedRevision = 0n): Buffer {
  const attachType = direction === "ingress" ? AttachType.TCX_INGRESS : AttachType.TCX_EGRESS;
  return LinkCreateAttr.encode({ progFd: programFd, targetFd: ifindex, attachType, flags, relative, expectedRevision });
}

/** Errnos of BPF_LINK_CREATE that mean "no tcx here": the attach type is unknown to this kernel. */
const NO_TCX = new Set([22 /* EINVAL */, 95 /* EOPNOTSUPP */, 524 /* ENOTSUPP */]);

/** Set once a tcx attempt found no tcx: later attaches go straight to netlink. */
let tcxMissing = false;

/** Options of {@link attachTc}. */
export interface TcAttachOptions {
  /** Force a mode; by default tcx, falling back to netlink when the kernel lacks it. */
  mode?: TcMode;
  /** netlink mode: filter priority 1..65535 (lower runs first); by default the kernel picks one that runs before the existing filters. */
  priority?: number;
  /** netlink mode: the filter's name (TCA_BPF_NAME); default `<application>:<program name>`. */
  name?: string;
}

/** Owners of clsact qdiscs this process created, by ifindex: removed when the last of them detaches and no filter is left. */
const ourClsact = new Map<number, number>();

/** A program attached to a device. `detach()` is idempotent. */
export class TcAttachment {
  private linkFd: number;
  private detached = false;

  constructor(
    readonly mode: TcMode,
    readonly ifindex: number,
    readonly direction: TcDirection,
    readonly programId: number,
    /** tcx: the link fd; netlink: -1. */
    linkFd: number,
    /** netlink: where the filter is (handle, priority, parent). */
    readonly filter?: FilterAddress & { name: string },
    private readonly ownsClsact = false,
  ) {
    this.linkFd = linkFd;
  }

  /** The tcx link fd (-1 in netlink mode or once detached). */
  get fd(): number {
    return this.linkFd;
  }

  /**
   * A tcx link pinned at `path` (by {@link pin}, maybe by another process): its attachment again. The
   * link must be a tcx link that is still attached (its device exists: a defunct link has ifindex 0).
   */
  static fromPinnedLink(path: string, direction: TcDirection = "ingress"): TcAttachment {
    const fd = objGet(path);
    try {
      const info = linkInfo(fd);
      if (info.type !== LinkType.TCX) throw new BpfError("BPF_ERR_INVALID_ARG", `${path}: a link of type ${info.type}, not a tcx link (${LinkType.TCX})`);
      if (info.ifindex === 0) throw new BpfError("BPF_ERR_INVALID_ARG", `${path}: its device is gone (the link is defunct)`);
      return new TcAttachment("tcx", info.ifindex, direction, info.programId, fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /**
   * The classic filter named `name` on a device, as an attachment (what an earlier process attached
   * in netlink mode); undefined when there is none. With several of that name, the first.
   */
  static findFilter(ifindex: number, name: string, direction: TcDirection = "ingress"): TcAttachment | undefined {
    let filters: TcFilter[];
    try {
      filters = withRtnetlink((sock) => listFilters(sock, ifindex, direction));
    } catch (e) {
      // No clsact qdisc on the device (EINVAL "Parent Qdisc doesn't exists"): no filter either.
      const errno = (e as { errnoName?: string }).errnoName;
      if (errno === "EINVAL" || errno === "ENOENT") return undefined;
      throw e;
    }
    const f = filters.find((x) => x.kind === "bpf" && x.name === name);
    return f ? new TcAttachment("netlink", ifindex, direction, f.programId ?? 0, -1, { ifindex, parent: f.parent, priority: f.priority, handle: f.handle, name }) : undefined;
  }

  /**
   * Swap the attached program for `next` with no moment without one: BPF_LINK_UPDATE for a tcx link,
   * a filter replace at the same handle and priority for a netlink filter (the chain order stays).
   */
  replace(next: Program): void {
    if (this.detached) throw new BpfError("BPF_ERR_CLOSED", "replace() on a detached tc attachment");
    checkOptions(this.ifindex, next, this.direction, {});
    if (this.mode === "tcx") {
      const attr = LinkUpdateAttr.encode({ linkFd: this.linkFd, newProgFd: next.fd, flags: 0, oldProgFd: 0 });
      bpf(BpfCommand.LINK_UPDATE, attr, attr.length, `tcx ${this.direction} of ifindex ${this.ifindex}`);
    } else {
      const f = this.filter!;
      withRtnetlink((sock) => replaceBpfFilter(sock, { ifindex: this.ifindex, direction: this.direction, priority: f.priority, programFd: next.fd, name: f.name }, f));
    }
  }

  /** Close the link fd without detaching (a pinned tcx link stays attached; netlink: nothing to close). */
  release(): void {
    if (this.linkFd >= 0) closeSync(this.linkFd);
    this.linkFd = -1;
    this.detached = true;
  }

  /** Pin the tcx link so that the attachment outlives this process (netlink filters persist by themselves). */
  pin(path: string): void {
    if (this.mode !== "tcx" || this.linkFd < 0) throw new BpfError("BPF_ERR_INVALID_ARG", "only a live tcx attachment can be pinned; netlink filters persist until removed");
    objPin(path, this.linkFd);
  }

  /**
   * Detach. tcx: BPF_LINK_DETACH (works even if the link is pinned elsewhere), then close the fd.
   * netlink: delete exactly our filter; a filter already gone (device or qdisc removed) is fine. The
   * clsact qdisc goes too if this process created it, no attachment of ours still uses it, and no
   * filter is left in it (someone else's filter keeps it).
   */
  detach(): void {
    if (this.detached) return;
    if (this.mode === "tcx") {
      linkDetach(this.linkFd);
      closeSync(this.linkFd);
      this.linkFd = -1;
      this.detached = true;
      return;
    }
    const filter = this.filter!;
    withRtnetlink((sock) => {
      deleteFilter(sock, filter);
      this.detached = true;
      if (!this.ownsClsact) return;
      const left = (ourClsact.get(this.ifindex) ?? 1) - 1;
      if (left > 0) return void ourClsact.set(this.ifindex, left);
      ourClsact.delete(this.ifindex);
      deleteClsactIfEmpty(sock, this.ifindex);
    });
  }
}

function checkOptions(ifindex: number, program: Program, direction: TcDirection, o: TcAttachOptions): void {
  if (!Number.isInteger(ifindex) || ifindex <= 0) throw new BpfError("BPF_ERR_INVALID_ARG", `ifindex must be a positive integer, got ${ifindex}`);
  if (direction !== "ingress" && direction !== "egress") throw new BpfError("BPF_ERR_INVALID_ARG", `direction must be "ingress" or "egress", got ${JSON.stringify(direction)}`);
  if (o.mode !== undefined && o.mode !== "tcx" && o.mode !== "netlink") throw new BpfError("BPF_ERR_INVALID_ARG", `mode must be "tcx" or "netlink", got ${JSON.stringify(o.mode)}`);
  if (o.priority !== undefined && (!Number.isInteger(o.priority) || o.priority < 1 || o.priority > 0xffff)) {
    throw new BpfError("BPF_ERR_INVALID_ARG", `priority must be an integer from 1 to 65535, got ${o.priority}`);
  }
  if (o.name !== undefined && (o.name.length === 0 || Buffer.byteLength(o.name) > 255)) throw new BpfError("BPF_ERR_INVALID_ARG", "name must be 1 to 255 bytes");
  // The kernel's own view, not the spec: a program opened from a pin has no trustworthy spec type.
  if (program.info.type !== ProgramType.SCHED_CLS) {
    throw new BpfError("BPF_ERR_INVALID_ARG", `program ${program.spec.name} has type ${program.info.type}; tc needs SCHED_CLS (${ProgramType.SCHED_CLS})`);
  }
}

/**
 * Attach a SCHED_CLS program to `device` (an ifindex, or a name looked up with {@link ifindexOf}).
 * tcx needs Linux 6.6; classic tc (netlink mode) 4.5 for clsact, and this toolkit targets 5.10+.
 */
export function attachTc(device: number | string, program: Program, direction: TcDirection, options: TcAttachOptions = {}): TcAttachment {
  const ifindex = typeof device === "string" ? ifindexOf(device) : device;
  checkOptions(ifindex, program, direction, options);
  const where = `${direction} of ifindex ${ifindex}`;
  if (options.mode === "tcx" || (options.mode === undefined && !tcxMissing)) {
    const r = bpfTry(BpfCommand.LINK_CREATE, tcxLinkCreateAttr(program.fd, ifindex, direction));
    if (r.ret >= 0) return new TcAttachment("tcx", ifindex, direction, program.info.id, r.ret);
    if (!NO_TCX.has(r.errno)) throw new SyscallError("BPF_LINK_CREATE", r.errno, `tcx ${where}`, r.errno === 19 ? "no device with this ifindex in this process's network namespace" : undefined);
    if (options.mode === "tcx") throw new UnsupportedFeatureError("tcx links (BPF_TCX_INGRESS/EGRESS)", "6.6", new SyscallError("BPF_LINK_CREATE", r.errno, `tcx ${where}`));
    tcxMissing = true;
  }
  const name = options.name ?? `${tcFilterNamePrefix()}${program.spec.name}`;
  return withRtnetlink((sock) => {
    const created = ensureClsact(sock, ifindex);
    if (created) ourClsact.set(ifindex, 0);
    const owns = ourClsact.has(ifindex);
    try {
      const at = addBpfFilter(sock, { ifindex, direction, priority: options.priority ?? 0, programFd: program.fd, name });
      if (owns) ourClsact.set(ifindex, (ourClsact.get(ifindex) ?? 0) + 1);
      return new TcAttachment("netlink", ifindex, direction, program.info.id, -1, { ...at, name }, owns);
    } catch (e) {
      if (created) {
        ourClsact.delete(ifindex);
        deleteClsactIfEmpty(sock, ifindex);
      }
      throw e;
    }
  });
}

/**
 * The ifindex of a network device in this process's network namespace, asked of rtnetlink. (Not
 * /sys/class/net: sysfs shows the namespace it was mounted in, which `nsenter --net` does not change.)
 */
export function ifindexOf(name: string): number {
  if (!/^[^\s/:]{1,15}$/.test(name)) throw new BpfError("BPF_ERR_INVALID_ARG", `device name must be 1-15 characters without spaces, '/' or ':', got ${JSON.stringify(name)}`);
  try {
    const msgs = withRtnetlink((sock) => sock.request(getLinkRequest(name), { command: "RTM_GETLINK", detail: `device ${name}` }));
    const index = msgs.map(parseLinkIndex).find((x) => x !== undefined);
    if (index === undefined) throw new BpfError("BPF_ERR_SYSCALL", `RTM_GETLINK (device ${name}): the kernel answered without the device`);
    return index;
  } catch (e) {
    const errno = (e as { errnoName?: string }).errnoName;
    if (errno === "ENODEV") throw new BpfError("BPF_ERR_INVALID_ARG", `no network device "${name}" in this network namespace (\`ip link show\` lists them)`, { cause: e });
    throw e;
  }
}

/** Classic tc filters on a device, one direction or both. */
export function listTcFilters(ifindex: number, direction?: TcDirection): TcFilter[] {
  const dirs: TcDirection[] = direction ? [direction] : ["ingress", "egress"];
  return withRtnetlink((sock) => dirs.flatMap((d) => listFilters(sock, ifindex, d)));
}

/**
 * Remove the bpf filters whose name starts with `namePrefix` (default {@link tcFilterNamePrefix}): what a crashed process
 * left in netlink mode. tcx links need no such cleanup. The clsact qdisc stays: after a crash nobody
 * knows who created it. Returns the filters removed.
 */
export function removeTcFilters(ifindex: number, options: { direction?: TcDirection; namePrefix?: string } = {}): TcFilter[] {
  const prefix = options.namePrefix ?? tcFilterNamePrefix();
  if (!prefix) throw new BpfError("BPF_ERR_INVALID_ARG", "namePrefix must not be empty: that would remove every bpf filter");
  const dirs: TcDirection[] = options.direction ? [options.direction] : ["ingress", "egress"];
  return withRtnetlink((sock) =>
    dirs.flatMap((d) => listFilters(sock, ifindex, d).filter((f) => f.kind === "bpf" && f.name?.startsWith(prefix) && deleteFilter(sock, f))),
  );
}

/** What is attached through tcx on one side of a device (BPF_PROG_QUERY with target_ifindex). */
export interface TcxQuery {
  programIds: number[];
  linkIds: number[];
  /** Changes with every attach or detach: pass it as expected revision to attach only on an unchanged list. */
  revision: bigint;
}

/**
 * Programs attached through tcx (Linux 6.6), in the order they run. On a kernel without tcx nothing
 * can be attached that way: the answer is an empty list (the query itself is refused with EINVAL
 * there, as the attach type is unknown).
 */
export function queryTcx(ifindex: number, direction: TcDirection, max = 64): TcxQuery {
  const progIds = Buffer.alloc(4 * max);
  const linkIds = Buffer.alloc(4 * max);
  const attachType = direction === "ingress" ? AttachType.TCX_INGRESS : AttachType.TCX_EGRESS;
  const sys = syscalls();
  const attr = ProgQueryAttr.encode({ ...zero(ProgQueryAttr), targetFd: ifindex, attachType, progIds: sys.address(progIds), progCnt: max, linkIds: sys.address(linkIds) });
  const r = bpfTry(BpfCommand.PROG_QUERY, attr);
  if (r.ret < 0) {
    if (r.errno === 22 /* EINVAL */ && !tcxAvailable()) return { programIds: [], linkIds: [], revision: 0n };
    throw new SyscallError("BPF_PROG_QUERY", r.errno, `tcx ${direction} of ifindex ${ifindex}`);
  }
  const out = ProgQueryAttr.decode(attr);
  const count = Math.min(out.progCnt, max);
  const ids = (b: Buffer) => Array.from({ length: count }, (_, i) => b.readUInt32LE(4 * i));
  return { programIds: ids(progIds), linkIds: ids(linkIds), revision: out.revision };
}

/**
 * Throws unless the kernel has tcx links (the "tcx" feature probe). ifindex 0 names no device: a
 * kernel with tcx answers ENODEV, one without it EINVAL (the attach type is unknown for SCHED_CLS).
 * Nothing gets attached anywhere.
 */
export function probeTcx(): void {
  const p = Program.load({ name: "probe_tcx", type: "SCHED_CLS", instructions: [mov(R0, -1), exit()] });
  try {
    const attr = tcxLinkCreateAttr(p.fd, 0, "ingress");
    const r = bpfTry(BpfCommand.LINK_CREATE, attr, attr.length);
    if (r.ret >= 0) closeSync(r.ret);
    else if (r.errno !== 19 /* ENODEV */) throw new BpfError("BPF_ERR_UNSUPPORTED", `BPF_LINK_CREATE (tcx) answered ${errnoName(r.errno)}`);
  } finally {
    p.close();
  }
}

let tcxProbed: boolean | undefined;
function tcxAvailable(): boolean {
  if (tcxProbed === undefined) {
    try {
      probeTcx();
      tcxProbed = true;
    } catch {
      tcxProbed = false;
    }
  }
  return tcxProbed;
}

/** Forget that tcx was missing (tests). */
export function resetTcxDetection(): void {
  tcxMissing = false;
}
