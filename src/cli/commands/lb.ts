/** `toa lb`: the full-NAT layer-4 load balancer (src/lb). Thin: parse, build the config, run, print. */
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync, rmSync } from "node:fs";
import { request } from "node:http";
import { Command, Option } from "commander";
import type { Io } from "../io.js";
import { UsageError } from "../io.js";
import type { CommandFactory } from "./index.js";
import type { ClientAddressWriter } from "../../lb/client-address.js";
import type { LbConfig } from "../../lb/config.js";
import { CLIENT_ADDRESS_MODES, SCHEDULERS, DEFAULTS } from "../../lb/choices.js";
import { hasInlineConfig, type LbFlags, rawConfigFromFlags } from "../../lb/flags.js";
import { ConfigError } from "../../lb/errors.js";
import { formatEndpoint } from "../../lb/endpoint.js";
import { handleSignals } from "../../lb/signals.js";
import { lbInstallServiceCommand, lbRemoveCommand, lbUninstallServiceCommand } from "./lb-instance.js";

interface LbOptions extends LbFlags {
  config?: string;
  instance?: string;
  check?: boolean;
  reload?: boolean;
  pidFile?: string;
  cgroup?: string;
  logLevel: string;
}

const HELP = `
Client address modes (per listener):
  toa        write the client address as a TCP option (kind 254) in the backend connection's
             handshake ACK; backends run \`toa load\` (or toa.ko). Needs root (eBPF sock_ops).
  proxy-v2   send a binary PROXY protocol v2 header first (nginx: listen ... proxy_protocol;
             HAProxy: accept-proxy)
  proxy-v1   the text PROXY protocol v1 line
  none       plain full-NAT: backends see the balancer's address

Schedulers: round-robin, weighted-round-robin (smooth, nginx-style), least-connections,
source-hash (consistent hash of the client address, 160 points per unit of weight).

Examples:
  # one-liner: two backends, PROXY v2, status page on :9100
  toa lb --listen 198.51.100.1:80 --backend 203.0.113.10:80 --backend 203.0.113.11:80 \\
         --mode proxy-v2 --admin 127.0.0.1:9100

  # weights, IPv6 listener, HTTP health check
  toa lb --listen '[2001:db8:1::1]:80' --backend 203.0.113.10:80*3 --backend 203.0.113.11:80 \\
         --scheduler weighted-round-robin --health http:/healthz=200 --mode none

  # from a file (reference: docs/lb.md)
  toa lb --check --config /etc/toa/lb.yaml     # validate; exit 1 naming the file and field
  toa lb --config /etc/toa/lb.yaml             # run in the foreground; logs are JSON (pino)
  toa lb --reload --config /etc/toa/lb.yaml    # POST /reload to its admin listener (or: kill -HUP)

Signals: SIGHUP reloads the config file, keeping established connections. SIGTERM/SIGINT: the JS
relay drains (stops accepting, waits up to drainTimeout, closes; a second signal closes at once);
the packet path is left serving from the kernel, and the next start adopts it with no connection lost.
Admin listener: / (status page), /status.json, /metrics (Prometheus), POST /reload.

The packet path's instance (tables, program, links) is pinned in packet.pinDir
(/sys/fs/bpf/toa-lb/<instance>): crashes, restarts and upgrades keep every connection.
  toa lb remove --config /etc/toa/lb.yaml      # take it away: stop new SYNs, drain, unpin
  toa lb install-service --config /etc/toa/lb.yaml   # systemd unit (restart = hitless for the packet path)
`;

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** Load the config from --config or the one-liner flags. */
async function buildConfig(o: LbOptions): Promise<LbConfig> {
  // Loaded when a command runs, not when the command tree is built (every `toa` start).
  const { loadConfigFile, validateConfig } = await import("../../lb/config.js");
  const overrides = o.instance !== undefined ? { instance: o.instance } : {};
  if (o.config) {
    if (hasInlineConfig(o)) throw new UsageError("use either --config FILE or --listen/--backend, not both");
    return loadConfigFile(o.config, overrides);
  }
  if (!o.listen?.length || !o.backend?.length) throw new UsageError("give --config FILE, or at least one --listen ADDR:PORT and one --backend ADDR:PORT");
  return validateConfig(rawConfigFromFlags(o), "command line", overrides);
}

