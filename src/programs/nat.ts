/**
 * The balancer's packet data path: a tc (SCHED_CLS, direct action) program on the balancer's
 * devices that does full NAT per packet, as LVS FULLNAT and DPVS do, and writes the TOA into the
 * ACK that completes the handshake. No socket exists on the balancer for these connections: the
 * kernel rewrites and forwards packets, so a connection costs two map entries and no user space.
 *
 *   client ──SYN──▶ VIP:vport      nat_flows[client→VIP] missing: a SYN to a service in
 *                                  nat_services picks a backend (nat_slots), a free local port
 *                                  (round the range, NOEXIST insert of the reply direction),
 *                                  stores both directions and forwards:
 *   local:lport ──SYN──▶ backend   (source = the balancer's local address, like any full NAT)
 *   backend ──SYN/ACK──▶ local     nat_flows[backend→local]: rewritten to VIP → client
 *   client ──ACK──▶ VIP            TOA_PENDING: the option [kind][len][port][addr] is inserted
 *                                  after the TCP options (the packet grows at the tail, a payload
 *                                  moves up), lengths and checksums fixed, then the flag is cleared
 *                                  PROXY v2 flows instead: the header goes in front of the client's
 *                                  bytes at ISN + 1 until the backend acknowledges it, later client
 *                                  sequence numbers move up and the backend's acknowledgments down
 *                                  by its length (see proxyToBackend, proxyToClient)
 *
 * Packets the program doesn't own go on to the stack untouched (TC_ACT_OK): a SYN to a service with
 * no healthy backend or no free port reaches the stack, which refuses it (nothing listens), so a
 * client is never left waiting. IP options, fragments and IPv6 extension headers also pass (the
 * listener is refused then, never mangled).
 *
 * Checksums: addresses are in the pseudo-header (BPF_F_PSEUDO_HDR), ports and the inserted option
 * are not. With CHECKSUM_PARTIAL (local senders, veth) the kernel only keeps the pseudo-header sum,
 * and bpf_l4_csum_replace applies just the pseudo-header part; with a full checksum it applies both.
 * The control plane (src/lb/packet/) fills the tables and removes finished connections.
 */
import { asm, type ProgramSpec } from "../bpf/index.js";
import {
  BPF_F_PSEUDO_HDR,
  BPF_NOEXIST,
  E2BIG,
  ETH_HLEN,
  ETH_P_IP_BE,
  ETH_P_IPV6_BE,
  IPPROTO_TCP,
  Skb,
  TC_ACT_OK,
  TC_ACT_REDIRECT,
  TC_ACT_SHOT,
  TcpFlag as TCP,
} from "../bpf/uapi.js";
import {
  Admission,
  BackendValue,
  FlowDir,
  FlowFlag,
  FlowKey,
  FlowValue,
  NatBackendCounter,
  NatCounter,
  NatMapName,
  NatScheduler,
  SCRATCH_SIZE,
  NAT_GLOBAL_COUNTERS,
  ServiceKey,
  ServiceValue,
  SLOTS,
} from "./nat-layout.js";

const { add, add32, and, atomicAdd, sub, sub32, be16, be32, call, exit, FP, ja, jeq, jge, jgt, jle, jlt, jne, jset, jslt, label, ldMap, ldx, lsh, mod32, mov, mul32, or, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, rsh, rsh32, st, stx, xor } = asm;
type Item = asm.Item;

/**
 * Option kinds a TOA receiver may accept (reference/toa-formats.md): a client's own option of any of
 * these kinds is overwritten with NOPs before its segment reaches a backend, so whatever the backends'
 * receivers accept, the only address option they see is the balancer's. The listener's own toaKind
 * is added per flow.
 */
const CLIENT_TOA_KINDS = [254, 253, 252, 200, 28];
/** TCP Fast Open (RFC 7413): removed from PROXY v2 clients' SYNs, so no backend takes data before the header. */
const TCPOPT_FASTOPEN = 34;
/** Ports tried (in cursor order) before a SYN is given up to the stack as "ports exhausted". */
const PORT_TRIES = 16;
/** Options looked at in a SYN before giving up (each at least 1 byte of the 40). */
const OPTION_STEPS = 16;

/** Stack frame (offsets from r10). */
const S = {
  key: -40, // nat_flow_key of this packet
  rkey: -80, // key of the other direction, for a new connection
  fval: -152, // value for this direction, for a new connection
  rval: -224, // value for the other direction
  skey: -248, // nat_service_key (24 bytes, 20 used)
  u32: -252, // array key
  tcpFlags: -256, // u32: this packet's TCP flags
  thl: -260, // u32: TCP header length
  l3len: -264, // u32: IPv4 tot_len / IPv6 payload_len, network order, as in the packet
  old: -312, // 48 bytes: old addresses (2 × alen) then ports (4)
  new: -360, // 48 bytes: new addresses then ports
  hdr: -424, // 64 bytes: copy of the TCP header (at most 60)
  oldWord: -428, // u32: TCP header bytes 12..15 before the TOA (data offset, flags, window)
  newWord: -432, // u32: the same after
  mask: -504, // u64: option bytes a client's TOA-shaped options cover (bit i = byte i), to become NOPs
  optLen: -508, // u32: TCP option bytes of this packet (header length - 20)
} as const;
/**
 * 56 bytes: what insertBytes puts into a packet (a TOA option, a PROXY v2 header) at +4; for an
 * option the 4 bytes before it get a copy of newWord, so one csum_diff covers both.
 */
const INSERT_BUF = -492; // so that INSERT_BUF + 4 is 8-byte aligned (zero() stores double words)

interface Family {
  name: "4" | "6";
  family: number;
  alen: number;
  l4: number;
  saddr: number;
  daddr: number;
  proto: number;
  /** Offset of IPv4 tot_len / IPv6 payload_len. */
  l3len: number;
  /** IPv4 header checksum offset (IPv6 has none). */
  ipCsum?: number;
  toaLen: number;
}

const V4: Family = { name: "4", family: 4, alen: 4, l4: ETH_HLEN + 20, saddr: ETH_HLEN + 12, daddr: ETH_HLEN + 16, proto: ETH_HLEN + 9, l3len: ETH_HLEN + 2, ipCsum: ETH_HLEN + 10, toaLen: 8 };
const V6: Family = { name: "6", family: 6, alen: 16, l4: ETH_HLEN + 40, saddr: ETH_HLEN + 8, daddr: ETH_HLEN + 24, proto: ETH_HLEN + 6, l3len: ETH_HLEN + 4, toaLen: 20 };

const words = (bytes: number) => Array.from({ length: bytes / 4 }, (_, i) => i * 4);

/** Zero `bytes` (multiple of 8) of stack at `off`. */
const zero = (off: number, bytes: number): Item[] => Array.from({ length: bytes / 8 }, (_, i) => st("DW", FP, off + i * 8, 0));

/** Copy `bytes` (multiple of 4) from `*(src + sOff)` to `*(dst + dOff)` through r1. */
function copy(dst: asm.Register, dOff: number, src: asm.Register, sOff: number, bytes: number): Item[] {
  return words(bytes).flatMap((o) => [ldx("W", R1, src, sOff + o), stx("W", dst, dOff + o, R1)]);
}

/**
 * The fields both directions' flow values (at `fp + at`) share: the backend (r9), the direction, the
 * service's id (r8 = &nat_service) and the creation time (r0). Clobbers r1.
 */
function flowShared(at: number, dir: number): Item[] {
  return [
    stx("W", FP, at + FlowValue.backend, R9),
    st("B", FP, at + FlowValue.dir, dir),
    ldx("W", R1, R8, ServiceValue.id),
    stx("B", FP, at + FlowValue.service, R1),
    stx("DW", FP, at + FlowValue.createdNs, R0),
  ];
}

