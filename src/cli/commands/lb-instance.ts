/**
 * `toa lb remove`, `toa lb install-service`, `toa lb uninstall-service`: the balancer's instance as an
 * operator handles it. Its packet path outlives the process, so taking a service away is its own
 * command, and systemd's restart is hitless.
 */
import { resolve } from "node:path";
import { Command } from "commander";
import type { CommandFactory } from "./index.js";
import { UsageError } from "../io.js";
import { DEFAULTS } from "../../lb/choices.js";
import { defaultPinDir, INSTANCE_NAME } from "../../lb/packet/instance-name.js";
import { parseDuration } from "../../lb/duration.js";
import { execLine, installedToaArgv, removeUnit, writeUnit } from "./service.js";

interface RemoveOptions {
  config?: string;
  instance?: string;
  pinDir?: string;
  drainTimeout?: string;
  json?: boolean;
}

export const lbRemoveCommand: CommandFactory = (io, exit) =>
  new Command("remove")
    .summary("take a packet-path instance away: stop new connections, drain, detach, unpin")
    .description(
      "Take away the packet-path instance a config (or --instance, --pin-dir) names: new SYNs stop at once (the stack refuses them), " +
        "open connections go on until they end or drainTimeout passes, then the program is detached from every device and every pin " +
        "of the instance removed — its own only. The balancer process must be stopped first (systemctl stop, or SIGTERM), or it would " +
        "put its services back. Run it in the balancer's network namespace. Safe to run twice.",
    )
    .option("-c, --config <file>", "the balancer's config: its instance, packet.pinDir, drainTimeout and timeouts")
    .option("--instance <name>", "the instance's name (its folder /sys/fs/bpf/toa-lb/<name>), over the config's")
    .option("--pin-dir <dir>", "the instance's folder, over everything else")
    .option("--drain-timeout <duration>", "how long open connections may take (default: the config's drainTimeout, else 30s)")
    .option("--json", "print the report as JSON")
    .addHelpText(
      "after",
      `
Examples:
  systemctl stop toa-lb && toa lb remove --config /etc/toa/lb.yaml
  toa lb remove --instance blue --drain-timeout 2m
  toa lb remove --pin-dir /sys/fs/bpf/toa-lb/default --drain-timeout 0 --json   # now, cutting what is open`,
    )
    .action(async (o: RemoveOptions) => {
      if (o.instance !== undefined && !INSTANCE_NAME.test(o.instance)) throw new UsageError(`--instance must be 1-32 letters, digits, '_' or '-', got ${JSON.stringify(o.instance)}`);
      const { loadConfigFile } = await import("../../lb/config.js");
      const config = o.config ? loadConfigFile(o.config, o.instance !== undefined ? { instance: o.instance } : {}) : undefined;
      const instance = config?.instance ?? o.instance ?? "default";
      const pinDir = o.pinDir ? resolve(o.pinDir) : (config?.packet.pinDir ?? defaultPinDir(instance));
      let drainMs = config?.drainTimeoutMs ?? DEFAULTS.drainTimeoutMs;
      if (o.drainTimeout !== undefined) {
        const d = parseDuration(/^[0-9]+$/.test(o.drainTimeout) ? Number(o.drainTimeout) : o.drainTimeout);
        if (typeof d === "string") throw new UsageError(`--drain-timeout: ${d}`);
        drainMs = d;
      }
      const { removeClaim, servingClaim } = await import("../../lb/claims.js");
      const live = servingClaim(instance, pinDir);
      if (live) throw new UsageError(`instance "${live.instance}" is served by pid ${live.pid}: stop it first (systemctl stop toa-lb, or kill ${live.pid}), then remove`);
      const timeouts = {
        connectMs: Math.max(...(config?.listeners.map((l) => l.connectTimeoutMs) ?? [DEFAULTS.connectTimeoutMs])),
        idleMs: Math.max(...(config?.listeners.map((l) => l.idleTimeoutMs) ?? [DEFAULTS.idleTimeoutMs])),
        synMs: config?.packet.synTimeoutMs ?? DEFAULTS.packet.synTimeoutMs,
        closedMs: config?.packet.closedTimeoutMs ?? DEFAULTS.packet.closedTimeoutMs,
      };
      const { removeInstance } = await import("../../lb/packet/remove.js");
      const r = await removeInstance({ pinDir, drainMs, timeouts, progress: (line) => io.err(line) });
      removeClaim(r.instance || instance);
      if (o.json) io.out(JSON.stringify(r, null, 2));
      else if (!r.found) io.out(`no instance at ${pinDir}: nothing to remove`);
      else {
        io.out(
          `removed instance ${r.instance} (${pinDir}): ${r.openAtStart} connection(s) open when new ones stopped, ` +
            `${r.cutAtDeadline} cut at the drain deadline after ${(r.drainMs / 1000).toFixed(1)} s; detached from ${r.detached.join(", ") || "no device (already gone)"}; ${r.removedPins.length} pin(s) removed`,
        );
        for (const k of r.kept) io.err(`kept ${k}`);
        if (r.foreignLayout) io.err(`note: the instance had another build's layout; it was drained by waiting for its flow table to empty`);
      }
      exit(r.kept.some((k) => k.includes("nat_meta")) ? 1 : 0);
    });

