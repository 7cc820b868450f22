/**
 * `toa install-service` / `toa uninstall-service`: a systemd unit that runs `toa agent` from boot,
 * what toa.ko users do with /etc/sysconfig/modules/toa.modules — but it also re-attaches the
 * receiver whenever a target service's cgroup is made again (every `systemctl restart`).
 */
import { Command } from "commander";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import type { CommandFactory } from "./index.js";
import { addAgentOptions } from "./agent.js";
import type { AgentOptions } from "./agent-flags.js";
import { UsageError } from "../io.js";
import { toaArgv } from "../../shared/self.js";

/**
 * The unit text for an agent with these arguments; `toa` is the argv that runs toa ({@link toaArgv}:
 * node and the CLI script, or the single executable alone); `before` are units to start only once it
 * watches. The .deb and .rpm ship the same unit (scripts/package).
 */
export function unitText(toa: string[], agentArgs: string[], before: string[] = []): string {
  return `[Unit]
Description=toa agent: real client addresses from TCP Option Address (eBPF receiver, kept attached through restarts)
Documentation=https://www.npmjs.com/package/toa
After=local-fs.target sys-fs-bpf.mount
# Ready (Type=notify) once it watches every target: units ordered after it find the receiver attached,
# and their cgroups, made at each (re)start, are attached the moment they appear.
Before=network-pre.target${before.map((u) => ` ${u}`).join("")}
Wants=network-pre.target

[Service]
Type=notify
NotifyAccess=all
ExecStart=${execLine([...toa, "agent", ...agentArgs])}
# SIGHUP: the agent re-reads --config.
ExecReload=/bin/kill -HUP $MAINPID
# Stopping the agent leaves the receivers attached (they live in the kernel); \`toa unload\` removes them.
Restart=on-failure
# Exit 2 is a refused configuration (no target yet, a wrong value): restarting would not fix it.
RestartPreventExitStatus=2
RestartSec=2
LimitMEMLOCK=infinity

[Install]
WantedBy=multi-user.target
`;
}

/** A command line as a unit's Exec*= takes it: each word quoted when it needs to be. */
export function execLine(argv: string[]): string {
  return argv.map((s) => (/^[A-Za-z0-9_.,:/=@+-]+$/.test(s) ? s : `"${s.replace(/(["\\])/g, "\\$1")}"`)).join(" ");
}

/** The argv that runs this toa, every file of it there: a unit must not name a path that isn't. */
export function installedToaArgv(): string[] {
  const toa = toaArgv();
  const missing = toa.find((f) => !existsSync(f));
  if (missing) throw new UsageError(`cannot find the toa executable (${missing}): run install-service through the installed \`toa\``);
  return toa;
}

type UnitIo = { out(t: string): void; err(t: string): void };

/** Write a unit file and, with `enable`, enable it (saying `enabled`). */
export function writeUnit(io: UnitIo, o: { unitPath: string; unit: string; text: string; enable: boolean; enabled: string }): void {
  writeFileSync(o.unitPath, o.text);
  io.out(`wrote ${o.unitPath}`);
  if (o.enable) {
    systemctl(io, ["daemon-reload"]);
    systemctl(io, ["enable", o.unit]);
    io.out(o.enabled);
  }
}

/** Disable and stop a unit (with `enable`), then remove its file. */
export function removeUnit(io: UnitIo, o: { unitPath: string; unit: string; enable: boolean }): void {
  if (o.enable) systemctl(io, ["disable", "--now", o.unit]);
  if (existsSync(o.unitPath)) {
    rmSync(o.unitPath);
    io.out(`removed ${o.unitPath}`);
  } else io.out(`no unit at ${o.unitPath}`);
  if (o.enable) systemctl(io, ["daemon-reload"]);
}

