import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import * as ppjs from "proxy-protocol-js";
import {
  WireError, crc32c, encodeProxyV1, encodeProxyV2, decodeProxyV2, decodeProxyHeader, ProxyHeaderParser,
  PP2_TYPE, PROXY_V2_SIGNATURE, formatIpv6, type ProxyParseResult,
} from "../../src/wire/index.js";

function onlyWireError(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
  }
}
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

/** Feed `buf` split at the given cut points; return the final result. */
function feed(buf: Buffer, cuts: number[]): ProxyParseResult {
  const p = new ProxyHeaderParser();
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  let last = 0;
  let r: ProxyParseResult = { state: "need-more" };
  for (const c of [...points, buf.length]) {
    if (c < last) continue;
    r = p.push(buf.subarray(last, c));
    last = c;
    if (r.state === "done") {
      // Whatever was not pushed yet also follows the header.
      return { ...r, rest: Buffer.concat([r.rest, buf.subarray(last)]) };
    }
  }
  return r;
}

test("CRC32c: check value of RFC 3720 / iSCSI", () => {
  assert.equal(crc32c(Buffer.from("123456789")), 0xe3069283);
  assert.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
});

test("PROXY v1: vectors from the spec", () => {
  const cases: { name: string; have: string; want: unknown }[] = [
    { name: "TCP4", have: "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", want: { version: 1, family: "TCP4", source: { address: "192.0.2.1", port: 56324 }, destination: { address: "198.51.100.2", port: 443 }, length: 45 } },
    { name: "TCP6", have: "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", want: { version: 1, family: "TCP6", source: { address: "2001:db8::1", port: 1 }, destination: { address: "2001:db8::2", port: 65535 }, length: 44 } },
    { name: "UNKNOWN with junk", have: "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", want: { version: 1, family: "UNKNOWN", length: 59 } },
    { name: "worst case 107 bytes", have: `PROXY UNKNOWN ${"f".repeat(91)}\r\n`, want: { version: 1, family: "UNKNOWN", length: 107 } },
  ];
  for (const c of cases) {
    const { header, rest } = decodeProxyHeader(Buffer.from(c.have + "GET /", "latin1"));
    assert.deepEqual(header, c.want, c.name);
    assert.equal(rest.toString(), "GET /", c.name);
  }
  assert.equal(encodeProxyV1({ family: "TCP4", source: { address: "192.0.2.1", port: 56324 }, destination: { address: "198.51.100.2", port: 443 } }).toString(), cases[0].have);
  assert.equal(encodeProxyV1({ family: "UNKNOWN" }).toString(), "PROXY UNKNOWN\r\n");
  assert.throws(() => encodeProxyV1({ family: "TCP4", source: { address: "2001:db8::1", port: 1 }, destination: { address: "192.0.2.1", port: 1 } }), /IPv4 address for TCP4/);
});

test("PROXY v1: invalid input is rejected, never awaited forever", () => {
  const bad: { name: string; have: string; want: RegExp }[] = [
    { name: "no CRLF within 107 bytes", have: `PROXY UNKNOWN ${"f".repeat(100)}`, want: /no CRLF within 107/ },
    { name: "CRLF at byte 108", have: `PROXY UNKNOWN ${"f".repeat(92)}\r\n`, want: /no CRLF within 107/ },
    { name: "bad protocol", have: "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", want: /UDP4/ },
    { name: "bad address", have: "PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", want: /source/ },
    { name: "port out of range", have: "PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n", want: /destination port/ },
    { name: "family mismatch", have: "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n", want: /not an TCP6 address/ },
    { name: "LF alone", have: "PROXY TCP4\n", want: /LF without CR/ },
    { name: "not PROXY", have: "GET / HTTP/1.1\r\n", want: /not a PROXY protocol header/ },
  ];
  for (const b of bad) assert.throws(() => decodeProxyHeader(Buffer.from(b.have, "latin1")), (e: unknown) => e instanceof WireError && b.want.test(e.message), b.name);
  assert.throws(() => decodeProxyHeader(Buffer.from("PROXY TCP4 1.2")), (e: unknown) => e instanceof WireError && e.code === "WIRE_ERR_TRUNCATED");
});

