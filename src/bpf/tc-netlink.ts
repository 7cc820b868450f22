/**
 * Classic tc over rtnetlink, for kernels without tcx links (before 6.6): the `clsact` qdisc and `bpf`
 * filters in direct-action mode, as `tc qdisc add dev X clsact` and `tc filter add dev X ingress bpf
 * da fd N` do. Request builders and reply parsers are pure (unit-tested byte by byte); the few
 * operations below take an open {@link NetlinkSocket}.
 *
 * Constants: include/uapi/linux/rtnetlink.h (RTM_*, struct tcmsg, TCA_*), pkt_sched.h (TC_H_*),
 * pkt_cls.h (TCA_BPF_*), if_link.h (IFLA_IFNAME), if_ether.h (ETH_P_ALL).
 *
 *   struct tcmsg (20 bytes)
 *   0        1     4          8          12         16         20
 *   | family | pad | ifindex  | handle   | parent   | info     |
 *                                                    └ filters: prio << 16 | protocol (network order)
 */
import { BpfError } from "./errors.js";
import { attrString, nla, NlmFlag, type NetlinkMessage, type NetlinkRequest, NetlinkSocket, parseAttrs, request, type RequestContext } from "./netlink.js";

/** rtnetlink message types. */
export const Rtm = { NEWLINK: 16, GETLINK: 18, NEWQDISC: 36, DELQDISC: 37, NEWTFILTER: 44, DELTFILTER: 45, GETTFILTER: 46 } as const;

/** tc handles (pkt_sched.h): major:minor in one u32. */
export const TcHandle = {
  /** TC_H_CLSACT (= TC_H_INGRESS): the parent a clsact qdisc is added under. */
  CLSACT: 0xfffffff1,
  /** The clsact qdisc's own handle, TC_H_MAKE(TC_H_CLSACT, 0): `ffff:`. */
  CLSACT_QDISC: 0xffff0000,
  /** TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS): parent of ingress filters. */
  INGRESS: 0xfffffff2,
  /** TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS): parent of egress filters. */
  EGRESS: 0xfffffff3,
} as const;

/** Attributes of tc messages (enum TCA_*). */
const TCA_KIND = 1;
const TCA_OPTIONS = 2;
const TCA_CHAIN = 11;
/** Attributes of the bpf classifier (enum TCA_BPF_*). */
const TCA_BPF_FD = 6;
const TCA_BPF_NAME = 7;
const TCA_BPF_FLAGS = 8;
const TCA_BPF_TAG = 10;
const TCA_BPF_ID = 11;
/** The program's return value is the verdict (TC_ACT_*): no separate action needed. */
export const TCA_BPF_FLAG_ACT_DIRECT = 1;
const IFLA_IFNAME = 3;
/** Every protocol, as a filter's protocol; network byte order in tcm_info. */
const ETH_P_ALL = 0x0003;
const htons = (v: number) => ((v & 0xff) << 8) | ((v >> 8) & 0xff);

/** Which way the packets go through the device. */
export type TcDirection = "ingress" | "egress";

/** Parent handle of a direction's filters under clsact. */
export function filterParent(direction: TcDirection): number {
  return direction === "ingress" ? TcHandle.INGRESS : TcHandle.EGRESS;
}

/** struct tcmsg. */
export function tcmsg(ifindex: number, handle: number, parent: number, info: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeInt32LE(ifindex, 4);
  b.writeUInt32LE(handle >>> 0, 8);
  b.writeUInt32LE(parent >>> 0, 12);
  b.writeUInt32LE(info >>> 0, 16);
  return b;
}

/** tcm_info of a filter: priority in the upper half, protocol (ETH_P_ALL) in network order below. */
export function filterInfo(priority: number): number {
  return ((priority << 16) | htons(ETH_P_ALL)) >>> 0;
}

/** `tc qdisc add dev X clsact`: CREATE|EXCL, so an existing one answers EEXIST instead of being replaced. */
export function addClsactRequest(ifindex: number): NetlinkRequest {
  return request(Rtm.NEWQDISC, NlmFlag.CREATE | NlmFlag.EXCL, tcmsg(ifindex, TcHandle.CLSACT_QDISC, TcHandle.CLSACT, 0), [nla.string(TCA_KIND, "clsact")]);
}

