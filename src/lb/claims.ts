/**
 * Which balancer instance uses which local ports towards which backend, across processes: one JSON
 * file per instance in /run/toa/lb/. Two instances (a JS relay in toa mode and a packet path, or two
 * packet paths) that each pick ports from the same range towards the same backend would, unaware of
 * each other, open two connections through one 4-tuple, and the backend (still in TIME_WAIT from the
 * other's connection) drops the second SYN. So a start whose ranges overlap a live instance's is
 * refused, naming both; so is a second process for an instance another live process serves.
 *
 * A claim is live while its process runs, or, for a packet-path instance, while its pins exist: the
 * kernel keeps using its ports with no process at all.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import type { LbConfig } from "./config.js";
import { LbError } from "./errors.js";

export const CLAIM_DIR = "/run/toa/lb";

/** Ports of one range towards one backend from one local address ("*": whatever the route gives). */
export interface PortUse {
  listener: string;
  dataPath: "packet" | "js";
  backend: string;
  local: string;
  first: number;
  last: number;
}

export interface Claim {
  instance: string;
  pid: number;
  startedMs: number;
  /** The packet path's pin folder, when the instance has one. */
  pinDir: string | null;
  uses: PortUse[];
}

/**
 * The port uses of a config: packet-path listeners and JS-relay listeners in toa mode pick from
 * sourcePorts; other relayed connections take the kernel's ephemeral ports, which the kernel
 * itself keeps apart.
 */
export function portUses(config: LbConfig): PortUse[] {
  const out: PortUse[] = [];
  for (const l of config.listeners) {
    if (l.dataPath === "js" && l.mode !== "toa") continue;
    const pool = config.pools[l.pool];
    const locals = pool.sourceAddresses.filter((a) => isIP(a) === l.listen.family);
    for (const b of pool.backends) {
      for (const local of locals.length > 0 ? locals : ["*"]) {
        out.push({ listener: l.name, dataPath: l.dataPath, backend: b.id, local, first: pool.sourcePorts.first, last: pool.sourcePorts.last });
      }
    }
  }
  return out;
}

const overlaps = (a: PortUse, b: PortUse): boolean =>
  a.backend === b.backend && (a.local === b.local || a.local === "*" || b.local === "*") && a.first <= b.last && b.first <= a.last;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The claims in `dir` that still hold (their process runs, or their packet instance is pinned). */
export function liveClaims(dir = CLAIM_DIR): Claim[] {
  if (!existsSync(dir)) return [];
  const out: Claim[] = [];
  for (const n of readdirSync(dir)) {
    if (!n.endsWith(".json")) continue;
    try {
      const c = JSON.parse(readFileSync(join(dir, n), "utf8")) as Claim;
      if (alive(c.pid) || (c.pinDir !== null && existsSync(join(c.pinDir, "nat_meta")))) out.push(c);
    } catch {
      // a file being written, or not ours: not a claim
    }
  }
  return out;
}

/** The claim of a running process that serves the instance (by name, or by its pin folder), if one runs. */
export function servingClaim(instance: string, pinDir?: string, dir = CLAIM_DIR): Claim | undefined {
  return liveClaims(dir).find((c) => (c.instance === instance || (pinDir !== undefined && c.pinDir === pinDir)) && alive(c.pid));
}

/**
 * Refuse `config` when another live process serves its instance, or when its port uses overlap
 * another live instance's. `pid` is this process.
 */
export function checkClaims(config: LbConfig, pid = process.pid, dir = CLAIM_DIR): void {
  const mine = portUses(config);
  for (const c of liveClaims(dir)) {
    if (c.instance === config.instance) {
      if (c.pid !== pid && alive(c.pid)) {
        throw new LbError("LB_ERR_INSTANCE", `instance "${config.instance}" is served by pid ${c.pid} (since ${new Date(c.startedMs).toISOString()}): stop it first (systemctl stop, or kill ${c.pid}), or give this config another instance name (instance: NAME, or --instance NAME)`);
      }
      continue; // our own earlier claim: this process takes it over
    }
    for (const a of mine) {
      const b = c.uses.find((u) => overlaps(a, u));
      if (!b) continue;
      throw new LbError(
        "LB_ERR_INSTANCE",
        `listener ${a.listener} (${a.dataPath === "packet" ? "packet path" : "JS relay, toa mode"}) would take local ports ${a.first}-${a.last}${a.local === "*" ? "" : ` from ${a.local}`} towards ${a.backend}, ` +
          `and instance "${c.instance}" (${alive(c.pid) ? `pid ${c.pid}` : "no process; its packet path serves from the kernel"}) uses ${b.first}-${b.last}${b.local === "*" ? "" : ` from ${b.local}`} towards it for listener ${b.listener} (${b.dataPath === "packet" ? "packet path" : "JS relay, toa mode"}): ` +
          `two connections through one address and port to one backend would collide; give one of the pools sourcePorts of its own (e.g. 10000-19999 and 20000-29999), or other sourceAddresses`,
      );
    }
  }
}

/** Write (or rewrite) this process's claim. */
export function writeClaim(config: LbConfig, hasPacketPath: boolean, startedMs: number, pid = process.pid, dir = CLAIM_DIR): void {
  mkdirSync(dir, { recursive: true });
  const claim: Claim = { instance: config.instance, pid, startedMs, pinDir: hasPacketPath ? config.packet.pinDir : null, uses: portUses(config) };
  const path = join(dir, `${config.instance}.json`);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(claim, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

/** Remove an instance's claim (at exit without a packet path, or when the instance is removed). */
export function removeClaim(instance: string, dir = CLAIM_DIR): void {
  rmSync(join(dir, `${instance}.json`), { force: true });
}
