/**
 * PROXY v2 flows: the header occupies the client's sequence numbers [seq_base, seq_base + len) on
 * the backend's side, so sequence numbers move up towards the backend and acknowledgments move down
 * towards the client; the SYNs lose what would break that (SACK, Fast Open) or get room for it (MSS).
 */
import { asm } from "../../bpf/index.js";
import { TC_ACT_SHOT, TcpFlag as TCP } from "../../bpf/uapi.js";
import { FlowFlag, FlowValue, NatCounter, NatMapName } from "../nat-layout.js";
import { type Ctx, type Family, proxyLen } from "./family.js";
import { clearFlagBoth, counterAdd, S, tcpCsumAdd } from "./frame.js";
import { insertBytes, proxyBytes } from "./insert-bytes.js";

const { add, add32, and, be16, be32, call, fp, FP, ja, jeq, jge, jgt, jle, jlt, jne, jset, label, labels, labelSeries, ldx, lsh, mov, or, ptr, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, rsh, st, stx, sub, sub32 } = asm;
type Item = asm.Item;

/** Options looked at in a SYN before giving up (each at least 1 byte of the 40). */
const OPTION_STEPS = 16;

/**
 * r0 = the TCP sequence (at = 4) or acknowledgment (at = 8) number in host order, its network-order
 * bytes left at S.u32; goto `fail` when unreadable. Clobbers r1-r5.
 */
export function loadSeq(f: Family, at: 4 | 8, fail: string): Item[] {
  return [...call("skb_load_bytes", R6, f.l4 + at, fp(S.u32), 4), jne(R0, 0, fail), ldx("W", R0, FP, S.u32), be32(R0)];
}

/** r8 = the sequence (4) or acknowledgment (8) number as in the packet, r9 = in host order; goto `fail` when unreadable. */
function seqInR8R9(f: Family, at: 4 | 8, fail: string): Item[] {
  return [...loadSeq(f, at, fail), ldx("W", R8, FP, S.u32), mov(R9, R0)];
}

/** Not a PROXY v2 flow (r7): goto `done`; a SYN: goto `syn`; else on with r1 = the TCP flags. */
function proxyFlow(done: string, syn: string): Item[] {
  return [ldx("H", R1, R7, FlowValue.hdrLen), jeq(R1, 0, done), ldx("W", R1, FP, S.tcpFlags), jset(R1, TCP.SYN, syn)];
}

/**
 * Replace the sequence (at = 4) or acknowledgment (at = 8) number whose network-order bytes are in
 * r8 by the host-order value in r9, fixing the checksum (not in the pseudo-header). Clobbers r1-r5, r9.
 */
