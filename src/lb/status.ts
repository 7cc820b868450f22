/** A point-in-time view of the balancer: what /status.json returns and what the page and /metrics show. */
import type { BackendStats } from "./backend.js";
import type { ListenerStats } from "./listener.js";
import type { PacketStatus } from "./packet/data-path.js";

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
  toa: { written: number; skippedNoSpace: number } | null;
  /** null when no listener uses the packet data path. */
  packet: PacketStatus | null;
}
