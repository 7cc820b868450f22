/**
 * The load balancer's configuration: a YAML file or one-liner flags, both turned into the same raw
 * object and validated once by {@link validateConfig} into a frozen {@link LbConfig}. Every problem is
 * reported with the file, the field path (`pools.web.backends[1].weight`) and what is allowed.
 * Reference with an example: docs/lb.md. The parts: config/checker.ts (the cursor that records
 * problems), config/pool.ts (pools), config/packet.ts (the packet path's options and limits).
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { Endpoint } from "./endpoint.js";
import { ConfigError } from "./errors.js";
import { type ClientAddressMode, type DataPath, type SchedulerName, CLIENT_ADDRESS_MODES, DEFAULTS } from "./choices.js";
import { Checker, describe, isAny } from "./config/checker.js";
import { checkPacketListener, validateInstance, validatePacket } from "./config/packet.js";
import { validatePool } from "./config/pool.js";

export { type ClientAddressMode, type DataPath, type SchedulerName, CLIENT_ADDRESS_MODES, DATA_PATHS, SCHEDULERS, DEFAULTS } from "./choices.js";

/** Settings of the packet data path (top-level `packet:`). */
export interface PacketConfig {
  /** Connections the kernel tables hold (two entries each); preallocated. */
  readonly maxConnections: number;
  /** A TOA goes into a segment carrying data only if the packet still fits this. */
  readonly mtu: number;
  /** Devices the program is attached to (ingress); empty = every device that is up, but lo. */
  readonly interfaces: readonly string[];
  /** How long a connection whose both sides sent FIN stays in the tables (late ACKs, retransmits). */
  readonly closedTimeoutMs: number;
  /**
   * Connections still opening (SYN seen, the client's ACK not yet) the tables take on top of
   * maxConnections; SYNs beyond are dropped and counted (syn_dropped), so a SYN flood can't push
   * established connections out. Default: a quarter of maxConnections, at least 16.
   */
  readonly maxHalfOpen: number;
  /** A connection still opening after this long is removed, giving its place back. */
  readonly synTimeoutMs: number;
  /** The instance's name (top-level `instance:`): its tc filters are `toa:nat:<instance>`. */
  readonly instance: string;
  /** Where the instance's tables, program and links are pinned (default /sys/fs/bpf/toa-lb/<instance>). */
  readonly pinDir: string;
}

/** One backend of a pool; `id` is its `addr:port` text, unique within the pool. */
export interface BackendConfig extends Endpoint {
  readonly id: string;
  readonly weight: number;
}

/** Active health check of a pool's backends. */
export interface HealthCheckConfig {
  readonly type: "tcp" | "http";
  /** HTTP only: the path of the GET and the status that means healthy. */
  readonly path: string;
  readonly expectStatus: number;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Consecutive successes to come up, consecutive failures to go down. */
  readonly rise: number;
  readonly fall: number;
  /** Send `PROXY UNKNOWN\r\n` first (backends that require the PROXY protocol, like HAProxy's check-send-proxy). */
  readonly sendProxy: boolean;
}

/** A range of local ports, both ends included. */
export interface PortRange {
  readonly first: number;
  readonly last: number;
}

/** A named group of backends with its scheduler and health check. */
export interface PoolConfig {
  readonly name: string;
  readonly scheduler: SchedulerName;
  readonly backends: readonly BackendConfig[];
  readonly healthCheck: HealthCheckConfig | null;
  /** Local addresses backend connections come from (LVS FULLNAT's "local address" pool); empty = the route's source. */
  readonly sourceAddresses: readonly string[];
  /** Local ports the balancer picks from in `toa` mode. */
  readonly sourcePorts: PortRange;
}

