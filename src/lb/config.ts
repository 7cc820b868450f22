/**
 * The load balancer's configuration: a YAML file or one-liner flags, both turned into the same raw
 * object and validated once by {@link validateConfig} into a frozen {@link LbConfig}. Every problem is
 * reported with the file, the field path (`pools.web.backends[1].weight`) and what is allowed.
 * Reference with an example: docs/lb.md.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { parse as parseYaml } from "yaml";
import { type Endpoint, formatEndpoint, parseEndpoint } from "./endpoint.js";
import { parseDuration } from "./duration.js";
import { ConfigError, type ConfigIssue } from "./errors.js";
import { SLOTS as PACKET_SLOTS } from "../programs/nat-layout.js";
import { type ClientAddressMode, type DataPath, type SchedulerName, CLIENT_ADDRESS_MODES, DATA_PATHS, DEFAULTS, SCHEDULERS } from "./choices.js";

export { type ClientAddressMode, type DataPath, type SchedulerName, CLIENT_ADDRESS_MODES, DATA_PATHS, SCHEDULERS, DEFAULTS } from "./choices.js";

/**
 * Values earlier versions took, with why they are gone: a config that still names one is refused
 * with this text rather than a bare "must be one of".
 */
const REMOVED_DATA_PATHS: Readonly<Record<string, string>> = {
  kernel:
    "the sockmap relay was removed: it was slower than js on every measured figure, applied no backpressure, and duplicated bytes under concurrent bulk transfers on Linux 6.18; use packet (modes toa, proxy-v2, none) or js",
  auto: "auto chose the removed sockmap relay; use packet (modes toa, proxy-v2, none) or js",
};

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
}

const MAX_WEIGHT = 256;

/** Read and validate a YAML config file; throws {@link ConfigError} naming the file and fields. */
export function loadConfigFile(file: string): LbConfig {
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
  return validateConfig(raw, file);
}

/** Small cursor over the raw object that records issues with their paths. */
class Checker {
  readonly issues: ConfigIssue[] = [];
  add(path: string, message: string): void {
    this.issues.push({ path, message });
  }
  /** Report keys of `obj` not in `allowed` (typos must not pass silently). */
  keys(obj: Record<string, unknown>, path: string, allowed: string[]): void {
    for (const k of Object.keys(obj)) {
      if (!allowed.includes(k)) this.add(join(path, k), `unknown field; allowed here: ${allowed.join(", ")}`);
    }
  }
  object(v: unknown, path: string): Record<string, unknown> | null {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
    this.add(path, `must be a mapping, got ${describe(v)}`);
    return null;
  }
  int(v: unknown, path: string, def: number, min: number, max: number): number {
    if (v === undefined) return def;
    if (typeof v === "number" && Number.isInteger(v) && v >= min && v <= max) return v;
    this.add(path, `must be an integer ${min}..${max}, got ${describe(v)}`);
    return def;
  }
  duration(v: unknown, path: string, def: number, min = 1): number {
    if (v === undefined) return def;
    const ms = parseDuration(v);
    if (typeof ms === "string") {
      this.add(path, ms);
      return def;
    }
    if (ms < min) {
      this.add(path, `must be at least ${min}ms, got ${describe(v)}`);
      return def;
    }
    return ms;
  }
  dataPath(v: unknown, path: string, def: DataPath): DataPath {
    const removed = typeof v === "string" ? REMOVED_DATA_PATHS[v] : undefined;
    if (removed === undefined) return this.oneOf(v, path, def, DATA_PATHS);
    this.add(path, `${JSON.stringify(v)} is no longer a data path: ${removed}`);
    return def;
  }
  oneOf<T extends string>(v: unknown, path: string, def: T, allowed: readonly T[]): T {
    if (v === undefined) return def;
    if (typeof v === "string" && (allowed as readonly string[]).includes(v)) return v as T;
    this.add(path, `must be one of ${allowed.join(", ")}; got ${describe(v)}`);
    return def;
  }
  endpoint(v: unknown, path: string, allowPortZero = false): Endpoint | null {
    const e = parseEndpoint(v as string, { allowPortZero });
    if (typeof e === "string") {
      this.add(path, e);
      return null;
    }
    return e;
  }
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return JSON.stringify(v);
}

/**
 * Validate a raw config (parsed YAML, or built from flags) into a frozen {@link LbConfig}. `source`
 * names the file in messages. Throws {@link ConfigError} with every issue found.
 */
export function validateConfig(raw: unknown, source: string): LbConfig {
  const c = new Checker();
  const top = c.object(raw ?? undefined, "");
  if (!top) throw new ConfigError(source, c.issues);
  c.keys(top, "", ["listeners", "pools", "admin", "timeouts", "drainTimeout", "dataPath", "packet"]);
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
  const packet = validatePacket(c, top.packet);

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
  return Object.freeze({ source, listeners: Object.freeze(listeners), pools: Object.freeze(pools), admin, drainTimeoutMs, packet });
}

