/** `toa doctor`: is this machine ready for the receiver, and is the application covered? */
import { Command, Option } from "commander";
import { UsageError } from "../io.js";
import { jsonOption, pinDirOption } from "./common.js";
import type { CommandFactory } from "./index.js";

const HELP = `
What it checks (each line says ok, warn or FAIL, and the fix):
  kernel        release and architecture, for information: features are probed, never guessed from it
  eBPF: ...     each feature the receiver needs (socket storage, sock_ops header options, getpeername
                hooks...), tried with a tiny program; a missing one names the upstream version that has it
  cgroup v2     the mount the programs attach to; bpffs at /sys/fs/bpf for the pins
  privileges    root, or CAP_BPF (CAP_SYS_ADMIN before 5.8) + CAP_NET_ADMIN
  TOA module    toa.ko / vtoa.ko loaded at the same time
  loaded        a receiver pinned at --pin-dir, each program still attached; its trust list
  attached      with --pid or --port: our sock_ops and getpeername4/6 programs are effective in the
                application's cgroup (attached there or on a parent)
  socket cgroup with --pid or --port: the cgroup each listening socket was made in (the kernel's
                sock_diag, Linux 5.7+): the hooks follow the socket, not the process, so a listener
                from systemd socket activation, inetd, or opened before the process moved is
                covered only where it was made
  other getpeername programs   Cilium, Alinux vtoa... on the same cgroup

Examples:
  toa doctor                         # machine + the receiver at /sys/fs/bpf/toa
  toa doctor --port 80               # ...and the server listening on port 80 (any network namespace)
  toa doctor --pid $(pgrep -o nginx) --pin-dir /sys/fs/bpf/toa-nginx
  toa doctor --json | jq '.checks[] | select(.ok != true)'

Exit status: 0 when no check failed (warnings allowed), 1 otherwise.`;

const positiveInt = (flag: string, max: number) => (v: string): number => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > max) throw new UsageError(`${flag}: "${v}" is not a number from 1 to ${max}`);
  return n;
};

export const doctorCommand: CommandFactory = (io, exit) =>
  new Command("doctor")
    .summary("check that this machine and an application are ready for TOA, with the fix for each problem")
    .description(
      "Check the kernel's eBPF features, cgroup v2, bpffs, privileges, a conflicting toa.ko, the receiver " +
        "loaded at --pin-dir and its trust list, and, given --pid or --port, that the programs are effective " +
        "in the cgroup where the application runs. Prints the fix for everything that is not ready.",
    )
    .addOption(new Option("--pid <pid>", "check the cgroup this process runs in").argParser(positiveInt("--pid", 2 ** 22)))
    .addOption(new Option("--port <port>", "check the process listening on this TCP port").argParser(positiveInt("--port", 65535)).conflicts("pid"))
    .addOption(pinDirOption())
    .addOption(jsonOption())
    .addHelpText("after", HELP)
    .action(async (opts: { pid?: number; port?: number; pinDir: string; json?: boolean }) => {
      const { formatReport, runDoctor } = await import("../../doctor/index.js");
      const report = runDoctor({ pinDir: opts.pinDir, pid: opts.pid, port: opts.port });
      if (opts.json) io.out(JSON.stringify(report, null, 2));
      else {
        io.out(formatReport(report));
        if (opts.pid === undefined && opts.port === undefined && report.ready) io.out("(give --pid N or --port N to check the cgroup where your application runs)");
      }
      exit(report.ready ? 0 : 1);
    });
