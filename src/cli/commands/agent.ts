/** `toa agent`: keep the receiver attached to target cgroups as services and pods come and go. */
import { execFile } from "node:child_process";
import { Command, Option } from "commander";
import { DEFAULT_AGENT_LISTEN, DEFAULT_AGENT_PIN_BASE } from "../../agent/defaults.js";
import type { AgentOptions } from "./agent-flags.js";
import type { CommandFactory } from "./index.js";

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

const HELP = `
Targets (repeatable, any mix):
  --unit nginx.service                                a systemd unit, wherever its slice puts it
  --target system.slice/nginx.service                 a cgroup folder, relative to the cgroup v2 mount
  --target 'kubepods.slice/**/cri-containerd-*.scope' a glob: * and ? within a name, ** any depth
  --target /                                          the cgroup v2 root: the whole host

How it works: one receiver per target cgroup, pinned in its own folder below --pin-base
(<pin-base>/<cgroup path, / as _ and . as ->-<hash>, e.g. system-slice_nginx-service-a4dad00b), so \`toa status --pin-dir\` and \`toa unload\` work on
each. New cgroup folders are seen through inotify and attached at once (typically in
0.1-0.2 s, mostly the verifier); a cgroup removed and made again (systemctl restart, a pod restart) gets new links to
the same pinned maps. It never detaches a cgroup that still exists; the pins of a removed one are
kept --keep-gone seconds for it to come back, then removed. SIGHUP reloads --config; SIGTERM stops
the agent and leaves every program attached.

Endpoints (--listen, default ${DEFAULT_AGENT_LISTEN}; "off" for none):
  /metrics   Prometheus: toa_agent_targets{state}, toa_agent_attach_total{result},
             toa_agent_attach_seconds, and the receiver counters per target cgroup
  /healthz   200 when every target cgroup has the receiver attached, else 503 with the reason
  /targets   JSON: each target cgroup, its pin folder and state

Config file (--config, YAML; flags given on the command line win):
  targets: ["kubepods.slice/**/cri-containerd-*.scope"]
  units: [nginx.service]
  trust: [100.125.0.0/16]
  kinds: [254, 253, 200]

Examples:
  toa agent --unit nginx.service --trust 100.125.0.0/16
  toa agent --target 'kubepods.slice/**/cri-containerd-*.scope' --trust 10.0.0.0/8 --listen 0.0.0.0:9102
  toa agent --check --config /etc/toa/agent.yaml     # validate, show what matches now, exit
  toa install-service --unit nginx.service --trust 100.125.0.0/16   # run it from systemd`;

/** The agent's options, shared with install-service (which passes them on). */
export function addAgentOptions(cmd: Command): Command {
  return cmd
    .option("--target <path|glob>", "cgroup folder or glob to keep the receiver on (repeatable)", collect)
    .option("--unit <name>", "systemd unit whose cgroup to keep the receiver on (repeatable)", collect)
    .option("--trust <cidrs>", "load balancer source addresses allowed to send a TOA, comma separated; without it every source is believed")
    .option("--kinds <kinds>", "TCP option kinds to accept, comma separated (default 254,253,200)")
    .option("--syn", "also look for the TOA in the SYN (balancers that write it there only); on by default only with kind 28")
    .option("--no-syn", "don't look for the TOA in the SYN, even with kind 28")
    .option("--pin-base <dir>", `bpffs folder holding one pin folder per target cgroup (default ${DEFAULT_AGENT_PIN_BASE})`)
    .option("--listen <addr:port>", `serve /metrics and /healthz here (default ${DEFAULT_AGENT_LISTEN}; "off": none)`)
    .option("--keep-gone <seconds>", "keep a removed cgroup's pins this long for it to come back (default 600)")
    .option("--resync <seconds>", "check every target this often, a safety net besides inotify (default 60)")
    .addOption(new Option("--log-level <level>", "pino log level (default info)").choices(["fatal", "error", "warn", "info", "debug", "trace"]));
}

/** Tell systemd (Type=notify) the agent is watching: units ordered after it start only then. */
function notifyReady(): void {
  if (!process.env.NOTIFY_SOCKET) return;
  execFile("systemd-notify", ["--ready", `--pid=${process.pid}`], () => undefined);
}