test("PROXY v2: vectors, TLVs and CRC32c", () => {
  // The example of proxy-protocol-js's README: LOCAL, DGRAM, 127.0.0.1:12345 -> 192.0.2.1:54321.
  const local = Buffer.from([13, 10, 13, 10, 0, 13, 10, 81, 85, 73, 84, 10, 32, 18, 0, 12, 127, 0, 0, 1, 192, 0, 2, 1, 48, 57, 212, 49]);
  assert.deepEqual(decodeProxyV2(local), {
    version: 2, command: "LOCAL", family: "INET", transport: "DGRAM", tlvs: [], length: 28,
    source: { address: "127.0.0.1", port: 12345 }, destination: { address: "192.0.2.1", port: 54321 },
  });
  const ssl = Buffer.concat([Buffer.from([0x07]), hex("00000000"), hex("21 0007"), Buffer.from("TLSv1.3"), hex("22 0004"), Buffer.from("host")]);
  const enc = encodeProxyV2({
    command: "PROXY", transport: "STREAM",
    source: { address: "2001:db8::1", port: 40000 }, destination: { address: "2001:db8::2", port: 443 },
    tlvs: [
      { type: PP2_TYPE.ALPN, value: "h2" }, { type: PP2_TYPE.AUTHORITY, value: "example.com" }, { type: PP2_TYPE.NOOP, value: new Uint8Array(3) },
      { type: PP2_TYPE.UNIQUE_ID, value: new Uint8Array(128).fill(7) }, { type: PP2_TYPE.SSL, value: ssl }, { type: PP2_TYPE.NETNS, value: "blue" },
    ],
    crc32c: true,
  });
  assert.deepEqual(enc.subarray(0, 16), Buffer.concat([PROXY_V2_SIGNATURE, hex("21 21"), Buffer.from([(enc.length - 16) >> 8, (enc.length - 16) & 0xff])]));
  const h = decodeProxyV2(enc);
  assert.equal(h.alpn, "h2");
  assert.equal(h.authority, "example.com");
  assert.equal(h.uniqueId?.length, 128);
  assert.equal(h.ssl?.client, 7);
  assert.equal(h.ssl?.version, "TLSv1.3");
  assert.equal(h.ssl?.cn, "host");
  assert.equal(h.netns, "blue");
  assert.equal(h.crc32c, enc.readUInt32BE(enc.length - 4));
  const flipped = Buffer.from(enc);
  flipped[20] ^= 1;
  assert.throws(() => decodeProxyV2(flipped), (e: unknown) => e instanceof WireError && e.code === "WIRE_ERR_CHECKSUM");
  // UNIQUE_ID longer than 128 bytes is malformed.
  const long = encodeProxyV2({ command: "LOCAL", tlvs: [{ type: 0xe0, value: new Uint8Array(129) }] });
  long[16] = PP2_TYPE.UNIQUE_ID;
  assert.throws(() => decodeProxyV2(long), /UNIQUE_ID is 129 bytes/);
  assert.throws(() => encodeProxyV2({ command: "LOCAL", tlvs: [{ type: PP2_TYPE.UNIQUE_ID, value: new Uint8Array(129) }] }), /at most 128/);
  // UNIX addresses and LOCAL without addresses.
  const unix = decodeProxyV2(encodeProxyV2({ command: "PROXY", source: { path: "/run/a.sock" }, destination: { path: "/run/b.sock" } }));
  assert.deepEqual([unix.family, unix.source, unix.destination], ["UNIX", { path: "/run/a.sock" }, { path: "/run/b.sock" }]);
  const bare = decodeProxyV2(encodeProxyV2({ command: "LOCAL" }));
  assert.deepEqual([bare.command, bare.family, bare.length], ["LOCAL", "UNSPEC", 16]);
});

