/**
 * A client can't choose the address a backend sees. scapy plays a client that puts its own address
 * option (203.0.113.66 / 2001:db8:66::66, port 1111) into its SYN, its handshake ACK, its first data
 * segment, or all three — in every kind a TOA receiver may accept (254, 253, 252, 200, 28, and the
 * listener's own kind) — to a balancer in front of a backend whose receiver accepts all those kinds
 * and trusts the balancer. The backend's server reports the peer accept() gave it: always the real
 * client, through the packet data path (which rewrites the client's own packets: the options are
 * overwritten with NOPs and counted) and through the JS relay (which never forwards them).
 * In proxy-v2 mode the same goes for a PROXY header a client sends itself: in data carried by its
 * SYN (TCP Fast Open; the SYN is dropped) or as its first bytes (ours comes first).
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { requireRoot, uniqueName } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { waitFor } from "../harness/exec.js";
import { requireTool } from "../harness/topology.js";
import { ADDR, clientPy, createTopology, lbStatus, startLb, startNginx, type Topology } from "../../bench/lb/topology.js";
import { run } from "../../src/cli/main.js";
import { unloadReceiver } from "../../src/agent/receiver.js";
import { receiverCounters } from "../../src/agent/stats.js";
import { scaled } from "../harness/time.js";

const T = { timeout: scaled(120_000) };
const PY = "/usr/bin/python3";
const ADMIN = `${ADDR.lb4}:9100`;
const quiet = { out: () => undefined, err: () => undefined };
/** A kind no well-known TOA uses: the listener's own, set with toaKind. */
const OWN_KIND = 251;
const FORGED = { 4: "203.0.113.66", 6: "2001:db8:66::66" } as const;

/** The line server: each line gets "peer=<what accept() said>". */
const SERVER_PY = `
import socket, sys, threading
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port)); s.listen(128)
print("listening", flush=True)
def serve(c, peer):
    f = c.makefile("rb")
    for line in f:
        c.sendall(("peer=%s:%d\\n" % (peer[0], peer[1])).encode())
    c.close()
while True:
    c, peer = s.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
`;

/**
 * Per connection: SYN (with syn options), SYN-ACK, a pure ACK (ack options), one data segment
 * (data options), then wait for the line back and leave with an RST. Options are [kind, hex value].
 */
const SCAPY_PY = `
import json, sys, threading, time
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw
from scapy.sendrecv import AsyncSniffer, send, sr1
from scapy.config import conf
conf.verb = 0
conns = json.loads(sys.argv[1])
got = {c["sport"]: b"" for c in conns}
def collect(p):
    if p.haslayer(TCP) and p[TCP].dport in got and bytes(p[TCP].payload):
        got[p[TCP].dport] += bytes(p[TCP].payload)
ifaces = sorted({(conf.route6.route(c["dst"]) if ":" in c["dst"] else conf.route.route(c["dst"]))[0] for c in conns})
started = threading.Event()
sn = AsyncSniffer(iface=ifaces, prn=collect, store=False, started_callback=started.set)
sn.start()
if not started.wait(5): sys.exit("the sniffer did not start")
opts = lambda l: [(k, bytes.fromhex(v)) for k, v in l]
out = []
for c in conns:
    ip = IPv6(src=c["src"], dst=c["dst"]) if ":" in c["dst"] else IP(src=c["src"], dst=c["dst"])
    seg = lambda flags, seq, ack, o: ip / TCP(sport=c["sport"], dport=c["dport"], flags=flags, seq=seq, ack=ack, window=65535, options=o)
    sa = sr1(seg("S", 1000, 0, [("MSS", 1400)] + opts(c["syn"])), timeout=5)
    if sa is None or (int(sa[TCP].flags) & 0x12) != 0x12:
        out.append({"sport": c["sport"], "error": "no SYN-ACK"}); continue
    send(seg("A", 1001, sa[TCP].seq + 1, opts(c["ack"])))
    time.sleep(0.2)
    send(seg("PA", 1001, sa[TCP].seq + 1, opts(c["data"])) / Raw(b"who\\n"))
    deadline = time.time() + 5
    while time.time() < deadline and not got[c["sport"]].endswith(b"\\n"): time.sleep(0.02)
    send(seg("RA", 1005, sa[TCP].seq + 1, []))
    out.append({"sport": c["sport"], "reply": got[c["sport"]].decode(errors="replace")})
sn.stop()
print(json.dumps(out))
`;

/** The option bytes after kind and length, for a forged address option of `kind` and `family`. */
function forged(kind: number, family: 4 | 6): [number, string] {
  const port = "0457"; // 1111
  const addr = family === 4 ? "cb007142" : "20010db8006600000000000000000066";
  // Alibaba Cloud CDN's kind 28: [ver][address], no port.
  return kind === 28 ? [kind, `01${addr}`] : [kind, port + addr];
}

interface Case {
  name: string;
  family: 4 | 6;
  kind: number;
  where: ("syn" | "ack" | "data")[];
}

