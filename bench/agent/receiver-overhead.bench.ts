/**
 * What the receiver costs a backend, measured side by side in one run: new connections per second,
 * bulk throughput of one connection (both directions), the extra time of one getpeername() call,
 * what the programs themselves run per connection, and kernel memory per connection (sk_storage,
 * saved SYN).
 *
 * Two identical pipelines, A and B, run at the same time: a client in cgroup client/a (or /b) in
 * one netns talks over veth to a server in cgroup srv-a (or srv-b) in another. The TOA sender is
 * attached to the client parent cgroup for the whole run, so every connection carries a TOA and the
 * packets are the same on both pipelines; the receiver is loaded on one server cgroup only,
 * alternating A and B from round to round. Measuring both at once in the same wall-clock window
 * cancels the load other work puts on the machine; alternating cancels any difference between
 * the pipelines. Ratios are medians of per-round ratios.
 *
 * Run: `sudo npm run bench:agent`. Knobs: ROUNDS (10), CPS_MS (2000), BULK_MS (2500), MEM_N (2000);
 * BPF_COST_ONLY=1 measures only the programs' run time (the receiver against baselines.ts).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { attachCgroup, enableRunStats, programInfo } from "../../src/bpf/index.js";
import { loadReceiver, measureReceiverCost, receiverCounters, ToaSender, unloadReceiver } from "../../src/agent/index.js";
import { synDefault } from "../../src/agent/settings.js";
import { createTestCgroup, ownCgroup, type TestCgroup } from "../../test/harness/cgroup.js";
import { exitedWithin, sh, waitFor, type Started } from "../../test/harness/exec.js";
import { link, Netns } from "../../test/harness/netns.js";
import { uniqueName } from "../../test/harness/privileged.js";
import { CPS_CLIENT, nginxConf, PY } from "./scripts.js";
import { type Baseline, type BaselinePrograms, loadBaseline } from "./baselines.js";
import { median, medianInterval, verdictAtLeast } from "../stats.js";

const ROUNDS = Number(process.env.ROUNDS ?? 10);
const CPS_MS = Number(process.env.CPS_MS ?? 2000);
const BULK_MS = Number(process.env.BULK_MS ?? 2500);
const MEM_N = Number(process.env.MEM_N ?? 2000);
const MEM_ROUNDS = Number(process.env.MEM_ROUNDS ?? 5);
const WARM_MS = 1000;
/** BPF_COST_ONLY=1: only the program run-time rows (a minute instead of ten). */
const COST_ONLY = process.env.BPF_COST_ONLY === "1";
const GP_CALLS = 50_000;
const GP_REPS = 20;
const CONCURRENCY = 32; // per pipeline

const CLIENT = "198.51.100.1";
const SERVER = "198.51.100.2";
const TOA_CLIENT = "203.0.113.7"; // the address the TOA carries
type Side = "a" | "b";
const SIDES: Side[] = ["a", "b"];
// Server ports per pipeline; client local ports (registered with the sender) per pipeline.
const PORT = { a: { cps: 8080, down: 8081, up: 8082, gp: 8083, mem: 8084 }, b: { cps: 8090, down: 8091, up: 8092, gp: 8093, mem: 8094 } } as const;
const LPORT = { a: { cps: 20000, down: 29000, up: 29001, gp: 29002, mem: 30000 }, b: { cps: 25000, down: 29100, up: 29101, gp: 29102, mem: 30000 } } as const;
/** Client ports of the conn/s runs without a TOA: never registered with the sender. */
const LPORT_PLAIN = { a: 36000, b: 37000 } as const;
const CPS_PORTS = CONCURRENCY * 4;

// ---- cleanup: everything made is registered here, undone in reverse, also on SIGINT/SIGTERM ----
const cleanups: [string, () => unknown][] = [];
const running = new Set<Started>();
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const p of running) await p.stop(1000).catch(() => undefined);
    for (const [what, fn] of cleanups.reverse()) {
      try {
        await fn();
      } catch (e) {
        console.error(`cleanup ${what}: ${(e as Error).message}`);
      }
    }
  })();
  return cleaning;
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

interface Cg {
  path: string;
  remove(): void;
}

interface Env {
  dir: string;
  ns: { client: Netns; server: Netns };
  clientParent: TestCgroup;
  client: Record<Side, Cg>;
  server: Record<Side, TestCgroup>;
  pinDir: string;
  python: string;
}

/** A child cgroup folder (the sender attached to the parent covers it). */
function childCgroup(parent: string, name: string): Cg {
  const path = join(parent, name);
  mkdirSync(path);
  return {
    path,
    remove() {
      if (!existsSync(path)) return;
      const home = join(ownCgroup(), "cgroup.procs");
      for (const pid of readFileSync(join(path, "cgroup.procs"), "utf8").split("\n").filter(Boolean)) {
        try {
          writeFileSync(home, `${pid}\n`);
        } catch {
          /* exited meanwhile */
        }
      }
      for (let i = 0; ; i++) {
        try {
          rmdirSync(path);
          return;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EBUSY" || i > 50) throw e;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
        }
      }
    },
  };
}