/** `tc qdisc del dev X clsact` (removes every classic filter under it). */
export function deleteClsactRequest(ifindex: number): NetlinkRequest {
  return request(Rtm.DELQDISC, 0, tcmsg(ifindex, TcHandle.CLSACT_QDISC, TcHandle.CLSACT, 0), [nla.string(TCA_KIND, "clsact")]);
}

/** What a new bpf filter is. */
export interface BpfFilterSpec {
  ifindex: number;
  direction: TcDirection;
  /** 1..65535; 0 lets the kernel pick (below the existing ones: it runs first). */
  priority: number;
  programFd: number;
  /** TCA_BPF_NAME: shown by `tc filter show`, and how a later process finds its leftovers. */
  name: string;
}

/**
 * `tc filter add dev X ingress prio P protocol all bpf da fd N name NAME`. Handle 0: the kernel picks
 * one; ECHO sends the created filter back, with its handle and priority, before the ACK.
 */
export function addBpfFilterRequest(f: BpfFilterSpec): NetlinkRequest {
  return request(Rtm.NEWTFILTER, NlmFlag.CREATE | NlmFlag.EXCL | NlmFlag.ECHO, tcmsg(f.ifindex, 0, filterParent(f.direction), filterInfo(f.priority)), [
    nla.string(TCA_KIND, "bpf"),
    nla.nested(TCA_OPTIONS, [nla.u32(TCA_BPF_FD, f.programFd), nla.string(TCA_BPF_NAME, f.name), nla.u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT)]),
  ]);
}

/**
 * `tc filter replace dev X ingress prio P handle H bpf da fd N name NAME`: the program of the filter
 * at `at` is swapped for `f.programFd` in place (cls_bpf replaces it under RCU: every packet meets
 * either the old or the new program, none meets no filter).
 */
export function replaceBpfFilterRequest(f: BpfFilterSpec, at: FilterAddress): NetlinkRequest {
  if (at.handle === 0) throw new BpfError("BPF_ERR_INVALID_ARG", "refusing to replace filter handle 0: name the filter's own handle");
  return request(Rtm.NEWTFILTER, NlmFlag.CREATE | NlmFlag.REPLACE | NlmFlag.ECHO, tcmsg(f.ifindex, at.handle, at.parent, filterInfo(at.priority)), [
    nla.string(TCA_KIND, "bpf"),
    nla.nested(TCA_OPTIONS, [nla.u32(TCA_BPF_FD, f.programFd), nla.string(TCA_BPF_NAME, f.name), nla.u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT)]),
  ]);
}

/** Where exactly one filter is: handle, priority and parent (a handle of 0 would mean all filters at that priority). */
export interface FilterAddress {
  ifindex: number;
  parent: number;
  priority: number;
  handle: number;
}

/** Delete exactly one bpf filter. */
export function deleteFilterRequest(f: FilterAddress): NetlinkRequest {
  if (f.handle === 0) throw new BpfError("BPF_ERR_INVALID_ARG", "refusing to delete filter handle 0: it would delete every filter at that priority");
  return request(Rtm.DELTFILTER, 0, tcmsg(f.ifindex, f.handle, f.parent, filterInfo(f.priority)), [nla.string(TCA_KIND, "bpf")]);
}

/** Dump the filters of one parent (`tc filter show dev X ingress`). */
export function dumpFiltersRequest(ifindex: number, parent: number): NetlinkRequest {
  return request(Rtm.GETTFILTER, 0, tcmsg(ifindex, 0, parent, 0));
}

/** Look a device up by name (`ip link show NAME`), in the caller's network namespace. */
export function getLinkRequest(name: string): NetlinkRequest {
  return request(Rtm.GETLINK, 0, Buffer.alloc(16) /* struct ifinfomsg, index 0: by name */, [nla.string(IFLA_IFNAME, name)]);
}