/** One listening address and where its connections go. */
export interface ListenerConfig {
  readonly name: string;
  readonly listen: Endpoint;
  readonly pool: string;
  readonly mode: ClientAddressMode;
  /** TCP option kind of the TOA (`toa` mode): 254 (Huawei, LVS, DPVS), 200, 253... */
  readonly toaKind: number;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** How this listener forwards (docs/lb.md "Packet data path" and "Relay"). */
  readonly dataPath: DataPath;
}

/** A validated, frozen configuration. */
export interface LbConfig {
  /** Where it came from: a file path or "command line". */
  readonly source: string;
  readonly listeners: readonly ListenerConfig[];
  readonly pools: Readonly<Record<string, PoolConfig>>;
  /** Admin listener (metrics, status page, POST /reload); null = none. */
  readonly admin: Endpoint | null;
  /** How long SIGTERM waits for established connections before closing them. */
  readonly drainTimeoutMs: number;
  readonly packet: PacketConfig;
  /** The instance's name (`instance:`, default "default"); `--instance` overrides the file's. */
  readonly instance: string;
}

/** What the command line sets over a file's config. */
export interface ConfigOverrides {
  readonly instance?: string;
}

/** Read and validate a YAML config file; throws {@link ConfigError} naming the file and fields. */
export function loadConfigFile(file: string, overrides: ConfigOverrides = {}): LbConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(file, [{ path: "", message: `cannot read: ${(e as Error).message}` }]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (e) {
    throw new ConfigError(file, [{ path: "", message: `not valid YAML: ${(e as Error).message.split("\n")[0].replace(/:$/, "")}` }]);
  }
  return validateConfig(raw, file, overrides);
}

/**
 * Validate a raw config (parsed YAML, or built from flags) into a frozen {@link LbConfig}. `source`
 * names the file in messages. Throws {@link ConfigError} with every issue found.
 */
