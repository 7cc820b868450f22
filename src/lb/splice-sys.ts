/**
 * The two socket facts the kernel data path needs and Node does not expose: how many bytes have
 * been written into a TCP socket so far (to know that every byte the verdict program redirected
 * into it has left the sockmap's queue before a FIN is passed on), read as
 * `tcp_info.tcpi_bytes_acked + SIOCOUTQ` (= write_seq - snd_una + acked), and the socket's cookie
 * (SO_COOKIE: the key of splice_peers, one getsockopt instead of a sockmap look-up).
 *
 * libc through the toolkit's one koffi handle (src/bpf/syscall.ts `loadLibc()`); the calls are the
 * balancer's own need (the toolkit knows nothing of TCP). Replaceable for unit tests.
 */
import { loadLibc } from "../bpf/syscall.js";

const SOL_TCP = 6;
const TCP_INFO = 11;
const TCPI_BYTES_ACKED = 120; // struct tcp_info: __u64 tcpi_bytes_acked (Linux ≥ 4.1)
const TCP_INFO_SIZE = 232;
const SIOCOUTQ = 0x5411; // TIOCOUTQ: bytes in the send queue not yet acknowledged
const SOL_SOCKET = 1;
const SO_COOKIE = 57;

export interface SocketSys {
  /**
   * Bytes written into the socket since it connected (acknowledged + still queued), or -1 when it
   * cannot be read (closed). Read in the order that can only under-count, never over-count.
   */
  bytesWritten(fd: number): number;
  /** The socket's cookie (SO_COOKIE, the value bpf_get_socket_cookie returns), or -1n. */
  cookie(fd: number): bigint;
}

function createLibcSys(): SocketSys {
  const { lib } = loadLibc();
  const getsockopt = lib.func("int getsockopt(int fd, int level, int name, void *val, void *len)");
  // ioctl is variadic; on the 64-bit Linux ABIs a pointer vararg travels like a fixed argument.
  const ioctl = lib.func("int ioctl(int fd, unsigned long req, void *arg)");
  const info = Buffer.alloc(TCP_INFO_SIZE);
  const len = Buffer.alloc(4);
  const outq = Buffer.alloc(4);
  const cookie = Buffer.alloc(8);
  return {
    bytesWritten(fd) {
      // acked first, then the queue: an ACK landing in between lowers the sum, never raises it.
      len.writeUInt32LE(TCP_INFO_SIZE);
      if (getsockopt(fd, SOL_TCP, TCP_INFO, info, len) < 0 || len.readUInt32LE(0) < TCPI_BYTES_ACKED + 8) return -1;
      const acked = Number(info.readBigUInt64LE(TCPI_BYTES_ACKED));
      if (ioctl(fd, SIOCOUTQ, outq) < 0) return -1;
      return acked + outq.readInt32LE(0);
    },
    cookie(fd) {
      len.writeUInt32LE(8);
      return getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, len) < 0 ? -1n : cookie.readBigUInt64LE(0);
    },
  };
}

let sys: SocketSys | undefined;

export function socketSys(): SocketSys {
  sys ??= createLibcSys();
  return sys;
}

/** Replace (tests); returns the previous one. */
export function setSocketSys(next: SocketSys | undefined): SocketSys | undefined {
  const prev = sys;
  sys = next;
  return prev;
}
