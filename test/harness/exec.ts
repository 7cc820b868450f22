/** Running commands and processes for tests: every spawned process is ended by its pid at teardown. */
import { type ChildProcess, execFile, spawn, type SpawnOptions } from "node:child_process";
import { promisify } from "node:util";
import { scaled } from "./time.js";

const execFileP = promisify(execFile);

/** Run a command to completion (its timeout scaled by the time factor); throws with its stderr when it fails. */
export async function sh(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  try {
    const child = execFileP(cmd, args, { timeout: scaled(opts.timeoutMs ?? 30_000), maxBuffer: 64 << 20 });
    if (opts.input !== undefined) {
      child.child.stdin?.end(opts.input);
    }
    const { stdout } = await child;
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string; stdout?: string; code?: number };
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${err.code}): ${err.stderr || err.message}`);
  }
}

/** A process started for a test. */
export interface Started {
  child: ChildProcess;
  pid: number;
  output(): string;
  /** Resolves when the process exits. */
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after a grace period; only this pid. */
  stop(graceMs?: number): Promise<void>;
}

/** Start a long-running process; collects stdout+stderr. */
export function start(cmd: string, args: string[], opts: SpawnOptions = {}): Started {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => resolve(code));
    child.once("error", () => resolve(-1));
  });
  const pid = child.pid ?? -1;
  return {
    child,
    pid,
    output: () => out,
    exited,
    async stop(graceMs = 2000) {
      if (child.exitCode !== null || child.signalCode !== null || pid < 0) return;
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        return;
      }
      const timer = setTimeout(() => {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          /* already gone */
        }
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * The process's exit code, or a failure carrying the end of its output once `timeoutMs` (scaled by
 * the time factor) has passed: a process that never exits must fail the caller, not hang the run.
 */
export function exitedWithin(what: string, p: { exited: Promise<number | null>; output(): string }, timeoutMs: number): Promise<number | null> {
  const ms = scaled(timeoutMs);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} still running after ${ms} ms; its output:\n${p.output().slice(-2000)}`)), ms);
  });
  return Promise.race([p.exited, late]).finally(() => clearTimeout(timer));
}

/** Poll `check` until it returns a truthy value or the deadline passes (scaled by the time factor). */
export async function waitFor<T>(what: string, check: () => Promise<T> | T, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + scaled(timeoutMs);
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Wait for a started process to be ready: `ready()` returns a truthy value. Fails at once if the
 * process exits, and on time-out: both errors end with the process's last output, so a slow or
 * failing start (under emulation, on an old kernel) shows what the process was doing.
 */
export async function waitForProcess<T>(what: string, proc: Pick<Started, "child" | "output">, ready: () => Promise<T> | T, timeoutMs = 10_000): Promise<T> {
  const exited = () => proc.child.exitCode !== null || proc.child.signalCode !== null;
  const tail = () => `\n--- its output (last 3000 characters) ---\n${proc.output().slice(-3000)}`;
  let result: T | undefined;
  try {
    // waitFor retries a check that throws, so an exit ends the wait by returning, not throwing.
    await waitFor(what, async () => exited() || (result = await ready()), timeoutMs);
  } catch (e) {
    throw new Error(`${(e as Error).message}${tail()}`);
  }
  if (exited()) throw new Error(`${what}: the process exited (${proc.child.exitCode ?? proc.child.signalCode}) before it was ready${tail()}`);
  return result as T;
}
