/**
 * Instructions as plain values, and the builder functions that make them read like the C they stand
 * for: `add(R1, 8)` is `r1 += 8`, `jgt(R4, R5, "out")` is `if (r4 > r5) goto out`.
 *
 * A program is an array of {@link Item}s: instructions and {@link Label} markers. Labels take no
 * slot; jump targets and map references stay symbolic until {@link encode} resolves them.
 */
import { AluOp, type AluOpName, Class, JmpOp, type JmpOpName, Mode, PseudoSource, Size, type SizeName, Source } from "./opcodes.js";
import { Helper, type HelperName } from "./helpers.js";

/** A register r0..r10. Objects, not numbers, so that `add(R1, 2)` (immediate) and `add(R1, R2)` differ. */
export interface Register {
  readonly kind: "reg";
  readonly n: number;
}
const reg = (n: number): Register => Object.freeze({ kind: "reg", n });
/** r0: return value of helpers and of the program. */
export const R0 = reg(0);
/** r1..r5: helper arguments (clobbered by calls); r1 holds the context at entry. */
export const R1 = reg(1);
export const R2 = reg(2);
export const R3 = reg(3);
export const R4 = reg(4);
export const R5 = reg(5);
/** r6..r9: callee-saved, survive helper calls. */
export const R6 = reg(6);
export const R7 = reg(7);
export const R8 = reg(8);
export const R9 = reg(9);
/** r10: read-only frame pointer; the stack is the 512 bytes below it. */
export const R10 = reg(10);
export const FP = R10;

/** One encoded instruction (two slots for `ld_imm64`). */
export interface Instruction {
  readonly kind: "insn";
  readonly opcode: number;
  readonly dst: number;
  readonly src: number;
  /** Signed 16-bit offset; for jumps filled from `target` at encode time. */
  readonly off: number;
  /** Signed 32-bit immediate (low half for ld_imm64). */
  readonly imm: number;
  /** Full 64-bit immediate of ld_imm64. */
  readonly imm64?: bigint;
  /** Jump target label. */
  readonly target?: string;
  /** Name of the map whose fd goes into this ld_imm64, resolved at load time. */
  readonly mapRef?: string;
  /** Offset into the map value for `ldMapValue`. */
  readonly mapValueOffset?: number;
  /** Free-form note shown by the disassembler. */
  readonly comment?: string;
}

/** A jump target; occupies no instruction slot. */
export interface Label {
  readonly kind: "label";
  readonly name: string;
}

export type Item = Instruction | Label;
export type Operand = Register | number;

const isReg = (x: Operand): x is Register => typeof x === "object" && x !== null && x.kind === "reg";

function insn(opcode: number, dst: number, src: number, off: number, imm: number, extra: Partial<Instruction> = {}): Instruction {
  return { kind: "insn", opcode, dst, src, off, imm, ...extra };
}

/** Marks the position of the next instruction as `name`. */
export function label(name: string): Label {
  return { kind: "label", name };
}

function alu(cls: number, op: AluOpName, dst: Register, x: Operand): Instruction {
  return isReg(x)
    ? insn(cls | AluOp[op] | Source.X, dst.n, x.n, 0, 0)
    : insn(cls | AluOp[op] | Source.K, dst.n, 0, 0, x);
}
const alu64 = (op: AluOpName) => (dst: Register, x: Operand) => alu(Class.ALU64, op, dst, x);
const alu32 = (op: AluOpName) => (dst: Register, x: Operand) => alu(Class.ALU, op, dst, x);

/** `dst = x` (64-bit). */ export const mov = alu64("mov");
/** `dst += x`. */ export const add = alu64("add");
/** `dst -= x`. */ export const sub = alu64("sub");
/** `dst *= x`. */ export const mul = alu64("mul");
/** `dst /= x` (unsigned). */ export const div = alu64("div");
/** `dst %= x` (unsigned). */ export const mod = alu64("mod");
/** `dst |= x`. */ export const or = alu64("or");
/** `dst &= x`. */ export const and = alu64("and");
/** `dst ^= x`. */ export const xor = alu64("xor");
/** `dst <<= x`. */ export const lsh = alu64("lsh");
/** `dst >>= x` (logical). */ export const rsh = alu64("rsh");
/** `dst >>= x` (arithmetic). */ export const arsh = alu64("arsh");
/** `dst = -dst`. */ export const neg = (dst: Register) => insn(Class.ALU64 | AluOp.neg, dst.n, 0, 0, 0);
/** 32-bit forms: the upper half of dst is zeroed. */
export const mov32 = alu32("mov");
export const add32 = alu32("add");
export const sub32 = alu32("sub");
export const mul32 = alu32("mul");
export const div32 = alu32("div");
export const mod32 = alu32("mod");
export const or32 = alu32("or");
export const and32 = alu32("and");
export const xor32 = alu32("xor");
export const lsh32 = alu32("lsh");
export const rsh32 = alu32("rsh");
export const arsh32 = alu32("arsh");

