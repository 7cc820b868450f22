/**
 * Edge cases of the packet data path (`dataPath: packet`, src/programs/nat/ + src/lb/packet/):
 * IPv6 with full checksums, the TOA in a handshake-completing segment that carries data (and the
 * MTU limit on it), SYN retransmission, a client reusing its port, reloads under traffic, the idle
 * and connect timeouts, RSTs, and checksums the balancer's egress device computes itself. Same
 * three-namespace topology as lb-packet.test.ts (bench/lb/topology.ts); scapy plays the client where
 * a kernel wouldn't send what a case needs.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { requireRoot, uniqueName } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { waitFor } from "../harness/exec.js";
import { requireTool } from "../harness/topology.js";
import { ADDR, clientPy, createTopology, curl, ethtool, lbStatus, startLb, startNginx, tcpCsumErrors, writeConfig, type Topology } from "../../bench/lb/topology.js";
import { run } from "../../src/cli/main.js";
import { receiverCounters } from "../../src/agent/stats.js";
import { unloadReceiver } from "../../src/agent/receiver.js";
import type { StatusSnapshot } from "../../src/lb/status.js";
import { scaled, TIME_FACTOR } from "../harness/time.js";

const PY = "/usr/bin/python3";
const ADMIN = `${ADDR.lb4}:9100`;
const quiet = { out: () => undefined, err: () => undefined };
const T = { timeout: scaled(90_000) };

const status = (topo: Topology): Promise<StatusSnapshot> => lbStatus(topo, ADMIN);

/** `toa load` on a fresh cgroup for the backends' servers; unloaded at the end. */
async function backendReceiver(t: TestContext, name: string): Promise<{ cgroup: string; pinDir: string }> {
  const cg = createTestCgroup(t, `toa-pe-${name}`);
  const pinDir = join("/sys/fs/bpf", uniqueName(`toa-pe${name}`));
  t.after(() => unloadReceiver(pinDir));
  assert.equal(await run(["load", "--cgroup", cg.path, "--pin-dir", pinDir], quiet), 0);
  return { cgroup: cg.path, pinDir };
}

/**
 * A line server: per connection it notes the peer accept() returned ("accepted <peer>" on stdout),
 * greets with "hello <peer>" when asked to, then answers each line:
 *   "rst"     close with an RST (SO_LINGER 0)      "bye"   close first (a FIN from the server)
 *   "big N"   N bytes of "y" and a newline          else    "peer=<peer> len=<line length + 1>"
 */
const SERVER_PY = `
import socket, struct, sys, threading
addr, port, greet = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "greet"
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port)); s.listen(128)
print("listening", flush=True)
def serve(c, peer):
    who = "%s:%d" % (peer[0], peer[1])
    print("accepted", who, flush=True)
    try:
        if greet: c.sendall(("hello %s\\n" % who).encode())
        buf = b""
        while True:
            d = c.recv(65536)
            if not d: break
            buf += d
            while b"\\n" in buf:
                line, buf = buf.split(b"\\n", 1)
                if line == b"rst":
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close(); return
                if line == b"bye":
                    c.close(); return
                if line.startswith(b"big "):
                    c.sendall(b"y" * int(line[4:]) + b"\\n"); continue
                c.sendall(("peer=%s len=%d\\n" % (who, len(line) + 1)).encode())
    except OSError as e:
        print("error", who, e, flush=True)
    c.close()
while True:
    c, peer = s.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
`;

/** Start SERVER_PY in the backends namespace (in `cgroup` when given) and wait until it listens. */
async function startServer(t: TestContext, topo: Topology, addr: string, port: number, opts: { greet?: boolean; cgroup?: string } = {}) {
  const file = join(topo.dir, "server.py");
  writeFileSync(file, SERVER_PY);
  const p = topo.backends.start(t, PY, ["-u", file, addr, String(port), opts.greet ? "greet" : "quiet"], { cgroup: opts.cgroup });
  await waitFor(`server on ${addr}:${port}`, () => {
    if (p.child.exitCode !== null) throw new Error(`server exited: ${p.output()}`);
    return p.output().includes("listening");
  });
  return { proc: p, accepted: () => p.output().split("\n").filter((l) => l.startsWith("accepted ")).map((l) => l.slice(9)) };
}