/** `nat_counters[index] += value` where index is a register or constant; value a register or 1. Clobbers r0-r5. */
function counterAdd(prefix: string, index: asm.Register | number, value: asm.Register | number = 1): Item[] {
  return [
    typeof index === "number" ? st("W", FP, S.u32, index) : stx("W", FP, S.u32, index),
    ...(typeof value === "number" ? [] : [stx("DW", FP, S.old, value)]), // park the value across the call
    ldMap(R1, NatMapName.counters),
    mov(R2, FP),
    add(R2, S.u32),
    call("map_lookup_elem"),
    jeq(R0, 0, `${prefix}_cdone`),
    ldx("DW", R1, R0, 0),
    ...(typeof value === "number" ? [add(R1, value)] : [ldx("DW", R2, FP, S.old), add(R1, R2)]),
    stx("DW", R0, 0, R1),
    label(`${prefix}_cdone`),
  ];
}

/**
 * Add the checksum difference in `diff` (a csum_diff result) to the TCP checksum; with
 * BPF_F_PSEUDO_HDR it is a pseudo-header change (kept for CHECKSUM_PARTIAL skbs too). Clobbers r1-r5.
 */
function tcpCsumAdd(f: Family, diff: asm.Register, flags = 0): Item[] {
  return [mov(R1, R6), mov(R2, f.l4 + 16), mov(R3, 0), mov(R4, diff), mov(R5, flags), call("l4_csum_replace")];
}

/** Per-backend counter: index 16 + 4 × (backend in `backendReg`) + counter. Clobbers r0-r5. */
function backendCounterAdd(prefix: string, backendReg: asm.Register, counter: number, value: asm.Register | number = 1): Item[] {
  return [mov(R3, backendReg), lsh(R3, 2), add(R3, NAT_GLOBAL_COUNTERS + counter), ...counterAdd(prefix, R3, value)];
}

/**
 * Parse the packet (Ethernet, IPv4 without options or IPv6 without extension headers, TCP) into the
 * flow key and the stack slots; anything else goes to `pass`.
 */
function parse(f: Family): Item[] {
  const ipHeader: Item[] =
    f.family === 4
      ? [
          ldx("B", R4, R2, ETH_HLEN),
          jne(R4, 0x45, "pass"), // IPv4 with options: not ours
          ldx("H", R4, R2, ETH_HLEN + 6), // flags + fragment offset, as stored
          and(R4, 0xff3f), // MF and the offset (little-endian view): a fragment is not ours
          jne(R4, 0, "pass"),
        ]
      : [];
  return [
    ldx("W", R2, R6, Skb.data),
    ldx("W", R3, R6, Skb.dataEnd),
    mov(R4, R2),
    add(R4, f.l4 + 20),
    jgt(R4, R3, "pass"),
    ...ipHeader,
    ldx("B", R4, R2, f.proto),
    jne(R4, IPPROTO_TCP, "pass"),
    ...zero(S.key, FlowKey.size),
    ...copy(FP, S.key + FlowKey.saddr, R2, f.saddr, f.alen),
    ...copy(FP, S.key + FlowKey.daddr, R2, f.daddr, f.alen),
    ldx("W", R4, R2, f.l4), // source and destination ports, together as in the packet
    stx("W", FP, S.key + FlowKey.sport, R4),
    st("B", FP, S.key + FlowKey.family, f.family),
    ldx("B", R4, R2, f.l4 + 13),
    stx("W", FP, S.tcpFlags, R4),
    ldx("B", R4, R2, f.l4 + 12),
    rsh(R4, 4),
    lsh(R4, 2),
    stx("W", FP, S.thl, R4),
    ldx("H", R4, R2, f.l3len),
    stx("W", FP, S.l3len, R4),
  ];
}

/** Look up the service of this packet's destination: r8 = &nat_service or goto `miss`. */
function serviceLookup(miss: string): Item[] {
  return [
    ...zero(S.skey, 24),
    ...copy(FP, S.skey + ServiceKey.addr, FP, S.key + FlowKey.daddr, 16),
    ldx("H", R1, FP, S.key + FlowKey.dport),
    stx("H", FP, S.skey + ServiceKey.port, R1),
    ldx("B", R1, FP, S.key + FlowKey.family),
    stx("B", FP, S.skey + ServiceKey.family, R1),
    ldMap(R1, NatMapName.services),
    mov(R2, FP),
    add(R2, S.skey),
    call("map_lookup_elem"),
    jeq(R0, 0, miss),
    mov(R8, R0),
  ];
}

/**
 * A SYN to a service: choose a backend and a local port, store both directions, then continue at
 * `${f}_flow` with r7 = the stored client-side entry.
 */
