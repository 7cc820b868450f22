import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/cli/main.js";
import type { Io } from "../../src/cli/io.js";
import { encodeIp, encodeTcp, encodeToa, writePcap, writePcapng, encodeLinkFrame, LINKTYPE, pcapGlobalHeader, pcapRecord } from "../../src/wire/index.js";

function capturingIo(): Io & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (t) => void stdout.push(t), err: (t) => void stderr.push(t) };
}

function handshake(cport: number, toaKind?: number): Buffer[] {
  const c = "198.51.100.1";
  const s = "198.51.100.2";
  const seg = (from: string, to: string, sp: number, dp: number, flags: string[], options?: Buffer): Buffer =>
    encodeIp({ source: from, destination: to, protocol: 6, payload: encodeTcp({ sourcePort: sp, destinationPort: dp, flags, options, source: from, destination: to }) });
  const opt = toaKind === undefined ? undefined : encodeToa({ kind: toaKind, address: "203.0.113.50", port: 3333 });
  return [seg(c, s, cport, 80, ["SYN"]), seg(s, c, 80, cport, ["SYN", "ACK"]), seg(c, s, cport, 80, ["ACK"], opt)];
}

test("toa inspect: table, JSON, filters and exit codes", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "toa-inspect-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "cap.pcapng");
  const frames = [...handshake(40000, 254), ...handshake(40001), ...handshake(40002, 252)].map((p) => ({ data: encodeLinkFrame(LINKTYPE.ETHERNET, p) }));
  writeFileSync(file, writePcapng(frames, { linkType: LINKTYPE.ETHERNET }));

  let io = capturingIo();
  assert.equal(await run(["inspect", file], io), 3, "not all ok -> 3");
  const out = io.stdout.join("\n");
  assert.match(out, /198\.51\.100\.1:40000 -> 198\.51\.100\.2:80\s+handshake ACK\s+254\/ipv4\s+203\.0\.113\.50:3333\s+ok/);
  assert.match(out, /no-toa\n\s+-> no TOA option/);
  assert.match(out, /3 connections: 1 ok, 1 no-toa, 1 kind-not-accepted/);

  io = capturingIo();
  assert.equal(await run(["inspect", file, "--json", "--port", "40000"], io), 0);
  const json = JSON.parse(io.stdout.join("")) as { client: string; verdict: string; toa: { address: string } }[];
  assert.deepEqual(json.map((c) => [c.client, c.verdict, c.toa.address]), [["198.51.100.1:40000", "ok", "203.0.113.50"]]);

  io = capturingIo();
  assert.equal(await run(["inspect", file, "--json", "--kinds", "252", "--trust", "10.0.0.0/8"], io), 3);
  const verdicts = (JSON.parse(io.stdout.join("")) as { verdict: string }[]).map((c) => c.verdict);
  assert.deepEqual(verdicts, ["kind-not-accepted", "no-toa", "untrusted-source"]);

  io = capturingIo();
  assert.notEqual(await run(["inspect", file, "--trust", "10.0.0.0/33"], io), 0);
  assert.match(io.stderr.join(""), /bad prefix length/);

  io = capturingIo();
  await run(["inspect", "--help"], io);
  assert.match(io.stdout.join(""), /tcpdump -i eth0 -w cap\.pcap 'tcp port 80'/);
});

test("toa inspect: bad input names the problem", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "toa-inspect-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let io = capturingIo();
  assert.equal(await run(["inspect", join(dir, "missing.pcap")], io), 1);
  assert.match(io.stderr.join(""), /missing\.pcap: file not found/);

  const notPcap = join(dir, "notes.txt");
  writeFileSync(notPcap, "these are not packets\n");
  io = capturingIo();
  assert.equal(await run(["inspect", notPcap], io), 1);
  assert.match(io.stderr.join(""), /notes\.txt: not a pcap or pcapng file \(first bytes 0x74686573\)/);

  const whole = writePcap(handshake(40000, 254).map((data) => ({ data })), { linkType: LINKTYPE.RAW });
  const cut = join(dir, "cut.pcap");
  writeFileSync(cut, whole.subarray(0, whole.length - 5));
  io = capturingIo();
  assert.equal(await run(["inspect", cut], io), 1);
  const lastRecord = whole.length - (16 + handshake(40000, 254)[2].length);
  assert.match(io.stderr.join(""), new RegExp(`cut\\.pcap: capture truncated at byte ${lastRecord}: .*the report covers the 2 packets before it`));
  assert.match(io.stdout.join(""), /1 connection: 1 no-toa/);
});

test("toa inspect: progress on stderr for captures over 10 MB", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "toa-inspect-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "big.pcap");
  const opts = { linkType: LINKTYPE.RAW };
  const parts = [pcapGlobalHeader(opts)];
  const pkts = handshake(40000, 254);
  const filler = pcapRecord({ data: Buffer.concat([pkts[2], Buffer.alloc(1400)]).subarray(0, 1400) }, opts);
  parts.push(...pkts.map((data) => pcapRecord({ data }, opts)));
  for (let n = 0; n < 8000; n++) parts.push(filler);
  writeFileSync(file, Buffer.concat(parts));
  const io = capturingIo();
  assert.equal(await run(["inspect", file], io), 0);
  assert.match(io.stderr.join("\n"), /inspect: 100% of 10\.\d MB/);
});

test("--kinds takes the same range as toa load and toa agent (9-255), with the same message", async () => {
  for (const cmd of [["inspect", "/nonexistent.pcap"], ["load", "--cgroup", "/nonexistent"], ["agent", "--check", "--target", "/"]]) {
    let err = "";
    const io = { out: () => undefined, err: (s: string) => void (err += s) };
    assert.notEqual(await run([...cmd, "--kinds", "5"], io), 0, cmd[0]);
    assert.match(err, /--kinds: "5" is not an option kind: give numbers 9-255 separated by commas/, cmd[0]);
  }
});
