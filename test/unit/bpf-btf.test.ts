/** The BTF writer against the blob verified live in reference/bpf-abi.md §2, and its input checks. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { btf, buildBtf, type BtfType, BpfError } from "../../src/bpf/index.js";

// reference/bpf-abi.md §2: `int` key, struct conn_info { u64 cookie; int count; int flags; }.
const verified157 = `
9f eb 01 00 18 00 00 00  00 00 00 00 50 00 00 00
50 00 00 00 35 00 00 00
01 00 00 00 00 00 00 01 04 00 00 00 20 00 00 01
05 00 00 00 00 00 00 01 08 00 00 00 40 00 00 00
18 00 00 00 03 00 00 04 10 00 00 00
22 00 00 00 02 00 00 00 00 00 00 00
29 00 00 00 01 00 00 00 40 00 00 00
2f 00 00 00 01 00 00 00 60 00 00 00
`;
const verifiedStrings = "\0int\0unsigned long long\0conn_info\0cookie\0count\0flags\0";

const connInfo: BtfType = {
  kind: "struct",
  name: "conn_info",
  size: 16,
  members: [
    { name: "cookie", type: btf.u64, offset: 0 },
    { name: "count", type: btf.s32, offset: 8 },
    { name: "flags", type: btf.s32, offset: 12 },
  ],
};

test("buildBtf reproduces the verified 157-byte sk_storage blob byte for byte", () => {
  const want = Buffer.concat([Buffer.from(verified157.replace(/\s+/g, ""), "hex"), Buffer.from(verifiedStrings, "latin1")]);
  assert.equal(want.length, 157);
  // Roots in the order the map needs them: key first (gets id 1), then the value; the value's
  // children are emitted before the struct, which gives the doc's order [1] int [2] u64 [3] struct.
  const { bytes, ids } = buildBtf([btf.s32, connInfo]);
  assert.equal(bytes.toString("hex"), want.toString("hex"));
  assert.deepEqual(ids, [1, 3]);
});

test("buildBtf deduplicates shared types and numbers ids from 1 in order of appearance", () => {
  const key: BtfType = { kind: "int", name: "unsigned int", size: 4 };
  const value: BtfType = {
    kind: "struct",
    name: "pair",
    size: 8,
    members: [
      { name: "a", type: key, offset: 0 },
      { name: "b", type: key, offset: 4 },
    ],
  };
  const { bytes, ids } = buildBtf([key, value, key]);
  assert.deepEqual(ids, [1, 2, 1]);
  const typeLen = bytes.readUInt32LE(12);
  assert.equal(typeLen, 16 + 12 + 2 * 12);
});

test("buildBtf header: hdr_len 24, sections adjacent, strings start and end with NUL", () => {
  const arr: BtfType = { kind: "array", element: btf.u8, length: 16 };
  const td: BtfType = { kind: "typedef", name: "addr_t", type: arr };
  const { bytes } = buildBtf([btf.u32, td]);
  assert.equal(bytes.readUInt16LE(0), 0xeb9f);
  assert.equal(bytes[2], 1);
  assert.equal(bytes.readUInt32LE(4), 24);
  const [typeOff, typeLen, strOff, strLen] = [8, 12, 16, 20].map((o) => bytes.readUInt32LE(o));
  assert.equal(typeOff, 0);
  assert.equal(typeOff % 4, 0);
  assert.equal(strOff, typeOff + typeLen);
  assert.equal(24 + strOff + strLen, bytes.length);
  assert.equal(bytes[24 + strOff], 0);
  assert.equal(bytes[bytes.length - 1], 0);
  assert.equal(btf.btfSize(td), 16);
});

test("buildBtf refuses names that are not C identifiers and members past the struct", async (t) => {
  const struct = (name: string, members: { name: string; type: BtfType; offset: number }[], size = 8): BtfType => ({ kind: "struct", name, size, members });
  const cases: { name: string; have: BtfType; want: RegExp }[] = [
    { name: "int name with a dash", have: { kind: "int", name: "my-int", size: 4 }, want: /bad int name my-int/ },
    { name: "int name starting with a digit", have: { kind: "int", name: "1int", size: 4 }, want: /bad int name 1int/ },
    { name: "struct name with a dash", have: struct("conn-info", [{ name: "a", type: btf.u32, offset: 0 }]), want: /"conn-info" is not a C identifier/ },
    { name: "member name with a dot", have: struct("s", [{ name: "a.b", type: btf.u32, offset: 0 }]), want: /"a\.b" is not a C identifier/ },
    { name: "member name with a space", have: struct("s", [{ name: "a b", type: btf.u32, offset: 0 }]), want: /"a b" is not a C identifier/ },
    { name: "typedef name with a space", have: { kind: "typedef", name: "my t", type: btf.u32 }, want: /"my t" is not a C identifier/ },
    { name: "member overflows the struct", have: struct("s", [{ name: "big", type: btf.u64, offset: 4 }]), want: /member s\.big runs past the struct's 8 bytes/ },
    {
      name: "second member overflows",
      have: struct("s", [
        { name: "a", type: btf.u32, offset: 0 },
        { name: "b", type: btf.u64, offset: 4 },
      ], 8),
      want: /member s\.b runs past/,
    },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      assert.throws(() => buildBtf([c.have]), (e: unknown) => {
        assert.ok(e instanceof BpfError);
        assert.equal(e.code, "BPF_ERR_BTF");
        assert.match(e.message, c.want);
        return true;
      });
    });
  }
  await t.test("int names may have spaces (C's multi-word types)", () => {
    assert.doesNotThrow(() => buildBtf([{ kind: "int", name: "unsigned long long", size: 8 }]));
  });
});