/** ifi_index of an RTM_NEWLINK reply. */
export function parseLinkIndex(msg: NetlinkMessage): number | undefined {
  return msg.type === Rtm.NEWLINK && msg.payload.length >= 8 ? msg.payload.readInt32LE(4) : undefined;
}

/** One classic tc filter as the kernel reports it. */
export interface TcFilter extends FilterAddress {
  direction: TcDirection;
  /** Protocol in host order (3: ETH_P_ALL). */
  protocol: number;
  kind: string;
  chain: number;
  /** bpf filters: TCA_BPF_NAME, the program's id and tag, and whether it is in direct-action mode. */
  name?: string;
  programId?: number;
  programTag?: string;
  directAction?: boolean;
}

/**
 * Parse one RTM_NEWTFILTER. The dump also carries one message per classifier instance (handle 0, no
 * options): those are not filters and give undefined.
 */
export function parseFilter(msg: NetlinkMessage): TcFilter | undefined {
  if (msg.type !== Rtm.NEWTFILTER || msg.payload.length < 20) return undefined;
  const p = msg.payload;
  const handle = p.readUInt32LE(8);
  if (handle === 0) return undefined;
  const parent = p.readUInt32LE(12);
  const info = p.readUInt32LE(16);
  const attrs = parseAttrs(p.subarray(20));
  const f: TcFilter = {
    ifindex: p.readInt32LE(4),
    handle,
    parent,
    direction: parent === TcHandle.EGRESS ? "egress" : "ingress",
    priority: info >>> 16,
    protocol: htons(info & 0xffff),
    kind: attrString(attrs.get(TCA_KIND)) ?? "",
    chain: attrs.get(TCA_CHAIN)?.readUInt32LE(0) ?? 0,
  };
  const options = attrs.get(TCA_OPTIONS);
  if (f.kind === "bpf" && options) {
    const o = parseAttrs(options);
    f.name = attrString(o.get(TCA_BPF_NAME));
    f.programId = o.get(TCA_BPF_ID)?.readUInt32LE(0);
    f.programTag = o.get(TCA_BPF_TAG)?.toString("hex");
    f.directAction = ((o.get(TCA_BPF_FLAGS)?.readUInt32LE(0) ?? 0) & TCA_BPF_FLAG_ACT_DIRECT) !== 0;
  }
  return f;
}

const where = (ifindex: number, direction?: TcDirection) => `ifindex ${ifindex}${direction ? ` ${direction}` : ""}`;

const deviceHints = { ENODEV: "no device with this ifindex in this process's network namespace (ifindexes are per namespace)" };

/** Add the clsact qdisc; true when this call created it, false when one was there already. */
export function ensureClsact(sock: NetlinkSocket, ifindex: number): boolean {
  try {
    sock.request(addClsactRequest(ifindex), {
      command: "RTM_NEWQDISC",
      detail: `clsact qdisc on ${where(ifindex)}`,
      hints: {
        ...deviceHints,
        ENOENT: "this kernel has no clsact qdisc (CONFIG_NET_SCH_INGRESS, module sch_ingress)",
        EINVAL: "another root or ingress qdisc occupies the clsact slot (`tc qdisc show dev X`: an `ingress` qdisc must be removed first)",
      },
    });
    return true;
  } catch (e) {
    if ((e as { errnoName?: string }).errnoName === "EEXIST") return false;
    throw e;
  }
}

