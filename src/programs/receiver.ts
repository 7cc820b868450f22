/**
 * The receiver: a sock_ops program that finds the TOA a full-NAT load balancer put into a
 * connection and keeps the client's address in the socket's local storage.
 *
 * Where it looks, in order (reference/toa-formats.md §4):
 *   1. the ACK that completes the handshake (PASSIVE_ESTABLISHED_CB: skb_data is its TCP header),
 *      the packet toa.ko reads;
 *   2. the saved SYN (TCP_SAVE_SYN set on listeners in TCP_LISTEN_CB, read with TCP_BPF_SYN);
 *   3. while nothing is found, the first data segments: PARSE_UNKNOWN_HDR_OPT is asked for only
 *      then, and cleared once found, so established connections pay nothing per packet.
 */
import { asm, type ProgramSpec } from "../bpf/index.js";
import { AF_INET, AF_INET6, CbFlag, FoundIn, MapName, Op, Peer, SOL_TCP, SockOps, TCP_BPF_SYN, TCP_SAVE_SYN } from "./layout.js";
import { copyTcpHeader, count, peerStorage, countMalformed, loadScratch, returnOne, setCbFlags, clampToDataOffset, Stack, walkOptions } from "./macros.js";

const { add, call, FP, ja, jeq, jgt, jne, jne32, jset, jslt, label, ldMap, ldx, mov, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, rsh, st, stx } = asm;
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

/** Trust check on the connection's source (the balancer): falls to `untrusted` when not listed. */
function trustCheck(untrusted: string): Item[] {
  return [
    ldx("W", R2, R6, SockOps.family),
    jeq(R2, AF_INET6, "trust_v6"),
    // IPv4 socket: key {32, remote_ip4}
    st("W", FP, Stack.trustKey, 32),
    ldx("W", R3, R6, SockOps.remoteIp4),
    stx("W", FP, Stack.trustKey + 4, R3),
    ja("trust_lookup4"),
    label("trust_v6"),
    ldx("W", R3, R6, SockOps.remoteIp6),
    ldx("W", R4, R6, SockOps.remoteIp6 + 4),
    ldx("W", R5, R6, SockOps.remoteIp6 + 8),
    jne(R3, 0, "trust_full6"),
    jne(R4, 0, "trust_full6"),
    jne32(R5, 0xffff0000, "trust_full6"), // ::ffff:a.b.c.d (bytes 00 00 ff ff, little-endian word)
    st("W", FP, Stack.trustKey, 32),
    ldx("W", R3, R6, SockOps.remoteIp6 + 12),
    stx("W", FP, Stack.trustKey + 4, R3),
    label("trust_lookup4"),
    ldMap(R1, MapName.trust4),
    mov(R2, FP),
    add(R2, Stack.trustKey),
    call("map_lookup_elem"),
    jeq(R0, 0, untrusted),
    ja("trust_ok"),
    label("trust_full6"),
    st("W", FP, Stack.trustKey, 128),
    stx("W", FP, Stack.trustKey + 4, R3),
    stx("W", FP, Stack.trustKey + 8, R4),
    stx("W", FP, Stack.trustKey + 12, R5),
    ldx("W", R3, R6, SockOps.remoteIp6 + 12),
    stx("W", FP, Stack.trustKey + 16, R3),
    ldMap(R1, MapName.trust6),
    mov(R2, FP),
    add(R2, Stack.trustKey),
    call("map_lookup_elem"),
    jeq(R0, 0, untrusted),
    label("trust_ok"),
  ];
}

/**
 * Store the option at scratch[r9] (kind/len on the stack) into the socket's toa_peer and count it.
 * Entered at "found" with r3 = kind, r4 = length, r9 = offset.
 */
