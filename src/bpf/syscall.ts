/**
 * The only foreign-function boundary of the project: bpf(2) and the few libc calls the toolkit needs
 * (mount for bpffs, setrlimit for RLIMIT_MEMLOCK, the socket calls of rtnetlink for tc), through koffi.
 *
 * Every call goes through the replaceable {@link SyscallBackend}, so unit tests run without a kernel:
 * `setSyscallBackend(fake)` records the attrs and answers with canned results (the aya
 * `override_syscall` pattern).
 */
import { createRequire } from "node:module";
import { arch } from "node:process";
import { BpfError, SyscallError } from "./errors.js";
import { forgetMemlockRaise, memlockRaiseErrno, recordMemlockRaise } from "./memlock.js";

/** Result of one raw call: `ret` < 0 means failure with `errno`. */
export interface RawResult {
  ret: number;
  errno: number;
}

/** The raw operations the toolkit performs on the kernel. Replace it in tests. */
export interface SyscallBackend {
  /** bpf(cmd, attr, size). */
  bpf(cmd: number, attr: Buffer, size: number): RawResult;
  /** Address of a buffer's first byte, written into attrs as a u64 pointer. */
  address(buf: Buffer): bigint;
  /** mount(2). */
  mount(source: string, target: string, fstype: string, flags: number): RawResult;
  /** setrlimit(RLIMIT_MEMLOCK, infinity). */
  raiseMemlock(): RawResult;
  // The socket calls below serve AF_NETLINK (tc over rtnetlink, see netlink.ts). They are optional so
  // that fakes modelling only bpf(2) need not implement them: a missing one answers ENOSYS.
  /** socket(2); returns the fd. */
  socket?(domain: number, type: number, protocol: number): RawResult;
  /** bind(2) to the sockaddr in `addr`. */
  bind?(fd: number, addr: Buffer): RawResult;
  /** setsockopt(2) with the option value in `value`. */
  setsockopt?(fd: number, level: number, name: number, value: Buffer): RawResult;
  /** sendto(2) of the whole of `buf` to the sockaddr in `addr`; returns the bytes sent. */
  sendto?(fd: number, buf: Buffer, addr: Buffer): RawResult;
  /** recv(2) into `buf`; returns the datagram's length (the full length with MSG_TRUNC). */
  recv?(fd: number, buf: Buffer, flags: number): RawResult;
  /** close(2). */
  close?(fd: number): RawResult;
  /** setns(2): move the calling thread into the namespace of `fd` (netlink sockets for another network namespace). */
  setns?(fd: number, nstype: number): RawResult;
}

/** SYS_bpf by architecture (arch/*\/include/uapi/asm/unistd.h; the generic table for arm64, riscv). */
const SYS_BPF: Record<string, number> = { x64: 321, arm64: 280, riscv64: 280, ia32: 357, arm: 386, ppc64: 361, s390x: 351, loong64: 280 };
const RLIMIT_MEMLOCK = 8;

/** The koffi module (its JS API over the native FFI binary). */
export type Koffi = typeof import("koffi");
let loaded: { koffi: Koffi; lib: ReturnType<Koffi["load"]> } | undefined;

// koffi ships prebuilt binaries in its npm package (no compiler at install), found next to this module.
let koffiSource: () => Koffi = () => createRequire(import.meta.url)("koffi") as Koffi;

/**
 * Where koffi comes from, when not from node_modules: the single executable (src/executable) hands
 * in its bundled copy, whose native binary it carries inside. Call before the first syscall.
 */
export function useKoffi(source: () => Koffi): void {
  if (loaded) throw new BpfError("BPF_ERR_INVALID_ARG", "useKoffi: koffi is already loaded");
  koffiSource = source;
}

/**
 * koffi and libc, loaded once for the whole process, on first use (importing the toolkit never loads
 * native code). Other layers that need a libc call of their own declare it on this handle.
 */
