/**
 * The load balancer: listeners and pools built from a validated config, reloads that keep
 * established connections, drain on shutdown, the admin listener and the status snapshot.
 *
 *   client ─▶ Listener ─ pick ─▶ Pool (scheduler, health) ─▶ connect (toa: local port + register)
 *                 └──────────────── relay (both ways, backpressure) ────────────────┘
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { startAdmin } from "./admin.js";
import type { ClientAddressWriter } from "./client-address.js";
import type { LbConfig, ListenerConfig } from "./config.js";
import { formatDuration } from "./duration.js";
import { formatEndpoint } from "./endpoint.js";
import { LbError } from "./errors.js";
import { Listener } from "./listener.js";
import { createMetrics } from "./metrics.js";
import { Pool } from "./pool.js";
import type { PacketDataPath } from "./packet/data-path.js";
import type { StatusSnapshot } from "./status.js";

export interface BalancerOptions {
  log: Logger;
  /** Opens the TOA sender, the first time a listener in `toa` mode needs it; throws when unavailable. */
  openWriter?: () => ClientAddressWriter;
  /** Loads the config again for POST /reload (the CLI re-reads the file); absent = reload refused. */
  loadConfig?: () => LbConfig;
}

export class Balancer {
  private readonly listeners = new Map<string, Listener>();
  /** Listeners removed by a reload whose connections are still open. */
  private readonly retired = new Set<Listener>();
  private readonly pools = new Map<string, Pool>();
  private writer: ClientAddressWriter | null = null;
  /** The packet data path, open while a listener uses it; its listeners have no socket. */
  private packet: PacketDataPath | null = null;
  private admin: Server | null = null;
  private adminKey = "";
  readonly registry: Registry;
  private readonly startedAtMs = Date.now();
  private draining = false;
  private reloads = 0;
  private reloadFailures = 0;
  private reloadChain: Promise<unknown> = Promise.resolve();

  private constructor(
    private config: LbConfig,
    private readonly opts: BalancerOptions,
  ) {
    this.registry = createMetrics(() => this.snapshot());
  }

  /** Build everything and start listening; on failure nothing is left open. */
  static async start(config: LbConfig, opts: BalancerOptions): Promise<Balancer> {
    const b = new Balancer(config, opts);
    try {
      await b.apply(config);
    } catch (e) {
      await b.close();
      throw e;
    }
    return b;
  }

  get log(): Logger {
    return this.opts.log;
  }

  /** The address a listener is bound to (useful with port 0). */
  listenerAddress(name: string): AddressInfo | null {
    const pl = this.packet?.listeners.find((l) => l.name === name);
    if (pl) return { address: pl.listen.address, port: pl.listen.port, family: pl.listen.family === 6 ? "IPv6" : "IPv4" };
    return (this.listeners.get(name)?.server.address() as AddressInfo | null) ?? null;
  }

  /** The admin listener's address, or null. */
  adminAddress(): AddressInfo | null {
    return (this.admin?.address() as AddressInfo | null) ?? null;
  }

  /**
   * Apply a new config without dropping established connections: pools are updated in place (same
   * backends keep health and counters), listeners on the same address keep their socket and take
   * the new settings, new listeners open, removed ones stop accepting while their clients finish.
   * If a new listener cannot bind, the old config stays in force.
   */
  reload(next?: LbConfig): Promise<string> {
    const run = async (): Promise<string> => {
      try {
        const config = next ?? this.opts.loadConfig?.();
        if (!config) throw new LbError("LB_ERR_RELOAD", "no config source to reload from");
        if (this.draining) throw new LbError("LB_ERR_RELOAD", "draining: reload refused");
        await this.apply(config);
        this.reloads++;
        const msg = `reloaded ${config.source}: ${config.listeners.length} listener(s), ${Object.keys(config.pools).length} pool(s)`;
        this.log.info({ reloads: this.reloads }, msg);
        return msg;
      } catch (e) {
        this.reloadFailures++;
        this.log.error({ err: (e as Error).message }, "reload failed; the running config stays");
        throw e;
      }
    };
    const p = this.reloadChain.then(run, run);
    this.reloadChain = p.catch(() => undefined);
    return p;
  }

