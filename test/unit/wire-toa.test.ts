import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeToa, encodeToa, findToa, DEFAULT_TOA_KINDS, WireError, encodeTcpOptions, formatIpv6 } from "../../src/wire/index.js";

/** Run `fn`; only a WireError may escape it. */
function onlyWireError(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
  }
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

// The byte layouts of reference/toa-formats.md, one vector per sender family.
const vectors: { name: string; have: Buffer; want: ReturnType<typeof decodeToa> }[] = [
  {
    name: "IPv4 kind 254 len 8 (Huawei ELB, LVS, DPVS): 198.51.100.7:40000",
    have: hex("fe 08 9c40 c6336407"),
    want: { kind: 254, family: 4, address: "198.51.100.7", port: 40000, length: 8, format: "ipv4" },
  },
  {
    name: "IPv4 kind 200 len 8 (LVS 2012, Tencent)",
    have: hex("c8 08 0050 cb007101"),
    want: { kind: 200, family: 4, address: "203.0.113.1", port: 80, length: 8, format: "ipv4" },
  },
  {
    name: "IPv4 kind 253 len 8 (Akamai per ucloud-toa)",
    have: hex("fd 08 ffff c0000201"),
    want: { kind: 253, family: 4, address: "192.0.2.1", port: 65535, length: 8, format: "ipv4" },
  },
  {
    name: "IPv4 kind 252 len 8 (UCloud UADS)",
    have: hex("fc 08 0001 00000000"),
    want: { kind: 252, family: 4, address: "0.0.0.0", port: 1, length: 8, format: "ipv4" },
  },
  {
    name: "IPv6 kind 254 len 20 (DPVS, elb-toa): [2001:db8::1]:443",
    have: hex("fe 14 01bb 20010db8000000000000000000000001"),
    want: { kind: 254, family: 6, address: "2001:db8::1", port: 443, length: 20, format: "ipv6" },
  },
  {
    name: "IPv6 kind 253 len 20 (alibaba/LVS TCPOPT_ADDR_V6)",
    have: hex("fd 14 1f90 20010db8000100020003000400050006"),
    want: { kind: 253, family: 6, address: "2001:db8:1:2:3:4:5:6", port: 8080, length: 20, format: "ipv6" },
  },
  {
    name: "Alibaba CDN kind 28 len 7, version 1, no port",
    have: hex("1c 07 01 c6336409"),
    want: { kind: 28, family: 4, address: "198.51.100.9", port: null, length: 7, format: "cdn-ipv4", version: 1 },
  },
  {
    name: "Alibaba CDN kind 28 len 19, IPv6, no port",
    have: hex("1c 13 01 20010db80000000000000000000000ff"),
    want: { kind: 28, family: 6, address: "2001:db8::ff", port: null, length: 19, format: "cdn-ipv6", version: 1 },
  },
];

test("decodeToa: vectors of every known format", () => {
  for (const v of vectors) {
    assert.deepEqual(decodeToa(v.have), v.want, v.name);
    const init = { kind: v.want.kind, address: v.want.address, port: v.want.port };
    assert.deepEqual(encodeToa(init), v.have, `encode ${v.name}`);
  }
});

test("decodeToa: errors name the problem", () => {
  const bad: { name: string; have: Buffer; code: string }[] = [
    { name: "length 6", have: hex("fe 06 0000 0000"), code: "WIRE_ERR_MALFORMED" },
    { name: "length 8 but 5 bytes", have: hex("fe 08 0050 c6"), code: "WIRE_ERR_TRUNCATED" },
    { name: "one byte", have: hex("fe"), code: "WIRE_ERR_TRUNCATED" },
    { name: "length 0", have: hex("fe 00"), code: "WIRE_ERR_MALFORMED" },
  ];
  for (const b of bad) {
    assert.throws(() => decodeToa(b.have), (e: unknown) => e instanceof WireError && e.code === b.code, b.name);
  }
  assert.throws(() => encodeToa({ kind: 254, address: "not-an-ip", port: 1 }), /TOA address must be/);
  assert.throws(() => encodeToa({ kind: 254, address: "192.0.2.1", port: 70000 }), /TOA port/);
});

test("decodeToa at an offset", () => {
  const b = Buffer.concat([hex("01 01"), vectors[0].have]);
  assert.deepEqual(decodeToa(b, 2), vectors[0].want);
});

test("findToa scans an options list", () => {
  const list = Buffer.concat([hex("020405b4 0101 080a0000000100000002"), hex("fe 08 9c40 c6336407"), hex("00 00")]);
  assert.equal(findToa(list, [254])?.address, "198.51.100.7");
  assert.equal(findToa(list, [200]), null);
  assert.equal(findToa(list)?.kind, 254, "default kinds include 254");
  assert.deepEqual([...DEFAULT_TOA_KINDS], [254, 253, 200]);
  // A User Timeout option (kind 28, len 4) is not a malformed CDN TOA.
  assert.equal(findToa(hex("1c 04 8000 01 01 01 01"), [28]), null);
  // After EOL nothing counts.
  assert.equal(findToa(hex("00 fe 08 9c40 c6336407"), [254]), null);
  assert.throws(() => findToa(hex("02 00"), [254]), WireError);
  assert.throws(() => findToa(hex("fe 06 0000 0000"), [254]), /length 6/);
});

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join("."));
const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIpv6(b));

test("property: encodeToa/decodeToa round trip, both families, with and without port", () => {
  fc.assert(
    fc.property(fc.integer({ min: 3, max: 255 }), fc.oneof(v4, v6), fc.option(fc.nat(65535), { nil: null }), (kind, address, port) => {
      const enc = encodeToa({ kind, address, port });
      const dec = decodeToa(enc);
      assert.equal(dec.kind, kind);
      assert.equal(dec.address, address);
      assert.equal(dec.port, port);
      assert.equal(dec.length, enc.length);
      // Inside an options list the TOA is found again.
      const list = encodeTcpOptions([{ kind: 1, name: "NOP" }, { kind: 2, name: "MSS", mss: 1460 }]);
      const found = findToa(Buffer.concat([list.subarray(0, 5), enc]), [kind]);
      assert.equal(found?.address, address);
    }),
  );
});

test("property: random bytes into decodeToa/findToa throw only WireError", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 48 }), fc.nat(50), (bytes, off) => {
      const b = Buffer.from(bytes);
      onlyWireError(() => decodeToa(b, off));
      onlyWireError(() => findToa(b, [254, 253, 200, 28, 252]));
    }),
  );
});