function startIn(env: Env, where: "client" | "server", side: Side, cmd: string, args: string[], stdin = false): Started {
  const cgroup = where === "client" ? env.client[side].path : env.server[side].path;
  const p = env.ns[where].start(undefined, cmd, args, { cgroup, stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe"] });
  running.add(p);
  void p.exited.then(() => running.delete(p));
  return p;
}

async function stop(p: Started): Promise<void> {
  await p.stop(2000);
  running.delete(p);
}

/** The last JSON line a process printed (waits for it to exit, or for `key` to appear). */
async function json<T>(p: Started, key?: string, timeoutMs = 60_000): Promise<T> {
  const find = () =>
    p
      .output()
      .split("\n")
      .filter((l) => l.startsWith("{") && (!key || l.includes(`"${key}"`)))
      .pop();
  if (key) await waitFor(`"${key}" from pid ${p.pid}`, find, timeoutMs, 10);
  else await exitedWithin(`pid ${p.pid}`, p, timeoutMs);
  const line = find();
  if (!line) throw new Error(`no result from pid ${p.pid}: ${p.output().slice(-500)}`);
  return JSON.parse(line) as T;
}

function py(env: Env, where: "client" | "server", side: Side, args: Record<string, unknown>, stdin = false): Started {
  const base = where === "server" ? { host: SERVER } : { host: SERVER, local: CLIENT };
  return startIn(env, where, side, env.python, [join(env.dir, "roles.py"), JSON.stringify({ ...base, ...args })], stdin);
}

const KINDS = [254, 253, 200];
/** `toa load`'s defaults: kinds 254,253,200, so no saved SYN (synDefault); the memory rows set it both ways. */
const receiverSettings = (env: Env, cgroup: string, syn = synDefault(KINDS)) => ({ cgroup, pinDir: env.pinDir, kinds: KINDS, trust: [], syn });

/** Load the receiver on server cgroup `side` (none: nothing), run fn, unload. Returns fn's result and the TOAs found. */
async function under<T>(env: Env, side: Side | "none", fn: () => Promise<T>, syn = synDefault(KINDS)): Promise<{ r: T; toa: number }> {
  if (side !== "none") loadReceiver(receiverSettings(env, env.server[side].path, syn));
  try {
    const r = await fn();
    return { r, toa: side === "none" ? 0 : (receiverCounters(env.pinDir)?.syn_recv_sock_toa ?? 0) };
  } finally {
    if (side !== "none") unloadReceiver(env.pinDir);
  }
}

/** A wall-clock window both pipelines count in, after a warm-up. */
function window(ms: number): { start: number; stop: number } {
  const start = Date.now() + WARM_MS;
  return { start, stop: start + ms };
}

// ---- the measurements (each returns results for pipelines a and b) ----
interface Cps {
  cps: number;
  done: number;
  errors: number;
  /** Exchanges over the whole run, warm-up included. */
  total: number;
  cpuUs: number;
}

/** Start both nginx (after the load, as on a host where `toa load` ran at boot: the listener then saves SYNs). */
async function nginxBoth(env: Env): Promise<Started[]> {
  const servers = SIDES.map((s) => startIn(env, "server", s, "nginx", ["-p", env.dir, "-c", join(env.dir, `nginx-${s}.conf`)]));
  await waitFor("nginx", async () => {
    const ss = await env.ns.server.run("ss", ["-Htln"]);
    return SIDES.every((s) => ss.includes(`${SERVER}:${PORT[s].cps}`));
  }, 10_000, 20);
  return servers;
}

/** The conn/s client of pipeline `s`; `toa` false: from ports the sender has not registered. */
function cpsClient(env: Env, s: Side, w: { start: number; stop: number }, toa = true): Started {
  return startIn(env, "client", s, process.execPath, [
    join(env.dir, "cps.mjs"),
    JSON.stringify({ host: SERVER, port: PORT[s].cps, local: CLIENT, lport: toa ? LPORT[s].cps : LPORT_PLAIN[s], ports: CPS_PORTS, concurrency: CONCURRENCY, ...w, cgroups: [env.client[s].path, env.server[s].path] }),
  ]);
}

/**
 * Attach baseline `which` (baselines.ts) to server cgroup `side` in the receiver's place, run fn
 * with the loaded programs, detach and close them.
 */
async function underBaseline<T>(env: Env, side: Side, which: Baseline, fn: (loaded: BaselinePrograms) => Promise<T>): Promise<T> {
  const loaded = loadBaseline(which);
  const attached = [attachCgroup(env.server[side].path, loaded.sockops, "CGROUP_SOCK_OPS")];
  if (loaded.getpeername4) attached.push(attachCgroup(env.server[side].path, loaded.getpeername4, "CGROUP_INET4_GETPEERNAME"));
  try {
    return await fn(loaded);
  } finally {
    for (const a of attached) a.detach();
    loaded.close();
  }
}

/** conn/s on both pipelines, the receiver (or `baseline` in its place) on `withSide`. */
async function cps(env: Env, withSide: Side, toa = true, baseline?: Baseline): Promise<{ r: Record<Side, Cps>; toa: number }> {
  const on = (fn: () => Promise<Record<Side, Cps>>) =>
    baseline ? underBaseline(env, withSide, baseline, fn).then((r) => ({ r, toa: 0 /* a baseline counts nothing */ })) : under(env, withSide, fn);
  return on(async () => {
    const servers = await nginxBoth(env);
    try {
      const w = window(CPS_MS);
      const clients = SIDES.map((s) => cpsClient(env, s, w, toa));
      const [a, b] = await Promise.all(clients.map((c) => json<Cps>(c)));
      return { a, b };
    } finally {
      for (const p of servers) await stop(p);
    }
  });
}

async function bulk(env: Env, withSide: Side, dir: "down" | "up"): Promise<Record<Side, number>> {
  const { r } = await under(env, withSide, async () => {
    const ms = window(BULK_MS);
    const w = { start: ms.start / 1000, stop: ms.stop / 1000 }; // Python's time.time() is in seconds
    const servers = SIDES.map((s) => py(env, "server", s, { mode: `${dir}-server`, port: PORT[s][dir], ...w }));
    const clients: Started[] = [];
    try {
      for (const p of servers) await json(p, "ready", 10_000);
      for (const s of SIDES) clients.push(py(env, "client", s, { mode: `${dir}-client`, port: PORT[s][dir], lport: LPORT[s][dir], ...w }));
      const counter = dir === "down" ? clients : servers;
      const [a, b] = await Promise.all(counter.map((p) => json<{ bytes: number; mbps: number }>(p, "mbps", BULK_MS + WARM_MS + 30_000)));
      return { a: a.mbps, b: b.mbps };
    } finally {
      for (const p of [...clients, ...servers]) await stop(p);
    }
  });
  return r;
}

/** getpeername() timed in one Python process on two accepted sockets, one per server cgroup, in turn. */
async function getpeername(env: Env, withSide: Side): Promise<{ ns: Record<Side, number[]>; peer: Record<Side, string> }> {
  const { r } = await under(env, withSide, async () => {
    const server = py(env, "server", "a", { mode: "gp-server", listeners: SIDES.map((s) => ({ cgroup: env.server[s].path, port: PORT[s].gp })), calls: GP_CALLS, reps: GP_REPS });
    let client: Started | undefined;
    try {
      await json(server, "ready", 10_000);
      client = py(env, "client", "a", { mode: "gp-client", pairs: SIDES.map((s) => [PORT[s].gp, LPORT[s].gp]) });
      const res = await json<{ ns: number[][]; peer: string[]; accepted: string[] }>(server);
      SIDES.forEach((s, i) => {
        const want = s === withSide ? TOA_CLIENT : CLIENT;
        if (!res.peer[i].startsWith(`${want}:`) || res.accepted[i] !== res.peer[i]) throw new Error(`getpeername on ${s}: ${res.peer[i]}, accept() ${res.accepted[i]}, expected ${want}`);
      });
      return { ns: { a: res.ns[0], b: res.ns[1] }, peer: { a: res.peer[0], b: res.peer[1] } };
    } finally {
      if (client) await stop(client);
      await stop(server);
    }
  });
  return r;
}

/** The kernel's run time per connection during a 1 s conn/s run on pipeline a. */
interface RunCost {
  /** Connections counted (by the receiver, or by the client for the empty program). */
  conns: number;
  /** sock_ops runs per connection and ns per connection (all of them). */
  sockopsRuns: number;
  sockopsNs: number;
  /** getpeername calls per connection and ns per call (nginx asks accept() for the peer). */
  getpeerCalls: number;
  getpeerNsPerCall: number;
}

/**
 * Run time the kernel accounts to the receiver's programs (measureReceiverCost, as `toa stats --bpf`)
 * while pipeline a makes connections with or without a TOA; and the same for an empty sock_ops program
 * (`return 1`): the floor the statistics themselves add to every run (two clock reads), which the
 * receiver's figures include too.
 */
async function programCost(env: Env, what: "toa" | "plain" | Baseline): Promise<RunCost> {
  const run = async () => {
    const servers = await nginxBoth(env);
    try {
      return await json<Cps>(cpsClient(env, "a", window(1000), what !== "plain"));
    } finally {
      for (const p of servers) await stop(p);
    }
  };
  if (what !== "toa" && what !== "plain") {
    return underBaseline(env, "a", what, async (loaded) => {
      const stats = enableRunStats();
      try {
        const before = programInfo(loaded.sockops.fd);
        const gpBefore = loaded.getpeername4 && programInfo(loaded.getpeername4.fd);
        const c = await run();
        // The servers are stopped: every connection has closed (the cookie map's deletes are counted).
        const after = programInfo(loaded.sockops.fd);
        const gpAfter = loaded.getpeername4 && programInfo(loaded.getpeername4.fd);
        // Connections the server completed: the client's count of exchanges in the whole run.
        const conns = c.total;
        const gpCalls = gpBefore && gpAfter ? Number(gpAfter.runCount - gpBefore.runCount) : 0;
        const gpNs = gpBefore && gpAfter ? Number(gpAfter.runTimeNs - gpBefore.runTimeNs) : 0;
        return {
          conns,
          sockopsRuns: Number(after.runCount - before.runCount) / conns,
          sockopsNs: Number(after.runTimeNs - before.runTimeNs) / conns,
          getpeerCalls: gpCalls / conns,
          getpeerNsPerCall: gpNs / Math.max(1, gpCalls),
        };
      } finally {
        stats.close();
      }
    });
  }
  const { r } = await under(env, "a", () => measureReceiverCost(env.pinDir, { during: run }));
  const of = (name: string) => r.programs.find((p) => p.name === name);
  const gp = of("toa_getpeer4");
  return { conns: r.connections, sockopsRuns: of("toa_receiver")?.runsPerConnection ?? 0, sockopsNs: of("toa_receiver")?.nsPerConnection ?? 0, getpeerCalls: gp?.runsPerConnection ?? 0, getpeerNsPerCall: gp?.nsPerRun ?? 0 };
}

/** Bytes of every slab cache in use, by cache (active objects × object size). */
function slabs(): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of readFileSync("/proc/slabinfo", "utf8").split("\n").slice(2)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 3) m.set(f[0], Number(f[1]) * Number(f[3]));
  }
  return m;
}

