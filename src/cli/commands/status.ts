/** `toa status`: where the receiver is attached, its settings, kernel support and warnings. */
import { Command } from "commander";
import { jsonOption, pinDirOption } from "./common.js";
import type { CommandFactory } from "./index.js";

export const statusCommand: CommandFactory = (io, exit) =>
  new Command("status")
    .summary("show what is loaded, where, with which settings, and warnings")
    .description("Show the receiver loaded at --pin-dir: the cgroup it is attached to, each hook and whether the kernel still has our program there, the settings, kernel feature support and warnings (no trust list, another getpeername program such as Cilium's on the same cgroup). Exit 0 when loaded with every hook attached, 1 when a hook is gone (its cgroup was removed: a service or pod restart), 3 when nothing is loaded.")
    .addOption(pinDirOption())
    .addOption(jsonOption())
    .action(async (opts: { pinDir: string; json?: boolean }) => {
      const { receiverStatus } = await import("../../agent/status.js");
      const { formatCidr } = await import("../../wire/cidr.js");
      const s = receiverStatus(opts.pinDir);
      if (opts.json) {
        io.out(JSON.stringify(s, null, 2));
      } else if (!s.settings) {
        io.out(`toa: not loaded (no pins in ${s.pinDir}); run \`toa load\``);
      } else {
        const st = s.settings;
        const lines = [
          `toa: loaded ${st.loadedAt} (attach mode: ${st.mode === "link" ? "bpf_link, pinned" : "prog-attach multi"})`,
          `  cgroup:  ${st.cgroup}`,
          `  pins:    ${st.pinDir}`,
          `  kinds:   ${st.kinds.join(", ")}`,
          `  trust:   ${st.trust.length ? st.trust.map(formatCidr).join(", ") : "ANY SOURCE"}`,
          `  syn:     ${st.syn ? "saved SYN searched" : "not searched"}`,
          "  hooks:",
          ...s.attached.map((a) => `    ${a.attached ? "ok  " : "GONE"} ${a.hook} (program id ${a.programId})`),
        ];
        if (s.foreign.length) lines.push("  other programs on these hooks:", ...s.foreign.map((f) => `    ${f.hook}: id ${f.id} "${f.name}"`));
        io.out(lines.join("\n"));
      }
      const missing = s.features.filter((f) => !f.available);
      if (!opts.json) {
        io.out(missing.length ? `kernel: missing ${missing.map((f) => f.name).join("; ")}` : "kernel: every feature the receiver needs is there");
        for (const w of s.warnings) io.err(`warning: ${w}`);
        if (s.fix) io.err(`toa: ${s.gone.length} hook${s.gone.length > 1 ? "s are" : " is"} gone (${s.gone.join(", ")}): TOA is off for new connections in ${s.settings?.cgroup}. Fix: ${s.fix}`);
      }
      exit(!s.loaded ? 3 : s.gone.length ? 1 : 0);
    });
