import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  WireError, scanOptions, decodeTcpOptions, encodeTcpOptions, type TcpOption,
  decodeIp, decodeIpv4, decodeIpv6, encodeIp, decodeTcp, encodeTcp, insertTcpOption, encodeToa,
  internetChecksum, tcpChecksum, verifyTcpChecksum, updateChecksum, parseAddress, formatIpv6, parseIpv6,
} from "../../src/wire/index.js";

function onlyWireError(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
  }
}
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

test("TCP options: table of lists", () => {
  const cases: { name: string; have: string; want: Partial<TcpOption>[]; malformed?: RegExp }[] = [
    { name: "Linux SYN", have: "020405b4 0402 080a 00000001 00000000 01 030307", want: [{ name: "MSS", mss: 1460 }, { name: "SACK_PERMITTED" }, { name: "TIMESTAMP", value: 1, echo: 0 }, { name: "NOP" }, { name: "WS", shift: 7 }] },
    { name: "SACK two blocks", have: "0101 0512 00000001 00000002 00000003 00000004", want: [{ name: "NOP" }, { name: "NOP" }, { name: "SACK", blocks: [{ left: 1, right: 2 }, { left: 3, right: 4 }] }] },
    { name: "EOL ends the list", have: "01 00 fe", want: [{ name: "NOP" }, { name: "EOL" }] },
    { name: "unknown kind kept raw", have: "fe08 9c40 c6336407", want: [{ name: "UNKNOWN", kind: 254, data: hex("9c40c6336407") }] },
    { name: "length 0", have: "01 fe00", want: [{ name: "NOP" }], malformed: /length 0/ },
    { name: "length 1", have: "fe01", want: [], malformed: /length 1/ },
    { name: "runs past the end", have: "020405b4 fe08 0000", want: [{ name: "MSS", mss: 1460 }], malformed: /runs past/ },
    { name: "no length byte", have: "fe", want: [], malformed: /no length byte/ },
    { name: "MSS with length 3", have: "020305", want: [], malformed: /expected 4/ },
    { name: "SACK with length 6", have: "0506 00000000", want: [], malformed: /2\+8n/ },
  ];
  for (const c of cases) {
    const scan = scanOptions(hex(c.have));
    assert.equal(scan.options.length, c.want.length, c.name);
    c.want.forEach((w, i) => {
      for (const [k, v] of Object.entries(w)) assert.deepEqual((scan.options[i] as Record<string, unknown>)[k], v, `${c.name}: ${k}`);
    });
    if (c.malformed) {
      assert.match(scan.malformed ?? "", c.malformed, c.name);
      assert.throws(() => decodeTcpOptions(hex(c.have)), (e: unknown) => e instanceof WireError && e.code === "WIRE_ERR_MALFORMED");
    } else {
      assert.equal(scan.malformed, undefined, c.name);
    }
  }
});

const u32 = fc.nat().map((n) => n >>> 0);
const optionArb: fc.Arbitrary<TcpOption> = fc.oneof(
  fc.constant<TcpOption>({ kind: 1, name: "NOP" }),
  fc.nat(65535).map((mss): TcpOption => ({ kind: 2, name: "MSS", mss })),
  fc.nat(14).map((shift): TcpOption => ({ kind: 3, name: "WS", shift })),
  fc.constant<TcpOption>({ kind: 4, name: "SACK_PERMITTED" }),
  fc.array(fc.tuple(u32, u32), { minLength: 1, maxLength: 3 }).map((bs): TcpOption => ({ kind: 5, name: "SACK", blocks: bs.map(([left, right]) => ({ left, right })) })),
  fc.tuple(u32, u32).map(([value, echo]): TcpOption => ({ kind: 8, name: "TIMESTAMP", value, echo })),
  fc.tuple(fc.integer({ min: 9, max: 255 }), fc.uint8Array({ maxLength: 10 })).map(([kind, d]): TcpOption => ({ kind, name: "UNKNOWN", data: Buffer.from(d) })),
);

