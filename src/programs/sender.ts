/**
 * The sender: a sock_ops program for the connecting side (the load balancer) that writes a TOA into
 * the connections listed in toa_snd_conns (key: the connection's own 4-tuple, registered before
 * connect()). It writes into the handshake ACK and every segment until the server has sent data,
 * the packets LVS and DPVS use (reference/toa-formats.md §2), optionally also into the SYN. An
 * option that doesn't fit the 40-byte option space is skipped and counted, never forced.
 */
import { asm, type ProgramSpec } from "../bpf/index.js";
import { AF_INET6, BPF_WRITE_HDR_TCP_CURRENT_MSS, CbFlag, Op, SockOps, TcpFlag } from "../bpf/uapi.js";
import { MapName, SENDER_FLAG_SYN, SenderKey, SenderValue } from "./layout.js";
import { count, returnOne, setCbFlags, toaFrame } from "./macros.js";

const { add, and, be16, call, fp, FP, ja, jeq, jne, jset, jslt, label, labels, ldx, mov, R0, R1, R2, R3, R4, R6, R7, rsh, st, stx } = asm;
type Item = asm.Item;

/** Stack slots, after count()'s array key (macros.ts Stack.key). */
const S = toaFrame({
  conn: SenderKey.size, // the connection key
  opt: 24, // the option being written (20 bytes + 4 slack)
});
const KEY = S.conn;
const OPT = S.opt;

/** r7 = toa_snd_conns[key of this connection] or goto out. Clobbers r0-r5. */
function lookupConnection(out: string): Item[] {
  const L = labels("connection", ["v6", "keyDone"]);
  return [
    st("DW", FP, KEY + 8, 0),
    ...[16, 24, 32, 40].map((o) => st("DW", FP, KEY + o, 0)),
    ldx("W", R2, R6, SockOps.family),
    stx("W", FP, KEY + SenderKey.family, R2),
    ldx("W", R3, R6, SockOps.localPort), // host order
    stx("H", FP, KEY + SenderKey.localPort, R3),
    ldx("W", R3, R6, SockOps.remotePort), // network order in the upper half
    rsh(R3, 16),
    be16(R3),
    stx("H", FP, KEY + SenderKey.remotePort, R3),
    jeq(R2, AF_INET6, L.v6),
    ldx("W", R3, R6, SockOps.localIp4),
    stx("W", FP, KEY + SenderKey.local, R3),
    ldx("W", R3, R6, SockOps.remoteIp4),
    stx("W", FP, KEY + SenderKey.remote, R3),
    ja(L.keyDone),
    label(L.v6),
    ...[0, 4, 8, 12].flatMap((o) => [
      ldx("W", R3, R6, SockOps.localIp6 + o),
      stx("W", FP, KEY + SenderKey.local + o, R3),
      ldx("W", R3, R6, SockOps.remoteIp6 + o),
      stx("W", FP, KEY + SenderKey.remote + o, R3),
    ]),
    label(L.keyDone),
    ...call("map_lookup_elem", MapName.senderConns, fp(KEY)),
    jeq(R0, 0, out),
    mov(R7, R0),
  ];
}

const programLabels = () => labels("sender", ["connect", "optlen", "write", "out", "optlen6", "reserve", "noSpace", "write6", "written", "doneWriting"]);
type ProgramLabels = ReturnType<typeof programLabels>;

/** Skip packets we don't write into: the SYN unless asked for, anything once the server sent data. */
function gate(P: ProgramLabels): Item[] {
  const L = labels("gate", ["go"]);
  return [
    ldx("DW", R2, R6, SockOps.bytesReceived),
    jne(R2, 0, P.doneWriting),
    ...lookupConnection(P.out),
    ldx("W", R2, R6, SockOps.skbTcpFlags),
    and(R2, TcpFlag.SYN),
    jeq(R2, 0, L.go),
    ldx("B", R2, R7, SenderValue.flags),
    jset(R2, SENDER_FLAG_SYN, L.go),
    ja(P.out),
    label(L.go),
  ];
}

/** Build the sender program. */
export function senderProgram(): ProgramSpec {
  const L = programLabels();
  const instructions: Item[] = [
    mov(R6, R1),
    ldx("W", R2, R6, SockOps.op),
    jeq(R2, Op.TCP_CONNECT_CB, L.connect),
    jeq(R2, Op.HDR_OPT_LEN_CB, L.optlen),
    jeq(R2, Op.WRITE_HDR_OPT_CB, L.write),
    ja(L.out),

    // Our connection? Then ask for the header-option callbacks on its packets.
    label(L.connect),
    ...lookupConnection(L.out),
    ...setCbFlags(CbFlag.WRITE_HDR_OPT),
    ja(L.out),

    // Reserve room: 8 bytes for an IPv4 client, 20 for IPv6.
    label(L.optlen),
    ...gate(L),
    ldx("B", R2, R7, SenderValue.family),
    mov(R1, R6),
    mov(R3, 0),
    jeq(R2, 6, L.optlen6),
    mov(R2, 8),
    ja(L.reserve),
    label(L.optlen6),
    mov(R2, 20),
    label(L.reserve),
    call("reserve_hdr_opt"),
    jslt(R0, 0, L.noSpace),
    ja(L.out),
    label(L.noSpace),
    // A current-MSS estimate is not a packet: don't count it.
    ldx("W", R2, R6, SockOps.args),
    jset(R2, BPF_WRITE_HDR_TCP_CURRENT_MSS, L.out),
    ...count(MapName.senderStats, "sender_skipped_no_space"),
    ja(L.out),

    // Write [kind][len][port][address].
    label(L.write),
    ...gate(L),
    ldx("B", R2, R7, SenderValue.kind),
    stx("B", FP, OPT, R2),
    ldx("H", R2, R7, SenderValue.port),
    stx("H", FP, OPT + 2, R2),
    ...[0, 4, 8, 12].flatMap((o) => [ldx("W", R2, R7, SenderValue.addr + o), stx("W", FP, OPT + 4 + o, R2)]),
    st("W", FP, OPT + 20, 0),
    mov(R1, R6),
    mov(R2, FP),
    add(R2, OPT),
    mov(R4, 0),
    ldx("B", R3, R7, SenderValue.family),
    jeq(R3, 6, L.write6),
    st("B", FP, OPT + 1, 8),
    mov(R3, 8),
    call("store_hdr_opt"),
    ja(L.written),
    label(L.write6),
    st("B", FP, OPT + 1, 20),
    mov(R3, 20),
    call("store_hdr_opt"),
    label(L.written),
    jne(R0, 0, L.out),
    ...count(MapName.senderStats, "sender_written"),
    ldx("W", R2, R6, SockOps.skbTcpFlags),
    and(R2, TcpFlag.SYN),
    jeq(R2, 0, L.out),
    ...count(MapName.senderStats, "sender_syn_written"),
    ja(L.out),

    // The server has spoken: the balancer's job for this connection is done.
    label(L.doneWriting),
    ...setCbFlags(0, CbFlag.WRITE_HDR_OPT),

    label(L.out),
    ...returnOne(),
  ];
  return { name: "toa_sender", type: "SOCK_OPS", license: "GPL", instructions };
}
