/** A compact disassembler, for debugging and for tests that show what a program does. */
import { type Instruction, type Item } from "./instruction.js";
import { AluOp, Class, JmpOp, Mode, Size } from "./opcodes.js";

const aluNames = new Map<number, string>(Object.entries(AluOp).map(([k, v]) => [v, k]));
const jmpNames = new Map<number, string>(Object.entries(JmpOp).map(([k, v]) => [v, k]));
const sizeNames = new Map<number, string>(Object.entries(Size).map(([k, v]) => [v, k]));

function operand(i: Instruction): string {
  return i.opcode & 0x08 ? `r${i.src}` : String(i.imm);
}

/** One line of text for an instruction. */
export function formatInstruction(i: Instruction): string {
  const cls = i.opcode & 0x07;
  switch (cls) {
    case Class.ALU:
    case Class.ALU64: {
      const op = aluNames.get(i.opcode & 0xf0) ?? "?";
      if (op === "end") return `r${i.dst} = ${i.opcode & 0x08 ? "be" : "le"}${i.imm} r${i.dst}`;
      return `${op}${cls === Class.ALU ? "32" : ""} r${i.dst}, ${operand(i)}`;
    }
    case Class.JMP:
    case Class.JMP32: {
      const op = jmpNames.get(i.opcode & 0xf0) ?? "?";
      if (op === "call") return `call ${i.comment ?? i.imm}`;
      if (op === "exit") return "exit";
      if (op === "ja") return `goto ${i.target ?? i.off}`;
      return `if${cls === Class.JMP32 ? "32" : ""} r${i.dst} ${op} ${operand(i)} goto ${i.target ?? i.off}`;
    }
    case Class.LDX:
      return `r${i.dst} = *(${sizeNames.get(i.opcode & 0x18)} *)(r${i.src} ${i.off >= 0 ? "+" : "-"} ${Math.abs(i.off)})`;
    case Class.STX:
      if ((i.opcode & 0xe0) === Mode.ATOMIC) return `lock *(${sizeNames.get(i.opcode & 0x18)} *)(r${i.dst} + ${i.off}) += r${i.src}`;
      return `*(${sizeNames.get(i.opcode & 0x18)} *)(r${i.dst} ${i.off >= 0 ? "+" : "-"} ${Math.abs(i.off)}) = r${i.src}`;
    case Class.ST:
      return `*(${sizeNames.get(i.opcode & 0x18)} *)(r${i.dst} ${i.off >= 0 ? "+" : "-"} ${Math.abs(i.off)}) = ${i.imm}`;
    case Class.LD:
      return i.mapRef ? `r${i.dst} = ${i.comment ?? `&${i.mapRef}`} ll` : `r${i.dst} = ${i.imm64 ?? i.imm} ll`;
    default:
      return `?? opcode 0x${i.opcode.toString(16)}`;
  }
}

/** A listing with labels, one instruction per line. */
export function disassemble(items: readonly Item[]): string {
  return items.map((it) => (it.kind === "label" ? `${it.name}:` : `    ${formatInstruction(it)}`)).join("\n");
}
