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
import { count, peerStorage, loadScratch, returnOne, setCbFlags, clampToDataOffset, toaFrame } from "./macros.js";
import { walkOptions } from "./option-walk.js";

const { add, call, fp, FP, ja, jeq, jgt, jne, jne32, jset, jslt, label, labels, ldx, mov, R0, R1, R2, R3, R4, R5, R6, R7, R8, rsh, st, stx } = asm;
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

/** Stack slots of the receiver (offsets from r10), after count()'s array key (macros.ts Stack.key). */
const S = toaFrame({
  foundIn: 4, // u32: where the walk looks (FoundIn)
  malformed: 4, // u32: the current walk saw a malformed option
  one: 4, // int 1, for setsockopt
  opt: 24, // the option found, normalised (option-walk.ts)
  trustKey: { size: 20, align: 8 }, // LPM key (prefix length + address)
});

const receiverLabels = () =>
  labels("receiver", ["trustV6", "trustLookup4", "trustFull6", "trustOk", "found", "foundKind", "foundVia6", "foundCount", "stopSearch", "untrusted", "stopFlag", "out", "passive", "parse", "listen", "segment", "giveUp", "pktNone", "synNone"]);
type ReceiverLabels = ReturnType<typeof receiverLabels>;

/** Trust check on the connection's source (the balancer): falls to `untrusted` when not listed. */
function trustCheck(L: ReceiverLabels, untrusted: string): Item[] {
  return [
    ldx("W", R2, R6, SockOps.family),
    jeq(R2, AF_INET6, L.trustV6),
    // IPv4 socket: key {32, remote_ip4}
    st("W", FP, S.trustKey, 32),
    ldx("W", R3, R6, SockOps.remoteIp4),
    stx("W", FP, S.trustKey + 4, R3),
    ja(L.trustLookup4),
    label(L.trustV6),
    ldx("W", R3, R6, SockOps.remoteIp6),
    ldx("W", R4, R6, SockOps.remoteIp6 + 4),
    ldx("W", R5, R6, SockOps.remoteIp6 + 8),
    jne(R3, 0, L.trustFull6),
    jne(R4, 0, L.trustFull6),
    jne32(R5, 0xffff0000, L.trustFull6), // ::ffff:a.b.c.d (bytes 00 00 ff ff, little-endian word)
    st("W", FP, S.trustKey, 32),
    ldx("W", R3, R6, SockOps.remoteIp6 + 12),
    stx("W", FP, S.trustKey + 4, R3),
    label(L.trustLookup4),
    ...call("map_lookup_elem", MapName.trust4, fp(S.trustKey)),
    jeq(R0, 0, untrusted),
    ja(L.trustOk),
    label(L.trustFull6),
    st("W", FP, S.trustKey, 128),
    stx("W", FP, S.trustKey + 4, R3),
    stx("W", FP, S.trustKey + 8, R4),
    stx("W", FP, S.trustKey + 12, R5),
    ldx("W", R3, R6, SockOps.remoteIp6 + 12),
    stx("W", FP, S.trustKey + 16, R3),
    ...call("map_lookup_elem", MapName.trust6, fp(S.trustKey)),
    jeq(R0, 0, untrusted),
    label(L.trustOk),
  ];
}

/** If the walk saw a malformed option, count it. Clobbers r0-r5. */
function countMalformed(): Item[] {
  const M = labels("malformed", ["done"]);
  return [ldx("W", R2, FP, S.malformed), jeq(R2, 0, M.done), ...count(MapName.stats, "malformed"), label(M.done)];
}

/**
 * Store the normalised option at S.opt into the socket's toa_peer and count it; entered at
 * L.found. The data-segment search is switched off if it was on.
 */