function storePeer(trust: boolean): Item[] {
  return [
    label("found"),
    stx("W", FP, Stack.kind, R3),
    stx("W", FP, Stack.len, R4),
    // A malformed option skipped before this one still counts.
    ...countMalformed("found", MapName.stats),
    ...(trust ? trustCheck("untrusted") : []),
    // toa_peer *p = bpf_sk_storage_get(&toa_peers, skops->sk, NULL, F_CREATE)
    ...peerStorage(SockOps.sk, true, "out"),
    mov(R8, R0),
    mov(R2, R7),
    add(R2, R9), // option start in scratch; r9 < 60 and scratch has 96 bytes
    ldx("H", R3, R2, 2),
    ldx("W", R4, FP, Stack.len),
    jset(R4, 1, "found_cdn"), // odd lengths (7, 19): Alibaba CDN, the address starts at byte 3
    stx("H", R8, Peer.port, R3),
    ja("found_addr"),
    label("found_cdn"),
    st("H", R8, Peer.port, 0), // no port in the option: the rewriters keep the connection's
    add(R2, -1), // now r2 + 4 is the address, as in the other formats (r9 >= 20, so r2 >= r7 + 19)
    add(R4, 1), // 7 -> 8, 19 -> 20
    stx("W", FP, Stack.len, R4),
    label("found_addr"),
    ldx("W", R3, R2, 4),
    stx("W", R8, Peer.addr, R3),
    ldx("W", R4, FP, Stack.len),
    jne(R4, 20, "found_v4"),
    ldx("W", R3, R2, 8),
    stx("W", R8, Peer.addr + 4, R3),
    ldx("W", R3, R2, 12),
    stx("W", R8, Peer.addr + 8, R3),
    ldx("W", R3, R2, 16),
    stx("W", R8, Peer.addr + 12, R3),
    st("B", R8, Peer.family, 6),
    ja("found_via"),
    label("found_v4"),
    st("W", R8, Peer.addr + 4, 0),
    st("DW", R8, Peer.addr + 8, 0),
    st("B", R8, Peer.family, 4),
    label("found_via"),
    ldx("W", R3, FP, Stack.kind),
    stx("B", R8, Peer.kind, R3),
    ldx("W", R3, FP, Stack.foundIn),
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
    ...count("c_toa", MapName.stats, "syn_recv_sock_toa"),
    ldx("W", R2, FP, Stack.foundIn),
    add(R2, 7), // found_in_syn (8) - SYN (1)
    ...count("c_where", MapName.stats, { reg: R2 }),
    // NAT64: an IPv6 client on an AF_INET socket; getpeername can't carry it, getsockopt 4096 can.
    ldx("W", R2, FP, Stack.len),
    jne(R2, 20, "stop_search"),
    ldx("W", R2, R6, SockOps.family),
    jne(R2, AF_INET, "stop_search"),
    ...count("c_nat64", MapName.stats, "nat64"),
    ja("stop_search"),
    ...(trust ? [label("untrusted"), ...count("c_untrusted", MapName.stats, "untrusted")] : []),
    label("stop_search"),
    ...setCbFlags(0, CbFlag.PARSE_UNKNOWN_HDR_OPT),
    ja("out"),
  ];
}

/** Build the receiver program for `options`. */
export function receiverProgram(options: ReceiverOptions): ProgramSpec {
  const { kinds, trust } = options;
  const syn = options.syn ?? true;
  const maxData = options.maxDataSegments ?? 16;
  const instructions: Item[] = [
    mov(R6, R1),
    // Cleared up front: the malformed flag is read after walks that a short header skips, and the
    // 5.10/6.1 verifiers refuse a read of a stack slot not yet written.
    st("B", FP, Stack.malformed, 0),
    ldx("W", R2, R6, SockOps.op),
    jeq(R2, Op.TCP_LISTEN_CB, "listen"),
    jeq(R2, Op.PASSIVE_ESTABLISHED_CB, "passive"),
    jeq(R2, Op.PARSE_HDR_OPT_CB, "parse"),
    ja("out"),

    // Listener: keep each SYN so the TOA in it can be read at PASSIVE_ESTABLISHED.
    label("listen"),
    ...(syn
      ? [st("W", FP, Stack.one, 1), mov(R1, R6), mov(R2, SOL_TCP), mov(R3, TCP_SAVE_SYN), mov(R4, FP), add(R4, Stack.one), mov(R5, 4), call("setsockopt")]
      : []),
    ja("out"),

    // Handshake complete: the ACK, then the saved SYN.
    label("passive"),
    ...loadScratch("p", MapName.scratch, "out"),
    st("W", FP, Stack.foundIn, FoundIn.ACK),
    ...copyTcpHeader("ack", "ack_none"),
    ...walkOptions("ack", kinds, "found", "ack_none"),
    label("ack_none"),
    ...countMalformed("ack", MapName.stats),
    ...(syn
      ? [
          st("W", FP, Stack.foundIn, FoundIn.SYN),
          // bpf_getsockopt(skops, SOL_TCP, TCP_BPF_SYN, scratch, 60): returns the header length
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
          ...walkOptions("syn", kinds, "found", "syn_none"),
          label("syn_none"),
          ...countMalformed("syn", MapName.stats),
        ]
      : []),
    ...count("c_none", MapName.stats, "syn_recv_sock_no_toa"),
    // Nothing yet: look at data segments that carry options the kernel doesn't know.
    ...setCbFlags(CbFlag.PARSE_UNKNOWN_HDR_OPT),
    ja("out"),

    // A segment with an unknown option, while we are still looking.
    label("parse"),
    ldx("W", R2, R6, SockOps.dataSegsIn),
    jgt(R2, maxData, "give_up"),
    ...loadScratch("d", MapName.scratch, "out"),
    st("W", FP, Stack.foundIn, FoundIn.DATA),
    ...copyTcpHeader("data", "data_none"),
    ...walkOptions("data", kinds, "found", "data_none"),
    label("data_none"),
    ...countMalformed("data", MapName.stats),
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
