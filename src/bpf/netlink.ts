/**
 * Netlink, as far as the toolkit needs it to talk to rtnetlink (tc qdiscs and filters, link names):
 * the message and attribute codec, ACK/error parsing with the kernel's extended ACK message, and a
 * blocking request/reply socket. The socket calls go through the syscall backend (syscall.ts), so
 * unit tests answer with a fake kernel.
 *
 * Layouts (include/uapi/linux/netlink.h), in host byte order, which is little-endian on every
 * architecture the toolkit supports (as the bpf(2) attrs elsewhere assume):
 *
 *   struct nlmsghdr (16 bytes)                     struct nlattr (4 bytes + value, padded to 4)
 *   0        4        6         8       12     16   0        2        4
 *   | len    | type   | flags   | seq   | pid  |    | len    | type   | value ... | pad |
 *
 *   NLMSG_ERROR payload: | int error | nlmsghdr of the request (+ its payload unless NLM_F_CAPPED) |
 *                        | extended ACK attributes when NLM_F_ACK_TLVS |
 */
import { closeSync, openSync } from "node:fs";
import { BpfError, SyscallError, errnoName } from "./errors.js";
import { syscalls, type RawResult, type SyscallBackend } from "./syscall.js";

/** Netlink protocol of the routing/device family. */
export const NETLINK_ROUTE = 0;
/** Netlink protocol of socket diagnostics (sock_diag(7): inet_diag for TCP sockets). */
export const NETLINK_SOCK_DIAG = 4;

/** Control message types (NLMSG_*). */
export const NlmsgType = { NOOP: 1, ERROR: 2, DONE: 3, OVERRUN: 4 } as const;

/** nlmsg_flags (NLM_F_*); the same bits mean different things for GET, NEW and ACK messages. */
export const NlmFlag = {
  REQUEST: 0x01,
  MULTI: 0x02,
  ACK: 0x04,
  /** Send the resulting notification back to the requester too (how we learn a new filter's handle). */
  ECHO: 0x08,
  DUMP_INTR: 0x10,
  /** GET: ROOT | MATCH. */
  DUMP: 0x300,
  /** NEW: */
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
  /** In an ACK: the request was not echoed back (NETLINK_CAP_ACK). */
  CAPPED: 0x100,
  /** In an ACK: extended ACK attributes follow (NETLINK_EXT_ACK). */
  ACK_TLVS: 0x200,
} as const;

/** Flag of a nested attribute (a list of attributes as the value). */
export const NLA_F_NESTED = 1 << 15;
const NLA_TYPE_MASK = ~(NLA_F_NESTED | (1 << 14)) & 0xffff;

/** Extended ACK attributes (enum nlmsgerr_attrs). */
const NLMSGERR_ATTR_MSG = 1;
const NLMSGERR_ATTR_OFFS = 2;

const NLMSG_HDRLEN = 16;
const align4 = (n: number) => (n + 3) & ~3;

/** One attribute: a raw value, or nested attributes. */
export interface NlAttr {
  type: number;
  value: Buffer | readonly NlAttr[];
}

/** Attribute builders. */
export const nla = {
  u32(type: number, v: number): NlAttr {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return { type, value: b };
  },
  /** A NUL-terminated string (NLA_STRING and NLA_NUL_STRING policies both accept it). */
  string(type: number, s: string): NlAttr {
    return { type, value: Buffer.from(`${s}\0`, "utf8") };
  },
  /** Nested attributes; NLA_F_NESTED is set as iproute2 does, older parsers ignore it. */
  nested(type: number, attrs: readonly NlAttr[]): NlAttr {
    return { type: type | NLA_F_NESTED, value: attrs };
  },
};