/** What --check says of the pinned instance this config would adopt. */
async function instanceSummary(c: LbConfig): Promise<string> {
  const { describePinnedInstance } = await import("../../lb/packet/describe.js");
  return describePinnedInstance(c);
}

function summary(c: LbConfig): string {
  const backends = Object.values(c.pools).reduce((n, p) => n + p.backends.length, 0);
  const lines = [`${c.source}: ok: ${c.listeners.length} listener(s), ${Object.keys(c.pools).length} pool(s), ${backends} backend(s)`];
  for (const l of c.listeners) lines.push(`  ${l.name}: ${formatEndpoint(l.listen)} (${l.mode === "toa" ? `toa kind ${l.toaKind}` : l.mode}${l.dataPath === "packet" ? ", packet path" : ""}) → ${l.pool} [${c.pools[l.pool].scheduler}: ${c.pools[l.pool].backends.map((b) => (b.weight === 1 ? b.id : `${b.id}*${b.weight}`)).join(", ")}]`);
  if (c.admin) lines.push(`  admin: http://${formatEndpoint(c.admin)}/`);
  return lines.join("\n");
}

/** POST /reload to the admin listener of the config. */
function postReload(c: LbConfig): Promise<string> {
  if (!c.admin) throw new UsageError(`${c.source} has no admin listener: use --pid-file FILE (SIGHUP) or kill -HUP <pid>`);
  const host = c.admin.address === "0.0.0.0" ? "127.0.0.1" : c.admin.address === "::" ? "::1" : c.admin.address;
  return new Promise((resolve, reject) => {
    const req = request({ host, port: c.admin!.port, path: "/reload", method: "POST", timeout: 10_000 }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => (res.statusCode === 200 ? resolve(body.trim()) : reject(new Error(`reload refused: ${body.trim()}`))));
    });
    req.on("error", (e) => reject(new Error(`cannot reach the admin listener at ${formatEndpoint(c.admin!)}: ${e.message}`)));
    req.end();
  });
}