export function loadLibc(): { koffi: Koffi; lib: ReturnType<Koffi["load"]> } {
  if (!loaded) {
    const koffi = koffiSource();
    loaded = { koffi, lib: koffi.load("libc.so.6") };
  }
  return loaded;
}

function createKoffiBackend(): SyscallBackend {
  const { koffi, lib } = loadLibc();
  const nr = SYS_BPF[arch];
  // syscall(2) is variadic; on the Linux ABIs listed above integer and pointer varargs travel in the
  // same registers as fixed arguments, so a fixed prototype is correct and much cheaper to call.
  const syscall = lib.func("long syscall(long nr, long cmd, void *attr, unsigned long size)");
  const mount = lib.func("int mount(const char *src, const char *target, const char *fstype, unsigned long flags, void *data)");
  const setrlimit = lib.func("int setrlimit(int resource, void *rlim)");
  // Fixed prototypes, declared once: koffi parses each signature at declaration, not per call.
  const socket = lib.func("int socket(int domain, int type, int protocol)");
  const bind = lib.func("int bind(int fd, void *addr, uint32_t len)");
  const setsockopt = lib.func("int setsockopt(int fd, int level, int name, void *value, uint32_t len)");
  const sendto = lib.func("long sendto(int fd, void *buf, unsigned long len, int flags, void *addr, uint32_t addrlen)");
  const recv = lib.func("long recv(int fd, void *buf, unsigned long len, int flags)");
  const close = lib.func("int close(int fd)");
  const setns = lib.func("int setns(int fd, int nstype)");
  const result = (ret: number | bigint): RawResult => {
    const n = Number(ret);
    return { ret: n, errno: n < 0 ? koffi.errno() : 0 };
  };
  return {
    bpf(cmd, attr, size) {
      if (nr === undefined) return { ret: -1, errno: 38 /* ENOSYS */ };
      return result(syscall(nr, cmd, attr, size));
    },
    address(buf) {
      return BigInt(koffi.address(buf) as bigint);
    },
    mount(source, target, fstype, flags) {
      return result(mount(source, target, fstype, flags, null));
    },
    raiseMemlock() {
      const rlim = Buffer.alloc(16);
      rlim.writeBigUInt64LE(0xffffffffffffffffn, 0);
      rlim.writeBigUInt64LE(0xffffffffffffffffn, 8);
      return result(setrlimit(RLIMIT_MEMLOCK, rlim));
    },
    socket: (domain, type, protocol) => result(socket(domain, type, protocol)),
    bind: (fd, addr) => result(bind(fd, addr, addr.length)),
    setsockopt: (fd, level, name, value) => result(setsockopt(fd, level, name, value, value.length)),
    sendto: (fd, buf, addr) => result(sendto(fd, buf, buf.length, 0, addr, addr.length)),
    recv: (fd, buf, flags) => result(recv(fd, buf, buf.length, flags)),
    close: (fd) => result(close(fd)),
    setns: (fd, nstype) => result(setns(fd, nstype)),
  };
}

let backend: SyscallBackend | undefined;

/** The backend in use, created on first use so that importing the toolkit never loads native code. */
export function syscalls(): SyscallBackend {
  backend ??= createKoffiBackend();
  return backend;
}

/** Replace the backend (tests); returns the previous one so it can be restored. */
export function setSyscallBackend(next: SyscallBackend | undefined): SyscallBackend | undefined {
  const previous = backend;
  backend = next;
  forgetMemlockRaise();
  return previous;
}