function newConnection(f: Family): Item[] {
  const p = `n${f.name}`;
  // Ports go round the range from a cursor (a lost increment between CPUs only costs a retry), so
  // a port comes back as late as possible: the backend may still hold the last connection through
  // it in TIME_WAIT, and a new SYN there can be refused (PAWS) when timestamps differ.
  const tryPort = (i: number): Item[] => [
    ldx("W", R0, R8, ServiceValue.portCursor),
    mov(R1, R0),
    add(R1, 1),
    stx("W", R8, ServiceValue.portCursor, R1),
    ldx("W", R1, R8, ServiceValue.portCount),
    mod32(R0, R1),
    ldx("W", R1, R8, ServiceValue.portFirst),
    add32(R0, R1),
    be16(R0),
    stx("H", FP, S.rkey + FlowKey.dport, R0),
    stx("H", FP, S.fval + FlowValue.sport, R0),
    ldMap(R1, NatMapName.flows),
    mov(R2, FP),
    add(R2, S.rkey),
    mov(R3, FP),
    add(R3, S.rval),
    mov(R4, BPF_NOEXIST),
    call("map_update_elem"),
    jeq(R0, 0, `${p}_port_ok`),
    jeq(R0, -E2BIG, `${p}_full`), // not a port in use: the table is full
    label(`${p}_try${i}`),
  ];
  return [
    label(`${p}_new`),
    ...serviceLookup("pass"),
    ldx("W", R1, R8, ServiceValue.slots),
    jne(R1, 0, `${p}_has_backend`),
    ...counterAdd(`${p}_nb`, NatCounter.no_backend),
    ja("pass"),
    label(`${p}_has_backend`),
    // The half-open budget: opened - completed - settled (the half-open flows now) < budget, or
    // the SYN is dropped. A SYN flood fills this, never the connections already established.
    ...[Admission.opened, Admission.completed, Admission.settled, Admission.budget].flatMap((slot, i): Item[] => [
      st("W", FP, S.u32, slot),
      ldMap(R1, NatMapName.admission),
      mov(R2, FP),
      add(R2, S.u32),
      call("map_lookup_elem"),
      jeq(R0, 0, "pass"),
      ...(i === 0 ? [ldx("DW", R7, R0, 0)] : i < 3 ? [ldx("DW", R1, R0, 0), sub(R7, R1)] : [ldx("DW", R1, R0, 0), jslt(R7, R1, `${p}_admitted`)]),
    ]),
    ...counterAdd(`${p}_sd`, NatCounter.syn_dropped),
    mov(R0, TC_ACT_SHOT),
    ja("exit"),
    label(`${p}_admitted`),
    // n = round robin cursor (per service; a rare lost increment between CPUs is harmless) or a hash
    // of the client address, then slot = n % slots.
    ldx("B", R2, R8, ServiceValue.scheduler),
    jeq(R2, NatScheduler.SOURCE_HASH, `${p}_hash`),
    ldx("W", R2, R8, ServiceValue.rrCursor),
    mov(R3, R2),
    add(R3, 1),
    stx("W", R8, ServiceValue.rrCursor, R3),
    ja(`${p}_pick`),
    label(`${p}_hash`),
    ...(f.family === 4
      ? [ldx("W", R2, FP, S.key + FlowKey.saddr)]
      : [ldx("W", R2, FP, S.key + FlowKey.saddr), ...[4, 8, 12].flatMap((o) => [ldx("W", R3, FP, S.key + FlowKey.saddr + o), xor(R2, R3)])]),
    mul32(R2, 0x9e3779b1 | 0),
    mov(R3, R2),
    rsh32(R3, 16),
    xor(R2, R3),
    label(`${p}_pick`),
    ldx("W", R1, R8, ServiceValue.slots),
    mod32(R2, R1),
    and(R2, SLOTS - 1),
    ldx("W", R3, R8, ServiceValue.id),
    lsh(R3, 8),
    add(R3, R2),
    stx("W", FP, S.u32, R3),
    ldMap(R1, NatMapName.slots),
    mov(R2, FP),
    add(R2, S.u32),
    call("map_lookup_elem"),
    jeq(R0, 0, "pass"),
    ldx("W", R9, R0, 0), // r9 = backend index
    stx("W", FP, S.u32, R9),
    ldMap(R1, NatMapName.backends),
    mov(R2, FP),
    add(R2, S.u32),
    call("map_lookup_elem"),
    jeq(R0, 0, "pass"),
    mov(R7, R0), // r7 = &nat_backend (until the flow is stored)
    call("ktime_get_ns"),
    // Client side: this packet's key → { local → backend }.
    ...zero(S.fval, FlowValue.size),
    ...copy(FP, S.fval + FlowValue.saddr, R7, BackendValue.local, 16),
    ...copy(FP, S.fval + FlowValue.daddr, R7, BackendValue.addr, 16),
    ldx("H", R1, R7, BackendValue.port),
    stx("H", FP, S.fval + FlowValue.dport, R1),
    ldx("W", R1, R7, BackendValue.ifindex),
    stx("W", FP, S.fval + FlowValue.ifindex, R1),
    ...flowShared(S.fval, FlowDir.TO_BACKEND),
    // Backend side: { backend → local } → { VIP → client }, out the device the SYN came in by.
    ...zero(S.rval, FlowValue.size),
    ...copy(FP, S.rval + FlowValue.saddr, FP, S.key + FlowKey.daddr, 16),
    ...copy(FP, S.rval + FlowValue.daddr, FP, S.key + FlowKey.saddr, 16),
    ldx("H", R1, FP, S.key + FlowKey.dport),
    stx("H", FP, S.rval + FlowValue.sport, R1),
    ldx("H", R1, FP, S.key + FlowKey.sport),
    stx("H", FP, S.rval + FlowValue.dport, R1),
    ldx("W", R1, R6, Skb.ifindex),
    stx("W", FP, S.rval + FlowValue.ifindex, R1),
    ...flowShared(S.rval, FlowDir.TO_CLIENT),
    // Both directions learn the client's ISN + 1: where a PROXY v2 header goes, and what an
    // acknowledgment of client data goes past.
    ...loadSeq(f, 4, "pass"),
    mov(R1, R0),
    add32(R1, 1),
    stx("W", FP, S.fval + FlowValue.seqBase, R1),
    stx("W", FP, S.rval + FlowValue.seqBase, R1),
    // The client's side is half-open until its ACK (handshakeDone).
    st("B", FP, S.fval + FlowValue.flags, FlowFlag.HALF_OPEN),
    // TOA: the kind goes with the flow (a client's option of that kind is removed too), and both
    // directions are pending until the backend acknowledges client data.
    ldx("B", R1, R8, ServiceValue.toaKind),
    stx("B", FP, S.fval + FlowValue.toaKind, R1),
    stx("B", FP, S.rval + FlowValue.toaKind, R1),
    jeq(R1, 0, `${p}_no_toa`),
    st("B", FP, S.fval + FlowValue.flags, FlowFlag.HALF_OPEN | FlowFlag.TOA_PENDING),
    st("B", FP, S.rval + FlowValue.flags, FlowFlag.TOA_PENDING),
    label(`${p}_no_toa`),
    // PROXY v2: the header's length, unacknowledged on both directions.
    ldx("B", R1, R8, ServiceValue.proxy),
    jeq(R1, 0, `${p}_no_proxy`),
    st("H", FP, S.fval + FlowValue.hdrLen, proxyLen(f)),
    st("H", FP, S.rval + FlowValue.hdrLen, proxyLen(f)),
    st("B", FP, S.fval + FlowValue.flags, FlowFlag.HALF_OPEN | FlowFlag.PROXY_UNACKED),
    st("B", FP, S.rval + FlowValue.flags, FlowFlag.PROXY_UNACKED),
    label(`${p}_no_proxy`),
    ...zero(S.rkey, FlowKey.size),
    ...copy(FP, S.rkey + FlowKey.saddr, R7, BackendValue.addr, 16),
    ...copy(FP, S.rkey + FlowKey.daddr, R7, BackendValue.local, 16),
    ldx("H", R1, R7, BackendValue.port),
    stx("H", FP, S.rkey + FlowKey.sport, R1),
    st("B", FP, S.rkey + FlowKey.family, f.family),
    // A free local port: the backend-side key must not exist yet (insert with NOEXIST).
    ...Array.from({ length: PORT_TRIES }, (_, i) => tryPort(i)).flat(),
    ...counterAdd(`${p}_px`, NatCounter.ports_exhausted),
    ja("pass"),
    // The table is full of live connections: refuse (the stack resets the SYN), evict nothing.
    label(`${p}_full`),
    ...counterAdd(`${p}_tf`, NatCounter.table_full),
    ja("pass"),
    label(`${p}_port_ok`),
    ldMap(R1, NatMapName.flows),
    mov(R2, FP),
    add(R2, S.key),
    mov(R3, FP),
    add(R3, S.fval),
    mov(R4, 0),
    call("map_update_elem"),
    jeq(R0, 0, `${p}_stored`),
    mov(R9, R0),
    ldMap(R1, NatMapName.flows),
    mov(R2, FP),
    add(R2, S.rkey),
    call("map_delete_elem"),
    jeq(R9, -E2BIG, `${p}_full`),
    ja("pass"),
    label(`${p}_stored`),
    ...admissionAdd(`${p}_ao`, Admission.opened),
    ...counterAdd(`${p}_fc`, NatCounter.flows_created),
    ...backendCounterAdd(`${p}_bc`, R9, NatBackendCounter.connections),
    ldMap(R1, NatMapName.flows),
    mov(R2, FP),
    add(R2, S.key),
    call("map_lookup_elem"),
    jeq(R0, 0, "pass"),
    mov(R7, R0),
    ja(`f${f.name}_flow`),
  ];
}

/**
 * What {@link insertBytes} puts into a client → backend packet, right after its TCP header (the
 * payload, if any, moves back by `len`):
 *   toa    a TCP option: the data offset grows by len / 4 (room in the 40 option bytes needed)
 *   proxy  a PROXY v2 header in front of the client's bytes: the header is unchanged
 */
interface Insertion {
  kind: "toa" | "proxy";
  /** Bytes inserted: a multiple of 4, so the moved payload's checksum is unchanged. */
  len: number;
  /** Writes the bytes at INSERT_BUF + 4 (for an option r8 = &nat_service; may clobber r1-r5). */
  fill: Item[];
  /** Where it goes on: after the bytes went in, and when they could not (counted already). */
  written: string;
  skipped: string;
}

/** The TOA option [kind][len][client port][client address] at INSERT_BUF + 4. */
function toaBytes(f: Family): Item[] {
  return [
    ...zero(INSERT_BUF + 4, 24),
    ldx("B", R1, R8, ServiceValue.toaKind),
    stx("B", FP, INSERT_BUF + 4, R1),
    st("B", FP, INSERT_BUF + 5, f.toaLen),
    ldx("H", R1, FP, S.key + FlowKey.sport),
    stx("H", FP, INSERT_BUF + 6, R1),
    ...copy(FP, INSERT_BUF + 8, FP, S.key + FlowKey.saddr, f.alen),
  ];
}

/**
 * The PROXY v2 header at INSERT_BUF + 4 (HAProxy's proxy-protocol.txt §2.2): signature, PROXY
 * command, TCP over IPv4/IPv6, the client's address and port as source, the address and port it
 * connected to (the listener) as destination. This packet is still client → listener: S.key holds both.
 */
