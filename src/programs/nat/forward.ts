/**
 * A packet of a known flow (r7 = its nat_flows entry): note FIN/RST, count bytes, run the per-
 * direction steps (client options, handshake, TOA, PROXY v2 shifts), rewrite addresses and ports
 * with their checksums, and redirect it out of the flow's device.
 *
 *   flow->last_ns = now; flags |= FIN/RST seen
 *   to backend: scrub client options; handshake done?; TOA pending? insert it : PROXY shift
 *   to client:  TOA acknowledged?; PROXY shift
 *   saddr, daddr, sport, dport = flow's; fix csums; return bpf_redirect_neigh(flow->ifindex)
 */
import { asm } from "../../bpf/index.js";
import { BPF_F_PSEUDO_HDR, Skb, TC_ACT_REDIRECT, TcpFlag as TCP } from "../../bpf/uapi.js";
import { Admission, FlowDir, FlowFlag, FlowKey, FlowValue, NatBackendCounter, NatCounter } from "../nat-layout.js";
import { type Ctx } from "./family.js";
import { admissionAdd, backendCounterAdd, clearFlagBoth, copy, counterAdd, S, tcpCsumAdd } from "./frame.js";
import { insertToa } from "./insert-bytes.js";
import { neutralise } from "./client-options.js";
import { loadSeq, proxyToBackend, proxyToClient } from "./seq-shift.js";

const { and, call, fp, FP, ja, jeq, jne, jset, label, labels, ldx, mov, or, R0, R1, R2, R3, R6, R7, R8, R9, stx, sub32 } = asm;
type Item = asm.Item;

/**
 * Backend → client while the TOA is pending: an acknowledgment past the client's ISN + 1 means the
 * backend has data from the client, so it has taken the TOA (with the ACK, or with the first data
 * segment when it defers accept): stop writing it, on both directions. r7 = flow.
 */
function toaAcked(c: Ctx, done: string): Item[] {
  return [
    ldx("B", R1, R7, FlowValue.flags),
    and(R1, FlowFlag.TOA_PENDING),
    jeq(R1, 0, done),
    ldx("W", R1, FP, S.tcpFlags),
    and(R1, TCP.SYN | TCP.ACK),
    jne(R1, TCP.ACK, done),
    ...loadSeq(c.f, 8, done),
    ldx("W", R1, R7, FlowValue.seqBase),
    sub32(R0, R1), // how far past seq_base (mod 2^32)
    jeq(R0, 0, done), // nothing of the client's acknowledged yet
    jset(R0, 0x80000000 | 0, done), // behind seq_base: an old segment
    ldx("B", R1, R7, FlowValue.flags),
    ...clearFlagBoth(c, FlowFlag.TOA_PENDING, done),
    ja(done),
  ];
}

/**
 * Client → backend: the first ACK without SYN completes the handshake; the flow stops holding the
 * half-open budget (nat_admission completed += 1, atomically: CPUs share it). r7 = flow.
 */
function handshakeDone(c: Ctx, done: string): Item[] {
  const L = labels(`handshake${c.f.name}`, ["halfOpen"]);
  return [
    ldx("B", R1, R7, FlowValue.flags),
    jset(R1, FlowFlag.HALF_OPEN, L.halfOpen),
    ja(done),
    label(L.halfOpen),
    ldx("W", R2, FP, S.tcpFlags),
    and(R2, TCP.SYN | TCP.ACK),
    jne(R2, TCP.ACK, done),
    and(R1, ~FlowFlag.HALF_OPEN & 0xff),
    stx("B", R7, FlowValue.flags, R1),
    ...admissionAdd(Admission.completed),
    ja(done),
  ];
}

/** `flow->flags |= flag` (r7 = flow). Clobbers r1. */
const markFlow = (flag: number): Item[] => [ldx("B", R1, R7, FlowValue.flags), or(R1, flag), stx("B", R7, FlowValue.flags, R1)];

/** Starts at `c.flow` (r7 = the flow's entry): rewrite the packet, count it and send it on. */
export function forward(c: Ctx): Item[] {
  const { f } = c;
  const a = f.alen;
  const L = labels(`forward${f.name}`, ["rst", "flagsDone", "toClient", "clean", "toa", "proxyOut", "proxyIn", "rewrite"]);
  return [
    label(c.flow),
    call("ktime_get_ns"),
    stx("DW", R7, FlowValue.lastNs, R0),
    // FIN and RST are noted for the control plane, which removes finished connections.
    ldx("W", R2, FP, S.tcpFlags),
    and(R2, TCP.FIN | TCP.RST),
    jeq(R2, 0, L.flagsDone),
    mov(R3, R2),
    and(R3, TCP.FIN),
    jeq(R3, 0, L.rst),
    ...markFlow(FlowFlag.FIN),
    label(L.rst),
    and(R2, TCP.RST),
    jeq(R2, 0, L.flagsDone),
    ...markFlow(FlowFlag.RST),
    label(L.flagsDone),
    // Bytes per backend and direction.
    ldx("W", R9, R7, FlowValue.backend),
    ldx("B", R2, R7, FlowValue.dir),
    ldx("W", R8, R6, Skb.len),
    jne(R2, FlowDir.TO_BACKEND, L.toClient),
    ...backendCounterAdd(R9, NatBackendCounter.bytes_to_backend, R8),
    // Nothing the client wrote may pass for an address option: ours goes in after.
    ...neutralise(c, L.clean),
    label(L.clean),
    ...handshakeDone(c, L.toa),
    // The TOA goes into every ACK without SYN (the one that completes the handshake, then the data
    // segments) until the backend acknowledges client data (toaAcked, the other way).
    label(L.toa),
    ldx("B", R1, R7, FlowValue.flags),
    and(R1, FlowFlag.TOA_PENDING),
    jeq(R1, 0, L.proxyOut),
    ldx("W", R1, FP, S.tcpFlags),
    and(R1, TCP.SYN | TCP.RST | TCP.ACK),
    jne(R1, TCP.ACK, L.proxyOut),
    ...insertToa(c),
    ja(L.rewrite),
    label(L.proxyOut),
    ...proxyToBackend(c, L.rewrite), // ends with a jump there
    label(L.toClient),
    ...backendCounterAdd(R9, NatBackendCounter.bytes_to_client, R8),
    ...toaAcked(c, L.proxyIn),
    label(L.proxyIn),
    ...proxyToClient(c, L.rewrite),
    label(L.rewrite),
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
    ...call("csum_diff", fp(S.old), 2 * a, fp(S.new), 2 * a, 0),
    mov(R9, R0),
    ...(f.ipCsum !== undefined ? call("l3_csum_replace", R6, f.ipCsum, 0, R9, 0) : []),
    ...tcpCsumAdd(f, R9, BPF_F_PSEUDO_HDR),
    // Ports: in the TCP header only.
    ...call("csum_diff", fp(S.old + 2 * a), 4, fp(S.new + 2 * a), 4, 0),
    ...tcpCsumAdd(f, R0),
    ...call("skb_store_bytes", R6, f.saddr, fp(S.new), 2 * a, 0),
    ...call("skb_store_bytes", R6, f.l4, fp(S.new + 2 * a), 4, 0),
    // Out of the device towards the new destination; the neighbour table fills in the MACs.
    ldx("W", R1, R7, FlowValue.ifindex),
    ...call("redirect_neigh", R1, 0, 0, 0),
    jeq(R0, TC_ACT_REDIRECT, c.exit),
    mov(R9, R0),
    ...counterAdd(NatCounter.redirect_failed),
    mov(R0, R9),
    ja(c.exit),
  ];
}