type MemCond = "none" | "toa" | "toa-nosyn";
interface Mem {
  /** All slab caches (noisy: other work on the machine allocates dentries, files, ...). */
  total: number;
  /** kmalloc caches only: where sk_storage (bpf_map_kzalloc → kmalloc-cg-*) and the saved SYN (kmalloc) go. */
  kmalloc: number;
  /** Memcg-accounted kmalloc caches (kmalloc-cg-*): sk_storage is charged to the map's memcg. */
  kmallocCg: number;
  byCache: Map<string, number>;
}

/** Slab bytes added per connection (client and server ends together) while MEM_N connections are open on pipeline a. */
async function memory(env: Env, cond: MemCond): Promise<Mem> {
  const { r, toa } = await under(
    env,
    cond === "none" ? "none" : "a",
    async () => {
      const server = py(env, "server", "a", { mode: "mem-server", port: PORT.a.mem, n: MEM_N }, true);
      const client = py(env, "client", "a", { mode: "mem-client", port: PORT.a.mem, lport: LPORT.a.mem, n: MEM_N }, true);
      try {
        await json(server, "ready", 10_000);
        await json(client, "ready", 10_000);
        await new Promise((res) => setTimeout(res, 200));
        const before = slabs();
        client.child.stdin!.write("go\n");
        await json(client, "open");
        await json(server, "accepted");
        await new Promise((res) => setTimeout(res, 300));
        const after = slabs();
        const byCache = new Map<string, number>();
        let total = 0;
        let kmalloc = 0;
        let kmallocCg = 0;
        for (const [k, v] of after) {
          const d = (v - (before.get(k) ?? 0)) / MEM_N;
          total += d;
          if (k.startsWith("kmalloc-")) kmalloc += d;
          if (k.startsWith("kmalloc-cg-")) kmallocCg += d;
          if (d !== 0) byCache.set(k, d);
        }
        server.child.stdin!.write("x\n");
        client.child.stdin!.write("x\n");
        await Promise.all([server.exited, client.exited]);
        return { total, kmalloc, kmallocCg, byCache };
      } finally {
        await stop(client);
        await stop(server);
      }
    },
    cond === "toa",
  );
  if (cond !== "none" && toa < MEM_N) throw new Error(`memory ${cond}: only ${toa} of ${MEM_N} connections had their TOA found`);
  return r;
}

