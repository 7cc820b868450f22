/**
 * The packet program's stack frame and the small sequences every part of it uses (counters,
 * checksum updates, copies, the service and reverse-flow look-ups), like the static inline
 * functions at the top of a C file.
 */
import { asm } from "../../bpf/index.js";
import { AsmError } from "../../bpf/asm/index.js";
import { Admission, FlowKey, FlowValue, NAT_GLOBAL_COUNTERS, NatMapName, ServiceKey } from "../nat-layout.js";
import { type Ctx, type Family } from "./family.js";

const { add, atomicAdd, call, fp, FP, frame, jeq, label, labels, ldx, lsh, mov, R0, R1, R2, R3, R6, R7, R8, st, stx } = asm;
type Item = asm.Item;

/** The stack frame (offsets from r10), in the order of the hand layout it replaces (508 bytes). */
export const S = frame({
  key: FlowKey.size, // nat_flow_key of this packet
  rkey: FlowKey.size, // key of the other direction, for a new connection
  fval: FlowValue.size, // value for this direction, for a new connection
  rval: FlowValue.size, // value for the other direction
  skey: 24, // nat_service_key (20 bytes, zeroed as 3 double words)
  u32: 4, // array key; a network-order word on its way to or from the packet
  tcpFlags: 4, // u32: this packet's TCP flags
  thl: 4, // u32: TCP header length
  l3len: 4, // u32: IPv4 tot_len / IPv6 payload_len, network order, as in the packet
  old: 48, // old addresses (2 × alen) then ports (4); also a u64 parked across calls
  new: 48, // new addresses then ports
  hdr: 64, // copy of the TCP header (at most 60)
  oldWord: 4, // u32: TCP header bytes 12..15 before the TOA (data offset, flags, window)
  newWord: 4, // u32: the same after
  insert: 56, // what insertBytes puts into the packet (a TOA option, a PROXY v2 header), 8-aligned
  insertWord: 4, // right before insert: newWord again, so one csum_diff covers word + option
  mask: 8, // u64: option bytes a client's TOA-shaped options cover (bit i = byte i), to become NOPs
  optLen: 4, // u32: TCP option bytes of this packet (header length - 20)
});
if (S.insertWord + 4 !== S.insert) throw new AsmError("nat frame: insertWord must sit right before insert");

const words = (bytes: number) => Array.from({ length: bytes / 4 }, (_, i) => i * 4);

/** `memset(fp + off, 0, bytes)` (multiple of 8). */
export const zero = (off: number, bytes: number): Item[] => Array.from({ length: bytes / 8 }, (_, i) => st("DW", FP, off + i * 8, 0));

/** `memcpy(dst + dOff, src + sOff, bytes)` (multiple of 4) through r1. */
export function copy(dst: asm.Register, dOff: number, src: asm.Register, sOff: number, bytes: number): Item[] {
  return words(bytes).flatMap((o) => [ldx("W", R1, src, sOff + o), stx("W", dst, dOff + o, R1)]);
}

/** `nat_counters[index] += value` where index is a register or constant; value a register or 1. Clobbers r0-r5. */
export function counterAdd(index: asm.Register | number, value: asm.Register | number = 1): Item[] {
  const L = labels("counter", ["done"]);
  return [
    typeof index === "number" ? st("W", FP, S.u32, index) : stx("W", FP, S.u32, index),
    ...(typeof value === "number" ? [] : [stx("DW", FP, S.old, value)]), // park the value across the call
    ...call("map_lookup_elem", NatMapName.counters, fp(S.u32)),
    jeq(R0, 0, L.done),
    ldx("DW", R1, R0, 0),
    ...(typeof value === "number" ? [add(R1, value)] : [ldx("DW", R2, FP, S.old), add(R1, R2)]),
    stx("DW", R0, 0, R1),
    label(L.done),
  ];
}

/** Per-backend counter: index 16 + 4 × (backend in `backendReg`) + counter. Clobbers r0-r5. */
export function backendCounterAdd(backendReg: asm.Register, counter: number, value: asm.Register | number = 1): Item[] {
  return [mov(R3, backendReg), lsh(R3, 2), add(R3, NAT_GLOBAL_COUNTERS + counter), ...counterAdd(R3, value)];
}