  private async apply(config: LbConfig): Promise<void> {
    if (config.listeners.some((l) => l.mode === "toa" && l.dataPath !== "packet") && !this.writer) {
      if (!this.opts.openWriter) throw new LbError("LB_ERR_TOA_SENDER", "TOA sender unavailable: no sender configured (use mode proxy-v2, proxy-v1 or none)");
      this.writer = this.opts.openWriter();
    }
    // The packet path first: a listen address that isn't ours or a backend without a route is refused
    // before anything changes.
    const packetListeners = config.listeners.filter((l) => l.dataPath === "packet");
    const openedPacket = packetListeners.length > 0 && !this.packet;
    // The packet path (its program assembler, tc and netlink code) is loaded only by a config that
    // uses it: a JS-relay balancer starts without it (seconds under emulation).
    if (openedPacket) this.packet = await (await import("./packet/data-path.js")).PacketDataPath.open(config.packet, this.log);
    try {
      await this.packet?.prepare(packetListeners, new Map(Object.entries(config.pools)), config.packet);
    } catch (e) {
      if (openedPacket) this.closePacket();
      throw e;
    }
    // New listeners first: if one cannot bind, nothing has changed yet.
    const opened: Listener[] = [];
    const deps = { pool: (n: string) => this.pools.get(n), writer: () => this.writer, log: this.log };
    const kept = new Map<string, Listener>();
    for (const lc of config.listeners) {
      if (lc.dataPath === "packet") continue;
      const cur = this.listeners.get(lc.name);
      const boundPort = (cur?.server.address() as AddressInfo | null)?.port;
      if (cur && cur.config.listen.address === lc.listen.address && (cur.config.listen.port === lc.listen.port || boundPort === lc.listen.port || lc.listen.port === 0)) {
        kept.set(lc.name, cur);
        continue;
      }
      const l = new Listener(lc, deps);
      try {
        await l.listen();
      } catch (e) {
        for (const o of opened) o.stopAccepting();
        if (openedPacket) this.closePacket();
        throw e;
      }
      opened.push(l);
    }
    // Pools: update in place, add, remove.
    for (const [name, pc] of Object.entries(config.pools)) {
      const p = this.pools.get(name);
      if (p) p.update(pc);
      else this.pools.set(name, new Pool(pc, this.log));
    }
    for (const [name, p] of this.pools) {
      if (!(name in config.pools)) {
        p.stop();
        this.pools.delete(name);
      }
    }
    // The packet path's tables follow the pools just updated; without packet listeners it goes.
    const wasPacket = new Set(this.packet?.listeners.map((l) => l.name));
    if (packetListeners.length > 0) this.packet!.sync(packetListeners, this.pools, config.packet);
    else this.closePacket();
    for (const l of packetListeners) {
      if (!wasPacket.has(l.name)) this.log.info({ listener: l.name, mode: l.mode, pool: l.pool }, `packet path for ${formatEndpoint(l.listen)} (${l.mode}) → pool ${l.pool}`);
    }
    // Listeners: keep, add, retire.
    for (const lc of config.listeners) {
      const l = kept.get(lc.name);
      if (l) l.config = lc;
    }
    for (const [name, l] of this.listeners) {
      if (kept.get(name) === l) continue;
      l.stopAccepting();
      this.listeners.delete(name);
      if (l.stats.active > 0) this.retired.add(l);
    }
    for (const l of opened) {
      this.listeners.set(l.name, l);
      const a = l.server.address() as AddressInfo;
      this.log.info({ listener: l.name, mode: l.config.mode, pool: l.config.pool }, `listening on ${formatEndpoint(a)} (${l.config.mode}) → pool ${l.config.pool}`);
    }
    // Admin listener: reopen only when its address changed.
    const key = config.admin ? formatEndpoint(config.admin) : "";
    if (key !== this.adminKey) {
      const old = this.admin;
      this.admin = null;
      if (old) old.close();
      if (config.admin) {
        this.admin = await startAdmin(config.admin, { snapshot: () => this.snapshot(), registry: this.registry, reload: () => this.reload() });
        this.log.info(`admin on http://${formatEndpoint(this.admin.address() as AddressInfo)}/ (status page, /metrics, /status.json, POST /reload)`);
      }
      this.adminKey = key;
    }
    this.config = config;
  }

  private closePacket(): void {
    const p = this.packet;
    this.packet = null;
    p?.close();
  }

  /** Connections open now, in every listener (retired ones included) and in the packet path's tables. */
  activeConnections(): number {
    let n = this.packet?.active ?? 0;
    for (const l of this.listeners.values()) n += l.stats.active;
    for (const l of this.retired) n += l.stats.active;
    return n;
  }

