/**
 * The receiver's test topology: three network namespaces on veth links, documentation prefixes only.
 *
 *   client                       balancer (ip_forward on)                 backend
 *   198.51.100.2/24  ── veth ──  198.51.100.1 │ 203.0.113.1  ── veth ──   203.0.113.2/24
 *   2001:db8:1::2/64             2001:db8:1::1 │ 2001:db8:2::1            2001:db8:2::2/64
 *
 * The backend's receiver is loaded (agent API) on a cgroup the test made; its servers (nginx,
 * python3 -m http.server, a Node server, a Python NAT64 server) run inside the backend namespace AND
 * that cgroup. The balancer is either a small full-NAT TCP proxy using the real TOA sender (attached
 * to a second test cgroup it runs in), or scapy (toa-client.py) crafting the exact packets a case
 * needs.
 *
 * Processes that need the cgroup v2 mount or bpffs enter the namespace with `nsenter --net`: `ip
 * netns exec` remounts /sys, which hides /sys/fs/cgroup and /sys/fs/bpf.
 *
 * Teardown is one `t.after` running cleanups in reverse order of creation: processes stop first,
 * then the receiver is unloaded, then cgroups are removed, then namespaces and the temp folder go.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestContext } from "node:test";
import type { SpawnOptions } from "node:child_process";
import { Netns, link } from "./netns.js";
import { sh, start, waitFor, waitForProcess, type Started } from "./exec.js";
import { nginxConf } from "./nginx-conf.js";
import { createTestCgroup, type TestCgroup } from "./cgroup.js";
import { uniqueName } from "./privileged.js";
import { loadReceiver, unloadReceiver, receiverCounters, parseTrust, type Counters, type LoadResult } from "../../src/agent/index.js";
import { Counter, DEFAULT_KINDS } from "../../src/programs/layout.js";

export const ADDR = {
  client4: "198.51.100.2",
  client6: "2001:db8:1::2",
  lbFront4: "198.51.100.1",
  lbFront6: "2001:db8:1::1",
  lb4: "203.0.113.1",
  lb6: "2001:db8:2::1",
  backend4: "203.0.113.2",
  backend6: "2001:db8:2::2",
} as const;

const here = dirname(fileURLToPath(import.meta.url)); // dist/test/harness
/** Source folder of the harness (scripts that tsc doesn't copy). */
export const HARNESS_SRC = resolve(here, "../../../test/harness");
/** The built agent API, imported by child scripts. */
export const AGENT_MODULE = resolve(here, "../../src/agent/index.js");
/** Debian's python3 (has scapy), not the pyenv one on PATH. */
export const PYTHON = "/usr/bin/python3";

/** One namespace, entered with nsenter so cgroup2 and bpffs stay visible. */
export class Host {
  constructor(
    readonly ns: Netns,
    private readonly topo: Topology,
  ) {}

  get name(): string {
    return this.ns.name;
  }

  private argv(cmd: string, args: string[], cgroup?: string): string[] {
    const net = `--net=/run/netns/${this.ns.name}`;
    return cgroup ? [net, "sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, cmd, ...args] : [net, cmd, ...args];
  }

  /** Run to completion inside the namespace (and cgroup). */
  run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; cgroup?: string } = {}): Promise<string> {
    return sh("nsenter", this.argv(cmd, args, opts.cgroup), opts);
  }

  /** Start a long-running process inside the namespace (and cgroup); stopped at teardown. */
  start(cmd: string, args: string[], opts: SpawnOptions & { cgroup?: string } = {}): Started {
    const { cgroup, ...spawnOpts } = opts;
    const p = start("nsenter", this.argv(cmd, args, cgroup), spawnOpts);
    this.topo.cleanup(() => p.stop());
    return p;
  }

  /** Listening TCP sockets (`ss -Htln`). */
  listening(): Promise<string> {
    return this.run("ss", ["-Htln"]);
  }
}

export interface Topology {
  client: Host;
  balancer: Host;
  backend: Host;
  /** Temp folder for configs and logs. */
  dir: string;
  /** Register a cleanup; they run in reverse order at teardown. */
  cleanup(fn: () => unknown): void;
}

