/**
 * `toa inspect` on a real capture: two network namespaces joined by a veth pair; tcpdump records on
 * the server side while scapy, in the client namespace, plays a load balancer that puts a TOA
 * (kind 254, 203.0.113.7:40000) into the handshake ACK. A second, ordinary connection made by the
 * kernel carries no TOA. The inspector must tell them apart.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireRoot } from "../harness/privileged.js";
import { Netns, link } from "../harness/netns.js";
import { sh } from "../harness/exec.js";
import { inspectFile } from "../../src/inspect/index.js";
import { DEFAULT_TOA_KINDS, parseCidrList } from "../../src/wire/index.js";
import { scaled } from "../harness/time.js";

const CLIENT = "198.51.100.1";
const SERVER = "198.51.100.2";
const PORT = 8080;
const SCAPY_SPORT = 40123;

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + scaled(timeoutMs);
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// The scapy side of the handshake. The client kernel has no socket for it and would answer the
// SYN-ACK with a RST, so the test drops outgoing RSTs in the client namespace (nft, below).
const SCAPY = `
import sys, time
from scapy.layers.inet import IP, TCP
from scapy.sendrecv import sr1, send
from scapy.config import conf
conf.verb = 0
ip = IP(src="${CLIENT}", dst="${SERVER}")
sport, dport = ${SCAPY_SPORT}, ${PORT}
synack = sr1(ip/TCP(sport=sport, dport=dport, flags="S", seq=1000, options=[("MSS", 1460)]), timeout=5)
if synack is None or not synack.haslayer(TCP) or (int(synack[TCP].flags) & 0x12) != 0x12:
    sys.exit("no SYN-ACK from the server")
ack = synack[TCP].seq + 1
# TOA: kind 254, length 8, port 40000 (0x9c40), address 203.0.113.7
toa = (254, bytes([0x9c, 0x40, 203, 0, 113, 7]))
send(ip/TCP(sport=sport, dport=dport, flags="A", seq=1001, ack=ack, options=[("NOP", None), ("NOP", None), toa]))
req = b"GET / HTTP/1.0\\r\\n\\r\\n"
send(ip/TCP(sport=sport, dport=dport, flags="PA", seq=1001, ack=ack) / req)
time.sleep(0.3)
send(ip/TCP(sport=sport, dport=dport, flags="RA", seq=1001 + len(req), ack=ack))
print("done")
`;

test("toa inspect on a tcpdump capture of a crafted TOA handshake between two namespaces", { timeout: scaled(90_000) }, async (t) => {
  if (!requireRoot(t)) return;
  for (const [cmd, args, pkg] of [["tcpdump", ["--version"], "tcpdump"], ["/usr/bin/python3", ["-c", "import scapy"], "python3-scapy"], ["nft", ["--version"], "nftables"]] as const) {
    try {
      await sh(cmd, [...args]);
    } catch {
      const reason = `${cmd} is missing: apt-get install -y ${pkg}`;
      if (process.env.CI === "true") throw new Error(reason);
      console.log(`# skip: ${reason}`);
      t.skip(reason);
      return;
    }
  }
  const dir = mkdtempSync(join(tmpdir(), "toa-inspect-priv-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "server.pcap");

  const client = await Netns.create(t, "toa-i");
  const server = await Netns.create(t, "toa-i");
  const { bIf } = await link(client, server, { a4: `${CLIENT}/24`, b4: `${SERVER}/24` });
  await client.run("nft", ["-f", "-"], {
    input: "table inet toa_inspect_test {\n chain out {\n  type filter hook output priority 0;\n  tcp flags & rst == rst drop\n }\n}\n",
  });

  const http = server.start(t, "/usr/bin/python3", ["-m", "http.server", String(PORT), "--bind", SERVER], { cwd: dir });
  await waitFor("http.server to listen", async () => (await server.run("ss", ["-Hltn", `sport = :${PORT}`])).includes(String(PORT)));

  // --immediate-mode: no buffering in the kernel ring (packets of its last block would be lost when
  // tcpdump stops); -U: write each packet to the file at once; -s 0: whole packets.
  const dump = server.start(t, "tcpdump", ["-i", bIf, "-n", "--immediate-mode", "-U", "-s", "0", "-w", file, `tcp port ${PORT}`]);
  await waitFor("tcpdump to start listening", () => /listening on/.test(dump.output()));

  const out = await client.run("/usr/bin/python3", ["-c", SCAPY], { timeoutMs: 30_000 });
  assert.match(out, /done/);
  // An ordinary connection by the client kernel: no TOA.
  await client.run("/usr/bin/python3", ["-c", `import urllib.request; urllib.request.urlopen("http://${SERVER}:${PORT}/", timeout=5).read()`]);
  // Stop only once both connections are in the file (it is written packet by packet).
  const bothClosed = async (): Promise<boolean> => {
    const { result } = await inspectFile(file, { kinds: DEFAULT_TOA_KINDS, port: PORT });
    return result.connections.length >= 2 && result.connections.every((c) => c.closed !== "open");
  };
  await waitFor("both connections to be captured", bothClosed).catch(() => undefined);
  await dump.stop();
  await dump.exited;
  await http.stop();
  assert.ok(statSync(file).size > 24, `tcpdump wrote nothing: ${dump.output()}`);

  const { result, error } = await inspectFile(file, { kinds: DEFAULT_TOA_KINDS, port: PORT, trust: parseCidrList("198.51.100.0/24") });
  assert.equal(error, undefined);
  const crafted = result.connections.find((c) => c.client === `${CLIENT}:${SCAPY_SPORT}`);
  assert.ok(crafted, `no connection from the scapy port in ${JSON.stringify(result.connections)}`);
  assert.equal(crafted.verdict, "ok", crafted.reason);
  assert.equal(crafted.server, `${SERVER}:${PORT}`);
  assert.equal(crafted.toa?.packet, "handshake ACK");
  assert.deepEqual([crafted.toa?.kind, crafted.toa?.format, crafted.toa?.address, crafted.toa?.port], [254, "ipv4", "203.0.113.7", 40000]);
  assert.equal(crafted.toa?.source, CLIENT);
  const plain = result.connections.filter((c) => c !== crafted);
  assert.ok(plain.length >= 1, `the kernel's own connection is in the capture:\n${await sh("tcpdump", ["-nr", file]).catch((e: Error) => e.message)}`);
  for (const c of plain) assert.equal(c.verdict, "no-toa", c.reason);

  // Untrusted when the load balancer's prefix is not the one given.
  const strict = await inspectFile(file, { kinds: DEFAULT_TOA_KINDS, port: PORT, trust: parseCidrList("192.0.2.0/24") });
  assert.equal(strict.result.connections.find((c) => c.client === `${CLIENT}:${SCAPY_SPORT}`)?.verdict, "untrusted-source");
});
