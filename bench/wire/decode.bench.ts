/**
 * Wire decoding speed, measured side by side in one run:
 *  - TOA option decode (decodeToa, and findToa over a realistic handshake-ACK options list) against a
 *    naive parse written the obvious way (Array.join / hex strings);
 *  - PROXY v2 header decode (decodeProxyHeader) against proxy-protocol-js's V2ProxyProtocol.parse on
 *    the same headers (goal: >= 3x);
 *  - `toa inspect` throughput in MB/s on a generated ~100 MB pcap (written to the temp dir, deleted after).
 *
 * Method: each case runs over a pool of 1024 distinct inputs, each function in its own copy of the
 * timing loop; a warm-up of 0.3 s each, then 7 rounds of ~0.3 s in which toa and the baseline take
 * turns; the median round's operations per second is reported. Every result is stored where the JIT
 * cannot see it is unused, so no work is dropped.
 */
import { closeSync, openSync, rmSync, statSync, writeSync, mkdtempSync } from "node:fs";
import { cpus, tmpdir, totalmem, release } from "node:os";
import { join } from "node:path";
import * as ppjs from "proxy-protocol-js";
import {
  decodeToa, encodeToa, findToa, encodeTcpOptions, decodeProxyHeader, encodeProxyV2, PP2_TYPE, formatIpv4, formatIpv6,
  type ProxyV2View, type ProxyEndpoint,
  encodeIp, encodeTcp, encodeLinkFrame, pcapGlobalHeader, pcapRecord, LINKTYPE, DEFAULT_TOA_KINDS,
} from "../../src/wire/index.js";
import { inspectFile } from "../../src/inspect/index.js";

let textSink = "";
let portSink = 0;

/** Where every result goes, so the JIT cannot drop the work (results escape). */
const results: unknown[] = new Array(16).fill(null);

type Loop = <T>(inputs: T[], fn: (x: T) => unknown, ms: number) => { ops: number; secs: number };

/**
 * A fresh copy of the timing loop: each case gets its own function (own type feedback), so the call
 * to the decoder is monomorphic for every case alike and no case pays for the ones measured before it.
 */
function makeLoop(): Loop {
  const src = `return function loop(inputs, fn, ms) {
    const n = inputs.length;
    let ops = 0;
    const start = process.hrtime.bigint();
    const deadline = start + BigInt(Math.round(ms * 1e6));
    let now = start;
    while (now < deadline) {
      for (let i = 0; i < n; i++) results[i & 15] = fn(inputs[i]);
      ops += n;
      now = process.hrtime.bigint();
    }
    return { ops, secs: Number(now - start) / 1e9 };
  };`;
  return new Function("results", src)(results) as Loop;
}

const ROUNDS = 7;
const ROUND_MS = 300;

/**
 * Median ops/s of each function over the same inputs: a warm-up, then ROUNDS rounds in which the
 * functions take turns (A, B, A, B...), so drift in the machine's speed hits both alike.
 */
function measure<T>(inputs: T[], ...fns: ((x: T) => unknown)[]): number[] {
  const loops = fns.map(() => makeLoop());
  fns.forEach((fn, k) => loops[k](inputs, fn, ROUND_MS));
  const rates: number[][] = fns.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    fns.forEach((fn, k) => {
      const { ops, secs } = loops[k](inputs, fn, ROUND_MS);
      rates[k].push(ops / secs);
    });
  }
  return rates.map((r) => r.sort((a, b) => a - b)[ROUNDS >> 1]);
}

/** The obvious hand-written TOA parse: what one writes without thinking about allocation. */
function naiveToa(b: Buffer): { kind: number; port: number; address: string } {
  const len = b[1];
  if (len === 8) return { kind: b[0], port: b.readUInt16BE(2), address: Array.from(b.subarray(4, 8)).join(".") };
  const groups = b.toString("hex", 4, 20).match(/.{4}/g) ?? [];
  return { kind: b[0], port: b.readUInt16BE(2), address: groups.map((g) => parseInt(g, 16).toString(16)).join(":") };
}

