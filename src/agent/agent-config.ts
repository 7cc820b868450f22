/**
 * `toa agent`'s configuration: from flags, a YAML file, or both (flags win). Checked where it enters,
 * naming the field and the fix, then frozen. `toa agent --check`, install-service and the Kubernetes
 * manifest test all go through {@link resolveAgentConfig}.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { parse as parseYaml } from "yaml";
import { AgentConfigError, SettingsError, TargetError } from "./errors.js";
import { parseKinds, parseTrust, synDefault, type Cidr } from "./settings.js";
import { parseTarget, parseUnit, type Target } from "./targets.js";
import { DEFAULT_AGENT_LISTEN, DEFAULT_AGENT_PIN_BASE } from "./defaults.js";

export { DEFAULT_AGENT_LISTEN, DEFAULT_AGENT_PIN_BASE } from "./defaults.js";

/** What the agent was asked to do, checked. */
export interface AgentConfig {
  /** Where it came from, for messages ("command line", "/etc/toa/agent.yaml"). */
  source: string;
  targets: Target[];
  kinds: number[];
  trust: Cidr[];
  syn: boolean;
  pinBase: string;
  /** /metrics and /healthz; undefined: not served. */
  listen?: { host: string; port: number };
  /** Seconds a removed target cgroup's pins are kept for it to come back (a restart), before they are removed. */
  keepGoneSeconds: number;
  /** Seconds between full checks of every target (a safety net; new cgroups are seen at once through inotify). */
  resyncSeconds: number;
  logLevel: string;
}

/** The raw inputs: flags as commander gives them, or the YAML document's keys. */
export interface AgentInput {
  target?: string[];
  unit?: string[];
  trust?: string | string[];
  kinds?: string | number | number[];
  syn?: boolean;
  pinBase?: string;
  listen?: string | false;
  keepGone?: string | number;
  resync?: string | number;
  logLevel?: string;
}

export { AgentConfigError } from "./errors.js";

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"];
const FILE_KEYS: Record<string, keyof AgentInput> = {
  targets: "target",
  units: "unit",
  trust: "trust",
  kinds: "kinds",
  syn: "syn",
  pinBase: "pinBase",
  listen: "listen",
  keepGoneSeconds: "keepGone",
  resyncSeconds: "resync",
  logLevel: "logLevel",
};

/** Parse `ADDR:PORT` ("127.0.0.1:9102", "[::1]:9102", ":9102" = every address; port 0: any free one, logged). */
export function parseListen(text: string, field: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]*)):(\d{1,5})$/.exec(text.trim());
  const host = m ? (m[1] ?? (m[2] || "0.0.0.0")) : "";
  if (!m || Number(m[3]) > 65535 || isIP(host) === 0) {
    throw new AgentConfigError(field, `"${text}" is not ADDR:PORT: write e.g. 127.0.0.1:9102, [::1]:9102 or 0.0.0.0:9102 (every address, for Prometheus in a cluster)`);
  }
  return { host, port: Number(m[3]) };
}

function seconds(v: string | number | undefined, field: string, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || String(v).trim() === "") throw new AgentConfigError(field, `"${v}" is not a number of seconds ≥ ${min}: write e.g. ${dflt}`);
  return n;
}