test("property: TCP options encode/decode round trip", () => {
  fc.assert(
    fc.property(fc.array(optionArb, { maxLength: 8 }), (opts) => {
      let enc: Buffer;
      try {
        enc = encodeTcpOptions(opts, false);
      } catch (e) {
        assert.ok(e instanceof WireError && e.code === "WIRE_ERR_INVALID_ARG");
        return;
      }
      const dec = decodeTcpOptions(enc).map(({ offset: _o, ...rest }) => rest);
      assert.deepEqual(dec, opts);
    }),
  );
});

test("IPv4: header with options, checksum, padding and truncation", () => {
  const pkt = encodeIp({ source: "198.51.100.1", destination: "198.51.100.2", protocol: 6, payload: Buffer.from("abcd"), options: hex("01010100"), id: 7 });
  assert.equal(internetChecksum(pkt, 0, 24), 0, "header checksum verifies to 0");
  const h = decodeIpv4(Buffer.concat([pkt, Buffer.alloc(6)])); // Ethernet padding
  assert.equal(h.headerLength, 24);
  assert.deepEqual(h.options, hex("01010100"));
  assert.equal(h.payloadEnd - h.payloadOffset, 4);
  assert.equal(h.truncated, false);
  assert.equal(decodeIpv4(pkt.subarray(0, 26)).truncated, true);
  assert.throws(() => decodeIpv4(pkt.subarray(0, 22)), /IPv4 header with options/);
  const bad = Buffer.from(pkt);
  bad[0] = 0x44;
  assert.throws(() => decodeIpv4(bad), /IHL 4/);
});

test("IPv6: extension headers are skipped to the upper layer", () => {
  const tcp = encodeTcp({ sourcePort: 1, destinationPort: 2, flags: ["SYN"] });
  // hop-by-hop (8) -> routing (16) -> destination options (8) -> fragment (8, offset 0) -> TCP
  const ext = Buffer.concat([hex("2b00 010400000000"), hex("3c01 0000 00000000 0000000000000000"), hex("2c00 0104 00000000"), hex("0600 0001 12345678")]);
  const pkt = encodeIp({ source: "2001:db8::1", destination: "2001:db8::2", protocol: 0, payload: Buffer.concat([ext, tcp]) });
  const h = decodeIpv6(pkt);
  assert.equal(h.protocol, 6);
  assert.deepEqual(h.extensionHeaders.map((e) => [e.type, e.length]), [[0, 8], [43, 16], [60, 8], [44, 8]]);
  assert.equal(h.fragment?.id, 0x12345678);
  assert.equal(h.laterFragment, false);
  assert.equal(decodeTcp(pkt, h.payloadOffset, h.payloadEnd).flags[0], "SYN");
  assert.equal(decodeIp(pkt).version, 6);
});

test("property: IP + TCP encode/decode round trip with a valid checksum", () => {
  const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join("."));
  const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIpv6(b));
  const pair = fc.oneof(fc.tuple(v4, v4), fc.tuple(v6, v6));
  const flags = fc.subarray(["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"]);
  fc.assert(
    fc.property(pair, fc.nat(65535), fc.nat(65535), u32, u32, flags, fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 200 }), ([s, d], sp, dp, seq, ack, fl, opts, payload) => {
      const seg = encodeTcp({ sourcePort: sp, destinationPort: dp, seq, ack, flags: fl, options: opts, payload, source: s, destination: d });
      const pkt = encodeIp({ source: s, destination: d, protocol: 6, payload: seg });
      const ip = decodeIp(pkt);
      assert.equal(ip.source, s);
      assert.equal(ip.destination, d);
      const t = decodeTcp(pkt, ip.payloadOffset, ip.payloadEnd);
      assert.deepEqual([t.sourcePort, t.destinationPort, t.seq, t.ack], [sp, dp, seq, ack]);
      assert.deepEqual([...t.flags].sort(), [...fl].sort());
      assert.deepEqual(t.options.subarray(0, opts.length), Buffer.from(opts));
      assert.deepEqual(pkt.subarray(t.payloadOffset, t.payloadOffset + t.payloadLength), Buffer.from(payload));
      assert.ok(verifyTcpChecksum(ip.sourceBytes, ip.destinationBytes, seg));
    }),
  );
});

