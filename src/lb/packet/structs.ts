/**
 * The packet data path's structs as bytes, at the offsets of src/programs/nat-layout.ts: flow keys
 * and values, service keys and values, backend values. Addresses are 16 bytes (IPv4 in the first
 * 4, the rest zero), ports in network order, every other integer in host order (little endian on
 * the architectures we build for: x86-64, arm64). Pad bytes are written as zero, as the program
 * zeroes its keys: a hash key with garbage in its pad would never match.
 */
import { formatIpv4, formatIpv6, parseAddress } from "../../wire/addr.js";
import { LbError } from "../errors.js";
import { BackendValue, FlowKey, FlowValue, ServiceKey, ServiceValue } from "../../programs/nat-layout.js";

export type Family = 4 | 6;

/** Write `addr` (text of `family`) into the 16 bytes at `off`; throws naming `what` otherwise. */
export function writeAddress(buf: Buffer, off: number, addr: string, family: Family, what: string): void {
  let parsed: { family: Family; bytes: Uint8Array };
  try {
    parsed = parseAddress(addr, what);
  } catch (e) {
    throw new LbError("LB_ERR_CONFIG", (e as Error).message, { cause: e });
  }
  if (parsed.family !== family) throw new LbError("LB_ERR_CONFIG", `${what} ${addr} is not an IPv${family} address`);
  buf.fill(0, off, off + 16);
  buf.set(parsed.bytes, off);
}

/** The address of `family` in the 16 bytes at `off`, as text. */
export function readAddress(buf: Buffer, off: number, family: Family): string {
  return family === 4 ? formatIpv4(buf, off) : formatIpv6(buf, off);
}

/** The same address in its canonical text (RFC 5952 for IPv6): map keys must not depend on spelling. */
export function canonicalAddress(addr: string, family: Family, what: string): string {
  const b = Buffer.alloc(16);
  writeAddress(b, 0, addr, family, what);
  return readAddress(b, 0, family);
}

function familyAt(buf: Buffer, off: number, what: string): Family {
  const f = buf[off];
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
  const b = Buffer.alloc(FlowKey.size);
  writeAddress(b, FlowKey.saddr, k.saddr, k.family, "flow key saddr");
  writeAddress(b, FlowKey.daddr, k.daddr, k.family, "flow key daddr");
  b.writeUInt16BE(k.sport, FlowKey.sport);
  b.writeUInt16BE(k.dport, FlowKey.dport);
  b[FlowKey.family] = k.family;
  return b;
}

export function decodeFlowKey(b: Buffer): NatFlowKey {
  const family = familyAt(b, FlowKey.family, "flow key");
  return {
    saddr: readAddress(b, FlowKey.saddr, family),
    daddr: readAddress(b, FlowKey.daddr, family),
    sport: b.readUInt16BE(FlowKey.sport),
    dport: b.readUInt16BE(FlowKey.dport),
    family,
  };
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
  const b = Buffer.alloc(FlowValue.size);
  writeAddress(b, FlowValue.saddr, v.saddr, family, "flow saddr");
  writeAddress(b, FlowValue.daddr, v.daddr, family, "flow daddr");
  b.writeUInt16BE(v.sport, FlowValue.sport);
  b.writeUInt16BE(v.dport, FlowValue.dport);
  b.writeUInt32LE(v.ifindex, FlowValue.ifindex);
  b.writeUInt32LE(v.backend, FlowValue.backend);
  b[FlowValue.dir] = v.dir;
  b[FlowValue.flags] = v.flags;
  b[FlowValue.service] = v.service ?? 0;
  b.writeBigUInt64LE(v.lastNs, FlowValue.lastNs);
  b.writeBigUInt64LE(v.createdNs, FlowValue.createdNs);
  return b;
}

