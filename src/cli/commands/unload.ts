/** `toa unload`: detach and unpin everything a load made; idempotent. */
import { Command } from "commander";
import { jsonOption, pinDirOption } from "./common.js";
import type { CommandFactory } from "./index.js";

export const unloadCommand: CommandFactory = (io, exit) =>
  new Command("unload")
    .summary("detach and unpin the receiver (safe to run twice)")
    .description(
      "Detach the programs a `toa load` attached and remove its pins. Applications go back to seeing the load balancer's address for new connections. " +
        "Only toa's own pins are removed (known names, each checked to hold the kernel object a load pins there); anything else in the folder stays, " +
        "and the folder goes only when it is empty then. A folder that is not on bpffs is refused. Running it when nothing is loaded is not an error.",
    )
    .addOption(pinDirOption())
    .addOption(jsonOption())
    .action(async (opts: { pinDir: string; json?: boolean }) => {
      const { unloadReceiver } = await import("../../agent/unload.js");
      const r = unloadReceiver(opts.pinDir);
      if (opts.json) io.out(JSON.stringify(r, null, 2));
      else if (r.wasLoaded) io.out(`TOA: toa unloaded: detached ${r.detached.join(", ") || "nothing"}; removed ${r.unpinned.length} pins from ${opts.pinDir}`);
      else io.out(`TOA: nothing loaded at ${opts.pinDir}`);
      if (!opts.json) {
        for (const k of r.kept) io.err(`toa: left ${k.path}: it ${k.reason}, so it is not toa's`);
        if (r.foreign.length) io.err(`toa: left ${r.foreign.length} entr${r.foreign.length > 1 ? "ies" : "y"} that toa did not make in ${opts.pinDir} (${r.foreign.map((f) => f.slice(opts.pinDir.length + 1)).join(", ")}), so the folder stays`);
      }
      exit(0);
    });