// ---- statistics and output ----
const fmt = (n: number, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
const other = (s: Side): Side => (s === "a" ? "b" : "a");

/** Run `measure` ROUNDS times, the receiver on pipeline a in even rounds and b in odd ones. */
async function rounds<T>(what: string, measure: (withSide: Side) => Promise<T>): Promise<{ withSide: Side; r: T }[]> {
  const out: { withSide: Side; r: T }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const withSide: Side = i % 2 ? "b" : "a";
    process.stderr.write(`  ${what}: round ${i + 1}/${ROUNDS}, receiver on ${withSide}\n`);
    out.push({ withSide, r: await measure(withSide) });
  }
  return out;
}

async function setup(): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), "toa-bench-agent-"));
  cleanups.push(["temp folder", () => rmSync(dir, { recursive: true, force: true })]);
  const nsClient = await Netns.create(undefined, "toab-c");
  cleanups.push(["netns client", () => nsClient.delete()]);
  const nsServer = await Netns.create(undefined, "toab-s");
  cleanups.push(["netns server", () => nsServer.delete()]);
  await link(nsClient, nsServer, { a4: `${CLIENT}/24`, b4: `${SERVER}/24` });
  const clientParent = createTestCgroup(undefined, "toa-bench-cli");
  cleanups.push(["cgroup client", () => clientParent.remove()]);
  const client = {} as Record<Side, Cg>;
  const server = {} as Record<Side, TestCgroup>;
  for (const s of SIDES) {
    const c = childCgroup(clientParent.path, s);
    client[s] = c;
    cleanups.push([`cgroup client/${s}`, () => c.remove()]);
    const v = createTestCgroup(undefined, `toa-bench-srv-${s}`);
    server[s] = v;
    cleanups.push([`cgroup server ${s}`, () => v.remove()]);
  }
  const pinDir = join("/sys/fs/bpf", uniqueName("toa-bench"));
  cleanups.push(["pin folder", () => rmSync(pinDir, { recursive: true, force: true })]);
  cleanups.push(["receiver", () => unloadReceiver(pinDir)]);

  const sender = ToaSender.open({ cgroupPath: clientParent.path });
  cleanups.push(["sender", () => sender.close()]);
  const reg = (lport: number, port: number) =>
    sender.register({ localAddress: CLIENT, localPort: lport, remoteAddress: SERVER, remotePort: port }, { address: TOA_CLIENT, port: lport });
  for (const s of SIDES) {
    for (let i = 0; i < CPS_PORTS; i++) reg(LPORT[s].cps + i, PORT[s].cps);
    for (const k of ["down", "up", "gp"] as const) reg(LPORT[s][k], PORT[s][k]);
    writeFileSync(join(dir, `nginx-${s}.conf`), nginxConf(dir, `nginx-${s}`, `${SERVER}:${PORT[s].cps}`));
  }
  for (let i = 0; i < MEM_N; i++) reg(LPORT.a.mem + i, PORT.a.mem);

  writeFileSync(join(dir, "roles.py"), PY);
  writeFileSync(join(dir, "cps.mjs"), CPS_CLIENT);
  mkdirSync(join(dir, "logs")); // nginx opens <prefix>/logs/error.log before reading the config
  const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  return { dir, ns: { client: nsClient, server: nsServer }, clientParent, client, server, pinDir, python };
}

