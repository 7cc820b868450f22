/**
 * The assembler's program-level forms: call() with arguments (the moves into r1..r5), the stack
 * frame allocator (layout, alignment, the 512-byte limit) and the label factory.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  add,
  AsmError,
  call,
  callInsn,
  disassemble,
  encode,
  FP,
  fp,
  frame,
  type Item,
  ja,
  label,
  labels,
  labelSeries,
  ldMap,
  ldx,
  mem,
  mov,
  ptr,
  R0,
  R1,
  R2,
  R3,
  R4,
  R5,
  R6,
  R9,
} from "../../src/bpf/asm/index.js";

const same = (have: readonly Item[], want: readonly Item[]) => assert.equal(disassemble(have), disassemble(want));

test("call() moves each argument into r1..r5, in order, then calls", async (t) => {
  const cases: { name: string; have: Item[]; want: Item[] }[] = [
    { name: "no arguments: the bare call instruction", have: [call("ktime_get_ns")], want: [callInsn("ktime_get_ns")] },
    {
      name: "map name and stack pointer",
      have: call("map_lookup_elem", "nat_flows", fp(-40)),
      want: [ldMap(R1, "nat_flows"), mov(R2, FP), add(R2, -40), callInsn("map_lookup_elem")],
    },
    {
      name: "registers and immediates",
      have: call("l4_csum_replace", R6, 50, 0, R0, 0x12),
      want: [mov(R1, R6), mov(R2, 50), mov(R3, 0), mov(R4, R0), mov(R5, 0x12), callInsn("l4_csum_replace")],
    },
    {
      name: "an argument already in its register is not moved",
      have: call("skb_change_tail", R6, R2, 0),
      want: [mov(R1, R6), mov(R3, 0), callInsn("skb_change_tail")],
    },
    {
      name: "a pointer off another register, offset 0 kept",
      have: call("csum_diff", R9, 4, ptr(R9, 0), 4, 0),
      want: [mov(R1, R9), mov(R2, 4), mov(R3, R9), add(R3, 0), mov(R4, 4), mov(R5, 0), callInsn("csum_diff")],
    },
    { name: "helper by id", have: call(5, 1), want: [mov(R1, 1), callInsn(5)] },
    {
      name: "a value loaded from the stack",
      have: call("skb_store_bytes", R6, R2, mem("DW", FP, -312), R9, 0),
      want: [mov(R1, R6), ldx("DW", R3, FP, -312), mov(R4, R9), mov(R5, 0), callInsn("skb_store_bytes")],
    },
  ];
  for (const c of cases) await t.test(c.name, () => same(c.have, c.want));
  await t.test("the same bytes as the moves written out", () => {
    const maps = new Map([["nat_flows", 7]]);
    assert.deepEqual(encode(call("map_lookup_elem", "nat_flows", fp(-8)), maps), encode([ldMap(R1, "nat_flows"), mov(R2, FP), add(R2, -8), callInsn(1)], maps));
  });
});

test("call() refuses arguments it would clobber and more than five", () => {
  assert.throws(() => call("csum_diff", R2, R1), (e: unknown) => e instanceof AsmError && /argument 2 reads r1/.test(e.message));
  assert.throws(() => call("skb_store_bytes", R6, 0, ptr(R2, 4)), /argument 3 reads r2/);
  assert.throws(() => call("csum_diff", 1, 2, 3, 4, 5, 6), /at most 5/);
  assert.throws(() => call("no_such_helper" as "csum_diff", 1), /unknown helper/);
});

test("frame() lays slots out downwards in order, naturally aligned", async (t) => {
  const cases: { name: string; have: ReturnType<typeof frame>; want: Record<string, number> }[] = [
    { name: "packed words", have: frame({ a: 4, b: 4, c: 8 }), want: { a: -4, b: -8, c: -16, size: 16 } },
    { name: "a double word after a word is aligned to 8", have: frame({ a: 4, b: 8 }), want: { a: -4, b: -16, size: 16 } },
    { name: "bytes and halves", have: frame({ a: 1, b: 2, c: 1 }), want: { a: -1, b: -4, c: -5, size: 5 } },
    { name: "an explicit alignment", have: frame({ a: 4, b: { size: 4, align: 8 } }), want: { a: -4, b: -8, size: 8 } },
    { name: "structs of 40 and 72 bytes", have: frame({ key: 40, value: 72, word: 4 }), want: { key: -40, value: -112, word: -116, size: 116 } },
  ];
  for (const c of cases) await t.test(c.name, () => assert.deepEqual({ ...c.have }, c.want));
});

test("frame() refuses more than 512 bytes, naming the slot", () => {
  assert.doesNotThrow(() => frame({ a: 256, b: 256 }));
  assert.throws(() => frame({ a: 256, b: 256, c: 1 }), (e: unknown) => e instanceof AsmError && /slot "c" ends 513 bytes below r10/.test(e.message));
  assert.throws(() => frame({ a: 508, b: 8 }), /slot "b" ends 520 bytes/); // alignment counts
  assert.throws(() => frame({ a: 0 }), /positive integer/);
  assert.throws(() => frame({ a: { size: 4, align: 3 } }), /alignment 3/);
});

test("labels() gives fresh names per expansion, typed by key", () => {
  const expand = () => {
    const L = labels("flow", ["found", "miss"] as const);
    // @ts-expect-error a typo is a type error
    void L.fuond;
    return [ja(L.found), label(L.miss), mov(R0, 0), label(L.found), mov(R0, 1)];
  };
  const a = labels("x", ["found"] as const);
  const b = labels("x", ["found"] as const);
  assert.notEqual(a.found, b.found);
  // Expanded twice in one program: no duplicate label, and each jump finds its own.
  const program = [...expand(), ...expand()];
  assert.equal(encode(program).length, 6 * 8);
  const step = labelSeries(a.found);
  assert.notEqual(step(1), step(2));
  assert.match(step(3), /x\.\d+\.found\.3/);
});
