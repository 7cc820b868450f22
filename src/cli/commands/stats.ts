/** `toa stats`: the receiver's counters, summed over CPUs. */
import { Command } from "commander";
import type { Counters } from "../../agent/stats.js";
import type { ReceiverCost } from "../../agent/cost.js";
import { jsonOption, pinDirOption } from "./common.js";
import type { CommandFactory } from "./index.js";
import { UsageError } from "../io.js";

const descriptions: Record<string, string> = {
  syn_recv_sock_toa: "connections that got a client address from a TOA",
  syn_recv_sock_no_toa: "connections with no TOA in SYN or handshake ACK",
  getname_toa_ok: "accept()/getpeername() answered with the client",
  getname_toa_empty: "accept()/getpeername() on a socket without TOA",
  getname_toa_mismatch: "IPv6 client on an IPv4 socket (NAT64): use getsockopt 4096",
  untrusted: "TOA ignored: source not in the trust list",
  malformed: "malformed options ignored",
  nat64: "IPv6 TOA stored on IPv4 sockets",
  nat64_lookup_ok: "getsockopt(IPPROTO_IP, 4096) answered",
  found_in_syn: "TOA found in the SYN",
  found_in_ack: "TOA found in the handshake ACK",
  found_in_data: "TOA found in a data segment",
  data_search_stopped: "stopped looking in data segments",
};

function renderCost(c: ReceiverCost): string {
  const n = (x: number, d = 0) => x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
  const head = `${c.connections} connections in ${n(c.seconds, 1)} s (${c.withToa} with a TOA)`;
  if (c.connections === 0) return `${head}: nothing to divide by; measure while connections come in (a longer --bpf, or during a load test)`;
  const rows = c.programs.map((p) => `${p.name.padEnd(14)} ${n(p.runsPerConnection, 2).padStart(8)} ${n(p.nsPerRun).padStart(8)} ${n(p.nsPerConnection).padStart(10)}`);
  return [head, `${"program".padEnd(14)} ${"runs/conn".padStart(8)} ${"ns/run".padStart(8)} ${"ns/conn".padStart(10)}`, ...rows, `${"all".padEnd(14)} ${"".padStart(8)} ${"".padStart(8)} ${n(c.nsPerConnection).padStart(10)}`].join("\n");
}

function render(c: Counters, receiverCounterNames: readonly (keyof Counters)[]): string {
  return receiverCounterNames.map((n) => `${n.padEnd(22)} ${String(c[n]).padStart(12)}  ${descriptions[n] ?? ""}`).join("\n");
}

export const statsCommand: CommandFactory = (io, exit) =>
  new Command("stats")
    .summary("show the receiver's counters (toa.ko's names and more)")
    .description("Counters of the loaded receiver, summed over CPUs. The first ones carry toa.ko's /proc/net/toa_stats names so existing dashboards map one to one.")
    .addOption(pinDirOption())
    .addOption(jsonOption())
    .option("--watch [seconds]", "print again every N seconds (default 1) with the change since the last print; Ctrl-C stops")
    .option("--prometheus", "print the counters in the Prometheus text format")
    .option("--serve <addr:port>", "serve Prometheus /metrics on this address (e.g. 127.0.0.1:9101) until stopped")
    .option("--bpf [seconds]", "measure what the programs cost, from the kernel's own run statistics, over N seconds of this host's traffic (default 10); switched on for the measurement only")
    .addHelpText(
      "after",
      "\nExamples:\n  toa stats --watch 5\n  toa stats --json | jq .untrusted\n  toa stats --serve 127.0.0.1:9101      # Prometheus scrapes http://127.0.0.1:9101/metrics\n  toa stats --bpf 30                    # ns per connection of each program, over 30 s",
    )
    .action(async (opts: { pinDir: string; json?: boolean; watch?: string | boolean; prometheus?: boolean; serve?: string; bpf?: string | boolean }) => {
      const { receiverCounters, receiverCounterNames } = await import("../../agent/stats.js");
      if (opts.bpf !== undefined) {
        const secs = opts.bpf === true ? 10 : Number(opts.bpf);
        if (typeof opts.bpf === "string" && (!/^\d+(\.\d+)?$/.test(opts.bpf.trim()) || !(secs > 0))) {
          throw new UsageError(`--bpf: "${opts.bpf}" is not a number of seconds above 0: write e.g. --bpf 30 (or --bpf alone for 10 s)`);
        }
        if (!receiverCounters(opts.pinDir)) throw new UsageError(`nothing loaded at ${opts.pinDir}: run \`toa load\` first`, 3);
        if (!opts.json) io.err(`measuring for ${secs} s (kernel run statistics on meanwhile)…`);
        const { measureReceiverCost } = await import("../../agent/cost.js");
        const cost = await measureReceiverCost(opts.pinDir, { seconds: secs });
        io.out(opts.json ? JSON.stringify(cost) : renderCost(cost));
        return exit(0);
      }
      // Checked before anything is read, so a wrong value never passes silently.
      const seconds = opts.watch === undefined || opts.watch === true ? 1 : Number(opts.watch);
      if (typeof opts.watch === "string" && (!/^\d+(\.\d+)?$/.test(opts.watch.trim()) || !(seconds > 0))) {
        throw new UsageError(`--watch: "${opts.watch}" is not a number of seconds above 0: write e.g. --watch 5 (or --watch alone for every second)`);
      }
      if (opts.serve !== undefined) {
        const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(opts.serve);
        if (!m || Number(m[3]) > 65535) throw new UsageError(`--serve: "${opts.serve}" is not ADDR:PORT; write e.g. 127.0.0.1:9101 or [::1]:9101`);
        if (!receiverCounters(opts.pinDir)) throw new UsageError(`nothing loaded at ${opts.pinDir}: run \`toa load\` first`, 3);
        const { serveMetrics } = await import("../../agent/exporter.js");
        const server = await serveMetrics(opts.pinDir, m[1] ?? m[2], Number(m[3]));
        const a = server.address() as { address: string; port: number };
        io.out(`serving the receiver's counters on http://${a.address.includes(":") ? `[${a.address}]` : a.address}:${a.port}/metrics`);
        await new Promise<void>((resolve) => {
          for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => server.close(() => resolve()));
        });
        return exit(0);
      }
      if (opts.prometheus) {
        if (!receiverCounters(opts.pinDir)) throw new UsageError(`nothing loaded at ${opts.pinDir}: run \`toa load\` first`, 3);
        const { receiverRegistry } = await import("../../agent/exporter.js");
        io.out(await receiverRegistry(opts.pinDir).metrics());
        return exit(0);
      }
      const read = () => {
        const c = receiverCounters(opts.pinDir);
        if (!c) throw new UsageError(`nothing loaded at ${opts.pinDir}: run \`toa load\` first`, 3);
        return c;
      };
      const first = read();
      io.out(opts.json ? JSON.stringify(first) : render(first, receiverCounterNames));
      if (opts.watch === undefined) return exit(0);
      let last = first;
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          const now = read();
          if (opts.json) io.out(JSON.stringify(now));
          else {
            io.out(`--- ${new Date().toISOString()}`);
            io.out(receiverCounterNames.map((n) => `${n.padEnd(22)} ${String(now[n]).padStart(12)} ${now[n] - last[n] ? `(+${now[n] - last[n]})` : ""}`).join("\n"));
          }
          last = now;
        }, seconds * 1000);
        process.once("SIGINT", () => {
          clearInterval(timer);
          resolve();
        });
      });
      exit(0);
    });