function proxyBytes(f: Family): Item[] {
  const b = INSERT_BUF + 4;
  const sig = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
  const word = (o: number) => sig[o] | (sig[o + 1] << 8) | (sig[o + 2] << 16) | (sig[o + 3] << 24);
  return [
    ...[0, 4, 8].map((o) => st("W", FP, b + o, word(o) | 0)),
    // version 2 + PROXY (0x21); TCP over IPv4 (0x11) or IPv6 (0x21); address block length (BE)
    st("W", FP, b + 12, 0x21 | ((f.family === 4 ? 0x11 : 0x21) << 8) | ((2 * f.alen + 4) << 24)),
    ...copy(FP, b + 16, FP, S.key + FlowKey.saddr, f.alen),
    ...copy(FP, b + 16 + f.alen, FP, S.key + FlowKey.daddr, f.alen),
    ldx("W", R1, FP, S.key + FlowKey.sport), // source and destination ports, as in the packet
    stx("W", FP, b + 16 + 2 * f.alen, R1),
  ];
}

/** PROXY v2 header length for a family: 16 + two addresses + two ports. */
const proxyLen = (f: Family) => 16 + 2 * f.alen + 4;

/**
 * Insert bytes right after the TCP header of this (client → backend) packet. r7 = flow. The packet
 * grows at the tail and the payload moves back through the per-CPU scratch buffer; lengths and
 * checksums are fixed. Skips (counted) when the result would exceed packet.mtu, when a payload is
 * too big to move (a GSO segment), or, for an option, when the header has no room left.
 */
function insertBytes(f: Family, ins: Insertion): Item[] {
  const p = `${ins.kind === "toa" ? "t" : "x"}${f.name}`;
  const isOption = ins.kind === "toa";
  const maxThl = isOption ? 60 - ins.len : 60;
  const tcpLenFromL3 = (reg: asm.Register): Item[] =>
    f.family === 4 ? [be16(reg), and(reg, 0xffff), add(reg, -20)] : [be16(reg), and(reg, 0xffff)];
  const counted = (failed: number, noRoom: number, mtu: number): Item[] => [
    label(`${p}_no_room`),
    ...counterAdd(`${p}_nr`, noRoom),
    ja(ins.skipped),
    label(`${p}_mtu`),
    ...counterAdd(`${p}_mt`, mtu),
    ja(ins.skipped),
    label(`${p}_failed`),
    ...counterAdd(`${p}_fl`, failed),
    ja(ins.skipped),
  ];
  return [
    ldx("W", R8, FP, S.thl),
    jlt(R8, 20, `${p}_failed`),
    jgt(R8, maxThl, `${p}_no_room`),
    // Payload? Then the grown packet must still fit the MTU.
    ldx("W", R2, FP, S.l3len),
    ...tcpLenFromL3(R2),
    jeq(R2, R8, `${p}_fits`), // TCP length == header length: no payload
    ...serviceLookup(`${p}_failed`), // r8 = service (the MTU is there)
    ldx("W", R2, FP, S.l3len),
    be16(R2),
    and(R2, 0xffff),
    add(R2, f.family === 4 ? ins.len : 40 + ins.len),
    ldx("W", R3, R8, ServiceValue.mtu),
    jgt(R2, R3, `${p}_mtu`),
    ldx("W", R8, FP, S.thl),
    jlt(R8, 20, `${p}_failed`),
    jgt(R8, maxThl, `${p}_no_room`),
    label(`${p}_fits`),
    // The TCP header as it is, into hdr (zeroed first: the verifier tracks a variable-length copy
    // conservatively).
    ...zero(S.hdr, 64),
    mov(R1, R6),
    mov(R2, f.l4),
    mov(R3, FP),
    add(R3, S.hdr),
    mov(R4, R8),
    call("skb_load_bytes"),
    jne(R0, 0, `${p}_failed`),
    // An option: data offset += len / 4; the header word before and after go into the checksum.
    ...(isOption
      ? [
          ldx("W", R1, FP, S.hdr + 12),
          stx("W", FP, S.oldWord, R1),
          ldx("B", R1, FP, S.hdr + 12),
          add(R1, (ins.len / 4) << 4),
          stx("B", FP, S.hdr + 12, R1),
          ldx("W", R1, FP, S.hdr + 12),
          stx("W", FP, S.newWord, R1),
        ]
      : []),
    // The TOA's kind is in the service (r8 holds the header length by now); the PROXY header is
    // made of this packet's addresses alone.
    ...(isOption ? serviceLookup(`${p}_failed`) : []),
    ...ins.fill,
    // csum_diff wants "new word + option" contiguous: the word goes right before the bytes.
    ...(isOption ? [ldx("W", R1, FP, S.newWord), stx("W", FP, INSERT_BUF, R1)] : []),
    // Room: the packet grows at the tail and the payload moves back by len, so the TCP header stays
    // where it is. A CHECKSUM_PARTIAL skb's csum_start points there (the device or
    // skb_checksum_help sums from it; bpf_skb_adjust_room would leave it behind the moved header).
    // Moving the payload by a multiple of 4 bytes leaves its checksum unchanged.
    ldx("W", R9, FP, S.l3len),
    ...tcpLenFromL3(R9),
    ldx("W", R3, FP, S.thl),
    sub(R9, R3), // r9 = payload length
    jgt(R9, SCRATCH_SIZE, `${p}_mtu`), // too big to move (a GSO segment): skipped like an MTU overflow
    // No payload: nothing to move. (`< 1`, not `== 0`: only a range test gives the 5.10/6.1 verifiers
    // the non-zero lower bound that a helper's length argument needs.)
    jlt(R9, 1, `${p}_grow`),
    st("W", FP, S.u32, 0),
    ldMap(R1, NatMapName.scratch),
    mov(R2, FP),
    add(R2, S.u32),
    call("map_lookup_elem"),
    jeq(R0, 0, `${p}_failed`),
    stx("DW", FP, S.old, R0), // the scratch buffer, across the calls below
    ldx("W", R2, FP, S.thl),
    jlt(R2, 20, `${p}_failed`),
    jgt(R2, maxThl, `${p}_failed`),
    add(R2, f.l4),
    mov(R1, R6),
    mov(R3, R0),
    mov(R4, R9),
    call("skb_load_bytes"),
    jne(R0, 0, `${p}_failed`),
    label(`${p}_grow`),
    ldx("W", R2, FP, S.l3len),
    be16(R2),
    and(R2, 0xffff),
    add(R2, ETH_HLEN + (f.family === 4 ? 0 : 40) + ins.len), // the frame's new length (Ethernet padding dropped)
    mov(R1, R6),
    mov(R3, 0),
    call("skb_change_tail"),
    jne(R0, 0, `${p}_failed`),
    ldx("W", R8, FP, S.thl),
    jlt(R8, 20, `${p}_failed`),
    jgt(R8, maxThl, `${p}_failed`),
    ...(isOption
      ? [mov(R1, R6), mov(R2, f.l4), mov(R3, FP), add(R3, S.hdr), mov(R4, R8), mov(R5, 0), call("skb_store_bytes")]
      : []),
    mov(R1, R6),
    mov(R2, R8),
    add(R2, f.l4),
    mov(R3, FP),
    add(R3, INSERT_BUF + 4),
    mov(R4, ins.len),
    mov(R5, 0),
    call("skb_store_bytes"),
    // The payload, right after the inserted bytes.
    jgt(R9, SCRATCH_SIZE, `${p}_failed`),
    jlt(R9, 1, `${p}_stored`),
    mov(R1, R6),
    mov(R2, R8),
    add(R2, f.l4 + ins.len),
    ldx("DW", R3, FP, S.old),
    mov(R4, R9),
    mov(R5, 0),
    call("skb_store_bytes"),
    label(`${p}_stored`),
    // Lengths: IPv4 tot_len (and its header checksum) or IPv6 payload_len; the TCP length in the
    // pseudo-header; then the inserted bytes (and for an option the header word: not in the
    // pseudo-header).
    ldx("W", R8, FP, S.l3len), // old, network order
    mov(R9, R8),
    be16(R9),
    and(R9, 0xffff),
    add(R9, ins.len),
    be16(R9), // new, network order
    stx("H", FP, S.u32, R9),
    mov(R1, R6),
    mov(R2, f.l3len),
    mov(R3, FP),
    add(R3, S.u32),
    mov(R4, 2),
    mov(R5, 0),
    call("skb_store_bytes"),
    ...(f.ipCsum !== undefined
      ? [mov(R1, R6), mov(R2, f.ipCsum), mov(R3, R8), mov(R4, R9), mov(R5, 2), call("l3_csum_replace")]
      : []),
    // TCP length old/new (for IPv6 the payload length is the TCP length already).
    ...(f.family === 4
      ? [be16(R8), and(R8, 0xffff), add(R8, -20), be16(R8), be16(R9), and(R9, 0xffff), add(R9, -20), be16(R9)]
      : []),
    mov(R1, R6),
    mov(R2, f.l4 + 16),
    mov(R3, R8),
    mov(R4, R9),
    mov(R5, BPF_F_PSEUDO_HDR | 2),
    call("l4_csum_replace"),
    ...(isOption
      ? [mov(R1, FP), add(R1, S.oldWord), mov(R2, 4), mov(R3, FP), add(R3, INSERT_BUF), mov(R4, 4 + ins.len)]
      : [mov(R1, 0), mov(R2, 0), mov(R3, FP), add(R3, INSERT_BUF + 4), mov(R4, ins.len)]),
    mov(R5, 0),
    call("csum_diff"),
    ...tcpCsumAdd(f, R0),
    ja(ins.written),
    ...(isOption
      ? counted(NatCounter.toa_failed, NatCounter.toa_skipped_no_room, NatCounter.toa_skipped_mtu)
      : counted(NatCounter.proxy_skipped, NatCounter.proxy_skipped, NatCounter.proxy_skipped)),
  ];
}

