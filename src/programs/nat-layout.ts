/**
 * Layouts of the balancer's packet data path (`dataPath: packet`): a tc program that does LVS
 * FULLNAT-style full NAT per packet and writes the TOA into the handshake ACK, with the control
 * plane (src/lb/packet/) filling the tables. Declared once here so both sides agree.
 *
 *   nat_flows     LRU_HASH  FlowKey → FlowValue   two entries per connection: the client's packets
 *                                                 (client → VIP) and the backend's (backend → local)
 *   nat_services  HASH      ServiceKey → ServiceValue   one per listener on the packet path
 *   nat_slots     ARRAY     service id × SLOTS + slot → backend index (weighted, healthy only)
 *   nat_backends  ARRAY     backend index → BackendValue
 *   nat_counters  PERCPU_ARRAY u64: NatCounter at [0, 16), then 4 per backend from 16
 *   nat_scratch   PERCPU_ARRAY one SCRATCH_SIZE buffer: the payload of a segment that gets a TOA
 *
 * Addresses are 16 bytes; IPv4 uses the first 4 (the rest zero). Ports are in network order.
 */
import type { MapSpec } from "../bpf/index.js";

export const NatMapName = {
  flows: "nat_flows",
  services: "nat_services",
  slots: "nat_slots",
  backends: "nat_backends",
  counters: "nat_counters",
  scratch: "nat_scratch",
} as const;

/**
 * struct nat_flow_key (40 bytes): the 4-tuple of a packet as it arrives.
 *   0 saddr[16]  16 daddr[16]  32 be16 sport  34 be16 dport  36 u8 family (4|6)  37 pad[3]
 */
export const FlowKey = { size: 40, saddr: 0, daddr: 16, sport: 32, dport: 34, family: 36 } as const;

/**
 * struct nat_flow (72 bytes): what to rewrite the packet to and where to send it.
 *   0 saddr[16]  16 daddr[16]  32 be16 sport  34 be16 dport
 *  36 u32 ifindex   device the rewritten packet leaves by (bpf_redirect_neigh)
 *  40 u32 backend   backend index (counters, status)
 *  44 u8 dir        FlowDir
 *  45 u8 flags      FlowFlag bits, set by the program (the control plane reads them)
 *  46 u8 service    the service's id (its listener's timeouts apply)
 *  47 u8 pad
 *  48 u64 last_ns   CLOCK_MONOTONIC of the last packet this way
 *  56 u64 created_ns
 *  64 u32 seq_base  PROXY v2 flows: the client's ISN + 1 (host order), where the header goes
 *  68 u16 hdr_len   PROXY v2 flows: the header's length (28 IPv4, 52 IPv6); 0 = no header
 *  70 u16 pad
 */
export const FlowValue = {
  size: 72,
  saddr: 0,
  daddr: 16,
  sport: 32,
  dport: 34,
  ifindex: 36,
  backend: 40,
  dir: 44,
  flags: 45,
  service: 46,
  lastNs: 48,
  createdNs: 56,
  seqBase: 64,
  hdrLen: 68,
} as const;

export const FlowDir = { TO_BACKEND: 0, TO_CLIENT: 1 } as const;

export const FlowFlag = {
  /** Client → backend: the TOA still has to be written (into the next ACK without SYN). */
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
} as const;

/**
 * struct nat_service_key (20 bytes): a listener.  0 addr[16]  16 be16 port  18 u8 family  19 pad
 */
export const ServiceKey = { size: 20, addr: 0, port: 16, family: 18 } as const;

/**
 * struct nat_service (32 bytes)
 *   0 u32 id          row in nat_slots (id × SLOTS)
 *   4 u32 slots       filled slots; 0 = no healthy backend: the SYN goes to the stack (refused)
 *   8 u8  scheduler   NatScheduler
 *   9 u8  toa_kind    TCP option kind for the TOA; 0 = write none (mode none)
 *  10 u8  proxy       1 = write a PROXY v2 header in front of the client's bytes (mode proxy-v2)
 *  11 u8  pad
 *  12 u32 port_first local port range for backend connections (host order)
 *  16 u32 port_count
 *  20 u32 mtu        a TOA goes into a segment with payload only if the result fits this
 *  24 u32 rr_cursor  the program's round robin position (the control plane keeps these 8 bytes)
 *  28 u32 port_cursor the program's next local port (offset into the range)
 */
export const ServiceValue = { size: 32, id: 0, slots: 4, scheduler: 8, toaKind: 9, proxy: 10, portFirst: 12, portCount: 16, mtu: 20, rrCursor: 24, portCursor: 28 } as const;

export const NatScheduler = { ROUND_ROBIN: 0, SOURCE_HASH: 1 } as const;

/** Slots per service: weights are spread over this many entries (so weights are exact to 1/256). */
export const SLOTS = 256;
export const MAX_SERVICES = 64;
export const MAX_BACKENDS = 1024;

/**
 * struct nat_backend (48 bytes)
 *   0 addr[16]   16 local[16] (the balancer's address the connection comes from)
 *  32 be16 port  34 u8 family  35 pad  36 u32 ifindex (device towards the backend)  40 pad[8]
 */
export const BackendValue = { size: 48, addr: 0, local: 16, port: 32, family: 34, ifindex: 36 } as const;

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
} as const;
export const NAT_GLOBAL_COUNTERS = 16;

/** Per backend b: nat_counters[16 + 4b + i]. */
export const NatBackendCounter = { connections: 0, bytes_to_backend: 1, bytes_to_client: 2, toa_written: 3 } as const;
export const natBackendCounterIndex = (backend: number, counter: number) => NAT_GLOBAL_COUNTERS + backend * 4 + counter;

/** Payload a TOA'd segment may carry (it is moved through this buffer to make room for the option). */
export const SCRATCH_SIZE = 2048;

/** The maps; `maxConnections` × 2 flow entries (one per direction). */
export function natMapSpecs(maxConnections: number): Record<keyof typeof NatMapName, MapSpec> {
  return {
    flows: { name: NatMapName.flows, type: "LRU_HASH", keySize: FlowKey.size, valueSize: FlowValue.size, maxEntries: maxConnections * 2 },
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
  };
}
