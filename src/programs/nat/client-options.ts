/**
 * Client → backend: overwrite with NOPs every TCP option a TOA receiver could take for an address:
 * kinds CLIENT_TOA_KINDS, the flow's toa_kind and, on PROXY v2 flows, TCP Fast Open. A malformed
 * option (length 0 or 1, or past the options' end) turns every byte from it to the end into NOPs:
 * a receiver that parses on past it must find nothing either. So does an EOL (some stacks pad
 * with it): a TOA appended after it would be past the end for every receiver.
 *
 * The common segment costs one load: no options, or exactly NOP NOP timestamps (what every segment
 * of a connection with timestamps carries). Otherwise the options are walked in place, and only
 * when something has to go are they copied to the scratch value twice (old at 0, new at 64), the
 * new copy NOPped where the mask says, stored back, and the checksum moved by the difference.
 */
import { asm } from "../../bpf/index.js";
import { Skb, TC_ACT_SHOT } from "../../bpf/uapi.js";
import { FlowValue, NatCounter, NatMapName } from "../nat-layout.js";
import { type Ctx } from "./family.js";
import { counterAdd, S, tcpCsumAdd } from "./frame.js";

const { add, and, call, fp, FP, ja, jeq, jge, jgt, jle, jlt, jne, label, labels, labelSeries, ldx, lsh, mov, or, ptr, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, rsh, st, stx, xor } = asm;
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
/** Option bytes a TCP header can carry. */
const MAX_OPTIONS = 40;

/**
 * r7 = flow; continues at `done`, or drops the packet when its options can't be read or rewritten
 * (counted: options_unreadable). Clobbers r0-r5, r8, r9.
 */
export function neutralise(c: Ctx, done: string): Item[] {
  const { f } = c;
  const L = labels(`scrub${f.name}`, ["linear", "walk", "walked", "rest", "unreadable", "step", "option", "keep", "ban", "nop"]);
  const opts = f.l4 + 20; // where the options start in the frame
  const step = labelSeries(L.step);
  const option = labelSeries(L.option);
  const keep = labelSeries(L.keep);
  const ban = labelSeries(L.ban);
  const nop = labelSeries(L.nop);
  // r9 += length, then forget exactly where (a no-op below 40): paths converge for the verifier.
  const advance = (i: number): Item[] => [add(R9, R4), jge(R9, MAX_OPTIONS, L.walked), and(R9, 63), ja(step(i + 1))];
  // One option at offset r9 (r8 = data_end, r0 = the mask so far).
  const steps = Array.from({ length: MAX_OPTIONS }, (_, i): Item[] => [
    label(step(i)),
    jge(R9, MAX_OPTIONS, L.walked),
    ldx("W", R5, FP, S.optLen),
    jge(R9, R5, L.walked), // the options' end
    ldx("W", R2, R6, Skb.data),
    add(R2, R9),
    add(R2, opts),
    mov(R3, R2),
    add(R3, 1),
    jgt(R3, R8, L.rest), // beyond the linear data (checked before the walk): be safe all the same
    ldx("B", R3, R2, 0), // kind
    // EOL: receivers stop here, and so would they before a TOA the balancer appends after it:
    // it and whatever follows become NOPs.
    jeq(R3, 0, L.rest),
    jne(R3, 1, option(i)),
    add(R9, 1), // NOP
    ja(step(i + 1)),
    label(option(i)),
    mov(R4, R2),
    add(R4, 2),
    jgt(R4, R8, L.rest),
    ldx("B", R4, R2, 1), // length
    jlt(R4, 2, L.rest),
    mov(R5, R9),
    add(R5, R4),
    ldx("W", R1, FP, S.optLen),
    jgt(R5, R1, L.rest), // runs past the options
    ...CLIENT_TOA_KINDS.map((k) => jeq(R3, k, ban(i))),
    ldx("B", R1, R7, FlowValue.toaKind),
    jeq(R3, R1, ban(i)),
    ldx("H", R1, R7, FlowValue.hdrLen), // a PROXY v2 flow: no Fast Open either
    jeq(R1, 0, keep(i)),
    jeq(R3, TCPOPT_FASTOPEN, ban(i)),
    label(keep(i)),
    ...advance(i),
    // mask |= ((1 << len) - 1) << off
    label(ban(i)),
    mov(R5, 1),
    lsh(R5, R4),
    add(R5, -1),
    lsh(R5, R9),
    or(R0, R5),
    ...advance(i),
  ]).flat();
  // r4 = S.optLen, bounded for the helpers' length argument.
  const optLenBounded = (reg: asm.Register): Item[] => [ldx("W", reg, FP, S.optLen), jlt(reg, 1, L.unreadable), jgt(reg, MAX_OPTIONS, L.unreadable)];
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
    jle(R2, R3, L.linear),
    mov(R1, R6), // bpf_skb_pull_data(skb, l4 + thl)
    ldx("W", R2, FP, S.thl),
    add(R2, f.l4),
    call("skb_pull_data"),
    jeq(R0, 0, L.linear),
    ja(L.unreadable),
    label(L.linear),
    // The common case: exactly NOP NOP timestamps (01 01 08 0a).
    ldx("W", R1, FP, S.optLen),
    jne(R1, 12, L.walk),
    ldx("W", R2, R6, Skb.data),
    ldx("W", R3, R6, Skb.dataEnd),
    mov(R4, R2),
    add(R4, opts + 4),
    jgt(R4, R3, L.walk),
    ldx("W", R4, R2, opts),
    jeq(R4, 0x0a080101, done),
    label(L.walk),
    ldx("W", R8, R6, Skb.dataEnd),
    mov(R9, 0),
    mov(R0, 0), // the mask
    ...steps,
    label(step(MAX_OPTIONS)),
    ja(L.walked),
    // From offset r9 to the end: all NOPs. mask |= ((1 << optLen) - 1) & ~((1 << off) - 1)
    label(L.rest),
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
    label(L.walked),
    jeq(R0, 0, done),
    stx("DW", FP, S.mask, R0),
    st("W", FP, S.u32, 0),
    ...call("map_lookup_elem", NatMapName.scratch, fp(S.u32)),
    jeq(R0, 0, L.unreadable),
    mov(R8, R0), // r8 = scratch
    // Two copies of the options: old (scratch + 0) and new (scratch + 64).
    ...[0, 64].flatMap((o) => [...optLenBounded(R4), ...call("skb_load_bytes", R6, opts, ptr(R8, o), R4), jne(R0, 0, L.unreadable)]),
    ldx("DW", R9, FP, S.mask),
    ...Array.from({ length: MAX_OPTIONS }, (_, i): Item[] => [mov(R1, R9), rsh(R1, i), and(R1, 1), jeq(R1, 0, nop(i)), st("B", R8, 64 + i, 1), label(nop(i))]).flat(),
    ...optLenBounded(R4),
    ...call("skb_store_bytes", R6, opts, ptr(R8, 64), R4, 0),
    jne(R0, 0, L.unreadable),
    // The checksum moves by new - old (option lengths are whole words, as csum_diff needs).
    ...optLenBounded(R2),
    mov(R4, R2),
    ...call("csum_diff", R8, R2, ptr(R8, 64), R4, 0),
    ...tcpCsumAdd(f, R0),
    ...counterAdd(NatCounter.client_toa_removed),
    ja(done),
    // A forged option that can't be seen or removed must not reach a backend: drop the segment.
    label(L.unreadable),
    ...counterAdd(NatCounter.options_unreadable),
    mov(R0, TC_ACT_SHOT),
    ja(c.exit),
  ];
}
