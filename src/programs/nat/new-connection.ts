/**
 * A SYN to a service: admit it (half-open budget), choose a backend (round robin or source hash)
 * and a free local port, store both directions of the flow, then forward it as a known flow.
 *
 *   svc = nat_services[{daddr, dport}]            no backend      → count, pass
 *   opened - completed - settled >= budget        → count, drop
 *   backend = nat_backends[nat_slots[svc.id << 8 | n % svc.slots]]
 *   fval = { local → backend }, rval = { VIP → client }, both with seq_base = ISN + 1
 *   for 16 ports from svc.port_cursor: nat_flows[{backend → local:port}] = rval (BPF_NOEXIST)
 *   nat_flows[key] = fval; goto flow
 */
import { asm } from "../../bpf/index.js";
import { BPF_NOEXIST, E2BIG, Skb, TC_ACT_SHOT } from "../../bpf/uapi.js";
import { Admission, BackendValue, FlowDir, FlowFlag, FlowKey, FlowValue, NatBackendCounter, NatCounter, NatMapName, NatScheduler, ServiceValue, SLOTS } from "../nat-layout.js";
import { type Ctx, proxyLen } from "./family.js";
import { admissionAdd, backendCounterAdd, copy, counterAdd, S, serviceLookup, swappedEnds, zero } from "./frame.js";
import { loadSeq } from "./seq-shift.js";

const { add, add32, and, be16, call, fp, FP, ja, jeq, jne, jslt, label, labels, ldx, lsh, mod32, mov, mul32, R0, R1, R2, R3, R6, R7, R8, R9, rsh32, st, stx, sub, xor } = asm;
type Item = asm.Item;

/** Ports tried (in cursor order) before a SYN is given up to the stack as "ports exhausted". */
const PORT_TRIES = 16;

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

