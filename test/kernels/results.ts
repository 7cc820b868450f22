/**
 * What a matrix leg reports, one JSON object per line in OUT/results.jsonl: written by the guest as it
 * goes (so the host can show progress, and a VM that dies loses only the file that was running).
 */
export type LegEvent =
  | { type: "kernel"; release: string; machine: string }
  | { type: "start"; file: string }
  | {
      type: "file";
      file: string;
      status: FileStatus;
      pass: number;
      fail: number;
      skipped: number;
      todo: number;
      ms: number;
      failures: string[];
      /** Set by `--report` when a later part ran this file again: the statuses it replaced, oldest first. */
      earlier?: FileStatus[];
    }
  | { type: "program"; program: string; variant: string; instructions: number; processed: number; ms: number; error?: string }
  | { type: "done"; ms: number };

export type FileStatus = "pass" | "fail" | "skip";

/** Counts from the summary a `node --test` TAP run prints at its end, and the names of failed tests. */
export function parseTapSummary(tap: string): { pass: number; fail: number; skipped: number; todo: number; failures: string[] } {
  const num = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, "m").exec(tap)?.[1] ?? 0);
  // "not ok N - name" at any depth; a suite's own line repeats its failing children, which is fine.
  const failures = [...tap.matchAll(/^\s*not ok \d+ - (.*?)(?: # .*)?$/gm)].map((m) => m[1]);
  // A test cut off by its timeout is "cancelled", not "fail": it failed all the same.
  return { pass: num("pass"), fail: num("fail") + num("cancelled"), skipped: num("skipped"), todo: num("todo"), failures };
}

/** pass when tests passed and none failed; skip when all skipped; fail otherwise (or on a crash). */
export function fileStatus(exitCode: number | null, c: { pass: number; fail: number; skipped: number }): FileStatus {
  if (exitCode !== 0 || c.fail > 0) return "fail";
  if (c.pass === 0 && c.skipped > 0) return "skip";
  return c.pass > 0 ? "pass" : "fail";
}

/** Read a results.jsonl (tolerates a partial last line). */
export function parseEvents(text: string): LegEvent[] {
  const out: LegEvent[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as LegEvent);
    } catch {
      /* a line still being written */
    }
  }
  return out;
}