/** Run a python program in the client namespace; its last stdout line is JSON. */
/**
 * Crafted connections with scapy from the client namespace (the client's kernel RSTs are dropped by
 * nft: it has no socket for them). Per connection: the SYN `syns` times (the copies right after the
 * first, before or while the SYN-ACK comes), then ONE segment with ACK and the data (no pure ACK
 * before it), then wait for a line back and leave with an RST.
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
got = {c["sport"]: {} for c in conns}
synacks = {c["sport"]: 0 for c in conns}
def collect(p):
    if not p.haslayer(TCP) or p[TCP].dport not in got: return
    t = p[TCP]
    if (int(t.flags) & 0x12) == 0x12: synacks[t.dport] += 1
    pl = bytes(t.payload)
    if pl: got[t.dport][t.seq] = pl
def text(sport):
    out, nxt = b"", None
    for seq in sorted(got[sport]):
        if nxt is None or seq == nxt:
            out += got[sport][seq]; nxt = seq + len(got[sport][seq])
    return out
ifaces = sorted({(conf.route6.route(c["dst"]) if ":" in c["dst"] else conf.route.route(c["dst"]))[0] for c in conns})
started = threading.Event()
sn = AsyncSniffer(iface=ifaces, prn=collect, store=False, started_callback=started.set)
sn.start()
if not started.wait(5): sys.exit("the sniffer did not start")
out = []
for c in conns:
    ip = IPv6(src=c["src"], dst=c["dst"]) if ":" in c["dst"] else IP(src=c["src"], dst=c["dst"])
    seg = lambda flags, seq, ack, opts=[]: ip / TCP(sport=c["sport"], dport=c["dport"], flags=flags, seq=seq, ack=ack, window=65535, options=opts)
    syn = seg("S", 1000, 0, [("MSS", 1400)])
    for i in range(c.get("syns", 1) - 1): send(syn)
    sa = sr1(syn, timeout=5)
    if sa is None or (int(sa[TCP].flags) & 0x12) != 0x12:
        out.append({"sport": c["sport"], "error": "no SYN-ACK"}); continue
    time.sleep(0.3)
    data = c["data"].encode()
    send(seg("PA", 1001, sa[TCP].seq + 1) / Raw(data))
    deadline = time.time() + 5
    while time.time() < deadline and not text(c["sport"]).endswith(b"\\n"): time.sleep(0.02)
    send(seg("RA", 1001 + len(data), sa[TCP].seq + 1))
    out.append({"sport": c["sport"], "reply": text(c["sport"]).decode(errors="replace"), "synacks": synacks[c["sport"]]})
sn.stop()
print(json.dumps(out))
`;

interface Crafted {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  data: string;
  syns?: number;
}
interface CraftedReply {
  sport: number;
  reply?: string;
  synacks?: number;
  error?: string;
}

async function scapyReady(t: TestContext): Promise<boolean> {
  return (await requireTool(t, PY, ["-c", "import scapy"], "python3-scapy")) && (await requireTool(t, "nft", ["--version"], "nftables"));
}

async function crafted(topo: Topology, conns: Crafted[]): Promise<CraftedReply[]> {
  await topo.client.run("nft", ["-f", "-"], {
    input: "table inet toa_scapy {\n chain out {\n  type filter hook output priority 0;\n  tcp sport 40000-40999 tcp flags & rst == rst drop\n }\n}\n",
  });
  const file = join(topo.dir, "scapy-client.py");
  writeFileSync(file, SCAPY_PY);
  const out = await topo.client.run(PY, [file, JSON.stringify(conns)], { timeoutMs: 60_000 });
  return JSON.parse(out.trim().split("\n").pop()!) as CraftedReply[];
}

/** A line of `n` bytes, the newline included. */
/** n bytes ending in "\n", the rest cycling through letters: a payload moved wrong shows. */
const line = (n: number) => Array.from({ length: n - 1 }, (_, i) => String.fromCharCode(97 + (i % 26))).join("") + "\n";

test("packet path, IPv6 with full checksums (offload off): the 20-byte TOA and the NAT checksums pass the backend's kernel; the server knows the client at accept()", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  await ethtool(topo.client, "rx", "off", "tx", "off");
  await ethtool(topo.balancer, "tx", "off");
  await ethtool(topo.backends, "rx", "off", "tx", "off");
  const rcv = await backendReceiver(t, "v6");
  await startServer(t, topo, ADDR.backend6[0], 25, { greet: true, cgroup: rcv.cgroup });
  await startLb(t, topo, ["--listen", `[${ADDR.lb6}]:25`, "--backend", `[${ADDR.backend6[0]}]:25`, "--data-path", "packet"], []);
  const csumBefore = { backends: await tcpCsumErrors(topo.backends), client: await tcpCsumErrors(topo.client) };
  const out = await clientPy<{ greeting: string; reply: string; big: number; port: number }[]>(topo, `
import json, socket
def readline(f):
    l = f.readline()
    return l.decode().rstrip("\\n")
res = []
for i in range(3):
    c = socket.create_connection(("${ADDR.lb6}", 25), timeout=5)
    f = c.makefile("rb")
    greeting = readline(f)
    c.sendall(b"x" * 3000 + b"\\n")
    reply = readline(f)
    c.sendall(b"big 300000\\n")
    big = len(readline(f))
    res.append({"greeting": greeting, "reply": reply, "big": big, "port": c.getsockname()[1]})
    c.close()
print(json.dumps(res))
`);
  assert.equal(out.length, 3);
  for (const r of out) {
    assert.equal(r.greeting, `hello ${ADDR.client6}:${r.port}`, JSON.stringify(out));
    assert.equal(r.reply, `peer=${ADDR.client6}:${r.port} len=3001`, JSON.stringify(out));
    assert.equal(r.big, 300000, "the backend's 300 kB came through the NAT to the client's verifying kernel");
  }
  assert.equal(receiverCounters(rcv.pinDir)!.found_in_ack, 3, JSON.stringify(receiverCounters(rcv.pinDir)));
  assert.equal(await tcpCsumErrors(topo.backends), csumBefore.backends, "no segment reached the backend with a bad checksum");
  assert.equal(await tcpCsumErrors(topo.client), csumBefore.client, "no segment reached the client with a bad checksum");
});