/** Starts at `c.open` with S.key parsed; continues at `c.flow` with r7 = the stored client-side entry. */
export function newConnection(c: Ctx): Item[] {
  const { f } = c;
  const L = labels(`open${f.name}`, ["hasBackend", "admitted", "hash", "pick", "noToa", "noProxy", "portOk", "full", "stored"]);
  // Ports go round the range from a cursor (a lost increment between CPUs only costs a retry), so
  // a port comes back as late as possible: the backend may still hold the last connection through
  // it in TIME_WAIT, and a new SYN there can be refused (PAWS) when timestamps differ.
  const tryPort: Item[] = [
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
    ...call("map_update_elem", NatMapName.flows, fp(S.rkey), fp(S.rval), BPF_NOEXIST),
    jeq(R0, 0, L.portOk),
    jeq(R0, -E2BIG, L.full), // not a port in use: the table is full
  ];
  // The half-open budget: opened - completed - settled (the half-open flows now) < budget, or
  // the SYN is dropped. A SYN flood fills this, never the connections already established.
  const admission = [Admission.opened, Admission.completed, Admission.settled, Admission.budget].flatMap((slot, i): Item[] => [
    st("W", FP, S.u32, slot),
    ...call("map_lookup_elem", NatMapName.admission, fp(S.u32)),
    jeq(R0, 0, c.pass),
    ...(i === 0 ? [ldx("DW", R7, R0, 0)] : i < 3 ? [ldx("DW", R1, R0, 0), sub(R7, R1)] : [ldx("DW", R1, R0, 0), jslt(R7, R1, L.admitted)]),
  ]);
  return [
    label(c.open),
    ...serviceLookup(c.pass), // r8 = &nat_service
    ldx("W", R1, R8, ServiceValue.slots),
    jne(R1, 0, L.hasBackend),
    ...counterAdd(NatCounter.no_backend),
    ja(c.pass),
    label(L.hasBackend),
    ...admission,
    ...counterAdd(NatCounter.syn_dropped),
    mov(R0, TC_ACT_SHOT),
    ja(c.exit),
    label(L.admitted),
    // n = round robin cursor (per service; a rare lost increment between CPUs is harmless) or a hash
    // of the client address, then slot = n % slots.
    ldx("B", R2, R8, ServiceValue.scheduler),
    jeq(R2, NatScheduler.SOURCE_HASH, L.hash),
    ldx("W", R2, R8, ServiceValue.rrCursor),
    mov(R3, R2),
    add(R3, 1),
    stx("W", R8, ServiceValue.rrCursor, R3),
    ja(L.pick),
    label(L.hash),
    ...(f.family === 4
      ? [ldx("W", R2, FP, S.key + FlowKey.saddr)]
      : [ldx("W", R2, FP, S.key + FlowKey.saddr), ...[4, 8, 12].flatMap((o) => [ldx("W", R3, FP, S.key + FlowKey.saddr + o), xor(R2, R3)])]),
    mul32(R2, 0x9e3779b1 | 0),
    mov(R3, R2),
    rsh32(R3, 16),
    xor(R2, R3),
    label(L.pick),
    ldx("W", R1, R8, ServiceValue.slots),
    mod32(R2, R1),
    and(R2, SLOTS - 1),
    ldx("W", R3, R8, ServiceValue.id),
    lsh(R3, 8),
    add(R3, R2),
    stx("W", FP, S.u32, R3),
    ...call("map_lookup_elem", NatMapName.slots, fp(S.u32)),
    jeq(R0, 0, c.pass),
    ldx("W", R9, R0, 0), // r9 = backend index
    stx("W", FP, S.u32, R9),
    ...call("map_lookup_elem", NatMapName.backends, fp(S.u32)),
    jeq(R0, 0, c.pass),
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
    ...swappedEnds(FP, S.rval, FlowValue, FP, S.key, FlowKey),
    ldx("W", R1, R6, Skb.ifindex),
    stx("W", FP, S.rval + FlowValue.ifindex, R1),
    ...flowShared(S.rval, FlowDir.TO_CLIENT),
    // Both directions learn the client's ISN + 1: where a PROXY v2 header goes, and what an
    // acknowledgment of client data goes past.
    ...loadSeq(f, 4, c.pass),
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
    jeq(R1, 0, L.noToa),
    st("B", FP, S.fval + FlowValue.flags, FlowFlag.HALF_OPEN | FlowFlag.TOA_PENDING),
    st("B", FP, S.rval + FlowValue.flags, FlowFlag.TOA_PENDING),
    label(L.noToa),
    // PROXY v2: the header's length, unacknowledged on both directions.
    ldx("B", R1, R8, ServiceValue.proxy),
    jeq(R1, 0, L.noProxy),
    st("H", FP, S.fval + FlowValue.hdrLen, proxyLen(f)),
    st("H", FP, S.rval + FlowValue.hdrLen, proxyLen(f)),
    st("B", FP, S.fval + FlowValue.flags, FlowFlag.HALF_OPEN | FlowFlag.PROXY_UNACKED),
    st("B", FP, S.rval + FlowValue.flags, FlowFlag.PROXY_UNACKED),
    label(L.noProxy),
    ...zero(S.rkey, FlowKey.size),
    ...copy(FP, S.rkey + FlowKey.saddr, R7, BackendValue.addr, 16),
    ...copy(FP, S.rkey + FlowKey.daddr, R7, BackendValue.local, 16),
    ldx("H", R1, R7, BackendValue.port),
    stx("H", FP, S.rkey + FlowKey.sport, R1),
    st("B", FP, S.rkey + FlowKey.family, f.family),
    // A free local port: the backend-side key must not exist yet (insert with NOEXIST).
    ...Array.from({ length: PORT_TRIES }, () => tryPort).flat(),
    ...counterAdd(NatCounter.ports_exhausted),
    ja(c.pass),
    // The table is full of live connections: refuse (the stack resets the SYN), evict nothing.
    label(L.full),
    ...counterAdd(NatCounter.table_full),
    ja(c.pass),
    label(L.portOk),
    ...call("map_update_elem", NatMapName.flows, fp(S.key), fp(S.fval), 0),
    jeq(R0, 0, L.stored),
    mov(R9, R0),
    ...call("map_delete_elem", NatMapName.flows, fp(S.rkey)),
    jeq(R9, -E2BIG, L.full),
    ja(c.pass),
    label(L.stored),
    ...admissionAdd(Admission.opened),
    ...counterAdd(NatCounter.flows_created),
    ...backendCounterAdd(R9, NatBackendCounter.connections),
    ...call("map_lookup_elem", NatMapName.flows, fp(S.key)),
    jeq(R0, 0, c.pass),
    mov(R7, R0),
    ja(c.flow),
  ];
}
