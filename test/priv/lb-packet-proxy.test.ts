/**
 * `mode: proxy-v2` on the packet data path: the tc program writes the PROXY v2 header in front of
 * the client's bytes and moves every later sequence number (and the backend's acknowledgments) by
 * its length. nginx `listen ... proxy_protocol` reads it; a Python server parses it itself to check
 * the bytes after it, a server that speaks first, and a lost header.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { requireRoot } from "../harness/privileged.js";
import { waitFor } from "../harness/exec.js";
import { ADDR, clientPy, createTopology, curl, ethtool, lbStatus, startLb, startNginx, tcpCsumErrors, writeConfig, type Topology } from "../../bench/lb/topology.js";
import { scaled } from "../harness/time.js";

const PY = "/usr/bin/python3";
const ADMIN = `${ADDR.lb4}:9100`;
const T = { timeout: scaled(90_000) };

/**
 * Reads the PROXY v2 header (exactly: signature, version/command, family, length, addresses), then
 * "greet": sends "hello <source>" first and echoes; "echo": echoes. Prints "header <source>" per
 * connection; a connection whose first bytes are not a header gets "bad header" and is closed.
 */
const SERVER_PY = `
import hashlib, ipaddress, socket, struct, sys, threading
addr, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port)); s.listen(128)
print("listening", flush=True)
def exactly(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d: raise EOFError
        b += d
    return b
def serve(c):
    try:
        head = exactly(c, 16)
        if head[:12] != b"\\r\\n\\r\\n\\x00\\r\\nQUIT\\n" or head[12] != 0x21:
            print("bad header", head.hex(), flush=True); c.close(); return
        body = exactly(c, struct.unpack("!H", head[14:16])[0])
        if head[13] == 0x11:
            src = "%s:%d" % (ipaddress.IPv4Address(body[0:4]), struct.unpack("!H", body[8:10])[0])
            dst = "%s:%d" % (ipaddress.IPv4Address(body[4:8]), struct.unpack("!H", body[10:12])[0])
        else:
            src = "[%s]:%d" % (ipaddress.IPv6Address(body[0:16]), struct.unpack("!H", body[32:34])[0])
            dst = "[%s]:%d" % (ipaddress.IPv6Address(body[16:32]), struct.unpack("!H", body[34:36])[0])
        print("header", src, dst, flush=True)
        if mode == "greet": c.sendall(("hello %s\\n" % src).encode())
        while True:
            d = c.recv(65536)
            if not d: break
            c.sendall(d)
    except (EOFError, OSError) as e:
        print("error", e, flush=True)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

/** Starts SERVER_PY in the backends namespace; resolves with its output reader. */
async function startServer(t: TestContext, topo: Topology, addr: string, port: number, mode: "echo" | "greet") {
  const file = join(topo.dir, "proxy-server.py");
  writeFileSync(file, SERVER_PY);
  const p = topo.backends.start(t, PY, ["-u", file, addr, String(port), mode]);
  await waitFor(`server on ${addr}:${port}`, () => {
    if (p.child.exitCode !== null) throw new Error(`server exited: ${p.output()}`);
    return p.output().includes("listening");
  });
  return p;
}

function config(topo: Topology, file: string, listeners: string, pools: string): string {
  return writeConfig(topo, file, `
admin: ${ADMIN}
dataPath: packet
listeners:
${listeners}
pools:
${pools}
`);
}

test("packet path, proxy-v2: nginx's $proxy_protocol_addr is the client over IPv4 and IPv6, with the checksums verified end to end (offloads off)", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  // Full checksums on the wire: every rewritten sequence number and the inserted header must sum right.
  await ethtool(topo.client, "tx", "off");
  await ethtool(topo.backends, "rx", "off", "tx", "off");
  await ethtool(topo.balancer, "tx", "off");
  const nginx = await startNginx(t, topo, [{ index: 0, proxyProtocol: true }]);
  const cfg = config(
    topo,
    "lb-pp.yaml",
    `  - { name: v4, listen: "${ADDR.lb4}:80", pool: p4, mode: proxy-v2 }
  - { name: v6, listen: "[${ADDR.lb6}]:80", pool: p6, mode: proxy-v2 }`,
    `  p4: { backends: ["${ADDR.backend4[0]}:80"] }
  p6: { backends: ["[${ADDR.backend6[0]}]:80"] }`,
  );
  await startLb(t, topo, ["--config", cfg], [ADMIN]);
  for (let i = 0; i < 5; i++) {
    assert.equal((await curl(topo, `http://${ADDR.lb4}/`)).trim(), `backend 0 remote=${ADDR.lbInside4} proxy=${ADDR.client4}`);
    assert.equal((await curl(topo, `http://[${ADDR.lb6}]/`)).trim(), `backend 0 remote=${ADDR.lbInside6} proxy=${ADDR.client6}`);
  }
  assert.deepEqual(nginx.lines().map((l) => l.split(" ")[1]), Array.from({ length: 5 }, () => [ADDR.client4, ADDR.client6]).flat());
  const s = await lbStatus(topo, ADMIN);
  assert.equal(s.packet!.counters.flows_created, 10, JSON.stringify(s.packet!.counters));
  assert.ok(s.packet!.counters.proxy_written >= 10, JSON.stringify(s.packet!.counters));
  assert.equal(await tcpCsumErrors(topo.backends), 0, "the backend's kernel found no bad checksum");
});

