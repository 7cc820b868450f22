/**
 * Throwaway network namespaces joined by veth pairs, addressed from the documentation prefixes
 * (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32). Deleted at teardown.
 */
import type { TestContext } from "node:test";
import type { SpawnOptions } from "node:child_process";
import { sh, start, type Started } from "./exec.js";
import { uniqueName } from "./privileged.js";

/** One network namespace made for a test. */
export class Netns {
  private constructor(readonly name: string) {}

  /** Create a namespace with loopback up; deleted when the test ends. */
  static async create(t: TestContext | undefined, prefix = "toa"): Promise<Netns> {
    const ns = new Netns(uniqueName(prefix));
    await sh("ip", ["netns", "add", ns.name]);
    t?.after(() => ns.delete());
    await ns.run("ip", ["link", "set", "lo", "up"]);
    // Addresses must be usable at once: no duplicate address detection delays for IPv6.
    await ns.run("sysctl", ["-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]);
    return ns;
  }

  /** Run a command inside the namespace to completion. */
  run(cmd: string, args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<string> {
    return sh("ip", ["netns", "exec", this.name, cmd, ...args], opts);
  }

  /**
   * Start a long-running process inside the namespace, optionally inside a cgroup folder: the shell
   * writes its own pid to cgroup.procs, then execs the command, so the command starts there.
   */
  start(t: TestContext | undefined, cmd: string, args: string[], opts: SpawnOptions & { cgroup?: string; hostMounts?: boolean } = {}): Started {
    const { cgroup, hostMounts, ...spawnOpts } = opts;
    // `ip netns exec` remounts /sys for the namespace, which hides the cgroup v2 mount and the host's
    // bpffs (pins made there go with the process); nsenter only switches the network namespace.
    const p = cgroup
      ? start("nsenter", [`--net=/run/netns/${this.name}`, "sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, cmd, ...args], spawnOpts)
      : hostMounts
        ? start("nsenter", [`--net=/run/netns/${this.name}`, cmd, ...args], spawnOpts)
        : start("ip", ["netns", "exec", this.name, cmd, ...args], spawnOpts);
    t?.after(() => p.stop());
    return p;
  }

  async delete(): Promise<void> {
    await sh("ip", ["netns", "del", this.name]).catch(() => undefined);
  }
}

/** Addresses given to each end of a veth link. */
export interface LinkAddresses {
  a4?: string; // e.g. "198.51.100.1/24"
  b4?: string;
  a6?: string; // e.g. "2001:db8:1::1/64"
  b6?: string;
}

/** Join two namespaces with a veth pair and address both ends; returns the interface names. */
export async function link(a: Netns, b: Netns, addrs: LinkAddresses): Promise<{ aIf: string; bIf: string }> {
  const base = uniqueName("v").replace(/-/g, "").slice(0, 11);
  const aIf = `${base}a`;
  const bIf = `${base}b`;
  await sh("ip", ["link", "add", aIf, "netns", a.name, "type", "veth", "peer", "name", bIf, "netns", b.name]);
  for (const [ns, ifname, v4, v6] of [
    [a, aIf, addrs.a4, addrs.a6],
    [b, bIf, addrs.b4, addrs.b6],
  ] as const) {
    if (v4) await ns.run("ip", ["addr", "add", v4, "dev", ifname]);
    if (v6) await ns.run("ip", ["-6", "addr", "add", v6, "dev", ifname, "nodad"]);
    await ns.run("ip", ["link", "set", ifname, "up"]);
  }
  return { aIf, bIf };
}