/** Encode attributes, each padded to 4 bytes. */
export function encodeAttrs(attrs: readonly NlAttr[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const value = Buffer.isBuffer(a.value) ? a.value : encodeAttrs(a.value);
    const len = 4 + value.length;
    if (len > 0xffff) throw new BpfError("BPF_ERR_INVALID_ARG", `netlink attribute ${a.type & NLA_TYPE_MASK} is ${len} bytes; at most 65535 fit`);
    const b = Buffer.alloc(align4(len));
    b.writeUInt16LE(len, 0);
    b.writeUInt16LE(a.type, 2);
    value.copy(b, 4);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** A request before it gets a sequence number: type, flags and the payload (family header + attrs). */
export interface NetlinkRequest {
  type: number;
  flags: number;
  payload: Buffer;
}

/** Build a request from its family header (tcmsg, ifinfomsg: already padded to 4) and attributes. */
export function request(type: number, flags: number, header: Buffer, attrs: readonly NlAttr[] = []): NetlinkRequest {
  return { type, flags: flags | NlmFlag.REQUEST, payload: Buffer.concat([header, encodeAttrs(attrs)]) };
}

/** The bytes of a request with its sequence number (port id 0: the kernel fills in ours). */
export function encodeMessage(req: NetlinkRequest, seq: number): Buffer {
  const b = Buffer.alloc(NLMSG_HDRLEN + align4(req.payload.length));
  b.writeUInt32LE(NLMSG_HDRLEN + req.payload.length, 0);
  b.writeUInt16LE(req.type, 4);
  b.writeUInt16LE(req.flags, 6);
  b.writeUInt32LE(seq >>> 0, 8);
  b.writeUInt32LE(0, 12);
  req.payload.copy(b, NLMSG_HDRLEN);
  return b;
}

/** One received message. */
export interface NetlinkMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  payload: Buffer;
}

/** Split a datagram into messages; a length that runs past the end is a malformed reply. */
export function parseMessages(buf: Buffer): NetlinkMessage[] {
  const out: NetlinkMessage[] = [];
  for (let off = 0; off + NLMSG_HDRLEN <= buf.length; ) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      throw new BpfError("BPF_ERR_SYSCALL", `malformed netlink reply: message of ${len} bytes at offset ${off} in a ${buf.length}-byte datagram`);
    }
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes by type (flags masked off); a later duplicate wins, as in the kernel's nla_parse. */
export function parseAttrs(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let off = 0; off + 4 <= buf.length; ) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) break; // the kernel never sends this; stop rather than misread
    out.set(buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, buf.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

/** A NUL-terminated string attribute. */
export function attrString(b: Buffer | undefined): string | undefined {
  if (!b) return undefined;
  const end = b.indexOf(0);
  return b.toString("utf8", 0, end < 0 ? b.length : end);
}

/** What an NLMSG_ERROR (or NLMSG_DONE) message says: errno 0 is an ACK. */
export interface NetlinkAck {
  /** Positive errno; 0 on success. */
  errno: number;
  /** The kernel's extended ACK text (NLMSGERR_ATTR_MSG), e.g. "Exclusivity flag on, cannot modify". */
  message?: string;
  /** Offset in the request of the attribute the kernel refused (NLMSGERR_ATTR_OFFS). */
  offset?: number;
}

/** Parse an NLMSG_ERROR or NLMSG_DONE payload. */
export function parseAck(msg: NetlinkMessage): NetlinkAck {
  if (msg.payload.length < 4) return { errno: 0 };
  const errno = -msg.payload.readInt32LE(0) || 0; // not -0 for an ACK
  const ack: NetlinkAck = { errno };
  if (msg.type !== NlmsgType.ERROR || !(msg.flags & NlmFlag.ACK_TLVS)) return ack;
  // The echoed request: just its header when capped, else the whole request.
  let tlvs = 4 + NLMSG_HDRLEN;
  if (!(msg.flags & NlmFlag.CAPPED) && msg.payload.length >= 4 + NLMSG_HDRLEN) tlvs = 4 + align4(msg.payload.readUInt32LE(4));
  const attrs = parseAttrs(msg.payload.subarray(tlvs));
  const text = attrString(attrs.get(NLMSGERR_ATTR_MSG));
  if (text) ack.message = text;
  const offs = attrs.get(NLMSGERR_ATTR_OFFS);
  if (offs && offs.length >= 4) ack.offset = offs.readUInt32LE(0);
  return ack;
}

/** How to report a failed request: the command ("RTM_NEWTFILTER"), what it was about, hints by errno name. */
export interface RequestContext {
  command: string;
  detail: string;
  hints?: Partial<Record<string, string>>;
}

/** The error a failed request throws: the kernel's own words go into the detail. */
export function netlinkError(ctx: RequestContext, ack: NetlinkAck): SyscallError {
  const detail = ack.message ? `${ctx.detail}; the kernel says: ${ack.message}` : ctx.detail;
  return new SyscallError(ctx.command, ack.errno, detail, ctx.hints?.[errnoName(ack.errno)] ?? defaultHint(errnoName(ack.errno)));
}

function defaultHint(name: string): string {
  switch (name) {
    case "EPERM":
      return "run as root, or grant CAP_NET_ADMIN";
    case "ENODEV":
      return "no such network device in this process's network namespace";
    case "EOPNOTSUPP":
    case "ENOTSUPP":
      return "this kernel does not support the request (a module such as sch_ingress or cls_bpf may be missing)";
    default:
      return "see rtnetlink(7)";
  }
}

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
// SO_RCVTIMEO_OLD (struct timeval): 20 in asm-generic, 18 on powerpc.
const SO_RCVTIMEO = process.arch === "ppc64" ? 18 : 20;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const MSG_PEEK = 0x2;
const MSG_TRUNC = 0x20;
const EINTR = 4;

type SocketCall = "socket" | "bind" | "setsockopt" | "sendto" | "recv" | "close" | "setns";
const CLONE_NEWNET = 0x40000000;

/** Call an optional socket method of the backend; a backend without it answers ENOSYS. */
function call<K extends SocketCall>(name: K, ...args: Parameters<NonNullable<SyscallBackend[K]>>): RawResult {
  const fn = syscalls()[name] as ((...a: unknown[]) => RawResult) | undefined;
  if (!fn) return { ret: -1, errno: 38 /* ENOSYS */ };
  for (let attempt = 0; ; attempt++) {
    const r = fn.apply(syscalls(), args);
    if (r.ret >= 0 || r.errno !== EINTR || attempt >= 5) return r;
  }
}

/** sockaddr_nl of port `pid` (0: the kernel). */
function sockaddrNl(pid = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16LE(AF_NETLINK, 0);
  b.writeUInt32LE(pid, 4);
  return b;
}

/**
 * A netlink socket for request/reply. Calls block: rtnetlink handles a request inside sendto, so the
 * answer is queued before recv; a receive timeout guards against a request the kernel drops silently.
 * It acts in the network namespace of the process (ifindexes are per namespace).
 */
export class NetlinkSocket {
  private seq = 0;
  private closed = false;
  private buf = Buffer.alloc(64 * 1024);

  private constructor(readonly fd: number) {}

  /** Open and bind a socket; `timeoutMs` bounds each wait for a reply. */
  static open(protocol = NETLINK_ROUTE, timeoutMs = 5000): NetlinkSocket {
    const s = call("socket", AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (s.ret < 0) throw new SyscallError("socket(AF_NETLINK)", s.errno, undefined, defaultHint(errnoName(s.errno)));
    const sock = new NetlinkSocket(s.ret);
    try {
      const b = call("bind", s.ret, sockaddrNl());
      if (b.ret < 0) throw new SyscallError("bind(AF_NETLINK)", b.errno);
      // Both are best effort: kernels before 4.3 (CAP_ACK) and 4.12 (EXT_ACK) refuse them, and only
      // the error texts are lost.
      const one = Buffer.alloc(4);
      one.writeInt32LE(1);
      call("setsockopt", s.ret, SOL_NETLINK, NETLINK_EXT_ACK, one);
      call("setsockopt", s.ret, SOL_NETLINK, NETLINK_CAP_ACK, one);
      const tv = Buffer.alloc(16);
      tv.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0);
      tv.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8);
      call("setsockopt", s.ret, SOL_SOCKET, SO_RCVTIMEO, tv);
      return sock;
    } catch (e) {
      sock.close();
      throw e;
    }
  }

  /**
   * Open a socket in another network namespace (`netns`: a path such as /proc/PID/ns/net): the
   * thread enters it, opens the socket, and comes back; the socket stays in that namespace. Needs
   * CAP_SYS_ADMIN.
   */
  static openIn(netns: string, protocol = NETLINK_ROUTE, timeoutMs = 5000): NetlinkSocket {
    const home = openSync("/proc/thread-self/ns/net", "r");
    let target = -1;
    try {
      target = openSync(netns, "r");
      const r = call("setns", target, CLONE_NEWNET);
      if (r.ret < 0) throw new SyscallError(`setns(${netns})`, r.errno, undefined, "run as root (entering another network namespace needs CAP_SYS_ADMIN)");
      try {
        return NetlinkSocket.open(protocol, timeoutMs);
      } finally {
        const back = call("setns", home, CLONE_NEWNET);
        if (back.ret < 0) throw new SyscallError("setns(back to our network namespace)", back.errno);
      }
    } finally {
      if (target >= 0) closeSync(target);
      closeSync(home);
    }
  }

  /**
   * Send a request that asks for an ACK and collect the messages before it (the echo of NLM_F_ECHO).
   * A negative ACK throws {@link SyscallError} with the errno, the kernel's message and a hint.
   */
  request(req: NetlinkRequest, ctx: RequestContext): NetlinkMessage[] {
    return this.exchange({ ...req, flags: req.flags | NlmFlag.ACK }, ctx, false);
  }

  /** Send a dump request (NLM_F_DUMP) and collect every message up to NLMSG_DONE. */
  dump(req: NetlinkRequest, ctx: RequestContext): NetlinkMessage[] {
    return this.exchange({ ...req, flags: req.flags | NlmFlag.DUMP }, ctx, true);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    call("close", this.fd);
  }

  private exchange(req: NetlinkRequest, ctx: RequestContext, dump: boolean): NetlinkMessage[] {
    if (this.closed) throw new BpfError("BPF_ERR_CLOSED", "netlink socket is closed");
    const seq = ++this.seq;
    const sent = call("sendto", this.fd, encodeMessage(req, seq), sockaddrNl());
    if (sent.ret < 0) throw new SyscallError(`${ctx.command} (sendto)`, sent.errno, ctx.detail);
    const out: NetlinkMessage[] = [];
    for (;;) {
      for (const msg of parseMessages(this.receive(ctx))) {
        if (msg.seq !== seq) continue; // a late answer to an earlier request that timed out
        if (msg.type === NlmsgType.ERROR) {
          const ack = parseAck(msg);
          if (ack.errno !== 0) throw netlinkError(ctx, ack);
          if (!dump) return out;
        } else if (msg.type === NlmsgType.DONE) {
          const ack = parseAck(msg);
          if (ack.errno !== 0) throw netlinkError(ctx, ack);
          if (msg.flags & NlmFlag.DUMP_INTR) throw new SyscallError(ctx.command, 11 /* EAGAIN */, `${ctx.detail}; the dump was interrupted by a concurrent change`, "try again");
          return out;
        } else if (msg.type !== NlmsgType.NOOP) {
          out.push(msg);
        }
      }
    }
  }

  /** One datagram: peek at its length first so that a large dump part is never truncated. */
  private receive(ctx: RequestContext): Buffer {
    const peek = call("recv", this.fd, this.buf, MSG_PEEK | MSG_TRUNC);
    if (peek.ret < 0) throw this.recvError(ctx, peek.errno);
    if (peek.ret > this.buf.length) this.buf = Buffer.alloc(align4(peek.ret));
    const r = call("recv", this.fd, this.buf, 0);
    if (r.ret < 0) throw this.recvError(ctx, r.errno);
    return Buffer.from(this.buf.subarray(0, r.ret));
  }

  private recvError(ctx: RequestContext, errno: number): SyscallError {
    const name = errnoName(errno);
    const hint = name === "EAGAIN" ? "the kernel did not answer in time (the request may be malformed)" : "see recv(2)";
    return new SyscallError(`${ctx.command} (recv)`, errno, ctx.detail, hint);
  }
}