test("packet path, proxy-v2: 4 MB echoed both ways right after connect (GSO segments at the header's place), every byte back in order, IPv4 and IPv6", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const s4 = await startServer(t, topo, ADDR.backend4[0], 7000, "echo");
  const s6 = await startServer(t, topo, ADDR.backend6[0], 7000, "echo");
  const cfg = config(
    topo,
    "lb-ppe.yaml",
    `  - { name: v4, listen: "${ADDR.lb4}:7000", pool: p4, mode: proxy-v2 }
  - { name: v6, listen: "[${ADDR.lb6}]:7000", pool: p6, mode: proxy-v2 }`,
    `  p4: { backends: ["${ADDR.backend4[0]}:7000"] }
  p6: { backends: ["[${ADDR.backend6[0]}]:7000"] }`,
  );
  await startLb(t, topo, ["--config", cfg], [ADMIN]);
  const out = await clientPy<Record<string, { sent: string; got: string; bytes: number; port: number }>>(topo, `
import hashlib, json, os, socket, threading
res = {}
for fam, host in (("4", "${ADDR.lb4}"), ("6", "${ADDR.lb6}")):
    data = os.urandom(4 << 20)
    c = socket.create_connection((host, 7000), timeout=20)
    got = []
    def reader():
        while True:
            d = c.recv(1 << 16)
            if not d: break
            got.append(d)
    th = threading.Thread(target=reader); th.start()
    c.sendall(data); c.shutdown(socket.SHUT_WR); th.join()
    back = b"".join(got)
    res[fam] = {"sent": hashlib.sha256(data).hexdigest(), "got": hashlib.sha256(back).hexdigest(), "bytes": len(back), "port": c.getsockname()[1]}
    c.close()
print(json.dumps(res))
`, [], 60_000);
  for (const [fam, server, client] of [["4", s4, `${ADDR.client4}:`], ["6", s6, `[${ADDR.client6}]:`]] as const) {
    assert.equal(out[fam].bytes, 4 << 20, `IPv${fam}: every byte came back`);
    assert.equal(out[fam].got, out[fam].sent, `IPv${fam}: the same bytes, in order`);
    assert.match(server.output(), new RegExp(`header ${client.replace(/[[\]]/g, "\\$&")}${out[fam].port} `), `IPv${fam}: ${server.output()}`);
  }
});

test("packet path, proxy-v2: a server that speaks first gets the header at accept(); when the handshake ACK carrying it is lost, the client's next ACK brings it", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const server = await startServer(t, topo, ADDR.backend4[0], 7000, "greet");
  const cfg = config(topo, "lb-ppg.yaml", `  - { name: v4, listen: "${ADDR.lb4}:7000", pool: p4, mode: proxy-v2 }`, `  p4: { backends: ["${ADDR.backend4[0]}:7000"] }`);
  await startLb(t, topo, ["--config", cfg], [ADMIN]);
  const greet = `
import json, socket, time
t0 = time.time()
c = socket.create_connection(("${ADDR.lb4}", 7000), timeout=10)
hello = c.recv(100).decode().strip()
took = time.time() - t0
c.sendall(b"ping\\n"); echo = c.recv(100).decode().strip()
print(json.dumps({"hello": hello, "echo": echo, "port": c.getsockname()[1], "took": took}))
`;
  const first = await clientPy<{ hello: string; echo: string; port: number; took: number }>(topo, greet, [], 60_000);
  assert.equal(first.hello, `hello ${ADDR.client4}:${first.port}`);
  assert.equal(first.echo, "ping");
  // Drop the next packet that carries only the header (the handshake ACK: 20 IP + 32 TCP + 28).
  await topo.backends.run("nft", ["-f", "-"], {
    input: `table inet pptest { chain in { type filter hook input priority 0; ip daddr ${ADDR.backend4[0]} tcp dport 7000 ip length 80 limit rate 1/hour burst 1 packets counter drop; }; }\n`,
  });
  const second = await clientPy<{ hello: string; echo: string; port: number; took: number }>(topo, greet, [], 60_000);
  assert.equal(second.hello, `hello ${ADDR.client4}:${second.port}`, "the header arrived with a later ACK");
  assert.equal(second.echo, "ping");
  const dropped = await topo.backends.run("nft", ["list", "table", "inet", "pptest"]);
  assert.match(dropped, /counter packets 1 /, `the header-carrying ACK was dropped once: ${dropped}`);
  t.diagnostic(`greeting after a lost header: ${second.took.toFixed(2)} s (the backend retransmits its SYN/ACK after 1 s)`);
  assert.doesNotMatch(server.output(), /bad header/);
});