test("packet path: the segment completing the handshake carries data: the TOA goes into it when the result fits packet.mtu, else it is skipped (toa_skipped_mtu) and the data still arrives", T, async (t) => {
  if (!requireRoot(t) || !(await scapyReady(t))) return;
  const topo = await createTopology(t);
  // The backend's kernel verifies every checksum: the payload moved up to make room for the TOA
  // must arrive byte for byte.
  await ethtool(topo.backends, "rx", "off", "tx", "off");
  const csumBefore = await tcpCsumErrors(topo.backends);
  const rcv = await backendReceiver(t, "data");
  await startServer(t, topo, ADDR.backend4[0], 7000, { cgroup: rcv.cgroup });
  await startServer(t, topo, ADDR.backend6[0], 7000, { cgroup: rcv.cgroup });
  const config = writeConfig(topo, "lb-mtu.yaml", `
admin: ${ADMIN}
dataPath: packet
packet: { mtu: 576 }
listeners:
  - { name: v4, listen: "${ADDR.lb4}:7000", pool: v4 }
  - { name: v6, listen: "[${ADDR.lb6}]:7000", pool: v6 }
pools:
  v4: { backends: [ "${ADDR.backend4[0]}:7000" ] }
  v6: { backends: [ "[${ADDR.backend6[0]}]:7000" ] }
`);
  await startLb(t, topo, ["--config", config], [ADMIN]);
  const v4 = { src: ADDR.client4, dst: ADDR.lb4, dport: 7000 };
  const v6 = { src: ADDR.client6, dst: ADDR.lb6, dport: 7000 };
  // IPv4: 20 + 20 + payload + 8 <= 576 up to 528 bytes; IPv6: 40 + 20 + payload + 20 <= 576 up to 496.
  const cases = [
    { ...v4, sport: 40001, data: line(6), toa: true },
    { ...v4, sport: 40002, data: line(528), toa: true },
    { ...v4, sport: 40003, data: line(529), toa: false },
    { ...v4, sport: 40004, data: line(1200), toa: false },
    { ...v6, sport: 40011, data: line(6), toa: true },
    { ...v6, sport: 40012, data: line(496), toa: true },
    { ...v6, sport: 40013, data: line(497), toa: false },
  ];
  const replies = await crafted(topo, cases);
  for (const [i, c] of cases.entries()) {
    const r = replies[i];
    assert.equal(r.error, undefined, JSON.stringify(r));
    const v6c = c.dst === ADDR.lb6;
    const peer = c.toa ? `${v6c ? ADDR.client6 : ADDR.client4}:${c.sport}` : `${v6c ? ADDR.lbInside6 : ADDR.lbInside4}:\\d+`;
    assert.match(r.reply ?? "", new RegExp(`^peer=${peer.replace(/\./g, "\\.")} len=${c.data.length}\\n$`), `${c.sport} (${c.data.length} bytes): ${JSON.stringify(r)}`);
  }
  const s = await status(topo);
  t.diagnostic(`packet counters ${JSON.stringify(s.packet?.counters)}; receiver ${JSON.stringify(receiverCounters(rcv.pinDir))}`);
  assert.equal(s.packet!.counters.flows_created, cases.length);
  assert.equal(s.toa!.written, cases.filter((c) => c.toa).length, JSON.stringify(s.toa));
  assert.equal(s.packet!.counters.toa_skipped_mtu, cases.filter((c) => !c.toa).length, JSON.stringify(s.packet!.counters));
  assert.equal(s.packet!.counters.toa_failed, 0);
  const rc = receiverCounters(rcv.pinDir)!;
  assert.equal(rc.syn_recv_sock_toa, cases.filter((c) => c.toa).length, JSON.stringify(rc));
  assert.equal(await tcpCsumErrors(topo.backends), csumBefore, "no segment reached the backend with a bad checksum");
});

test("packet path: a retransmitted SYN follows the connection it opened (one flow, one backend connection, the TOA still written)", T, async (t) => {
  if (!requireRoot(t) || !(await scapyReady(t))) return;
  const topo = await createTopology(t);
  const rcv = await backendReceiver(t, "syn");
  const servers = [];
  for (const b of ADDR.backend4) servers.push(await startServer(t, topo, b, 7000, { cgroup: rcv.cgroup }));
  await startLb(t, topo, ["--listen", `${ADDR.lb4}:7000`, ...ADDR.backend4.flatMap((b) => ["--backend", `${b}:7000`]), "--data-path", "packet", "--admin", ADMIN], [ADMIN]);
  // Round robin over three backends: a copy of the SYN taken for a new connection would go elsewhere.
  const replies = await crafted(topo, [
    { src: ADDR.client4, dst: ADDR.lb4, dport: 7000, sport: 40021, data: line(10), syns: 2 },
    { src: ADDR.client4, dst: ADDR.lb4, dport: 7000, sport: 40022, data: line(10), syns: 3 },
  ]);
  for (const r of replies) {
    assert.equal(r.error, undefined, JSON.stringify(r));
    assert.equal(r.reply, `peer=${ADDR.client4}:${r.sport} len=10\n`, JSON.stringify(r));
    assert.ok(r.synacks! >= 2, `the backend answered the copies too: ${JSON.stringify(r)}`);
  }
  const s = await status(topo);
  assert.equal(s.packet!.counters.flows_created, 2, JSON.stringify(s.packet!.counters));
  const accepted = servers.flatMap((x) => x.accepted());
  assert.equal(accepted.length, 2, accepted.join(", "));
  assert.deepEqual(s.pools[0].backends.map((b) => b.connections), [1, 1, 0]);
});

test("packet path: a client reusing its port right after the last connection ended (its FIN first, the server's FIN first, the server's RST, its own RST) gets a working connection with its TOA", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const rcv = await backendReceiver(t, "reuse");
  await startServer(t, topo, ADDR.backend4[0], 7000, { cgroup: rcv.cgroup });
  // closedTimeout long: the finished connection is still in the tables when the client comes back.
  const config = writeConfig(topo, "lb-reuse.yaml", `
admin: ${ADMIN}
dataPath: packet
packet: { closedTimeout: 30s }
listeners:
  - { name: web, listen: "${ADDR.lb4}:7000", pool: web }
pools:
  web: { backends: [ "${ADDR.backend4[0]}:7000" ] }
`);
  await startLb(t, topo, ["--config", config], [ADMIN]);
  const out = await clientPy<Record<string, string[]>>(topo, `
import errno, json, socket, struct, time
def connect(port):
    # The same local port again; with our FIN first the old connection sits in TIME_WAIT, which
    # tcp_tw_reuse lets connect() take over once a second has passed.
    deadline = time.time() + 5
    while True:
        c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind(("${ADDR.client4}", port)); c.settimeout(5)
        try:
            c.connect(("${ADDR.lb4}", 7000)); return c
        except OSError as e:
            c.close()
            if e.errno != errno.EADDRNOTAVAIL or time.time() > deadline: raise
            time.sleep(0.05)
def ask(c, msg):
    c.sendall(msg.encode() + b"\\n")
    buf = b""
    while not buf.endswith(b"\\n"):
        d = c.recv(1000)
        if not d: return "EOF"
        buf += d
    return buf.decode().strip()
def ends(c, how):
    if how == "client-fin":
        c.close()
    elif how == "server-fin":
        c.sendall(b"bye\\n"); assert c.recv(10) == b""; c.close(); time.sleep(0.1)
    elif how == "server-rst":
        c.sendall(b"rst\\n")
        try:
            c.recv(10)
        except ConnectionResetError:
            pass
        c.close()
    elif how == "client-rst":
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
res = {}
for port, how in ((45001, "client-fin"), (45002, "server-fin"), (45003, "server-rst"), (45004, "client-rst")):
    c = connect(port); first = ask(c, "one"); ends(c, how)
    c = connect(port); second = ask(c, "two")
    time.sleep(2.5)  # a few sweeps: the new connection must not be taken for the old one
    try:
        third = ask(c, "three")
    except OSError as e:
        third = repr(e)
    c.close()
    res[how] = [first, second, third]
print(json.dumps(res))
`, [], 60_000);
  t.diagnostic(JSON.stringify(out));
  for (const [how, port] of [["client-fin", 45001], ["server-fin", 45002], ["server-rst", 45003], ["client-rst", 45004]] as const) {
    const want = `peer=${ADDR.client4}:${port} len=`;
    assert.deepEqual(out[how], [`${want}4`, `${want}4`, `${want}6`], `${how}: ${JSON.stringify(out[how])}`);
  }
  const s = await status(topo);
  assert.equal(s.packet!.counters.flows_created, 8, JSON.stringify(s.packet!.counters));
  // closedTimeout 30s: each old connection was still in the tables when its port came back.
  assert.equal(s.packet!.counters.flows_replaced, 4, JSON.stringify(s.packet!.counters));
});

