/** The packet data path's structs: byte vectors at the layout's offsets, round trips, the reverse flow key. */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeBackendValue,
  decodeFlowKey,
  decodeFlowValue,
  decodeServiceValue,
  encodeBackendValue,
  encodeFlowKey,
  encodeFlowValue,
  encodeServiceKey,
  encodeServiceValue,
  reverseFlowKey,
  type NatFlow,
} from "../../src/lb/packet/structs.js";
import { flowVerdict, sweepLimits } from "../../src/lb/packet/flows.js";
import { FlowDir, FlowFlag } from "../../src/programs/nat-layout.js";

const hex = (s: string): string => s.replace(/\s+/g, "");
const z = (n: number): string => "00".repeat(n);

const vectors: { name: string; have: () => Buffer; want: string }[] = [
  { name: "flow key v4", have: () => encodeFlowKey({ saddr: "192.0.2.1", daddr: "198.51.100.10", sport: 40000, dport: 80, family: 4 }), want: `c0000201 ${z(12)} c633640a ${z(12)} 9c40 0050 04 ${z(3)}` },
  { name: "flow key v6", have: () => encodeFlowKey({ saddr: "2001:db8::1", daddr: "2001:db8::a", sport: 1, dport: 443, family: 6 }), want: `20010db8 ${z(11)} 01 20010db8 ${z(11)} 0a 0001 01bb 06 ${z(3)}` },
  { name: "service key", have: () => encodeServiceKey({ addr: "198.51.100.10", port: 8443, family: 4 }), want: `c633640a ${z(12)} 20fb 04 00` },
  {
    name: "service value, cursor kept from the old value",
    have: () => encodeServiceValue({ id: 3, slots: 255, scheduler: 0, toaKind: 254, portFirst: 20000, portCount: 40000, mtu: 1500 }, Buffer.from(hex(`${z(24)} 39300000 00000000`), "hex")),
    want: `03000000 ff000000 00 fe 0000 204e0000 409c0000 dc050000 39300000 00000000`,
  },
  {
    name: "service value, PROXY v2",
    have: () => encodeServiceValue({ id: 1, slots: 256, scheduler: 0, toaKind: 0, proxy: 1, portFirst: 10000, portCount: 22768, mtu: 1500 }),
    want: `01000000 00010000 00 00 01 00 10270000 f0580000 dc050000 ${z(8)}`,
  },
  { name: "backend value", have: () => encodeBackendValue({ addr: "203.0.113.2", local: "198.51.100.1", port: 80, family: 4, ifindex: 258 }), want: `cb007102 ${z(12)} c6336401 ${z(12)} 0050 04 00 02010000 ${z(8)}` },
];
for (const v of vectors) {
  test(`struct bytes: ${v.name}`, () => assert.equal(v.have().toString("hex"), hex(v.want)));
}

test("struct round trips, and decoding an unused backend entry", () => {
  assert.equal(decodeBackendValue(Buffer.alloc(48)), undefined);
  const b = { addr: "2001:db8::2", local: "2001:db8::1", port: 443, family: 6 as const, ifindex: 9 };
  assert.deepEqual(decodeBackendValue(encodeBackendValue(b)), b);
  const s = { id: 63, slots: 256, scheduler: 1, toaKind: 0, proxy: 1, portFirst: 1024, portCount: 64512, mtu: 9000 };
  assert.deepEqual(decodeServiceValue(encodeServiceValue(s)), s);
  const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join("."));
  fc.assert(
    fc.property(v4, v4, fc.nat(65535), fc.nat(65535), fc.nat(0xffffffff), fc.nat(1023), fc.nat(255), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (saddr, daddr, sport, dport, ifindex, backend, flags, ns) => {
      assert.deepEqual(decodeFlowKey(encodeFlowKey({ saddr, daddr, sport, dport, family: 4 })), { saddr, daddr, sport, dport, family: 4 });
      const f: NatFlow = { saddr, daddr, sport, dport, ifindex, backend, dir: FlowDir.TO_CLIENT, flags, service: backend % 64, lastNs: ns, createdNs: ns / 2n };
      assert.deepEqual(decodeFlowValue(encodeFlowValue(f, 4), 4), f);
    }),
  );
});

test("reverseFlowKey: the client side's value names the backend side's key, and back", () => {
  const family = 4;
  const clientKey = encodeFlowKey({ saddr: "192.0.2.1", daddr: "198.51.100.10", sport: 40000, dport: 80, family });
  const backendKey = encodeFlowKey({ saddr: "203.0.113.2", daddr: "198.51.100.1", sport: 8080, dport: 21000, family });
  const toBackend = encodeFlowValue({ saddr: "198.51.100.1", daddr: "203.0.113.2", sport: 21000, dport: 8080, ifindex: 7, backend: 1, dir: FlowDir.TO_BACKEND, flags: 0, lastNs: 0n, createdNs: 0n }, family);
  const toClient = encodeFlowValue({ saddr: "198.51.100.10", daddr: "192.0.2.1", sport: 80, dport: 40000, ifindex: 3, backend: 1, dir: FlowDir.TO_CLIENT, flags: 0, lastNs: 0n, createdNs: 0n }, family);
  assert.deepEqual(reverseFlowKey(toBackend, family), backendKey);
  assert.deepEqual(reverseFlowKey(toClient, family), clientKey);
});

test("flowVerdict: the rules in order", () => {
  const limits = sweepLimits({ connectMs: 3, synMs: 5, idleMs: 60, closedMs: 2 });
  const ms = (n: number) => BigInt(n) * 1_000_000n;
  const now = ms(1000);
  const v = (last: bigint, flags = 0, created = now - ms(10)) =>
    encodeFlowValue({ saddr: "192.0.2.1", daddr: "192.0.2.2", sport: 1, dport: 2, ifindex: 1, backend: 0, dir: 0, flags, lastNs: last, createdNs: created }, 4);
  const cases: { name: string; have: [Buffer | undefined, Buffer | undefined]; want: ReturnType<typeof flowVerdict> }[] = [
    { name: "busy", have: [v(now), v(now)], want: undefined },
    { name: "rst beats everything", have: [v(now, FlowFlag.RST), v(0n)], want: "rst" },
    { name: "never answered", have: [v(now - ms(5)), v(0n)], want: "connect_failed" },
    { name: "fin both, quiet", have: [v(now - ms(3), FlowFlag.FIN), v(now - ms(3), FlowFlag.FIN | FlowFlag.TOA_PENDING)], want: "closed" },
    { name: "fin one way, quiet", have: [v(now - ms(3), FlowFlag.FIN), v(now - ms(3))], want: undefined },
    { name: "idle (created counts as a packet)", have: [v(now - ms(61), 0, now - ms(100)), v(now - ms(61), 0, now - ms(100))], want: "idle" },
    { name: "handshake never completed", have: [v(now, FlowFlag.HALF_OPEN, now - ms(6)), v(now, 0, now - ms(6))], want: "syn_timeout" },
    { name: "handshake under way", have: [v(now, FlowFlag.HALF_OPEN, now - ms(4)), v(now, 0, now - ms(4))], want: undefined },
    { name: "lone and fresh", have: [undefined, v(0n, 0, now - ms(1))], want: undefined },
    { name: "lone and old", have: [v(now), undefined], want: "orphan" },
  ];
  for (const c of cases) assert.equal(flowVerdict(c.have[0], c.have[1], now, limits), c.want, c.name);
  assert.throws(() => sweepLimits({ connectMs: -1, synMs: 1, idleMs: 1, closedMs: 1 }), /connectMs must be a number of milliseconds >= 0/);
});
