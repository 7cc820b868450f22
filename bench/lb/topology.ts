/**
 * The lb test and bench topology: three network namespaces joined by veth links, documentation
 * prefixes only.
 *
 *   client ns                     balancer ns                          backends ns
 *   198.51.100.2  ── veth ──  198.51.100.1 │ 203.0.113.1  ── veth ──  203.0.113.10, .11, .12
 *   2001:db8:1::2             2001:db8:1::1 │ 2001:db8:2::1            2001:db8:2::10, ::11, ::12
 *
 * Helpers start nginx backends (config written per run in a temp dir), `toa lb` as a child process
 * in the balancer ns, and Node scripts in the client ns. Everything stops at teardown.
 */
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestContext } from "node:test";
import { Netns, link } from "../../test/harness/netns.js";
import { start, waitFor, waitForProcess, type Started } from "../../test/harness/exec.js";
import { nginxConf } from "../../test/harness/nginx-conf.js";
import { scaled } from "../../test/harness/time.js";
import type { StatusSnapshot } from "../../src/lb/status.js";

/** Run-time context: a node:test TestContext or a bench's own cleanup list. */
export type Ctx = Pick<TestContext, "after"> & Partial<Pick<TestContext, "diagnostic">>;

export const ADDR = {
  client4: "198.51.100.2",
  client6: "2001:db8:1::2",
  lb4: "198.51.100.1",
  lb6: "2001:db8:1::1",
  lbInside4: "203.0.113.1",
  lbInside6: "2001:db8:2::1",
  backend4: ["203.0.113.10", "203.0.113.11", "203.0.113.12"],
  backend6: ["2001:db8:2::10", "2001:db8:2::11", "2001:db8:2::12"],
} as const;

/** `node dist/src/cli/bin.js` from this file's place in dist/. */
export const TOA_BIN = resolve(dirname(fileURLToPath(import.meta.url)), "../../src/cli/bin.js");

export interface Topology {
  client: Netns;
  balancer: Netns;
  backends: Netns;
  dir: string;
}

