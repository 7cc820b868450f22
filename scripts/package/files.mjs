// What the .deb and the .rpm install besides the executable, written once for both: the systemd unit
// (the same text `toa install-service` writes), the agent's config file, the man page (from the CLI's
// own --help texts), and the removal steps their maintainer scripts run.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

/** Where things go on the target. */
export const PATHS = {
  bin: "/usr/bin/toa",
  unit: "/usr/lib/systemd/system/toa.service",
  configDir: "/etc/toa",
  config: "/etc/toa/agent.yaml",
  man: "/usr/share/man/man1/toa.1.gz",
  doc: "/usr/share/doc/toa",
  /** Where the executable keeps koffi's native binary when run as root (src/executable/addon.ts). */
  cache: "/var/cache/toa",
  /** `toa load`'s default pin folder and `toa agent`'s default pin base. */
  loadPins: "/sys/fs/bpf/toa",
  agentPins: "/sys/fs/bpf/toa-agent",
};

const importDist = (root, path) => import(pathToFileURL(join(root, "dist", path)).href);

/** The unit: `toa agent --config /etc/toa/agent.yaml`, from the same template as install-service. */
export async function unitFile(root) {
  const { unitText } = await importDist(root, "src/cli/commands/service.js");
  return unitText([PATHS.bin], ["--config", PATHS.config]);
}

/** The agent's config file: every key, commented out; the agent refuses to start until a target is given. */
export function configFile() {
  return `# toa agent's configuration, read by toa.service:
#   ExecStart=${PATHS.bin} agent --config ${PATHS.config}
# The service is installed disabled. Give at least one target (and the load balancers' addresses
# under trust), check, then enable it:
#   toa agent --check --config ${PATHS.config}
#   systemctl enable --now toa
# After a change: systemctl reload toa (the agent re-reads this file on SIGHUP).
# Flags on the command line win over this file; \`toa agent --help\` explains every key.

# Cgroups that get the receiver (any mix, at least one):
#targets:
#  - /                                            # the whole host (the cgroup v2 root)
#  - system.slice/nginx.service                   # a folder below the cgroup v2 mount
#  - "kubepods.slice/**/cri-containerd-*.scope"   # a glob: * and ? within a name, ** any depth
#units:
#  - nginx.service                                # a systemd unit's cgroup, through its restarts

# Load balancer source addresses allowed to send a TOA; without it a TOA from anyone is believed:
#trust:
#  - 100.125.0.0/16

#kinds: [254, 253, 200]            # TCP option kinds to accept
#syn: true                         # also look for the TOA in the SYN
#pinBase: ${PATHS.agentPins}     # one pin folder per target cgroup below it
#listen: 127.0.0.1:9102            # /metrics and /healthz ("off": none)
#keepGoneSeconds: 600              # keep a removed cgroup's pins this long for it to come back
#resyncSeconds: 60                 # check every target this often (besides inotify)
#logLevel: info
`;
}

/** roff-escape plain text (backslashes; a leading dot or quote would be a request). */
const roff = (text) =>
  text
    .replace(/\\/g, "\\e")
    .split("\n")
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join("\n");

/** The help text of `toa ARGS --help`, as the CLI prints it, 80 columns wide. */
async function helpOf(root, args) {
  const { run } = await importDist(root, "src/cli/main.js");
  let out = "";
  const io = { out: (t) => void (out += t), err: (t) => void (out += t) };
  const columns = process.stdout.columns;
  Object.defineProperty(process.stdout, "columns", { value: 80, configurable: true });
  try {
    await run([...args, "--help"], io);
  } finally {
    Object.defineProperty(process.stdout, "columns", { value: columns, configurable: true });
  }
  return out.trimEnd();
}

