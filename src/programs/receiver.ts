/**
 * The receiver: a sock_ops program that finds the TOA a full-NAT load balancer put into a
 * connection and keeps the client's address in the socket's local storage.
 *
 * Where it looks, in order (reference/toa-formats.md §4):
 *   1. the segment that completes the handshake (PASSIVE_ESTABLISHED_CB: skb_data is its TCP
 *      header), the packet toa.ko reads, walked in place: the common case costs one walk, one
 *      socket-storage allocation and one counter;
 *   2. the saved SYN (TCP_SAVE_SYN set on listeners in TCP_LISTEN_CB, read with TCP_BPF_SYN), only
 *      when the first had none;
 *   3. while nothing is found, the first data segments: PARSE_UNKNOWN_HDR_OPT is asked for only
 *      then, and cleared once found, so established connections pay nothing per packet.
 */
import { asm, type ProgramSpec } from "../bpf/index.js";
import { AF_INET, AF_INET6, CbFlag, Op, SOL_TCP, SockOps, TCP_BPF_SYN, TCP_SAVE_SYN } from "../bpf/uapi.js";
import { FoundIn, MapName, Peer } from "./layout.js";
import { count, peerStorage, loadScratch, returnOne, setCbFlags, clampToDataOffset } from "./macros.js";
import { walkOptions } from "./option-walk.js";

const { add, call, FP, ja, jeq, jgt, jne, jne32, jset, jslt, label, ldMap, ldx, mov, R0, R1, R2, R3, R4, R5, R6, R7, R8, rsh, st, stx } = asm;
type Item = asm.Item;

/** Receiver settings baked into the program (a reload swaps the program atomically). */
export interface ReceiverOptions {
  /** Option kinds accepted (lengths 8 and 20). */
  kinds: readonly number[];
  /** Check the connection's source against the trust tries (false: trust everyone, like toa.ko). */
  trust: boolean;
  /** Look in the saved SYN (costs the SYN's headers per connection until close). */
  syn?: boolean;
  /** Give up looking in data segments after this many segments in. */
  maxDataSegments?: number;
}

/** Stack slots of the receiver (offsets from r10; -4 is count()'s array key, macros.ts Stack.key). */
const S = {
  foundIn: -8, // u32: where the walk looks (FoundIn)
  malformed: -12, // u32: the current walk saw a malformed option
  one: -16, // int 1, for setsockopt
  opt: -40, // 24 bytes: the option found, normalised (option-walk.ts)
  trustKey: -64, // 20 bytes: LPM key (prefix length + address)
} as const;

/** Trust check on the connection's source (the balancer): falls to `untrusted` when not listed. */
function trustCheck(untrusted: string): Item[] {
  return [
    ldx("W", R2, R6, SockOps.family),
    jeq(R2, AF_INET6, "trust_v6"),
    // IPv4 socket: key {32, remote_ip4}
    st("W", FP, S.trustKey, 32),
    ldx("W", R3, R6, SockOps.remoteIp4),
    stx("W", FP, S.trustKey + 4, R3),
    ja("trust_lookup4"),
    label("trust_v6"),
    ldx("W", R3, R6, SockOps.remoteIp6),
    ldx("W", R4, R6, SockOps.remoteIp6 + 4),
    ldx("W", R5, R6, SockOps.remoteIp6 + 8),
    jne(R3, 0, "trust_full6"),
    jne(R4, 0, "trust_full6"),
    jne32(R5, 0xffff0000, "trust_full6"), // ::ffff:a.b.c.d (bytes 00 00 ff ff, little-endian word)
    st("W", FP, S.trustKey, 32),
    ldx("W", R3, R6, SockOps.remoteIp6 + 12),
    stx("W", FP, S.trustKey + 4, R3),
    label("trust_lookup4"),
    ldMap(R1, MapName.trust4),
    mov(R2, FP),
    add(R2, S.trustKey),
    call("map_lookup_elem"),
    jeq(R0, 0, untrusted),
    ja("trust_ok"),
    label("trust_full6"),
    st("W", FP, S.trustKey, 128),
    stx("W", FP, S.trustKey + 4, R3),
    stx("W", FP, S.trustKey + 8, R4),
    stx("W", FP, S.trustKey + 12, R5),
    ldx("W", R3, R6, SockOps.remoteIp6 + 12),
    stx("W", FP, S.trustKey + 16, R3),
    ldMap(R1, MapName.trust6),
    mov(R2, FP),
    add(R2, S.trustKey),
    call("map_lookup_elem"),
    jeq(R0, 0, untrusted),
    label("trust_ok"),
  ];
}