/** Add a bpf filter; returns where it landed (the kernel picked the handle, maybe the priority). */
export function addBpfFilter(sock: NetlinkSocket, f: BpfFilterSpec): FilterAddress {
  const ctx: RequestContext = {
    command: "RTM_NEWTFILTER",
    detail: `bpf filter ${JSON.stringify(f.name)} on ${where(f.ifindex, f.direction)}${f.priority ? ` prio ${f.priority}` : ""}`,
    hints: {
      ...deviceHints,
      // Same priority is no conflict (a second filter joins that priority with its own handle); EEXIST
      // would take a handle collision, and we let the kernel pick handles.
      EEXIST: "a filter already holds this handle and priority (`tc filter show dev X ingress`)",
      ENOENT: "this kernel has no bpf classifier (CONFIG_NET_CLS_BPF, module cls_bpf), or the clsact qdisc went away",
      EINVAL: "the kernel refused the filter: a filter of another kind may hold this priority, or the program is not SCHED_CLS",
    },
  };
  const echoed = sock.request(addBpfFilterRequest(f), ctx).map(parseFilter).find((x) => x !== undefined);
  if (echoed) return { ifindex: f.ifindex, parent: echoed.parent, priority: echoed.priority, handle: echoed.handle };
  // No echo (not seen on any kernel, but cheap to cover): find it by name among the dump.
  const found = listFilters(sock, f.ifindex, f.direction).find((x) => x.name === f.name && (f.priority === 0 || x.priority === f.priority));
  if (!found) throw new BpfError("BPF_ERR_SYSCALL", `${ctx.command} (${ctx.detail}): the kernel acknowledged the filter but it is not in the dump`);
  return found;
}

/** Swap the program of the bpf filter at `at` (see {@link replaceBpfFilterRequest}). */
export function replaceBpfFilter(sock: NetlinkSocket, f: BpfFilterSpec, at: FilterAddress): void {
  sock.request(replaceBpfFilterRequest(f, at), {
    command: "RTM_NEWTFILTER",
    detail: `replace bpf filter ${JSON.stringify(f.name)} handle ${at.handle} prio ${at.priority} on ${where(f.ifindex, f.direction)}`,
    hints: { ...deviceHints, ENOENT: "the filter or its clsact qdisc went away meanwhile", EINVAL: "the kernel refused the new program for this filter (not SCHED_CLS?)" },
  });
}

/** Delete one filter; false when it was already gone (device, qdisc or filter removed meanwhile). */
export function deleteFilter(sock: NetlinkSocket, f: FilterAddress): boolean {
  try {
    sock.request(deleteFilterRequest(f), {
      command: "RTM_DELTFILTER",
      detail: `bpf filter handle ${f.handle} prio ${f.priority} on ${where(f.ifindex)}`,
      hints: deviceHints,
    });
    return true;
  } catch (e) {
    const name = (e as { errnoName?: string }).errnoName;
    // ENOENT: no such filter; ENODEV: no such device; EINVAL "Parent Qdisc doesn't exists": clsact gone.
    if (name === "ENOENT" || name === "ENODEV") return false;
    if (name === "EINVAL" && /qdisc/i.test((e as Error).message)) return false;
    throw e;
  }
}

/** Every classic filter of one direction. */
export function listFilters(sock: NetlinkSocket, ifindex: number, direction: TcDirection): TcFilter[] {
  const msgs = sock.dump(dumpFiltersRequest(ifindex, filterParent(direction)), {
    command: "RTM_GETTFILTER",
    detail: `filters on ${where(ifindex, direction)}`,
    hints: deviceHints,
  });
  return msgs.map(parseFilter).filter((x): x is TcFilter => x !== undefined);
}

/**
 * Remove the clsact qdisc only when no classic filter is left in either direction. Between the dump
 * and the delete another process could add a filter, which the delete would take with it: callers
 * only do this for a qdisc they created themselves.
 */
export function deleteClsactIfEmpty(sock: NetlinkSocket, ifindex: number): boolean {
  try {
    if (listFilters(sock, ifindex, "ingress").length || listFilters(sock, ifindex, "egress").length) return false;
    sock.request(deleteClsactRequest(ifindex), { command: "RTM_DELQDISC", detail: `clsact qdisc on ${where(ifindex)}`, hints: deviceHints });
    return true;
  } catch (e) {
    const name = (e as { errnoName?: string }).errnoName;
    if (name === "ENOENT" || name === "ENODEV" || name === "EINVAL") return false; // already gone
    throw e;
  }
}

/** Run `fn` with a fresh rtnetlink socket. */
export function withRtnetlink<T>(fn: (sock: NetlinkSocket) => T): T {
  const sock = NetlinkSocket.open();
  try {
    return fn(sock);
  } finally {
    sock.close();
  }
}