/**
 * New connections from `workers` threads for `seconds`: each GET / over its own connection, closed
 * by the client once the answer is in. (With the server closing first, its TIME_WAIT sits on the
 * balancer's local ports, which the program reuses at random; a new SYN meeting one is now and then
 * refused by PAWS, the client's timestamps being offset per connection, and the client retries after
 * a second or two: a property of the port choice, not of reloads, so kept out of this test.)
 */
const LOAD_PY = `
import json, socket, sys, threading, time
import os
host, port, seconds, workers, stop = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ok, errors, lock = [], [], threading.Lock()
def work():
    end = time.time() + seconds
    while time.time() < end and not os.path.exists(stop):
        t0 = time.time()
        try:
            c = socket.create_connection((host, port), timeout=3)
            c.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            buf = b""
            while b"\\r\\n\\r\\n" not in buf or len(buf.split(b"\\r\\n\\r\\n", 1)[1]) < int(buf.lower().split(b"content-length:")[1].split(b"\\r\\n")[0]):
                d = c.recv(4096)
                if not d: raise Exception("closed early: %r" % buf)
                buf += d
            c.close()
            body = buf.split(b"\\r\\n\\r\\n", 1)[1].decode()
            if not body.startswith("backend "): raise Exception("bad answer %r" % buf)
            with lock:
                ok.append([t0, time.time(), int(body.split()[1])])
                if len(ok) == 30: print("warmed up", flush=True)
        except Exception as e:
            with lock: errors.append([t0, repr(e)])
ts = [threading.Thread(target=work) for _ in range(workers)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({"ok": ok, "errors": errors}))
`;

test("packet path: reloads under traffic: a new backend and new weights take effect with no failed request; a removed backend's open connection keeps working", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  await startNginx(t, topo, [{ index: 0 }, { index: 1 }, { index: 2 }], "n012");
  const yaml = (backends: string) => `
admin: ${ADMIN}
dataPath: packet
listeners:
  - { name: web, listen: "${ADDR.lb4}:80", pool: web, mode: none }
pools:
  web:
    scheduler: weighted-round-robin
    backends: [${backends}]
`;
  const b = (i: number, weight: number) => `{ address: "${ADDR.backend4[i]}:80", weight: ${weight} }`;
  const config = writeConfig(topo, "lb-reload.yaml", yaml(`${b(0, 1)}, ${b(1, 1)}`));
  const lb = await startLb(t, topo, ["--config", config], [ADMIN]);
  const reloaded = (n: number) => waitFor(`reload ${n}`, async () => (await status(topo)).reloads === n, 10_000);

  const file = join(topo.dir, "load.py");
  writeFileSync(file, LOAD_PY);
  // Until told to stop (a file): requests must go on long enough after the reload, however long that takes here.
  const stopFile = join(topo.dir, "stop-load");
  const load = topo.client.start(t, PY, [file, ADDR.lb4, "80", String(120 * TIME_FACTOR), "4", stopFile]);
  // Enough requests before the reload to see the old tables at work (python starts slowly under emulation).
  await waitFor("30 requests before the reload", () => load.output().includes("warmed up"), 15_000);
  writeFileSync(config, yaml(`${b(0, 1)}, ${b(1, 3)}, ${b(2, 2)}`));
  const hupAt = Date.now() / 1000;
  process.kill(lb.proc.pid, "SIGHUP");
  await waitFor("reload 1", () => lb.proc.output().includes("reloaded"), 10_000, 5);
  const reloadAt = Date.now() / 1000; // applied by now: requests started later see the new tables
  await new Promise((r) => setTimeout(r, scaled(1500)));
  writeFileSync(stopFile, "");
  await waitFor("the load to finish", () => load.child.exitCode !== null, 15_000);
  const res = JSON.parse(load.output().trim().split("\n").pop()!) as { ok: [number, number, number][]; errors: [number, string][] };
  // Before: requests done before the SIGHUP; after: requests begun once the reload was applied.
  const count = (pick: (start: number, end: number) => boolean) => {
    const c = [0, 0, 0];
    for (const [start, end, backend] of res.ok) if (pick(start, end)) c[backend]++;
    return c;
  };
  const before = count((_, end) => end < hupAt);
  const after = count((start) => start >= reloadAt);
  // A lost SYN costs a 1 s retransmission; anything slower than this is one (emulation slows the rest).
  const slowAfter = Math.min(0.5 * TIME_FACTOR, 0.95);
  const slow = res.ok.filter(([start, end]) => end - start > slowAfter).length;
  t.diagnostic(`${res.ok.length} requests, ${res.errors.length} failed; before the reload ${before}, after ${after}; reload took ${Math.round((reloadAt - hupAt) * 1000)} ms; ${slow} requests took over 0.5 s`);
  assert.deepEqual(res.errors.map(([at, e]) => [+(at - hupAt).toFixed(3), e]), [], "no request failed across the reload (seconds from the SIGHUP)");
  assert.equal(slow, 0, "no SYN was lost across the reload (a retransmitted one takes a second)");
  assert.ok(before[0] > 10 && before[2] === 0, `before: ${before}`);
  assert.ok(after[2] > 50, `the new backend takes connections after the reload: ${after}`);
  // Weights 1:3:2 (256 slots, a round-robin cursor the CPUs share without locking): shares of 1/6,
  // 3/6, 2/6 within 3 %.
  const n = after[0] + after[1] + after[2];
  for (const [i, w] of [1, 3, 2].entries()) assert.ok(Math.abs(after[i] - (n * w) / 6) <= 0.03 * n, `weights 1:3:2 after the reload: ${after}`);

  // A long-lived connection, then a reload that removes its backend.
  const held = topo.client.start(t, PY, ["-u", "-c", `
import socket, sys
c = socket.create_connection(("${ADDR.lb4}", 80), timeout=5)
f = c.makefile("rb")
def get():
    c.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    length = 0
    while True:
        h = f.readline()
        if h in (b"\\r\\n", b""): break
        if h.lower().startswith(b"content-length:"): length = int(h.split(b":")[1])
    return f.read(length).decode().split(" remote")[0]
print("first", get(), flush=True)
sys.stdin.readline()
print("second", get(), flush=True)
`], { stdio: ["pipe", "pipe", "pipe"] });
  const first = await waitFor("first answer", () => /first backend (\d)/.exec(held.output())?.[1]);
  const gone = Number(first);
  writeFileSync(config, yaml([0, 1, 2].filter((i) => i !== gone).map((i) => b(i, 1)).join(", ")));
  process.kill(lb.proc.pid, "SIGHUP");
  await reloaded(2);
  await new Promise((r) => setTimeout(r, 2500)); // sweeps run meanwhile
  const s = await status(topo);
  assert.deepEqual(s.pools[0].backends.map((x) => x.id).sort(), [0, 1, 2].filter((i) => i !== gone).map((i) => `${ADDR.backend4[i]}:80`));
  assert.equal(s.packet!.active, 1, "the held connection is still in the tables");
  held.child.stdin!.write("go\n");
  await waitFor("second answer on the same connection", () => held.output().includes("second"), 5000);
  assert.match(held.output(), new RegExp(`second backend ${gone}\\b`), held.output());
  for (let i = 0; i < 6; i++) assert.doesNotMatch(await curl(topo, `http://${ADDR.lb4}/`), new RegExp(`^backend ${gone} `));
});

