/**
 * The config validator's cursor: reads fields of the raw object and records every problem with its
 * field path, so a refused config lists them all at once.
 */
import { type Endpoint, parseEndpoint } from "../endpoint.js";
import { parseDuration } from "../duration.js";
import type { ConfigIssue } from "../errors.js";
import { type DataPath, DATA_PATHS } from "../choices.js";

/**
 * Values earlier versions took, with why they are gone: a config that still names one is refused
 * with this text rather than a bare "must be one of".
 */
const REMOVED_DATA_PATHS: Readonly<Record<string, string>> = {
  kernel:
    "the sockmap relay was removed: it was slower than js on every measured figure, applied no backpressure, and duplicated bytes under concurrent bulk transfers on Linux 6.18; use packet (modes toa, proxy-v2, none) or js",
  auto: "auto chose the removed sockmap relay; use packet (modes toa, proxy-v2, none) or js",
};

/** Small cursor over the raw object that records issues with their paths. */
export class Checker {
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

export function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** How a raw value reads in a message. */
export function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return JSON.stringify(v);
}

/** The wildcard address of either family. */
export function isAny(a: string): boolean {
  return a === "0.0.0.0" || a === "::";
}