function storePeer(L: ReceiverLabels, trust: boolean): Item[] {
  return [
    label(L.found),
    // A malformed option skipped before this one still counts.
    ...countMalformed(),
    ...(trust ? trustCheck(L, L.untrusted) : []),
    // toa_peer *p = bpf_sk_storage_get(&toa_peers, skops->sk, NULL, F_CREATE)
    ...peerStorage(SockOps.sk, true, L.out),
    mov(R8, R0),
    // p->port, p->addr: normalised already (IPv4: addr[4..16) zero; CDN: port 0, which the
    // rewriters read as "keep the connection's own")
    ldx("H", R3, FP, S.opt + 2),
    stx("H", R8, Peer.port, R3),
    ...[0, 4, 8, 12].flatMap((o) => [ldx("W", R3, FP, S.opt + 4 + o), stx("W", R8, Peer.addr + o, R3)]),
    ldx("B", R3, FP, S.opt + 1),
    st("B", R8, Peer.family, 4),
    jne(R3, 20, L.foundKind),
    st("B", R8, Peer.family, 6),
    label(L.foundKind),
    ldx("B", R3, FP, S.opt),
    stx("B", R8, Peer.kind, R3),
    ldx("W", R3, FP, S.foundIn),
    stx("B", R8, Peer.foundIn, R3),
    // The balancer's end of the connection, for clientAddress(socket).via
    ldx("W", R3, R6, SockOps.remotePort),
    rsh(R3, 16), // remote_port holds the network-order port in its upper half
    stx("H", R8, Peer.viaPort, R3),
    ldx("W", R3, R6, SockOps.family),
    jeq(R3, AF_INET6, L.foundVia6),
    st("B", R8, Peer.viaFamily, 4),
    ldx("W", R3, R6, SockOps.remoteIp4),
    stx("W", R8, Peer.viaAddr, R3),
    ja(L.foundCount),
    label(L.foundVia6),
    st("B", R8, Peer.viaFamily, 6),
    ...[0, 4, 8, 12].flatMap((o) => [ldx("W", R3, R6, SockOps.remoteIp6 + o), stx("W", R8, Peer.viaAddr + o, R3)]),
    label(L.foundCount),
    // found_in_syn/ack/data; syn_recv_sock_toa is their sum (the reader adds them: one count, not two)
    ldx("W", R2, FP, S.foundIn),
    add(R2, 7), // found_in_syn (8) - SYN (1)
    ...count(MapName.stats, { reg: R2 }),
    // NAT64: an IPv6 client on an AF_INET socket; getpeername can't carry it, getsockopt 4096 can.
    ldx("B", R2, FP, S.opt + 1),
    jne(R2, 20, L.stopSearch),
    ldx("W", R2, R6, SockOps.family),
    jne(R2, AF_INET, L.stopSearch),
    ...count(MapName.stats, "nat64"),
    ja(L.stopSearch),
    ...(trust ? [label(L.untrusted), ...count(MapName.stats, "untrusted")] : []),
    label(L.stopSearch),
    // Only a search that was on has a flag to clear: the common case (found in the ACK) skips the call.
    ldx("W", R2, R6, SockOps.cbFlags),
    jset(R2, CbFlag.PARSE_UNKNOWN_HDR_OPT, L.stopFlag),
    ja(L.out),
    label(L.stopFlag),
    ...setCbFlags(0, CbFlag.PARSE_UNKNOWN_HDR_OPT),
    ja(L.out),
  ];
}

/** Build the receiver program for `options`. */
export function receiverProgram(options: ReceiverOptions): ProgramSpec {
  const { kinds, trust } = options;
  const syn = options.syn ?? true;
  const maxData = options.maxDataSegments ?? 16;
  const L = receiverLabels();
  const walk = { kinds, optSlot: S.opt, malformedSlot: S.malformed, found: L.found };
  const instructions: Item[] = [
    mov(R6, R1),
    ldx("W", R2, R6, SockOps.op),
    jeq(R2, Op.PASSIVE_ESTABLISHED_CB, L.passive),
    jeq(R2, Op.PARSE_HDR_OPT_CB, L.parse),
    ...(syn ? [jeq(R2, Op.TCP_LISTEN_CB, L.listen)] : []),
    // Every other op (TIMEOUT_INIT, RWND_INIT, NEEDS_ECN run for each connection): nothing to do.
    ja(L.out),

    // Listener: keep each SYN so the TOA in it can be read at PASSIVE_ESTABLISHED.
    ...(syn
      ? [label(L.listen), st("W", FP, S.one, 1), ...call("setsockopt", R6, SOL_TCP, TCP_SAVE_SYN, fp(S.one), 4), ja(L.out)]
      : []),

    // Handshake complete: walk the segment that completed it (the ACK, or the first data segment
    // when the ACK was lost or deferred), in place.
    label(L.passive),
    st("W", FP, S.foundIn, FoundIn.ACK),
    ja(L.segment),
    // A later segment with an option the kernel doesn't know, while the search is on.
    label(L.parse),
    ldx("W", R2, R6, SockOps.dataSegsIn),
    jgt(R2, maxData, L.giveUp),
    st("W", FP, S.foundIn, FoundIn.DATA),
    label(L.segment),
    st("W", FP, S.malformed, 0),
    ldx("DW", R8, R6, SockOps.skbDataEnd),
    ...walkOptions({ ...walk, memory: "packet", notFound: L.pktNone }),
    label(L.pktNone),
    ...countMalformed(),
    // A data segment without one: the search goes on with the next segment.
    ldx("W", R2, R6, SockOps.op),
    jne(R2, Op.PASSIVE_ESTABLISHED_CB, L.out),
    ...(syn
      ? [
          // The saved SYN: bpf_getsockopt(skops, SOL_TCP, TCP_BPF_SYN, scratch, 60) returns its
          // TCP header's length.
          st("W", FP, S.foundIn, FoundIn.SYN),
          st("W", FP, S.malformed, 0),
          ...loadScratch(MapName.scratch, L.synNone),
          ...call("getsockopt", R6, SOL_TCP, TCP_BPF_SYN, R7, 60),
          jslt(R0, 20, L.synNone),
          jgt(R0, 60, L.synNone),
          mov(R8, R0),
          ...clampToDataOffset(L.synNone),
          ...walkOptions({ ...walk, memory: "map", notFound: L.synNone }),
          label(L.synNone),
          ...countMalformed(),
        ]
      : []),
    ...count(MapName.stats, "syn_recv_sock_no_toa"),
    // Nothing yet: look at data segments that carry options the kernel doesn't know.
    ...setCbFlags(CbFlag.PARSE_UNKNOWN_HDR_OPT),
    ja(L.out),

    label(L.giveUp),
    ...count(MapName.stats, "data_search_stopped"),
    ...setCbFlags(0, CbFlag.PARSE_UNKNOWN_HDR_OPT),
    ja(L.out),

    ...storePeer(L, trust),

    label(L.out),
    ...returnOne(),
  ];
  return { name: "toa_receiver", type: "SOCK_OPS", license: "GPL", instructions };
}