export function validateConfig(raw: unknown, source: string, overrides: ConfigOverrides = {}): LbConfig {
  const c = new Checker();
  const top = c.object(raw ?? undefined, "");
  if (!top) throw new ConfigError(source, c.issues);
  c.keys(top, "", ["instance", "listeners", "pools", "admin", "timeouts", "drainTimeout", "dataPath", "packet"]);
  const instance = validateInstance(c, overrides.instance ?? top.instance);
  const dataPath = c.dataPath(top.dataPath, "dataPath", DEFAULTS.dataPath);

  // Timeouts shared by every listener unless it sets its own.
  let connectTimeoutMs: number = DEFAULTS.connectTimeoutMs;
  let idleTimeoutMs: number = DEFAULTS.idleTimeoutMs;
  if (top.timeouts !== undefined) {
    const t = c.object(top.timeouts, "timeouts");
    if (t) {
      c.keys(t, "timeouts", ["connect", "idle"]);
      connectTimeoutMs = c.duration(t.connect, "timeouts.connect", connectTimeoutMs);
      idleTimeoutMs = c.duration(t.idle, "timeouts.idle", idleTimeoutMs);
    }
  }
  const drainTimeoutMs = c.duration(top.drainTimeout, "drainTimeout", DEFAULTS.drainTimeoutMs, 0);
  const packet = validatePacket(c, top.packet, instance);

  let admin: Endpoint | null = null;
  if (top.admin !== undefined && top.admin !== null) {
    let listen: unknown = top.admin;
    let path = "admin";
    if (typeof top.admin === "object") {
      const a = c.object(top.admin, "admin");
      if (a) c.keys(a, "admin", ["listen"]);
      listen = a?.listen;
      path = "admin.listen";
    }
    admin = c.endpoint(listen, path, true);
  }

  const pools: Record<string, PoolConfig> = {};
  const rawPools = top.pools === undefined ? null : c.object(top.pools, "pools");
  if (top.pools === undefined) c.add("pools", "missing; at least one pool of backends is needed");
  for (const [name, rp] of Object.entries(rawPools ?? {})) {
    const pool = validatePool(c, name, rp, `pools.${name}`);
    if (pool) pools[name] = pool;
  }
  if (rawPools && Object.keys(rawPools).length === 0) c.add("pools", "must name at least one pool");

  const listeners: ListenerConfig[] = [];
  if (!Array.isArray(top.listeners) || top.listeners.length === 0) {
    c.add("listeners", `must be a non-empty list of listeners, got ${describe(top.listeners)}`);
  } else {
    const seen = new Map<string, string>();
    top.listeners.forEach((rl: unknown, i: number) => {
      const path = `listeners[${i}]`;
      const l = c.object(rl, path);
      if (!l) return;
      c.keys(l, path, ["name", "listen", "pool", "mode", "toaKind", "timeouts", "dataPath"]);
      const listen = c.endpoint(l.listen, `${path}.listen`, true);
      let pool = "";
      if (typeof l.pool !== "string") {
        const names = Object.keys(pools);
        if (l.pool === undefined && names.length === 1) pool = names[0];
        else c.add(`${path}.pool`, `must name a pool (${Object.keys(rawPools ?? {}).join(", ") || "none defined"}), got ${describe(l.pool)}`);
      } else if (!rawPools || !(l.pool in rawPools)) {
        c.add(`${path}.pool`, `no pool named ${JSON.stringify(l.pool)}; defined: ${Object.keys(rawPools ?? {}).join(", ") || "none"}`);
      } else pool = l.pool;
      const name = l.name === undefined ? `listener${i}` : typeof l.name === "string" && /^[A-Za-z0-9_.-]+$/.test(l.name) ? l.name : "";
      if (!name) c.add(`${path}.name`, `must be letters, digits, '_', '.', '-', got ${describe(l.name)}`);
      let lConnect = connectTimeoutMs;
      let lIdle = idleTimeoutMs;
      if (l.timeouts !== undefined) {
        const t = c.object(l.timeouts, `${path}.timeouts`);
        if (t) {
          c.keys(t, `${path}.timeouts`, ["connect", "idle"]);
          lConnect = c.duration(t.connect, `${path}.timeouts.connect`, lConnect);
          lIdle = c.duration(t.idle, `${path}.timeouts.idle`, lIdle);
        }
      }
      const mode = c.oneOf(l.mode, `${path}.mode`, DEFAULTS.mode, CLIENT_ADDRESS_MODES);
      if (l.toaKind !== undefined && mode !== "toa") c.add(`${path}.toaKind`, `only used with mode toa (this listener has mode ${mode})`);
      const toaKind = c.int(l.toaKind, `${path}.toaKind`, DEFAULTS.toaKind, 2, 255);
      if (listen) {
        const key = `${listen.address}:${listen.port}`;
        if (listen.port !== 0 && seen.has(key)) c.add(`${path}.listen`, `${l.listen} is already used by ${seen.get(key)}`);
        seen.set(key, path);
      }
      if (name && listeners.some((x) => x.name === name)) c.add(`${path}.name`, `duplicate listener name ${JSON.stringify(name)}`);
      if (listen && pool && name) {
        const lDataPath = c.dataPath(l.dataPath, `${path}.dataPath`, dataPath);
        if (lDataPath === "packet") checkPacketListener(c, path, listen, mode, pools[pool]);
        listeners.push(Object.freeze({ name, listen, pool, mode, toaKind, connectTimeoutMs: lConnect, idleTimeoutMs: lIdle, dataPath: lDataPath }));
      }
    });
  }
  if (admin && admin.port !== 0 && listeners.some((l) => l.listen.port === admin!.port && (l.listen.address === admin!.address || isAny(l.listen.address) || isAny(admin!.address)))) {
    c.add("admin", `port ${admin.port} is also used by a listener`);
  }
  if (c.issues.length > 0) throw new ConfigError(source, c.issues);
  return Object.freeze({ source, instance, listeners: Object.freeze(listeners), pools: Object.freeze(pools), admin, drainTimeoutMs, packet });
}

export { defaultHalfOpen } from "./config/packet.js";
