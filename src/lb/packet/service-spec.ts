/**
 * What the packet path's tables are asked to hold ({@link NatServiceSpec}), checked where it enters
 * and turned into the structs the maps take ({@link plan}).
 */
import type { BpfMap, MapSpec } from "../../bpf/index.js";
import { MapType } from "../../bpf/index.js";
import type { PortRange, SchedulerName } from "../config.js";
import { formatEndpoint } from "../endpoint.js";
import { LbError } from "../errors.js";
import { natScheduler } from "./slots.js";
import { backendStruct, type BackendStruct, canonicalAddress, type Family, serviceKeyStruct, type ServiceKeyStruct } from "./structs.js";

/** A backend of a service on the packet path. */
export interface NatBackendSpec {
  /** Stable text (`addr:port` from the config): the status sums a backend's figures by it. */
  readonly id: string;
  /**
   * Identity of this entry's source-hash permutation (default `id`): distinct for the entries of one
   * backend reached from several local addresses.
   */
  readonly hashId?: string;
  readonly addr: string;
  readonly port: number;
  /** 0 = no new connections. */
  readonly weight: number;
  readonly healthy: boolean;
  /** The balancer's address connections to this backend come from. */
  readonly local: string;
  /** The device towards the backend (see route.ts). */
  readonly ifindex: number;
}

/** A listener on the packet path and its backends. */
export interface NatServiceSpec {
  readonly key: { readonly addr: string; readonly port: number };
  readonly family: Family;
  readonly scheduler: SchedulerName;
  /** TCP option kind of the TOA; 0 = none. */
  readonly toaKind: number;
  /** Write a PROXY v2 header in front of each connection's bytes (mode proxy-v2). */
  readonly proxy?: boolean;
  /** Local ports for backend connections. */
  readonly portRange: PortRange;
  /** A TOA goes into a segment with payload only if the result fits this. */
  readonly mtu: number;
  readonly backends: readonly NatBackendSpec[];
}

/** A spec checked and with canonical addresses. */
export interface Planned {
  spec: NatServiceSpec;
  key: string;
  keyStruct: ServiceKeyStruct;
  scheduler: number;
  backends: { spec: NatBackendSpec; key: string; value: BackendStruct }[];
}

/** Canonical backend key, or undefined when the addresses do not parse. */
export function backendKey(addr: string, port: number, local: string): string | undefined {
  const family = addr.includes(":") ? 6 : 4;
  try {
    return `${canonicalAddress(addr, family, "address")}|${port}|${canonicalAddress(local, family, "local")}`;
  } catch {
    return undefined;
  }
}

/** Check a map made elsewhere against its spec: type, key/value sizes and (when `exactEntries`) entries. */
export function checkMap(m: BpfMap<any, any> | undefined, spec: MapSpec, exactEntries: boolean): void {
  const bad = (what: string) => new LbError("LB_ERR_CONFIG", `packet tables: map ${spec.name}: ${what}`);
  if (!m) throw bad("missing");
  const i = m.info;
  if (i.type !== MapType[spec.type]) throw bad(`type ${i.type}, expected ${spec.type} (${MapType[spec.type]})`);
  if (i.keySize !== spec.keySize || i.valueSize !== spec.valueSize) throw bad(`key/value sizes ${i.keySize}/${i.valueSize}, expected ${spec.keySize}/${spec.valueSize}`);
  if (exactEntries && i.maxEntries !== spec.maxEntries) throw bad(`${i.maxEntries} entries, expected ${spec.maxEntries}`);
}

const int = (v: unknown, min: number, max: number): v is number => typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;

/** Check one service where it enters, naming the field; addresses canonical, structs encoded. */
export function plan(s: NatServiceSpec, path: string): Planned {
  const where = s?.key ? `${path} (${s.key.addr}:${s.key.port})` : path;
  const bad = (field: string, what: string) => new LbError("LB_ERR_CONFIG", `packet tables: ${where}: ${field} ${what}`);
  if (s.family !== 4 && s.family !== 6) throw bad("family", `must be 4 or 6, got ${s.family}`);
  if (!int(s.key?.port, 1, 65535)) throw bad("key.port", `must be an integer 1..65535, got ${s.key?.port}`);
  const scheduler = natScheduler(s.scheduler);
  if (!(s.toaKind === 0 || int(s.toaKind, 2, 255))) throw bad("toaKind", `must be 0 (none) or a TCP option kind 2..255, got ${s.toaKind}`);
  const r = s.portRange;
  if (!int(r?.first, 1, 65535) || !int(r?.last, r.first, 65535)) throw bad("portRange", `must be {first, last} with 1 <= first <= last <= 65535, got ${JSON.stringify(r)}`);
  if (!int(s.mtu, 68, 65535)) throw bad("mtu", `must be an integer 68..65535, got ${s.mtu}`);
  const keyStruct = serviceKeyStruct({ addr: s.key.addr, port: s.key.port, family: s.family });
  const addr = canonicalAddress(s.key.addr, s.family, `${where}: key.addr`);
  const ids = new Set<string>();
  const backends = (s.backends ?? []).map((b, j) => {
    const bp = `backends[${j}]`;
    if (typeof b.id !== "string" || b.id === "") throw bad(`${bp}.id`, "must be a non-empty string");
    const entry = b.hashId ?? b.id;
    if (ids.has(entry)) throw bad(`${bp}.id`, `${entry} is listed twice`);
    ids.add(entry);
    if (!int(b.port, 1, 65535)) throw bad(`${bp}.port`, `must be an integer 1..65535, got ${b.port}`);
    if (!int(b.weight, 0, Number.MAX_SAFE_INTEGER)) throw bad(`${bp}.weight`, `must be an integer >= 0, got ${b.weight}`);
    if (typeof b.healthy !== "boolean") throw bad(`${bp}.healthy`, `must be true or false, got ${b.healthy}`);
    if (!int(b.ifindex, 1, 0xffffffff)) throw bad(`${bp}.ifindex`, `must be a device index >= 1, got ${b.ifindex}`);
    // The program rewrites addresses in place: client and backend side share the family.
    const a = canonicalAddress(b.addr, s.family, `${where}: ${bp}.addr (the packet path does not translate between IPv4 and IPv6)`);
    const local = canonicalAddress(b.local, s.family, `${where}: ${bp}.local`);
    return { spec: b, key: `${a}|${b.port}|${local}`, value: backendStruct({ addr: a, local, port: b.port, family: s.family, ifindex: b.ifindex }) };
  });
  return { spec: s, key: formatEndpoint({ address: addr, port: s.key.port }), keyStruct, scheduler, backends };
}
