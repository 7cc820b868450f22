/**
 * Legs read back from earlier runs' output folders, so a matrix run in parts (one kernel at a time,
 * or several at once on a machine with spare cores) is reported as one table: `--report DIRS`.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { KERNELS } from "./kernels.js";
import { parseEvents, type LegEvent } from "./results.js";
import type { Leg } from "./report.js";

/** Every leg found in `dirs` (each an --out folder holding <kernel id>/results.jsonl), in matrix order. */
export function collectLegs(dirs: string[]): Leg[] {
  const legs: Leg[] = [];
  for (const dir of dirs) {
    if (!existsSync(dir)) throw new Error(`--report: ${dir} does not exist (give the --out folders of earlier runs)`);
    for (const id of readdirSync(dir)) {
      const path = join(dir, id, "results.jsonl");
      const kernel = KERNELS.find((k) => k.id === id);
      if (!kernel || !existsSync(path)) continue;
      const events = parseEvents(readFileSync(path, "utf8"));
      const release = events.find((e): e is Extract<LegEvent, { type: "kernel" }> => e.type === "kernel")?.release;
      const done = events.find((e): e is Extract<LegEvent, { type: "done" }> => e.type === "done");
      const error = done ? undefined : `the leg in ${join(dir, id)} has no end (still running, or stopped before its last file)`;
      const ms = done?.ms ?? events.reduce((sum, e) => sum + (e.type === "file" ? e.ms : 0), 0);
      legs.push({ kernel, release, events, error, ms });
    }
  }
  if (legs.length === 0) throw new Error(`--report: no <kernel>/results.jsonl under ${dirs.join(", ")}`);
  const order = (l: Leg) => KERNELS.findIndex((k) => k.id === l.kernel.id);
  return legs.sort((a, b) => order(a) - order(b));
}

/** The test files the legs ran, in the order they first appear. */
export function filesOf(legs: Leg[]): string[] {
  const files: string[] = [];
  for (const l of legs) for (const e of l.events) if (e.type === "file" && !files.includes(e.file)) files.push(e.file);
  return files;
}
