/**
 * The packet data path's structs (declared in src/programs/nat-layout.ts) with their addresses as
 * text: what the layout alone can't say is the family, which decides how the 16 address bytes
 * read (IPv4 in the first 4, the rest zero). Each struct has a pair here: text → struct value
 * (checked, naming the field) and struct value → text; the encode/decode pairs add the bytes.
 * Pad bytes are written as zero, as the program zeroes its keys: a hash key with garbage in its pad
 * would never match.
 */
import type { ValueOf } from "../../bpf/index.js";
import { formatIpv4, formatIpv6, parseAddress } from "../../wire/addr.js";
import { LbError } from "../errors.js";
import { BackendValue, FlowKey, FlowValue, ServiceKey, ServiceValue } from "../../programs/nat-layout.js";

export type Family = 4 | 6;

/** struct nat_service_key, struct nat_service and struct nat_backend as their maps hold them. */
export type ServiceKeyStruct = ValueOf<typeof ServiceKey>;
export type ServiceValueStruct = ValueOf<typeof ServiceValue>;
export type BackendStruct = ValueOf<typeof BackendValue>;

/** The 16 bytes of `addr` (text of `family`); throws naming `what` otherwise. */
export function addressBytes(addr: string, family: Family, what: string): Buffer {
  let parsed: { family: Family; bytes: Uint8Array };
  try {
    parsed = parseAddress(addr, what);
  } catch (e) {
    throw new LbError("LB_ERR_CONFIG", (e as Error).message, { cause: e });
  }
  if (parsed.family !== family) throw new LbError("LB_ERR_CONFIG", `${what} ${addr} is not an IPv${family} address`);
  const b = Buffer.alloc(16);
  b.set(parsed.bytes);
  return b;
}

/** The address of `family` in the 16 bytes at `off`, as text. */
export function readAddress(buf: Buffer, off: number, family: Family): string {
  return family === 4 ? formatIpv4(buf, off) : formatIpv6(buf, off);
}

/** The same address in its canonical text (RFC 5952 for IPv6): map keys must not depend on spelling. */
export function canonicalAddress(addr: string, family: Family, what: string): string {
  return readAddress(addressBytes(addr, family, what), 0, family);
}

function checkFamily(f: number, what: string): Family {
  if (f !== 4 && f !== 6) throw new LbError("LB_ERR_CONFIG", `${what}: family byte is ${f}, expected 4 or 6`);
  return f;
}

/** struct nat_flow_key: a packet's 4-tuple as it arrives. */
export interface NatFlowKey {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  family: Family;
}

export function encodeFlowKey(k: NatFlowKey): Buffer {
  return FlowKey.encode({ ...k, saddr: addressBytes(k.saddr, k.family, "flow key saddr"), daddr: addressBytes(k.daddr, k.family, "flow key daddr") });
}

export function decodeFlowKey(b: Buffer): NatFlowKey {
  const k = FlowKey.decode(b);
  const family = checkFamily(k.family, "flow key");
  return { saddr: readAddress(k.saddr, 0, family), daddr: readAddress(k.daddr, 0, family), sport: k.sport, dport: k.dport, family };
}

/** struct nat_flow: what a packet of the key's direction is rewritten to. Its family is the key's. */
export interface NatFlow {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  ifindex: number;
  backend: number;
  /** FlowDir. */
  dir: number;
  /** FlowFlag bits. */
  flags: number;
  /** The service (listener) id: whose timeouts apply. */
  service?: number;
  lastNs: bigint;
  createdNs: bigint;
}

export function encodeFlowValue(v: NatFlow, family: Family): Buffer {
  return FlowValue.encode({
    ...v,
    saddr: addressBytes(v.saddr, family, "flow saddr"),
    daddr: addressBytes(v.daddr, family, "flow daddr"),
    service: v.service ?? 0,
    toaKind: 0,
    seqBase: 0,
    hdrLen: 0,
  });
}

export function decodeFlowValue(b: Buffer, family: Family): NatFlow {
  const { saddr, daddr, sport, dport, ifindex, backend, dir, flags, service, lastNs, createdNs } = FlowValue.decode(b);
  return { saddr: readAddress(saddr, 0, family), daddr: readAddress(daddr, 0, family), sport, dport, ifindex, backend, dir, flags, service, lastNs, createdNs };
}

