/**
 * Parse the packet (Ethernet, IPv4 without options or IPv6 without extension headers, TCP) into the
 * flow key and the stack slots; anything else goes on to the stack.
 *
 *   if (data + l4 + sizeof(struct tcphdr) > data_end) return TC_ACT_UNSPEC;
 *   if (ip->ihl != 5 || ip->frag_off & (IP_MF | IP_OFFSET)) return TC_ACT_UNSPEC;   // IPv4
 *   if (ip->protocol != IPPROTO_TCP) return TC_ACT_UNSPEC;
 *   key = { saddr, daddr, sport, dport, family }; tcpFlags, thl, l3len from the headers
 */
import { asm } from "../../bpf/index.js";
import { ETH_HLEN, IPPROTO_TCP, Skb } from "../../bpf/uapi.js";
import { FlowKey } from "../nat-layout.js";
import { type Ctx } from "./family.js";
import { copy, S, zero } from "./frame.js";

const { add, and, FP, jgt, jne, ldx, lsh, mov, R2, R3, R4, R6, rsh, st, stx } = asm;
type Item = asm.Item;

/** Fills S.key, S.tcpFlags, S.thl and S.l3len from the packet (r6 = skb), or goes to `pass`. */
export function parse(c: Ctx): Item[] {
  const { f } = c;
  const ipHeader: Item[] =
    f.family === 4
      ? [
          ldx("B", R4, R2, ETH_HLEN),
          jne(R4, 0x45, c.pass), // IPv4 with options: not ours
          ldx("H", R4, R2, ETH_HLEN + 6), // flags + fragment offset, as stored
          and(R4, 0xff3f), // MF and the offset (little-endian view): a fragment is not ours
          jne(R4, 0, c.pass),
        ]
      : [];
  return [
    ldx("W", R2, R6, Skb.data),
    ldx("W", R3, R6, Skb.dataEnd),
    mov(R4, R2),
    add(R4, f.l4 + 20),
    jgt(R4, R3, c.pass),
    ...ipHeader,
    ldx("B", R4, R2, f.proto),
    jne(R4, IPPROTO_TCP, c.pass),
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
