/**
 * `toa lb` against HAProxy (`mode tcp`) on the same netns topology, in one run: new connections per
 * second, bulk throughput, added p50/p99 latency over a direct connection, memory per idle
 * connection; modes none and proxy-v2 on both sides. Run: `sudo npm run bench:lb`.
 */
import { cpus, release, totalmem } from "node:os";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { ADDR, createTopology, startLb, writeConfig, type Topology } from "./topology.js";
import { waitFor, type Started } from "../../test/harness/exec.js";
import { BACKEND, CLIENT, RAW_RELAY } from "./scripts.js";
import { median } from "../stats.js";

const CPS_MS = Number(process.env.CPS_MS ?? 3000);
const BULK = Number(process.env.BULK_MB ?? 200) * 1e6;
const LAT_N = 2000;
/** Idle connections for the memory figure: enough that the RSS delta is well above allocator noise. */
const IDLE_N = Number(process.env.IDLE_N ?? 4000);
const CONCURRENCY = 32;
/** Interleaved rounds over every row; figures are medians. */
const ROUNDS = Number(process.env.ROUNDS ?? 5);
/** Only the rows whose name contains one of these ("|"-separated), e.g. ROWS="HAProxy, none|toa lb, none". */
const ROWS = process.env.ROWS?.split("|").map((s) => s.trim()).filter(Boolean);
/** Extra node flags for the balancer process, e.g. LB_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const LB_NODE_ARGS = process.env.LB_NODE_ARGS?.split(" ").filter(Boolean) ?? [];

const cleanups: (() => unknown)[] = [];
const ctx = { after: (fn: () => unknown) => void cleanups.push(fn) };

async function client<T>(topo: Topology, args: Record<string, unknown>): Promise<T> {
  const out = await topo.client.run(process.execPath, [join(topo.dir, "client.mjs"), JSON.stringify(args)], { timeoutMs: 120_000 });
  return JSON.parse(out.trim().split("\n").pop()!) as T;
}

/** User + system CPU time of a process so far, in µs (clock ticks of 10 ms). */
function cpuUs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1e6) / 100;
}

/** Busy CPU time of the whole machine so far, in µs: the packet path works in softirq, not in a process. */
function machineBusyUs(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0); // idle + iowait
  return ((f.reduce((a, b) => a + b, 0) - idle) * 1e6) / 100;
}

