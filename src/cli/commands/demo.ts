/** `toa demo`: see TOA work in ten seconds, in network namespaces that are removed afterwards. */
import { Argument, Command, Option } from "commander";
import { jsonOption } from "./common.js";
import type { CommandFactory } from "./index.js";

const HELP = `
What it does (as root; nothing outside what it creates is touched):
  1. three network namespaces joined by veth links, documentation addresses only:
       client 198.51.100.2 ─▶ balancer 198.51.100.1 │ 203.0.113.1 ─▶ backend 203.0.113.2
       (and 2001:db8:1::/64, 2001:db8:2::/64 for IPv6)
  2. two cgroups made for the demo (…/toa-demo-ID/balancer and …/backend), never the root cgroup
  3. \`toa lb\` in mode toa in the balancer (its TOA sender attached to the balancer's cgroup) and a
     plain Node HTTP server in the backend that answers with the peer address accept() gave it
  4. requests from the client before and after \`toa load\` on the backend's cgroup
  5. removes the processes, receiver pins, cgroups and namespaces (also on Ctrl-C or failure)

Examples:
  sudo npx toa demo                 # the table: without toa → the balancer; with toa → the client
  sudo npx toa demo --json          # the same as JSON (progress goes to stderr)
  sudo npx toa demo --data-path packet   # the balancer as LVS FULLNAT does it: no socket, the kernel writes the TOA
  sudo npx toa demo --keep          # leave it running to poke around (toa doctor --port 8080, ...)
  sudo npx toa demo --cleanup ID    # remove a run left with --keep ("all": every leftover run)`;

export const demoCommand: CommandFactory = (io, exit) =>
  new Command("demo")
    .summary("show TOA working end to end: client → toa lb → backend in network namespaces")
    .description(
      "Build a client, load balancer and backend in throwaway network namespaces, send requests through " +
        "`toa lb` before and after `toa load` on the backend's cgroup, and print what the backend saw each " +
        "time: the balancer's address without toa, the client's with it. Then remove everything.",
    )
    .option("--keep", "leave the namespaces, processes and receiver up; prints how to remove them")
    .option("--cleanup <id>", 'remove what a `--keep` run left ("all": every leftover demo)')
    .option("--ipv4-only", "skip the IPv6 requests")
    .addOption(new Option("--data-path <path>", "how toa lb forwards: js (a relay, default) or packet (the kernel rewrites packets)").choices(["js", "packet"]))
    .addOption(jsonOption())
    .addHelpText("after", HELP)
    .action(async (opts: { keep?: boolean; cleanup?: string; ipv4Only?: boolean; json?: boolean; dataPath?: "js" | "packet" }) => {
      const { cleanupById, formatDemo, leftoverIds, runDemo } = await import("../../demo/run.js");
      if (opts.cleanup) {
        const left = leftoverIds();
        if (opts.cleanup !== "all" && !left.includes(opts.cleanup)) {
          io.err(`toa demo --cleanup: no demo "${opts.cleanup}" is left (no namespace, cgroup, pin folder or state file of that id); ${left.length ? `leftover demos: ${left.join(", ")}; ` : "no demo is left; "}\`toa demo --cleanup all\` removes every leftover one`);
          return exit(1);
        }
        const ids = opts.cleanup === "all" ? left : [opts.cleanup];
        let failed = false;
        for (const id of ids) {
          const errs = await cleanupById(id);
          for (const e of errs) io.err(`toa demo --cleanup ${id}: ${e}`);
          failed ||= errs.length > 0;
          if (!errs.length) io.out(`removed demo ${id}`);
        }
        if (!ids.length) io.out("no demo left to clean up");
        return exit(failed ? 1 : 0);
      }
      const result = await runDemo({ keep: opts.keep, ipv4Only: opts.ipv4Only, dataPath: opts.dataPath, progress: (l) => io.err(l) });
      if (opts.json) io.out(JSON.stringify(result, null, 2));
      else {
        io.out(formatDemo(result));
        if (result.kept) {
          const s = result.state;
          io.out(
            [
              "",
              `kept running (demo ${s.id}). Try:`,
              `  ip netns exec ${s.netns.client} curl http://198.51.100.1/`,
              `  toa status --pin-dir ${s.pinDir}`,
              `  toa doctor --pin-dir ${s.pinDir} --pid ${s.pids.backend}`,
              `remove it all: toa demo --cleanup ${s.id}`,
            ].join("\n"),
          );
        }
      }
      exit(result.ok ? 0 : 1);
    });

/**
 * `toa demo-peer`, hidden: the demo's backend and client, which the demo starts as toa itself inside
 * its namespaces (the single executable has no node to run scripts with).
 *
 *   toa demo-peer backend PORT   HTTP server on [::]:PORT answering with the peer accept() gave it
 *   toa demo-peer get URL        one GET; prints JSON: status, body, the local address:port used
 */
export const demoPeerCommand: CommandFactory = (io, exit) =>
  new Command("demo-peer")
    .summary("the demo's backend and client (started by `toa demo`)")
    .addArgument(new Argument("<role>", "backend or get").choices(["backend", "get"]))
    .argument("<target>", "backend: the port; get: the URL")
    .action(async (role: "backend" | "get", target: string) => {
      const { getOnce, serveWhoAmI } = await import("../../demo/peers.js");
      if (role === "get") {
        try {
          io.out(JSON.stringify(await getOnce(target)));
          return exit(0);
        } catch (e) {
          io.err((e as Error).message);
          return exit(1);
        }
      }
      const server = serveWhoAmI(Number(target), () => io.out("backend listening"));
      const code = await new Promise<number>((resolve) => {
        process.once("SIGTERM", () => resolve(0));
        server.once("error", (e) => {
          io.err(`toa demo-peer backend: ${e.message}`);
          resolve(1);
        });
      });
      server.close();
      server.closeAllConnections();
      exit(code);
    });
