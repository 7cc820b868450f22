/**
 * Errors of the eBPF toolkit. One base class with a stable `code`; subclasses only where they carry
 * data a caller acts on (the errno, the verifier log, the missing feature).
 */
import { constants as osConstants } from "node:os";
import { memlockRaiseErrno } from "./memlock.js";

/**
 * Stable error codes of the toolkit: the catalogue of everything src/bpf throws (always a
 * {@link BpfError} or one of its subclasses below).
 *
 *   BPF_ERR_SYSCALL      a bpf(2), libc or netlink call failed ({@link SyscallError}: errno, hint)
 *   BPF_ERR_VERIFIER     the verifier refused a program ({@link VerifierError}: the log)
 *   BPF_ERR_UNSUPPORTED  the kernel lacks a feature ({@link UnsupportedFeatureError}), or a pinned
 *                        object is of a kind the toolkit does not know
 *   BPF_ERR_PERMISSION   not allowed (privileges)
 *   BPF_ERR_ASM          the assembler refused an instruction or a label
 *   BPF_ERR_BTF          a BTF description is invalid
 *   BPF_ERR_INVALID_ARG  an argument, spec, option or value is out of range (names the field)
 *   BPF_ERR_CLOSED       the object (map, program, BTF, attachment) was closed
 *   BPF_ERR_CGROUP       no cgroup v2, or a cgroup folder that can't be used
 */
export type BpfErrorCode =
  | "BPF_ERR_SYSCALL"
  | "BPF_ERR_VERIFIER"
  | "BPF_ERR_UNSUPPORTED"
  | "BPF_ERR_PERMISSION"
  | "BPF_ERR_ASM"
  | "BPF_ERR_BTF"
  | "BPF_ERR_INVALID_ARG"
  | "BPF_ERR_CLOSED"
  | "BPF_ERR_CGROUP";

/** Base class of every error the toolkit throws. */
export class BpfError extends Error {
  readonly code: BpfErrorCode;
  constructor(code: BpfErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * The application using the toolkit, as its errors and objects name it: `name` prefixes the tc
 * filters it leaves (tc.ts), `featureCheck` is the command hints send the user to when the kernel
 * may lack a feature. Neutral until the application says otherwise with {@link setApplication}.
 */
export interface Application {
  readonly name: string;
  readonly featureCheck?: string;
}

let application: Application = { name: "bpf" };

/** Name the application using the toolkit (once, at start-up); see {@link Application}. */
export function setApplication(app: Application): void {
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(app.name)) throw new BpfError("BPF_ERR_INVALID_ARG", `application name "${app.name}" must be 1-32 characters of [A-Za-z0-9_.-]`);
  application = { ...app };
}

/** The application set by {@link setApplication} (default: name "bpf", no feature check). */
export function currentApplication(): Application {
  return application;
}

/** " (run `doctor`)" when the application named a feature check. */
const featureCheckHint = (): string => (application.featureCheck ? ` (run \`${application.featureCheck}\`)` : "");

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value as number, name]),
);
// Linux-internal errno that leaks out of bpf(2); not in os.constants.
errnoNames.set(524, "ENOTSUPP");
// Aliases in os.constants (EWOULDBLOCK, ENOTSUP) would otherwise win: use Linux's own names.
errnoNames.set(11, "EAGAIN");
errnoNames.set(95, "EOPNOTSUPP");

/** Symbolic name of an errno value ("EPERM"), or "errno N" when unknown. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/**
 * EPERM from bpf(2): missing privileges, or (before Linux 5.11) RLIMIT_MEMLOCK. The toolkit raises
 * the limit and retries on its own, so the hint says which one it was.
 */
function permissionHint(): string {
  const raise = memlockRaiseErrno();
  const privileges = "run as root, or grant CAP_BPF and CAP_NET_ADMIN (CAP_SYS_ADMIN before Linux 5.8)";
  if (raise === undefined || raise === 0) return `${privileges}${raise === 0 ? " (RLIMIT_MEMLOCK was raised and the kernel still refused: it is the privileges)" : ""}`;
  return `${privileges}; or, on kernels before 5.11, RLIMIT_MEMLOCK is too low and could not be raised (setrlimit: ${errnoName(raise)}): run \`ulimit -l unlimited\` first, or LimitMEMLOCK=infinity in a systemd unit`;
}