/** Create the three namespaces and links; a temp dir for configs and logs. */
export async function createTopology(t: Ctx): Promise<Topology> {
  const client = await Netns.create(t as TestContext, "lbc");
  const balancer = await Netns.create(t as TestContext, "lbl");
  const backends = await Netns.create(t as TestContext, "lbb");
  await link(client, balancer, { a4: `${ADDR.client4}/24`, b4: `${ADDR.lb4}/24`, a6: `${ADDR.client6}/64`, b6: `${ADDR.lb6}/64` });
  const { bIf } = await link(balancer, backends, { a4: `${ADDR.lbInside4}/24`, b4: `${ADDR.backend4[0]}/24`, a6: `${ADDR.lbInside6}/64`, b6: `${ADDR.backend6[0]}/64` });
  for (let i = 1; i < ADDR.backend4.length; i++) {
    await backends.run("ip", ["addr", "add", `${ADDR.backend4[i]}/24`, "dev", bIf]);
    await backends.run("ip", ["-6", "addr", "add", `${ADDR.backend6[i]}/64`, "dev", bIf, "nodad"]);
  }
  // Lots of short connections in tests and benches: wide ephemeral range, quick TIME_WAIT reuse.
  for (const ns of [client, balancer, backends]) {
    await ns.run("sysctl", ["-q", "-w", "net.ipv4.ip_local_port_range=10000 65000", "net.ipv4.tcp_tw_reuse=1", "net.core.somaxconn=8192", "net.ipv4.tcp_max_syn_backlog=8192"]);
  }
  const dir = mkdtempSync(join(tmpdir(), "toa-lb-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { client, balancer, backends, dir };
}

/** One nginx backend: its addresses (v4 and v6 index into ADDR), port, and PROXY protocol or not. */
export interface NginxBackend {
  index: number;
  port?: number;
  proxyProtocol?: boolean;
}

/** A running nginx with its access log. */
export interface Nginx {
  proc: Started;
  accessLog: string;
  lines(): string[];
}

/**
 * Start one nginx (own temp dir: pid, error log, access log, temp paths) serving every backend in
 * `backends` as its own server block. Each answers `backend <n> remote=<$remote_addr>
 * proxy=<$proxy_protocol_addr>`; the access log records the same.
 */
export async function startNginx(
  t: Ctx,
  topo: Topology,
  backends: NginxBackend[],
  name = `nginx${backends.map((b) => b.index).join("")}`,
  opts: { cgroup?: string } = {},
): Promise<Nginx> {
  const dir = join(topo.dir, name);
  const { mkdirSync } = await import("node:fs");
  mkdirSync(dir, { recursive: true });
  const accessLog = join(dir, "access.log");
  const servers = backends
    .map((b) => {
      const pp = b.proxyProtocol ? " proxy_protocol" : "";
      const port = b.port ?? 80;
      return `  server {
    listen ${ADDR.backend4[b.index]}:${port}${pp};
    listen [${ADDR.backend6[b.index]}]:${port}${pp};
    location / { return 200 "backend ${b.index} remote=$remote_addr proxy=$proxy_protocol_addr\\n"; }
    location /big { alias ${dir}/big; }
  }`;
    })
    .join("\n");
  const conf = nginxConf({
    dir,
    servers,
    accessLog: { path: accessLog, format: '$remote_addr $proxy_protocol_addr $server_addr:$server_port "$request" $status' },
    workerConnections: 8192,
    // An idle keep-alive connection must outlive the slowest steps of a test under emulation: nginx
    // closes it after keepalive_timeout, and a client between two requests never gets its answer
    // (6.1-arm64 once, on a loaded machine: lb-drain-reload's third request, sent after two
    // `toa lb --reload` runs of the CLI, went unanswered).
    httpExtra: `  keepalive_timeout ${Math.ceil(scaled(60_000) / 1000)}s;\n  keepalive_requests 100000;`,
  });
  const confPath = join(dir, "nginx.conf");
  writeFileSync(confPath, conf);
  // With a cgroup (the backend's `toa load` target), its listeners and so every accepted socket belong to it.
  const proc = topo.backends.start(t as TestContext, "nginx", ["-c", confPath, "-e", join(dir, "nginx-error.log")], { cgroup: opts.cgroup });
  await waitFor(`nginx ${name} to listen`, async () => {
    if (proc.child.exitCode !== null) throw new Error(`nginx exited: ${proc.output()} ${existsSync(join(dir, "nginx-error.log")) ? readFileSync(join(dir, "nginx-error.log"), "utf8") : ""}`);
    const ss = await topo.backends.run("ss", ["-Htln"]);
    return backends.every((b) => ss.includes(`${ADDR.backend4[b.index]}:${b.port ?? 80}`));
  });
  return {
    proc,
    accessLog,
    lines: () => (existsSync(accessLog) ? readFileSync(accessLog, "utf8").split("\n").filter(Boolean) : []),
  };
}

/** A running `toa lb`. */
export interface RunningLb {
  /** Its instance name (`--instance`, made unique per start unless the args give one). */
  instance: string;
  proc: Started;
  /** The config file (when started from one). */
  configFile?: string;
}

/** Write a YAML config into the topology's dir. */
export function writeConfig(topo: Topology, name: string, yaml: string): string {
  const file = join(topo.dir, name);
  writeFileSync(file, yaml);
  return file;
}

/**
 * Start `toa lb ARGS` in the balancer ns (optionally in a cgroup) and wait until it says it runs and
 * `waitListen` (e.g. "198.51.100.1:80") is bound.
 */
export async function startLb(
  t: Ctx,
  topo: Topology,
  args: string[],
  waitListen: string[],
  opts: { cgroup?: string; nodeArgs?: string[]; hostMounts?: boolean; bin?: string; waitRunning?: boolean } = {},
): Promise<RunningLb> {
  const node = [...(opts.nodeArgs ?? []), opts.bin ?? TOA_BIN, "lb"];
  // Every balancer its own instance: its claim on ports, pins and tc filters are apart from any
  // other's, and removed at teardown whatever the test did.
  let instance = args[args.indexOf("--instance") + 1];
  if (!args.includes("--instance")) {
    instance = `lbt-${process.pid.toString(36)}-${(++lbCount).toString(36)}`;
    args = [...args, "--instance", instance];
  }
  // With a cgroup, enter the netns with nsenter: `ip netns exec` remounts /sys, which hides the
  // cgroup2 mount the TOA sender attaches to, and bpffs (hostMounts: pins that outlive the process).
  const proc = opts.cgroup
    ? start("nsenter", [`--net=/run/netns/${topo.balancer.name}`, "sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', opts.cgroup, process.execPath, ...node, ...args])
    : topo.balancer.start(t as TestContext, process.execPath, [...node, ...args], { hostMounts: opts.hostMounts });
  t.after(async () => {
    await proc.stop();
    await removeLbInstance(instance);
  });
  // Loading toa_nat is the slow part of a packet-path start: seconds under emulation on old kernels.
  const t0 = Date.now();
  if (opts.waitRunning !== false) {
    await waitForProcess(
      "toa lb to listen",
      proc,
      async () => {
        const ss = await topo.balancer.run("ss", ["-Htln"]);
        return waitListen.every((a) => ss.includes(a)) && proc.output().includes("running (pid");
      },
      30_000,
    );
  }
  t.diagnostic?.(`toa lb listening ${Date.now() - t0} ms after its start`);
  const i = args.indexOf("--config");
  return { proc, configFile: i >= 0 ? args[i + 1] : undefined, instance };
}

let lbCount = 0;

/** Take a test balancer's instance away (its pins, tcx links and claim), as `toa lb remove --drain-timeout 0`. */
export async function removeLbInstance(instance: string): Promise<void> {
  const { removeInstanceNow } = await import("../../src/lb/packet/remove.js");
  await removeInstanceNow(instance).catch(() => undefined);
}

/** curl in the client ns; returns the body (throws on failure). */
export function curl(topo: Topology, url: string, extra: string[] = []): Promise<string> {
  return topo.client.run("curl", ["-sS", "--max-time", "10", ...extra, url]);
}

/** Run a Node ES module script (text) in namespace `ns` with JSON `args`; returns parsed JSON stdout. */
export async function nodeScript<T>(ns: Netns, topo: Topology, name: string, source: string, args: unknown, timeoutMs = 60_000): Promise<T> {
  const file = join(topo.dir, `${name}.mjs`);
  writeFileSync(file, source);
  const out = await ns.run(process.execPath, [file, JSON.stringify(args)], { timeoutMs });
  return JSON.parse(out.trim().split("\n").pop()!) as T;
}

/** The balancer's /status.json, fetched from the client namespace. */
export async function lbStatus(topo: Topology, admin: string): Promise<StatusSnapshot> {
  return JSON.parse(await topo.client.run("curl", ["-sS", "--max-time", "5", `http://${admin}/status.json`])) as StatusSnapshot;
}

/** TCP segments a namespace's kernel dropped for a bad checksum (the TCP MIB counts both families). */
export async function tcpCsumErrors(ns: Netns): Promise<number> {
  const lines = (await ns.run("cat", ["/proc/net/snmp"])).split("\n").filter((l) => l.startsWith("Tcp:"));
  const [names, values] = lines.map((l) => l.trim().split(/\s+/));
  return Number(values[names.indexOf("InCsumErrors")]);
}

/**
 * Run a python3 script in the client namespace (string args as they are, others as JSON) and parse
 * the last line it prints as JSON.
 */
export async function clientPy<T>(topo: Topology, source: string, args: unknown[] = [], timeoutMs = 30_000): Promise<T> {
  const out = await topo.client.run("/usr/bin/python3", ["-c", source, ...args.map((a) => (typeof a === "string" ? a : JSON.stringify(a)))], { timeoutMs });
  return JSON.parse(out.trim().split("\n").pop()!) as T;
}

/** Devices (but lo) of a namespace. */
export async function devices(ns: Netns): Promise<string[]> {
  const links = JSON.parse(await ns.run("ip", ["-j", "link", "show"])) as { ifname: string }[];
  return links.map((l) => l.ifname).filter((n) => n !== "lo");
}

/** `ethtool -K DEV FEATURES` on every device of a namespace (offloads off: full checksums on the wire). */
export async function ethtool(ns: Netns, ...features: string[]): Promise<void> {
  for (const d of await devices(ns)) await ns.run("ethtool", ["-K", d, ...features]);
}
