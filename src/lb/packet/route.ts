/**
 * How the balancer reaches an address: the device a packet to it leaves by (the ifindex the tc
 * program hands to bpf_redirect_neigh) and the source address the kernel would pick (a backend's
 * `local` when the pool names no sourceAddresses). Asked of the kernel through iproute2.
 *
 * One `ip -j -batch -` run answers both `route get ADDR` and `link show`, so the ifindex comes from
 * netlink in the same network namespace as the route. /sys/class/net/DEV/ifindex would be one file
 * read instead, but sysfs shows the namespace of whoever mounted it: a process moved with
 * `nsenter --net` (or setns) reads the host's devices there, a wrong index or none.
 */
import { execFile } from "node:child_process";
import { isIP } from "node:net";
import { LbError, RouteError } from "../errors.js";

/** The route to an address. */
export interface Route {
  /** The device packets to the address leave by. */
  readonly ifindex: number;
  readonly dev: string;
  /** The source address the kernel picks for it (prefsrc). */
  readonly src: string;
  /** The next hop, when the address is not on a directly connected network. */
  readonly gateway?: string;
  /** The address is this machine's own (a local route, through lo). */
  readonly local: boolean;
}

/** Run `ip` with `input` as its batch; resolves with stdout, rejects with the process error and stderr. */
function ipBatch(input: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile("ip", ["-j", "-batch", "-"], { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr: String(stderr) }));
      else resolve(String(stdout));
    });
    child.stdin?.end(input);
  });
}

/**
 * The route to `addr` (IPv4 or IPv6 text) as the kernel would take it now, in the caller's network
 * namespace. Throws {@link RouteError} naming the address when there is none.
 */
export async function routeTo(addr: string, opts: { timeoutMs?: number } = {}): Promise<Route> {
  // Checked before it reaches the command line: only an address, never an option to ip.
  if (typeof addr !== "string" || isIP(addr) === 0) throw new LbError("LB_ERR_CONFIG", `route: expected an IPv4 or IPv6 address, got ${JSON.stringify(addr)}`);
  let out: string;
  try {
    out = await ipBatch(`route get ${addr}\nlink show\n`, opts.timeoutMs ?? 5000);
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === "ENOENT") throw new RouteError(addr, "the ip command (iproute2) is not installed", { cause: e });
    // "RTNETLINK answers: Network is unreachable" (no route), "No route to host" (unreachable
    // route), "Invalid argument" (blackhole); then "Command failed -:1".
    const said = (err.stderr ?? "").split("\n").find((l) => l.startsWith("RTNETLINK answers:") || l.startsWith("Error:"));
    throw new RouteError(addr, said ? said.replace(/^RTNETLINK answers:\s*|^Error:\s*/, "") : (err.stderr || err.message).trim(), { cause: e });
  }
  const [routes, links] = out
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>[]);
  const r = routes?.[0];
  if (!r || typeof r.dev !== "string") throw new RouteError(addr, `no device in the route (${JSON.stringify(r)})`);
  if (typeof r.prefsrc !== "string") throw new RouteError(addr, `no source address on ${r.dev} for this family`);
  const link = (links ?? []).find((l) => l.ifname === r.dev);
  if (!link || typeof link.ifindex !== "number") throw new RouteError(addr, `device ${r.dev} not found`);
  return {
    ifindex: link.ifindex,
    dev: r.dev,
    src: r.prefsrc,
    ...(typeof r.gateway === "string" ? { gateway: r.gateway } : {}),
    local: r.type === "local",
  };
}