/** `__sync_fetch_and_add(&nat_admission[slot], 1)`. Clobbers r0-r2. */
export function admissionAdd(slot: (typeof Admission)[keyof typeof Admission]): Item[] {
  const L = labels("admission", ["done"]);
  return [
    st("W", FP, S.u32, slot),
    ...call("map_lookup_elem", NatMapName.admission, fp(S.u32)),
    jeq(R0, 0, L.done),
    mov(R1, 1),
    atomicAdd("DW", R0, 0, R1),
    label(L.done),
  ];
}

/**
 * `bpf_l4_csum_replace(skb, tcp->check, 0, diff, flags)`: add a csum_diff result to the TCP
 * checksum; with BPF_F_PSEUDO_HDR it is a pseudo-header change (kept for CHECKSUM_PARTIAL skbs
 * too). Clobbers r0-r5.
 */
export function tcpCsumAdd(f: Family, diff: asm.Register, flags = 0): Item[] {
  return call("l4_csum_replace", R6, f.l4 + 16, 0, diff, flags);
}

/** `r8 = bpf_map_lookup_elem(&nat_services, {daddr, dport, family})` or goto `miss`. */
export function serviceLookup(miss: string): Item[] {
  return [
    ...zero(S.skey, 24),
    ...copy(FP, S.skey + ServiceKey.addr, FP, S.key + FlowKey.daddr, 16),
    ldx("H", R1, FP, S.key + FlowKey.dport),
    stx("H", FP, S.skey + ServiceKey.port, R1),
    ldx("B", R1, FP, S.key + FlowKey.family),
    stx("B", FP, S.skey + ServiceKey.family, R1),
    ...call("map_lookup_elem", NatMapName.services, fp(S.skey)),
    jeq(R0, 0, miss),
    mov(R8, R0),
  ];
}

/** Where a struct keeps a connection's two ends (FlowKey and FlowValue both do). */
interface Ends {
  readonly saddr: number;
  readonly daddr: number;
  readonly sport: number;
  readonly dport: number;
}

/**
 * The other direction's ends: `to.saddr = from.daddr; to.daddr = from.saddr`, ports likewise, for
 * the struct `To` at `dst + dOff` from the struct `From` at `src + sOff`. Clobbers r1.
 */
export function swappedEnds(dst: asm.Register, dOff: number, To: Ends, src: asm.Register, sOff: number, From: Ends): Item[] {
  return [
    ...copy(dst, dOff + To.saddr, src, sOff + From.daddr, 16),
    ...copy(dst, dOff + To.daddr, src, sOff + From.saddr, 16),
    ldx("H", R1, src, sOff + From.dport),
    stx("H", dst, dOff + To.sport, R1),
    ldx("H", R1, src, sOff + From.sport),
    stx("H", dst, dOff + To.dport, R1),
  ];
}

/** S.rkey = the key of the other direction of the flow in r7 (its value's addresses and ports, swapped). */
export function reverseKey(f: Family): Item[] {
  return [...zero(S.rkey, FlowKey.size), ...swappedEnds(FP, S.rkey, FlowKey, R7, 0, FlowValue), st("B", FP, S.rkey + FlowKey.family, f.family)];
}

/**
 * `flags &= ~flag` on both directions of the flow in r7, r1 = its flags already loaded; goto `done`
 * when the other direction is gone. Clobbers r0-r5.
 */
export function clearFlagBoth(c: Ctx, flag: number, done: string): Item[] {
  return [
    asm.and(R1, ~flag & 0xff),
    stx("B", R7, FlowValue.flags, R1),
    ...reverseKey(c.f),
    ...call("map_lookup_elem", NatMapName.flows, fp(S.rkey)),
    jeq(R0, 0, done),
    ldx("B", R1, R0, FlowValue.flags),
    asm.and(R1, ~flag & 0xff),
    stx("B", R0, FlowValue.flags, R1),
  ];
}
