/**
 * The few system operations the demo needs: run a command, start a process inside a network
 * namespace and a cgroup, network namespaces with veth links, cgroup folders. Everything made is
 * recorded in a {@link Made} list so it can be removed by name or pid, also after Ctrl-C.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { DemoError } from "./errors.js";

const execFileP = promisify(execFile);

/** Run a command to completion; throws with its stderr. */
export async function sh(cmd: string, args: string[], timeoutMs = 20_000): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string; code?: number | string };
    if (err.code === "ENOENT") throw new DemoError("DEMO_ERR_COMMAND", `${cmd} is not installed (the demo needs iproute2's ip and util-linux's nsenter)`);
    throw new DemoError("DEMO_ERR_COMMAND", `${cmd} ${args.join(" ")} failed: ${(err.stderr || err.message).trim()}`);
  }
}

/** Run a command inside a network namespace. */
export function nsRun(netns: string, cmd: string, args: string[], timeoutMs?: number): Promise<string> {
  return sh("ip", ["netns", "exec", netns, cmd, ...args], timeoutMs);
}

/** A long-running process the demo started. */
export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  output(): string;
  exited: Promise<void>;
}

/**
 * Start `cmd` in network namespace `netns` and cgroup folder `cgroup`: nsenter switches only the
 * network namespace (`ip netns exec` would remount /sys and hide the cgroup v2 mount), the shell
 * writes its pid into cgroup.procs and execs the command, which so starts inside the cgroup.
 */
export function startIn(name: string, netns: string, cgroup: string, cmd: string, args: string[], logFile: string): Proc {
  // Output goes to a file, not a pipe: with --keep the process outlives the demo.
  const fd = openSync(logFile, "a");
  const child = spawn("nsenter", [`--net=/run/netns/${netns}`, "sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, cmd, ...args], {
    stdio: ["ignore", fd, fd],
    detached: true, // its own process group: Ctrl-C reaches the demo, which stops it by pid
  });
  closeSync(fd);
  let out = "";
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", (e) => {
      out += `\n${e.message}`;
      resolve();
    });
  });
  const output = (): string => {
    try {
      return readFileSync(logFile, "utf8") + out;
    } catch {
      return out;
    }
  };
  return { name, child, pid: child.pid ?? -1, output, exited };
}

/** Whether process `pid` is alive. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM `pid`, SIGKILL after `graceMs`; resolves when it is gone. */
export async function stopPid(pid: number, graceMs = 3000): Promise<void> {
  if (pid <= 0 || !alive(pid)) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await sleep(25);
  if (alive(pid)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
    for (let i = 0; i < 80 && alive(pid); i++) await sleep(25);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll until `check` returns true; throws `what` with the last error at the deadline. */
export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    if (signal?.aborted) throw new DemoError("DEMO_ERR_INTERRUPTED", "interrupted");
    try {
      if (await check()) return;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new DemoError("DEMO_ERR_TIMEOUT", `timed out waiting for ${what}${last ? `: ${last}` : ""}`);
    await sleep(50);
  }
}

/** Whether a TCP socket listens on `addrPort` (as `ss -Htln` prints it) in `netns`. */
export async function listening(netns: string, addrPort: string): Promise<boolean> {
  const ss = await nsRun(netns, "ss", ["-Htln"]);
  return ss.split("\n").some((l) => l.split(/\s+/).includes(addrPort));
}

/** Create a network namespace with loopback up and no IPv6 duplicate address detection delay. */
export async function createNetns(name: string): Promise<void> {
  await sh("ip", ["netns", "add", name]);
  await nsRun(name, "ip", ["link", "set", "lo", "up"]);
  await nsRun(name, "sysctl", ["-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]);
}

/** Delete a network namespace (its veth ends go with it); no error when absent. */
export async function deleteNetns(name: string): Promise<boolean> {
  if (!existsSync(`/run/netns/${name}`)) return false;
  await sh("ip", ["netns", "del", name]);
  return true;
}

/** Join two namespaces with a veth pair and give each end its addresses. */
export async function vethLink(a: { ns: string; ifname: string; v4: string; v6: string }, b: { ns: string; ifname: string; v4: string; v6: string }): Promise<void> {
  await sh("ip", ["link", "add", a.ifname, "netns", a.ns, "type", "veth", "peer", "name", b.ifname, "netns", b.ns]);
  for (const end of [a, b]) {
    await nsRun(end.ns, "ip", ["addr", "add", end.v4, "dev", end.ifname]);
    await nsRun(end.ns, "ip", ["-6", "addr", "add", end.v6, "dev", end.ifname, "nodad"]);
    await nsRun(end.ns, "ip", ["link", "set", end.ifname, "up"]);
  }
}

/**
 * Remove a cgroup folder the demo made: processes still inside are ours (started there by the
 * demo), so they are killed first; then rmdir, retried while the kernel still says busy.
 */
export async function removeCgroup(path: string): Promise<boolean> {
  if (!existsSync(path)) return false;
  const procs = join(path, "cgroup.procs");
  for (let i = 0; i < 100; i++) {
    const pids = existsSync(procs) ? readFileSync(procs, "utf8").split("\n").filter(Boolean).map(Number) : [];
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    try {
      rmdirSync(path);
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return false;
      if (code !== "EBUSY") throw e;
    }
    await sleep(30);
  }
  throw new DemoError("DEMO_ERR_CGROUP_BUSY", `cgroup ${path} stays busy`);
}

/** Write a file, creating nothing else. */
export function writeText(path: string, text: string): void {
  writeFileSync(path, text);
}
