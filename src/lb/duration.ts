/** Durations in configs: a number of milliseconds, or text with a unit: `250ms`, `5s`, `2m`, `1h`. */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parse a duration into milliseconds, or return a message saying what is allowed. */
export function parseDuration(v: unknown): number | string {
  const allowed = 'expected a duration such as 500ms, 5s, 2m or a number of milliseconds';
  if (typeof v === "number") {
    return Number.isFinite(v) && v >= 0 ? Math.round(v) : `${allowed}, got ${v}`;
  }
  if (typeof v !== "string") return `${allowed}, got ${JSON.stringify(v)}`;
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?$/.exec(v.trim());
  if (!m) return `${allowed}, got ${JSON.stringify(v)}`;
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? "ms"]);
}

/** Format milliseconds the way configs write them (`1500ms`, `5s`, `2m`). */
export function formatDuration(ms: number): string {
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000}m`;
  if (ms % 1000 === 0 && ms >= 1000) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** An age for people: `42s`, `5m`, `3h`, `2d` (rounded to its unit). */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}