test("PROXY v2: interoperates with proxy-protocol-js", () => {
  const theirs = new ppjs.V2ProxyProtocol(
    ppjs.Command.PROXY, ppjs.TransportProtocol.STREAM,
    new ppjs.IPv4ProxyAddress(ppjs.IPv4Address.createFrom([198, 51, 100, 1]), 1234, ppjs.IPv4Address.createFrom([198, 51, 100, 2]), 80),
  ).build();
  const h = decodeProxyV2(Buffer.from(theirs));
  assert.deepEqual([h.command, h.transport, h.source, h.destination], ["PROXY", "STREAM", { address: "198.51.100.1", port: 1234 }, { address: "198.51.100.2", port: 80 }]);
  const mine = encodeProxyV2({ command: "PROXY", source: { address: "198.51.100.1", port: 1234 }, destination: { address: "198.51.100.2", port: 80 } });
  const parsed = ppjs.V2ProxyProtocol.parse(mine);
  assert.equal((parsed.proxyAddress as ppjs.IPv4ProxyAddress).sourcePort, 1234);
});

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join("."));
const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIpv6(b));
const endpoints = fc.oneof(
  fc.tuple(v4, v4).map(([a, b]) => ({ fam: "4" as const, a, b })),
  fc.tuple(v6, v6).map(([a, b]) => ({ fam: "6" as const, a, b })),
);
const tlvArb = fc.array(
  fc.record({ type: fc.oneof(fc.constantFrom(1, 2, 4, 0x30), fc.integer({ min: 0xe0, max: 0xef })), value: fc.uint8Array({ maxLength: 40 }) }),
  { maxLength: 4 },
);

test("property: v1 and v2 round trip, split across chunks at any bytes", () => {
  fc.assert(
    fc.property(endpoints, fc.nat(65535), fc.nat(65535), tlvArb, fc.boolean(), fc.boolean(), fc.array(fc.nat(400), { maxLength: 6 }), fc.uint8Array({ maxLength: 20 }),
      (ep, sp, dp, tlvs, v2, crc, cuts, after) => {
        const source = { address: ep.a, port: sp };
        const destination = { address: ep.b, port: dp };
        const header = v2
          ? encodeProxyV2({ command: "PROXY", transport: "STREAM", source, destination, tlvs, crc32c: crc })
          : encodeProxyV1({ family: ep.fam === "4" ? "TCP4" : "TCP6", source, destination });
        const input = Buffer.concat([header, after]);
        const r = feed(input, cuts);
        assert.equal(r.state, "done");
        if (r.state !== "done") return;
        assert.deepEqual(r.rest, Buffer.from(after));
        const h = r.header;
        assert.equal(h.length, header.length);
        if (h.version === 2) {
          assert.deepEqual([h.source, h.destination], [source, destination]);
          const types = h.tlvs.map((t) => t.type);
          assert.deepEqual(types, [...tlvs.map((t) => t.type), ...(crc ? [3] : [])]);
          h.tlvs.slice(0, tlvs.length).forEach((t, i) => assert.deepEqual(t.value, Buffer.from(tlvs[i].value)));
        } else {
          assert.ok("source" in h, "v1 header with addresses");
          if ("source" in h) assert.deepEqual([h.source, h.destination], [source, destination]);
        }
      }),
    { numRuns: 500 },
  );
});

test("property: random bytes into the PROXY decoders throw only WireError and always decide", () => {
  const prefixes = [Buffer.alloc(0), Buffer.from("PROXY "), Buffer.from("PROXY TCP4 "), Buffer.concat([PROXY_V2_SIGNATURE, hex("21 11")]), PROXY_V2_SIGNATURE];
  fc.assert(
    fc.property(fc.nat(prefixes.length - 1), fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(300), { maxLength: 5 }), (pi, bytes, cuts) => {
      const input = Buffer.concat([prefixes[pi], bytes]);
      onlyWireError(() => decodeProxyHeader(input));
      onlyWireError(() => decodeProxyV2(input));
      let r: ProxyParseResult | undefined;
      try {
        r = feed(input, cuts);
      } catch (e) {
        if (!(e instanceof WireError)) throw e;
        return;
      }
      // Still waiting: only legitimate when the input could be a prefix of a valid header, i.e. a
      // v1 line shorter than 107 bytes or a v2 header shorter than its announced length.
      if (r.state === "need-more") {
        const v2 = input.length >= 1 && input[0] === 0x0d;
        if (v2) assert.ok(input.length < 16 || input.length < 16 + input.readUInt16BE(14));
        else assert.ok(input.length < 107);
      }
    }),
    { numRuns: 3000 },
  );
});