/**
 * Insert the TOA after the TCP options of this (client → backend) packet. r7 = flow. Written or
 * skipped (counted: no room, MTU), the next client segment gets it again until the backend
 * acknowledges client data (toaAcked).
 */
function insertToa(f: Family): Item[] {
  const p = `t${f.name}`;
  return [
    ...insertBytes(f, { kind: "toa", len: f.toaLen, fill: toaBytes(f), written: `${p}_written`, skipped: `${p}_done` }),
    label(`${p}_written`),
    ldx("W", R9, R7, FlowValue.backend),
    ...backendCounterAdd(`${p}_w`, R9, NatBackendCounter.toa_written),
    label(`${p}_done`),
  ];
}

/** S.rkey = the key of the other direction of the flow in r7 (its value's addresses and ports, swapped). */
function reverseKey(f: Family): Item[] {
  return [
    ...zero(S.rkey, FlowKey.size),
    ...copy(FP, S.rkey + FlowKey.saddr, R7, FlowValue.daddr, 16),
    ...copy(FP, S.rkey + FlowKey.daddr, R7, FlowValue.saddr, 16),
    ldx("H", R1, R7, FlowValue.dport),
    stx("H", FP, S.rkey + FlowKey.sport, R1),
    ldx("H", R1, R7, FlowValue.sport),
    stx("H", FP, S.rkey + FlowKey.dport, R1),
    st("B", FP, S.rkey + FlowKey.family, f.family),
  ];
}

/**
 * r0 = the TCP sequence (at = 4) or acknowledgment (at = 8) number in host order, its network-order
 * bytes left at S.u32; goto `fail` when unreadable. Clobbers r1-r5.
 */
function loadSeq(f: Family, at: 4 | 8, fail: string): Item[] {
  return [
    mov(R1, R6),
    mov(R2, f.l4 + at),
    mov(R3, FP),
    add(R3, S.u32),
    mov(R4, 4),
    call("skb_load_bytes"),
    jne(R0, 0, fail),
    ldx("W", R0, FP, S.u32),
    be32(R0),
  ];
}

/**
 * Replace the sequence (at = 4) or acknowledgment (at = 8) number whose network-order bytes are in
 * r8 by the host-order value in r9, fixing the checksum (not in the pseudo-header). Clobbers r1-r5, r9.
 */
function storeSeq(f: Family, at: 4 | 8): Item[] {
  return [
    be32(R9),
    stx("W", FP, S.u32, R9),
    mov(R1, R6),
    mov(R2, f.l4 + at),
    mov(R3, FP),
    add(R3, S.u32),
    mov(R4, 4),
    mov(R5, 0),
    call("skb_store_bytes"),
    mov(R1, R6),
    mov(R2, f.l4 + 16),
    mov(R3, R8),
    mov(R4, R9),
    mov(R5, 4),
    call("l4_csum_replace"),
  ];
}

/**
 * Edit one option of this SYN's TCP header, PROXY v2 flows only (r7 = flow):
 *   client's SYN   SACK-permitted (kind 4) becomes two NOPs: with no SACK, no SACK block ever needs
 *                  shifting by the header's length
 *   backend's SYN/ACK  the MSS (kind 2) shrinks by the header's length, so a client segment at
 *                  seq_base always has room for the header in front of it
 * The header is copied twice into the scratch buffer (old at 0, new at 64), the option found by a
 * bounded walk, edited in the new copy, and the copy stored back with the checksum difference.
 */
function editSynOption(f: Family, kind: 2 | 4, done: string): Item[] {
  const p = `o${f.name}_${kind}`;
  return [
    st("W", FP, S.u32, 0),
    ldMap(R1, NatMapName.scratch),
    mov(R2, FP),
    add(R2, S.u32),
    call("map_lookup_elem"),
    jeq(R0, 0, done),
    mov(R9, R0),
    ldx("W", R8, FP, S.thl),
    jlt(R8, 24, done), // no options
    jgt(R8, 60, done),
    ...[0, 64].flatMap((o) => [mov(R1, R6), mov(R2, f.l4), mov(R3, R9), add(R3, o), mov(R4, R8), call("skb_load_bytes"), jne(R0, 0, done)]),
    mov(R2, 20), // r2 = offset of the option looked at
    // Unrolled (no loop for the verifier to doubt): SYNs carry 4 to 8 options, 40 bytes at most.
    ...Array.from({ length: OPTION_STEPS }, (_, i): Item[] => [
      jge(R2, R8, done), // not there
      mov(R4, R2),
      and(R4, 63),
      add(R4, R9),
      ldx("B", R5, R4, 0),
      jeq(R5, 0, done), // end of options
      jne(R5, 1, `${p}_long${i}`),
      add(R2, 1), // NOP
      ja(`${p}_next${i}`),
      label(`${p}_long${i}`),
      ldx("B", R1, R4, 1),
      jeq(R5, kind, `${p}_found`),
      jlt(R1, 2, done), // malformed: leave it
      add(R2, R1),
      label(`${p}_next${i}`),
    ]).flat(),
    ja(done),
    label(`${p}_found`),
    // r4 = the option in the old copy; the new copy is 64 bytes on.
    ...(kind === 4
      ? [st("B", R4, 64, 1), st("B", R4, 65, 1)]
      : [
          jne(R1, 4, done),
          ldx("B", R2, R4, 2),
          lsh(R2, 8),
          ldx("B", R3, R4, 3),
          or(R2, R3), // the MSS
          ldx("H", R3, R7, FlowValue.hdrLen),
          mov(R5, R3),
          add(R5, 536),
          jlt(R2, R5, done), // already small: leave it
          sub(R2, R3),
          stx("B", R4, 67, R2),
          rsh(R2, 8),
          stx("B", R4, 66, R2),
        ]),
    // The new header first (its checksum field is the old one), then the difference into it.
    // r8 (callee-saved) still holds the header length, bounded above.
    mov(R1, R6),
    mov(R2, f.l4),
    mov(R3, R9),
    add(R3, 64),
    mov(R4, R8),
    mov(R5, 0),
    call("skb_store_bytes"),
    mov(R1, R9),
    mov(R2, R8),
    mov(R3, R9),
    add(R3, 64),
    mov(R4, R8),
    mov(R5, 0),
    call("csum_diff"),
    ...tcpCsumAdd(f, R0),
    ja(done),
  ];
}

