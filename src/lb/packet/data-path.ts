/**
 * The packet data path at run time: loads the NAT program (src/programs/nat/), attaches it to the
 * ingress of the balancer's devices, keeps its tables in step with the config and the health checks,
 * and removes finished connections. Listeners on this path have no socket: the kernel forwards their
 * packets, so a connection costs two table entries and no work in this process.
 *
 *   config + health ─▶ NatTables.apply (services, slots, backends)      on start, reload, health change
 *   every second    ─▶ NatTables.sweep (finished, idle, never answered)  → active counts per backend
 */
import { readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { ensurePinDir, Program, type TcAttachment } from "../../bpf/index.js";
import { natProgram } from "../../programs/nat/index.js";
import { InstanceMeta, NAT_META_NAME, NatMapName } from "../../programs/nat-layout.js";
import { packageVersion } from "../../shared/self.js";
import { allDevices, type AttachResult, attachInstance, detachElsewhere } from "./attach.js";
import { createMeta, filterName, type InstanceFacts, layoutProblem, metaFacts, metaValue, openMeta, openPinnedMaps, PROGRAM_PIN, readMetaRaw, unpinInstance, unpinOne } from "./instance.js";
import type { ListenerConfig, PacketConfig } from "../config.js";
import { LbError } from "../errors.js";
import type { Pool } from "../pool.js";
import type { ListenerStats } from "../listener.js";
import { routeTo, type Route } from "./route.js";
import { type AppliedService, NAT_MAP_KEYS, type NatCounters, type NatServiceSpec, NatTables } from "./tables.js";
import { SWEEP_REASONS, type SweepResult } from "./flows.js";


const SWEEP_MS = 1000;
/** The flow table's fill at which the status warns (eviction is near), and below which it stops. */
const CAPACITY_WARN_AT = 0.8;
const CAPACITY_CLEAR_AT = 0.7;

/** Packet-path figures of one backend, for the status page and metrics. */
export interface PacketBackendFigures {
  connections: number;
  active: number;
  bytesIn: number;
  bytesOut: number;
  connectErrors: number;
  toaWritten: number;
}

/** What the status page shows about the packet path. */
export interface PacketStatus {
  /** The pinned instance: its name, folder, age, program and how this process came to serve it. */
  instance: InstanceFacts & { adopted: boolean; readyMs: number };
  attach: string;
  devices: string[];
  maxConnections: number;
  active: number;
  /** nat_flows entries at the last sweep (two per connection). */
  entries: number;
  /** Connections still opening at the last sweep, and the budget for them (packet.maxHalfOpen). */
  halfOpen: number;
  maxHalfOpen: number;
  counters: NatCounters["global"];
  removed: SweepResult["removedBy"];
  /** Kernel memory of the five maps (preallocated; fdinfo memlock). */
  tableBytes: number;
  warnings: string[];
}

/** What the kernel charges for a map (its fdinfo `memlock`), 0 when unreadable. */
function memlock(fd: number): number {
  try {
    return Number(/^memlock:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Devices that are up, but lo: where clients and backends can come in. */
async function upDevices(): Promise<string[]> {
  return (await allDevices({ up: true })).filter((d) => !d.flags.includes("LOOPBACK")).map((d) => d.name);
}

export class PacketDataPath {
  /** The listeners on this path, as last synced. */
  private _listeners: readonly ListenerConfig[] = [];
  private pools: ReadonlyMap<string, Pool> = new Map();
  /** What the tables hold for each listener (by name); kept through a drain, whose services are gone. */
  private applied = new Map<string, AppliedService>();
  private routes = new Map<string, Route>();
  private healthKey = "";
  private stopped = false;
  private warnings: string[] = [];
  /** Set while the flow table is nearly full (see {@link checkCapacity}). */
  private capacityWarning: string | undefined;
  private lastSweep: SweepResult | null = null;
  private readonly connectFailures = new Map<number, number>();
  private readonly removedTotal = Object.fromEntries(SWEEP_REASONS.map((r) => [r, 0])) as SweepResult["removedBy"];
  private readonly sweepTimer: NodeJS.Timeout;

  private constructor(
    /** mtu and closedTimeout follow reloads ({@link sync}); maxConnections and interfaces are fixed at open. */
    private config: PacketConfig,
    private readonly tables: NatTables,
    private readonly program: Program,
    private readonly attachments: TcAttachment[],
    readonly devices: string[],
    private readonly log: Logger,
    /** How this process came to serve the instance; `facts` is its record as this process wrote it (the only writer while it runs). */
    private readonly start: { facts: InstanceFacts; adopted: boolean; readyMs: number; startWarnings: string[] },
  ) {
    this.warnings = [...start.startWarnings];
    // Not unref()ed: with only packet listeners this timer is what keeps the balancer running.
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
  }

  get listeners(): readonly ListenerConfig[] {
    return this._listeners;
  }

  /**
   * Make the instance's data path serve: adopt the instance pinned at `config.pinDir` (same tables,
   * this build's program swapped in on every device) or make it there (tables, program, attachments,
   * pins; the record last). A failure leaves an adopted instance serving as it was, and nothing of a
   * new one.
   */
  static async open(config: PacketConfig, log: Logger): Promise<PacketDataPath> {
    const t0 = performance.now();
    const devices = config.interfaces.length > 0 ? [...config.interfaces] : await upDevices();
    if (devices.length === 0) throw new LbError("LB_ERR_LISTEN", "dataPath packet: no network device is up (but lo) to attach to; list them in packet.interfaces");
    const { pinDir, instance } = config;
    try {
      ensurePinDir(pinDir);
    } catch (e) {
      throw new LbError("LB_ERR_INSTANCE", `packet.pinDir ${pinDir}: ${(e as Error).message}`, { cause: e });
    }
    const warnings: string[] = [];
    if (privateMountNamespace()) {
      warnings.push(
        `packet data path: this process has a mount namespace of its own (\`ip netns exec\` makes one), so its pins in ${pinDir} are not the host's and go when it exits: ` +
          `the data path won't outlive the process; run it with \`nsenter --net=/run/netns/NAME\` instead`,
      );
    }
    const metaMap = openMeta(pinDir);
    let adopted: InstanceFacts | undefined;
    let tables: NatTables | undefined;
    let meta = metaMap;
    let program: Program | undefined;
    let attached: AttachResult | undefined;
    let record: Buffer | undefined;
    try {
      if (metaMap) {
        const raw = readMetaRaw(metaMap, pinDir);
        const problem = layoutProblem(raw, pinDir);
        if (problem) throw new LbError("LB_ERR_INSTANCE", problem);
        adopted = metaFacts(InstanceMeta.decode(raw), pinDir);
        if (adopted.name !== instance) throw new LbError("LB_ERR_INSTANCE", `${pinDir} holds instance "${adopted.name}", but this config's instance is "${instance}": set instance: ${adopted.name}, or give packet.pinDir another folder`);
        tables = NatTables.open(openPinnedMaps(pinDir), { own: true });
        for (const [field, had, want] of [["maxConnections", adopted.maxConnections, config.maxConnections], ["maxHalfOpen", adopted.maxHalfOpen, config.maxHalfOpen]] as const) {
          if (had !== want) warnings.push(`packet.${field} is ${want} but the adopted instance's tables were made for ${had}: they keep ${had} until the instance is removed and made again (\`toa lb remove\`, then start)`);
        }
      } else {
        // Pins without a record: a start that died before it finished. Nothing serves through them.
        const left = unpinInstance(pinDir);
        if (left.removed.length > 0) log.warn({ removed: left.removed }, `packet data path: removed the pins of an unfinished start in ${pinDir}`);
        ensurePinDir(pinDir); // the folder went with the last pin
        tables = NatTables.create(config.maxConnections, config.maxHalfOpen);
        for (const k of NAT_MAP_KEYS) tables.maps[k].pin(join(pinDir, NatMapName[k]));
        meta = createMeta();
      }
      const byName = Object.fromEntries(NAT_MAP_KEYS.map((k) => [NatMapName[k], tables!.maps[k]]));
      program = Program.load(natProgram(), { maps: byName });
      attached = await attachInstance(devices, program, pinDir, filterName(instance));
      unpinOne(pinDir, PROGRAM_PIN);
      program.pin(join(pinDir, PROGRAM_PIN));
      const now = Date.now();
      const tag = program.info.tag;
      record = metaValue({
        instance,
        createdMs: adopted?.createdMs ?? now,
        programTag: tag,
        programSinceMs: adopted && adopted.programTag === tag ? adopted.programSinceMs : now,
        adoptions: adopted ? adopted.adoptions + 1 : 0,
        maxConnections: adopted?.maxConnections ?? config.maxConnections,
        maxHalfOpen: adopted?.maxHalfOpen ?? config.maxHalfOpen,
        build: packageVersion(),
      });
      meta!.update(0, record);
      if (!adopted) meta!.pin(join(pinDir, NAT_META_NAME));
    } catch (e) {
      // An instance found here (adopted, or refused) keeps serving as it was; a new one goes whole.
      const fresh = !metaMap;
      for (const a of attached?.attachments ?? []) {
        if (!fresh) a.release();
        else {
          try {
            a.detach();
          } catch {
            // gone with its device
          }
        }
      }
      program?.close();
      meta?.close();
      tables?.close();
      if (fresh) unpinInstance(pinDir);
      if (e instanceof LbError) throw e;
      throw new LbError("LB_ERR_LISTEN", `dataPath packet: cannot attach the NAT program: ${(e as Error).message}`, { cause: e });
    }
    meta!.close();
    const facts = metaFacts(InstanceMeta.decode(record!), pinDir);
    const readyMs = Math.round(performance.now() - t0);
    const how = adopted
      ? `adopted instance ${instance} (made ${new Date(facts.createdMs).toISOString()}, ${facts.adoptions} adoption(s)); program ${adopted.programTag === facts.programTag ? "unchanged" : `${adopted.programTag} → ${facts.programTag}`}, swapped on ${attached.swapped.join(", ") || "no device"}`
      : `new instance ${instance}`;
    log.info({ devices, attach: attached.attachments[0]?.mode, instance, pinDir, adopted: !!adopted, swapped: attached.swapped, created: attached.created, removed: attached.removed, readyMs }, `packet data path on ${devices.join(", ")} (tc ingress, ${attached.attachments[0]?.mode}): ${how}; serving ${readyMs} ms after start`);
    for (const w of warnings) log.warn(w);
    return new PacketDataPath(config, tables, program, attached.attachments, devices, log, { facts, adopted: !!adopted, readyMs, startWarnings: warnings });
  }

  /** The instance as pinned: name, times, program tag, adoptions; and how this process came to serve it. */
  instance(): InstanceFacts & { adopted: boolean; readyMs: number } {
    return { ...this.start.facts, adopted: this.start.adopted, readyMs: this.start.readyMs };
  }

  /**
   * Check what `listeners` need before anything changes: their address must be this machine's and
   * every backend reachable; `config` may change only what the open tables and attachments allow.
   * Resolves the routes used by {@link sync}.
   */
  async prepare(listeners: readonly ListenerConfig[], pools: ReadonlyMap<string, { readonly backends: readonly { address: string }[] }>, config: PacketConfig = this.config): Promise<void> {
    const fixed: string[] = [];
    if (config.maxConnections !== this.config.maxConnections) fixed.push(`packet.maxConnections (${this.config.maxConnections} → ${config.maxConnections})`);
    if (config.maxHalfOpen !== this.config.maxHalfOpen) fixed.push(`packet.maxHalfOpen (${this.config.maxHalfOpen} → ${config.maxHalfOpen})`);
    if (config.interfaces.join(",") !== this.config.interfaces.join(",")) fixed.push(`packet.interfaces ([${this.config.interfaces.join(", ")}] → [${config.interfaces.join(", ")}])`);
    if (config.pinDir !== this.config.pinDir) fixed.push(`packet.pinDir (${this.config.pinDir} → ${config.pinDir})`);
    if (config.instance !== this.config.instance) fixed.push(`instance (${this.config.instance} → ${config.instance})`);
    if (fixed.length > 0) {
      throw new LbError("LB_ERR_CONFIG", `${fixed.join(" and ")}: fixed while the instance exists (its tables and attachments outlive restarts); to change, \`toa lb remove\` the instance, then start`);
    }
    const routes = new Map<string, Route>();
    for (const l of listeners) {
      const r = await routeTo(l.listen.address).catch((e: Error) => {
        throw new LbError("LB_ERR_LISTEN", `listener ${l.name}: ${e.message}`, { cause: e });
      });
      if (!r.local) throw new LbError("LB_ERR_LISTEN", `listener ${l.name}: ${l.listen.address} is not an address of this machine; dataPath packet answers only for its own addresses (add it to a device, or use another listen address)`);
      for (const b of pools.get(l.pool)?.backends ?? []) {
        if (routes.has(b.address)) continue;
        routes.set(
          b.address,
          await routeTo(b.address).catch((e: Error) => {
            throw new LbError("LB_ERR_LISTEN", `listener ${l.name}: backend ${b.address}: ${e.message}`, { cause: e });
          }),
        );
      }
    }
    this.routes = routes;
  }

  /**
   * Local ports of the NAT that the kernel may also hand out (ip_local_port_range): a health check
   * or a JS-relayed connection to the same backend from such a port would have its replies taken by
   * the program. Returned as warnings (logged, and shown in the status).
   */
  private portWarnings(): string[] {
    let eph: number[];
    try {
      eph = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    } catch {
      return [];
    }
    const out = new Set<string>();
    for (const l of this._listeners) {
      const r = this.pools.get(l.pool)?.config.sourcePorts;
      if (!r || r.last < eph[0] || r.first > eph[1]) continue;
      out.add(
        `pool ${l.pool}: sourcePorts ${r.first}-${r.last} overlap the kernel's ephemeral ports ${eph[0]}-${eph[1]} (net.ipv4.ip_local_port_range): ` +
          `a health check or relayed connection to a backend could get a port a packet-path connection holds; set sourcePorts outside that range, ` +
          `or add it to net.ipv4.ip_local_reserved_ports`,
      );
    }
    return [...out];
  }

  /** Make the tables match `listeners` (packet ones) over `pools` and `config` (after {@link prepare}). */
  sync(listeners: readonly ListenerConfig[], pools: ReadonlyMap<string, Pool>, config: PacketConfig = this.config): void {
    this.config = config;
    this._listeners = listeners;
    this.pools = pools;
    for (const p of pools.values()) p.onHealthChange = listeners.some((l) => l.pool === p.name) ? () => this.applyIfHealthChanged() : null;
    this.applyNow();
    const warnings = this.portWarnings();
    for (const w of warnings) if (!this.warnings.includes(w)) this.log.warn(w);
    this.warnings = [...this.start.startWarnings, ...warnings];
  }

  private specs(): NatServiceSpec[] {
    if (this.stopped) return [];
    return this._listeners.map((l) => {
      const pool = this.pools.get(l.pool)!;
      const own = pool.config.sourceAddresses.filter((a) => (a.includes(":") ? 6 : 4) === l.listen.family);
      return {
        key: { addr: l.listen.address, port: l.listen.port },
        family: l.listen.family,
        scheduler: pool.config.scheduler,
        toaKind: l.mode === "toa" ? l.toaKind : 0,
        proxy: l.mode === "proxy-v2",
        portRange: pool.config.sourcePorts,
        mtu: this.config.mtu,
        // Every local address of the family serves every backend, each with the whole port range
        // (LVS FULLNAT's local address pool): a backend takes addresses × ports connections. One
        // entry per (local, backend), local-major, so round robin still alternates backends.
        backends: (own.length > 0 ? own : [undefined]).flatMap((local) =>
          pool.backends.map((b) => {
            const route = this.routes.get(b.address);
            if (!route) throw new LbError("LB_ERR_LISTEN", `backend ${b.id}: no route resolved (reload to retry)`);
            return { id: b.id, hashId: own.length > 1 ? `${b.id}|${local}` : b.id, addr: b.address, port: b.port, weight: b.weight, healthy: b.healthy, local: local ?? route.src, ifindex: route.ifindex };
          }),
        ),
      };
    });
  }

  private currentHealthKey(): string {
    return this._listeners.map((l) => (this.pools.get(l.pool)?.backends ?? []).map((b) => (b.healthy ? "1" : "0")).join("")).join("|");
  }

  private applyNow(): void {
    // apply() answers in the order of the specs, one per listener (none once stopped).
    const applied = this.tables.apply(this.specs());
    if (!this.stopped) this.applied = new Map(this._listeners.map((l, i) => [l.name, applied[i]]));
    this.healthKey = this.currentHealthKey();
  }

  private applyIfHealthChanged(): void {
    if (this.currentHealthKey() === this.healthKey) return;
    try {
      this.applyNow();
    } catch (e) {
      this.log.error({ err: (e as Error).message }, "packet data path: applying a health change failed");
    }
  }

  /** Remove finished connections; keeps the active counts the status shows. */
  sweep(): SweepResult {
    const maxOf = (pick: (l: ListenerConfig) => number, dflt: number) => (this._listeners.length > 0 ? Math.max(...this._listeners.map(pick)) : dflt);
    // Each connection gets its listener's timeouts (by the service id the program stored in it);
    // a service gone in a reload falls back to the longest of the listeners left.
    const synMs = this.config.synTimeoutMs;
    const fallback = { connectMs: maxOf((l) => l.connectTimeoutMs, 3000), synMs, idleMs: maxOf((l) => l.idleTimeoutMs, 300_000), closedMs: this.config.closedTimeoutMs };
    const byId = new Map<number, ListenerConfig>();
    for (const l of this._listeners) {
      const s = this.applied.get(l.name);
      if (s) byId.set(s.id, l);
    }
    const r = this.tables.sweep((id) => {
      const l = byId.get(id);
      return l ? { connectMs: l.connectTimeoutMs, synMs, idleMs: l.idleTimeoutMs, closedMs: this.config.closedTimeoutMs } : fallback;
    });
    for (const [i, n] of r.connectFailures) this.connectFailures.set(i, (this.connectFailures.get(i) ?? 0) + n);
    for (const k of SWEEP_REASONS) this.removedTotal[k] += r.removedBy[k];
    this.lastSweep = r;
    this.checkCapacity(r.entries);
    return r;
  }

  /**
   * Warn while nat_flows is nearly full: when it is, new connections are refused (table_full). On
   * from CAPACITY_WARN_AT, off again below CAPACITY_CLEAR_AT (no flapping around one figure).
   */
  private checkCapacity(entries: number): void {
    const size = (this.config.maxConnections + this.config.maxHalfOpen) * 2;
    const was = this.capacityWarning;
    if (entries >= size * CAPACITY_WARN_AT) {
      this.capacityWarning =
        `packet data path: nat_flows is ${Math.round((100 * entries) / size)}% full (${entries} of ${size} entries, two per connection): ` +
        `when it is full new connections are refused (counted as table_full); raise packet.maxConnections (needs a restart)`;
      if (!was) this.log.warn(this.capacityWarning);
    } else if (entries < size * CAPACITY_CLEAR_AT) this.capacityWarning = undefined;
  }

  /** Connections in the tables at the last sweep. */
  get active(): number {
    let n = 0;
    for (const v of this.lastSweep?.active.values() ?? []) n += v;
    return n;
  }

  /** Drain: new SYNs go to the stack (refused); established connections go on. */
  stopNew(): void {
    this.stopped = true;
    this.applyNow();
  }

  /** Figures of a listener on this path, summed over its service's backends. */
  listenerStats(l: ListenerConfig, counters = this.tables.counters()): ListenerStats {
    const f = this.figures((this.applied.get(l.name)?.backends ?? []).map((b) => b.index), counters);
    return { accepted: f.connections, active: f.active, bytesIn: f.bytesIn, bytesOut: f.bytesOut, noBackend: 0, failed: 0, connectErrors: f.connectErrors };
  }

  /** Figures of one backend on this path, or undefined when none of its connections go this way. */
  backendFigures(backendId: string, poolName: string, counters = this.tables.counters()): PacketBackendFigures | undefined {
    const listeners = this._listeners.filter((l) => l.pool === poolName);
    if (listeners.length === 0) return undefined;
    const indices = new Set<number>();
    for (const l of listeners) for (const x of this.applied.get(l.name)?.backends ?? []) if (x.id === backendId) indices.add(x.index);
    return this.figures(indices, counters);
  }

  /** The kernel's counters, the last sweep's open connections and the connect failures of backend `indices`, summed. */
  private figures(indices: Iterable<number>, counters: NatCounters): PacketBackendFigures {
    const f: PacketBackendFigures = { connections: 0, active: 0, bytesIn: 0, bytesOut: 0, connectErrors: 0, toaWritten: 0 };
    for (const i of indices) {
      const c = counters.backends.get(i);
      f.connections += c?.connections ?? 0;
      f.bytesIn += c?.bytesToBackend ?? 0;
      f.bytesOut += c?.bytesToClient ?? 0;
      f.toaWritten += c?.toaWritten ?? 0;
      f.active += this.lastSweep?.active.get(i) ?? 0;
      f.connectErrors += this.connectFailures.get(i) ?? 0;
    }
    return f;
  }

  counters(): NatCounters {
    return this.tables.counters();
  }

  status(counters = this.tables.counters()): PacketStatus {
    return {
      instance: this.instance(),
      attach: this.attachments[0]?.mode ?? "",
      devices: this.devices,
      maxConnections: this.config.maxConnections,
      active: this.active,
      entries: this.lastSweep?.entries ?? 0,
      halfOpen: this.lastSweep?.halfOpen ?? 0,
      maxHalfOpen: this.config.maxHalfOpen,
      counters: counters.global,
      removed: { ...this.removedTotal },
      tableBytes: Object.values(this.tables.maps).reduce((n, m) => n + memlock(m.fd), 0),
      warnings: this.capacityWarning ? [...this.warnings, this.capacityWarning] : this.warnings,
    };
  }

  /**
   * Let go of the instance, leaving it serving: timers stop, fds close; the program stays attached
   * and the tables pinned, so established connections keep flowing and new ones are admitted on the
   * last tables until a process adopts it again (docs/lb.md "Restarts").
   */
  close(): void {
    this.stopTimers();
    for (const a of this.attachments) a.release();
    this.closeFds();
  }

  /** Take the instance away: detach from every device and unpin everything it pinned. */
  async remove(): Promise<{ removed: string[]; kept: string[] }> {
    this.stopTimers();
    for (const a of this.attachments) {
      try {
        a.detach();
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, "packet data path: detach failed");
      }
    }
    await detachElsewhere([], this.config.pinDir, filterName(this.config.instance));
    this.closeFds();
    return unpinInstance(this.config.pinDir);
  }

  private stopTimers(): void {
    clearInterval(this.sweepTimer);
    for (const p of this.pools.values()) p.onHealthChange = null;
  }

  private closeFds(): void {
    this.program.close();
    this.tables.close();
  }
}

/** Whether this process sees other mounts than PID 1 (`ip netns exec`, a container): its bpffs is not the host's. */
function privateMountNamespace(): boolean {
  try {
    return readlinkSync("/proc/self/ns/mnt") !== readlinkSync("/proc/1/ns/mnt");
  } catch {
    return false;
  }
}