const CASES: Case[] = [
  { name: "254 in the SYN", family: 4, kind: 254, where: ["syn"] },
  { name: "253 in the handshake ACK", family: 4, kind: 253, where: ["ack"] },
  { name: "200 in the first data segment", family: 4, kind: 200, where: ["data"] },
  { name: "the listener's own kind in all three", family: 4, kind: OWN_KIND, where: ["syn", "ack", "data"] },
  { name: "28 (CDN) in the ACK", family: 4, kind: 28, where: ["ack"] },
  { name: "254 (IPv6) in the SYN", family: 6, kind: 254, where: ["syn"] },
  { name: "252 (IPv6) in the handshake ACK", family: 6, kind: 252, where: ["ack"] },
  { name: "253 (IPv6) in the first data segment", family: 6, kind: 253, where: ["data"] },
  { name: "254 (IPv6) in all three", family: 6, kind: 254, where: ["syn", "ack", "data"] },
];

async function ready(t: TestContext): Promise<boolean> {
  return (await requireTool(t, PY, ["-c", "import scapy"], "python3-scapy")) && (await requireTool(t, "nft", ["--version"], "nftables"));
}

/** The backend: a receiver that accepts every kind forged here and trusts the balancer; the line server in it. */
async function backend(t: TestContext, topo: Topology): Promise<string> {
  const cg = createTestCgroup(t, "toa-forge-be");
  const pinDir = join("/sys/fs/bpf", uniqueName("toa-forge"));
  t.after(() => unloadReceiver(pinDir));
  const kinds = `254,253,252,${OWN_KIND},200,28`;
  assert.equal(await run(["load", "--cgroup", cg.path, "--pin-dir", pinDir, "--kinds", kinds, "--trust", `${ADDR.lbInside4}/32,${ADDR.lbInside6}/128`], quiet), 0);
  const file = join(topo.dir, "server.py");
  writeFileSync(file, SERVER_PY);
  for (const addr of [ADDR.backend4[0], ADDR.backend6[0]]) {
    const p = topo.backends.start(t, PY, ["-u", file, addr, "7000"], { cgroup: cg.path });
    await waitFor(`server on ${addr}`, () => {
      if (p.child.exitCode !== null) throw new Error(`server exited: ${p.output()}`);
      return p.output().includes("listening");
    });
  }
  return pinDir;
}

async function forge(topo: Topology): Promise<{ sport: number; reply?: string; error?: string }[]> {
  await topo.client.run("nft", ["-f", "-"], {
    input: "table inet toa_scapy {\n chain out {\n  type filter hook output priority 0;\n  tcp sport 41000-41999 tcp flags & rst == rst drop\n }\n}\n",
  });
  const file = join(topo.dir, "forge.py");
  writeFileSync(file, SCAPY_PY);
  const conns = CASES.map((c, i) => {
    const opt = forged(c.kind, c.family);
    return {
      src: c.family === 4 ? ADDR.client4 : ADDR.client6,
      dst: c.family === 4 ? ADDR.lb4 : ADDR.lb6,
      dport: 7000,
      sport: 41000 + i,
      syn: c.where.includes("syn") ? [opt] : [],
      ack: c.where.includes("ack") ? [opt] : [],
      data: c.where.includes("data") ? [opt] : [],
    };
  });
  const out = await topo.client.run(PY, [file, JSON.stringify(conns)], { timeoutMs: 90_000 });
  return JSON.parse(out.trim().split("\n").pop()!) as { sport: number; reply?: string; error?: string }[];
}

function assertRealClients(results: { sport: number; reply?: string; error?: string }[]): void {
  CASES.forEach((c, i) => {
    const r = results[i];
    const client = c.family === 4 ? ADDR.client4 : ADDR.client6;
    const seen = c.family === 4 ? `::ffff:${client}` : client;
    assert.equal(r.error, undefined, `${c.name}: ${r.error}`);
    assert.ok(r.reply?.includes(FORGED[c.family]) === false, `${c.name}: the backend took the forged address: ${r.reply}`);
    assert.match(r.reply ?? "", new RegExp(`^peer=(${client}|${seen.replace(/\./g, "\\.")}):${41000 + i}\\n$`), `${c.name}: the backend saw ${JSON.stringify(r.reply)}, not the client ${client}:${41000 + i}`);
  });
}

const config = (dataPath: string) => `
admin: ${ADMIN}
dataPath: ${dataPath}
listeners:
  - { name: v4, listen: "${ADDR.lb4}:7000", pool: v4, mode: toa, toaKind: ${OWN_KIND} }
  - { name: v6, listen: "[${ADDR.lb6}]:7000", pool: v6, mode: toa }
pools:
  v4: { backends: [ "${ADDR.backend4[0]}:7000" ] }
  v6: { backends: [ "[${ADDR.backend6[0]}]:7000" ] }
`;

