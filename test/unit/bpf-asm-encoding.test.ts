/**
 * Instruction encodings against the bytes LLVM's BPF backend (the one `clang -target bpf` uses)
 * emits for the same instruction. Vectors marked "llvm" come from
 * `llvm-mc -triple bpfel -mattr=+alu32 -show-encoding` (LLVM 14) on the C-like text in `asm`;
 * vectors marked "spec" are for forms LLVM 14's assembler has no syntax for (mod, jset, ST imm) or
 * that libbpf patches after compiling (ld_imm64 map references), written from
 * Documentation/bpf/standardization/instruction-set.rst and include/uapi/linux/bpf.h.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as a from "../../src/bpf/asm/index.js";
import { AsmError, encode, type Item, R0, R1, R2, R3, R6, R7, R10 } from "../../src/bpf/asm/index.js";
import { BpfError } from "../../src/bpf/errors.js";

interface Vector {
  asm: string;
  have: Item;
  want: string;
  from: "llvm" | "spec";
}

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

// Jump offsets are symbolic in the DSL: each jump vector is encoded in a small program whose label
// sits at the offset the vector names (see encodeAt).
const vectors: Vector[] = [
  // ALU64, immediate and register
  { asm: "r0 = 1", have: a.mov(R0, 1), want: "b7 00 00 00 01 00 00 00", from: "llvm" },
  { asm: "r1 = r6", have: a.mov(R1, R6), want: "bf 61 00 00 00 00 00 00", from: "llvm" },
  { asm: "r2 = -8", have: a.mov(R2, -8), want: "b7 02 00 00 f8 ff ff ff", from: "llvm" },
  { asm: "r3 = 0xffffffff (-1)", have: a.mov(R3, 0xffffffff), want: "b7 03 00 00 ff ff ff ff", from: "llvm" },
  { asm: "r1 += 8", have: a.add(R1, 8), want: "07 01 00 00 08 00 00 00", from: "llvm" },
  { asm: "r1 += r2", have: a.add(R1, R2), want: "0f 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "r1 -= 3", have: a.sub(R1, 3), want: "17 01 00 00 03 00 00 00", from: "llvm" },
  { asm: "r1 -= r2", have: a.sub(R1, R2), want: "1f 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "r1 *= 3", have: a.mul(R1, 3), want: "27 01 00 00 03 00 00 00", from: "llvm" },
  { asm: "r1 *= r2", have: a.mul(R1, R2), want: "2f 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "r1 /= 3", have: a.div(R1, 3), want: "37 01 00 00 03 00 00 00", from: "llvm" },
  { asm: "r1 /= r2", have: a.div(R1, R2), want: "3f 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "r1 %= 3", have: a.mod(R1, 3), want: "97 01 00 00 03 00 00 00", from: "spec" },
  { asm: "r1 %= r2", have: a.mod(R1, R2), want: "9f 21 00 00 00 00 00 00", from: "spec" },
  { asm: "r1 |= 3", have: a.or(R1, 3), want: "47 01 00 00 03 00 00 00", from: "llvm" },
  { asm: "r1 |= r2", have: a.or(R1, R2), want: "4f 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "r1 &= 255", have: a.and(R1, 0xff), want: "57 01 00 00 ff 00 00 00", from: "llvm" },
  { asm: "r1 &= r2", have: a.and(R1, R2), want: "5f 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "r1 ^= 3", have: a.xor(R1, 3), want: "a7 01 00 00 03 00 00 00", from: "llvm" },
  { asm: "r1 ^= r2", have: a.xor(R1, R2), want: "af 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "r1 <<= 3", have: a.lsh(R1, 3), want: "67 01 00 00 03 00 00 00", from: "llvm" },
  { asm: "r1 <<= r2", have: a.lsh(R1, R2), want: "6f 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "r1 >>= 3", have: a.rsh(R1, 3), want: "77 01 00 00 03 00 00 00", from: "llvm" },
  { asm: "r1 >>= r2", have: a.rsh(R1, R2), want: "7f 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "r1 s>>= 3", have: a.arsh(R1, 3), want: "c7 01 00 00 03 00 00 00", from: "llvm" },
  { asm: "r1 s>>= r2", have: a.arsh(R1, R2), want: "cf 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "r1 = -r1", have: a.neg(R1), want: "87 01 00 00 00 00 00 00", from: "llvm" },
  // ALU (32-bit)
  { asm: "w1 = 5", have: a.mov32(R1, 5), want: "b4 01 00 00 05 00 00 00", from: "llvm" },
  { asm: "w1 = w2", have: a.mov32(R1, R2), want: "bc 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "w3 += -1 (0xffffffff)", have: a.add32(R3, 0xffffffff), want: "04 03 00 00 ff ff ff ff", from: "llvm" },
  { asm: "w1 += w2", have: a.add32(R1, R2), want: "0c 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "w1 -= 5", have: a.sub32(R1, 5), want: "14 01 00 00 05 00 00 00", from: "llvm" },
  { asm: "w1 -= w2", have: a.sub32(R1, R2), want: "1c 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "w1 *= 5", have: a.mul32(R1, 5), want: "24 01 00 00 05 00 00 00", from: "llvm" },
  { asm: "w1 *= w2", have: a.mul32(R1, R2), want: "2c 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "w1 /= 5", have: a.div32(R1, 5), want: "34 01 00 00 05 00 00 00", from: "llvm" },
  { asm: "w1 /= w2", have: a.div32(R1, R2), want: "3c 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "w1 %= 5", have: a.mod32(R1, 5), want: "94 01 00 00 05 00 00 00", from: "spec" },
  { asm: "w1 %= w2", have: a.mod32(R1, R2), want: "9c 21 00 00 00 00 00 00", from: "spec" },
  { asm: "w1 |= 5", have: a.or32(R1, 5), want: "44 01 00 00 05 00 00 00", from: "llvm" },
  { asm: "w1 |= w2", have: a.or32(R1, R2), want: "4c 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "w1 &= 5", have: a.and32(R1, 5), want: "54 01 00 00 05 00 00 00", from: "llvm" },
  { asm: "w1 &= w2", have: a.and32(R1, R2), want: "5c 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "w1 ^= 5", have: a.xor32(R1, 5), want: "a4 01 00 00 05 00 00 00", from: "llvm" },
  { asm: "w1 ^= w2", have: a.xor32(R1, R2), want: "ac 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "w1 <<= 5", have: a.lsh32(R1, 5), want: "64 01 00 00 05 00 00 00", from: "llvm" },
  { asm: "w1 <<= w2", have: a.lsh32(R1, R2), want: "6c 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "w1 >>= 5", have: a.rsh32(R1, 5), want: "74 01 00 00 05 00 00 00", from: "llvm" },
  { asm: "w1 >>= w2", have: a.rsh32(R1, R2), want: "7c 21 00 00 00 00 00 00", from: "llvm" },
  { asm: "w1 s>>= 5", have: a.arsh32(R1, 5), want: "c4 01 00 00 05 00 00 00", from: "llvm" },
  { asm: "w1 s>>= w2", have: a.arsh32(R1, R2), want: "cc 21 00 00 00 00 00 00", from: "llvm" },
  // Byte swaps
  { asm: "r1 = be16 r1", have: a.be16(R1), want: "dc 01 00 00 10 00 00 00", from: "llvm" },
  { asm: "r1 = be32 r1", have: a.be32(R1), want: "dc 01 00 00 20 00 00 00", from: "llvm" },
  { asm: "r1 = be64 r1", have: a.be64(R1), want: "dc 01 00 00 40 00 00 00", from: "llvm" },
  { asm: "r1 = le16 r1", have: a.le16(R1), want: "d4 01 00 00 10 00 00 00", from: "llvm" },
  // Calls and exit
  { asm: "call 107 (sk_storage_get)", have: a.call("sk_storage_get"), want: "85 00 00 00 6b 00 00 00", from: "llvm" },
  { asm: "call 1", have: a.call(1), want: "85 00 00 00 01 00 00 00", from: "llvm" },
  { asm: "exit", have: a.exit(), want: "95 00 00 00 00 00 00 00", from: "llvm" },
  // Loads and stores, every size
  { asm: "r1 = *(u32 *)(r6 + 4)", have: a.ldx("W", R1, R6, 4), want: "61 61 04 00 00 00 00 00", from: "llvm" },
  { asm: "r2 = *(u16 *)(r6 + 64)", have: a.ldx("H", R2, R6, 64), want: "69 62 40 00 00 00 00 00", from: "llvm" },
  { asm: "r3 = *(u8 *)(r7 - 1)", have: a.ldx("B", R3, R7, -1), want: "71 73 ff ff 00 00 00 00", from: "llvm" },
  { asm: "r2 = *(u64 *)(r6 + 184)", have: a.ldx("DW", R2, R6, 184), want: "79 62 b8 00 00 00 00 00", from: "llvm" },
  { asm: "*(u32 *)(r10 - 4) = r1", have: a.stx("W", R10, -4, R1), want: "63 1a fc ff 00 00 00 00", from: "llvm" },
  { asm: "*(u16 *)(r10 - 6) = r1", have: a.stx("H", R10, -6, R1), want: "6b 1a fa ff 00 00 00 00", from: "llvm" },
  { asm: "*(u8 *)(r10 - 7) = r1", have: a.stx("B", R10, -7, R1), want: "73 1a f9 ff 00 00 00 00", from: "llvm" },
  { asm: "*(u64 *)(r10 - 16) = r1", have: a.stx("DW", R10, -16, R1), want: "7b 1a f0 ff 00 00 00 00", from: "llvm" },
  { asm: "*(u32 *)(r10 - 8) = 5", have: a.st("W", R10, -8, 5), want: "62 0a f8 ff 05 00 00 00", from: "spec" },
  { asm: "*(u16 *)(r10 - 8) = 5", have: a.st("H", R10, -8, 5), want: "6a 0a f8 ff 05 00 00 00", from: "spec" },
  { asm: "*(u8 *)(r10 - 8) = 5", have: a.st("B", R10, -8, 5), want: "72 0a f8 ff 05 00 00 00", from: "spec" },
  { asm: "*(u64 *)(r10 - 8) = -1", have: a.st("DW", R10, -8, -1), want: "7a 0a f8 ff ff ff ff ff", from: "spec" },
  { asm: "lock *(u64 *)(r1 + 8) += r2", have: a.atomicAdd("DW", R1, 8, R2), want: "db 21 08 00 00 00 00 00", from: "llvm" },
  { asm: "lock *(u32 *)(r1 + 8) += w2", have: a.atomicAdd("W", R1, 8, R2), want: "c3 21 08 00 00 00 00 00", from: "llvm" },
  // ld_imm64: two slots, upper half in the second slot's imm
  {
    asm: "r1 = 0x123456789abcdef0 ll",
    have: a.ldImm64(R1, 0x123456789abcdef0n),
    want: "18 01 00 00 f0 de bc 9a 00 00 00 00 78 56 34 12",
    from: "llvm",
  },
  { asm: "r1 = -1 ll", have: a.ldImm64(R1, -1), want: "18 01 00 00 ff ff ff ff 00 00 00 00 ff ff ff ff", from: "llvm" },
];

interface JumpVector {
  asm: string;
  have: (target: string) => Item;
  off: number;
  want: string;
}

// Each jump is encoded with its label placed so that the resolved offset equals `off`.
const jumps: JumpVector[] = [
  { asm: "goto +5", have: (t) => a.ja(t), off: 5, want: "05 00 05 00 00 00 00 00" },
  { asm: "goto -3", have: (t) => a.ja(t), off: -3, want: "05 00 fd ff 00 00 00 00" },
  { asm: "if r1 == 5 goto +1", have: (t) => a.jeq(R1, 5, t), off: 1, want: "15 01 01 00 05 00 00 00" },
  { asm: "if r1 == r2 goto -1", have: (t) => a.jeq(R1, R2, t), off: -1, want: "1d 21 ff ff 00 00 00 00" },
  { asm: "if r1 != 0 goto +2", have: (t) => a.jne(R1, 0, t), off: 2, want: "55 01 02 00 00 00 00 00" },
  { asm: "if r1 != r2 goto +2", have: (t) => a.jne(R1, R2, t), off: 2, want: "5d 21 02 00 00 00 00 00" },
  { asm: "if r1 > 5 goto +1", have: (t) => a.jgt(R1, 5, t), off: 1, want: "25 01 01 00 05 00 00 00" },
  { asm: "if r1 > r2 goto +1", have: (t) => a.jgt(R1, R2, t), off: 1, want: "2d 21 01 00 00 00 00 00" },
  { asm: "if r1 >= 5 goto +1", have: (t) => a.jge(R1, 5, t), off: 1, want: "35 01 01 00 05 00 00 00" },
  { asm: "if r1 >= r2 goto +1", have: (t) => a.jge(R1, R2, t), off: 1, want: "3d 21 01 00 00 00 00 00" },
  { asm: "if r1 < 5 goto +1", have: (t) => a.jlt(R1, 5, t), off: 1, want: "a5 01 01 00 05 00 00 00" },
  { asm: "if r1 < r2 goto +1", have: (t) => a.jlt(R1, R2, t), off: 1, want: "ad 21 01 00 00 00 00 00" },
  { asm: "if r1 <= 5 goto +1", have: (t) => a.jle(R1, 5, t), off: 1, want: "b5 01 01 00 05 00 00 00" },
  { asm: "if r1 <= r2 goto +1", have: (t) => a.jle(R1, R2, t), off: 1, want: "bd 21 01 00 00 00 00 00" },
  { asm: "if r1 & 5 goto +1 (spec)", have: (t) => a.jset(R1, 5, t), off: 1, want: "45 01 01 00 05 00 00 00" },
  { asm: "if r1 & r2 goto +1 (spec)", have: (t) => a.jset(R1, R2, t), off: 1, want: "4d 21 01 00 00 00 00 00" },
  { asm: "if r1 s> -1 goto +1", have: (t) => a.jsgt(R1, -1, t), off: 1, want: "65 01 01 00 ff ff ff ff" },
  { asm: "if r1 s> r2 goto +1", have: (t) => a.jsgt(R1, R2, t), off: 1, want: "6d 21 01 00 00 00 00 00" },
  { asm: "if r1 s>= -1 goto +1", have: (t) => a.jsge(R1, -1, t), off: 1, want: "75 01 01 00 ff ff ff ff" },
  { asm: "if r1 s>= r2 goto +1", have: (t) => a.jsge(R1, R2, t), off: 1, want: "7d 21 01 00 00 00 00 00" },
  { asm: "if r1 s< -1 goto +1", have: (t) => a.jslt(R1, -1, t), off: 1, want: "c5 01 01 00 ff ff ff ff" },
  { asm: "if r1 s< r2 goto +1", have: (t) => a.jslt(R1, R2, t), off: 1, want: "cd 21 01 00 00 00 00 00" },
  { asm: "if r1 s<= -1 goto +1", have: (t) => a.jsle(R1, -1, t), off: 1, want: "d5 01 01 00 ff ff ff ff" },
  { asm: "if r1 s<= r2 goto +1", have: (t) => a.jsle(R1, R2, t), off: 1, want: "dd 21 01 00 00 00 00 00" },
  { asm: "if w1 == 5 goto +1", have: (t) => a.jeq32(R1, 5, t), off: 1, want: "16 01 01 00 05 00 00 00" },
  { asm: "if w1 == w2 goto +1", have: (t) => a.jeq32(R1, R2, t), off: 1, want: "1e 21 01 00 00 00 00 00" },
  { asm: "if w1 != 5 goto +1", have: (t) => a.jne32(R1, 5, t), off: 1, want: "56 01 01 00 05 00 00 00" },
  { asm: "if w1 != w2 goto +1", have: (t) => a.jne32(R1, R2, t), off: 1, want: "5e 21 01 00 00 00 00 00" },
  { asm: "if w1 > 5 goto +3", have: (t) => a.jgt32(R1, 5, t), off: 3, want: "26 01 03 00 05 00 00 00" },
  { asm: "if w1 > w2 goto +1", have: (t) => a.jgt32(R1, R2, t), off: 1, want: "2e 21 01 00 00 00 00 00" },
  { asm: "if w1 >= 5 goto +1", have: (t) => a.jge32(R1, 5, t), off: 1, want: "36 01 01 00 05 00 00 00" },
  { asm: "if w1 >= w2 goto +1", have: (t) => a.jge32(R1, R2, t), off: 1, want: "3e 21 01 00 00 00 00 00" },
  { asm: "if w1 < 5 goto +1", have: (t) => a.jlt32(R1, 5, t), off: 1, want: "a6 01 01 00 05 00 00 00" },
  { asm: "if w1 < w2 goto +1", have: (t) => a.jlt32(R1, R2, t), off: 1, want: "ae 21 01 00 00 00 00 00" },
  { asm: "if w1 <= 5 goto +1", have: (t) => a.jle32(R1, 5, t), off: 1, want: "b6 01 01 00 05 00 00 00" },
  { asm: "if w1 <= w2 goto +1", have: (t) => a.jle32(R1, R2, t), off: 1, want: "be 21 01 00 00 00 00 00" },
  { asm: "if w1 & 5 goto +1 (spec)", have: (t) => a.jset32(R1, 5, t), off: 1, want: "46 01 01 00 05 00 00 00" },
  { asm: "if w1 & w2 goto +1 (spec)", have: (t) => a.jset32(R1, R2, t), off: 1, want: "4e 21 01 00 00 00 00 00" },
  { asm: "if w1 s> -1 goto +1", have: (t) => a.jsgt32(R1, -1, t), off: 1, want: "66 01 01 00 ff ff ff ff" },
  { asm: "if w1 s> w2 goto +1", have: (t) => a.jsgt32(R1, R2, t), off: 1, want: "6e 21 01 00 00 00 00 00" },
  { asm: "if w1 s>= -1 goto +1", have: (t) => a.jsge32(R1, -1, t), off: 1, want: "76 01 01 00 ff ff ff ff" },
  { asm: "if w1 s>= w2 goto +1", have: (t) => a.jsge32(R1, R2, t), off: 1, want: "7e 21 01 00 00 00 00 00" },
  { asm: "if w1 s< -1 goto +1", have: (t) => a.jslt32(R1, -1, t), off: 1, want: "c6 01 01 00 ff ff ff ff" },
  { asm: "if w1 s< w2 goto +1", have: (t) => a.jslt32(R1, R2, t), off: 1, want: "ce 21 01 00 00 00 00 00" },
  { asm: "if w1 s<= -1 goto +1", have: (t) => a.jsle32(R1, -1, t), off: 1, want: "d6 01 01 00 ff ff ff ff" },
  { asm: "if w1 s<= w2 goto +1", have: (t) => a.jsle32(R1, R2, t), off: 1, want: "de 21 01 00 00 00 00 00" },
];

/** Encode `jump` inside filler so that its label lands `off` slots after the next instruction. */
function encodeAt(jump: (t: string) => Item, off: number): Buffer {
  const fill = (n: number) => Array.from({ length: n }, () => a.mov(R0, 0));
  const items: Item[] =
    off >= 0
      ? [jump("L"), ...fill(off), a.label("L"), a.exit()]
      : [a.label("L"), ...fill(-off - 1), jump("L")];
  const bytes = encode(items);
  const at = off >= 0 ? 0 : -off - 1; // slot index of the jump
  return bytes.subarray(at * 8, at * 8 + 8);
}

