/** A pool of the config: its backends, scheduler, health check and local addresses and ports. */
import { isIP } from "node:net";
import { DEFAULTS, SCHEDULERS } from "../choices.js";
import type { BackendConfig, HealthCheckConfig, PoolConfig, PortRange } from "../config.js";
import { type Checker, describe } from "./checker.js";

/** The largest backend weight. */
const MAX_WEIGHT = 256;

/** Validate pool `name` (at `path`); null when it is not a mapping. */
export function validatePool(c: Checker, name: string, rp: unknown, path: string): PoolConfig | null {
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
