/**
 * A point-in-time view of the balancer: what /status.json returns and what the page and /metrics
 * show, built from the pools and each frontend's figures ({@link buildStatus}).
 */
import type { BackendStats } from "./backend.js";
import type { LbConfig, ListenerConfig, PoolConfig } from "./config.js";
import { formatDuration } from "./duration.js";
import type { ListenerStats } from "./listener.js";
import type { PacketStatus } from "./packet/data-path.js";
import type { Pool } from "./pool.js";

export interface BackendStatus extends BackendStats {
  id: string;
  weight: number;
  healthy: boolean;
  /** "UP"/"DOWN" with checks, "no check" without. */
  state: "UP" | "DOWN" | "no check";
  lastCheck: string;
  lastChangeMs: number;
  active: number;
}

export interface PoolStatus {
  name: string;
  scheduler: string;
  healthCheck: string;
  backends: BackendStatus[];
}

export interface ListenerStatus extends ListenerStats {
  name: string;
  listen: string;
  mode: string;
  /** js, kernel, auto or packet. */
  dataPath: string;
  pool: string;
}

/** TOA options written, and skipped for want of room. */
export interface ToaFigures {
  written: number;
  skippedNoSpace: number;
}

export interface StatusSnapshot {
  pid: number;
  startedAtMs: number;
  nowMs: number;
  config: string;
  draining: boolean;
  reloads: number;
  reloadFailures: number;
  listeners: ListenerStatus[];
  pools: PoolStatus[];
  /** null when no listener uses toa mode. */
  toa: ToaFigures | null;
  /** null when no listener uses the packet data path. */
  packet: PacketStatus | null;
}

/** A backend's figures counted by a frontend outside the pool's own Backend counters (the packet path's). */
export interface BackendFigures {
  connections: number;
  active: number;
  bytesIn: number;
  bytesOut: number;
  connectErrors: number;
}

/** What one frontend adds to the status. */
export interface FrontendStats {
  listeners: ListenerStatus[];
  /** Figures of backend `id` of pool `pool` this frontend counts itself, or undefined. */
  backend(pool: string, id: string): BackendFigures | undefined;
  toa: ToaFigures;
  /** The packet path's own section, null from other frontends. */
  packet: PacketStatus | null;
}

/** The balancer's own figures, beside its pools and frontends. */
export interface BalancerFigures {
  config: LbConfig;
  startedAtMs: number;
  draining: boolean;
  reloads: number;
  reloadFailures: number;
}

/** How a listener's mode reads on the status page: "toa (kind 254)", "proxy-v2"... */
export function modeText(c: ListenerConfig): string {
  return c.mode === "toa" ? `toa (kind ${c.toaKind})` : c.mode;
}

/** How a pool's health check reads on the status page. */
function healthCheckText(pc: PoolConfig): string {
  const hc = pc.healthCheck;
  if (!hc) return "none";
  return `${hc.type === "http" ? `http GET ${hc.path} → ${hc.expectStatus}` : "tcp"} every ${formatDuration(hc.intervalMs)}, rise ${hc.rise}, fall ${hc.fall}`;
}

/** The snapshot: listeners of every frontend, pools with each backend's figures summed over the frontends. */
export function buildStatus(b: BalancerFigures, pools: Iterable<Pool>, frontends: readonly FrontendStats[]): StatusSnapshot {
  const poolStatus = [...pools].map((p) => ({
    name: p.name,
    scheduler: p.config.scheduler,
    healthCheck: healthCheckText(p.config),
    backends: p.backends.map((be) => {
      const extra = frontends.map((f) => f.backend(p.name, be.id)).filter((f): f is BackendFigures => f !== undefined);
      const add = (pick: (f: BackendFigures) => number): number => extra.reduce((n, f) => n + pick(f), 0);
      return {
        id: be.id,
        weight: be.weight,
        healthy: be.healthy,
        state: (p.config.healthCheck ? (be.healthy ? "UP" : "DOWN") : "no check") as BackendStatus["state"],
        lastCheck: be.lastCheck,
        lastChangeMs: be.lastChange,
        ...be.stats,
        active: be.active + add((f) => f.active),
        connections: be.stats.connections + add((f) => f.connections),
        bytesIn: be.stats.bytesIn + add((f) => f.bytesIn),
        bytesOut: be.stats.bytesOut + add((f) => f.bytesOut),
        connectErrors: be.stats.connectErrors + add((f) => f.connectErrors),
      };
    }),
  }));
  const usesToa = b.config.listeners.some((l) => l.mode === "toa");
  const toa = usesToa ? frontends.reduce((t, f) => ({ written: t.written + f.toa.written, skippedNoSpace: t.skippedNoSpace + f.toa.skippedNoSpace }), { written: 0, skippedNoSpace: 0 }) : null;
  const packet = frontends.find((f) => f.packet)?.packet ?? null;
  return {
    pid: process.pid,
    startedAtMs: b.startedAtMs,
    nowMs: Date.now(),
    config: b.config.source,
    draining: b.draining,
    reloads: b.reloads,
    reloadFailures: b.reloadFailures,
    listeners: frontends.flatMap((f) => f.listeners),
    pools: poolStatus,
    toa,
    packet,
  };
}