/** Read a YAML config file into inputs, naming unknown keys. */
export function readAgentFile(path: string): AgentInput {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, "utf8"));
  } catch (e) {
    throw new AgentConfigError(path, `cannot read it: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) throw new AgentConfigError(path, "must be a mapping (targets:, units:, trust:, ...)");
  const out: AgentInput = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    const key = FILE_KEYS[k];
    if (!key) throw new AgentConfigError(`${k} (${path})`, `unknown key: the keys are ${Object.keys(FILE_KEYS).join(", ")}`);
    if ((key === "target" || key === "unit") && !(Array.isArray(v) && v.every((x) => typeof x === "string"))) {
      throw new AgentConfigError(`${k} (${path})`, `must be a list of strings, e.g.\n  ${k}:\n    - ${key === "unit" ? "nginx.service" : "system.slice/nginx.service"}`);
    }
    (out as Record<string, unknown>)[key] = Array.isArray(v) && key === "trust" ? v.map(String) : v;
  }
  return out;
}

/** Check inputs (the file's, then the flags' over them) into a frozen config. */
export function resolveAgentConfig(input: AgentInput, mount: string, source = "command line", fileInput?: AgentInput): AgentConfig {
  const f = fileInput ?? {};
  const merged: AgentInput = { ...f, ...Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined && !(Array.isArray(v) && v.length === 0))) };
  const fieldOf = (flag: string, key: string) => (input[key as keyof AgentInput] !== undefined && !(Array.isArray(input[key as keyof AgentInput]) && (input[key as keyof AgentInput] as unknown[]).length === 0) ? flag : `${Object.keys(FILE_KEYS).find((k) => FILE_KEYS[k] === key)} (${source})`);
  const targets: Target[] = [];
  try {
    (merged.target ?? []).forEach((t, i) => targets.push(parseTarget(t, mount, fieldOf("--target", "target") + (fieldOf("--target", "target").startsWith("--") ? "" : `[${i}]`))));
    (merged.unit ?? []).forEach((u, i) => targets.push(parseUnit(u, fieldOf("--unit", "unit") + (fieldOf("--unit", "unit").startsWith("--") ? "" : `[${i}]`))));
  } catch (e) {
    if (e instanceof TargetError) throw new AgentConfigError(e.field, e.message.slice(e.field.length + 2));
    throw e;
  }
  if (targets.length === 0) {
    throw new AgentConfigError("--target", "no target: give --target PATH|GLOB or --unit NAME (repeatable), e.g. --unit nginx.service, --target 'kubepods.slice/**/cri-containerd-*.scope', or --target / for the whole host");
  }
  let kinds: number[];
  let trust: Cidr[];
  try {
    kinds = parseKinds(Array.isArray(merged.kinds) ? merged.kinds.join(",") : merged.kinds === undefined ? undefined : String(merged.kinds));
    trust = parseTrust(Array.isArray(merged.trust) ? merged.trust.join(",") : merged.trust);
  } catch (e) {
    if (e instanceof SettingsError) throw new AgentConfigError(fieldOf(e.field, e.field.slice(2)), e.message.slice(e.field.length + 2));
    throw e;
  }
  if (merged.syn !== undefined && typeof merged.syn !== "boolean") throw new AgentConfigError(fieldOf("--no-syn", "syn"), `must be true or false, not ${JSON.stringify(merged.syn)}`);
  const pinBase = merged.pinBase ?? DEFAULT_AGENT_PIN_BASE;
  if (!pinBase.startsWith("/sys/fs/bpf/") || pinBase.includes("/../") || pinBase.slice(12).includes(".")) {
    throw new AgentConfigError(fieldOf("--pin-base", "pinBase"), `"${pinBase}" must be a folder under /sys/fs/bpf (bpffs), without dots in its names (bpffs refuses them), e.g. ${DEFAULT_AGENT_PIN_BASE}; each target gets a folder inside it`);
  }
  const logLevel = merged.logLevel ?? "info";
  if (!LOG_LEVELS.includes(logLevel)) throw new AgentConfigError(fieldOf("--log-level", "logLevel"), `"${logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);
  const listen = merged.listen === false || merged.listen === "off" ? undefined : parseListen(merged.listen ?? DEFAULT_AGENT_LISTEN, fieldOf("--listen", "listen"));
  return Object.freeze({
    source,
    targets,
    kinds,
    trust,
    syn: merged.syn ?? synDefault(kinds),
    pinBase,
    listen,
    keepGoneSeconds: seconds(merged.keepGone, fieldOf("--keep-gone", "keepGone"), 600, 0),
    resyncSeconds: seconds(merged.resync, fieldOf("--resync", "resync"), 60, 1),
    logLevel,
  });
}
