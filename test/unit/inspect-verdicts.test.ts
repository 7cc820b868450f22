import { test } from "node:test";
import assert from "node:assert/strict";
import {
  encodeIp, encodeTcp, encodeToa, encodeTcpOptions, encodeLinkFrame, writePcap, writePcapng, LINKTYPE, DEFAULT_TOA_KINDS,
  type FrameToWrite,
} from "../../src/wire/index.js";
import { inspectBuffer, formatTable, formatSummary, type InspectOptions } from "../../src/inspect/index.js";
import { parseCidrList } from "../../src/wire/index.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");
const LB = "198.51.100.10";
const BACKEND = "198.51.100.20";
const MSS_TS = encodeTcpOptions([{ kind: 2, name: "MSS", mss: 1460 }, { kind: 1, name: "NOP" }, { kind: 1, name: "NOP" }, { kind: 8, name: "TIMESTAMP", value: 1, echo: 0 }]);

interface ConnSpec {
  client?: string;
  server?: string;
  cport: number;
  synOpts?: Uint8Array;
  ackOpts?: Uint8Array;
  /** Options of each client data segment. */
  data?: Uint8Array[];
  /** Omit the handshake ACK (lost before the capture point). */
  noAck?: boolean;
  end?: "fin" | "rst" | "none";
}

/** The packets of one connection as the backend sees them. */
function connection(s: ConnSpec): Buffer[] {
  const c = s.client ?? LB;
  const b = s.server ?? BACKEND;
  const pkt = (from: string, to: string, sp: number, dp: number, flags: string[], options?: Uint8Array, payload = ""): Buffer =>
    encodeIp({ source: from, destination: to, protocol: 6, payload: encodeTcp({ sourcePort: sp, destinationPort: dp, flags, options, payload: Buffer.from(payload), source: from, destination: to }) });
  const out = [pkt(c, b, s.cport, 80, ["SYN"], s.synOpts ?? MSS_TS), pkt(b, c, 80, s.cport, ["SYN", "ACK"], MSS_TS)];
  if (!s.noAck) out.push(pkt(c, b, s.cport, 80, ["ACK"], s.ackOpts));
  for (const [i, o] of (s.data ?? [new Uint8Array(0)]).entries()) {
    out.push(pkt(c, b, s.cport, 80, ["ACK", "PSH"], o, `GET /${i} HTTP/1.1\r\n\r\n`));
    out.push(pkt(b, c, 80, s.cport, ["ACK"]));
  }
  if (s.end === "rst") out.push(pkt(c, b, s.cport, 80, ["RST"]));
  else if (s.end !== "none") out.push(pkt(c, b, s.cport, 80, ["FIN", "ACK"]), pkt(b, c, 80, s.cport, ["FIN", "ACK"]), pkt(c, b, s.cport, 80, ["ACK"]));
  return out;
}

function capture(conns: ConnSpec[], link: number = LINKTYPE.ETHERNET, ng = false): Buffer {
  const frames: FrameToWrite[] = conns.flatMap(connection).map((p, i) => ({ data: encodeLinkFrame(link, p), timestamp: 1700000000 + i / 1000 }));
  return ng ? writePcapng(frames, { linkType: link }) : writePcap(frames, { linkType: link });
}

const toa = (kind: number, address: string, port: number | null): Buffer => encodeToa({ kind, address, port });
const opts = (extra: InspectOptions = { kinds: DEFAULT_TOA_KINDS }): InspectOptions => extra;

const cases: { name: string; have: ConnSpec; options?: InspectOptions; want: { verdict: string; packet?: string; carries?: string; reason?: RegExp } }[] = [
  { name: "TOA in the handshake ACK", have: { cport: 40001, ackOpts: toa(254, "203.0.113.7", 51000) }, want: { verdict: "ok", packet: "handshake ACK", carries: "203.0.113.7:51000" } },
  { name: "TOA in the SYN only", have: { cport: 40002, synOpts: Buffer.concat([MSS_TS, toa(254, "203.0.113.8", 1)]) }, want: { verdict: "ok", packet: "SYN", carries: "203.0.113.8:1" } },
  { name: "TOA in the first data segment (handshake ACK lost)", have: { cport: 40003, noAck: true, data: [toa(200, "203.0.113.9", 2)] }, want: { verdict: "ok", packet: "handshake ACK (data segment 1)" } },
  { name: "IPv6 TOA kind 253", have: { cport: 40004, ackOpts: toa(253, "2001:db8::9", 443) }, want: { verdict: "ok", carries: "2001:db8::9:443" } },
  { name: "no TOA anywhere", have: { cport: 40005 }, want: { verdict: "no-toa", reason: /no TOA option/ } },
  { name: "TOA only in the second data segment", have: { cport: 40006, data: [new Uint8Array(0), toa(254, "203.0.113.10", 3)] }, want: { verdict: "only-in-later-segments", packet: "data segment 2", reason: /after the handshake ACK/ } },
  {
    name: "options full in the handshake ACK",
    have: { cport: 40007, ackOpts: encodeTcpOptions([{ kind: 1, name: "NOP" }, { kind: 1, name: "NOP" }, { kind: 8, name: "TIMESTAMP", value: 5, echo: 6 }, { kind: 5, name: "SACK", blocks: [{ left: 1, right: 2 }, { left: 3, right: 4 }, { left: 5, right: 6 }] }]) },
    want: { verdict: "option-space-full", reason: /all 40 bytes/ },
  },
  { name: "kind 252 not accepted by default", have: { cport: 40008, ackOpts: toa(252, "203.0.113.11", 4) }, want: { verdict: "kind-not-accepted", reason: /--kinds 254,253,200,252/ } },
  { name: "kind 252 accepted with --kinds", have: { cport: 40009, ackOpts: toa(252, "203.0.113.11", 4) }, options: { kinds: [252] }, want: { verdict: "ok" } },
  { name: "Alibaba CDN kind 28 accepted with --kinds 28", have: { cport: 40010, synOpts: Buffer.concat([MSS_TS, toa(28, "203.0.113.12", null), hex("00")]) }, options: { kinds: [28] }, want: { verdict: "ok", carries: "203.0.113.12" } },
  { name: "source outside --trust", have: { cport: 40011, ackOpts: toa(254, "203.0.113.13", 5) }, options: { kinds: [254], trust: parseCidrList("100.125.0.0/16") }, want: { verdict: "untrusted-source", reason: /198\.51\.100\.10, outside --trust 100\.125\.0\.0\/16/ } },
  { name: "source inside --trust", have: { cport: 40012, ackOpts: toa(254, "203.0.113.14", 6) }, options: { kinds: [254], trust: parseCidrList("198.51.100.0/24,2001:db8::/32") }, want: { verdict: "ok" } },
  { name: "kind 254 with length 6", have: { cport: 40013, ackOpts: hex("fe06 0050 c633 0000") }, want: { verdict: "malformed", reason: /length 6/ } },
  { name: "options list running past the end", have: { cport: 40014, ackOpts: hex("0101 fe0c 0050 c633") }, want: { verdict: "malformed", reason: /runs past/ } },
  { name: "User Timeout (kind 28 len 4) is not a TOA", have: { cport: 40015, ackOpts: hex("1c04 8001") }, options: { kinds: [28, 254] }, want: { verdict: "no-toa" } },
];