async function leftovers(env: Env): Promise<string[]> {
  const left: string[] = [];
  const netns = await sh("ip", ["netns", "list"]);
  for (const n of [env.ns.client.name, env.ns.server.name]) if (netns.includes(n)) left.push(`netns ${n}`);
  for (const c of [env.clientParent.path, env.server.a.path, env.server.b.path, env.pinDir, env.dir]) if (existsSync(c)) left.push(c);
  if (running.size) left.push(`${running.size} processes`);
  return left;
}

const TABLE_HEAD = "| measure | without | with | with/without or difference (range over rounds; the median's interval) | goal |\n|---|---:|---:|---:|---|";

/** Kernel run time of the receiver and of the baselines (baselines.ts), each over one 1 s conn/s run. */
interface Costs {
  toa: RunCost;
  plain: RunCost;
  empty: RunCost;
  storage: RunCost;
  lookup: RunCost;
  cookie: RunCost;
}

async function measureCosts(e: Env): Promise<Costs> {
  process.stderr.write("  program run time: receiver (TOA, no TOA), empty program, storage only, look-up only, cookie hash\n");
  return {
    toa: await programCost(e, "toa"),
    plain: await programCost(e, "plain"),
    empty: await programCost(e, "empty"),
    storage: await programCost(e, "storage"),
    lookup: await programCost(e, "lookup"),
    cookie: await programCost(e, "cookie"),
  };
}

/** What the statistics add to every run: an empty program's time per run. */
const floorPerRun = (c: Costs) => c.empty.sockopsNs / Math.max(1, c.empty.sockopsRuns);
const perConnection = (c: RunCost) => c.sockopsNs + c.getpeerNsPerCall * c.getpeerCalls;