/** Run systemctl; a failure is a warning (the unit file is written either way). */
function systemctl(io: { err(t: string): void }, args: string[]): void {
  try {
    execFileSync("systemctl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    io.err(`warning: systemctl ${args.join(" ")} failed: ${(e as Error).message.split("\n")[0]}`);
  }
}

/** The agent's options (addAgentOptions), then install-service's own. */
interface ServiceOptions extends Omit<AgentOptions, "config" | "check" | "json"> {
  cgroup?: string;
  unitPath: string;
  enable: boolean;
}

/** The agent's arguments for these options, every one checked first (the unit is written only when all are valid). */
export async function serviceAgentArgs(o: ServiceOptions): Promise<string[]> {
  const { checkCgroupFolder } = await import("../../agent/cgroup-folder.js");
  const { agentConfigFromFlags } = await import("./agent-flags.js");
  if (o.cgroup !== undefined) checkCgroupFolder(o.cgroup);
  const targets = [...(o.target ?? []), ...(o.cgroup ? [o.cgroup] : [])];
  const opts = { ...o, target: targets.length || o.unit?.length ? targets : ["/"] };
  agentConfigFromFlags(opts); // throws a UsageError naming the field
  const args: string[] = [];
  for (const t of opts.target) args.push("--target", t);
  for (const u of o.unit ?? []) args.push("--unit", u);
  if (o.trust) args.push("--trust", o.trust);
  if (o.kinds) args.push("--kinds", o.kinds);
  if (o.syn === true) args.push("--syn");
  if (o.syn === false) args.push("--no-syn");
  if (o.pinBase) args.push("--pin-base", o.pinBase);
  if (o.listen) args.push("--listen", o.listen);
  if (o.keepGone) args.push("--keep-gone", o.keepGone);
  if (o.resync) args.push("--resync", o.resync);
  if (o.logLevel) args.push("--log-level", o.logLevel);
  return args;
}

export const installServiceCommand: CommandFactory = (io, exit) =>
  addAgentOptions(
    new Command("install-service")
      .summary("install a systemd unit that runs `toa agent` from boot")
      .description(
        "Write a systemd unit (default /etc/systemd/system/toa.service) that runs `toa agent` with these options from boot, " +
          "before the network and before the --unit services start, and enable it. The agent keeps the receiver attached to " +
          "the targets (the whole host by default) and re-attaches it each time a service's cgroup is made again. " +
          "Every option is checked before the unit is written.",
      )
      .option("--cgroup <dir>", "an existing cgroup v2 folder to keep the receiver on (same as --target with an absolute path, but it must exist now)"),
  )
    .option("--unit-path <file>", "where to write the unit", "/etc/systemd/system/toa.service")
    .option("--no-enable", "write the unit only; don't run systemctl")
    .addHelpText(
      "after",
      `
Examples:
  toa install-service --trust 100.125.0.0/16                       # the whole host
  toa install-service --unit nginx.service --trust 100.125.0.0/16  # nginx, through every restart
  toa install-service --target 'kubepods.slice/**/cri-containerd-*.scope' --trust 10.0.0.0/8
  toa install-service --unit nginx.service --unit-path /tmp/toa.service --no-enable   # look first`,
    )
    .action(async (opts: ServiceOptions) => {
      const args = await serviceAgentArgs(opts);
      writeUnit(io, {
        unitPath: opts.unitPath,
        unit: "toa.service",
        text: unitText(installedToaArgv(), args, opts.unit ?? []),
        enable: opts.enable,
        enabled: "enabled toa.service: it runs from boot (start it now with `systemctl start toa`; `journalctl -u toa` shows its log)",
      });
      exit(0);
    });

export const uninstallServiceCommand: CommandFactory = (io, exit) =>
  new Command("uninstall-service")
    .summary("remove the systemd unit (the receivers stay attached: `toa unload` removes them)")
    .option("--unit-path <file>", "the unit to remove", "/etc/systemd/system/toa.service")
    .option("--no-enable", "don't run systemctl")
    .action((opts: { unitPath: string; enable: boolean }) => {
      removeUnit(io, { unitPath: opts.unitPath, unit: "toa.service", enable: opts.enable });
      exit(0);
    });