/**
 * Client → backend on a PROXY v2 flow (r7 = flow; no-op otherwise). The header occupies the
 * client's sequence numbers [seq_base, seq_base + len) on the backend's side: a segment at seq_base
 * gets the header in front of its bytes until the backend has acknowledged it (a lost header is
 * sent again with the client's retransmission; a duplicate is harmless, TCP drops what it has),
 * every other segment moves up by len.
 */
function proxyToBackend(f: Family, done: string): Item[] {
  const p = `pb${f.name}`;
  return [
    ldx("H", R1, R7, FlowValue.hdrLen),
    jeq(R1, 0, done),
    ldx("W", R1, FP, S.tcpFlags),
    jset(R1, TCP.SYN, `${p}_syn`),
    ldx("B", R1, R7, FlowValue.flags),
    and(R1, FlowFlag.PROXY_UNACKED),
    jeq(R1, 0, `${p}_shift`),
    ldx("W", R1, FP, S.tcpFlags),
    jset(R1, TCP.RST, `${p}_shift`),
    ...loadSeq(f, 4, "pass"),
    ldx("W", R1, R7, FlowValue.seqBase),
    jne(R0, R1, `${p}_shift`),
    ...insertBytes(f, { kind: "proxy", len: proxyLen(f), fill: proxyBytes(f), written: `${p}_written`, skipped: `${p}_shift` }),
    label(`${p}_written`),
    ...counterAdd(`${p}_pw`, NatCounter.proxy_written),
    ja(done),
    label(`${p}_shift`),
    ...loadSeq(f, 4, "pass"),
    ldx("W", R8, FP, S.u32),
    mov(R9, R0),
    ldx("H", R1, R7, FlowValue.hdrLen),
    add32(R9, R1),
    ...storeSeq(f, 4),
    ja(done),
    label(`${p}_syn`),
    // Data in the SYN (TCP Fast Open) would reach the backend in front of the header: drop it; the
    // client sends its SYN again without data (and the Fast Open option was removed, so the
    // backend hands out no cookie).
    ldx("W", R2, FP, S.l3len),
    be16(R2),
    and(R2, 0xffff),
    ...(f.family === 4 ? [add(R2, -20)] : []),
    ldx("W", R3, FP, S.thl),
    jle(R2, R3, `${p}_nodata`),
    ...counterAdd(`${p}_sd`, NatCounter.syn_data_dropped),
    mov(R0, TC_ACT_SHOT),
    ja("exit"),
    label(`${p}_nodata`),
    ...editSynOption(f, 4, done),
  ];
}

/**
 * Backend → client on a PROXY v2 flow (r7 = flow; no-op otherwise): acknowledgments past the header
 * move down by its length (one that doesn't cover the header yet becomes seq_base: the client sent
 * nothing beyond it); the first that covers it clears PROXY_UNACKED on both directions. The SYN/ACK
 * gets its MSS lowered instead (its acknowledgment is seq_base already).
 */
function proxyToClient(f: Family, done: string): Item[] {
  const p = `pc${f.name}`;
  return [
    ldx("H", R1, R7, FlowValue.hdrLen),
    jeq(R1, 0, done),
    ldx("W", R1, FP, S.tcpFlags),
    jset(R1, TCP.SYN, `${p}_syn`),
    and(R1, TCP.ACK),
    jeq(R1, 0, done),
    ...loadSeq(f, 8, "pass"),
    ldx("W", R8, FP, S.u32),
    mov(R9, R0),
    ldx("W", R2, R7, FlowValue.seqBase),
    mov(R3, R9),
    sub32(R3, R2), // how far past seq_base (mod 2^32)
    ldx("H", R4, R7, FlowValue.hdrLen),
    jge(R3, R4, `${p}_covers`),
    mov(R9, R2),
    ja(`${p}_store`),
    label(`${p}_covers`),
    sub32(R9, R4),
    ldx("B", R1, R7, FlowValue.flags),
    jset(R1, FlowFlag.PROXY_UNACKED, `${p}_acked`),
    ja(`${p}_store`),
    label(`${p}_acked`),
    and(R1, ~FlowFlag.PROXY_UNACKED & 0xff),
    stx("B", R7, FlowValue.flags, R1),
    ...reverseKey(f),
    ldMap(R1, NatMapName.flows),
    mov(R2, FP),
    add(R2, S.rkey),
    call("map_lookup_elem"),
    jeq(R0, 0, `${p}_store`),
    ldx("B", R1, R0, FlowValue.flags),
    and(R1, ~FlowFlag.PROXY_UNACKED & 0xff),
    stx("B", R0, FlowValue.flags, R1),
    label(`${p}_store`),
    mov(R1, R9),
    be32(R1),
    jeq(R1, R8, done), // unchanged
    ...storeSeq(f, 8),
    ja(done),
    label(`${p}_syn`),
    ...editSynOption(f, 2, done),
  ];
}

/**
 * Client → backend: overwrite with NOPs every TCP option a TOA receiver could take for an address:
 * kinds CLIENT_TOA_KINDS, the flow's toa_kind and, on PROXY v2 flows, TCP Fast Open. A malformed
 * option (length 0 or 1, or past the options' end) turns every byte from it to the end into NOPs:
 * a receiver that parses on past it must find nothing either. So does an EOL (some stacks pad
 * with it): a TOA appended after it would be past the end for every receiver. r7 = flow; continues at `done`, or
 * drops the packet when its options can't be read or rewritten (counted: options_unreadable).
 * Clobbers r0-r5, r8, r9.
 *
 * The common segment costs one load: no options, or exactly NOP NOP timestamps (what every segment
 * of a connection with timestamps carries). Otherwise the options are walked in place, and only
 * when something has to go are they copied to the scratch value twice (old at 0, new at 64), the
 * new copy NOPped where the mask says, stored back, and the checksum moved by the difference.
 */
