/**
 * Insertion into a client → backend packet, right after its TCP header: the TOA option, or a
 * PROXY v2 header in front of the client's bytes. The packet grows at the tail and the payload
 * moves back through the per-CPU scratch buffer; lengths and checksums are fixed.
 *
 * insertBytes is expanded inline (four times: TOA and PROXY, IPv4 and IPv6), not a BPF-to-BPF call:
 * the verifier adds every frame of a call chain, each rounded up (to 32 bytes on 5.10, 16 with the
 * JIT on newer kernels), against the same 512 bytes, and this program's frame is 508 (frame.ts).
 * Measured with a 508-byte caller and an 8-byte callee: refused on 5.10 ("combined stack size of 2
 * calls is 544. Too large") and 6.18 (528); 5.10 accepts a call only from a frame of 480 bytes or
 * less. Every expansion differs in its constants anyway.
 */
import { asm } from "../../bpf/index.js";
import { BPF_F_PSEUDO_HDR, ETH_HLEN } from "../../bpf/uapi.js";
import { FlowKey, FlowValue, NatBackendCounter, NatCounter, NatMapName, SCRATCH_SIZE, ServiceValue } from "../nat-layout.js";
import { type Ctx, type Family } from "./family.js";
import { backendCounterAdd, copy, counterAdd, S, serviceLookup, tcpCsumAdd, zero } from "./frame.js";

const { add, and, be16, call, fp, FP, ja, jeq, jgt, jlt, jne, label, labels, ldx, mem, mov, ptr, R0, R1, R2, R3, R6, R7, R8, R9, st, stx, sub } = asm;
type Item = asm.Item;

/**
 * What {@link insertBytes} puts into a client → backend packet, right after its TCP header (the
 * payload, if any, moves back by `len`):
 *   toa    a TCP option: the data offset grows by len / 4 (room in the 40 option bytes needed)
 *   proxy  a PROXY v2 header in front of the client's bytes: the header is unchanged
 */
export interface Insertion {
  kind: "toa" | "proxy";
  /** Bytes inserted: a multiple of 4, so the moved payload's checksum is unchanged. */
  len: number;
  /** Writes the bytes at S.insert (for an option r8 = &nat_service; may clobber r1-r5). */
  fill: Item[];
  /** Where it goes on: after the bytes went in, and when they could not (counted already). */
  written: string;
  skipped: string;
}

/** The TOA option [kind][len][client port][client address] at S.insert. */
function toaBytes(f: Family): Item[] {
  return [
    ...zero(S.insert, 24),
    ldx("B", R1, R8, ServiceValue.toaKind),
    stx("B", FP, S.insert, R1),
    st("B", FP, S.insert + 1, f.toaLen),
    ldx("H", R1, FP, S.key + FlowKey.sport),
    stx("H", FP, S.insert + 2, R1),
    ...copy(FP, S.insert + 4, FP, S.key + FlowKey.saddr, f.alen),
  ];
}

/**
 * The PROXY v2 header at S.insert (HAProxy's proxy-protocol.txt §2.2): signature, PROXY command,
 * TCP over IPv4/IPv6, the client's address and port as source, the address and port it connected
 * to (the listener) as destination. This packet is still client → listener: S.key holds both.
 */