test("packet path: timeouts.idle: an idle connection's entries are swept, and the client is reset rather than left hanging", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  await startServer(t, topo, ADDR.backend4[0], 7000);
  // 1 s; under emulation long enough that the status page is read before the sweep empties the tables.
  const IDLE_S = TIME_FACTOR > 1 ? 2 * TIME_FACTOR : 1;
  const config = writeConfig(topo, "lb-idle.yaml", `
admin: ${ADMIN}
dataPath: packet
timeouts: { idle: ${IDLE_S}s }
listeners:
  - { name: web, listen: "${ADDR.lb4}:7000", pool: web, mode: none }
pools:
  web: { backends: [ "${ADDR.backend4[0]}:7000" ] }
`);
  await startLb(t, topo, ["--config", config], [ADMIN]);
  const client = topo.client.start(t, PY, ["-u", "-c", `
import socket, sys, time
c = socket.create_connection(("${ADDR.lb4}", 7000), timeout=5)
c.sendall(b"one\\n"); print("got", c.recv(100).decode().strip(), flush=True)
sys.stdin.readline()
t0 = time.time()
try:
    c.sendall(b"two\\n"); print("got", c.recv(100).decode().strip(), flush=True)
except OSError as e:
    print("error %s after %.1f s" % (type(e).__name__, time.time() - t0), flush=True)
`], { stdio: ["pipe", "pipe", "pipe"] });
  await waitFor("first answer", () => client.output().includes("got peer="));
  const t0 = Date.now();
  await waitFor("the entries to be in the tables", async () => (await status(topo)).packet!.entries === 2, 3000);
  await waitFor("the idle sweep", async () => (await status(topo)).packet!.entries === 0, IDLE_S * 1000 + 4000);
  const idleFor = Date.now() - t0;
  const s = await status(topo);
  assert.equal(s.packet!.removed.idle, 1, JSON.stringify(s.packet!.removed));
  assert.ok(idleFor < IDLE_S * 1000 + scaled(3000), `swept ${idleFor} ms after the last packet (idle ${IDLE_S} s)`);
  client.child.stdin!.write("go\n");
  await waitFor("the client to learn", () => /error|got (?!peer=.*len=4)/.test(client.output().split("\n").slice(1).join("\n")), 5000);
  // Reset at once (an RST for the unknown flow), not after the client's 5 s timeout.
  const reset = /error ConnectionResetError after (\d+\.\d) s/.exec(client.output());
  assert.ok(reset && Number(reset[1]) < Math.min(TIME_FACTOR, 4), client.output());
});

test("packet path: a flow table 80% full is warned on the status page, /status.json and /metrics; the warning goes once connections close", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  await startServer(t, topo, ADDR.backend4[0], 7000);
  // 16 connections and 16 still opening = 64 entries; 26 open = 52 entries (81%).
  const config = writeConfig(topo, "lb-capacity.yaml", `
admin: ${ADMIN}
dataPath: packet
packet: { maxConnections: 16, maxHalfOpen: 16, closedTimeout: 1s }
listeners:
  - { name: web, listen: "${ADDR.lb4}:7000", pool: web, mode: none }
pools:
  web: { backends: [ "${ADDR.backend4[0]}:7000" ] }
`);
  await startLb(t, topo, ["--config", config], [ADMIN]);
  const clients = topo.client.start(t, PY, ["-u", "-c", `
import socket, sys
cs = [socket.create_connection(("${ADDR.lb4}", 7000), timeout=5) for _ in range(26)]
for c in cs:
    c.sendall(b"x\\n"); c.recv(100)
print("open", flush=True)
sys.stdin.readline()
for c in cs: c.close()
print("closed", flush=True)
`], { stdio: ["pipe", "pipe", "pipe"] });
  await waitFor("26 connections open", () => {
    if (clients.child.exitCode !== null) throw new Error(`client exited: ${clients.output()}`);
    return clients.output().includes("open");
  }, 10_000);
  const full = await waitFor("the warning", async () => {
    const s = await status(topo);
    return s.packet!.warnings.some((w) => w.includes("nat_flows")) ? s : undefined;
  }, 5000);
  assert.equal(full!.packet!.entries, 52);
  assert.ok(full!.packet!.warnings.some((w) => /nat_flows is 81% full \(52 of 64 entries.*new connections are refused .*raise packet\.maxConnections/.test(w)), full!.packet!.warnings.join(" | "));
  const metrics = await topo.balancer.run("curl", ["-sS", `http://${ADMIN}/metrics`]);
  assert.match(metrics, /^toa_lb_packet_table_capacity 64$/m);
  assert.match(metrics, /^toa_lb_packet_table_entries 52$/m);
  clients.child.stdin!.write("go\n");
  await waitFor("connections closed", () => clients.output().includes("closed"), 5000);
  const after = await waitFor("the warning to go", async () => {
    const s = await status(topo);
    return s.packet!.entries === 0 ? s : undefined;
  }, 6000);
  assert.deepEqual(after!.packet!.warnings.filter((w) => w.includes("nat_flows")), []);
});