/** Kernel slab memory now (sockets, skbs, map entries allocated on demand), KiB. */
function slabKiB(): number {
  return Number(/^Slab:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? NaN);
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

async function idleMemory(topo: Topology, host: string, port: number, pid?: number): Promise<{ rss: number; slab: number }> {
  const before = pid ? rssKiB(pid) : 0;
  const slab0 = slabKiB();
  const p = topo.client.start(ctx as never, process.execPath, [join(topo.dir, "client.mjs"), JSON.stringify({ test: "idle", host, port, n: IDLE_N })], { stdio: ["pipe", "pipe", "pipe"] });
  await waitFor("idle connections", () => {
    if (p.child.exitCode !== null) throw new Error(`idle client to port ${port} exited: ${p.output().slice(-500)}`);
    return p.output().includes("open");
  }, 60_000);
  await new Promise((r) => setTimeout(r, 500));
  const after = pid ? rssKiB(pid) : 0;
  const slab1 = slabKiB();
  p.child.stdin!.write("x\n");
  await p.exited;
  return { rss: ((after - before) * 1024) / IDLE_N, slab: ((slab1 - slab0) * 1024) / IDLE_N };
}

interface Row {
  cps: number;
  mbps: number;
  p50: number;
  p99: number;
  bytesPerConn?: number;
  /** Kernel slab growth per idle connection, machine-wide (client and backend sockets included). */
  slabPerConn: number;
  /** Preallocated kernel tables per connection of capacity (packet path only). */
  tablePerConn?: number;
  /** Machine CPU time per connection / per MB (every process and softirq). */
  machinePerConn: number;
  machinePerMB: number;
  /** Balancer CPU time per connection during the new-connections phase (µs). */
  cpuPerConn?: number;
  /** Balancer CPU time per MB during the bulk phase (µs). */
  cpuPerMB?: number;
}

async function measure(topo: Topology, host: string, base: number, pid: number | undefined, withMemory: boolean): Promise<Row> {
  // Idle memory first, before this row's thousands of TIME_WAIT sockets move the slab figure.
  const mem = withMemory ? await idleMemory(topo, host, base, pid) : { rss: 0, slab: 0 };
  const cpu0 = pid ? cpuUs(pid) : 0;
  const m0 = machineBusyUs();
  const cps = await client<{ cps: number; errors: number }>(topo, { test: "cps", host, port: base, ms: CPS_MS, concurrency: CONCURRENCY });
  if (cps.errors) console.error(`  (${cps.errors} connect errors at port ${base})`);
  const cpu1 = pid ? cpuUs(pid) : 0;
  const m1 = machineBusyUs();
  const bulk = await client<{ bytes: number; mbps: number }>(topo, { test: "bulk", host, port: base + 1 });
  const cpu2 = pid ? cpuUs(pid) : 0;
  const m2 = machineBusyUs();
  if (bulk.bytes !== BULK) throw new Error(`bulk through port ${base + 1}: got ${bulk.bytes} of ${BULK} bytes`);
  const lat = await client<{ p50: number; p99: number }>(topo, { test: "latency", host, port: base, n: LAT_N });
  const conns = (cps.cps * CPS_MS) / 1000;
  const row: Row = { cps: cps.cps, mbps: bulk.mbps, p50: lat.p50, p99: lat.p99, slabPerConn: 0, machinePerConn: (m1 - m0) / conns, machinePerMB: (m2 - m1) / (BULK / 1e6) };
  if (pid) {
    row.cpuPerConn = (cpu1 - cpu0) / conns;
    row.cpuPerMB = (cpu2 - cpu1) / (BULK / 1e6);
  }
  row.slabPerConn = mem.slab;
  if (pid) row.bytesPerConn = mem.rss;
  return row;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the lb bench needs root (network namespaces): sudo npm run bench:lb");
  const topo = await createTopology(ctx);
  // Direct path for the baseline: the balancer namespace routes between client and backends.
  await topo.balancer.run("sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"]);
  // The balancer's own ephemeral ports (HAProxy's and the JS relay's backend connections) apart from
  // the packet path's NAT ports (sourcePorts of rrp/bulkp below), as docs/lb.md asks.
  await topo.balancer.run("sysctl", ["-q", "-w", "net.ipv4.ip_local_port_range=50000 65000"]);
  await topo.client.run("ip", ["route", "add", "203.0.113.0/24", "via", ADDR.lb4]);
  await topo.backends.run("ip", ["route", "add", "198.51.100.0/24", "via", ADDR.lbInside4]);
  writeFileSync(join(topo.dir, "client.mjs"), CLIENT);
  writeFileSync(join(topo.dir, "backend.mjs"), BACKEND);
  const be = topo.backends.start(ctx as never, process.execPath, [join(topo.dir, "backend.mjs"), JSON.stringify({ host: ADDR.backend4[0], bulk: BULK })]);
  await waitFor("backend", () => be.output().includes("ready"));

  const b = ADDR.backend4[0];
  const toaCfg = writeConfig(
    topo,
    "lb.yaml",
    `timeouts: { connect: 3s, idle: 5m }
listeners:
  - { name: none-rr, listen: "${ADDR.lb4}:7000", pool: rr, mode: none }
  - { name: none-bulk, listen: "${ADDR.lb4}:7001", pool: bulk, mode: none }
  - { name: v2-rr, listen: "${ADDR.lb4}:7100", pool: rr2, mode: proxy-v2 }
  - { name: v2-bulk, listen: "${ADDR.lb4}:7101", pool: bulk2, mode: proxy-v2 }
  - { name: p-none-rr, listen: "${ADDR.lb4}:7400", pool: rrp, mode: none, dataPath: packet }
  - { name: p-none-bulk, listen: "${ADDR.lb4}:7401", pool: bulkp, mode: none, dataPath: packet }
  - { name: p-toa-rr, listen: "${ADDR.lb4}:7600", pool: rrp, mode: toa, dataPath: packet }
  - { name: p-toa-bulk, listen: "${ADDR.lb4}:7601", pool: bulkp, mode: toa, dataPath: packet }
  - { name: p-v2-rr, listen: "${ADDR.lb4}:7700", pool: rrp2, mode: proxy-v2, dataPath: packet }
  - { name: p-v2-bulk, listen: "${ADDR.lb4}:7701", pool: bulkp2, mode: proxy-v2, dataPath: packet }
admin: ${ADDR.lbInside4}:7999
pools:
  rr: { backends: ["${b}:9000"] }
  bulk: { backends: ["${b}:9001"] }
  rr2: { backends: ["${b}:9100"] }
  bulk2: { backends: ["${b}:9101"] }
  rrp: { backends: ["${b}:9000"], sourcePorts: 10000-49999 }
  bulkp: { backends: ["${b}:9001"], sourcePorts: 10000-49999 }
  rrp2: { backends: ["${b}:9100"], sourcePorts: 10000-49999 }
  bulkp2: { backends: ["${b}:9101"], sourcePorts: 10000-49999 }
`,
  );
  const haCfg = join(topo.dir, "haproxy.cfg");
  writeFileSync(
    haCfg,
    `global
  maxconn 9000
  nbthread 1
defaults
  mode tcp
  timeout connect 3s
  timeout client 5m
  timeout server 5m
listen none-rr
  bind ${ADDR.lb4}:8000
  server s ${b}:9000
listen none-bulk
  bind ${ADDR.lb4}:8001
  server s ${b}:9001
listen v2-rr
  bind ${ADDR.lb4}:8100
  server s ${b}:9100 send-proxy-v2
listen v2-bulk
  bind ${ADDR.lb4}:8101
  server s ${b}:9101 send-proxy-v2
`,
  );
  const lb = await startLb(ctx, topo, ["--config", toaCfg, "--log-level", "warn"], [`${ADDR.lb4}:7101`], { nodeArgs: LB_NODE_ARGS });
  const ha: Started = topo.balancer.start(ctx as never, "haproxy", ["-f", haCfg, "-db"]);
  await waitFor("haproxy", async () => (await topo.balancer.run("ss", ["-Htln"])).includes(`${ADDR.lb4}:8101`));

  // Optional: the floor of a JS relay without net.Socket (a prototype, not toa lb), ports 7500/7501.
  let raw: Started | undefined;
  if (process.env.RAW_FLOOR) {
    writeFileSync(join(topo.dir, "raw.mjs"), RAW_RELAY);
    raw = topo.balancer.start(ctx as never, process.execPath, [join(topo.dir, "raw.mjs"), ADDR.lb4, "7500", b, "9000"]);
    await waitFor("raw relay", () => raw!.output().includes("ready"));
  }
  const haVersion = execFileSync("haproxy", ["-v"]).toString().split("\n")[0];
  console.log(`# toa lb vs HAProxy (mode tcp), one run of ${ROUNDS} interleaved rounds (medians), same topology
machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}, Node ${process.version}, ${haVersion}
method: three netns (client → balancer → backend) on veth; one Node backend answering "pong" per line or
  sending ${BULK / 1e6} MB; a Node client: new connections/s = ${CONCURRENCY} concurrent loops of connect/send/recv/close
  for ${CPS_MS / 1000} s; bulk = one ${BULK / 1e6} MB download; latency = ${LAT_N} ping-pongs on one connection (after 200 warm-up),
  added over the direct (routed) path; memory per idle connection (${IDLE_N} held open) = balancer RSS growth + kernel slab growth
  beyond the direct path's (+ for the packet path its preallocated tables / capacity); machine CPU = all processes and softirq.
  HAProxy with nbthread 1 (toa lb is one JS thread); both log nothing per connection. Everything shares ${cpus().length} cores.
`);
  const plan: (readonly [string, string, number, number | undefined])[] = [["direct (no balancer)", b, 9000, undefined]];
  for (const [name, base, pid] of [
    ["HAProxy, none", 8000, ha.pid],
    ["toa lb, none", 7000, lb.proc.pid],
    ["HAProxy, proxy-v2", 8100, ha.pid],
    ["toa lb, proxy-v2", 7100, lb.proc.pid],
    ["toa lb packet, none", 7400, lb.proc.pid],
    ["toa lb packet, toa", 7600, lb.proc.pid],
    ["toa lb packet, proxy-v2", 7700, lb.proc.pid],
    ...(raw ? ([["Node raw tcp_wrap relay (floor, not toa lb), none", 7500, raw.pid]] as const) : []),
  ] as const) {
    if (!ROWS || ROWS.some((r) => name.includes(r))) plan.push([name, ADDR.lb4, base, pid]);
  }
  // Rounds interleave every row, so a noisy minute on this shared machine hits them all alike; each
  // figure is the median over rounds (memory is measured once, in the first round).
  const samples = new Map<string, Row[]>(plan.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, host, base, pid] of plan) {
      console.error(`round ${round + 1}/${ROUNDS}: measuring ${name}...`);
      const first = samples.get(name)![0];
      const row = await measure(topo, host, base, pid, !first);
      if (first) Object.assign(row, { bytesPerConn: first.bytesPerConn, slabPerConn: first.slabPerConn, tablePerConn: first.tablePerConn });
      else if (name.includes("packet")) {
        // The tables are preallocated for packet.maxConnections: charge each connection its share.
        const st = JSON.parse(await topo.balancer.run("curl", ["-sS", `http://${ADDR.lbInside4}:7999/status.json`])) as { packet: { tableBytes: number; maxConnections: number } };
        row.tablePerConn = st.packet.tableBytes / st.packet.maxConnections;
      }
      samples.get(name)!.push(row);
    }
  }
  const medianRow = (rs: Row[]): Row => {
    const out = { ...rs[0] } as Record<string, number | undefined>;
    for (const k of Object.keys(out)) if (out[k] !== undefined && !["bytesPerConn", "slabPerConn", "tablePerConn"].includes(k)) out[k] = median(rs.map((r) => (r as unknown as Record<string, number>)[k]));
    return out as unknown as Row;
  };
  const rows: [string, Row][] = plan.map(([name]) => [name, medianRow(samples.get(name)!)]);
  const direct = rows[0][1];
  const fmt = (n: number, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
  // Memory a balancer adds per idle connection: its RSS growth, the kernel slab growth beyond the
  // direct path's (client and backend sockets are in both), and for the packet path its tables.
  const memPerConn = (r: Row) => (r === direct ? 0 : Math.max(0, r.bytesPerConn ?? 0) + Math.max(0, r.slabPerConn - direct.slabPerConn) + (r.tablePerConn ?? 0));
  console.log("| path | new conn/s | bulk MB/s | p50 µs (added) | p99 µs (added) | memory per idle conn (RSS + kernel) | balancer CPU µs/conn | machine CPU µs/conn | balancer CPU µs/MB | machine CPU µs/MB |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const [name, r] of rows) {
    const added = (v: number, d: number) => (r === direct ? fmt(v) : `${fmt(v)} (+${fmt(v - d)})`);
    const mem = r === direct ? "-" : `${fmt(memPerConn(r) / 1024, 1)} KiB (${fmt(Math.max(0, r.bytesPerConn ?? 0) / 1024, 1)} + ${fmt((Math.max(0, r.slabPerConn - direct.slabPerConn) + (r.tablePerConn ?? 0)) / 1024, 1)})`;
    console.log(`| ${name} | ${fmt(r.cps)} | ${fmt(r.mbps)} | ${added(r.p50, direct.p50)} | ${added(r.p99, direct.p99)} | ${mem} | ${r.cpuPerConn === undefined ? "-" : fmt(r.cpuPerConn)} | ${fmt(r.machinePerConn)} | ${r.cpuPerMB === undefined ? "-" : fmt(r.cpuPerMB)} | ${fmt(r.machinePerMB)} |`);
  }
  console.log("\nratios toa lb (JS relay or packet path) / HAProxy (>1 = toa lb higher; for latency and memory lower is better):");
  for (const [lbName, mode, haMode = mode] of [["toa lb", "none"], ["toa lb", "proxy-v2"], ["toa lb packet", "none"], ["toa lb packet", "toa", "none"], ["toa lb packet", "proxy-v2"]]) {
    const h = rows.find(([n]) => n === `HAProxy, ${haMode}`)?.[1];
    const t = rows.find(([n]) => n === `${lbName}, ${mode}`)?.[1];
    if (!h || !t) continue;
    const r = (x: number, y: number) => (y > 0 ? (x / y).toFixed(2) : "n/a");
    const hs = samples.get(`HAProxy, ${haMode}`)!;
    const perRound = samples.get(`${lbName}, ${mode}`)!.map((x, i) => x.cps / hs[i].cps).sort((x, y) => x - y);
    console.log(`- ${lbName}, ${mode} vs HAProxy, ${haMode}: new conn/s ${r(t.cps, h.cps)} (rounds ${perRound[0].toFixed(2)}–${perRound[perRound.length - 1].toFixed(2)}), bulk ${r(t.mbps, h.mbps)}, added p50 ${r(t.p50 - direct.p50, h.p50 - direct.p50)}, added p99 ${r(t.p99 - direct.p99, h.p99 - direct.p99)}, memory/conn ${r(memPerConn(t), memPerConn(h))}, machine CPU/conn ${r(t.machinePerConn, h.machinePerConn)}`);
  }
}

try {
  await main();
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