test("inspect: one connection per verdict, table-driven", () => {
  for (const c of cases) {
    const r = inspectBuffer(capture([c.have]), c.options ?? opts());
    assert.equal(r.connections.length, 1, c.name);
    const conn = r.connections[0];
    assert.equal(conn.verdict, c.want.verdict, `${c.name}: ${conn.reason}`);
    assert.equal(conn.client, `${LB}:${c.have.cport}`);
    assert.equal(conn.server, `${BACKEND}:80`);
    if (c.want.packet) assert.equal(conn.toa?.packet, c.want.packet, c.name);
    if (c.want.carries) assert.equal(`${conn.toa?.address}${conn.toa?.port === null ? "" : `:${conn.toa?.port}`}`, c.want.carries, c.name);
    if (c.want.reason) assert.match(conn.reason, c.want.reason, c.name);
  }
});

test("inspect: many connections in one capture, every link type and pcapng, summary and table", () => {
  for (const [link, ng] of [[LINKTYPE.ETHERNET, false], [LINKTYPE.LINUX_SLL2, true], [LINKTYPE.RAW, false], [LINKTYPE.LINUX_SLL, true]] as const) {
    const r = inspectBuffer(capture(cases.filter((c) => !c.options).map((c) => c.have), link, ng), opts());
    const got = r.connections.map((c) => c.verdict);
    assert.deepEqual(got, cases.filter((c) => !c.options).map((c) => c.want.verdict));
    const table = formatTable(r);
    assert.match(table, /CLIENT -> SERVER/);
    assert.match(table, /198\.51\.100\.10:40001 -> 198\.51\.100\.20:80\s+handshake ACK\s+254\/ipv4\s+203\.0\.113\.7:51000\s+ok/);
    assert.equal(formatSummary(r), "10 connections: 4 ok, 1 no-toa, 1 only-in-later-segments, 1 option-space-full, 1 kind-not-accepted, 2 malformed (81 packets, 81 TCP)");
  }
});

test("inspect: same 4-tuple reused after FIN is a new connection; SYN retransmission is not; mid-stream is counted", () => {
  const first = connection({ cport: 41000, ackOpts: toa(254, "203.0.113.1", 1) });
  const again = connection({ cport: 41000 });
  const synRetrans = connection({ cport: 41001, ackOpts: toa(254, "203.0.113.2", 2) });
  synRetrans.splice(1, 0, synRetrans[0]);
  const midStream = connection({ cport: 41002 }).slice(3);
  const frames = [...first, ...again, ...synRetrans, ...midStream].map((p) => ({ data: p }));
  const r = inspectBuffer(writePcap(frames, { linkType: LINKTYPE.RAW }), opts());
  assert.deepEqual(r.connections.map((c) => [c.client, c.verdict]), [
    [`${LB}:41000`, "ok"],
    [`${LB}:41000`, "no-toa"],
    [`${LB}:41001`, "ok"],
  ]);
  assert.equal(r.withoutSyn, 1);
  assert.match(formatSummary(r), /1 connection without a SYN in the capture not reported/);
  // --port keeps only matching connections.
  assert.equal(inspectBuffer(writePcap(frames, { linkType: LINKTYPE.RAW }), { kinds: [254], port: 41001 }).connections.length, 1);
});

test("inspect: IPv6 connections", () => {
  const r = inspectBuffer(capture([{ client: "2001:db8::10", server: "2001:db8::20", cport: 42000, ackOpts: toa(254, "2001:db8:1::5", 8443) }]), opts());
  assert.equal(r.connections[0].client, "[2001:db8::10]:42000");
  assert.equal(r.connections[0].verdict, "ok");
  assert.match(formatTable(r), /\[2001:db8:1::5\]:8443/);
});
