/**
 * eBPF opcode bits (Documentation/bpf/standardization/instruction-set.rst).
 *
 *   opcode byte:  | op (4 bits) | source (1 bit) | class (3 bits) |   ALU / JMP classes
 *                 | mode (3)    | size (2)       | class (3)      |   load / store classes
 */

/** Instruction classes (low 3 bits). */
export const Class = { LD: 0x00, LDX: 0x01, ST: 0x02, STX: 0x03, ALU: 0x04, JMP: 0x05, JMP32: 0x06, ALU64: 0x07 } as const;

/** Access sizes of loads and stores. */
export const Size = { W: 0x00, H: 0x08, B: 0x10, DW: 0x18 } as const;
export type SizeName = keyof typeof Size;

/** Byte width of each access size. */
export const sizeBytes: Record<SizeName, number> = { B: 1, H: 2, W: 4, DW: 8 };

/** Addressing modes. */
export const Mode = { IMM: 0x00, ABS: 0x20, IND: 0x40, MEM: 0x60, ATOMIC: 0xc0 } as const;

/** Operand source: immediate (K) or register (X). For BPF_END, X means "to big endian". */
export const Source = { K: 0x00, X: 0x08 } as const;

/** Arithmetic operations (high 4 bits of ALU/ALU64 opcodes). */
export const AluOp = {
  add: 0x00, sub: 0x10, mul: 0x20, div: 0x30, or: 0x40, and: 0x50, lsh: 0x60, rsh: 0x70,
  neg: 0x80, mod: 0x90, xor: 0xa0, mov: 0xb0, arsh: 0xc0, end: 0xd0,
} as const;
export type AluOpName = keyof typeof AluOp;

/** Jump operations (high 4 bits of JMP/JMP32 opcodes). */
export const JmpOp = {
  ja: 0x00, jeq: 0x10, jgt: 0x20, jge: 0x30, jset: 0x40, jne: 0x50, jsgt: 0x60, jsge: 0x70,
  call: 0x80, exit: 0x90, jlt: 0xa0, jle: 0xb0, jslt: 0xc0, jsle: 0xd0,
} as const;
export type JmpOpName = keyof typeof JmpOp;

/** `src` values of `ld_imm64` that make the loader/kernel resolve the immediate (bpf.h). */
export const PseudoSource = { MAP_FD: 1, MAP_VALUE: 2, BTF_ID: 3, FUNC: 4, MAP_IDX: 5, MAP_IDX_VALUE: 6 } as const;

/** `src` of a call instruction: 0 = helper id in imm, 1 = bpf-to-bpf call (pc-relative). */
export const PseudoCall = 1;
