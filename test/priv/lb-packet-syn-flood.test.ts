/**
 * A SYN flood can't take established connections down. The packet path's table never evicts: SYNs
 * get their own budget (packet.maxHalfOpen), and past it they are dropped and counted, while the
 * connections already open keep their entries. From the client namespace, spoofed SYNs (sources
 * all over 192.0.2.0/24, which nobody answers for) at many times the table's size, bounded in count
 * and time, while 50 established connections keep echoing data through the balancer: all 50 get
 * every byte back, syn_dropped rises, and once the flood is over new clients connect again.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { requireRoot } from "../harness/privileged.js";
import { waitFor } from "../harness/exec.js";
import { ADDR, clientPy, createTopology, lbStatus, startLb, writeConfig } from "../../bench/lb/topology.js";
import { scaled, TIME_FACTOR } from "../harness/time.js";
import { ECHO_SERVER_PY, SYN_FLOOD_PY } from "../../bench/lb/flood-scripts.js";

const T = { timeout: scaled(120_000) };
const PY = "/usr/bin/python3";
const ADMIN = `${ADDR.lb4}:9100`;
const MAX_CONNECTIONS = 64;
const MAX_HALF_OPEN = 16;
const TABLE = (MAX_CONNECTIONS + MAX_HALF_OPEN) * 2;

/** 50 connections, each echoing 1 KiB of its own bytes every 50 ms until told to stop; reports per connection. */
const HOLDERS_PY = `
import json, os, socket, sys, threading, time
host, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
conns = [socket.create_connection((host, port), timeout=10) for _ in range(n)]
print("open", flush=True)
res = [{"rounds": 0, "bytes": 0, "error": None} for _ in range(n)]
def work(i):
    c = conns[i]; f = c.makefile("rb")
    until = time.time() + seconds
    try:
        while time.time() < until:
            data = os.urandom(512).hex().encode() + b"\\n"
            c.sendall(data)
            back = f.readline()
            if back != data: res[i]["error"] = "bytes differ after %d rounds" % res[i]["rounds"]; return
            res[i]["rounds"] += 1; res[i]["bytes"] += len(data)
            time.sleep(0.05)
    except Exception as e:
        res[i]["error"] = repr(e)
ts = [threading.Thread(target=work, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(res))
`;

test("packet path: a spoofed SYN flood (12x the table) leaves 50 established connections intact, is dropped and counted, and new clients connect after it", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const echo = join(topo.dir, "echo.py");
  writeFileSync(echo, ECHO_SERVER_PY);
  const server = topo.backends.start(t, PY, ["-u", echo, ADDR.backend4[0], "7000"]);
  await waitFor("the echo server", () => server.output().includes("listening"));
  const config = writeConfig(
    topo,
    "lb-flood.yaml",
    `admin: ${ADMIN}
dataPath: packet
packet: { maxConnections: ${MAX_CONNECTIONS}, maxHalfOpen: ${MAX_HALF_OPEN}, synTimeout: 1s }
listeners:
  - { name: echo, listen: "${ADDR.lb4}:7000", pool: echo, mode: toa }
pools:
  echo: { backends: [ "${ADDR.backend4[0]}:7000" ] }
`,
  );
  await startLb(t, topo, ["--config", config], [ADMIN]);

  const holdSeconds = 8 * TIME_FACTOR;
  const holdersFile = join(topo.dir, "holders.py");
  writeFileSync(holdersFile, HOLDERS_PY);
  const holders = topo.client.start(t, PY, ["-u", holdersFile, ADDR.lb4, "7000", "50", String(holdSeconds)]);
  await waitFor("50 connections open", () => {
    if (holders.child.exitCode !== null) throw new Error(`holders exited: ${holders.output()}`);
    return holders.output().includes("open");
  });

  // 12 × the table's entries (1,920 SYNs), in bursts over about two seconds.
  const floodFile = join(topo.dir, "flood.py");
  writeFileSync(floodFile, SYN_FLOOD_PY);
  const flood = JSON.parse(
    (await topo.client.run(PY, [floodFile, ADDR.lb4, "7000", "192.0.2.0", String(12 * TABLE), "2"], { timeoutMs: 60_000 })).trim().split("\n").pop()!,
  ) as { sent: number; seconds: number };
  t.diagnostic(`flood: ${flood.sent} spoofed SYNs in ${flood.seconds.toFixed(2)} s`);
  assert.equal(flood.sent, 12 * TABLE);
  const during = await lbStatus(topo, ADMIN);

  await waitFor("the holders to finish", () => holders.child.exitCode !== null, holdSeconds * 1000 + 30_000);
  const res = JSON.parse(holders.output().trim().split("\n").pop()!) as { rounds: number; bytes: number; error: string | null }[];
  t.diagnostic(`holders: ${res.map((r) => r.rounds).join(",")} rounds; packet counters ${JSON.stringify(during.packet!.counters)}; half-open ${during.packet!.halfOpen}`);
  assert.deepEqual(res.filter((r) => r.error).map((r) => r.error), [], "every established connection kept working with its bytes intact");
  assert.ok(res.every((r) => r.rounds > 10), `every connection exchanged data during the flood: ${res.map((r) => r.rounds)}`);
  const after = await lbStatus(topo, ADMIN);
  // The budget frees itself every synTimeout (1 s) plus a sweep: a flood that lasts longer (under
  // emulation 2 s of SYNs take 7) lets a budget's worth in per second, never more.
  const admitted = MAX_HALF_OPEN * (Math.ceil(flood.seconds) + 2);
  assert.ok(after.packet!.counters.syn_dropped >= 12 * TABLE - admitted, `the SYNs beyond the half-open budget (${admitted} over ${flood.seconds.toFixed(1)} s) were dropped: ${JSON.stringify(after.packet!.counters)}`);
  assert.equal(after.packet!.counters.table_full, 0, "the table never filled: the flood had its own budget");

  // Past synTimeout and a sweep, the budget is free again: new clients connect at once.
  await waitFor("the half-open connections to expire", async () => (await lbStatus(topo, ADMIN)).packet!.halfOpen === 0, 10_000);
  const fresh = await clientPy<{ ok: number; ms: number }>(topo, `
import json, socket, time
t0 = time.time(); ok = 0
for i in range(10):
    c = socket.create_connection(("${ADDR.lb4}", 7000), timeout=5)
    c.sendall(b"hello\\n"); ok += c.makefile("rb").readline() == b"hello\\n"; c.close()
print(json.dumps({"ok": ok, "ms": (time.time() - t0) * 1000}))
`);
  t.diagnostic(`after the flood: ${fresh.ok}/10 new connections in ${Math.round(fresh.ms)} ms`);
  assert.equal(fresh.ok, 10);
  assert.ok(fresh.ms < scaled(2000), `new connections took ${fresh.ms} ms: a SYN waited for a retransmission`);
});
