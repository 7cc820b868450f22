/**
 * Programs: {@link ProgramSpec} is the blueprint (instructions with symbolic labels and map names),
 * {@link Program} the loaded kernel object. Loading resolves map names to fds; when the verifier
 * refuses the program it is loaded again with a log buffer that grows until the whole log fits, and
 * the log goes into the {@link VerifierError}.
 */
import { closeSync } from "node:fs";
import { BpfError, SyscallError, VerifierError } from "./errors.js";
import { BpfCommand, bpfTry, cString, syscalls } from "./syscall.js";
import { encode, type Item } from "./asm/index.js";
import type { BpfMap } from "./map.js";
import { nameText, objGet, objInfo, objName, objPin, ProgInfoStruct, ProgLoadAttr } from "./sys.js";
import { zero } from "./struct.js";

/** Program types (enum bpf_prog_type). */
export const ProgramType = {
  SOCKET_FILTER: 1,
  SCHED_CLS: 3,
  CGROUP_SKB: 8,
  CGROUP_SOCK: 9,
  SOCK_OPS: 13,
  SK_SKB: 14,
  SK_MSG: 16,
  CGROUP_SOCK_ADDR: 18,
  CGROUP_SOCKOPT: 25,
} as const;
export type ProgramTypeName = keyof typeof ProgramType;

/** Attach types (enum bpf_attach_type). */
export const AttachType = {
  CGROUP_INET_INGRESS: 0,
  CGROUP_INET_EGRESS: 1,
  CGROUP_INET_SOCK_CREATE: 2,
  CGROUP_SOCK_OPS: 3,
  SK_SKB_STREAM_PARSER: 4,
  SK_SKB_STREAM_VERDICT: 5,
  SK_MSG_VERDICT: 7,
  CGROUP_GETSOCKOPT: 21,
  CGROUP_SETSOCKOPT: 22,
  CGROUP_INET4_GETPEERNAME: 29,
  CGROUP_INET6_GETPEERNAME: 30,
  CGROUP_INET4_GETSOCKNAME: 31,
  CGROUP_INET6_GETSOCKNAME: 32,
  SK_SKB_VERDICT: 38,
  TCX_INGRESS: 46,
  TCX_EGRESS: 47,
} as const;
export type AttachTypeName = keyof typeof AttachType;

/** The name of a program type number (enum bpf_prog_type), or undefined for one not in {@link ProgramType}. */
export function programTypeName(type: number): ProgramTypeName | undefined {
  return (Object.keys(ProgramType) as ProgramTypeName[]).find((k) => ProgramType[k] === type);
}

/** Blueprint of a program: plain data, no kernel involved. */
export interface ProgramSpec {
  /** Object name: [A-Za-z0-9_.], at most 15 characters. */
  name: string;
  type: ProgramTypeName;
  /** Required by some types (cgroup sock_addr, sockopt) at load time. */
  expectedAttachType?: AttachTypeName;
  license?: string;
  instructions: readonly Item[];
}

/** Options for {@link Program.load}. */
export interface LoadOptions {
  /** Maps referenced by name from `ldMap`. */
  maps?: Record<string, BpfMap<any, any>> | ReadonlyMap<string, BpfMap<any, any>>;
  /** Ask the verifier for its statistics even on success (sets {@link Program.verifierStats}). */
  stats?: boolean;
  /** Initial log buffer size when a log is needed. */
  logSize?: number;
}

const LOG_LEVEL_BRANCH = 1;
const LOG_LEVEL_STATS = 4;
// Before 6.4 the kernel refuses log buffers larger than UINT32_MAX >> 8.
const MAX_LOG_SIZE = 0xffffffff >>> 8;
const PROG_LOAD_ATTR_SIZE = ProgLoadAttr.size; // offsetofend(log_true_size)

/**
 * BPF_PROG_LOAD, again when the verifier gave up because a signal came in (EAGAIN: it checks
 * signal_pending() as it goes, and a long verification under a profiler's SIGPROF or a busy timer
 * is interrupted). libbpf retries the same way, five times.
 */
function progLoad(attr: Buffer): { ret: number; errno: number } {
  let r = bpfTry(BpfCommand.PROG_LOAD, attr, PROG_LOAD_ATTR_SIZE);
  for (let i = 1; i < 5 && r.ret < 0 && r.errno === 11 /* EAGAIN */; i++) r = bpfTry(BpfCommand.PROG_LOAD, attr, PROG_LOAD_ATTR_SIZE);
  return r;
}

/** Build the PROG_LOAD attr (exported for unit tests of the layout). Buffers must stay alive. */
export function progLoadAttr(spec: ProgramSpec, insns: Buffer, license: Buffer, log?: Buffer, logLevel = 0): Buffer {
  const addr = (b: Buffer) => syscalls().address(b);
  return ProgLoadAttr.encode({
    ...zero(ProgLoadAttr),
    progType: ProgramType[spec.type],
    insnCnt: insns.length / 8,
    insns: addr(insns),
    license: addr(license),
    ...(log && { logLevel, logSize: log.length, logBuf: addr(log) }),
    progName: objName(spec.name),
    expectedAttachType: spec.expectedAttachType === undefined ? 0 : AttachType[spec.expectedAttachType],
  });
}