/** toa(1): the overview, then each command's own --help (the one place help text lives), files, environment. */
export async function manPage(root, version, date) {
  const { buildProgram } = await importDist(root, "src/cli/main.js");
  const { commandFactories } = await importDist(root, "src/cli/commands/index.js");
  const quiet = { out: () => undefined, err: () => undefined };
  const program = buildProgram(quiet, () => undefined);
  // The listed commands, in --help's order (the hidden ones are toa's own helpers).
  const commands = commandFactories.map((f) => f(quiet, () => undefined).name());
  const sections = [];
  for (const name of commands) sections.push(`.SS toa ${name}\n.nf\n${roff(await helpOf(root, [name]))}\n.fi`);
  return `.TH TOA 1 "${date}" "toa ${version}" "User Commands"
.SH NAME
toa \\- real client addresses behind full-NAT load balancers (TCP Option Address) with eBPF, no kernel module
.SH SYNOPSIS
.B toa
.I command
.RI [ options ]
.SH DESCRIPTION
${roff(program.description())}
.PP
One executable with its runtime inside: no Node.js, npm or compiler on the machine.
.B toa load
attaches the receiver to a cgroup,
.B toa agent
keeps it attached to services and pods through their restarts (the
.B toa.service
unit runs it),
.B toa doctor
tells what a machine lacks, and
.B toa demo
shows it working in throwaway network namespaces.
.SH COMMANDS
${sections.join("\n")}
.SH FILES
.TP
.I ${PATHS.config}
the agent's configuration, read by
.BR toa.service ,
which is installed disabled: give a target, then
.BR "systemctl enable --now toa" .
.TP
.I ${PATHS.unit}
the unit running
.BR "toa agent --config ${PATHS.config}" .
.TP
.I ${PATHS.agentPins}/
the agent's pins: one folder per target cgroup.
.TP
.I ${PATHS.loadPins}/
.BR "toa load" 's
pins (default
.BR \\-\\-pin\\-dir ).
.TP
.I ${PATHS.cache}/
koffi's native binary, written there from inside the executable when root runs it
(other users: ~/.cache/toa).
.PP
Removing the package stops the agent and unloads the receivers it loaded (every folder under the
agent's pin base) and the one at
.IR ${PATHS.loadPins} ;
receivers pinned elsewhere with
.B \\-\\-pin\\-dir
are yours to
.B toa unload
first.
.SH ENVIRONMENT
.TP
.B TOA_CACHE_DIR
where to keep the native binary instead (a folder of this user's, on a file system that allows executables).
.TP
.B TOA_DEBUG
print stack traces with errors.
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
.BR bpftool (8)
`;
}

/**
 * Shell functions for the maintainer scripts (deb prerm, rpm %preun): stop every running agent of
 * this package, then unload every receiver it loaded. Receivers live in the kernel and outlive the
 * agent by design (an agent restart keeps every address), so a package that only deleted its files
 * would leave them attached with no tool left to remove them.
 */
export function removalFunctions() {
  return `toa_stop_agents() {
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl stop toa.service >/dev/null 2>&1 || true
	fi
	# Agents started otherwise (no systemd, a shell): this package's executable running "agent".
	pids=""
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/exe" 2>/dev/null)" = ${PATHS.bin} ] || continue
		[ "$(tr '\\000' '\\n' < "$p/cmdline" 2>/dev/null | sed -n 2p)" = agent ] || continue
		kill -TERM "\${p#/proc/}" 2>/dev/null && pids="$pids \${p#/proc/}"
	done
	for pid in $pids; do
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	done
}

toa_unload_all() {
	# The agent's pin base: the default, and the config file's pinBase when it names another.
	bases="${PATHS.agentPins}"
	configured=$(${PATHS.bin} agent --check --json --config ${PATHS.config} 2>/dev/null | sed -n 's/^  "pinBase": "\\(.*\\)",$/\\1/p') || true
	[ -n "$configured" ] && [ "$configured" != "${PATHS.agentPins}" ] && bases="$bases $configured"
	for base in $bases; do
		[ -d "$base" ] || continue
		for dir in "$base"/*; do
			[ -d "$dir" ] || continue
			${PATHS.bin} unload --pin-dir "$dir" || echo "toa: could not unload $dir: run \\\`toa unload --pin-dir $dir\\\` before removing toa" >&2
		done
		rmdir "$base" 2>/dev/null || true
	done
	if [ -d ${PATHS.loadPins} ]; then
		${PATHS.bin} unload --pin-dir ${PATHS.loadPins} || echo "toa: could not unload ${PATHS.loadPins}" >&2
	fi
}
`;
}

/** The package's summary line and one-paragraph description. */
export function description() {
  return {
    summary: "real client addresses behind full-NAT load balancers (TOA), with eBPF",
    body: `toa replaces the toa.ko kernel module with eBPF programs (no module, no compiler, no kernel headers): it reads the TCP Option Address that full-NAT load balancers (Huawei ELB, LVS FULLNAT, DPVS, Tencent CLB) put in the handshake, and makes accept() and getpeername() return the client, for every unmodified application, IPv4 and IPv6, on every kernel from 5.10. One self-contained executable (its JavaScript runtime inside), the toa agent systemd unit (disabled until configured in /etc/toa/agent.yaml), and a man page.`,
  };
}

/** Third-party notices: the runtime's license and each bundled npm package's. */
export function notices({ nodeLicense, packages }) {
  const parts = [
    "toa bundles the following software. Their licenses follow.\n",
    `== Node.js (the runtime inside the executable)\n\n${readFileSync(nodeLicense, "utf8")}`,
  ];
  for (const p of packages) parts.push(`== ${p.name} ${p.version} (npm)\n\n${p.license}`);
  return parts.join("\n\n");
}
