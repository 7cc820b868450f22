/** The top-level `packet:` options, and what a listener on the packet data path may ask for. */
import { isIP } from "node:net";
import { basename, dirname, isAbsolute, join, normalize } from "node:path";
import { defaultPinDir, INSTANCE_NAME } from "../packet/instance-name.js";
import { SLOTS as PACKET_SLOTS } from "../../programs/nat-layout.js";
import { type ClientAddressMode, DEFAULTS } from "../choices.js";
import type { PacketConfig, PoolConfig } from "../config.js";
import { type Endpoint, formatEndpoint } from "../endpoint.js";
import { type Checker, describe, isAny } from "./checker.js";

/** Validate `packet:` (absent = the defaults) of the instance named `instance`. */
export function validatePacket(c: Checker, raw: unknown, instance: string): PacketConfig {
  const defaults = Object.freeze({ ...DEFAULTS.packet, instance, pinDir: defaultPinDir(instance) });
  if (raw === undefined) return defaults;
  const p = c.object(raw, "packet");
  if (!p) return defaults;
  c.keys(p, "packet", ["maxConnections", "mtu", "interfaces", "closedTimeout", "maxHalfOpen", "synTimeout", "pinDir"]);
  let pinDir = defaults.pinDir;
  if (p.pinDir !== undefined) {
    if (typeof p.pinDir !== "string" || !isAbsolute(p.pinDir) || normalize(p.pinDir) === "/") {
      c.add("packet.pinDir", `must be an absolute folder on bpffs, e.g. ${defaults.pinDir}, got ${describe(p.pinDir)}`);
    } else if (basename(p.pinDir).includes(".")) {
      c.add("packet.pinDir", `bpffs refuses names with a dot; use e.g. ${join(dirname(p.pinDir), basename(p.pinDir).replace(/\./g, "-"))}`);
    } else pinDir = normalize(p.pinDir).replace(/\/$/, "");
  }
  const maxConnections = c.int(p.maxConnections, "packet.maxConnections", DEFAULTS.packet.maxConnections, 16, 4_194_304);
  const maxHalfOpen = c.int(p.maxHalfOpen, "packet.maxHalfOpen", defaultHalfOpen(maxConnections), 16, 4_194_304);
  const synTimeoutMs = c.duration(p.synTimeout, "packet.synTimeout", DEFAULTS.packet.synTimeoutMs, 100);
  const mtu = c.int(p.mtu, "packet.mtu", DEFAULTS.packet.mtu, 576, 65535);
  const closedTimeoutMs = c.duration(p.closedTimeout, "packet.closedTimeout", DEFAULTS.packet.closedTimeoutMs, 0);
  let interfaces: readonly string[] = DEFAULTS.packet.interfaces;
  if (p.interfaces !== undefined) {
    if (!Array.isArray(p.interfaces) || p.interfaces.some((d: unknown) => typeof d !== "string" || !/^[^\s/]{1,15}$/.test(d))) {
      c.add("packet.interfaces", `must be a list of device names (e.g. [eth0, eth1]), got ${describe(p.interfaces)}`);
    } else interfaces = Object.freeze([...(p.interfaces as string[])]);
  }
  return Object.freeze({ maxConnections, mtu, interfaces, closedTimeoutMs, maxHalfOpen, synTimeoutMs, instance, pinDir });
}

/** packet.maxHalfOpen when not set: a quarter of the connections, at least 16. */
export function defaultHalfOpen(maxConnections: number): number {
  return Math.max(16, Math.floor(maxConnections / 4));
}

/** What the packet data path can do: rewrite packets (toa or none), same family end to end, a table scheduler. */
export function checkPacketListener(c: Checker, path: string, listen: Endpoint, mode: ClientAddressMode, pool: PoolConfig | undefined): void {
  if (mode === "proxy-v1") {
    c.add(`${path}.mode`, `proxy-v1 is text whose length varies per client; dataPath packet writes toa, proxy-v2 or none (use proxy-v2, or dataPath js for proxy-v1)`);
  }
  if (isAny(listen.address) || listen.port === 0) {
    c.add(`${path}.listen`, `dataPath packet needs a specific address and port (the kernel matches packets to them), got ${formatEndpoint(listen)}`);
  }
  if (!pool) return;
  if (pool.scheduler === "least-connections") {
    c.add(`${path}.dataPath`, `packet: pool ${pool.name} uses least-connections, which needs per-connection bookkeeping the kernel tables don't do; use round-robin, weighted-round-robin or source-hash`);
  }
  const family = listen.family;
  // One slot-table entry per (local address, backend): nat_slots has PACKET_SLOTS per listener.
  const locals = Math.max(1, pool.sourceAddresses.filter((a) => isIP(a) === family).length);
  if (pool.backends.length * locals > PACKET_SLOTS) {
    c.add(
      `${path}.dataPath`,
      `packet: pool ${pool.name} has ${pool.backends.length} backends × ${locals} sourceAddresses = ${pool.backends.length * locals} slot entries, at most ${PACKET_SLOTS}; use fewer sourceAddresses or split the pool`,
    );
  }
  const other = pool.backends.filter((b) => b.family !== family);
  if (other.length > 0) {
    c.add(`${path}.dataPath`, `packet: backend ${other[0].id} is IPv${other[0].family} but the listener is IPv${family}; the packet path translates addresses, not families (use dataPath js)`);
  }
}

/** The top-level `instance:` (default "default"): names the packet path's pins, tc filters and claim. */
export function validateInstance(c: Checker, raw: unknown): string {
  if (raw === undefined) return "default";
  if (typeof raw !== "string" || !INSTANCE_NAME.test(raw)) {
    c.add("instance", `must be 1-32 letters, digits, '_' or '-' (it names the pin folder and tc filters), got ${describe(raw)}`);
    return "default";
  }
  return raw;
}