  /**
   * Stop accepting, wait for open connections to finish up to `deadlineMs` (the config's
   * drainTimeout), then close the rest and everything else. Resolves when done.
   */
  async drain(deadlineMs = this.config.drainTimeoutMs): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    for (const l of this.listeners.values()) l.stopAccepting();
    this.packet?.stopNew();
    this.packet?.sweep();
    const n = this.activeConnections();
    this.log.info({ active: n }, `draining: not accepting; waiting up to ${formatDuration(deadlineMs)} for ${n} connection(s)`);
    const until = Date.now() + deadlineMs;
    // The packet path's count comes from a sweep of its tables: fresh ones while draining.
    const settle = async () => {
      await new Promise((r) => setTimeout(r, this.packet ? 200 : 50));
      this.packet?.sweep();
    };
    while (this.activeConnections() > 0 && Date.now() < until) await settle();
    const left = this.activeConnections();
    if (left > 0) this.log.warn({ left }, `drain deadline passed: closing ${left} connection(s)`);
    await this.close();
    this.log.info("stopped");
  }

  /** Close everything now. */
  async close(): Promise<void> {
    for (const l of [...this.listeners.values(), ...this.retired]) {
      l.stopAccepting();
      l.destroyAll();
    }
    this.listeners.clear();
    this.retired.clear();
    for (const p of this.pools.values()) p.stop();
    this.closePacket();
    if (this.admin) {
      const a = this.admin;
      this.admin = null;
      a.closeAllConnections();
      await new Promise((r) => a.close(() => r(undefined)));
    }
    try {
      this.writer?.close?.();
    } finally {
      this.writer = null;
    }
  }

  /** The state shown by the status page, /status.json and /metrics. */
  snapshot(): StatusSnapshot {
    for (const l of this.retired) if (l.stats.active === 0) this.retired.delete(l);
    const counters = this.packet?.counters();
    const modeText = (c: ListenerConfig) => (c.mode === "toa" ? `toa (kind ${c.toaKind})` : c.mode);
    const listeners = [
      ...[...this.listeners.values(), ...this.retired].map((l) => ({
        name: l.name,
        listen: formatEndpoint((l.server.address() as AddressInfo | null) ?? l.config.listen),
        mode: modeText(l.config),
        dataPath: l.config.dataPath,
        pool: l.config.pool,
        ...l.stats,
      })),
      ...(this.packet?.listeners ?? []).map((c) => ({ name: c.name, listen: formatEndpoint(c.listen), mode: modeText(c), dataPath: c.dataPath, pool: c.pool, ...this.packet!.listenerStats(c, counters) })),
    ];
    const pools = [...this.pools.values()].map((p) => ({
      name: p.name,
      scheduler: p.config.scheduler,
      healthCheck: p.config.healthCheck
        ? `${p.config.healthCheck.type === "http" ? `http GET ${p.config.healthCheck.path} → ${p.config.healthCheck.expectStatus}` : "tcp"} every ${formatDuration(p.config.healthCheck.intervalMs)}, rise ${p.config.healthCheck.rise}, fall ${p.config.healthCheck.fall}`
        : "none",
      backends: p.backends.map((b) => {
        // Connections on the packet path add to those the JS relay counts.
        const f = this.packet?.backendFigures(b.id, p.name, counters);
        return {
          id: b.id,
          weight: b.weight,
          healthy: b.healthy,
          state: (p.config.healthCheck ? (b.healthy ? "UP" : "DOWN") : "no check") as "UP" | "DOWN" | "no check",
          lastCheck: b.lastCheck,
          lastChangeMs: b.lastChange,
          ...b.stats,
          active: b.active + (f?.active ?? 0),
          connections: b.stats.connections + (f?.connections ?? 0),
          bytesIn: b.stats.bytesIn + (f?.bytesIn ?? 0),
          bytesOut: b.stats.bytesOut + (f?.bytesOut ?? 0),
          connectErrors: b.stats.connectErrors + (f?.connectErrors ?? 0),
        };
      }),
    }));
    const usesToa = this.config.listeners.some((l) => l.mode === "toa");
    let toa: StatusSnapshot["toa"] = null;
    if (usesToa) {
      const sender = this.writer?.counters?.() ?? { written: 0, skippedNoSpace: 0 };
      let packetWritten = 0;
      for (const c of counters?.backends.values() ?? []) packetWritten += c.toaWritten;
      const g = counters?.global;
      toa = { written: sender.written + packetWritten, skippedNoSpace: sender.skippedNoSpace + (g ? g.toa_skipped_no_room + g.toa_skipped_mtu : 0) };
    }
    const packet = this.packet?.status(counters) ?? null;
    return { pid: process.pid, startedAtMs: this.startedAtMs, nowMs: Date.now(), config: this.config.source, draining: this.draining, reloads: this.reloads, reloadFailures: this.reloadFailures, listeners, pools, toa, packet };
  }
}