function printCostRows(costs: Costs): void {
  const { toa, plain, empty, storage, lookup, cookie } = costs;
  const floor = floorPerRun(costs);
  /** ns per connection above what the statistics add to each of its runs. */
  const aboveFloor = (c: RunCost) => perConnection(c) - floor * (c.sockopsRuns + c.getpeerCalls);
  const bpfRow = (name: string, c: RunCost, goal: number) => {
    const total = perConnection(c);
    const net = aboveFloor(c);
    console.log(
      `| BPF run time per connection, ${name} (ns, kernel run_time_ns) | ${fmt(empty.sockopsNs, 0)} (empty program) | ${fmt(total, 0)} | sock_ops ${fmt(c.sockopsRuns, 1)} runs ${fmt(c.sockopsNs, 0)} + getpeername ${fmt(c.getpeerCalls, 1)} × ${fmt(c.getpeerNsPerCall, 0)}; **${fmt(net, 0)} above the statistics' floor** | ≤ ${goal}: ${total <= goal ? "met" : net <= goal ? "met above the floor" : "**missed**"} |`,
    );
  };
  /** A floor row: what baseline `c` costs above the statistics' floor, against the receiver's `of`. */
  const floorRow = (what: string, c: RunCost, of: RunCost, goal: number) => {
    const net = aboveFloor(c);
    console.log(
      `| ${what} | ${fmt(floor * (c.sockopsRuns + c.getpeerCalls), 0)} (floor) | ${fmt(perConnection(c), 0)} | **${fmt(net, 0)} above the floor** (sock_ops ${fmt(c.sockopsNs - floor * c.sockopsRuns, 0)} + getpeername ${fmt((c.getpeerNsPerCall - floor) * c.getpeerCalls, 0)}); the receiver's own work on top: ${fmt(aboveFloor(of) - net, 0)} | ${net > goal ? `above the ≤ ${goal} goal by itself` : "-"} |`,
    );
  };
  bpfRow("TOA", toa, 500);
  floorRow("of which a socket storage can't avoid: bpf_sk_storage_get(F_CREATE) and one store, and a getpeername that only looks it up (programs doing only that)", storage, toa, 500);
  // Both stores with their getpeername look-up: sk_storage alone, against a cookie-keyed hash (write,
  // delete at close, look-up by cookie).
  console.log(
    `| the other store: a hash keyed by socket cookie, deleted at close, vs sk_storage (store + getpeername look-up, ns per connection) | ${fmt(perConnection(storage), 0)} (sk_storage) | ${fmt(perConnection(cookie), 0)} | **${fmt(perConnection(cookie) / perConnection(storage), 2)}×** (sock_ops ${fmt(cookie.sockopsRuns, 1)} runs ${fmt(cookie.sockopsNs, 0)} + getpeername ${fmt(cookie.getpeerNsPerCall, 0)}) | lower is better |`,
  );
  bpfRow("no TOA", plain, 100);
  floorRow("of which a connection without a TOA can't avoid: a getpeername that looks the storage up and finds nothing (empty sock_ops)", lookup, plain, 100);
  console.log(`| getpeername program per call, first call on a new connection (ns) | ${fmt(floor, 0)} (floor) | ${fmt(toa.getpeerNsPerCall, 0)} | ${fmt(toa.getpeerNsPerCall - floor, 0)} above the floor; a program doing only the look-up and the write: ${fmt(storage.getpeerNsPerCall - floor, 0)} | ≤ 100: ${toa.getpeerNsPerCall <= 100 ? "met" : "**missed**"} |`);
}

