/**
 * A spoofed SYN flood through `toa lb --data-path packet` and through HAProxy (with the kernel's SYN
 * cookies), side by side in one topology: what happens to established connections, to new clients
 * during the flood, and how soon after it new clients get in at once.
 *
 *   client ns ──(50 holders echoing, a prober opening a connection every 100 ms, the flood)──▶
 *   balancer ns: toa lb packet path on :7000 (maxConnections 1024, maxHalfOpen 256, synTimeout 1s)
 *                HAProxy on :8000 (net.ipv4.tcp_syncookies=1, tcp_max_syn_backlog=256)
 *   ──▶ backends ns: a line echo server
 *
 * The flood: FLOOD (default 20000) SYNs from random hosts of 192.0.2.0/24 (nobody answers for them)
 * over FLOOD_S (default 4) seconds, to one balancer at a time.
 *
 * Run: `sudo npm run bench:flood`.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus, release } from "node:os";
import { join } from "node:path";
import { waitFor, type Started } from "../../test/harness/exec.js";
import { ADDR, createTopology, startLb, writeConfig, type Ctx } from "./topology.js";
import { ECHO_SERVER_PY, SYN_FLOOD_PY } from "./flood-scripts.js";
import { median } from "../stats.js";

const FLOOD = Number(process.env.FLOOD ?? 20_000);
const FLOOD_S = Number(process.env.FLOOD_S ?? 4);
const PY = "/usr/bin/python3";

/**
 * 50 holders echoing 1 KiB every 50 ms for `seconds`, and a prober that opens a connection every
 * 100 ms (connect timeout 3 s) and notes when it started, whether it worked and how long it took.
 */
const CLIENTS_PY = `
import json, os, socket, sys, threading, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
conns = [socket.create_connection((host, port), timeout=10) for _ in range(50)]
print("open", flush=True)
t0 = time.time()
held = [{"rounds": 0, "error": None} for _ in conns]
def hold(i):
    c = conns[i]; f = c.makefile("rb")
    try:
        while time.time() < t0 + seconds:
            d = os.urandom(512).hex().encode() + b"\\n"; c.sendall(d)
            if f.readline() != d: held[i]["error"] = "bytes differ"; return
            held[i]["rounds"] += 1; time.sleep(0.05)
    except Exception as e: held[i]["error"] = repr(e)
probes = []
def probe():
    a = time.time()
    try:
        c = socket.create_connection((host, port), timeout=3); c.sendall(b"x\\n"); ok = c.makefile("rb").readline() == b"x\\n"; c.close()
    except Exception: ok = False
    probes.append({"at": a - t0, "ok": ok, "ms": (time.time() - a) * 1000})
ts = [threading.Thread(target=hold, args=(i,)) for i in range(len(conns))]
for t in ts: t.start()
ps = []
while time.time() < t0 + seconds:
    p = threading.Thread(target=probe); p.start(); ps.append(p); time.sleep(0.1)
for t in ts + ps: t.join()
print(json.dumps({"held": held, "probes": probes}))
`;

interface Outcome {
  name: string;
  survived: number;
  flood: { sent: number; seconds: number };
  during: { n: number; ok: number; fast: number; p50: number };
  recoveredAfterMs: number | null;
  counters?: string;
}