test("packet path: every sourceAddress serves every backend with the whole port range (addresses × ports connections per backend), then SYNs are refused and counted; IPv4 and IPv6", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  // A second local address of each family on the balancer's device towards the backends.
  const second = { 4: "203.0.113.2", 6: "2001:db8:2::2" };
  const dev = (await topo.balancer.run("ip", ["-o", "-4", "addr", "show"])).split("\n").find((l) => l.includes(` ${ADDR.lbInside4}/`))!.split(/\s+/)[1];
  await topo.balancer.run("ip", ["addr", "add", `${second[4]}/24`, "dev", dev]);
  await topo.balancer.run("ip", ["-6", "addr", "add", `${second[6]}/64`, "dev", dev, "nodad"]);
  await startServer(t, topo, ADDR.backend4[0], 7000);
  await startServer(t, topo, ADDR.backend6[0], 7000);
  const config = writeConfig(topo, "lb-locals.yaml", `
admin: ${ADMIN}
dataPath: packet
listeners:
  - { name: web4, listen: "${ADDR.lb4}:7000", pool: p4, mode: none }
  - { name: web6, listen: "[${ADDR.lb6}]:7000", pool: p6, mode: none }
pools:
  p4: { backends: [ "${ADDR.backend4[0]}:7000" ], sourceAddresses: [ "${ADDR.lbInside4}", "${second[4]}" ], sourcePorts: 20000-20001 }
  p6: { backends: [ "[${ADDR.backend6[0]}]:7000" ], sourceAddresses: [ "${ADDR.lbInside6}", "${second[6]}" ], sourcePorts: 20000-20001 }
`);
  await startLb(t, topo, ["--config", config], [ADMIN]);
  const out = await clientPy<Record<string, { peers: string[]; fifth: string }>>(topo, `
import json, socket, time
res = {}
for fam, host in (("4", "${ADDR.lb4}"), ("6", "${ADDR.lb6}")):
    cs, peers = [], []
    for _ in range(4):
        c = socket.create_connection((host, 7000), timeout=5)
        c.sendall(b"x\\n"); peers.append(c.recv(100).decode().split()[0]); cs.append(c)
    t0 = time.time()
    try:
        socket.create_connection((host, 7000), timeout=5).close(); fifth = "connected"
    except OSError as e:
        fifth = "%s after %.1f s" % (type(e).__name__, time.time() - t0)
    res[fam] = {"peers": peers, "fifth": fifth}
print(json.dumps(res))
`);
  t.diagnostic(JSON.stringify(out));
  const s = await status(topo);
  for (const [fam, first] of [["4", ADDR.lbInside4], ["6", ADDR.lbInside6]] as const) {
    const other = second[fam === "4" ? 4 : 6];
    assert.deepEqual([...out[fam].peers].sort(), [`peer=${first}:20000`, `peer=${first}:20001`, `peer=${other}:20000`, `peer=${other}:20001`].sort(), `IPv${fam}`);
    assert.match(out[fam].fifth, /^ConnectionRefusedError after 0\.\d s$/, `IPv${fam}`);
    // The backend's figures sum its two (address, backend) entries.
    const pool = s.pools.find((p) => p.name === `p${fam}`)!;
    assert.equal(pool.backends[0].connections, 4, `IPv${fam}`);
  }
  assert.equal(s.packet!.counters.flows_created, 8, JSON.stringify(s.packet!.counters));
  assert.equal(s.packet!.counters.ports_exhausted, 2, JSON.stringify(s.packet!.counters));
});

