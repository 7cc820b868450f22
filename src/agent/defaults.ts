/**
 * Default places of the receiver and the agent, apart from the modules that use them so that the
 * CLI can show them in --help without loading the eBPF toolkit.
 */

/** Where `toa load` pins its maps and links. */
export const DEFAULT_PIN_DIR = "/sys/fs/bpf/toa";
/** Where the agent pins its receivers: one folder per target cgroup below it. */
export const DEFAULT_AGENT_PIN_BASE = "/sys/fs/bpf/toa-agent";
/** Where /metrics and /healthz are served. */
export const DEFAULT_AGENT_LISTEN = "127.0.0.1:9102";