export const agentCommand: CommandFactory = (io, exit) =>
  addAgentOptions(
    new Command("agent")
      .summary("keep the receiver attached to services' and pods' cgroups, through restarts")
      .description(
        "Run in the foreground and keep the receiver attached to target cgroups (paths, globs, systemd units): " +
          "attach when a matching cgroup appears (inotify), re-attach when one is removed and made again (a service or pod restart), " +
          "serve /metrics and /healthz, log JSON (pino). SIGHUP reloads --config; SIGTERM stops it, leaving the programs in place.",
      )
      .option("-c, --config <file>", "YAML config file (keys: targets, units, trust, kinds, syn, pinBase, listen, keepGoneSeconds, resyncSeconds, logLevel)"),
  )
    .option("--check", "validate the config, show the cgroups that match now, and exit (0 = ok, 2 = refused)")
    .option("--json", "with --check: print JSON")
    .addHelpText("after", HELP)
    .action(async (o: AgentOptions) => {
      const { agentConfigFromFlags, mountOrDefault } = await import("./agent-flags.js");
      const { formatCidr } = await import("../../wire/cidr.js");
      const mount = mountOrDefault();
      const config = agentConfigFromFlags(o, mount);
      if (o.check) {
        // Which cgroups match now: the watcher's own walk, without watching.
        const { CgroupWatcher } = await import("../../agent/cgroup-watch.js");
        const { targetPinDir } = await import("../../agent/targets.js");
        const now: { cgroup: string; pinDir: string; matchedBy: string[] }[] = [];
        const w = new CgroupWatcher(mount, config.targets, { appeared: (path, segments, targets) => now.push({ cgroup: path, pinDir: targetPinDir(config.pinBase, segments), matchedBy: targets.map((t) => t.text) }), vanished: () => undefined });
        try {
          w.start();
        } finally {
          w.close();
        }
        const summary = {
          source: config.source,
          targets: config.targets.map((t) => t.text),
          kinds: config.kinds,
          trust: config.trust.map(formatCidr),
          syn: config.syn,
          pinBase: config.pinBase,
          listen: config.listen ? `${config.listen.host}:${config.listen.port}` : null,
          matchingNow: now,
        };
        if (o.json) io.out(JSON.stringify(summary, null, 2));
        else {
          io.out(`${config.source}: ok: ${config.targets.length} target(s): ${summary.targets.join(", ")}`);
          io.out(`  kinds ${config.kinds.join(",")}, trust ${summary.trust.join(",") || "ANY SOURCE"}, pins under ${config.pinBase}, endpoints ${summary.listen ?? "off"}`);
          io.out(now.length ? `  matching now:\n${now.map((m) => `    ${m.cgroup}  (pins ${m.pinDir})`).join("\n")}` : "  matching now: none (the agent attaches when they appear)");
        }
        return exit(0);
      }
      if (process.getuid?.() !== 0) io.err("warning: toa agent needs root (or CAP_BPF + CAP_NET_ADMIN) to load the receiver");
      const { pino } = await import("pino");
      const { Agent } = await import("../../agent/agent.js");
      const { serveAgent } = await import("../../agent/agent-server.js");
      const log = pino({ level: config.logLevel, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
      if (config.trust.length === 0) log.warn("no trust list: a TOA from any source is believed; give --trust with the load balancers' addresses");
      const agent = new Agent(config, mount, log);
      agent.start();
      const server = config.listen ? await serveAgent(agent, config.listen.host, config.listen.port) : undefined;
      if (server) {
        const a = server.address() as { address: string; port: number };
        log.info({ address: a.address, port: a.port }, "serving /metrics and /healthz");
      }
      notifyReady();
      const code = await new Promise<number>((resolve) => {
        const onHup = (): void => {
          if (!o.config) return void log.warn("SIGHUP: no --config file to reload; targets came from the command line");
          try {
            agent.reconfigure(agentConfigFromFlags(o, mount));
          } catch (e) {
            log.error({ err: (e as Error).message }, "config reload refused; the previous config stays");
          }
        };
        const onTerm = (sig: string): void => {
          log.info(`${sig}: stopping; the receivers stay attached`);
          process.off("SIGHUP", onHup);
          process.off("SIGTERM", onTerm);
          process.off("SIGINT", onTerm);
          agent.stop();
          const done = () => {
            log.flush();
            resolve(0);
          };
          if (server) server.close(done);
          else done();
          server?.closeAllConnections();
        };
        process.on("SIGHUP", onHup);
        process.on("SIGTERM", onTerm);
        process.on("SIGINT", onTerm);
      });
      exit(code);
    });