test("packet path: a backend that refuses resets the client at once (rst sweep); one that black-holes SYNs is a connect error after timeouts.connect", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  // backend 0 listens on nothing at port 9 (its kernel answers RST); backend 1's SYNs are dropped.
  await topo.backends.run("nft", ["-f", "-"], {
    input: `table inet toa_bh {\n chain in {\n  type filter hook input priority 0;\n  ip daddr ${ADDR.backend4[1]} tcp dport 9 drop\n }\n}\n`,
  });
  const config = writeConfig(topo, "lb-fail.yaml", `
admin: ${ADMIN}
dataPath: packet
timeouts: { connect: 1s }
listeners:
  - { name: refused, listen: "${ADDR.lb4}:9", pool: refused, mode: none }
  - { name: dropped, listen: "${ADDR.lb4}:10", pool: dropped, mode: none }
pools:
  refused: { backends: [ "${ADDR.backend4[0]}:9" ] }
  dropped: { backends: [ "${ADDR.backend4[1]}:9" ] }
`);
  await startLb(t, topo, ["--config", config], [ADMIN]);
  const refused = await clientPy<string[]>(topo, `
import json, socket, time
out = []
for i in range(2):
    t0 = time.time()
    c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); c.bind(("${ADDR.client4}", 46001))
    try:
        c.settimeout(3); c.connect(("${ADDR.lb4}", 9)); out.append("connected")
    except ConnectionRefusedError:
        out.append("refused in %.1f s" % (time.time() - t0))
    c.close()
print(json.dumps(out))
`);
  assert.deepEqual(refused, ["refused in 0.0 s", "refused in 0.0 s"], "the backend's RST reaches the client at once, also on the same port again");
  // Both connections took the one flow (the second SYN came on a flow that had seen the backend's RST).
  await waitFor("the refused flow swept as reset", async () => {
    const p = (await status(topo)).packet!;
    return p.entries === 0 && p.removed.rst >= 1;
  }, 3000);
  let s = await status(topo);
  assert.equal(s.packet!.counters.flows_created, 2, JSON.stringify(s.packet!.counters));

  const dropped = await clientPy<string>(topo, `
import json, socket, time
t0 = time.time()
try:
    socket.create_connection(("${ADDR.lb4}", 10), timeout=2.5); r = "connected"
except socket.timeout:
    r = "timed out after %.1f s" % (time.time() - t0)
print(json.dumps(r))
`);
  // The client's own 2.5 s timeout, not a refusal (which would come at once); emulation adds a little.
  const waited = Number(/^timed out after ([\d.]+) s$/.exec(dropped)?.[1]);
  assert.ok(waited >= 2.5 && waited < 2.5 + scaled(500) / 1000, `black-holed: ${dropped}`);
  await waitFor("the black-holed flows swept", async () => {
    const p = (await status(topo)).packet!;
    return p.entries === 0 && p.removed.connect_failed >= 1;
  }, 5000);
  s = await status(topo);
  const bh = s.pools.find((p) => p.name === "dropped")!.backends[0];
  assert.ok(bh.connectErrors >= 1, JSON.stringify(bh));
  assert.ok(s.listeners.find((l) => l.name === "dropped")!.connectErrors >= 1);
  assert.ok(s.packet!.removed.connect_failed >= 1, JSON.stringify(s.packet!.removed));
  assert.equal(s.pools.find((p) => p.name === "refused")!.backends[0].connectErrors, 0, "an answered SYN is no connect error");
});

test("packet path: the client's kernel leaves the checksum to the device (CHECKSUM_PARTIAL) and the balancer's device computes it: the TOA'd ACK still passes the backend's kernel", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  // Offload on in the client (its segments arrive partial), off in the balancer (its egress computes
  // the checksum from csum_start), the backend verifies everything.
  await ethtool(topo.balancer, "tx", "off");
  await ethtool(topo.backends, "rx", "off", "tx", "off");
  const rcv = await backendReceiver(t, "partial");
  await startServer(t, topo, ADDR.backend4[0], 25, { greet: true, cgroup: rcv.cgroup });
  await startServer(t, topo, ADDR.backend6[0], 25, { greet: true, cgroup: rcv.cgroup });
  const config = writeConfig(topo, "lb-partial.yaml", `
dataPath: packet
listeners:
  - { name: v4, listen: "${ADDR.lb4}:25", pool: v4 }
  - { name: v6, listen: "[${ADDR.lb6}]:25", pool: v6 }
pools:
  v4: { backends: [ "${ADDR.backend4[0]}:25" ] }
  v6: { backends: [ "[${ADDR.backend6[0]}]:25" ] }
`);
  await startLb(t, topo, ["--config", config], []);
  const before = await tcpCsumErrors(topo.backends);
  const out = await clientPy<{ greeting: string; reply: string; port: number; ms: number }[]>(topo, `
import json, socket, time
res = []
for host in ("${ADDR.lb4}", "${ADDR.lb6}", "${ADDR.lb4}"):
    t0 = time.time()
    c = socket.create_connection((host, 25), timeout=5)
    f = c.makefile("rb")
    greeting = f.readline().decode().strip()
    c.sendall(b"x" * 3000 + b"\\n")
    res.append({"greeting": greeting, "reply": f.readline().decode().strip(), "port": c.getsockname()[1], "ms": int((time.time() - t0) * 1000)})
    c.close()
print(json.dumps(res))
`);
  t.diagnostic(JSON.stringify(out));
  for (const [i, r] of out.entries()) {
    const client = i === 1 ? ADDR.client6 : ADDR.client4;
    assert.equal(r.greeting, `hello ${client}:${r.port}`, JSON.stringify(r));
    assert.equal(r.reply, `peer=${client}:${r.port} len=3001`);
    assert.ok(r.ms < 500, `no retransmission needed: ${r.ms} ms`);
  }
  assert.equal(await tcpCsumErrors(topo.backends), before, "no segment reached the backend with a bad checksum");
});

test("packet path: large transfers both ways with TSO/GSO at the senders and segmentation + checksums in software at the balancer's egress arrive intact", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  // Senders offload (64 kB GSO segments, partial checksums); the balancer's devices can't, so its
  // egress segments and sums what the program rewrote; both ends verify every checksum.
  await ethtool(topo.client, "rx", "off");
  await ethtool(topo.balancer, "tx", "off");
  await ethtool(topo.backends, "rx", "off");
  const rcv = await backendReceiver(t, "gso");
  await startServer(t, topo, ADDR.backend4[0], 25, { cgroup: rcv.cgroup });
  await startServer(t, topo, ADDR.backend6[0], 25, { cgroup: rcv.cgroup });
  const config = writeConfig(topo, "lb-gso.yaml", `
dataPath: packet
listeners:
  - { name: v4, listen: "${ADDR.lb4}:25", pool: v4 }
  - { name: v6, listen: "[${ADDR.lb6}]:25", pool: v6 }
pools:
  v4: { backends: [ "${ADDR.backend4[0]}:25" ] }
  v6: { backends: [ "[${ADDR.backend6[0]}]:25" ] }
`);
  await startLb(t, topo, ["--config", config], []);
  const before = { backends: await tcpCsumErrors(topo.backends), client: await tcpCsumErrors(topo.client) };
  const out = await clientPy<{ reply: string; big: number; port: number }[]>(topo, `
import json, socket
res = []
for host in ("${ADDR.lb4}", "${ADDR.lb6}"):
    c = socket.create_connection((host, 25), timeout=10)
    f = c.makefile("rb")
    c.sendall(b"x" * 8000000 + b"\\n")
    reply = f.readline().decode().strip()
    c.sendall(b"big 20000000\\n")
    big = len(f.readline()) - 1
    res.append({"reply": reply, "big": big, "port": c.getsockname()[1]})
    c.close()
print(json.dumps(res))
`, [], 60_000);
  assert.deepEqual(out.map((r) => [r.reply, r.big]), [
    [`peer=${ADDR.client4}:${out[0].port} len=8000001`, 20_000_000],
    [`peer=${ADDR.client6}:${out[1].port} len=8000001`, 20_000_000],
  ]);
  assert.equal(await tcpCsumErrors(topo.backends), before.backends);
  assert.equal(await tcpCsumErrors(topo.client), before.client);
});

