/**
 * Active health checks of a pool: every `interval` each backend gets a TCP connect (or an HTTP GET of
 * `path` expecting `expectStatus`) bounded by `timeout`. `rise` successes in a row bring a backend up,
 * `fall` failures in a row take it down (HAProxy's `check inter rise fall`). Checks of one pool are
 * spread over the interval so they don't all fire at once.
 */
import { connect } from "node:net";
import { request } from "node:http";
import type { Logger } from "pino";
import type { Backend } from "./backend.js";
import type { HealthCheckConfig } from "./config.js";
import { formatEndpoint } from "./endpoint.js";

const PROXY_UNKNOWN = "PROXY UNKNOWN\r\n";

/** Run one check; resolves to "" on success or a short reason. */
export function checkOnce(b: { address: string; port: number }, hc: HealthCheckConfig): Promise<string> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (why: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(why);
    };
    const timer = setTimeout(() => {
      finish(`timeout after ${hc.timeoutMs}ms`);
      cleanup();
    }, hc.timeoutMs);
    let cleanup = (): void => {};
    if (hc.type === "tcp") {
      const s = connect({ host: b.address, port: b.port });
      cleanup = () => s.destroy();
      s.once("connect", () => {
        if (hc.sendProxy) s.end(PROXY_UNKNOWN);
        // A reset, not a FIN (HAProxy's layer-4 check does the same): a check that closed first
        // would leave its port in TIME_WAIT for 60 s, one per check, and with a narrow local port
        // range the checks themselves run out of ports (EADDRNOTAVAIL) and mark a backend DOWN.
        else s.resetAndDestroy();
        finish("");
      });
      s.once("error", (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
      return;
    }
    const host = formatEndpoint(b);
    const req = request({ host: b.address, port: b.port, path: hc.path, method: "GET", headers: { host, "user-agent": "toa-lb-health", connection: "close" },
      // With createConnection and no agent, the request uses our socket (an agent would open its own).
      agent: hc.sendProxy ? undefined : false,
      // PROXY-protocol backends refuse a bare request: announce "UNKNOWN" (use the real addresses).
      createConnection: hc.sendProxy
        ? () => {
            const s = connect({ host: b.address, port: b.port });
            s.write(PROXY_UNKNOWN);
            return s;
          }
        : undefined,
    });
    cleanup = () => req.destroy();
    req.once("response", (res) => {
      res.resume();
      finish(res.statusCode === hc.expectStatus ? "" : `HTTP ${res.statusCode} (expected ${hc.expectStatus})`);
      req.destroy();
    });
    req.once("error", (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
    req.end();
  });
}

/** Checks the backends of one pool until stopped. */
export class HealthChecker {
  private readonly timers = new Map<Backend, NodeJS.Timeout>();
  private readonly streak = new Map<Backend, number>(); // >0 successes in a row, <0 failures
  private stopped = false;

  constructor(
    private readonly pool: string,
    private readonly hc: HealthCheckConfig,
    private readonly log: Logger,
    private readonly onChange?: (b: Backend) => void,
  ) {}

  /** Start checking `backends` (a reload calls it again with the new list). */
  watch(backends: readonly Backend[]): void {
    for (const [b, t] of this.timers) {
      if (!backends.includes(b)) {
        clearTimeout(t);
        this.timers.delete(b);
      }
    }
    backends.forEach((b, i) => {
      if (this.timers.has(b)) return;
      const first = Math.floor((this.hc.intervalMs * i) / Math.max(1, backends.length));
      this.timers.set(b, setTimeout(() => this.run(b), first));
    });
  }

  private async run(b: Backend): Promise<void> {
    if (this.stopped || !this.timers.has(b)) return;
    const why = await checkOnce(b, this.hc);
    if (this.stopped || !this.timers.has(b)) return;
    b.lastCheck = why === "" ? "ok" : why;
    const s = this.streak.get(b) ?? 0;
    const next = why === "" ? Math.max(1, s + 1) : Math.min(-1, s - 1);
    this.streak.set(b, next);
    if (why !== "") b.stats.checksFailed++;
    let changed = false;
    if (!b.healthy && next >= this.hc.rise) changed = b.setHealthy(true);
    else if (b.healthy && -next >= this.hc.fall) changed = b.setHealthy(false);
    if (changed) {
      this.log.warn({ pool: this.pool, backend: b.id, healthy: b.healthy, check: b.lastCheck }, `backend ${b.id} is ${b.healthy ? "UP" : "DOWN"}`);
      this.onChange?.(b);
    }
    this.timers.set(b, setTimeout(() => this.run(b), this.hc.intervalMs));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
