/** struct(): C layout (alignment, padding), the typed codec, the BTF, reserved names. */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { array, be16, be32, bytes, pad, struct, u16, u32, u64, u8, type ValueOf } from "../../src/bpf/struct.js";
import { buildBtf } from "../../src/bpf/btf.js";
import { BpfError } from "../../src/bpf/errors.js";

test("struct: fields at their natural alignment, size rounded to the largest", () => {
  const cases = [
    { name: "u8 then u32", have: struct("a", { x: u8, y: u32 }), want: { x: 0, y: 4, size: 8, align: 4 } },
    { name: "u8 then u64", have: struct("b", { x: u8, y: u64 }), want: { x: 0, y: 8, size: 16, align: 8 } },
    { name: "u64 then u8: tail padding", have: struct("c", { y: u64, x: u8 }), want: { y: 0, x: 8, size: 16, align: 8 } },
    { name: "bytes align 1", have: struct("d", { x: u8, a: bytes(3), p: be16 }), want: { x: 0, a: 1, p: 4, size: 6, align: 2 } },
    { name: "explicit pad", have: struct("e", { a: bytes(16), p: be16, f: u8, _pad: pad(3) }), want: { a: 0, p: 16, f: 18, _pad: 19, size: 22, align: 2 } },
  ];
  for (const c of cases) {
    const got: Record<string, number> = {};
    for (const k of Object.keys(c.want)) got[k] = (c.have as unknown as Record<string, number>)[k];
    assert.deepEqual(got, c.want, c.name);
  }
});

test("struct: nested structs and arrays", () => {
  const Inner = struct("inner", { a: u16, b: u32 });
  const Outer = struct("outer", { f: u8, inner: Inner, list: array(u16, 3), ins: array(Inner, 2) });
  assert.deepEqual([Outer.f, Outer.inner, Outer.list, Outer.ins, Outer.size], [0, 4, 12, 20, 36]);
  const v = { f: 7, inner: { a: 1, b: 2 }, list: [3, 4, 5], ins: [{ a: 6, b: 7 }, { a: 8, b: 9 }] };
  assert.deepEqual(Outer.decode(Outer.encode(v)), v);
});

test("struct: codec writes every field at its offset, in its byte order, pads zero", () => {
  const S = struct("s", { a: u8, _p: pad(1), b: be16, c: u16, d: be32, e: u32, f: u64, g: bytes(4) });
  const v = { a: 0xab, b: 0x1234, c: 0x1234, d: 0x01020304, e: 0x01020304, f: 0x0102030405060708n, g: Buffer.from([9, 8]) };
  const b = S.encode(v);
  assert.equal(b.toString("hex"), "ab00" + "1234" + "3412" + "0000" + "01020304" + "04030201" + "0807060504030201" + "09080000" + "00000000");
  assert.equal(S.size, 32);
  const back: ValueOf<typeof S> = S.decode(b);
  assert.deepEqual(back, { ...v, g: Buffer.from([9, 8, 0, 0]) });
  assert.equal("_p" in back, false, "padding is not part of the value");
});

test("struct: codec refuses what does not fit", () => {
  const S = struct("s", { a: u8, g: bytes(2), l: array(u8, 2) });
  assert.throws(() => S.encode({ a: 1, g: Buffer.alloc(3), l: [1, 2] }), /at most 2 bytes/);
  assert.throws(() => S.encode({ a: 1, g: Buffer.alloc(2), l: [1] }), /expected 2 elements/);
  assert.throws(() => S.encode({ a: 1, g: Buffer.alloc(2) } as never), /field l is missing/);
  assert.throws(() => S.decode(Buffer.alloc(2)), /2 bytes, expected 5/);
});

test("struct: reserved names are refused", () => {
  // @ts-expect-error size is the struct's own member
  assert.throws(() => struct("r", { size: u32 }), /"size" is reserved/);
  // @ts-expect-error encode is the struct's own member
  assert.throws(() => struct("r", { a: u8, encode: u8 }), /"encode" is reserved/);
});

test("struct: BTF names members in snake_case at their offsets, leaves padding out", () => {
  const S = struct("toa_thing", { viaFamily: u8, _pad: pad(1), port: be16, addr: bytes(16), n: u64 });
  assert.deepEqual(
    S.btf.kind === "struct" && S.btf.members.map((m) => [m.name, m.offset]),
    [["via_family", 0], ["port", 2], ["addr", 4], ["n", 24]],
  );
  assert.equal(S.btf.kind === "struct" && S.btf.size, 32);
  const blob = buildBtf([S.btf]);
  assert.equal(blob.ids.length, 1);
  // header + int(u8) + __be16 typedef + u16 + array + u32 index + u64 + struct(4 members): it builds.
  assert.ok(blob.bytes.length > 24);
  const text = blob.bytes.toString("latin1");
  for (const name of ["toa_thing", "via_family", "__be16", "port", "addr"]) assert.ok(text.includes(`\0${name}\0`), name);
});

test("struct: decode(encode(v)) is v for any value (property)", () => {
  const S = struct("p", { a: u8, b: be16, c: u32, d: u64, e: bytes(5), f: array(u16, 2), g: be32, _p: pad(3) });
  const value = fc.record({
    a: fc.nat(0xff),
    b: fc.nat(0xffff),
    c: fc.nat(0xffffffff),
    d: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    e: fc.uint8Array({ minLength: 5, maxLength: 5 }).map((a) => Buffer.from(a)),
    f: fc.tuple(fc.nat(0xffff), fc.nat(0xffff)),
    g: fc.nat(0xffffffff),
  });
  fc.assert(
    fc.property(value, (v) => {
      const b = S.encode(v);
      assert.equal(b.length, S.size);
      assert.deepEqual(S.decode(b), { ...v }); // fc.record makes null-prototype objects
      assert.equal(b.readUInt16BE(S.b), v.b, "be16 in network order at its offset");
    }),
  );
});

test("a value a field can't hold is a BpfError naming the struct and the field; u32 takes ~0 masks", () => {
  const S = struct("range_check", { kind: u8, port: be16, mask: u32, n: u64 });
  const ok = { kind: 255, port: 65535, mask: ~0, n: 2n ** 64n - 1n };
  assert.equal(S.decode(S.encode(ok)).mask, 0xffffffff, "~0 is the all-ones u32");
  for (const [field, bad] of [["kind", 256], ["kind", -1], ["port", 65536], ["mask", 2 ** 32], ["kind", 1.5], ["n", 2n ** 64n]] as const) {
    assert.throws(
      () => S.encode({ ...ok, [field]: bad }),
      (e: unknown) => e instanceof BpfError && e.code === "BPF_ERR_INVALID_ARG" && e.message.startsWith(`struct range_check: field ${field}: `),
      `${field} = ${String(bad)}`,
    );
  }
});
