/**
 * Layouts of the balancer's packet data path (`dataPath: packet`): a tc program that does LVS
 * FULLNAT-style full NAT per packet and writes the TOA into the handshake ACK, with the control
 * plane (src/lb/packet/) filling the tables. Declared once here so both sides agree.
 *
 *   nat_flows     HASH      FlowKey → FlowValue   two entries per connection: the client's packets
 *                                                 (client → VIP) and the backend's (backend → local);
 *                                                 never evicts: entries go when the control plane
 *                                                 ends their connection, and a full table refuses
 *                                                 new ones (counted)
 *   nat_admission ARRAY     4 × u64: the half-open budget (see Admission)
 *   nat_services  HASH      ServiceKey → ServiceValue   one per listener on the packet path
 *   nat_slots     ARRAY     service id × SLOTS + slot → backend index (weighted, healthy only)
 *   nat_backends  ARRAY     backend index → BackendValue
 *   nat_counters  PERCPU_ARRAY u64: NatCounter at [0, 16), then 4 per backend from 16
 *   nat_scratch   PERCPU_ARRAY one SCRATCH_SIZE buffer: the payload of a segment that gets a TOA
 *
 * Addresses are 16 bytes; IPv4 uses the first 4 (the rest zero). Ports are in network order.
 */
import { createHash } from "node:crypto";
import type { MapSpec } from "../bpf/index.js";
import { be16, bytes, pad, struct, u16, u32, u64, u8 } from "../bpf/struct.js";

export const NatMapName = {
  flows: "nat_flows",
  services: "nat_services",
  slots: "nat_slots",
  backends: "nat_backends",
  counters: "nat_counters",
  scratch: "nat_scratch",
  admission: "nat_admission",
} as const;

/** struct nat_flow_key: the 4-tuple of a packet as it arrives. */
export const FlowKey = struct("nat_flow_key", {
  saddr: bytes(16),
  daddr: bytes(16),
  sport: be16,
  dport: be16,
  /** 4 or 6. */
  family: u8,
  _pad: pad(3),
});

/** struct nat_flow: what to rewrite the packet to and where to send it. */
export const FlowValue = struct("nat_flow", {
  saddr: bytes(16),
  daddr: bytes(16),
  sport: be16,
  dport: be16,
  /** Device the rewritten packet leaves by (bpf_redirect_neigh). */
  ifindex: u32,
  /** Backend index (counters, status). */
  backend: u32,
  /** FlowDir. */
  dir: u8,
  /** FlowFlag bits, set by the program (the control plane reads them). */
  flags: u8,
  /** The service's id (its listener's timeouts apply). */
  service: u8,
  /**
   * The service's TOA kind (0: mode none or proxy-v2): a client's own option of this kind is removed
   * like the well-known ones.
   */
  toaKind: u8,
  /** CLOCK_MONOTONIC of the last packet this way. */
  lastNs: u64,
  createdNs: u64,
  /**
   * The client's ISN + 1 (host order): where a PROXY v2 header goes; an acknowledgment past it tells
   * that the backend has the client's data.
   */
  seqBase: u32,
  /** PROXY v2 flows: the header's length (28 IPv4, 52 IPv6); 0 = no header. */
  hdrLen: u16,
  _pad: pad(2),
});

export const FlowDir = { TO_BACKEND: 0, TO_CLIENT: 1 } as const;

export const FlowFlag = {
  /**
   * Both directions: the TOA goes into every client segment (the handshake ACK, then data) until the
   * backend acknowledges data from the client: servers that defer accept (TCP_DEFER_ACCEPT) create
   * the connection from the first data segment, not from the ACK.
   */
  TOA_PENDING: 1,
  /** A FIN went this way. */
  FIN: 2,
  /** An RST went this way. */
  RST: 4,
  /**
   * PROXY v2 flows, both directions: the backend has not acknowledged the header yet. Client
   * segments at seq_base carry it (again) until it has.
   */
  PROXY_UNACKED: 8,
  /**
   * Client → backend: the handshake is not complete (no ACK from the client yet). Such flows hold
   * the half-open budget and expire after packet.synTimeout.
   */
  HALF_OPEN: 16,
} as const;

/**
 * The half-open budget, nat_admission[0..4), one u64 each with a single writer kind:
 *   0 opened     (program, atomic add) connections created
 *   1 completed  (program, atomic add) handshakes completed
 *   2 settled    (control plane) opened − completed − the half-open flows the sweep last counted:
 *                those that ended without completing, so opened − completed − settled is the
 *                number of half-open flows now (resynchronised every sweep; in between, those
 *                that ended still count, which errs towards refusing)
 *   3 budget     (control plane) packet.maxHalfOpen
 * A SYN that would exceed the budget is dropped (syn_dropped): a SYN flood fills the budget, not
 * the table, and established connections are never pushed out.
 */