/** `dst = htobe16(dst)` (ntohs too): byte swap on little-endian hosts, zero-extends. */
export const be16 = (dst: Register) => insn(Class.ALU | AluOp.end | Source.X, dst.n, 0, 0, 16);
/** `dst = htobe32(dst)`. */
export const be32 = (dst: Register) => insn(Class.ALU | AluOp.end | Source.X, dst.n, 0, 0, 32);
/** `dst = htobe64(dst)`. */
export const be64 = (dst: Register) => insn(Class.ALU | AluOp.end | Source.X, dst.n, 0, 0, 64);
/** `dst = htole16(dst)`: truncates to 16 bits on little-endian hosts. */
export const le16 = (dst: Register) => insn(Class.ALU | AluOp.end | Source.K, dst.n, 0, 0, 16);

function jmp(cls: number, op: JmpOpName, dst: Register, x: Operand, target: string): Instruction {
  return isReg(x)
    ? insn(cls | JmpOp[op] | Source.X, dst.n, x.n, 0, 0, { target })
    : insn(cls | JmpOp[op] | Source.K, dst.n, 0, 0, x, { target });
}
const jmp64 = (op: JmpOpName) => (dst: Register, x: Operand, target: string) => jmp(Class.JMP, op, dst, x, target);
const jmp32 = (op: JmpOpName) => (dst: Register, x: Operand, target: string) => jmp(Class.JMP32, op, dst, x, target);

/** `goto target`. */
export const ja = (target: string) => insn(Class.JMP | JmpOp.ja, 0, 0, 0, 0, { target });
/** `if (dst == x) goto target`. */ export const jeq = jmp64("jeq");
/** `if (dst != x) goto target`. */ export const jne = jmp64("jne");
/** `if (dst > x) goto target` (unsigned). */ export const jgt = jmp64("jgt");
/** `if (dst >= x) goto target` (unsigned). */ export const jge = jmp64("jge");
/** `if (dst < x) goto target` (unsigned). */ export const jlt = jmp64("jlt");
/** `if (dst <= x) goto target` (unsigned). */ export const jle = jmp64("jle");
/** `if (dst & x) goto target`. */ export const jset = jmp64("jset");
/** Signed comparisons. */
export const jsgt = jmp64("jsgt");
export const jsge = jmp64("jsge");
export const jslt = jmp64("jslt");
export const jsle = jmp64("jsle");
/** 32-bit comparisons (low halves only). */
export const jeq32 = jmp32("jeq");
export const jne32 = jmp32("jne");
export const jgt32 = jmp32("jgt");
export const jge32 = jmp32("jge");
export const jlt32 = jmp32("jlt");
export const jle32 = jmp32("jle");
export const jset32 = jmp32("jset");
export const jsgt32 = jmp32("jsgt");
export const jsge32 = jmp32("jsge");
export const jslt32 = jmp32("jslt");
export const jsle32 = jmp32("jsle");

/** The call instruction `r0 = helper(r1..r5)`, by helper name or id (see `call` in args.ts for the argument moves). */
export function callInsn(helper: HelperName | number): Instruction {
  const id = typeof helper === "number" ? helper : Helper[helper];
  return insn(Class.JMP | JmpOp.call, 0, 0, 0, id, { comment: typeof helper === "string" ? `bpf_${helper}` : undefined });
}
/** `return r0`. */
export const exit = () => insn(Class.JMP | JmpOp.exit, 0, 0, 0, 0);

/** `dst = *(size *)(src + off)`. */
export function ldx(size: SizeName, dst: Register, src: Register, off: number): Instruction {
  return insn(Class.LDX | Mode.MEM | Size[size], dst.n, src.n, off, 0);
}
/** `*(size *)(dst + off) = src`. */
export function stx(size: SizeName, dst: Register, off: number, src: Register): Instruction {
  return insn(Class.STX | Mode.MEM | Size[size], dst.n, src.n, off, 0);
}
/** `*(size *)(dst + off) = imm` (imm sign-extended for DW). */
export function st(size: SizeName, dst: Register, off: number, imm: number): Instruction {
  return insn(Class.ST | Mode.MEM | Size[size], dst.n, 0, off, imm);
}
/** Atomic `*(size *)(dst + off) += src` (BPF_ATOMIC | BPF_ADD, no fetch). W or DW only. */
export function atomicAdd(size: "W" | "DW", dst: Register, off: number, src: Register): Instruction {
  return insn(Class.STX | Mode.ATOMIC | Size[size], dst.n, src.n, off, AluOp.add);
}

/** `dst = imm64` (two slots). */
export function ldImm64(dst: Register, value: bigint | number): Instruction {
  const v = BigInt.asUintN(64, BigInt(value));
  return insn(Class.LD | Mode.IMM | Size.DW, dst.n, 0, 0, Number(BigInt.asIntN(32, v)), { imm64: v });
}
/** `dst = &map` : the map named `map` is resolved to its fd when the program is loaded. */
export function ldMap(dst: Register, map: string): Instruction {
  return insn(Class.LD | Mode.IMM | Size.DW, dst.n, PseudoSource.MAP_FD, 0, 0, { imm64: 0n, mapRef: map, comment: `&${map}` });
}
/** `dst = (void *)&map_value + off` for single-entry array maps (global data). */
export function ldMapValue(dst: Register, map: string, off = 0): Instruction {
  return insn(Class.LD | Mode.IMM | Size.DW, dst.n, PseudoSource.MAP_VALUE, 0, 0, { imm64: 0n, mapRef: map, mapValueOffset: off });
}

/** Number of 8-byte slots an instruction takes. */
export function width(i: Instruction): number {
  return i.imm64 !== undefined ? 2 : 1;
}
