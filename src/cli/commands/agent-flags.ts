/**
 * `toa agent`'s flags (and --config) turned into a checked {@link AgentConfig}; shared with
 * install-service. Apart from agent.ts so that building the command tree (every `toa` start) does
 * not load the config parser: the actions import this when they run.
 */
import { AgentConfigError, type AgentConfig, type AgentInput, readAgentFile, resolveAgentConfig } from "../../agent/agent-config.js";
import { findCgroup2Mount } from "../../bpf/index.js";
import { UsageError } from "../io.js";

export interface AgentOptions {
  config?: string;
  target?: string[];
  unit?: string[];
  trust?: string;
  kinds?: string;
  syn?: boolean;
  pinBase?: string;
  listen?: string;
  keepGone?: string;
  resync?: string;
  logLevel?: string;
  check?: boolean;
  json?: boolean;
}

/** The inputs of the flags (undefined where not given, so a config file's keys apply). */
export function agentInputFromFlags(o: AgentOptions): AgentInput {
  return {
    target: o.target,
    unit: o.unit,
    trust: o.trust,
    kinds: o.kinds,
    syn: o.syn,
    pinBase: o.pinBase,
    listen: o.listen === "off" ? false : o.listen,
    keepGone: o.keepGone,
    resync: o.resync,
    logLevel: o.logLevel,
  };
}

/** The cgroup v2 mount, or /sys/fs/cgroup when none is found. */
export function mountOrDefault(): string {
  try {
    return findCgroup2Mount();
  } catch {
    return "/sys/fs/cgroup";
  }
}

/** Check flags (and --config) into a config; a wrong value is a usage error naming the field. */
export function agentConfigFromFlags(o: AgentOptions, mount = mountOrDefault()): AgentConfig {
  try {
    const file = o.config ? readAgentFile(o.config) : undefined;
    return resolveAgentConfig(agentInputFromFlags(o), mount, o.config ?? "command line", file);
  } catch (e) {
    if (e instanceof AgentConfigError) throw new UsageError(e.message);
    throw e;
  }
}