/** If the walk saw a malformed option, count it. Clobbers r0-r5. */
function countMalformed(prefix: string): Item[] {
  return [ldx("W", R2, FP, S.malformed), jeq(R2, 0, `${prefix}_mf_done`), ...count(`${prefix}_mf`, MapName.stats, "malformed"), label(`${prefix}_mf_done`)];
}

/**
 * Store the normalised option at S.opt into the socket's toa_peer and count it; entered at
 * "found". The data-segment search is switched off if it was on.
 */
function storePeer(trust: boolean): Item[] {
  return [
    label("found"),
    // A malformed option skipped before this one still counts.
    ...countMalformed("found"),
    ...(trust ? trustCheck("untrusted") : []),
    // toa_peer *p = bpf_sk_storage_get(&toa_peers, skops->sk, NULL, F_CREATE)
    ...peerStorage(SockOps.sk, true, "out"),
    mov(R8, R0),
    // p->port, p->addr: normalised already (IPv4: addr[4..16) zero; CDN: port 0, which the
    // rewriters read as "keep the connection's own")
    ldx("H", R3, FP, S.opt + 2),
    stx("H", R8, Peer.port, R3),
    ...[0, 4, 8, 12].flatMap((o) => [ldx("W", R3, FP, S.opt + 4 + o), stx("W", R8, Peer.addr + o, R3)]),
    ldx("B", R3, FP, S.opt + 1),
    st("B", R8, Peer.family, 4),
    jne(R3, 20, "found_kind"),
    st("B", R8, Peer.family, 6),
    label("found_kind"),
    ldx("B", R3, FP, S.opt),
    stx("B", R8, Peer.kind, R3),
    ldx("W", R3, FP, S.foundIn),
    stx("B", R8, Peer.foundIn, R3),
    // The balancer's end of the connection, for clientAddress(socket).via
    ldx("W", R3, R6, SockOps.remotePort),
    rsh(R3, 16), // remote_port holds the network-order port in its upper half
    stx("H", R8, Peer.viaPort, R3),
    ldx("W", R3, R6, SockOps.family),
    jeq(R3, AF_INET6, "found_via6"),
    st("B", R8, Peer.viaFamily, 4),
    ldx("W", R3, R6, SockOps.remoteIp4),
    stx("W", R8, Peer.viaAddr, R3),
    ja("found_count"),
    label("found_via6"),
    st("B", R8, Peer.viaFamily, 6),
    ...[0, 4, 8, 12].flatMap((o) => [ldx("W", R3, R6, SockOps.remoteIp6 + o), stx("W", R8, Peer.viaAddr + o, R3)]),
    label("found_count"),
    // found_in_syn/ack/data; syn_recv_sock_toa is their sum (the reader adds them: one count, not two)
    ldx("W", R2, FP, S.foundIn),
    add(R2, 7), // found_in_syn (8) - SYN (1)
    ...count("c_where", MapName.stats, { reg: R2 }),
    // NAT64: an IPv6 client on an AF_INET socket; getpeername can't carry it, getsockopt 4096 can.
    ldx("B", R2, FP, S.opt + 1),
    jne(R2, 20, "stop_search"),
    ldx("W", R2, R6, SockOps.family),
    jne(R2, AF_INET, "stop_search"),
    ...count("c_nat64", MapName.stats, "nat64"),
    ja("stop_search"),
    ...(trust ? [label("untrusted"), ...count("c_untrusted", MapName.stats, "untrusted")] : []),
    label("stop_search"),
    // Only a search that was on has a flag to clear: the common case (found in the ACK) skips the call.
    ldx("W", R2, R6, SockOps.cbFlags),
    jset(R2, CbFlag.PARSE_UNKNOWN_HDR_OPT, "stop_flag"),
    ja("out"),
    label("stop_flag"),
    ...setCbFlags(0, CbFlag.PARSE_UNKNOWN_HDR_OPT),
    ja("out"),
  ];
}