test("packet path: a client's own address options (SYN, ACK, data, all three; every TOA kind; IPv4 and IPv6) are removed and counted; the backend sees the real client", T, async (t) => {
  if (!requireRoot(t) || !(await ready(t))) return;
  const topo = await createTopology(t);
  const pinDir = await backend(t, topo);
  const file = join(topo.dir, "lb.yaml");
  writeFileSync(file, config("packet"));
  await startLb(t, topo, ["--config", file], [ADMIN]);
  const results = await forge(topo);
  t.diagnostic(JSON.stringify(results));
  assertRealClients(results);
  const s = await lbStatus(topo, ADMIN);
  const segments = CASES.reduce((n, c) => n + c.where.length, 0);
  assert.equal(s.packet!.counters.client_toa_removed, segments, `every forged segment counted once: ${JSON.stringify(s.packet!.counters)}`);
  const c = receiverCounters(pinDir)!;
  assert.equal(c.syn_recv_sock_toa, CASES.length, `the backend took our TOA, one per connection: ${JSON.stringify(c)}`);
  assert.equal(c.untrusted, 0);
  const metrics = await topo.balancer.run("curl", ["-sS", `http://${ADMIN}/metrics`]);
  assert.match(metrics, new RegExp(`^toa_lb_packet_events_total\\{event="client_toa_removed"\\} ${segments}$`, "m"));
});

test("JS relay: the same forged options never reach the backend (the balancer's kernel ends the client's TCP)", T, async (t) => {
  if (!requireRoot(t) || !(await ready(t))) return;
  const topo = await createTopology(t);
  await backend(t, topo);
  const lbCg = createTestCgroup(t, "toa-forge-lb");
  const file = join(topo.dir, "lb.yaml");
  writeFileSync(file, config("js"));
  await startLb(t, topo, ["--config", file, "--cgroup", lbCg.path], [`${ADDR.lb4}:7000`], { cgroup: lbCg.path });
  assertRealClients(await forge(topo));
});

/** A PROXY v2 header for 192.0.2.99:4242 → VIP:80, as a client might send it itself (hex). */
const FORGED_PROXY_V2 = "0d0a0d0a000d0a515549540a" + "21" + "11" + "000c" + "c0000263" + "c6336401" + "1092" + "0050";

test("packet path, proxy-v2: a SYN carrying data (a forged PROXY header) is dropped and counted; a forged header sent as the first bytes comes after ours: nginx's $proxy_protocol_addr is the client", T, async (t) => {
  if (!requireRoot(t) || !(await ready(t))) return;
  const topo = await createTopology(t);
  const nginx = await startNginx(t, topo, [{ index: 0, proxyProtocol: true }]);
  const file = join(topo.dir, "lb.yaml");
  writeFileSync(
    file,
    `admin: ${ADMIN}
dataPath: packet
listeners:
  - { name: v4, listen: "${ADDR.lb4}:80", pool: v4, mode: proxy-v2 }
pools:
  v4: { backends: [ "${ADDR.backend4[0]}:80" ] }
`,
  );
  await startLb(t, topo, ["--config", file], [ADMIN]);
  await topo.client.run("nft", ["-f", "-"], {
    input: "table inet toa_scapy {\n chain out {\n  type filter hook output priority 0;\n  tcp sport 42000-42999 tcp flags & rst == rst drop\n }\n}\n",
  });
  // A SYN with data (what a Fast Open client sends once it has a cookie): no SYN-ACK comes back.
  const syn = await clientPy<{ answered: boolean }>(topo, `
import json
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw
from scapy.config import conf
from scapy.sendrecv import sr1
conf.verb = 0
a = sr1(IP(src="${ADDR.client4}", dst="${ADDR.lb4}") / TCP(sport=42001, dport=80, flags="S", seq=5000, options=[("MSS", 1400)]) / Raw(bytes.fromhex("${FORGED_PROXY_V2}") + b"GET / HTTP/1.0\\r\\n\\r\\n"), timeout=3)
print(json.dumps({"answered": a is not None}))
`);
  assert.equal(syn.answered, false, "the SYN carrying data was dropped");
  // The forged header as the client's first bytes: the backend parses ours first.
  const forged = await clientPy<string>(topo, `
import json, socket
c = socket.create_connection(("${ADDR.lb4}", 80), timeout=5)
c.sendall(bytes.fromhex("${FORGED_PROXY_V2}") + b"GET / HTTP/1.0\\r\\n\\r\\n")
out = b""
while True:
    d = c.recv(4096)
    if not d: break
    out += d
print(json.dumps(out.decode(errors="replace").split("\\r\\n")[0]))
`);
  t.diagnostic(`nginx answered the forged-header request with: ${forged}`);
  const lines = (await waitFor("nginx's log", () => (nginx.lines().length >= 1 ? nginx.lines() : undefined)))!;
  assert.deepEqual(lines.map((l) => l.split(" ")[1]), [ADDR.client4], `nginx's $proxy_protocol_addr: ${lines.join(" | ")}`);
  const s = await lbStatus(topo, ADMIN);
  assert.equal(s.packet!.counters.syn_data_dropped, 1, JSON.stringify(s.packet!.counters));
});
