/**
 * A fake kernel for unit tests without privileges: a {@link SyscallBackend} to install with
 * setSyscallBackend. bpf(2) calls are recorded and answered by a callback; `address(buf)` hands out a
 * fake address per Buffer and remembers it, so an answer can find the buffers an attr points at (log
 * buffer, key, value, info) and read or fill them. With a netlink answerer it also speaks AF_NETLINK:
 * each request sent is recorded and its answers are queued as datagrams for recv (MSG_PEEK leaves them
 * queued); without one, the socket calls fail with ENOSYS as a backend lacking them would.
 */
import assert from "node:assert/strict";
import { netlink, type RawResult, type SyscallBackend } from "../../src/bpf/index.js";

/** One bpf(2) call as the toolkit made it (`attr` copied at the time of the call). */
export interface BpfCall {
  cmd: number;
  attr: Buffer;
  size: number;
}

/** Answers a bpf(2) call; `live` is the attr the toolkit reads back (write outputs there). */
export type BpfAnswer = (call: BpfCall, k: FakeKernel, live: Buffer) => RawResult;

/** Answers a netlink request with the datagrams the kernel would send back. */
export type NetlinkAnswer = (msg: netlink.NetlinkMessage) => Buffer[];

const ENOSYS: RawResult = { ret: -1, errno: 38 };
const OK: RawResult = { ret: 0, errno: 0 };

/** The fake kernel; see the file comment. */
export class FakeKernel implements SyscallBackend {
  /** Every bpf(2) call, in order. */
  readonly calls: BpfCall[] = [];
  /** Every netlink request sent, in order. */
  readonly sent: netlink.NetlinkMessage[] = [];
  /** fds closed with close(2). */
  readonly closed: number[] = [];
  private queue: Buffer[] = [];
  private readonly byAddress = new Map<bigint, Buffer>();
  private readonly byBuffer = new Map<Buffer, bigint>();
  private next = 0x10000n;

  constructor(
    private readonly bpfAnswer: BpfAnswer,
    private readonly netlinkAnswer?: NetlinkAnswer,
  ) {}

  bpf(cmd: number, attr: Buffer, size: number): RawResult {
    const call = { cmd, attr: Buffer.from(attr), size };
    this.calls.push(call);
    return this.bpfAnswer(call, this, attr);
  }
  address(buf: Buffer): bigint {
    let a = this.byBuffer.get(buf);
    if (a === undefined) {
      a = this.next;
      this.next += 0x10000n;
      this.byBuffer.set(buf, a);
      this.byAddress.set(a, buf);
    }
    return a;
  }
  /** The Buffer behind a fake address. */
  buffer(addr: bigint): Buffer {
    const b = this.byAddress.get(addr);
    if (!b) throw new Error(`fake kernel: unknown address 0x${addr.toString(16)}`);
    return b;
  }
  mount(): RawResult {
    return { ret: -1, errno: 1 }; // EPERM
  }
  raiseMemlock(): RawResult {
    return OK;
  }
  socket(domain: number, type: number): RawResult {
    if (!this.netlinkAnswer) return ENOSYS;
    assert.equal(domain, 16, "AF_NETLINK");
    assert.equal(type & 0xf, 3, "SOCK_RAW");
    return { ret: 1000, errno: 0 };
  }
  bind(): RawResult {
    return this.netlinkAnswer ? OK : ENOSYS;
  }
  setsockopt(): RawResult {
    return this.netlinkAnswer ? OK : ENOSYS;
  }
  sendto(_fd: number, buf: Buffer): RawResult {
    if (!this.netlinkAnswer) return ENOSYS;
    const [msg] = netlink.parseMessages(Buffer.from(buf));
    this.sent.push(msg);
    this.queue.push(...this.netlinkAnswer(msg));
    return { ret: buf.length, errno: 0 };
  }
  recv(_fd: number, buf: Buffer, flags: number): RawResult {
    if (!this.netlinkAnswer) return ENOSYS;
    const next = this.queue[0];
    if (!next) return { ret: -1, errno: 11 }; // EAGAIN: the receive timeout
    if (flags & 0x2) return { ret: next.length, errno: 0 }; // MSG_PEEK
    this.queue.shift();
    next.copy(buf);
    return { ret: next.length, errno: 0 };
  }
  close(fd: number): RawResult {
    if (!this.netlinkAnswer) return ENOSYS;
    this.closed.push(fd);
    return OK;
  }
  /** The bpf(2) commands made, in order. */
  commands(): number[] {
    return this.calls.map((c) => c.cmd);
  }
  /** The netlink requests sent, as [type, flags]. */
  requests(): [number, number][] {
    return this.sent.map((m) => [m.type, m.flags]);
  }
}