const fmt = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M/s` : `${(n / 1e3).toFixed(0)} k/s`);

function rand(n: number): number {
  return Math.floor(Math.random() * n);
}
const v4 = (): string => `203.0.${rand(256)}.${rand(256)}`;
const v6 = (): string => `2001:db8:${rand(65536).toString(16)}::${rand(65536).toString(16)}`;

function bench(only: string | undefined): void {
  console.log("# toa wire decode benchmark");
  console.log(`machine: ${cpus()[0]?.model ?? "unknown cpu"} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}`);
  console.log(`node ${process.version}, ${process.arch}`);
  console.log("method: 1024 distinct inputs per case, own timing loop per function, 0.3 s warm-up, median of 7 alternating rounds of 0.3 s\n");

  // TOA.
  const toaV4 = Array.from({ length: 1024 }, () => encodeToa({ kind: 254, address: v4(), port: rand(65536) }));
  const toaV6 = Array.from({ length: 1024 }, () => encodeToa({ kind: 253, address: v6(), port: rand(65536) }));
  const prefix = encodeTcpOptions([{ kind: 1, name: "NOP" }, { kind: 1, name: "NOP" }, { kind: 8, name: "TIMESTAMP", value: 1, echo: 2 }], false);
  const ackOpts = toaV4.map((t) => Buffer.concat([prefix, t]));
  const rows: [string, number, number | null, string][] = [];
  if (!only) {
  const [t4, n4] = measure(toaV4, (b) => decodeToa(b), naiveToa);
  rows.push(["TOA IPv4 decodeToa", t4, n4, "naive parse"]);
  const [t6, n6] = measure(toaV6, (b) => decodeToa(b), naiveToa);
  rows.push(["TOA IPv6 decodeToa", t6, n6, "naive parse"]);
  rows.push(["TOA findToa in ACK options", measure(ackOpts, (b) => findToa(b, DEFAULT_TOA_KINDS))[0], null, ""]);
  }

  // PROXY v2: the same buffers go to both decoders.
  const ppV4 = Array.from({ length: 1024 }, () =>
    encodeProxyV2({ command: "PROXY", transport: "STREAM", source: { address: v4(), port: rand(65536) }, destination: { address: "198.51.100.2", port: 443 } }));
  const ppV6 = Array.from({ length: 1024 }, () =>
    encodeProxyV2({ command: "PROXY", transport: "STREAM", source: { address: v6(), port: rand(65536) }, destination: { address: "2001:db8::2", port: 443 } }));
  const ppTlv = Array.from({ length: 1024 }, () =>
    encodeProxyV2({
      command: "PROXY", transport: "STREAM", source: { address: v4(), port: rand(65536) }, destination: { address: "198.51.100.2", port: 443 },
      tlvs: [{ type: PP2_TYPE.ALPN, value: "h2" }, { type: PP2_TYPE.AUTHORITY, value: "www.example.com" }, { type: PP2_TYPE.UNIQUE_ID, value: Buffer.alloc(16, rand(256)) }],
    }));
  const ppCases = [["TCP4", ppV4], ["TCP6", ppV6], ["TCP4 + 3 TLVs", ppTlv]] as const;
  // (a) Parse only: validate the header and return the decoder's result; addresses are not touched.
  // Both sides are given the same Buffer and return an object from which the addresses can be had.
  for (const [name, inputs] of ppCases) {
    const [ours, theirs] = measure(inputs, (b) => decodeProxyHeader(b), (b) => ppjs.V2ProxyProtocol.parse(b));
    rows.push([`PROXY v2 ${name}, parse only`, ours, theirs, "proxy-protocol-js parse"]);
  }
  const oursText = (b: Buffer): string => {
    const h = decodeProxyHeader(b).header as ProxyV2View;
    const s = h.source as ProxyEndpoint;
    const d = h.destination as ProxyEndpoint;
    textSink = s.address;
    portSink = s.port + d.port;
    return d.address;
  };
  // (b) Addresses as text: both sides produce the source and destination address strings and ports.
  // proxy-protocol-js returns byte arrays, which go through the same formatters toa uses (formatIpv4,
  // formatIpv6), so the text is identical and the difference is the parse.
  for (const [name, inputs] of ppCases) {
    const [ours, theirs] = measure(inputs, oursText, (b) => {
      const a = ppjs.V2ProxyProtocol.parse(b).proxyAddress as ppjs.IPv4ProxyAddress | ppjs.IPv6ProxyAddress;
      const fmt = a instanceof ppjs.IPv4ProxyAddress ? formatIpv4 : formatIpv6;
      textSink = fmt(a.sourceAddress.address as unknown as Uint8Array);
      portSink = a.sourcePort + a.destinationPort;
      return fmt(a.destinationAddress.address as unknown as Uint8Array);
    });
    rows.push([`PROXY v2 ${name}, addresses as text`, ours, theirs, "proxy-protocol-js parse + toa formatters"]);
  }
  // The same for TCP4 with the formatting one writes without thinking (Array.join), for reference.
  const [oursJoin, theirsJoin] = measure(ppV4, oursText, (b) => {
    const a = ppjs.V2ProxyProtocol.parse(b).proxyAddress as ppjs.IPv4ProxyAddress;
    textSink = a.sourceAddress.address.join(".");
    portSink = a.sourcePort + a.destinationPort;
    return a.destinationAddress.address.join(".");
  });
  rows.push(["PROXY v2 TCP4, addresses as text", oursJoin, theirsJoin, "proxy-protocol-js parse + Array.join"]);

  console.log("| case | toa | baseline | baseline ops/s | ratio |");
  console.log("|---|---|---|---|---|");
  for (const [name, ours, base, baseName] of rows) {
    console.log(`| ${name} | ${fmt(ours)} | ${baseName || "-"} | ${base ? fmt(base) : "-"} | ${base ? `${(ours / base).toFixed(1)}x` : "-"} |`);
  }
}

/** Write a ~`mb` MB pcap of TOA connections (handshake, 10 data segments and their ACKs, FIN) and return its path. */
function generateCapture(mb: number): { path: string; dir: string; connections: number } {
  const dir = mkdtempSync(join(tmpdir(), "toa-bench-"));
  const path = join(dir, "bench.pcap");
  const fd = openSync(path, "w");
  const opts = { linkType: LINKTYPE.ETHERNET };
  writeSync(fd, pcapGlobalHeader(opts));
  let written = 24;
  let conns = 0;
  const payload = Buffer.alloc(1448, 0x61);
  const lb = "198.51.100.10";
  const be = "198.51.100.20";
  const frame = (src: string, dst: string, sp: number, dp: number, flags: string[], options?: Buffer, data?: Buffer): Buffer =>
    encodeLinkFrame(LINKTYPE.ETHERNET, encodeIp({ source: src, destination: dst, protocol: 6, payload: encodeTcp({ sourcePort: sp, destinationPort: dp, flags, options, payload: data }) }));
  const ts = 1700000000;
  while (written < mb * 1e6) {
    const port = 1024 + (conns % 60000);
    const toa = encodeToa({ kind: 254, address: `203.0.${(conns >> 8) & 255}.${conns & 255}`, port });
    const parts = [frame(lb, be, port, 80, ["SYN"]), frame(be, lb, 80, port, ["SYN", "ACK"]), frame(lb, be, port, 80, ["ACK"], toa)];
    for (let i = 0; i < 10; i++) parts.push(frame(be, lb, 80, port, ["ACK", "PSH"], undefined, payload), frame(lb, be, port, 80, ["ACK"]));
    parts.push(frame(lb, be, port, 80, ["FIN", "ACK"]), frame(be, lb, 80, port, ["FIN", "ACK"]), frame(lb, be, port, 80, ["ACK"]));
    const buf = Buffer.concat(parts.map((data, i) => pcapRecord({ data, timestamp: ts + conns + i / 1e3 }, opts)));
    writeSync(fd, buf);
    written += buf.length;
    conns++;
  }
  closeSync(fd);
  return { path, dir, connections: conns };
}

async function benchInspect(): Promise<void> {
  const { path, dir, connections } = generateCapture(100);
  try {
    const size = statSync(path).size;
    const runs: number[] = [];
    let packets = 0;
    for (let i = 0; i < 3; i++) {
      const start = process.hrtime.bigint();
      const { result } = await inspectFile(path, { kinds: DEFAULT_TOA_KINDS });
      const secs = Number(process.hrtime.bigint() - start) / 1e9;
      packets = result.packets;
      if (result.connections.length !== connections || result.connections.some((c) => c.verdict !== "ok")) throw new Error("inspect bench: unexpected report");
      runs.push(secs);
    }
    runs.sort((a, b) => a - b);
    const secs = runs[1];
    console.log(`\n| toa inspect | capture | packets | connections | time (median of 3) | throughput |`);
    console.log("|---|---|---|---|---|---|");
    console.log(`| pcap, Ethernet | ${(size / 1e6).toFixed(1)} MB | ${packets} | ${connections} | ${secs.toFixed(2)} s | ${(size / 1e6 / secs).toFixed(0)} MB/s, ${fmt(packets / secs).replace("/s", " packets/s")} |`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// WIRE_BENCH=proxy runs only the PROXY v2 rows (for working on the decoder).
const only = process.env.WIRE_BENCH;
bench(only);
if (!only) await benchInspect();
if (portSink < 0 || textSink === "x" || results.length !== 16) console.log(portSink, textSink);