test("property: inserting a TOA updates the checksum incrementally (RFC 1624) like a full recompute", () => {
  const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join("."));
  const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIpv6(b));
  fc.assert(
    fc.property(fc.oneof(fc.tuple(v4, v4), fc.tuple(v6, v6)), fc.uint8Array({ maxLength: 20 }), fc.uint8Array({ maxLength: 300 }), v4, fc.nat(65535), fc.boolean(), ([s, d], opts, payload, client, port, six) => {
      const seg = encodeTcp({ sourcePort: 1000, destinationPort: 80, flags: ["ACK"], options: opts, payload, source: s, destination: d });
      const toa = encodeToa({ kind: 254, address: six ? "2001:db8::7" : client, port });
      if ((seg[12] >> 4) * 4 - 20 + toa.length > 40) {
        assert.throws(() => insertTcpOption(seg, toa), /no option space/);
        return;
      }
      const out = insertTcpOption(seg, toa);
      const sa = parseAddress(s).bytes;
      const da = parseAddress(d).bytes;
      assert.equal(out.readUInt16BE(16), tcpChecksum(sa, da, out));
      const t = decodeTcp(out);
      assert.deepEqual(t.options.subarray(t.options.length - toa.length), toa);
      assert.deepEqual(out.subarray(t.payloadOffset), Buffer.from(payload));
    }),
  );
});

test("checksum: RFC 1071 example and RFC 1624 update", () => {
  // RFC 1071 §3 example bytes: 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
  assert.equal(internetChecksum(hex("0001f203f4f5f6f7")), ~0xddf2 & 0xffff);
  const data = hex("0001f203f4f5f6f7");
  const before = internetChecksum(data);
  const changed = Buffer.from(data);
  changed.writeUInt16BE(0x1234, 2);
  assert.equal(updateChecksum(before, data.subarray(2, 4), changed.subarray(2, 4)), internetChecksum(changed));
  assert.ok(parseIpv6("::ffff:192.0.2.1"));
  assert.equal(formatIpv6(parseIpv6("::ffff:192.0.2.1")!), "::ffff:192.0.2.1");
  assert.equal(formatIpv6(parseIpv6("2001:db8:0:0:1:0:0:1")!), "2001:db8::1:0:0:1");
});

test("property: random bytes into IP, TCP and option decoders throw only WireError", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.nat(10), (bytes, off) => {
      const b = Buffer.from(bytes);
      // Steer half the inputs to look like IPv4/IPv6 so the deeper paths run.
      if (b.length > 0 && off % 2 === 0) b[0] = (b[0] & 0x0f) | (off % 4 === 0 ? 0x40 : 0x60);
      onlyWireError(() => decodeIp(b, 0));
      onlyWireError(() => decodeTcp(b, off));
      onlyWireError(() => decodeTcpOptions(b));
      onlyWireError(() => insertTcpOption(b, hex("fe089c40c6336407")));
      scanOptions(b);
    }),
    { numRuns: 2000 },
  );
});

test("property: IPv6 text matches the WHATWG URL normalization (RFC 5952 compression) and parses back", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.nat(7), fc.nat(8), (b, at, zeros) => {
      // Bias towards zero runs, where compression rules matter.
      for (let i = at * 2; i < Math.min(16, at * 2 + zeros * 2); i++) b[i] = 0;
      const text = formatIpv6(b);
      assert.deepEqual(parseIpv6(text), b);
      const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
      if (!mapped) assert.equal(text, new URL(`http://[${text}]/`).hostname.slice(1, -1));
    }),
    { numRuns: 2000 },
  );
});