test("every instruction builder encodes like LLVM", async (t) => {
  for (const v of vectors) {
    await t.test(`${v.asm} [${v.from}]`, () => {
      assert.equal(encode([v.have]).toString("hex"), hex(v.want).toString("hex"));
    });
  }
});

test("every jump builder encodes like LLVM, offsets resolved from labels", async (t) => {
  for (const v of jumps) {
    await t.test(v.asm, () => {
      assert.equal(encodeAt(v.have, v.off).toString("hex"), hex(v.want).toString("hex"));
    });
  }
});

test("ldMap and ldMapValue: pseudo sources 1 and 2 with the map fd patched in (libbpf relocation result)", async (t) => {
  const cases = [
    { name: "ldMap r1, fd 7", have: a.ldMap(R1, "m"), want: "18 11 00 00 07 00 00 00 00 00 00 00 00 00 00 00" },
    { name: "ldMap r2, fd 0x1234", have: a.ldMap(R2, "big"), want: "18 12 00 00 34 12 00 00 00 00 00 00 00 00 00 00" },
    { name: "ldMapValue r2, fd 7, off 16", have: a.ldMapValue(R2, "m", 16), want: "18 22 00 00 07 00 00 00 00 00 00 00 10 00 00 00" },
    { name: "ldMapValue r3, default off 0", have: a.ldMapValue(R3, "m"), want: "18 23 00 00 07 00 00 00 00 00 00 00 00 00 00 00" },
  ];
  const fds = new Map([
    ["m", 7],
    ["big", 0x1234],
  ]);
  for (const c of cases) {
    await t.test(c.name, () => {
      assert.equal(encode([c.have], fds).toString("hex"), hex(c.want).toString("hex"));
      // The resolver can also be a function.
      assert.equal(encode([c.have], (n) => fds.get(n)).toString("hex"), hex(c.want).toString("hex"));
    });
  }
  await t.test("without a resolver the fd encodes as 0 (hashing, listings)", () => {
    assert.equal(encode([a.ldMap(R1, "m")]).toString("hex"), hex("18 11 00 00 00 00 00 00 00 00 00 00 00 00 00 00").toString("hex"));
  });
});