/** What the user can do about a failed bpf(2) command, by errno. */
function hintFor(command: string, errno: number): string {
  switch (errnoName(errno)) {
    case "EPERM":
      return permissionHint();
    case "EACCES":
      return "the verifier refused the program; read the log above";
    case "EINVAL":
      return `the kernel does not accept these ${command} arguments: a feature may be missing from this kernel${featureCheckHint()}, or a field is out of range`;
    case "E2BIG":
      return "the attribute has non-zero bytes the kernel does not know: this kernel is older than the feature used";
    case "ENOENT":
      return "no such object: the key, pin or attachment does not exist";
    case "EEXIST":
      return "it already exists: unpin or detach it first, or update in place";
    case "EBADF":
      return "the file descriptor is closed or not a BPF object";
    case "ENOSPC":
      return "the map or buffer is full";
    case "ENOMEM":
      return "the kernel is out of memory for BPF objects (check RLIMIT_MEMLOCK on kernels before 5.11)";
    case "EBUSY":
      return "the object is in use (another program is attached exclusively?)";
    case "EOPNOTSUPP":
    case "ENOTSUPP":
      return `this kernel does not support the operation${featureCheckHint()}`;
    case "ENOSYS":
      return "the kernel was built without bpf(2) (CONFIG_BPF_SYSCALL)";
    case "EAGAIN":
      return command === "BPF_PROG_LOAD"
        ? "the verifier stopped because a signal came in, five times in a row: a sampling profiler (SIGPROF, e.g. node --cpu-prof) or a fast timer interrupts every long verification; load without it"
        : "the kernel asked to try again";
    default:
      return "see bpf(2)";
  }
}

/**
 * A bpf(2) or libc call, or a netlink request, failed: names the command and the errno, with a hint.
 * `hint` replaces the bpf(2) hint where the caller knows better (netlink requests: see tc-netlink.ts).
 */
export class SyscallError extends BpfError {
  readonly command: string;
  readonly errno: number;
  readonly errnoName: string;
  readonly hint: string;
  constructor(command: string, errno: number, detail?: string, hint?: string) {
    const name = errnoName(errno);
    hint ??= hintFor(command, errno);
    super("BPF_ERR_SYSCALL", `${command}${detail ? ` (${detail})` : ""}: ${name}: ${hint}`);
    this.command = command;
    this.errno = errno;
    this.errnoName = name;
    this.hint = hint;
  }
}

/** The verifier refused a program; `log` is the kernel's verifier log. */
export class VerifierError extends BpfError {
  readonly log: string;
  readonly errnoName: string;
  constructor(programName: string, errno: number, log: string) {
    const name = errnoName(errno);
    const trimmed = log.trim();
    const tail = trimmed.split("\n").slice(-30).join("\n");
    super(
      "BPF_ERR_VERIFIER",
      `load program ${programName}: ${name}: ${hintFor("BPF_PROG_LOAD", errno)}` +
        (trimmed ? `\nverifier log (last lines):\n${tail}` : "\n(the kernel gave no verifier log: the attach type or program type was refused before verification)"),
    );
    this.log = log;
    this.errnoName = name;
  }
}

/** A kernel feature is missing; names it and the upstream kernel that added it. */
export class UnsupportedFeatureError extends BpfError {
  readonly feature: string;
  readonly minimumKernel: string;
  constructor(feature: string, minimumKernel: string, cause?: unknown) {
    super(
      "BPF_ERR_UNSUPPORTED",
      `${feature} is not supported by this kernel (upstream Linux ${minimumKernel} has it; distributions may backport it)`,
      { cause },
    );
    this.feature = feature;
    this.minimumKernel = minimumKernel;
  }
}
