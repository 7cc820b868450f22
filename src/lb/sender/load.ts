/**
 * Opening the real {@link ClientAddressWriter}: the eBPF sock_ops sender (./toa-sender.ts), attached
 * to the cgroup v2 folder the balancer runs in (or `--cgroup DIR`). The sender module (and with it the
 * bpf toolkit and the program assembler) is imported only when a listener needs it, so the proxy
 * modes never touch bpf(2).
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { findCgroup2Mount } from "../../bpf/cgroup.js";
import type { ClientAddressWriter } from "../client-address.js";
import { LbError } from "../errors.js";

/** The cgroup v2 folder of this process: the cgroup2 mount + the "0::" line of /proc/self/cgroup. */
export function ownCgroupPath(procSelfCgroup = readFileSync("/proc/self/cgroup", "utf8"), mount = findCgroup2Mount()): string {
  const line = procSelfCgroup.split("\n").find((l) => l.startsWith("0::"));
  if (!line) throw new LbError("LB_ERR_TOA_SENDER", "no cgroup v2 entry (0::) in /proc/self/cgroup: pass --cgroup DIR");
  return join(mount, line.slice(3));
}

/**
 * Why a TOA sender attached to `cgroupPath` will write nothing for this process, or undefined: the
 * sock_ops program runs for sockets of that cgroup (and those below it), and the balancer's backend
 * connections are made in the cgroup the balancer runs in.
 */
export function senderCgroupWarning(cgroupPath: string, own: string): string | undefined {
  const a = resolve(cgroupPath);
  const b = resolve(own);
  if (b === a || b.startsWith(`${a}/`)) return undefined;
  return `--cgroup ${a}: this balancer runs in ${b}, outside it, so its backend connections get no TOA (the sender only sees sockets made in ${a}). Start toa lb inside it (e.g. \`echo $$ > ${a}/cgroup.procs\` before exec, or systemd's Slice=/a scope there), or leave --cgroup out to attach to the balancer's own cgroup`;
}

/** The sender module, typed: imported lazily, but checked by tsc like a static import. */
type SenderModule = typeof import("./toa-sender.js");

/**
 * Load the sender module and return a function that opens (loads + attaches) the sender. Rejects
 * with LB_ERR_TOA_SENDER "TOA sender unavailable: ..." when the module is missing.
 */
export async function loadToaSender(opts: { cgroupPath?: string; kind: number }): Promise<() => ClientAddressWriter> {
  let mod: SenderModule;
  try {
    // A literal specifier: the single executable's bundler must see the module to carry it.
    mod = await import("./toa-sender.js");
  } catch (e) {
    throw new LbError("LB_ERR_TOA_SENDER", `TOA sender unavailable: ${(e as Error).message}; use --mode proxy-v2, proxy-v1 or none until it is built`, { cause: e });
  }
  return () => {
    const cgroupPath = opts.cgroupPath ?? ownCgroupPath();
    try {
      return mod.ToaSender.open({ cgroupPath, kind: opts.kind });
    } catch (e) {
      throw new LbError("LB_ERR_TOA_SENDER", `TOA sender unavailable: cannot attach to ${cgroupPath}: ${(e as Error).message}`, { cause: e });
    }
  };
}