test("labels resolve to pc-relative slot offsets", async (t) => {
  const off = (bytes: Buffer, slot: number) => bytes.readInt16LE(slot * 8 + 2);
  const cases: { name: string; have: Item[]; slot: number; want: number }[] = [
    { name: "forward over two instructions", have: [a.jeq(R1, 0, "out"), a.mov(R0, 1), a.mov(R0, 2), a.label("out"), a.exit()], slot: 0, want: 2 },
    { name: "forward to the next instruction", have: [a.ja("next"), a.label("next"), a.exit()], slot: 0, want: 0 },
    { name: "backward loop", have: [a.label("top"), a.add(R1, 1), a.jlt(R1, 10, "top"), a.exit()], slot: 1, want: -2 },
    { name: "jump to itself", have: [a.label("self"), a.ja("self")], slot: 0, want: -1 },
    { name: "ld_imm64 counts as two slots (forward)", have: [a.jeq(R1, 0, "out"), a.ldImm64(R2, 5n), a.label("out"), a.exit()], slot: 0, want: 2 },
    {
      name: "ld_imm64 counts as two slots (backward)",
      have: [a.label("top"), a.ldMap(R1, "m"), a.mov(R0, 0), a.ja("top")],
      slot: 3,
      want: -4,
    },
    { name: "labels take no slot, two labels at one place", have: [a.ja("b"), a.label("a"), a.label("b"), a.exit()], slot: 0, want: 0 },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      assert.equal(off(encode(c.have), c.slot), c.want);
    });
  }
});