test("packet path: a reload applies a changed packet.mtu and packet.closedTimeout", T, async (t) => {
  if (!requireRoot(t) || !(await scapyReady(t))) return;
  const topo = await createTopology(t);
  const rcv = await backendReceiver(t, "mtu");
  await startServer(t, topo, ADDR.backend4[0], 7000, { cgroup: rcv.cgroup });
  const yaml = (packet: string) => `
admin: ${ADMIN}
dataPath: packet
packet: ${packet}
listeners:
  - { name: web, listen: "${ADDR.lb4}:7000", pool: web }
pools:
  web: { backends: [ "${ADDR.backend4[0]}:7000" ] }
`;
  const config = writeConfig(topo, "lb-mtu-reload.yaml", yaml("{ mtu: 1500, closedTimeout: 60s }"));
  const lb = await startLb(t, topo, ["--config", config], [ADMIN]);
  const conn = (sport: number) => ({ src: ADDR.client4, dst: ADDR.lb4, dport: 7000, sport, data: line(1000) });
  const [first] = await crafted(topo, [conn(40031)]);
  assert.equal(first.reply, `peer=${ADDR.client4}:40031 len=1000\n`, "1048 bytes fit an MTU of 1500");
  // Closed both ways (the RST scapy leaves with is not a FIN: close one cleanly).
  const closed = await clientPy<string>(topo, `
import json, socket
c = socket.create_connection(("${ADDR.lb4}", 7000), timeout=5)
c.sendall(b"hi\\n"); r = c.recv(100).decode().strip(); c.close()
print(json.dumps(r))
`);
  assert.match(closed, /^peer=198\.51\.100\.2:\d+ len=3$/);
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal((await status(topo)).packet!.removed.closed, 0, "closedTimeout 60s: the closed connection stays");

  writeFileSync(config, yaml("{ mtu: 576, closedTimeout: 1s }"));
  process.kill(lb.proc.pid, "SIGHUP");
  await waitFor("the reload", async () => (await status(topo)).reloads === 1, 10_000);
  const [second] = await crafted(topo, [conn(40032)]);
  assert.match(second.reply ?? "", new RegExp(`^peer=${ADDR.lbInside4.replace(/\./g, "\\.")}:\\d+ len=1000\\n$`), `1048 bytes don't fit 576 any more: ${JSON.stringify(second)}`);
  const s = await status(topo);
  assert.equal(s.packet!.counters.toa_skipped_mtu, 1, JSON.stringify(s.packet!.counters));
  await waitFor("closedTimeout 1s: the closed connection goes", async () => (await status(topo)).packet!.removed.closed === 1, 4000);

  // What the open tables can't follow is refused, not ignored: the running config stays.
  writeFileSync(config, yaml("{ mtu: 1500, closedTimeout: 1s, maxConnections: 1000 }"));
  process.kill(lb.proc.pid, "SIGHUP");
  await waitFor("the refused reload", async () => (await status(topo)).reloadFailures === 1, 10_000);
  assert.match(lb.proc.output(), /packet\.maxConnections \(65536 → 1000\) and packet\.maxHalfOpen \(16384 → 250\): fixed while the instance exists/);
  const [third] = await crafted(topo, [conn(40033)]);
  assert.match(third.reply ?? "", /^peer=203\.0\.113\.1:\d+ len=1000\n$/, "mtu 576 still");
});

for (const overlap of [true, false]) {
  test(`packet path: NAT ports and the kernel's ephemeral ports ${overlap ? "overlapping: the balancer warns (the health check may lose its answers)" : "apart: two held NAT connections leave the health checks alone"}`, T, async (t) => {
    if (!requireRoot(t)) return;
    const topo = await createTopology(t);
    // Made certain instead of likely: the pool has two ports, the stack has those two or two others.
    await topo.balancer.run("sysctl", ["-q", "-w", `net.ipv4.ip_local_port_range=${overlap ? "40000 40001" : "40002 40003"}`]);
    await startNginx(t, topo, [{ index: 0 }], "n0");
    const config = writeConfig(topo, "lb-hc.yaml", `
admin: ${ADMIN}
dataPath: packet
listeners:
  - { name: web, listen: "${ADDR.lb4}:80", pool: web, mode: none }
pools:
  web:
    backends: [ "${ADDR.backend4[0]}:80" ]
    sourcePorts: 40000-40001
    healthCheck: { type: tcp, interval: 300ms, timeout: 250ms, rise: 1, fall: 2 }
`);
    const lb = await startLb(t, topo, ["--config", config], [ADMIN]);
    const warning = /pool web: sourcePorts 40000-40001 overlap the kernel's ephemeral ports 40000-40001/;
    if (overlap) {
      assert.match(lb.proc.output(), warning);
      assert.ok((await status(topo)).packet!.warnings.some((w) => warning.test(w)));
      return;
    }
    assert.doesNotMatch(lb.proc.output(), /overlap the kernel's ephemeral ports/);
    const held = topo.client.start(t, PY, ["-u", "-c", `
import socket, sys
cs = [socket.create_connection(("${ADDR.lb4}", 80), timeout=5) for _ in range(2)]
print("held", flush=True)
sys.stdin.readline()
`], { stdio: ["pipe", "pipe", "pipe"] });
    await waitFor("two connections held", () => held.output().includes("held"));
    await new Promise((r) => setTimeout(r, 3000)); // ten checks
    const s = await status(topo);
    held.child.stdin!.end("\n");
    assert.equal(s.pools[0].backends[0].state, "UP", `a backend serving connections was marked down: ${s.pools[0].backends[0].lastCheck}`);
  });
}
