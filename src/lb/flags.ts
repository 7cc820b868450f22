/**
 * One-liner flags (`toa lb --listen ADDR:PORT --backend ADDR:PORT ...`) turned into the same raw
 * object a YAML file gives, so both go through one validation.
 */

/** The flags of `toa lb` that describe a configuration. */
export interface LbFlags {
  listen?: string[];
  backend?: string[];
  mode?: string;
  scheduler?: string;
  toaKind?: string;
  health?: string;
  connectTimeout?: string;
  idleTimeout?: string;
  drainTimeout?: string;
  admin?: string;
  sourceAddress?: string[];
  sourcePorts?: string;
  dataPath?: string;
}

/** True when flags describe listeners and backends (no config file needed). */
export function hasInlineConfig(f: LbFlags): boolean {
  return (f.listen?.length ?? 0) > 0 || (f.backend?.length ?? 0) > 0;
}

/** Numbers given on the command line arrive as text; YAML would have given numbers. */
function num(v: string | undefined): number | string | undefined {
  return v !== undefined && /^[0-9]+$/.test(v) ? Number(v) : v;
}

/**
 * Build the raw config: every `--listen` is a listener on the single pool `default`; a backend is
 * `ADDR:PORT` or `ADDR:PORT*WEIGHT`; `--health tcp` or `--health http:/path[=status]`.
 */
export function rawConfigFromFlags(f: LbFlags): Record<string, unknown> {
  const backends = (f.backend ?? []).map((b) => {
    const star = b.lastIndexOf("*");
    return star < 0 ? b : { address: b.slice(0, star), weight: num(b.slice(star + 1)) };
  });
  const pool: Record<string, unknown> = { backends };
  if (f.scheduler !== undefined) pool.scheduler = f.scheduler;
  if (f.sourceAddress?.length) pool.sourceAddresses = f.sourceAddress;
  if (f.sourcePorts !== undefined) pool.sourcePorts = f.sourcePorts;
  if (f.health !== undefined) {
    const m = /^http:(\/[^=]*)(?:=([0-9]+))?$/.exec(f.health);
    pool.healthCheck = m
      ? { type: "http", path: m[1], ...(m[2] ? { expectStatus: Number(m[2]) } : {}) }
      : { type: f.health };
  }
  const listeners = (f.listen ?? []).map((listen, i) => {
    const l: Record<string, unknown> = { name: `listener${i}`, listen, pool: "default" };
    if (f.mode !== undefined) l.mode = f.mode;
    if (f.toaKind !== undefined) l.toaKind = num(f.toaKind);
    return l;
  });
  const raw: Record<string, unknown> = { listeners, pools: { default: pool } };
  const timeouts: Record<string, unknown> = {};
  if (f.connectTimeout !== undefined) timeouts.connect = num(f.connectTimeout);
  if (f.idleTimeout !== undefined) timeouts.idle = num(f.idleTimeout);
  if (Object.keys(timeouts).length) raw.timeouts = timeouts;
  if (f.drainTimeout !== undefined) raw.drainTimeout = num(f.drainTimeout);
  if (f.admin !== undefined) raw.admin = f.admin;
  if (f.dataPath !== undefined) raw.dataPath = f.dataPath;
  return raw;
}