test("assembly errors are AsmError with a message naming the problem", async (t) => {
  const filler = (n: number) => Array.from({ length: n }, () => a.mov(R0, 0));
  const cases: { name: string; have: () => Buffer; want: RegExp }[] = [
    { name: "missing label", have: () => encode([a.ja("nowhere"), a.exit()]), want: /missing label "nowhere"/ },
    { name: "duplicate label", have: () => encode([a.label("x"), a.mov(R0, 0), a.label("x"), a.exit()]), want: /duplicate label "x"/ },
    {
      name: "forward jump of 32768 slots",
      have: () => encode([a.ja("far"), ...filler(32768), a.label("far"), a.exit()]),
      want: /out of range \(32768 slots\)/,
    },
    {
      name: "backward jump of -32769 slots",
      have: () => encode([a.label("far"), ...filler(32768), a.ja("far")]),
      want: /out of range \(-32769 slots\)/,
    },
    { name: "unknown map with a Map resolver", have: () => encode([a.ldMap(R1, "nope"), a.exit()], new Map([["other", 3]])), want: /unknown map "nope"/ },
    { name: "unknown map with a function resolver", have: () => encode([a.ldMapValue(R1, "nope"), a.exit()], () => undefined), want: /unknown map "nope"/ },
    { name: "immediate too large", have: () => encode([a.mov(R1, 2 ** 32)]), want: /immediate 4294967296 is out of range/ },
    { name: "offset too large", have: () => encode([a.ldx("W", R1, R6, 40000)]), want: /offset 40000 is out of range/ },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      assert.throws(c.have, (e: unknown) => {
        assert.ok(e instanceof AsmError, `expected AsmError, got ${String(e)}`);
        assert.ok(e instanceof BpfError);
        assert.equal(e.code, "BPF_ERR_ASM");
        assert.match(e.message, c.want);
        return true;
      });
    });
  }
  await t.test("the largest jumps in range encode", () => {
    const fwd = encode([a.ja("far"), ...filler(32767), a.label("far"), a.exit()]);
    assert.equal(fwd.readInt16LE(2), 32767);
    const back = encode([a.label("far"), ...filler(32767), a.ja("far")]);
    assert.equal(back.readInt16LE(32767 * 8 + 2), -32768);
  });
});

test("slotCount counts ld_imm64 twice and labels not at all", () => {
  assert.equal(a.slotCount([a.label("x"), a.ldImm64(R1, 1n), a.mov(R0, 0), a.label("y"), a.exit()]), 4);
});
