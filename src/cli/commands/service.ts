/**
 * `toa install-service` / `toa uninstall-service`: a systemd unit that loads the receiver at boot,
 * what toa.ko users do with /etc/sysconfig/modules/toa.modules.
 */
import { Command } from "commander";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { realpathSync } from "node:fs";
import type { CommandFactory } from "./index.js";
import { cgroupOption, pinDirOption } from "./common.js";

/** The unit text for a load with these arguments. */
export function unitText(node: string, bin: string, loadArgs: string[], pinDir: string): string {
  const q = (s: string) => (/^[A-Za-z0-9_.,:/=@+-]+$/.test(s) ? s : `"${s.replace(/(["\\])/g, "\\$1")}"`);
  return `[Unit]
Description=toa: real client addresses from TCP Option Address (eBPF receiver)
Documentation=https://www.npmjs.com/package/toa
After=local-fs.target
Before=network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${q(node)} ${q(bin)} load ${loadArgs.map(q).join(" ")}
ExecStop=${q(node)} ${q(bin)} unload --pin-dir ${q(pinDir)}

[Install]
WantedBy=multi-user.target
`;
}

function systemctl(io: { err(t: string): void }, args: string[]): void {
  try {
    execFileSync("systemctl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    io.err(`warning: systemctl ${args.join(" ")} failed: ${(e as Error).message.split("\n")[0]}`);
  }
}

export const installServiceCommand: CommandFactory = (io, exit) =>
  new Command("install-service")
    .summary("install a systemd unit that runs `toa load` at boot")
    .description("Write a systemd unit (default /etc/systemd/system/toa.service) that runs `toa load` with these\noptions at boot, before the network comes up, and `toa unload` when stopped; then enable it.")
    .option("--trust <cidrs>", "passed to toa load")
    .option("--kinds <kinds>", "passed to toa load")
    .addOption(cgroupOption())
    .addOption(pinDirOption())
    .option("--unit-path <file>", "where to write the unit", "/etc/systemd/system/toa.service")
    .option("--no-enable", "write the unit only; don't run systemctl")
    .action((opts: { trust?: string; kinds?: string; cgroup?: string; pinDir: string; unitPath: string; enable: boolean }) => {
      const args = ["--pin-dir", opts.pinDir];
      if (opts.trust) args.push("--trust", opts.trust);
      if (opts.kinds) args.push("--kinds", opts.kinds);
      if (opts.cgroup) args.push("--cgroup", opts.cgroup);
      const bin = realpathSync(process.argv[1] ?? "toa");
      writeFileSync(opts.unitPath, unitText(process.execPath, bin, args, opts.pinDir));
      io.out(`wrote ${opts.unitPath}`);
      if (opts.enable) {
        systemctl(io, ["daemon-reload"]);
        systemctl(io, ["enable", "toa.service"]);
        io.out("enabled toa.service: it loads at boot (start it now with `systemctl start toa`)");
      }
      exit(0);
    });

export const uninstallServiceCommand: CommandFactory = (io, exit) =>
  new Command("uninstall-service")
    .summary("remove the systemd unit")
    .option("--unit-path <file>", "the unit to remove", "/etc/systemd/system/toa.service")
    .option("--no-enable", "don't run systemctl")
    .action((opts: { unitPath: string; enable: boolean }) => {
      if (opts.enable) systemctl(io, ["disable", "toa.service"]);
      if (existsSync(opts.unitPath)) {
        rmSync(opts.unitPath);
        io.out(`removed ${opts.unitPath}`);
      } else io.out(`no unit at ${opts.unitPath}`);
      if (opts.enable) systemctl(io, ["daemon-reload"]);
      exit(0);
    });
