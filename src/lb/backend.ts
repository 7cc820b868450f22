/**
 * A backend at run time: its config, health and counters. Objects live across reloads as long as the
 * pool keeps a backend with the same `addr:port`, so open connections, health and counters carry over.
 */
import type { BackendConfig } from "./config.js";
import type { SchedulerBackend } from "./scheduler/types.js";

/** Counters of one backend (read by the status page and /metrics). */
export interface BackendStats {
  connections: number;
  bytesIn: number; // client → backend
  bytesOut: number; // backend → client
  connectErrors: number;
  portExhausted: number;
  checksFailed: number;
}

export class Backend implements SchedulerBackend {
  active = 0;
  /** Health as the scheduler sees it; starts up so the first clients need not wait for a check. */
  healthy = true;
  /** Last health check result, for the status page ("" = never checked). */
  lastCheck = "";
  lastChange = Date.now();
  readonly stats: BackendStats = { connections: 0, bytesIn: 0, bytesOut: 0, connectErrors: 0, portExhausted: 0, checksFailed: 0 };

  constructor(public config: BackendConfig) {}

  get id(): string {
    return this.config.id;
  }
  get address(): string {
    return this.config.address;
  }
  get port(): number {
    return this.config.port;
  }
  get family(): 4 | 6 {
    return this.config.family;
  }
  get weight(): number {
    return this.config.weight;
  }

  /** Set health; returns true when it changed. */
  setHealthy(up: boolean): boolean {
    if (up === this.healthy) return false;
    this.healthy = up;
    this.lastChange = Date.now();
    return true;
  }
}