function neutralise(f: Family, done: string): Item[] {
  const p = `z${f.name}`;
  const opts = f.l4 + 20; // where the options start in the frame
  const step = (i: number) => `${p}_s${i}`;
  const walked = `${p}_walked`;
  const rest = `${p}_rest`;
  // r9 += length, then forget exactly where (a no-op below 40): paths converge for the verifier.
  const advance = (i: number): Item[] => [add(R9, R4), jge(R9, 40, walked), and(R9, 63), ja(step(i + 1))];
  const steps = Array.from({ length: 40 }, (_, i): Item[] => [
    label(step(i)),
    jge(R9, 40, walked),
    ldx("W", R5, FP, S.optLen),
    jge(R9, R5, walked), // the options' end
    ldx("W", R2, R6, Skb.data),
    add(R2, R9),
    add(R2, opts),
    mov(R3, R2),
    add(R3, 1),
    jgt(R3, R8, rest), // beyond the linear data (checked before the walk): be safe all the same
    ldx("B", R3, R2, 0), // kind
    // EOL: receivers stop here, and so would they before a TOA the balancer appends after it:
    // it and whatever follows become NOPs.
    jeq(R3, 0, rest),
    jne(R3, 1, `${p}_o${i}`),
    add(R9, 1), // NOP
    ja(step(i + 1)),
    label(`${p}_o${i}`),
    mov(R4, R2),
    add(R4, 2),
    jgt(R4, R8, rest),
    ldx("B", R4, R2, 1), // length
    jlt(R4, 2, rest),
    mov(R5, R9),
    add(R5, R4),
    ldx("W", R1, FP, S.optLen),
    jgt(R5, R1, rest), // runs past the options
    ...CLIENT_TOA_KINDS.map((k) => jeq(R3, k, `${p}_ban${i}`)),
    ldx("B", R1, R7, FlowValue.toaKind),
    jeq(R3, R1, `${p}_ban${i}`),
    ldx("H", R1, R7, FlowValue.hdrLen), // a PROXY v2 flow: no Fast Open either
    jeq(R1, 0, `${p}_keep${i}`),
    jeq(R3, TCPOPT_FASTOPEN, `${p}_ban${i}`),
    label(`${p}_keep${i}`),
    ...advance(i),
    // mask |= ((1 << len) - 1) << off
    label(`${p}_ban${i}`),
    mov(R5, 1),
    lsh(R5, R4),
    add(R5, -1),
    lsh(R5, R9),
    or(R0, R5),
    ...advance(i),
  ]).flat();
  return [
    ldx("W", R1, FP, S.thl),
    jle(R1, 20, done),
    jgt(R1, 60, done),
    add(R1, -20),
    stx("W", FP, S.optLen, R1),
    // The options must be in the linear data to be read in place; a header normally is.
    ldx("W", R2, R6, Skb.data),
    ldx("W", R3, R6, Skb.dataEnd),
    add(R2, R1),
    add(R2, opts),
    jle(R2, R3, `${p}_linear`),
    mov(R1, R6),
    ldx("W", R2, FP, S.thl),
    add(R2, f.l4),
    call("skb_pull_data"),
    jeq(R0, 0, `${p}_linear`),
    ja(`${p}_unreadable`),
    label(`${p}_linear`),
    // The common case: exactly NOP NOP timestamps (01 01 08 0a).
    ldx("W", R1, FP, S.optLen),
    jne(R1, 12, `${p}_walk`),
    ldx("W", R2, R6, Skb.data),
    ldx("W", R3, R6, Skb.dataEnd),
    mov(R4, R2),
    add(R4, opts + 4),
    jgt(R4, R3, `${p}_walk`),
    ldx("W", R4, R2, opts),
    jeq(R4, 0x0a080101, done),
    label(`${p}_walk`),
    ldx("W", R8, R6, Skb.dataEnd),
    mov(R9, 0),
    mov(R0, 0), // the mask
    ...steps,
    label(step(40)),
    ja(walked),
    // From offset r9 to the end: all NOPs. mask |= ((1 << optLen) - 1) & ~((1 << off) - 1)
    label(rest),
    ldx("W", R1, FP, S.optLen),
    mov(R5, 1),
    lsh(R5, R1),
    add(R5, -1),
    mov(R1, 1),
    lsh(R1, R9),
    add(R1, -1),
    xor(R1, -1),
    and(R5, R1),
    or(R0, R5),
    label(walked),
    jeq(R0, 0, done),
    stx("DW", FP, S.mask, R0),
    st("W", FP, S.u32, 0),
    ldMap(R1, NatMapName.scratch),
    mov(R2, FP),
    add(R2, S.u32),
    call("map_lookup_elem"),
    jeq(R0, 0, `${p}_unreadable`),
    mov(R8, R0),
    // Two copies of the options: old (scratch + 0) and new (scratch + 64).
    ...[0, 64].flatMap((o) => [
      ldx("W", R4, FP, S.optLen),
      jlt(R4, 1, `${p}_unreadable`),
      jgt(R4, 40, `${p}_unreadable`),
      mov(R1, R6),
      mov(R2, opts),
      mov(R3, R8),
      add(R3, o),
      call("skb_load_bytes"),
      jne(R0, 0, `${p}_unreadable`),
    ]),
    ldx("DW", R9, FP, S.mask),
    ...Array.from({ length: 40 }, (_, i): Item[] => [mov(R1, R9), rsh(R1, i), and(R1, 1), jeq(R1, 0, `${p}_n${i}`), st("B", R8, 64 + i, 1), label(`${p}_n${i}`)]).flat(),
    ldx("W", R4, FP, S.optLen),
    jlt(R4, 1, `${p}_unreadable`),
    jgt(R4, 40, `${p}_unreadable`),
    mov(R1, R6),
    mov(R2, opts),
    mov(R3, R8),
    add(R3, 64),
    mov(R5, 0),
    call("skb_store_bytes"),
    jne(R0, 0, `${p}_unreadable`),
    // The checksum moves by new - old (option lengths are whole words, as csum_diff needs).
    ldx("W", R2, FP, S.optLen),
    jlt(R2, 1, `${p}_unreadable`),
    jgt(R2, 40, `${p}_unreadable`),
    mov(R4, R2),
    mov(R1, R8),
    mov(R3, R8),
    add(R3, 64),
    mov(R5, 0),
    call("csum_diff"),
    ...tcpCsumAdd(f, R0),
    ...counterAdd(`${p}_rm`, NatCounter.client_toa_removed),
    ja(done),
    // A forged option that can't be seen or removed must not reach a backend: drop the segment.
    label(`${p}_unreadable`),
    ...counterAdd(`${p}_ur`, NatCounter.options_unreadable),
    mov(R0, TC_ACT_SHOT),
    ja("exit"),
  ];
}

/**
 * Backend → client while the TOA is pending: an acknowledgment past the client's ISN + 1 means the
 * backend has data from the client, so it has taken the TOA (with the ACK, or with the first data
 * segment when it defers accept): stop writing it, on both directions. r7 = flow.
 */
function toaAcked(f: Family, done: string): Item[] {
  const p = `ta${f.name}`;
  return [
    ldx("B", R1, R7, FlowValue.flags),
    and(R1, FlowFlag.TOA_PENDING),
    jeq(R1, 0, done),
    ldx("W", R1, FP, S.tcpFlags),
    and(R1, TCP.SYN | TCP.ACK),
    jne(R1, TCP.ACK, done),
    ...loadSeq(f, 8, done),
    ldx("W", R1, R7, FlowValue.seqBase),
    sub32(R0, R1), // how far past seq_base (mod 2^32)
    jeq(R0, 0, done), // nothing of the client's acknowledged yet
    jset(R0, 0x80000000 | 0, done), // behind seq_base: an old segment
    ldx("B", R1, R7, FlowValue.flags),
    and(R1, ~FlowFlag.TOA_PENDING & 0xff),
    stx("B", R7, FlowValue.flags, R1),
    ...reverseKey(f),
    ldMap(R1, NatMapName.flows),
    mov(R2, FP),
    add(R2, S.rkey),
    call("map_lookup_elem"),
    jeq(R0, 0, done),
    ldx("B", R1, R0, FlowValue.flags),
    and(R1, ~FlowFlag.TOA_PENDING & 0xff),
    stx("B", R0, FlowValue.flags, R1),
    ja(done),
  ];
}

/**
 * Client → backend: the first ACK without SYN completes the handshake; the flow stops holding the
 * half-open budget (nat_admission completed += 1, atomically: CPUs share it). r7 = flow.
 */
function handshakeDone(f: Family, done: string): Item[] {
  const p = `hd${f.name}`;
  return [
    ldx("B", R1, R7, FlowValue.flags),
    jset(R1, FlowFlag.HALF_OPEN, `${p}_half`),
    ja(done),
    label(`${p}_half`),
    ldx("W", R2, FP, S.tcpFlags),
    and(R2, TCP.SYN | TCP.ACK),
    jne(R2, TCP.ACK, done),
    and(R1, ~FlowFlag.HALF_OPEN & 0xff),
    stx("B", R7, FlowValue.flags, R1),
    ...admissionAdd(`${p}_c`, Admission.completed),
    ja(done),
  ];
}

/** nat_admission[slot] += 1, atomically. Clobbers r0-r2. */
function admissionAdd(prefix: string, slot: number): Item[] {
  return [
    st("W", FP, S.u32, slot),
    ldMap(R1, NatMapName.admission),
    mov(R2, FP),
    add(R2, S.u32),
    call("map_lookup_elem"),
    jeq(R0, 0, `${prefix}_done`),
    mov(R1, 1),
    atomicAdd("DW", R0, 0, R1),
    label(`${prefix}_done`),
  ];
}