/**
 * The key of a flow's other direction, from its value and its own key's family byte:
 * { saddr: value.daddr, daddr: value.saddr, sport: value.dport, dport: value.sport }. The client's
 * entry rewrites client → VIP into local → backend, so the backend's packets arrive as
 * backend → local, the other entry's key (and the other way round).
 */
export function reverseFlowKey(value: Buffer, family: number): Buffer {
  const k = Buffer.alloc(FlowKey.size);
  value.copy(k, FlowKey.saddr, FlowValue.daddr, FlowValue.daddr + 16);
  value.copy(k, FlowKey.daddr, FlowValue.saddr, FlowValue.saddr + 16);
  value.copy(k, FlowKey.sport, FlowValue.dport, FlowValue.dport + 2);
  value.copy(k, FlowKey.dport, FlowValue.sport, FlowValue.sport + 2);
  k[FlowKey.family] = family;
  return k;
}

/** struct nat_service_key: a listener. */
export interface NatServiceKey {
  addr: string;
  port: number;
  family: Family;
}

export function serviceKeyStruct(k: NatServiceKey): ServiceKeyStruct {
  return { addr: addressBytes(k.addr, k.family, "service address"), port: k.port, family: k.family };
}

export function natServiceKey(k: ServiceKeyStruct): NatServiceKey {
  const family = checkFamily(k.family, "service key");
  return { addr: readAddress(k.addr, 0, family), port: k.port, family };
}

export const encodeServiceKey = (k: NatServiceKey): Buffer => ServiceKey.encode(serviceKeyStruct(k));

/** struct nat_service, as the control plane writes it (the program owns the cursors). */
export interface NatService {
  id: number;
  slots: number;
  /** NatScheduler. */
  scheduler: number;
  toaKind: number;
  /** 1 = a PROXY v2 header goes in front of the client's bytes. */
  proxy?: number;
  portFirst: number;
  portCount: number;
  mtu: number;
}

/**
 * A service value with the program's round robin and port cursors (rrCursor, portCursor) taken from
 * `keep`, the value in the map now: an update must not send the next connections back to slot 0.
 */
export function serviceValueStruct(v: NatService, keep?: ServiceValueStruct): ServiceValueStruct {
  return { ...v, proxy: v.proxy ?? 0, rrCursor: keep?.rrCursor ?? 0, portCursor: keep?.portCursor ?? 0 };
}

/** Encode a service value, the cursors kept from the bytes `keep` (see {@link serviceValueStruct}). */
export function encodeServiceValue(v: NatService, keep?: Buffer): Buffer {
  return ServiceValue.encode(serviceValueStruct(v, keep && keep.length >= ServiceValue.size ? ServiceValue.decode(keep) : undefined));
}

export function decodeServiceValue(b: Buffer): NatService {
  const { id, slots, scheduler, toaKind, proxy, portFirst, portCount, mtu } = ServiceValue.decode(b);
  return { id, slots, scheduler, toaKind, proxy, portFirst, portCount, mtu };
}

/** struct nat_backend. */
export interface NatBackend {
  addr: string;
  /** The balancer's address backend connections come from. */
  local: string;
  port: number;
  family: Family;
  ifindex: number;
}

export function backendStruct(v: NatBackend): BackendStruct {
  return { ...v, addr: addressBytes(v.addr, v.family, "backend address"), local: addressBytes(v.local, v.family, "backend local address") };
}

/** A backend, or undefined for an unused (all-zero family) entry of the array. */
export function natBackend(v: BackendStruct): NatBackend | undefined {
  if (v.family === 0) return undefined;
  const family = checkFamily(v.family, "backend value");
  return { addr: readAddress(v.addr, 0, family), local: readAddress(v.local, 0, family), port: v.port, family, ifindex: v.ifindex };
}

export const encodeBackendValue = (v: NatBackend): Buffer => BackendValue.encode(backendStruct(v));
export const decodeBackendValue = (b: Buffer): NatBackend | undefined => natBackend(BackendValue.decode(b));