export function proxyBytes(f: Family): Item[] {
  const b = S.insert;
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

/**
 * Insert bytes right after the TCP header of this (client → backend) packet. r7 = flow. Skips
 * (counted) when the result would exceed packet.mtu, when a payload is too big to move (a GSO
 * segment), or, for an option, when the header has no room left.
 */
export function insertBytes(f: Family, ins: Insertion): Item[] {
  const L = labels(`insert_${ins.kind}${f.name}`, ["fits", "grow", "stored", "noRoom", "mtu", "failed"]);
  const isOption = ins.kind === "toa";
  const maxThl = isOption ? 60 - ins.len : 60;
  const tcpLenFromL3 = (reg: asm.Register): Item[] =>
    f.family === 4 ? [be16(reg), and(reg, 0xffff), add(reg, -20)] : [be16(reg), and(reg, 0xffff)];
  const counted = (failed: number, noRoom: number, mtu: number): Item[] => [
    label(L.noRoom),
    ...counterAdd(noRoom),
    ja(ins.skipped),
    label(L.mtu),
    ...counterAdd(mtu),
    ja(ins.skipped),
    label(L.failed),
    ...counterAdd(failed),
    ja(ins.skipped),
  ];
  // r8 = the TCP header length, bounded for the verifier (after every call that forgets it).
  const thlBounded = (tooLong: string): Item[] => [ldx("W", R8, FP, S.thl), jlt(R8, 20, L.failed), jgt(R8, maxThl, tooLong)];
  return [
    ...thlBounded(L.noRoom),
    // Payload? Then the grown packet must still fit the MTU.
    ldx("W", R2, FP, S.l3len),
    ...tcpLenFromL3(R2),
    jeq(R2, R8, L.fits), // TCP length == header length: no payload
    ...serviceLookup(L.failed), // r8 = service (the MTU is there)
    ldx("W", R2, FP, S.l3len),
    be16(R2),
    and(R2, 0xffff),
    add(R2, f.family === 4 ? ins.len : 40 + ins.len),
    ldx("W", R3, R8, ServiceValue.mtu),
    jgt(R2, R3, L.mtu),
    ...thlBounded(L.noRoom),
    label(L.fits),
    // The TCP header as it is, into hdr (zeroed first: the verifier tracks a variable-length copy
    // conservatively).
    ...zero(S.hdr, 64),
    ...call("skb_load_bytes", R6, f.l4, fp(S.hdr), R8),
    jne(R0, 0, L.failed),
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
    ...(isOption ? serviceLookup(L.failed) : []),
    ...ins.fill,
    // csum_diff wants "new word + option" contiguous: the word goes right before the bytes.
    ...(isOption ? [ldx("W", R1, FP, S.newWord), stx("W", FP, S.insertWord, R1)] : []),
    // Room: the packet grows at the tail and the payload moves back by len, so the TCP header stays
    // where it is. A CHECKSUM_PARTIAL skb's csum_start points there (the device or
    // skb_checksum_help sums from it; bpf_skb_adjust_room would leave it behind the moved header).
    // Moving the payload by a multiple of 4 bytes leaves its checksum unchanged.
    ldx("W", R9, FP, S.l3len),
    ...tcpLenFromL3(R9),
    ldx("W", R3, FP, S.thl),
    sub(R9, R3), // r9 = payload length
    jgt(R9, SCRATCH_SIZE, L.mtu), // too big to move (a GSO segment): skipped like an MTU overflow
    // No payload: nothing to move. (`< 1`, not `== 0`: only a range test gives the 5.10/6.1 verifiers
    // the non-zero lower bound that a helper's length argument needs.)
    jlt(R9, 1, L.grow),
    st("W", FP, S.u32, 0),
    ...call("map_lookup_elem", NatMapName.scratch, fp(S.u32)),
    jeq(R0, 0, L.failed),
    stx("DW", FP, S.old, R0), // the scratch buffer, across the calls below
    ldx("W", R2, FP, S.thl),
    jlt(R2, 20, L.failed),
    jgt(R2, maxThl, L.failed),
    add(R2, f.l4),
    ...call("skb_load_bytes", R6, R2, R0, R9), // the payload into scratch
    jne(R0, 0, L.failed),
    label(L.grow),
    ldx("W", R2, FP, S.l3len),
    be16(R2),
    and(R2, 0xffff),
    add(R2, ETH_HLEN + (f.family === 4 ? 0 : 40) + ins.len), // the frame's new length (Ethernet padding dropped)
    ...call("skb_change_tail", R6, R2, 0),
    jne(R0, 0, L.failed),
    ...thlBounded(L.failed),
    ...(isOption ? call("skb_store_bytes", R6, f.l4, fp(S.hdr), R8, 0) : []),
    ...call("skb_store_bytes", R6, ptr(R8, f.l4), fp(S.insert), ins.len, 0),
    // The payload, right after the inserted bytes.
    jgt(R9, SCRATCH_SIZE, L.failed),
    jlt(R9, 1, L.stored),
    ...call("skb_store_bytes", R6, ptr(R8, f.l4 + ins.len), mem("DW", FP, S.old), R9, 0),
    label(L.stored),
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
    ...call("skb_store_bytes", R6, f.l3len, fp(S.u32), 2, 0),
    ...(f.ipCsum !== undefined ? call("l3_csum_replace", R6, f.ipCsum, R8, R9, 2) : []),
    // TCP length old/new (for IPv6 the payload length is the TCP length already).
    ...(f.family === 4
      ? [be16(R8), and(R8, 0xffff), add(R8, -20), be16(R8), be16(R9), and(R9, 0xffff), add(R9, -20), be16(R9)]
      : []),
    ...call("l4_csum_replace", R6, f.l4 + 16, R8, R9, BPF_F_PSEUDO_HDR | 2),
    ...(isOption
      ? call("csum_diff", fp(S.oldWord), 4, fp(S.insertWord), 4 + ins.len, 0)
      : call("csum_diff", 0, 0, fp(S.insert), ins.len, 0)),
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
export function insertToa(c: Ctx): Item[] {
  const { f } = c;
  const L = labels(`toa${f.name}`, ["written", "done"]);
  return [
    ...insertBytes(f, { kind: "toa", len: f.toaLen, fill: toaBytes(f), written: L.written, skipped: L.done }),
    label(L.written),
    ldx("W", R9, R7, FlowValue.backend),
    ...backendCounterAdd(R9, NatBackendCounter.toa_written),
    label(L.done),
  ];
}
