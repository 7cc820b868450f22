/**
 * Legs read back from earlier runs' output folders, so a matrix run in parts (one kernel at a time,
 * or several at once on a machine with spare cores) is reported as one table: `--report DIRS`.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { KERNELS } from "./kernels.js";
import { parseEvents, type LegEvent } from "./results.js";
import type { Leg } from "./report.js";

/**
 * Every leg found in `dirs` (each an --out folder holding <kernel id>/results.jsonl), in matrix order.
 * A kernel found in several folders is one leg: its parts in the order of `dirs`, a file run again in
 * a later part taking that part's result (the earlier statuses kept in `earlier`), times summed.
 */
export function collectLegs(dirs: string[]): Leg[] {
  const parts = collectParts(dirs);
  const legs: Leg[] = [];
  for (const part of parts) {
    const same = legs.find((l) => l.kernel.id === part.kernel.id);
    if (same) Object.assign(same, mergeLegs(same, part));
    else legs.push(part);
  }
  const order = (l: Leg) => KERNELS.findIndex((k) => k.id === l.kernel.id);
  return legs.sort((a, b) => order(a) - order(b));
}

type FileEvent = Extract<LegEvent, { type: "file" }>;

function mergeLegs(a: Leg, b: Leg): Leg {
  const events: LegEvent[] = [...a.events];
  for (const e of b.events) {
    if (e.type === "file") {
      const i = events.findIndex((x) => x.type === "file" && x.file === e.file);
      if (i >= 0) {
        const old = events[i] as FileEvent;
        events[i] = { ...e, earlier: [...(old.earlier ?? []), old.status] };
        continue;
      }
    }
    // One kernel line, one census entry per program variant and one end per leg: the first part's.
    if (events.some((x) => sameSlot(x, e))) continue;
    events.push(e);
  }
  return { kernel: a.kernel, release: a.release ?? b.release, events, error: a.error ?? b.error, ms: a.ms + b.ms };
}

/** Whether `e` repeats an event a leg holds once: its kernel, a program's census, its end. */
function sameSlot(x: LegEvent, e: LegEvent): boolean {
  if (x.type !== e.type || e.type === "file" || e.type === "start") return false;
  if (e.type === "program") return x.type === "program" && x.program === e.program && x.variant === e.variant;
  return true;
}

function collectParts(dirs: string[]): Leg[] {
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
  return legs;
}

/** The test files the legs ran, in the order they first appear. */
export function filesOf(legs: Leg[]): string[] {
  const files: string[] = [];
  for (const l of legs) for (const e of l.events) if (e.type === "file" && !files.includes(e.file)) files.push(e.file);
  return files;
}