/** The balancer's unit; the .deb and .rpm ship the same one (scripts/package). */
export function lbUnitText(toa: string[], config: string): string {
  return `[Unit]
Description=toa lb: full-NAT layer-4 load balancer writing the client address (TOA, PROXY v2)
Documentation=man:toa(1)
After=network-online.target sys-fs-bpf.mount
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=all
ExecStartPre=${execLine([...toa, "lb", "--check", "--config", config])}
ExecStart=${execLine([...toa, "lb", "--config", config])}
# SIGHUP: re-read the config, established connections kept.
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM: the JS relay drains (up to drainTimeout); the packet path is left serving from the kernel,
# and the next start adopts it: \`systemctl restart\` loses none of its connections. \`toa lb remove\`
# takes the instance away.
KillMode=mixed
TimeoutStopSec=90
Restart=on-failure
RestartSec=2
LimitMEMLOCK=infinity

[Install]
WantedBy=multi-user.target
`;
}

const UNIT = "/etc/systemd/system/toa-lb.service";

export const lbInstallServiceCommand: CommandFactory = (io, exit) =>
  new Command("install-service")
    .summary("install a systemd unit that runs `toa lb --config FILE`")
    .description(`Write a systemd unit (default ${UNIT}) that runs the balancer with this config, after checking the config, and enable it.`)
    .requiredOption("-c, --config <file>", "the balancer's config (checked before the unit is written)")
    .option("--unit-path <file>", "where to write the unit", UNIT)
    .option("--no-enable", "write the unit only; don't run systemctl")
    .action(async (o: { config: string; unitPath: string; enable: boolean }) => {
      const { loadConfigFile } = await import("../../lb/config.js");
      const file = resolve(o.config);
      loadConfigFile(file); // throws ConfigError naming the file and field
      writeUnit(io, {
        unitPath: o.unitPath,
        unit: "toa-lb.service",
        text: lbUnitText(installedToaArgv(), file),
        enable: o.enable,
        enabled: "enabled toa-lb.service (start it: `systemctl start toa-lb`; log: `journalctl -u toa-lb`)",
      });
      exit(0);
    });

export const lbUninstallServiceCommand: CommandFactory = (io, exit) =>
  new Command("uninstall-service")
    .summary("remove the balancer's systemd unit (a packet-path instance stays: `toa lb remove` takes it)")
    .option("--unit-path <file>", "the unit to remove", UNIT)
    .option("--no-enable", "don't run systemctl")
    .action((o: { unitPath: string; enable: boolean }) => {
      removeUnit(io, { unitPath: o.unitPath, unit: "toa-lb.service", enable: o.enable });
      exit(0);
    });