function validatePacket(c: Checker, raw: unknown): PacketConfig {
  if (raw === undefined) return DEFAULTS.packet;
  const p = c.object(raw, "packet");
  if (!p) return DEFAULTS.packet;
  c.keys(p, "packet", ["maxConnections", "mtu", "interfaces", "closedTimeout", "maxHalfOpen", "synTimeout"]);
  const maxConnections = c.int(p.maxConnections, "packet.maxConnections", DEFAULTS.packet.maxConnections, 16, 4_194_304);
  const maxHalfOpen = c.int(p.maxHalfOpen, "packet.maxHalfOpen", defaultHalfOpen(maxConnections), 16, 4_194_304);
  const synTimeoutMs = c.duration(p.synTimeout, "packet.synTimeout", DEFAULTS.packet.synTimeoutMs, 100);
  const mtu = c.int(p.mtu, "packet.mtu", DEFAULTS.packet.mtu, 576, 65535);
  const closedTimeoutMs = c.duration(p.closedTimeout, "packet.closedTimeout", DEFAULTS.packet.closedTimeoutMs, 0);
  let interfaces: readonly string[] = DEFAULTS.packet.interfaces;
  if (p.interfaces !== undefined) {
    if (!Array.isArray(p.interfaces) || p.interfaces.some((d: unknown) => typeof d !== "string" || !/^[^\s/]{1,15}$/.test(d))) {
      c.add("packet.interfaces", `must be a list of device names (e.g. [eth0, eth1]), got ${describe(p.interfaces)}`);
    } else interfaces = Object.freeze([...(p.interfaces as string[])]);
  }
  return Object.freeze({ maxConnections, mtu, interfaces, closedTimeoutMs, maxHalfOpen, synTimeoutMs });
}

/** packet.maxHalfOpen when not set: a quarter of the connections, at least 16. */
export function defaultHalfOpen(maxConnections: number): number {
  return Math.max(16, Math.floor(maxConnections / 4));
}

/** What the packet data path can do: rewrite packets (toa or none), same family end to end, a table scheduler. */
function checkPacketListener(c: Checker, path: string, listen: Endpoint, mode: ClientAddressMode, pool: PoolConfig | undefined): void {
  if (mode === "proxy-v1") {
    c.add(`${path}.mode`, `proxy-v1 is text whose length varies per client; dataPath packet writes toa, proxy-v2 or none (use proxy-v2, or dataPath js for proxy-v1)`);
  }
  if (isAny(listen.address) || listen.port === 0) {
    c.add(`${path}.listen`, `dataPath packet needs a specific address and port (the kernel matches packets to them), got ${formatEndpoint(listen)}`);
  }
  if (!pool) return;
  if (pool.scheduler === "least-connections") {
    c.add(`${path}.dataPath`, `packet: pool ${pool.name} uses least-connections, which needs per-connection bookkeeping the kernel tables don't do; use round-robin, weighted-round-robin or source-hash`);
  }
  const family = isIP(listen.address);
  // One slot-table entry per (local address, backend): nat_slots has PACKET_SLOTS per listener.
  const locals = Math.max(1, pool.sourceAddresses.filter((a) => isIP(a) === family).length);
  if (pool.backends.length * locals > PACKET_SLOTS) {
    c.add(
      `${path}.dataPath`,
      `packet: pool ${pool.name} has ${pool.backends.length} backends × ${locals} sourceAddresses = ${pool.backends.length * locals} slot entries, at most ${PACKET_SLOTS}; use fewer sourceAddresses or split the pool`,
    );
  }
  const other = pool.backends.filter((b) => isIP(b.address) !== family);
  if (family !== 0 && other.length > 0) {
    c.add(`${path}.dataPath`, `packet: backend ${other[0].id} is IPv${isIP(other[0].address)} but the listener is IPv${family}; the packet path translates addresses, not families (use dataPath js)`);
  }
}

function isAny(a: string): boolean {
  return a === "0.0.0.0" || a === "::";
}

