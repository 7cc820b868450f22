/**
 * The load balancer: frontends and pools built from a validated config, reloads that keep
 * established connections, drain on shutdown, the admin listener and the status snapshot.
 *
 *   client ─▶ Frontend ─ pick ─▶ Pool (scheduler, health) ─▶ backend
 *             ├ SocketFrontend: Listener ─ connect (toa: local port + register) ─ relay in JS
 *             └ PacketFrontend: the kernel's NAT tables, no socket here (packet/)
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { startAdmin } from "./admin.js";
import type { LbConfig } from "./config.js";
import { formatDuration } from "./duration.js";
import { formatEndpoint } from "./endpoint.js";
import { LbError } from "./errors.js";
import type { Frontend } from "./frontend.js";
import { createMetrics } from "./metrics.js";
import { PacketFrontend } from "./packet/frontend.js";
import { Pool } from "./pool.js";
import { type OpenWriter, SocketFrontend } from "./socket-frontend.js";
import { buildStatus, type StatusSnapshot } from "./status.js";

export interface BalancerOptions {
  log: Logger;
  /** Opens the TOA sender, the first time a socket listener in `toa` mode needs it; throws when unavailable. */
  openWriter?: OpenWriter;
  /** Loads the config again for POST /reload (the CLI re-reads the file); absent = reload refused. */
  loadConfig?: () => LbConfig;
  /** Runs before a config is applied (start and reloads); throwing refuses it (the CLI checks port claims). */
  beforeApply?: (config: LbConfig) => void;
  /** Runs after a config is in force, with whether a packet instance is served (the CLI writes its claim). */
  onApplied?: (config: LbConfig, hasPacketInstance: boolean) => void;
}

export class Balancer {
  private readonly pools = new Map<string, Pool>();
  private readonly sockets: SocketFrontend;
  private readonly packet: PacketFrontend;
  /** Status order: the socket listeners, then the packet path's. */
  private readonly frontends: readonly Frontend[];
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
    this.sockets = new SocketFrontend(this.pools, opts.log, opts.openWriter);
    this.packet = new PacketFrontend(this.pools, opts.log);
    this.frontends = [this.sockets, this.packet];
    this.registry = createMetrics(() => this.snapshot());
  }

  /** Build everything and start listening; on failure nothing is left open. */
  static async start(config: LbConfig, opts: BalancerOptions): Promise<Balancer> {
    const b = new Balancer(config, opts);
    try {
      await b.apply(config);
    } catch (e) {
      // Nothing of this start may be left: a packet instance it made is removed, one it adopted
      // keeps serving as it did.
      for (const f of b.frontends) await f.abandon().catch((err: unknown) => b.log.error({ err }, "abandoning a failed start"));
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
    for (const f of this.frontends) {
      const a = f.address(name);
      if (a) return a;
    }
    return null;
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
    this.opts.beforeApply?.(config);
    // Every frontend gets ready before anything changes; if one refuses, the others undo. The packet
    // path first: a listen address that isn't ours or a backend without a route is refused before a
    // socket is bound.
    const prepared: Frontend[] = [];
    try {
      for (const f of [this.packet, this.sockets]) {
        await f.prepare(config);
        prepared.push(f);
      }
    } catch (e) {
      for (const f of prepared) f.abort();
      throw e;
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
    for (const f of prepared) f.commit(config);
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
    this.opts.onApplied?.(config, this.hasPacketInstance());
  }

  /** Connections open now, in every frontend (listeners a reload removed included), or in those `which` picks. */
  activeConnections(which: (f: Frontend) => boolean = () => true): number {
    return this.frontends.filter(which).reduce((n, f) => n + f.active(), 0);
  }

  /**
   * The process's end (SIGTERM): the relay stops accepting and waits for its open connections up to
   * `deadlineMs` (the config's drainTimeout), then closes the rest. The packet path is left serving
   * from the kernel, untouched: a restart adopts it (`toa lb remove` takes it away). Resolves when done.
   */
  async drain(deadlineMs = this.config.drainTimeoutMs): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    const mine = (f: Frontend) => !f.outlivesProcess;
    for (const f of this.frontends.filter(mine)) f.stopAccepting();
    const n = this.activeConnections(mine);
    const kept = this.hasPacketInstance();
    this.log.info({ active: n }, `draining: relay not accepting; waiting up to ${formatDuration(deadlineMs)} for ${n} connection(s)${kept ? "; the packet path goes on serving" : ""}`);
    const until = Date.now() + deadlineMs;
    const settle = () => Promise.all(this.frontends.filter(mine).map((f) => f.settle()));
    while (this.activeConnections(mine) > 0 && Date.now() < until) await settle();
    const left = this.activeConnections(mine);
    if (left > 0) this.log.warn({ left }, `drain deadline passed: closing ${left} connection(s)`);
    await this.close();
    this.log.info(kept ? "stopped; the packet path serves on from the kernel (a start adopts it; `toa lb remove` takes it away)" : "stopped");
  }

  /** Close everything now. */
  async close(): Promise<void> {
    // Each part closes even when one before it throws (a sender whose detach fails must not leave
    // the packet path attached or the health checks running); the first error is thrown at the end.
    const errors: unknown[] = [];
    for (const f of this.frontends) {
      try {
        f.close();
      } catch (e) {
        errors.push(e);
      }
    }
    for (const p of this.pools.values()) p.stop();
    if (this.admin) {
      const a = this.admin;
      this.admin = null;
      a.closeAllConnections();
      await new Promise((r) => a.close(() => r(undefined)));
    }
    if (errors.length) throw errors[0];
  }

  /** The state shown by the status page, /status.json and /metrics. */
  snapshot(): StatusSnapshot {
    const { config, startedAtMs, draining, reloads, reloadFailures } = this;
    return buildStatus({ config, startedAtMs, draining, reloads, reloadFailures }, this.pools.values(), this.frontends.map((f) => f.stats()));
  }

  /** Whether this process serves a packet-path instance (its pins outlive it). */
  hasPacketInstance(): boolean {
    return this.packet.instance() !== null;
  }
}