async function runBalancer(o: LbOptions, config: LbConfig, io: Io): Promise<number> {
  const { pino } = await import("pino");
  const { Balancer } = await import("../../lb/balancer.js");
  const { loadToaSender, ownCgroupPath, senderCgroupWarning } = await import("../../lb/sender/load.js");
  const { loadConfigFile } = await import("../../lb/config.js");
  const log = pino({ level: o.logLevel, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
  // Loads and attaches the TOA sender when a listener in toa mode first needs it: at start, or in the
  // reload that switches one to toa.
  const openWriter = async (): Promise<ClientAddressWriter> => {
    if (o.cgroup) {
      const warning = senderCgroupWarning(o.cgroup, ownCgroupPath());
      if (warning) {
        io.err(`warning: ${warning}`);
        log.warn(warning);
      }
    }
    const kind = config.listeners.find((l) => l.mode === "toa")?.toaKind ?? DEFAULTS.toaKind;
    return (await loadToaSender({ cgroupPath: o.cgroup, kind }))();
  };
  const { checkClaims, removeClaim, writeClaim } = await import("../../lb/claims.js");
  const startedMs = Date.now();
  // Another live process serving this instance, or ports another instance uses towards a backend: refused.
  checkClaims(config);
  const overrides = o.instance !== undefined ? { instance: o.instance } : {};
  const balancer = await Balancer.start(config, {
    log,
    openWriter,
    loadConfig: o.config ? () => loadConfigFile(o.config!, overrides) : undefined,
    // Each config in force (start, reloads) is this instance's claim on its ports.
    beforeApply: (next) => checkClaims(next),
    onApplied: (applied, hasPacket) => writeClaim(applied, hasPacket, startedMs),
  });
  if (o.pidFile) writeFileSync(o.pidFile, `${process.pid}\n`);
  io.err(`toa lb: running (pid ${process.pid}); SIGHUP reloads, SIGTERM stops (the packet path serves on)`);
  notifyReady();
  return await handleSignals(process, balancer, log, {
    canReload: o.config !== undefined,
    onStopped: () => {
      if (o.pidFile) rmSync(o.pidFile, { force: true });
      // A packet instance keeps its claim: the kernel goes on using its ports.
      if (!balancer.hasPacketInstance()) removeClaim(config.instance);
      log.flush();
    },
  });
}

export const lbCommand: CommandFactory = (io, exit) =>
  new Command("lb")
    // Options after a subcommand (`toa lb remove --instance X`) are the subcommand's.
    .enablePositionalOptions()
    .description("Full-NAT layer-4 load balancer that passes the client address to backends (TOA, PROXY v1/v2)")
    .option("-c, --config <file>", "YAML config file (reference: docs/lb.md)")
    .option("--check", "validate the config and exit (0 = ok, 1 = refused)")
    .option("--reload", "make the running balancer reload its config (admin POST /reload, or SIGHUP with --pid-file)")
    .option("--pid-file <file>", "write the pid here; with --reload, send SIGHUP to it")
    .option("-l, --listen <addr:port>", "listen address, e.g. 198.51.100.1:80 or '[2001:db8::1]:80' (repeatable)", collect)
    .option("-b, --backend <addr:port[*weight]>", "backend, e.g. 203.0.113.10:80 or 203.0.113.11:80*3 (repeatable)", collect)
    .addOption(new Option("-m, --mode <mode>", `client address mode (default ${DEFAULTS.mode})`).choices(CLIENT_ADDRESS_MODES as string[]))
    .addOption(new Option("-s, --scheduler <name>", `backend choice (default ${DEFAULTS.scheduler})`).choices(SCHEDULERS as string[]))
    .option("--toa-kind <n>", `TCP option kind of the TOA (default ${DEFAULTS.toaKind}; 200 for Tencent/old LVS)`)
    .option("--health <check>", "health check: tcp, or http:/path[=status]")
    .option("--connect-timeout <duration>", "backend connect timeout (default 3s)")
    .option("--idle-timeout <duration>", "close a connection idle this long (default 5m)")
    .option("--drain-timeout <duration>", "how long SIGTERM waits for connections (default 30s)")
    .option("--source-address <addr>", "local address for backend connections (repeatable; FULLNAT local address pool)", collect)
    .option("--source-ports <first-last>", "local ports for toa mode and the packet path (default 10000-32767, below the kernel's ephemeral range)")
    .addOption(new Option("--data-path <path>", "js (default): two sockets per connection, bytes relayed in JS (every mode); packet: no socket on the balancer, the kernel rewrites packets (full NAT, modes toa, proxy-v2, none). See docs/lb.md").choices(["packet", "js"]))
    .option("--admin <addr:port>", "admin listener: status page, /metrics, /status.json, POST /reload")
    .option("--cgroup <dir>", "cgroup v2 folder to attach the TOA sender to (default: the balancer's own)")
    .option("--instance <name>", "the instance's name (over the config's `instance:`; default \"default\"): names the packet path's pin folder /sys/fs/bpf/toa-lb/<name>, its tc filters and its claim on source ports")
    .option("--log-level <level>", "pino log level: fatal, error, warn, info, debug", "info")
    .addHelpText("after", HELP)
    .action(async (o: LbOptions) => {
      if (o.reload && o.pidFile && !o.config) {
        const pid = Number(readFileSync(o.pidFile, "utf8").trim());
        process.kill(pid, "SIGHUP");
        io.out(`sent SIGHUP to ${pid}`);
        return exit(0);
      }
      let config: LbConfig;
      try {
        config = await buildConfig(o);
      } catch (e) {
        if (e instanceof ConfigError) {
          io.err(`toa lb: config refused:\n${e.message}`);
          return exit(1);
        }
        throw e;
      }
      if (o.check) {
        io.out(summary(config));
        io.out(await instanceSummary(config));
        return exit(0);
      }
      if (o.reload) {
        if (o.pidFile) {
          const pid = Number(readFileSync(o.pidFile, "utf8").trim());
          process.kill(pid, "SIGHUP");
          io.out(`sent SIGHUP to ${pid}`);
        } else io.out(await postReload(config));
        return exit(0);
      }
      exit(await runBalancer(o, config, io));
    })
    .addCommand(lbRemoveCommand(io, exit))
    .addCommand(lbInstallServiceCommand(io, exit))
    .addCommand(lbUninstallServiceCommand(io, exit));

/** READY=1 for systemd (Type=notify) once serving; nothing without a notify socket. */
function notifyReady(): void {
  if (!process.env.NOTIFY_SOCKET) return;
  execFile("systemd-notify", ["--ready", `--pid=${process.pid}`], () => undefined);
}