function validatePool(c: Checker, name: string, rp: unknown, path: string): PoolConfig | null {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) c.add(path, "pool names are letters, digits, '_', '.', '-'");
  const p = c.object(rp, path);
  if (!p) return null;
  c.keys(p, path, ["scheduler", "backends", "healthCheck", "sourceAddresses", "sourcePorts"]);
  const scheduler = c.oneOf(p.scheduler, `${path}.scheduler`, DEFAULTS.scheduler, SCHEDULERS);
  const backends: BackendConfig[] = [];
  if (!Array.isArray(p.backends) || p.backends.length === 0) {
    c.add(`${path}.backends`, `must be a non-empty list of ADDR:PORT or {address: ADDR:PORT, weight: N}, got ${describe(p.backends)}`);
  } else {
    p.backends.forEach((rb: unknown, i: number) => {
      const bpath = `${path}.backends[${i}]`;
      let addr: unknown = rb;
      let weight: number = DEFAULTS.weight;
      if (rb !== null && typeof rb === "object") {
        const b = c.object(rb, bpath)!;
        c.keys(b, bpath, ["address", "weight"]);
        addr = b.address;
        weight = c.int(b.weight, `${bpath}.weight`, DEFAULTS.weight, 1, MAX_WEIGHT);
      }
      const e = c.endpoint(addr, typeof rb === "object" ? `${bpath}.address` : bpath);
      if (!e) return;
      if (e.address === "0.0.0.0" || e.address === "::") return c.add(bpath, "a backend needs a specific address, not a wildcard");
      const id = e.family === 6 ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
      if (backends.some((x) => x.id === id)) return c.add(bpath, `duplicate backend ${id}`);
      backends.push(Object.freeze({ ...e, id, weight }));
    });
  }
  let healthCheck: HealthCheckConfig | null = null;
  if (p.healthCheck !== undefined && p.healthCheck !== null && p.healthCheck !== false) {
    const hpath = `${path}.healthCheck`;
    const h = c.object(p.healthCheck, hpath);
    if (h) {
      c.keys(h, hpath, ["type", "path", "expectStatus", "interval", "timeout", "rise", "fall", "sendProxy"]);
      if (h.sendProxy !== undefined && typeof h.sendProxy !== "boolean") c.add(`${hpath}.sendProxy`, `must be true or false, got ${describe(h.sendProxy)}`);
      const type = c.oneOf(h.type, `${hpath}.type`, "tcp" as const, ["tcp", "http"] as const);
      if (type === "tcp" && (h.path !== undefined || h.expectStatus !== undefined)) {
        c.add(`${hpath}.type`, "path and expectStatus need type: http");
      }
      let hcPath: string = DEFAULTS.health.path;
      if (h.path !== undefined) {
        if (typeof h.path === "string" && h.path.startsWith("/") && !/[\s]/.test(h.path)) hcPath = h.path;
        else c.add(`${hpath}.path`, `must be an absolute URL path such as /healthz, got ${describe(h.path)}`);
      }
      const intervalMs = c.duration(h.interval, `${hpath}.interval`, DEFAULTS.health.intervalMs, 50);
      const timeoutMs = c.duration(h.timeout, `${hpath}.timeout`, Math.min(DEFAULTS.health.timeoutMs, intervalMs), 10);
      if (timeoutMs > intervalMs) c.add(`${hpath}.timeout`, `must not exceed interval (${intervalMs}ms)`);
      healthCheck = Object.freeze({
        type,
        path: hcPath,
        expectStatus: c.int(h.expectStatus, `${hpath}.expectStatus`, DEFAULTS.health.expectStatus, 100, 599),
        intervalMs,
        timeoutMs,
        rise: c.int(h.rise, `${hpath}.rise`, DEFAULTS.health.rise, 1, 100),
        fall: c.int(h.fall, `${hpath}.fall`, DEFAULTS.health.fall, 1, 100),
        sendProxy: h.sendProxy === true,
      });
    }
  }
  const sourceAddresses: string[] = [];
  if (p.sourceAddresses !== undefined) {
    if (!Array.isArray(p.sourceAddresses)) c.add(`${path}.sourceAddresses`, `must be a list of IP addresses, got ${describe(p.sourceAddresses)}`);
    else
      p.sourceAddresses.forEach((a: unknown, i: number) => {
        if (typeof a === "string" && isIP(a) !== 0 && a !== "0.0.0.0" && a !== "::") sourceAddresses.push(a);
        else c.add(`${path}.sourceAddresses[${i}]`, `must be a specific IPv4 or IPv6 address, got ${describe(a)}`);
      });
    for (const b of backends) {
      if (sourceAddresses.length > 0 && !sourceAddresses.some((a) => isIP(a) === b.family)) {
        c.add(`${path}.sourceAddresses`, `has no IPv${b.family} address for backend ${b.id}`);
        break;
      }
    }
  }
  let sourcePorts: PortRange = DEFAULTS.sourcePorts;
  if (p.sourcePorts !== undefined) {
    const m = typeof p.sourcePorts === "string" ? /^([0-9]{1,5})-([0-9]{1,5})$/.exec(p.sourcePorts) : null;
    const first = m ? Number(m[1]) : NaN;
    const last = m ? Number(m[2]) : NaN;
    if (!m || first < 1024 || last > 65535 || first > last) {
      c.add(`${path}.sourcePorts`, `must be a range FIRST-LAST within 1024-65535, e.g. 10000-32767; got ${describe(p.sourcePorts)}`);
    } else sourcePorts = Object.freeze({ first, last });
  }
  return Object.freeze({ name, scheduler, backends: Object.freeze(backends), healthCheck, sourceAddresses: Object.freeze(sourceAddresses), sourcePorts });
}