function costChecks(costs: Costs): string {
  const { toa, plain, empty } = costs;
  return `run time over ${fmt(toa.conns)} / ${fmt(plain.conns)} / ${fmt(empty.conns)} connections; the statistics' floor: ${fmt(floorPerRun(costs), 1)} ns per run (an empty program).`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the agent bench needs root (bpf, cgroups, network namespaces): sudo npm run bench:agent");
  let env: Env | undefined;
  try {
    env = await setup();
    const e = env;
    const pyVersion = (await sh(e.python, ["--version"])).trim();
    const nginxVersion = (await sh("sh", ["-c", "nginx -v 2>&1"])).trim();
    console.log(`# receiver overhead: with vs without the programs, one run
machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}, Node ${process.version}, ${pyVersion}, ${nginxVersion}
method: two identical pipelines A and B run at the same time, each a client (netns ${CLIENT}, cgroup client/a|b)
  talking over one veth pair to its own server (netns ${SERVER}, cgroup srv-a|srv-b). The TOA sender on the
  client cgroups writes a TOA (${TOA_CLIENT}) into every connection of both; the receiver (toa load's defaults:
  kinds 254,253,200, so no saved SYN; no trust list) is loaded on one server cgroup before its server starts, A in even rounds,
  B in odd ones. ${ROUNDS} rounds; ratio = median of per-round ratios with/without; range = min–max over rounds.
  - conn/s: nginx (return 200, 1 process, no access log) ← Node client, ${CONCURRENCY} loops of connect/GET/
    read to FIN/RST close, per pipeline; counted in the same ${CPS_MS / 1000} s window after ${WARM_MS / 1000} s warm-up. CPU = usage_usec
    of the pipeline's two cgroups per exchange (softirq work runs on their tasks' time). Each round also runs
    conn/s with baselines.ts's storage programs in the receiver's place (bpf_sk_storage_get(F_CREATE) and one
    store at PASSIVE_ESTABLISHED, a getpeername that only looks it up, nothing else): the cost of keeping
    anything per socket.
  - bulk: one connection per pipeline, Python sendall/recv_into of 4 MiB, bytes received in the same
    ${BULK_MS / 1000} s window; down = server sends, up = client sends.
  - getpeername: one Python process, one accepted socket per server cgroup, ${GP_REPS} × ${GP_CALLS} sock.getpeername()
    on each in turn; per round the fastest turn of each, difference of the two.
  - program run time: BPF_ENABLE_STATS during a 1 s conn/s run on one pipeline (kernel's run_time_ns / run_cnt,
    as \`toa stats --bpf\`): with a TOA in every connection, with none, and for baselines.ts's programs: an
    empty sock_ops program (the floor the statistics add to every run: two clock reads), the storage
    programs, a getpeername look-up alone, a cookie-keyed hash.
  - memory: ${MEM_N} connections held open on one pipeline; /proc/slabinfo (active objects × size) delta / ${MEM_N},
    both ends; ${MEM_ROUNDS} rounds of: no receiver, receiver, receiver with syn: false (order rotated).
`);

    if (COST_ONLY) {
      const costs = await measureCosts(e);
      console.log(TABLE_HEAD);
      printCostRows(costs);
      console.log(`checks: ${costChecks(costs)}`);
      return;
    }

    // conn/s with a TOA in every connection and without one, interleaved round by round.
    type CpsRound = { withSide: Side; r: Awaited<ReturnType<typeof cps>> };
    const cpsRounds: CpsRound[] = [];
    const plainRounds: CpsRound[] = [];
    // The floor under the conn/s goal: programs that only allocate each socket's storage and look it up, as any
    // receiver keeping a per-socket address must, in the same rounds.
    const storageRounds: CpsRound[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const withSide: Side = i % 2 ? "b" : "a";
      process.stderr.write(`  conn/s with and without a TOA, and storage only: round ${i + 1}/${ROUNDS}, receiver on ${withSide}\n`);
      const t = await cps(e, withSide, true);
      const n = await cps(e, withSide, false);
      const st = await cps(e, withSide, true, "storage");
      cpsRounds.push({ withSide, r: t });
      plainRounds.push({ withSide, r: n });
      storageRounds.push({ withSide, r: st });
    }
    const downR = await rounds("bulk down", (s) => bulk(e, s, "down"));
    const upR = await rounds("bulk up", (s) => bulk(e, s, "up"));
    const gpR = await rounds("getpeername", (s) => getpeername(e, s));
    const costs = await measureCosts(e);
    const mem: Record<MemCond, Mem[]> = { none: [], toa: [], "toa-nosyn": [] };
    for (let i = 0; i < MEM_ROUNDS; i++) {
      const conds: MemCond[] = ["none", "toa", "toa-nosyn"];
      for (let k = 0; k < 3; k++) {
        const c = conds[(k + i) % 3];
        process.stderr.write(`  memory: round ${i + 1}/${MEM_ROUNDS}, ${c}\n`);
        mem[c].push(await memory(e, c));
      }
    }

    const spread = (xs: number[], d = 3) => `${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)}`;
    const pick = <T,>(rs: { withSide: Side; r: Record<Side, T> }[], f: (t: T) => number) => ({
      with: rs.map((x) => f(x.r[x.withSide])),
      without: rs.map((x) => f(x.r[other(x.withSide)])),
    });
    const ratio = (p: { with: number[]; without: number[] }) => p.with.map((w, i) => w / p.without[i]);
    const pickCps = (rs: CpsRound[], f: (c: Cps) => number) => pick(rs.map((x) => ({ withSide: x.withSide, r: x.r.r })), f);
    const cpsP = pickCps(cpsRounds, (c) => c.cps);
    const plainP = pickCps(plainRounds, (c) => c.cps);
    const storageP = pickCps(storageRounds, (c) => c.cps);
    const cpuP = pickCps(cpsRounds, (c) => c.cpuUs / c.done);
    const downP = pick(downR, (x) => x);
    const upP = pick(upR, (x) => x);
    // Per round the fastest turn of each socket: the least disturbed by other work on the machine.
    const gpWith = gpR.map((x) => Math.min(...x.r.ns[x.withSide]));
    const gpWithout = gpR.map((x) => Math.min(...x.r.ns[other(x.withSide)]));
    const gpD = gpWith.map((w, i) => w - gpWithout[i]);
    const memK = (c: MemCond) => median(mem[c].map((m) => m.kmalloc));
    const memAll = (c: MemCond) => median(mem[c].map((m) => m.total));
    const memAdded = mem.toa.map((m, i) => m.kmalloc - mem.none[i].kmalloc);
    // sk_storage goes to memcg-accounted caches (kmalloc-cg-*), the saved SYN to plain kmalloc (GFP_ATOMIC).
    const plain = (m: Mem) => m.kmalloc - m.kmallocCg;
    const memStorage = mem["toa-nosyn"].map((m, i) => m.kmallocCg - mem.none[i].kmallocCg);
    const memSyn = mem.toa.map((m, i) => plain(m) - plain(mem["toa-nosyn"][i]));
    const row = (name: string, p: { with: number[]; without: number[] }, d: number, goal?: number, lowerBetter = false) => {
      const r = ratio(p);
      const m = median(r);
      // The verdict reads the median's 95% interval, not the median alone: ten rounds on a busy
      // machine can't tell 0.97 from 0.99, and the table should say so rather than pick one.
      const ci = medianInterval(r);
      const g = goal === undefined ? (lowerBetter ? "lower is better" : "-") : `≥ ${goal}: ${verdictAtLeast(m, ci, goal)}`;
      const interval = ci ? `; median within ${fmt(ci.low, 3)}–${fmt(ci.high, 3)} at ${fmt(ci.confidence * 100, 0)}%` : "";
      console.log(`| ${name} | ${fmt(median(p.without), d)} | ${fmt(median(p.with), d)} | **${fmt(m, 3)}** (${spread(r)}${interval}) | ${g} |`);
    };

    console.log(TABLE_HEAD);
    row("new connections/s (nginx), every one with a TOA", cpsP, 0, 0.98);
    row("new connections/s (nginx), every one with a TOA, programs that only allocate the socket storage and look it up in getpeername instead of the receiver", storageP, 0);
    row("new connections/s (nginx), none with a TOA", plainP, 0, 0.98);
    row("CPU per connection, client + server (µs)", cpuP, 1, undefined, true);
    row("bulk, server → client (MB/s)", downP, 0, 0.99);
    row("bulk, client → server (MB/s)", upP, 0, 0.99);
    console.log(`| getpeername() in a Python loop (ns per call) | ${fmt(median(gpWithout), 1)} | ${fmt(median(gpWith), 1)} | **+${fmt(median(gpD), 1)} ns** (${spread(gpD, 1)}) | - |`);
    printCostRows(costs);
    console.log(`| kernel memory per connection with a TOA (bytes, kmalloc caches) | ${fmt(memK("none"))} | ${fmt(memK("toa"))} | **+${fmt(median(memAdded))} B** (${spread(memAdded, 0)}) | - |`);
    const cgK = (c: MemCond) => median(mem[c].map((m) => m.kmallocCg));
    const plainK = (c: MemCond) => median(mem[c].map(plain));
    console.log(`| of which sk_storage (kmalloc-cg-*, syn: false vs no receiver) | ${fmt(cgK("none"))} | ${fmt(cgK("toa-nosyn"))} | +${fmt(median(memStorage))} B (${spread(memStorage, 0)}) | - |`);
    console.log(`| of which saved SYN (plain kmalloc-*, syn: true vs false) | ${fmt(plainK("toa-nosyn"))} | ${fmt(plainK("toa"))} | +${fmt(median(memSyn))} B (${spread(memSyn, 0)}) | - |`);

    console.log(`\nmemory, all slab caches, both ends, per connection (medians): without ${fmt(memAll("none"))} B, with ${fmt(memAll("toa"))} B, with syn: false ${fmt(memAll("toa-nosyn"))} B`);
    console.log("  (includes dentry/filp/inode caches that other work on the machine also uses: the kmalloc rows are the figure).");
    console.log("expected from the structures: sk_storage element 64 (list heads, cache-line aligned) + 8 + 40-byte value = 112 → kmalloc-cg-128,");
    console.log("  plus one struct bpf_local_storage per socket (~170 B) → kmalloc-cg-192: 320 B; saved SYN 12 + 20 (IPv4) + 40 (SYN's TCP header) = 72 → kmalloc-96.");
    const caches = new Set([...mem.none, ...mem.toa, ...mem["toa-nosyn"]].flatMap((m) => [...m.byCache.keys()].filter((k) => k.startsWith("kmalloc-"))));
    const perCache = (c: MemCond, k: string) => median(mem[c].map((m) => m.byCache.get(k) ?? 0));
    const diffs = [...caches]
      .map((k) => ({ k, store: perCache("toa-nosyn", k) - perCache("none", k), syn: perCache("toa", k) - perCache("toa-nosyn", k) }))
      .filter((d) => Math.abs(d.store) >= 16 || Math.abs(d.syn) >= 16);
    console.log("kmalloc caches that grew (B per connection, medians, sk_storage / saved SYN): " + diffs.map((d) => `${d.k} ${fmt(d.store)} / ${fmt(d.syn)}`).join("; "));
    const toaPerConn = cpsRounds.map((x) => x.r.toa / Math.max(1, x.r.r[x.withSide].total));
    const toaPlain = plainRounds.map((x) => x.r.toa);
    const errors = [...cpsRounds, ...plainRounds, ...storageRounds].reduce((a, x) => a + x.r.r.a.errors + x.r.r.b.errors, 0);
    console.log(
      `checks: getpeername() and accept() returned ${gpR[0].r.peer[gpR[0].withSide]} with the receiver, ${gpR[0].r.peer[other(gpR[0].withSide)]} without; TOAs found per conn/s exchange: ${spread(toaPerConn, 2)} with a TOA, ${spread(toaPlain, 0)} without; conn/s errors: ${errors}; ${costChecks(costs)}`,
    );
  } finally {
    await cleanup();
    if (env) {
      const left = await leftovers(env);
      console.log(left.length ? `cleanup: LEFT OVER ${left.join(", ")}` : "cleanup: no netns, cgroup, pin, temp folder or process left");
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