export const Admission = { opened: 0, completed: 1, settled: 2, budget: 3, slots: 4 } as const;

/** struct nat_service_key: a listener. */
export const ServiceKey = struct("nat_service_key", {
  addr: bytes(16),
  port: be16,
  family: u8,
  _pad: pad(1),
});

/** struct nat_service. */
export const ServiceValue = struct("nat_service", {
  /** Row in nat_slots (id × SLOTS). */
  id: u32,
  /** Filled slots; 0 = no healthy backend: the SYN goes to the stack (refused). */
  slots: u32,
  /** NatScheduler. */
  scheduler: u8,
  /** TCP option kind for the TOA; 0 = write none (mode none). */
  toaKind: u8,
  /** 1 = write a PROXY v2 header in front of the client's bytes (mode proxy-v2). */
  proxy: u8,
  _pad: pad(1),
  /** Local port range for backend connections (host order). */
  portFirst: u32,
  portCount: u32,
  /** A TOA goes into a segment with payload only if the result fits this. */
  mtu: u32,
  /** The program's round robin position (the control plane keeps it). */
  rrCursor: u32,
  /** The program's next local port (offset into the range; the control plane keeps it). */
  portCursor: u32,
});

export const NatScheduler = { ROUND_ROBIN: 0, SOURCE_HASH: 1 } as const;

/** Slots per service: weights are spread over this many entries (so weights are exact to 1/256). */
export const SLOTS = 256;
export const MAX_SERVICES = 64;
export const MAX_BACKENDS = 1024;

/** struct nat_backend. */
export const BackendValue = struct("nat_backend", {
  addr: bytes(16),
  /** The balancer's address the connection comes from. */
  local: bytes(16),
  port: be16,
  family: u8,
  _pad: pad(1),
  /** Device towards the backend. */
  ifindex: u32,
  _reserved: pad(8),
});

/** Global counters, nat_counters[0..16). */
export const NatCounter = {
  /** Connections the program took (SYN to a service with a healthy backend and a free port). */
  flows_created: 0,
  /** SYNs to a service with no healthy backend: passed to the stack, which refuses them. */
  no_backend: 1,
  /** SYNs passed to the stack because 16 ports tried round the range were all in use. */
  ports_exhausted: 2,
  /** TOAs not written: the TCP header had no room left for the option. */
  toa_skipped_no_room: 3,
  /** TOAs not written: the segment carried data and would have exceeded the MTU. */
  toa_skipped_mtu: 4,
  /** TOAs not written: IP options, or a helper failed. */
  toa_failed: 5,
  /** Packets bpf_redirect_neigh refused (no route or device). */
  redirect_failed: 6,
  /**
   * Finished connections replaced by a new SYN on their 4-tuple (the client reused its port before
   * the sweep removed them): they end here, not in the sweep's counts.
   */
  flows_replaced: 7,
  /** PROXY v2 headers written in front of a client segment (retransmissions of it included). */
  proxy_written: 8,
  /** Client segments at seq_base that could not take the header (too big to move): sent shifted. */
  proxy_skipped: 9,
  /**
   * Client segments that carried a TOA-shaped option of their own (kinds 254, 253, 252, 200, 28 or
   * the listener's), overwritten with NOPs before they went on: a client can't choose its address.
   */
  client_toa_removed: 10,
  /** SYNs dropped: the half-open budget (packet.maxHalfOpen) was full. */
  syn_dropped: 11,
  /** SYNs refused (passed to the stack, which resets them): nat_flows was full. */
  table_full: 12,
  /**
   * PROXY v2 listeners: SYNs carrying data (TCP Fast Open), dropped: bytes in front of the header
   * could be taken for it. The client sends its SYN again without data.
   */
  syn_data_dropped: 13,
  /** Client segments whose TCP options were beyond the packet's linear data even after a pull: dropped. */
  options_unreadable: 14,
} as const;
export const NAT_GLOBAL_COUNTERS = 16;

/** Per backend b: nat_counters[16 + 4b + i]. */
export const NatBackendCounter = { connections: 0, bytes_to_backend: 1, bytes_to_client: 2, toa_written: 3 } as const;
export const natBackendCounterIndex = (backend: number, counter: number) => NAT_GLOBAL_COUNTERS + backend * 4 + counter;

/** Payload a TOA'd segment may carry (it is moved through this buffer to make room for the option). */
export const SCRATCH_SIZE = 2048;