/** Kernel facts about a program (BPF_OBJ_GET_INFO_BY_FD). */
export interface ProgramInfo {
  type: number;
  id: number;
  tag: string;
  name: string;
  xlatedLength: number;
  mapIds: number;
  /**
   * Time spent in the program and number of runs while run statistics were on (BPF_ENABLE_STATS or
   * the kernel.bpf_stats_enabled sysctl; Linux 5.1): both 0 when they never were.
   */
  runTimeNs: bigint;
  runCount: bigint;
}

/** Read bpf_prog_info for an fd (the kernel fills what it knows of it, zeroes the rest). */
export function programInfo(fd: number): ProgramInfo {
  const i = objInfo(fd, ProgInfoStruct);
  return { type: i.type, id: i.id, tag: i.tag.toString("hex"), xlatedLength: i.xlatedProgLen, mapIds: i.nrMapIds, name: nameText(i.name), runTimeNs: i.runTimeNs, runCount: i.runCnt };
}

function logText(log: Buffer): string {
  const end = log.indexOf(0);
  return log.toString("utf8", 0, end < 0 ? log.length : end);
}

/** A loaded program. */
export class Program {
  private _fd: number;
  /** The verifier's "processed N insns" figure when loaded with `stats`. */
  verifierStats?: { processedInstructions: number; log: string };

  constructor(fd: number, readonly spec: Pick<ProgramSpec, "name" | "type" | "expectedAttachType">, readonly info: ProgramInfo) {
    this._fd = fd;
  }

  /** Load a program. Throws {@link VerifierError} (with the log) when the verifier refuses it. */
  static load(spec: ProgramSpec, options: LoadOptions = {}): Program {
    if (!/^[A-Za-z0-9_.]{1,15}$/.test(spec.name)) {
      throw new BpfError("BPF_ERR_INVALID_ARG", `program name "${spec.name}" must be 1-15 characters of [A-Za-z0-9_.]`);
    }
    const maps = options.maps instanceof Map ? options.maps : new Map(Object.entries(options.maps ?? {}));
    const insns = encode(spec.instructions, (name) => maps.get(name)?.fd);
    const license = cString(spec.license ?? "GPL");
    let log: Buffer | undefined = options.stats ? Buffer.alloc(4096) : undefined;
    let level = options.stats ? LOG_LEVEL_STATS : 0;
    let attr = progLoadAttr(spec, insns, license, log, level);
    let r = progLoad(attr);
    let size = options.logSize ?? 64 * 1024;
    for (let attempt = 0; r.ret < 0 && attempt < 12; attempt++) {
      // Retry with the branch-level log; grow on ENOSPC (the log did not fit).
      // (`level & BRANCH`: with stats requested the level is BRANCH | STATS.)
      if (log && level & LOG_LEVEL_BRANCH && r.errno !== 28 /* ENOSPC */) break;
      if (log && level & LOG_LEVEL_BRANCH) {
        const trueSize = attr.readUInt32LE(ProgLoadAttr.logTrueSize); // 6.4+: the size the whole log needs
        size = Math.min(MAX_LOG_SIZE, trueSize > size ? trueSize : size * 4);
        if (log.length >= MAX_LOG_SIZE) break;
      }
      log = Buffer.alloc(size);
      level = LOG_LEVEL_BRANCH | (options.stats ? LOG_LEVEL_STATS : 0);
      attr = progLoadAttr(spec, insns, license, log, level);
      r = progLoad(attr);
    }
    if (r.ret < 0) {
      const text = log ? logText(log) : "";
      if (r.errno === 13 /* EACCES */ || r.errno === 22 /* EINVAL */ || text) throw new VerifierError(spec.name, r.errno, text);
      throw new SyscallError("BPF_PROG_LOAD", r.errno, `program ${spec.name}`);
    }
    const program = new Program(r.ret, spec, programInfo(r.ret));
    if (options.stats && log) {
      const text = logText(log);
      const m = /processed (\d+) insns/.exec(text);
      program.verifierStats = { processedInstructions: m ? Number(m[1]) : -1, log: text };
    }
    return program;
  }

  /** Open a program pinned in bpffs (its type as the kernel reports it). */
  static fromPin(path: string): Program {
    const fd = objGet(path);
    const info = programInfo(fd);
    const type = programTypeName(info.type);
    if (type === undefined) {
      closeSync(fd);
      throw new BpfError("BPF_ERR_UNSUPPORTED", `${path}: program type ${info.type} is not one this toolkit knows`);
    }
    return new Program(fd, { name: info.name, type }, info);
  }

  get fd(): number {
    if (this._fd < 0) throw new BpfError("BPF_ERR_CLOSED", `program ${this.spec.name} is closed`);
    return this._fd;
  }

  pin(path: string): void {
    objPin(path, this.fd);
  }

  close(): void {
    if (this._fd >= 0) closeSync(this._fd);
    this._fd = -1;
  }
}