/** bpf(2) command numbers (include/uapi/linux/bpf.h `enum bpf_cmd`). */
export const BpfCommand = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_DELETE_ELEM: 3,
  MAP_GET_NEXT_KEY: 4,
  PROG_LOAD: 5,
  OBJ_PIN: 6,
  OBJ_GET: 7,
  PROG_ATTACH: 8,
  PROG_DETACH: 9,
  PROG_GET_FD_BY_ID: 13,
  MAP_GET_FD_BY_ID: 14,
  OBJ_GET_INFO_BY_FD: 15,
  MAP_LOOKUP_AND_DELETE_ELEM: 21,
  MAP_LOOKUP_BATCH: 24,
  MAP_UPDATE_BATCH: 26,
  PROG_QUERY: 16,
  BTF_LOAD: 18,
  LINK_CREATE: 28,
  LINK_UPDATE: 29,
  LINK_GET_FD_BY_ID: 30,
  ENABLE_STATS: 32,
  LINK_DETACH: 34,
} as const;

const commandNames = new Map<number, string>(Object.entries(BpfCommand).map(([k, v]) => [v, `BPF_${k}`]));

/** Name of a bpf command for messages ("BPF_MAP_CREATE"). */
export function commandName(cmd: number): string {
  return commandNames.get(cmd) ?? `bpf command ${cmd}`;
}

/** Commands that allocate kernel memory charged to RLIMIT_MEMLOCK before Linux 5.11. */
const MEMLOCK_CHARGED = new Set<number>([BpfCommand.MAP_CREATE, BpfCommand.PROG_LOAD, BpfCommand.BTF_LOAD]);

/**
 * One bpf(2) command with the retries every caller wants: EINTR/EAGAIN again (as libbpf and
 * cilium/ebpf do for PROG_LOAD), and an EPERM from an allocating command once more after raising
 * RLIMIT_MEMLOCK. Kernels before 5.11 charge maps and programs to that limit (64 KiB by default),
 * and answer EPERM when it is exceeded — the same errno as missing privileges, so the only true
 * diagnosis is to raise it and see (libbpf's and cilium's `rlimit.RemoveMemlock` do the same).
 */
function attempt(cmd: number, attr: Buffer, size: number): RawResult {
  for (let tries = 0; ; tries++) {
    const r = syscalls().bpf(cmd, attr, size);
    if (r.ret >= 0) return r;
    if ((r.errno === 4 /* EINTR */ || r.errno === 11 /* EAGAIN */) && tries < 5) continue;
    if (r.errno === 1 /* EPERM */ && MEMLOCK_CHARGED.has(cmd) && memlockRaiseErrno() === undefined) {
      const raised = syscalls().raiseMemlock();
      recordMemlockRaise(raised.ret < 0 ? raised.errno || 1 : 0);
      if (raised.ret >= 0) continue;
    }
    return r;
  }
}

/**
 * Run one bpf(2) command; returns the non-negative result (often an fd) or throws
 * {@link SyscallError} naming the command and errno.
 */
export function bpf(cmd: number, attr: Buffer, size = attr.length, detail?: string): number {
  const { ret, errno } = attempt(cmd, attr, size);
  if (ret >= 0) return ret;
  throw new SyscallError(commandName(cmd), errno, detail);
}

/** Like {@link bpf} but returns the errno instead of throwing (for probes and expected misses). */
export function bpfTry(cmd: number, attr: Buffer, size = attr.length): RawResult {
  return attempt(cmd, attr, size);
}

/** Raise RLIMIT_MEMLOCK: BPF memory was charged to it before Linux 5.11 (memcg accounting since). */
export function raiseMemlockLimit(): void {
  const { ret, errno } = syscalls().raiseMemlock();
  if (ret < 0) throw new SyscallError("setrlimit(RLIMIT_MEMLOCK)", errno);
}

/** mount(2), for bpffs. */
export function mountFs(source: string, target: string, fstype: string): void {
  const { ret, errno } = syscalls().mount(source, target, fstype, 0);
  if (ret < 0) throw new SyscallError(`mount -t ${fstype} ${target}`, errno);
}

/** Encode a NUL-terminated C string into a fresh buffer (kept alive by the caller during the call). */
export function cString(s: string): Buffer {
  const b = Buffer.alloc(Buffer.byteLength(s) + 1);
  b.write(s, 0);
  return b;
}