function storeSeq(f: Family, at: 4 | 8): Item[] {
  return [
    be32(R9),
    stx("W", FP, S.u32, R9),
    ...call("skb_store_bytes", R6, f.l4 + at, fp(S.u32), 4, 0),
    ...call("l4_csum_replace", R6, f.l4 + 16, R8, R9, 4),
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
  const L = labels(`synopt${f.name}_${kind}`, ["found", "long", "next"]);
  const long = labelSeries(L.long);
  const next = labelSeries(L.next);
  return [
    st("W", FP, S.u32, 0),
    ...call("map_lookup_elem", NatMapName.scratch, fp(S.u32)),
    jeq(R0, 0, done),
    mov(R9, R0), // r9 = scratch
    ldx("W", R8, FP, S.thl), // r8 = header length
    jlt(R8, 24, done), // no options
    jgt(R8, 60, done),
    ...[0, 64].flatMap((o) => [...call("skb_load_bytes", R6, f.l4, ptr(R9, o), R8), jne(R0, 0, done)]),
    mov(R2, 20), // r2 = offset of the option looked at
    // Unrolled (no loop for the verifier to doubt): SYNs carry 4 to 8 options, 40 bytes at most.
    ...Array.from({ length: OPTION_STEPS }, (_, i): Item[] => [
      jge(R2, R8, done), // not there
      mov(R4, R2),
      and(R4, 63),
      add(R4, R9),
      ldx("B", R5, R4, 0),
      jeq(R5, 0, done), // end of options
      jne(R5, 1, long(i)),
      add(R2, 1), // NOP
      ja(next(i)),
      label(long(i)),
      ldx("B", R1, R4, 1),
      jeq(R5, kind, L.found),
      jlt(R1, 2, done), // malformed: leave it
      add(R2, R1),
      label(next(i)),
    ]).flat(),
    ja(done),
    label(L.found),
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
    ...call("skb_store_bytes", R6, f.l4, ptr(R9, 64), R8, 0),
    ...call("csum_diff", R9, R8, ptr(R9, 64), R8, 0),
    ...tcpCsumAdd(f, R0),
    ja(done),
  ];
}

/**
 * Client → backend on a PROXY v2 flow (r7 = flow; no-op otherwise). A segment at seq_base gets the
 * header in front of its bytes until the backend has acknowledged it (a lost header is sent again
 * with the client's retransmission; a duplicate is harmless, TCP drops what it has), every other
 * segment moves up by len.
 */
export function proxyToBackend(c: Ctx, done: string): Item[] {
  const { f } = c;
  const L = labels(`proxyOut${f.name}`, ["syn", "shift", "written", "noData"]);
  return [
    ...proxyFlow(done, L.syn),
    ldx("B", R1, R7, FlowValue.flags),
    and(R1, FlowFlag.PROXY_UNACKED),
    jeq(R1, 0, L.shift),
    ldx("W", R1, FP, S.tcpFlags),
    jset(R1, TCP.RST, L.shift),
    ...loadSeq(f, 4, c.pass),
    ldx("W", R1, R7, FlowValue.seqBase),
    jne(R0, R1, L.shift),
    ...insertBytes(f, { kind: "proxy", len: proxyLen(f), fill: proxyBytes(f), written: L.written, skipped: L.shift }),
    label(L.written),
    ...counterAdd(NatCounter.proxy_written),
    ja(done),
    label(L.shift),
    ...seqInR8R9(f, 4, c.pass),
    ldx("H", R1, R7, FlowValue.hdrLen),
    add32(R9, R1),
    ...storeSeq(f, 4),
    ja(done),
    label(L.syn),
    // Data in the SYN (TCP Fast Open) would reach the backend in front of the header: drop it; the
    // client sends its SYN again without data (and the Fast Open option was removed, so the
    // backend hands out no cookie).
    ldx("W", R2, FP, S.l3len),
    be16(R2),
    and(R2, 0xffff),
    ...(f.family === 4 ? [add(R2, -20)] : []),
    ldx("W", R3, FP, S.thl),
    jle(R2, R3, L.noData),
    ...counterAdd(NatCounter.syn_data_dropped),
    mov(R0, TC_ACT_SHOT),
    ja(c.exit),
    label(L.noData),
    ...editSynOption(f, 4, done),
  ];
}

/**
 * Backend → client on a PROXY v2 flow (r7 = flow; no-op otherwise): acknowledgments past the header
 * move down by its length (one that doesn't cover the header yet becomes seq_base: the client sent
 * nothing beyond it); the first that covers it clears PROXY_UNACKED on both directions. The SYN/ACK
 * gets its MSS lowered instead (its acknowledgment is seq_base already).
 */
export function proxyToClient(c: Ctx, done: string): Item[] {
  const { f } = c;
  const L = labels(`proxyIn${f.name}`, ["syn", "covers", "acked", "store"]);
  return [
    ...proxyFlow(done, L.syn),
    and(R1, TCP.ACK),
    jeq(R1, 0, done),
    ...seqInR8R9(f, 8, c.pass),
    ldx("W", R2, R7, FlowValue.seqBase),
    mov(R3, R9),
    sub32(R3, R2), // how far past seq_base (mod 2^32)
    ldx("H", R4, R7, FlowValue.hdrLen),
    jge(R3, R4, L.covers),
    mov(R9, R2),
    ja(L.store),
    label(L.covers),
    sub32(R9, R4),
    ldx("B", R1, R7, FlowValue.flags),
    jset(R1, FlowFlag.PROXY_UNACKED, L.acked),
    ja(L.store),
    label(L.acked),
    ...clearFlagBoth(c, FlowFlag.PROXY_UNACKED, L.store),
    label(L.store),
    mov(R1, R9),
    be32(R1),
    jeq(R1, R8, done), // unchanged
    ...storeSeq(f, 8),
    ja(done),
    label(L.syn),
    ...editSynOption(f, 2, done),
  ];
}