/** The maps; (`maxConnections` + `maxHalfOpen`) × 2 flow entries (one per direction). */
export function natMapSpecs(maxConnections: number, maxHalfOpen: number): Record<keyof typeof NatMapName, MapSpec> {
  return {
    flows: { name: NatMapName.flows, type: "HASH", keySize: FlowKey.size, valueSize: FlowValue.size, maxEntries: (maxConnections + maxHalfOpen) * 2 },
    services: { name: NatMapName.services, type: "HASH", keySize: ServiceKey.size, valueSize: ServiceValue.size, maxEntries: MAX_SERVICES },
    slots: { name: NatMapName.slots, type: "ARRAY", keySize: 4, valueSize: 4, maxEntries: MAX_SERVICES * SLOTS },
    backends: { name: NatMapName.backends, type: "ARRAY", keySize: 4, valueSize: BackendValue.size, maxEntries: MAX_BACKENDS },
    counters: {
      name: NatMapName.counters,
      type: "PERCPU_ARRAY",
      keySize: 4,
      valueSize: 8,
      maxEntries: NAT_GLOBAL_COUNTERS + MAX_BACKENDS * 4,
    },
    scratch: { name: NatMapName.scratch, type: "PERCPU_ARRAY", keySize: 4, valueSize: SCRATCH_SIZE, maxEntries: 1 },
    admission: { name: NatMapName.admission, type: "ARRAY", keySize: 4, valueSize: 8, maxEntries: Admission.slots },
  };
}

/**
 * The instance's own record, nat_meta[0] (ARRAY of one): pinned with the tables so that a later
 * process knows what it adopts. The program never reads it. `magic` and `layoutVersion` stay at
 * offsets 0 and 4 in every build, so any build can tell an instance it can't read.
 */
export const InstanceMeta = struct("nat_meta", {
  /** NAT_META_MAGIC: this map is a toa lb instance's. */
  magic: u32,
  /** NAT_LAYOUT_VERSION of the build that made the tables. */
  layoutVersion: u32,
  /** natLayoutHash() of that build: the maps' and structs' exact shape. */
  layoutHash: bytes(8),
  /** When the instance was made (Unix ms). */
  createdMs: u64,
  /** The kernel's tag of the program attached now (8 bytes of SHA-1 over its instructions). */
  programTag: bytes(8),
  /** When that program was attached or swapped in (Unix ms). */
  programSinceMs: u64,
  /** Processes that took the instance over after the one that made it. */
  adoptions: u32,
  /** The tables' fixed sizes (packet.maxConnections, packet.maxHalfOpen when made). */
  maxConnections: u32,
  maxHalfOpen: u32,
  _pad: pad(4),
  /** Package version of the build that attached the program (NUL-padded text). */
  build: bytes(16),
  /** The instance's name (NUL-padded): its tc filters are named `toa:nat:<name>`. */
  instance: bytes(32),
});

export const NAT_META_MAGIC = 0x4c414f54; // "TOAL" little endian
export const NAT_META_NAME = "nat_meta";
export const natMetaSpec: MapSpec = { name: NAT_META_NAME, type: "ARRAY", keySize: 4, valueSize: InstanceMeta.size, maxEntries: 1 };

/**
 * The layout of the tables, as a number a person bumps when it changes on purpose. Adoption also
 * compares {@link natLayoutHash}, which changes with any change of shape, so a forgotten bump can't
 * make a build misread another's tables.
 */
export const NAT_LAYOUT_VERSION = 1;

/** The shape of a struct: every field's offset, and its size and alignment. */
function shape(s: object): Record<string, number> {
  return Object.fromEntries(Object.entries(s).filter(([, v]) => typeof v === "number"));
}

/**
 * 16 hex digits naming everything two builds must agree on to share tables: the maps (types, key
 * and value sizes, fixed entry counts), the structs' field offsets and the meaning of flag bits,
 * counter indices and admission slots.
 */
export function natLayoutHash(): string {
  const specs = natMapSpecs(1, 1);
  const maps = Object.values(specs).map((m) => [m.name, m.type, m.keySize, m.valueSize, m.name === NatMapName.flows ? 0 : m.maxEntries]);
  const structs = [FlowKey, FlowValue, ServiceKey, ServiceValue, BackendValue].map(shape);
  const enums = [FlowDir, FlowFlag, Admission, NatScheduler, NatCounter, NatBackendCounter, { NAT_GLOBAL_COUNTERS, SLOTS, MAX_SERVICES, MAX_BACKENDS, SCRATCH_SIZE }];
  return createHash("sha256").update(JSON.stringify({ maps, structs, enums })).digest("hex").slice(0, 16);
}