/** Build the three namespaces, links, forwarding and routes. */
export async function createTopology(t: TestContext): Promise<Topology> {
  const cleanups: (() => unknown)[] = [];
  t.after(async () => {
    const errors: unknown[] = [];
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length) throw errors[0];
  });
  const dir = mkdtempSync(join(tmpdir(), "toa-rcv-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const topo = { dir, cleanup: (fn: () => unknown) => void cleanups.push(fn) } as unknown as Topology;
  const make = async (prefix: string): Promise<Host> => {
    const ns = await Netns.create(undefined, prefix);
    cleanups.push(() => ns.delete());
    return new Host(ns, topo);
  };
  topo.client = await make("trc");
  topo.balancer = await make("trl");
  topo.backend = await make("trb");
  const { client, balancer, backend } = topo;
  await link(client.ns, balancer.ns, { a4: `${ADDR.client4}/24`, b4: `${ADDR.lbFront4}/24`, a6: `${ADDR.client6}/64`, b6: `${ADDR.lbFront6}/64` });
  await link(balancer.ns, backend.ns, { a4: `${ADDR.lb4}/24`, b4: `${ADDR.backend4}/24`, a6: `${ADDR.lb6}/64`, b6: `${ADDR.backend6}/64` });
  await balancer.run("sysctl", ["-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
  await client.run("ip", ["route", "add", "default", "via", ADDR.lbFront4]);
  await client.run("ip", ["-6", "route", "add", "default", "via", ADDR.lbFront6]);
  await backend.run("ip", ["route", "add", "default", "via", ADDR.lb4]);
  await backend.run("ip", ["-6", "route", "add", "default", "via", ADDR.lb6]);
  for (const h of [client, balancer, backend]) {
    await h.run("sysctl", ["-q", "-w", "net.ipv4.ip_local_port_range=10000 19999", "net.ipv4.tcp_tw_reuse=1"]);
  }
  return topo;
}

/** The backend's receiver: a test cgroup, a unique pin folder, loads through the agent API. */
export interface Receiver {
  cgroup: TestCgroup;
  pinDir: string;
  load(opts?: { kinds?: number[]; trust?: string; syn?: boolean }): LoadResult;
  /** Counters summed over CPUs; all 0 when nothing is loaded. */
  counters(): Counters;
}

/** Every counter at 0 (nothing loaded). */
const zeroCounters = (): Counters => Object.fromEntries(Object.keys(Counter).map((k) => [k, 0])) as Counters;

/** A cgroup for the backend's servers and the pin folder of its receiver (not loaded yet). */
export function createReceiver(topo: Topology): Receiver {
  const cgroup = createTestCgroup(undefined, "toa-rcv");
  topo.cleanup(() => cgroup.remove());
  const pinDir = `/sys/fs/bpf/${uniqueName("toa-t")}`;
  // Registered after the cgroup: runs before its removal.
  topo.cleanup(() => unloadReceiver(pinDir));
  return {
    cgroup,
    pinDir,
    load: (o = {}) => loadReceiver({ cgroup: cgroup.path, pinDir, kinds: o.kinds ?? [...DEFAULT_KINDS], trust: parseTrust(o.trust), syn: o.syn ?? true }),
    counters: () => receiverCounters(pinDir) ?? zeroCounters(),
  };
}

/** Counter differences after - before, only the non-zero ones. */
export function counterDelta(before: Counters, after: Counters): Partial<Counters> {
  const out: Partial<Counters> = {};
  for (const k of Object.keys(after) as (keyof Counters)[]) {
    const d = after[k] - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

async function waitListening(host: Host, proc: Started, what: string, addrs: string[]): Promise<void> {
  await waitForProcess(`${what} to listen on ${addrs.join(", ")}`, proc, async () => {
    const ss = await host.listening();
    return addrs.every((a) => ss.includes(a));
  });
}

/** nginx on the backend (in the receiver's cgroup), access log `$remote_addr $remote_port`. */
export interface Nginx {
  proc: Started;
  lines(): string[];
}

export async function startNginx(topo: Topology, cgroup: string, port = 8080): Promise<Nginx> {
  const dir = join(topo.dir, uniqueName("nginx"));
  mkdirSync(dir);
  const access = join(dir, "access.log");
  const conf = nginxConf({
    dir,
    masterProcess: false,
    workerConnections: 256,
    accessLog: { path: access, format: "$remote_addr $remote_port" },
    servers: `  server {
    listen ${ADDR.backend4}:${port};
    listen [${ADDR.backend6}]:${port};
    location / { return 200 "ok $remote_addr $remote_port\\n"; }
  }`,
  });
  writeFileSync(join(dir, "nginx.conf"), conf);
  const proc = topo.backend.start("nginx", ["-c", join(dir, "nginx.conf"), "-e", join(dir, "nginx-error.log")], { cgroup });
  await waitListening(topo.backend, proc, "nginx", [`${ADDR.backend4}:${port}`, `[${ADDR.backend6}]:${port}`]).catch((e: Error) => {
    throw new Error(`${e.message}\n${existsSync(join(dir, "nginx-error.log")) ? readFileSync(join(dir, "nginx-error.log"), "utf8") : ""}`);
  });
  return { proc, lines: () => (existsSync(access) ? readFileSync(access, "utf8").split("\n").filter(Boolean) : []) };
}

/** `python3 -m http.server` on the backend; its log lines start with the client address. */
export async function startPythonHttp(topo: Topology, cgroup: string, bind: string, port: number): Promise<Started> {
  const proc = topo.backend.start(PYTHON, ["-u", "-m", "http.server", String(port), "--bind", bind], { cgroup, cwd: topo.dir });
  await waitListening(topo.backend, proc, "http.server", [`${bind.includes(":") ? `[${bind}]` : bind}:${port}`]);
  return proc;
}

/** What the Node server (toa-node-server.mjs) answers per line and logs per connection. */
export interface ServerReply {
  /** getpeername() now (not cached). */
  peer: { address: string; port: number; family: string };
  /** socket.remoteAddress / remotePort (first look-up, at the first line). */
  remoteAddress: string;
  remotePort: number;
  /** clientAddress(socket) from the agent API, or null. */
  client: { address: string; port: number; family: string; foundIn: string; kind: number; via: { address: string; port: number } } | null;
  clientError?: string;
  /** The Python NAT64 server's getsockopt(IPPROTO_IP, 4096) result. */
  nat64?: { address: string; port: number } | null;
  line?: string;
}

/** A line-oriented server on the backend: one JSON line per received line, also logged to stdout. */
export interface LineServer {
  proc: Started;
  /** Logged replies so far. */
  replies(): ServerReply[];
}

function jsonLines<T>(text: string): T[] {
  return text
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as T);
}

/** The Node server (toa-node-server.mjs) listening on `host` (e.g. "::", "0.0.0.0"). */
export async function startNodeServer(topo: Topology, rcv: Receiver, host: string, port: number): Promise<LineServer> {
  const args = JSON.stringify({ agent: AGENT_MODULE, pinDir: rcv.pinDir, host, port });
  const proc = topo.backend.start(process.execPath, [join(HARNESS_SRC, "toa-node-server.mjs"), args], { cgroup: rcv.cgroup.path });
  await waitFor("node server to be ready", () => {
    if (proc.child.exitCode !== null) throw new Error(`node server exited ${proc.child.exitCode}: ${proc.output()}`);
    return proc.output().includes('"ready"');
  });
  return { proc, replies: () => jsonLines<ServerReply & { event?: string }>(proc.output()).filter((r) => r.event === undefined) };
}

/** The Python NAT64 server (toa-nat64-server.py): AF_INET, getpeername + getsockopt(IPPROTO_IP, 4096). */
export async function startNat64Server(topo: Topology, rcv: Receiver, port: number): Promise<LineServer> {
  const proc = topo.backend.start(PYTHON, ["-u", join(HARNESS_SRC, "toa-nat64-server.py"), ADDR.backend4, String(port)], { cgroup: rcv.cgroup.path });
  await waitFor("python NAT64 server to be ready", () => {
    if (proc.child.exitCode !== null) throw new Error(`nat64 server exited ${proc.child.exitCode}: ${proc.output()}`);
    return proc.output().includes('"ready"');
  });
  return { proc, replies: () => jsonLines<ServerReply & { event?: string }>(proc.output()).filter((r) => r.event === undefined) };
}

/** One front of the balancer proxy: where it listens, which backend it connects to, the TOA kind. */
export interface Front {
  listen: { host: string; port: number };
  backend: { host: string; port: number };
  kind?: number;
}

/** The full-NAT proxy with the real TOA sender (toa-balancer.mjs) in the balancer ns and its own cgroup. */
export interface Balancer {
  proc: Started;
  cgroup: TestCgroup;
  /** Sender counters, as the proxy reports them on stdout when asked (not needed by most tests). */
  log(): string;
}

export async function startBalancer(topo: Topology, fronts: Front[], opts: { inSyn?: boolean } = {}): Promise<Balancer> {
  const cgroup = createTestCgroup(undefined, "toa-rlb");
  topo.cleanup(() => cgroup.remove());
  const local4 = ADDR.lb4;
  const local6 = ADDR.lb6;
  const args = JSON.stringify({ agent: AGENT_MODULE, cgroupPath: cgroup.path, fronts, local4, local6, inSyn: opts.inSyn ?? false });
  const proc = topo.balancer.start(process.execPath, [join(HARNESS_SRC, "toa-balancer.mjs"), args], { cgroup: cgroup.path });
  await waitForProcess("balancer proxy to be ready", proc, () => proc.output().includes('"ready"'));
  return { proc, cgroup, log: () => proc.output() };
}

/** A result of toa-clients.mjs: one per connection. */
export interface ClientResult {
  localAddress: string;
  localPort: number;
  reply?: ServerReply;
  error?: string;
}

/**
 * Make `count` connections from the client ns to `target` (at most `concurrency` at once): each
 * sends one line and reads the server's JSON reply.
 */
export async function clientConnections(
  topo: Topology,
  target: { host: string; port: number },
  count: number,
  concurrency = 1,
  opts: { host?: Host; localAddress?: string; intervalMs?: number } = {},
): Promise<ClientResult[]> {
  const host = opts.host ?? topo.client;
  const args = JSON.stringify({ target, count, concurrency, localAddress: opts.localAddress, intervalMs: opts.intervalMs });
  const out = await host.run(process.execPath, [join(HARNESS_SRC, "toa-clients.mjs"), args], { timeoutMs: 60_000 });
  return JSON.parse(out.trim().split("\n").pop()!) as ClientResult[];
}

/** One client connection kept open: each send() is a line to the server, answered by its reply. */
export interface HeldConnection {
  localPort: number;
  send(line: string): Promise<ServerReply>;
  close(): Promise<void>;
}

export async function holdConnection(topo: Topology, target: { host: string; port: number }): Promise<HeldConnection> {
  const proc = topo.client.start(process.execPath, [join(HARNESS_SRC, "toa-clients.mjs"), JSON.stringify({ target, hold: true })], { stdio: ["pipe", "pipe", "pipe"] });
  const lines = () => jsonLines<{ event?: string; localPort?: number; reply?: ServerReply; error?: string }>(proc.output());
  const connected = await waitFor("the held connection", () => {
    if (proc.child.exitCode !== null) throw new Error(`client exited: ${proc.output()}`);
    return lines().find((l) => l.event === "connected");
  });
  let seen = 0;
  return {
    localPort: connected!.localPort!,
    async send(line) {
      proc.child.stdin!.write(`${line}\n`);
      const want = ++seen;
      const replies = await waitFor(`reply ${want} on the held connection`, () => {
        if (proc.child.exitCode !== null) throw new Error(`client exited: ${proc.output()}`);
        const r = lines().filter((l) => l.reply);
        return r.length >= want ? r : undefined;
      });
      return replies![want - 1].reply!;
    },
    async close() {
      proc.child.stdin!.end();
      await proc.exited;
    },
  };
}

/** curl from the client ns. */
export function curl(topo: Topology, url: string): Promise<string> {
  return topo.client.run("curl", ["-sS", "--max-time", "10", url]);
}

/** Drop the RSTs of `host`'s kernel for scapy's source ports (it has no socket for them). */
export async function dropScapyResets(host: Host, ports: [number, number]): Promise<void> {
  await host.run("nft", ["-f", "-"], {
    input: `table inet toa_scapy {\n chain out {\n  type filter hook output priority 0;\n  tcp sport ${ports[0]}-${ports[1]} tcp flags & rst == rst drop\n }\n}\n`,
  });
}

/** One crafted connection for toa-client.py (options as hex strings of raw option bytes). */
export interface CraftedConnection {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  synOptions?: string;
  ackOptions?: string;
  dataOptions?: string;
  /** Skip the pure ACK: the data segment completes the handshake. */
  noAck?: boolean;
  /** Data segments sent after the first one, each with its own raw options (hex). */
  moreSegments?: { options?: string; data?: string }[];
  data?: string;
}

export interface CraftedResult {
  sport: number;
  reply: string | null;
  error?: string;
}

/** Play the balancer (or a forging client) with scapy from `host`'s ns, with Debian's python3. */
export async function crafted(host: Host, conns: CraftedConnection[]): Promise<CraftedResult[]> {
  const out = await host.run(PYTHON, [join(HARNESS_SRC, "toa-client.py"), JSON.stringify(conns)], { timeoutMs: 60_000 });
  return JSON.parse(out.trim().split("\n").pop()!) as CraftedResult[];
}

/** Raw bytes of a TOA option (IPv4: len 8, IPv6: len 20), hex. */
export function toaOption(kind: number, address: string, port: number): string {
  const v6 = address.includes(":");
  const b = Buffer.alloc(v6 ? 20 : 8);
  b[0] = kind;
  b[1] = b.length;
  b.writeUInt16BE(port, 2);
  if (v6) {
    // "::" expanded by hand: enough for the documentation addresses the tests use.
    const groups = expand6(address);
    groups.forEach((g, i) => b.writeUInt16BE(g, 4 + 2 * i));
  } else {
    address.split(".").forEach((o, i) => (b[4 + i] = Number(o)));
  }
  return b.toString("hex");
}

function expand6(address: string): number[] {
  const [head, tail] = address.split("::");
  const h = head ? head.split(":") : [];
  const tl = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - tl.length).fill("0"), ...tl];
  return groups.map((g) => parseInt(g, 16));
}

/** Is `tool` runnable? Tests skip outside CI when a Debian package is missing, and fail in CI. */
export async function requireTool(t: TestContext, cmd: string, args: string[], pkg: string): Promise<boolean> {
  try {
    await sh(cmd, args);
    return true;
  } catch {
    const reason = `${cmd} is missing: apt-get install -y ${pkg}`;
    if (process.env.CI === "true") throw new Error(reason);
    t.skip(reason);
    return false;
  }
}