export function decodeFlowValue(b: Buffer, family: Family): NatFlow {
  return {
    saddr: readAddress(b, FlowValue.saddr, family),
    daddr: readAddress(b, FlowValue.daddr, family),
    sport: b.readUInt16BE(FlowValue.sport),
    dport: b.readUInt16BE(FlowValue.dport),
    ifindex: b.readUInt32LE(FlowValue.ifindex),
    backend: b.readUInt32LE(FlowValue.backend),
    dir: b[FlowValue.dir],
    flags: b[FlowValue.flags],
    service: b[FlowValue.service],
    lastNs: b.readBigUInt64LE(FlowValue.lastNs),
    createdNs: b.readBigUInt64LE(FlowValue.createdNs),
  };
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

export function encodeServiceKey(k: NatServiceKey): Buffer {
  const b = Buffer.alloc(ServiceKey.size);
  writeAddress(b, ServiceKey.addr, k.addr, k.family, "service address");
  b.writeUInt16BE(k.port, ServiceKey.port);
  b[ServiceKey.family] = k.family;
  return b;
}

export function decodeServiceKey(b: Buffer): NatServiceKey {
  const family = familyAt(b, ServiceKey.family, "service key");
  return { addr: readAddress(b, ServiceKey.addr, family), port: b.readUInt16BE(ServiceKey.port), family };
}

/** struct nat_service. */
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
 * Encode a service value. The 8 bytes at 24 are the program's round robin and port cursors
 * (ServiceValue.rrCursor, portCursor): pass the current value's bytes as `keep` so
 * an update does not send the next connections back to slot 0.
 */
export function encodeServiceValue(v: NatService, keep?: Buffer): Buffer {
  const b = Buffer.alloc(ServiceValue.size);
  if (keep && keep.length >= ServiceValue.size) keep.copy(b, ServiceValue.rrCursor, ServiceValue.rrCursor, ServiceValue.size);
  b.writeUInt32LE(v.id, ServiceValue.id);
  b.writeUInt32LE(v.slots, ServiceValue.slots);
  b[ServiceValue.scheduler] = v.scheduler;
  b[ServiceValue.toaKind] = v.toaKind;
  b[ServiceValue.proxy] = v.proxy ?? 0;
  b.writeUInt32LE(v.portFirst, ServiceValue.portFirst);
  b.writeUInt32LE(v.portCount, ServiceValue.portCount);
  b.writeUInt32LE(v.mtu, ServiceValue.mtu);
  return b;
}

export function decodeServiceValue(b: Buffer): NatService {
  return {
    id: b.readUInt32LE(ServiceValue.id),
    slots: b.readUInt32LE(ServiceValue.slots),
    scheduler: b[ServiceValue.scheduler],
    toaKind: b[ServiceValue.toaKind],
    proxy: b[ServiceValue.proxy],
    portFirst: b.readUInt32LE(ServiceValue.portFirst),
    portCount: b.readUInt32LE(ServiceValue.portCount),
    mtu: b.readUInt32LE(ServiceValue.mtu),
  };
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

export function encodeBackendValue(v: NatBackend): Buffer {
  const b = Buffer.alloc(BackendValue.size);
  writeAddress(b, BackendValue.addr, v.addr, v.family, "backend address");
  writeAddress(b, BackendValue.local, v.local, v.family, "backend local address");
  b.writeUInt16BE(v.port, BackendValue.port);
  b[BackendValue.family] = v.family;
  b.writeUInt32LE(v.ifindex, BackendValue.ifindex);
  return b;
}

/** A backend value, or undefined for an unused (all-zero family) entry of the array. */
export function decodeBackendValue(b: Buffer): NatBackend | undefined {
  if (b[BackendValue.family] === 0) return undefined;
  const family = familyAt(b, BackendValue.family, "backend value");
  return {
    addr: readAddress(b, BackendValue.addr, family),
    local: readAddress(b, BackendValue.local, family),
    port: b.readUInt16BE(BackendValue.port),
    family,
    ifindex: b.readUInt32LE(BackendValue.ifindex),
  };
}
