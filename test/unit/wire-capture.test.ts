import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  WireError, CaptureReader, readCapture, readCaptureStream, packets, decodePacket, writePcap, writePcapng, encodeLinkFrame,
  encodeIp, encodeTcp, LINKTYPE, type CaptureRecord,
} from "../../src/wire/index.js";

function onlyWireError(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
  }
}

function segment(src: string, dst: string, sport: number, flags: string[], payload = ""): Buffer {
  const tcp = encodeTcp({ sourcePort: sport, destinationPort: 80, flags, payload: Buffer.from(payload), source: src, destination: dst });
  return encodeIp({ source: src, destination: dst, protocol: 6, payload: tcp });
}

const ipPackets = [
  segment("198.51.100.1", "198.51.100.2", 40000, ["SYN"]),
  segment("2001:db8::1", "2001:db8::2", 40001, ["ACK", "PSH"], "hello"),
  segment("198.51.100.1", "198.51.100.2", 40000, ["FIN", "ACK"]),
];
const timestamps = [1700000000.5, 1700000001.25, 1700000002.000125];

const linkTypes = [LINKTYPE.ETHERNET, LINKTYPE.LINUX_SLL, LINKTYPE.LINUX_SLL2, LINKTYPE.RAW, LINKTYPE.NULL, LINKTYPE.LOOP];

function check(records: CaptureRecord[], linkType: number, name: string, withTimestamps = true): void {
  assert.equal(records.length, 3, name);
  records.forEach((r, i) => {
    const p = decodePacket(r);
    assert.equal(p.linkType, linkType, name);
    assert.equal(p.index, i);
    assert.ok(p.ip, `${name}: ip of packet ${i} (${p.error})`);
    assert.ok(p.tcp, `${name}: tcp of packet ${i}`);
    assert.equal(p.tcp.sourcePort, i === 1 ? 40001 : 40000);
    if (withTimestamps) assert.ok(Math.abs(p.timestamp - timestamps[i]) < 1e-6, `${name}: timestamp ${p.timestamp}`);
  });
  assert.equal(decodePacket(records[1]).tcp?.payloadLength, 5);
}

test("pcap and pcapng round trip over every link type, byte order and timestamp unit", () => {
  for (const lt of linkTypes) {
    const frames = ipPackets.map((p, i) => ({ data: encodeLinkFrame(lt, p, { vlans: [10, 20] }), timestamp: timestamps[i] }));
    for (const bigEndian of [false, true]) {
      for (const nanoseconds of [false, true]) {
        check([...readCapture(writePcap(frames, { linkType: lt, bigEndian, nanoseconds }))], lt, `pcap lt=${lt} be=${bigEndian} ns=${nanoseconds}`);
      }
      for (const tsresol of [6, 9, 0x80 | 20]) {
        check([...readCapture(writePcapng(frames, { linkType: lt, bigEndian, tsresol, unknownBlock: true }))], lt, `pcapng lt=${lt} be=${bigEndian} tsresol=${tsresol}`);
      }
      check([...readCapture(writePcapng(frames, { linkType: lt, bigEndian, simple: true }))], lt, `pcapng SPB lt=${lt}`, false);
    }
  }
  // Raw IPv4 / IPv6 link types.
  const v4 = [...readCapture(writePcap([{ data: ipPackets[0] }], { linkType: LINKTYPE.IPV4 }))];
  assert.equal(decodePacket(v4[0]).ip?.version, 4);
  const v6 = [...readCapture(writePcap([{ data: ipPackets[1] }], { linkType: LINKTYPE.IPV6 }))];
  assert.equal(decodePacket(v6[0]).ip?.version, 6);
});

test("non-IP frames and unknown link types decode to ip null with a reason", () => {
  const arp = Buffer.alloc(42);
  arp.writeUInt16BE(0x0806, 12);
  const [p] = packets(writePcap([{ data: arp }], { linkType: LINKTYPE.ETHERNET }));
  assert.equal(p.ip, null);
  assert.equal(p.error, undefined);
  const [q] = packets(writePcap([{ data: ipPackets[0] }], { linkType: 147 }));
  assert.match(q.error ?? "", /link type 147 is not supported/);
  // A snap length that cut the TCP header.
  const [r] = packets(writePcap([{ data: ipPackets[0].subarray(0, 30), originalLength: ipPackets[0].length }], { linkType: LINKTYPE.RAW }));
  assert.ok(r.ip);
  assert.equal(r.tcp, null);
  assert.match(r.error ?? "", /TCP header/);
});

test("errors name the problem: not a capture, truncated at byte N", () => {
  assert.throws(() => [...readCapture(Buffer.from("hello world, not a capture"))], /not a pcap or pcapng file \(first bytes 0x68656c6c\)/);
  const file = writePcap(ipPackets.map((data) => ({ data })), { linkType: LINKTYPE.RAW });
  const cut = file.subarray(0, file.length - 3);
  const secondRecord = 24 + 16 + ipPackets[0].length + 16 + ipPackets[1].length;
  assert.throws(() => [...readCapture(cut)], (e: unknown) => e instanceof WireError && e.code === "WIRE_ERR_TRUNCATED" && e.offset === secondRecord && /truncated at byte/.test(e.message));
  assert.throws(() => [...readCapture(Buffer.alloc(2))], /only 2 bytes/);
});

test("property: the streaming reader gives the same records for any chunking", async () => {
  const file = writePcapng(ipPackets.map((p, i) => ({ data: encodeLinkFrame(LINKTYPE.ETHERNET, p), timestamp: timestamps[i] })), { linkType: LINKTYPE.ETHERNET });
  const whole = [...readCapture(file)].map((r) => [r.index, r.fileOffset, r.data.toString("hex")]);
  await fc.assert(
    fc.asyncProperty(fc.array(fc.nat(file.length), { maxLength: 12 }), async (cuts) => {
      const points = [...new Set([0, ...cuts, file.length])].sort((a, b) => a - b);
      async function* chunks(): AsyncGenerator<Buffer> {
        for (let i = 1; i < points.length; i++) yield file.subarray(points[i - 1], points[i]);
      }
      const got: unknown[] = [];
      for await (const r of readCaptureStream(chunks())) got.push([r.index, r.fileOffset, r.data.toString("hex")]);
      assert.deepEqual(got, whole);
    }),
    { numRuns: 200 },
  );
});

test("property: random or corrupted bytes into the capture readers throw only WireError", () => {
  const good = writePcapng(ipPackets.map((data) => ({ data: encodeLinkFrame(LINKTYPE.ETHERNET, data) })), { linkType: LINKTYPE.ETHERNET });
  const goodPcap = writePcap(ipPackets.map((data) => ({ data: encodeLinkFrame(LINKTYPE.LINUX_SLL2, data) })), { linkType: LINKTYPE.LINUX_SLL2 });
  fc.assert(
    fc.property(fc.nat(2), fc.uint8Array({ maxLength: 200 }), fc.array(fc.tuple(fc.nat(400), fc.nat(255)), { maxLength: 8 }), (which, bytes, flips) => {
      const base = which === 0 ? Buffer.from(bytes) : Buffer.from(which === 1 ? good : goodPcap);
      for (const [at, v] of flips) if (base.length > 0) base[at % base.length] = v;
      onlyWireError(() => {
        const r = new CaptureReader();
        for (const rec of r.push(base)) decodePacket(rec);
        r.end();
      });
    }),
    { numRuns: 3000 },
  );
});