async function main(): Promise<void> {
  const cleanups: (() => unknown)[] = [];
  const ctx: Ctx = { after: (fn: () => unknown) => void cleanups.push(fn) };
  try {
    const topo = await createTopology(ctx);
    await topo.balancer.run("sysctl", ["-q", "-w", "net.ipv4.tcp_syncookies=1", "net.ipv4.tcp_max_syn_backlog=256", "net.core.somaxconn=256"]);
    writeFileSync(join(topo.dir, "echo.py"), ECHO_SERVER_PY);
    writeFileSync(join(topo.dir, "flood.py"), SYN_FLOOD_PY);
    writeFileSync(join(topo.dir, "clients.py"), CLIENTS_PY);
    const echo = topo.backends.start(ctx as never, PY, ["-u", join(topo.dir, "echo.py"), ADDR.backend4[0], "7000"]);
    await waitFor("echo server", () => echo.output().includes("listening"));
    const cfg = writeConfig(
      topo,
      "lb.yaml",
      `admin: ${ADDR.lbInside4}:9100
dataPath: packet
packet: { maxConnections: 1024, maxHalfOpen: 256, synTimeout: 1s }
listeners:
  - { name: echo, listen: "${ADDR.lb4}:7000", pool: echo, mode: none }
pools:
  echo: { backends: [ "${ADDR.backend4[0]}:7000" ] }
`,
    );
    await startLb(ctx, topo, ["--config", cfg, "--log-level", "warn"], [`${ADDR.lbInside4}:9100`]);
    const haCfg = join(topo.dir, "haproxy.cfg");
    writeFileSync(haCfg, `global\n  maxconn 9000\ndefaults\n  mode tcp\n  timeout connect 3s\n  timeout client 1m\n  timeout server 1m\nlisten echo\n  bind ${ADDR.lb4}:8000 backlog 256\n  server s ${ADDR.backend4[0]}:7000\n`);
    const ha: Started = topo.balancer.start(ctx as never, "haproxy", ["-f", haCfg, "-db"]);
    await waitFor("haproxy", async () => (await topo.balancer.run("ss", ["-Htln"])).includes(`${ADDR.lb4}:8000`));

    const seconds = FLOOD_S + 8;
    const outcomes: Outcome[] = [];
    for (const [name, port] of [["toa lb, packet path", 7000], ["HAProxy, SYN cookies", 8000]] as const) {
      const clients = topo.client.start(ctx as never, PY, ["-u", join(topo.dir, "clients.py"), ADDR.lb4, String(port), String(seconds)]);
      await waitFor("the holders", () => clients.output().includes("open"), 20_000);
      await new Promise((r) => setTimeout(r, 1000)); // probes before the flood
      const floodStart = Date.now();
      const flood = JSON.parse((await topo.client.run(PY, [join(topo.dir, "flood.py"), ADDR.lb4, String(port), "192.0.2.0", String(FLOOD), String(FLOOD_S)], { timeoutMs: 120_000 })).trim().split("\n").pop()!) as { sent: number; seconds: number };
      const floodEndS = (Date.now() - floodStart) / 1000 + 1;
      await waitFor("the clients", () => clients.child.exitCode !== null, (seconds + 30) * 1000);
      const r = JSON.parse(clients.output().trim().split("\n").pop()!) as { held: { rounds: number; error: string | null }[]; probes: { at: number; ok: boolean; ms: number }[] };
      const during = r.probes.filter((p) => p.at >= 1 && p.at < floodEndS);
      const after = r.probes.filter((p) => p.at >= floodEndS).sort((a, b) => a.at - b.at);
      const firstFast = after.findIndex((p) => p.ok && p.ms < 100);
      const fastFromThen = firstFast >= 0 && after.slice(firstFast).every((p) => p.ok && p.ms < 1000);
      let counters: string | undefined;
      if (port === 7000) {
        const s = JSON.parse(await topo.balancer.run("curl", ["-sS", `http://${ADDR.lbInside4}:9100/status.json`])) as { packet: { counters: Record<string, number> } };
        counters = `syn_dropped ${s.packet.counters.syn_dropped}, table_full ${s.packet.counters.table_full}`;
      }
      outcomes.push({
        name,
        survived: r.held.filter((h) => !h.error && h.rounds > 0).length,
        flood,
        during: { n: during.length, ok: during.filter((p) => p.ok).length, fast: during.filter((p) => p.ok && p.ms < 100).length, p50: median(during.filter((p) => p.ok).map((p) => p.ms)) },
        recoveredAfterMs: fastFromThen ? Math.round((after[firstFast].at - floodEndS) * 1000) : null,
        counters,
      });
    }
    await ha.stop();
    const haVersion = execFileSync("haproxy", ["-v"]).toString().split("\n")[0];
    console.log(`# SYN flood: toa lb (packet path) vs HAProxy (kernel SYN cookies), same topology, one after the other
machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, Linux ${release()}, Node ${process.version}, ${haVersion}
flood: ${FLOOD} spoofed SYNs from 192.0.2.0/24 over ${FLOOD_S} s; 50 established connections echo 1 KiB every 50 ms; a new connection is tried every 100 ms

| | established kept (of 50) | new connections during the flood: answered / tried (under 100 ms) | median connect + echo | after the flood, new connections at once from |
|---|---:|---:|---:|---:|`);
    for (const o of outcomes) {
      console.log(
        `| ${o.name} | ${o.survived} | ${o.during.ok} / ${o.during.n} (${o.during.fast}) | ${Number.isNaN(o.during.p50) ? "—" : `${Math.round(o.during.p50)} ms`} | ${o.recoveredAfterMs === null ? "never in the run" : `${o.recoveredAfterMs} ms`} |`,
      );
    }
    for (const o of outcomes) if (o.counters) console.log(`\n${o.name}: ${o.counters}; flood ${o.flood.sent} SYNs in ${o.flood.seconds.toFixed(1)} s`);
  } finally {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (e) {
        console.error(`cleanup: ${(e as Error).message}`);
      }
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
