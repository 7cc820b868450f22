/**
 * The kernel matrix's tables, from the legs' events (pure: tested without a kernel).
 */
import type { KernelTarget } from "./kernels.js";
import type { LegEvent } from "./results.js";

/** One kernel's run: its events (results.jsonl), or why it gave none. */
export interface Leg {
  kernel: KernelTarget;
  release?: string;
  events: LegEvent[];
  error?: string;
  ms: number;
}

// A file run again in a later part says so, with what the earlier runs gave: a rerun is never hidden.
const cell = (e: Extract<LegEvent, { type: "file" }> | undefined) =>
  !e
    ? "—"
    : `${e.status === "fail" ? "FAIL" : e.status} ${e.status === "fail" ? `${e.fail}/${e.pass + e.fail}` : ""} ${(e.ms / 1000).toFixed(0)}s${e.earlier?.length ? ` (run ${e.earlier.length + 1}; before: ${e.earlier.join(", ")})` : ""}`.replace(/\s+/g, " ");

/** The table kernel × file, as markdown. */
export function matrixTable(legs: Leg[], files: string[]): string {
  const head = `| test file | ${legs.map((l) => `${l.kernel.id}${l.release ? ` (${l.release})` : ""}`).join(" | ")} |`;
  const sep = `|---|${legs.map(() => "---").join("|")}|`;
  const rows = files.map((f) => {
    const name = f.split("/").pop()!;
    return `| ${name.replace(/\.test\.js$/, "")} | ${legs.map((l) => cell(l.events.find((e): e is Extract<LegEvent, { type: "file" }> => e.type === "file" && e.file === name))).join(" | ")} |`;
  });
  const total = `| **leg time** | ${legs.map((l) => `${Math.round(l.ms / 1000)} s`).join(" | ")} |`;
  return [head, sep, ...rows, total].join("\n");
}

/** The census table: processed instructions per program and kernel. */
export function censusTable(legs: Leg[]): string {
  type P = Extract<LegEvent, { type: "program" }>;
  const keys: string[] = [];
  for (const l of legs) for (const e of l.events) if (e.type === "program" && !keys.includes(`${e.program}|${e.variant}`)) keys.push(`${e.program}|${e.variant}`);
  if (keys.length === 0) return "";
  const head = `| program | insns | ${legs.map((l) => l.kernel.id).join(" | ")} |`;
  const sep = `|---|---:|${legs.map(() => "---:").join("|")}|`;
  const rows = keys.map((k) => {
    const [program, variant] = k.split("|");
    const of = (l: Leg) => l.events.find((e): e is P => e.type === "program" && e.program === program && e.variant === variant);
    const any = legs.map(of).find(Boolean);
    return `| ${program}${variant ? ` ${variant}` : ""} | ${any?.instructions ?? ""} | ${legs.map((l) => { const e = of(l); return !e ? "—" : e.error ? "refused" : String(e.processed); }).join(" | ")} |`;
  });
  return [head, sep, ...rows].join("\n");
}