/** Build the receiver program for `options`. */
export function receiverProgram(options: ReceiverOptions): ProgramSpec {
  const { kinds, trust } = options;
  const syn = options.syn ?? true;
  const maxData = options.maxDataSegments ?? 16;
  const walk = { kinds, optSlot: S.opt, malformedSlot: S.malformed, found: "found" };
  const instructions: Item[] = [
    mov(R6, R1),
    ldx("W", R2, R6, SockOps.op),
    jeq(R2, Op.PASSIVE_ESTABLISHED_CB, "passive"),
    jeq(R2, Op.PARSE_HDR_OPT_CB, "parse"),
    ...(syn ? [jeq(R2, Op.TCP_LISTEN_CB, "listen")] : []),
    // Every other op (TIMEOUT_INIT, RWND_INIT, NEEDS_ECN run for each connection): nothing to do.
    ja("out"),

    // Listener: keep each SYN so the TOA in it can be read at PASSIVE_ESTABLISHED.
    ...(syn
      ? [label("listen"), st("W", FP, S.one, 1), mov(R1, R6), mov(R2, SOL_TCP), mov(R3, TCP_SAVE_SYN), mov(R4, FP), add(R4, S.one), mov(R5, 4), call("setsockopt"), ja("out")]
      : []),

    // Handshake complete: walk the segment that completed it (the ACK, or the first data segment
    // when the ACK was lost or deferred), in place.
    label("passive"),
    st("W", FP, S.foundIn, FoundIn.ACK),
    ja("segment"),
    // A later segment with an option the kernel doesn't know, while the search is on.
    label("parse"),
    ldx("W", R2, R6, SockOps.dataSegsIn),
    jgt(R2, maxData, "give_up"),
    st("W", FP, S.foundIn, FoundIn.DATA),
    label("segment"),
    st("W", FP, S.malformed, 0),
    ldx("DW", R8, R6, SockOps.skbDataEnd),
    ...walkOptions({ ...walk, prefix: "pkt", memory: "packet", notFound: "pkt_none" }),
    label("pkt_none"),
    ...countMalformed("pkt"),
    // A data segment without one: the search goes on with the next segment.
    ldx("W", R2, R6, SockOps.op),
    jne(R2, Op.PASSIVE_ESTABLISHED_CB, "out"),
    ...(syn
      ? [
          // The saved SYN: bpf_getsockopt(skops, SOL_TCP, TCP_BPF_SYN, scratch, 60) returns its
          // TCP header's length.
          st("W", FP, S.foundIn, FoundIn.SYN),
          st("W", FP, S.malformed, 0),
          ...loadScratch("syn", MapName.scratch, "syn_none"),
          mov(R1, R6),
          mov(R2, SOL_TCP),
          mov(R3, TCP_BPF_SYN),
          mov(R4, R7),
          mov(R5, 60),
          call("getsockopt"),
          jslt(R0, 20, "syn_none"),
          jgt(R0, 60, "syn_none"),
          mov(R8, R0),
          ...clampToDataOffset("syn", "syn_none"),
          ...walkOptions({ ...walk, prefix: "syn", memory: "map", notFound: "syn_none" }),
          label("syn_none"),
          ...countMalformed("syn"),
        ]
      : []),
    ...count("c_none", MapName.stats, "syn_recv_sock_no_toa"),
    // Nothing yet: look at data segments that carry options the kernel doesn't know.
    ...setCbFlags(CbFlag.PARSE_UNKNOWN_HDR_OPT),
    ja("out"),

    label("give_up"),
    ...count("c_giveup", MapName.stats, "data_search_stopped"),
    ...setCbFlags(0, CbFlag.PARSE_UNKNOWN_HDR_OPT),
    ja("out"),

    ...storePeer(trust),

    label("out"),
    ...returnOne(),
  ];
  return { name: "toa_receiver", type: "SOCK_OPS", license: "GPL", instructions };
}