/** Rewrite a packet of a known flow (r7 = its entry), count it and send it on. */
function forward(f: Family): Item[] {
  const p = `f${f.name}`;
  const a = f.alen;
  return [
    label(`${p}_flow`),
    call("ktime_get_ns"),
    stx("DW", R7, FlowValue.lastNs, R0),
    // FIN and RST are noted for the control plane, which removes finished connections.
    ldx("W", R2, FP, S.tcpFlags),
    and(R2, TCP.FIN | TCP.RST),
    jeq(R2, 0, `${p}_flags_done`),
    mov(R3, R2),
    and(R3, TCP.FIN),
    jeq(R3, 0, `${p}_rst`),
    ldx("B", R1, R7, FlowValue.flags),
    or(R1, FlowFlag.FIN),
    stx("B", R7, FlowValue.flags, R1),
    label(`${p}_rst`),
    and(R2, TCP.RST),
    jeq(R2, 0, `${p}_flags_done`),
    ldx("B", R1, R7, FlowValue.flags),
    or(R1, FlowFlag.RST),
    stx("B", R7, FlowValue.flags, R1),
    label(`${p}_flags_done`),
    // Bytes per backend and direction.
    ldx("W", R9, R7, FlowValue.backend),
    ldx("B", R2, R7, FlowValue.dir),
    ldx("W", R8, R6, Skb.len),
    jne(R2, FlowDir.TO_BACKEND, `${p}_to_client`),
    ...backendCounterAdd(`${p}_btb`, R9, NatBackendCounter.bytes_to_backend, R8),
    // Nothing the client wrote may pass for an address option: ours goes in after.
    ...neutralise(f, `${p}_clean`),
    label(`${p}_clean`),
    ...handshakeDone(f, `${p}_toa`),
    // The TOA goes into every ACK without SYN (the one that completes the handshake, then the data
    // segments) until the backend acknowledges client data (toaAcked, the other way).
    label(`${p}_toa`),
    ldx("B", R1, R7, FlowValue.flags),
    and(R1, FlowFlag.TOA_PENDING),
    jeq(R1, 0, `${p}_pxc`),
    ldx("W", R1, FP, S.tcpFlags),
    and(R1, TCP.SYN | TCP.RST | TCP.ACK),
    jne(R1, TCP.ACK, `${p}_pxc`),
    ...insertToa(f),
    ja(`${p}_rewrite`),
    label(`${p}_pxc`),
    ...proxyToBackend(f, `${p}_rewrite`), // ends with a jump there
    label(`${p}_to_client`),
    ...backendCounterAdd(`${p}_btc`, R9, NatBackendCounter.bytes_to_client, R8),
    ...toaAcked(f, `${p}_pcx`),
    label(`${p}_pcx`),
    ...proxyToClient(f, `${p}_rewrite`),
    label(`${p}_rewrite`),
    // Old and new addresses and ports side by side for csum_diff.
    ...copy(FP, S.old, FP, S.key + FlowKey.saddr, a),
    ...copy(FP, S.old + a, FP, S.key + FlowKey.daddr, a),
    ldx("W", R1, FP, S.key + FlowKey.sport),
    stx("W", FP, S.old + 2 * a, R1),
    ...copy(FP, S.new, R7, FlowValue.saddr, a),
    ...copy(FP, S.new + a, R7, FlowValue.daddr, a),
    ldx("W", R1, R7, FlowValue.sport),
    stx("W", FP, S.new + 2 * a, R1),
    // Addresses: in the IPv4 header checksum and the TCP pseudo-header.
    mov(R1, FP),
    add(R1, S.old),
    mov(R2, 2 * a),
    mov(R3, FP),
    add(R3, S.new),
    mov(R4, 2 * a),
    mov(R5, 0),
    call("csum_diff"),
    mov(R9, R0),
    ...(f.ipCsum !== undefined ? [mov(R1, R6), mov(R2, f.ipCsum), mov(R3, 0), mov(R4, R9), mov(R5, 0), call("l3_csum_replace")] : []),
    ...tcpCsumAdd(f, R9, BPF_F_PSEUDO_HDR),
    // Ports: in the TCP header only.
    mov(R1, FP),
    add(R1, S.old + 2 * a),
    mov(R2, 4),
    mov(R3, FP),
    add(R3, S.new + 2 * a),
    mov(R4, 4),
    mov(R5, 0),
    call("csum_diff"),
    ...tcpCsumAdd(f, R0),
    mov(R1, R6),
    mov(R2, f.saddr),
    mov(R3, FP),
    add(R3, S.new),
    mov(R4, 2 * a),
    mov(R5, 0),
    call("skb_store_bytes"),
    mov(R1, R6),
    mov(R2, f.l4),
    mov(R3, FP),
    add(R3, S.new + 2 * a),
    mov(R4, 4),
    mov(R5, 0),
    call("skb_store_bytes"),
    // Out of the device towards the new destination; the neighbour table fills in the MACs.
    ldx("W", R1, R7, FlowValue.ifindex),
    mov(R2, 0),
    mov(R3, 0),
    mov(R4, 0),
    call("redirect_neigh"),
    jeq(R0, TC_ACT_REDIRECT, "exit"),
    mov(R9, R0),
    ...counterAdd(`${p}_rf`, NatCounter.redirect_failed),
    mov(R0, R9),
    ja("exit"),
  ];
}

/** The body for one address family: known flow → forward; SYN → new connection; else pass. */
function family(f: Family): Item[] {
  const p = `b${f.name}`;
  return [
    label(`${p}_start`),
    ...parse(f),
    ldMap(R1, NatMapName.flows),
    mov(R2, FP),
    add(R2, S.key),
    call("map_lookup_elem"),
    jeq(R0, 0, `${p}_miss`),
    mov(R7, R0),
    // A new SYN on a finished connection's 4-tuple (the client reused its port): start over. Finished
    // means a FIN or RST either way (a backend's RST marks only its own direction) or the other
    // direction gone; a copy of the SYN of a connection still opening follows it.
    ldx("W", R1, FP, S.tcpFlags),
    and(R1, TCP.SYN | TCP.ACK),
    jne(R1, TCP.SYN, `f${f.name}_flow`),
    ...reverseKey(f),
    ldx("B", R1, R7, FlowValue.flags),
    jset(R1, FlowFlag.FIN | FlowFlag.RST, `${p}_reuse`),
    ldMap(R1, NatMapName.flows),
    mov(R2, FP),
    add(R2, S.rkey),
    call("map_lookup_elem"),
    jeq(R0, 0, `${p}_reuse`), // its other direction gone: finished too (the delete below finds nothing)
    ldx("B", R1, R0, FlowValue.flags),
    jset(R1, FlowFlag.FIN | FlowFlag.RST, `${p}_reuse`),
    ja(`f${f.name}_flow`),
    label(`${p}_reuse`),
    ...counterAdd(`${p}_rp`, NatCounter.flows_replaced),
    ldMap(R1, NatMapName.flows),
    mov(R2, FP),
    add(R2, S.rkey),
    call("map_delete_elem"),
    ja(`n${f.name}_new`),
    label(`${p}_miss`),
    // Only a SYN (without ACK) opens a connection.
    ldx("W", R1, FP, S.tcpFlags),
    and(R1, TCP.SYN | TCP.ACK),
    jne(R1, TCP.SYN, "pass"),
    ...newConnection(f),
    ...forward(f),
  ];
}

/** Build the tc program (attach to the ingress of every device clients and backends come in by). */
export function natProgram(): ProgramSpec {
  const instructions: Item[] = [
    mov(R6, R1),
    ldx("W", R2, R6, Skb.protocol),
    jeq(R2, ETH_P_IP_BE, "b4_start"),
    jeq(R2, ETH_P_IPV6_BE, "b6_start"),
    ja("pass"),
    ...family(V4),
    ...family(V6),
    label("pass"),
    mov(R0, TC_ACT_OK),
    label("exit"),
    exit(),
  ];
  return { name: "toa_nat", type: "SCHED_CLS", license: "GPL", instructions };
}
