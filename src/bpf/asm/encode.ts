/**
 * Encoding: labels to pc-relative offsets, map names to fds, values to the 8-byte wire format.
 *
 *   byte 0    byte 1             bytes 2-3        bytes 4-7
 *   opcode  | src:4 | dst:4 |   off (s16 LE)  |  imm (s32 LE)
 *
 * `ld_imm64` takes two slots; the second holds the upper 32 bits of the immediate.
 */
import { BpfError } from "../errors.js";
import { Class, JmpOp } from "./opcodes.js";
import { type Instruction, type Item, width } from "./instruction.js";

/** An assembly error: missing or duplicate label, jump out of range, bad operand. */
export class AsmError extends BpfError {
  constructor(message: string) {
    super("BPF_ERR_ASM", message);
  }
}

/** Byte size of one slot. */
export const INSN_SIZE = 8;

function isJump(i: Instruction): boolean {
  const cls = i.opcode & 0x07;
  const op = i.opcode & 0xf0;
  return (cls === Class.JMP || cls === Class.JMP32) && op !== JmpOp.call && op !== JmpOp.exit;
}

/** Slot index of every label; throws on duplicates. */
export function resolveLabels(items: readonly Item[]): Map<string, number> {
  const labels = new Map<string, number>();
  let pc = 0;
  for (const item of items) {
    if (item.kind === "label") {
      if (labels.has(item.name)) throw new AsmError(`duplicate label "${item.name}"`);
      labels.set(item.name, pc);
    } else {
      pc += width(item);
    }
  }
  return labels;
}

function checkRange(what: string, value: number, min: number, max: number, at: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new AsmError(`instruction ${at}: ${what} ${value} is out of range [${min}, ${max}]`);
  }
}

/** Map fds by map name, used to resolve `ldMap`/`ldMapValue`. Omit to encode with fd 0 (tests, hashes). */
export type MapFds = ReadonlyMap<string, number> | ((name: string) => number | undefined);

/**
 * Encode a program to bytes. Labels are resolved here; map references use `maps` when given
 * (a missing map is an error), else encode as fd 0.
 */
export function encode(items: readonly Item[], maps?: MapFds): Buffer {
  const labels = resolveLabels(items);
  const insns = items.filter((i): i is Instruction => i.kind === "insn");
  const slots = insns.reduce((n, i) => n + width(i), 0);
  const out = Buffer.alloc(slots * INSN_SIZE);
  let pc = 0;
  for (const [index, i] of insns.entries()) {
    let { off, imm } = i;
    let hi = 0;
    if (i.target !== undefined) {
      if (!isJump(i)) throw new AsmError(`instruction ${index}: only jumps take a label`);
      const to = labels.get(i.target);
      if (to === undefined) throw new AsmError(`instruction ${index}: jump to missing label "${i.target}"`);
      off = to - pc - 1;
      if (off < -32768 || off > 32767) throw new AsmError(`instruction ${index}: jump to "${i.target}" is out of range (${off} slots)`);
    }
    if (i.imm64 !== undefined) {
      let v = i.imm64;
      if (i.mapRef !== undefined && maps !== undefined) {
        const fd = typeof maps === "function" ? maps(i.mapRef) : maps.get(i.mapRef);
        if (fd === undefined) throw new AsmError(`instruction ${index}: reference to unknown map "${i.mapRef}"`);
        v = BigInt(fd) | (BigInt(i.mapValueOffset ?? 0) << 32n);
      } else if (i.mapRef !== undefined) {
        v = BigInt(i.mapValueOffset ?? 0) << 32n;
      }
      imm = Number(BigInt.asIntN(32, v));
      hi = Number(BigInt.asIntN(32, v >> 32n));
    }
    checkRange("dst register", i.dst, 0, 10, index);
    checkRange("src register", i.src, 0, 15, index);
    checkRange("offset", off, -32768, 32767, index);
    checkRange("immediate", imm, -2147483648, 4294967295, index);
    const at = pc * INSN_SIZE;
    out.writeUInt8(i.opcode, at);
    out.writeUInt8((i.src << 4) | i.dst, at + 1);
    out.writeInt16LE(off, at + 2);
    // Immediates are signed 32-bit; accept unsigned spellings (0xffffffff) by wrapping.
    out.writeInt32LE(imm | 0, at + 4);
    if (width(i) === 2) out.writeInt32LE(hi, at + 12);
    pc += width(i);
  }
  return out;
}

/** Number of slots (what the kernel calls insn_cnt). */
export function slotCount(items: readonly Item[]): number {
  return items.reduce((n, i) => n + (i.kind === "insn" ? width(i) : 0), 0);
}
