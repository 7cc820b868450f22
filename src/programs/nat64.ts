/**
 * The NAT64 look-up: a cgroup/getsockopt program answering getsockopt(fd, IPPROTO_IP, 4096), the
 * call DPVS, Huawei elb-toa and Tencent modules offer, with
 *   struct toa_nat64_peer { struct in6_addr saddr; uint16_t sport; }   (port in network order)
 * for sockets whose TOA carried an IPv6 client. Applications patched for those modules work as is.
 * Every other getsockopt passes through untouched.
 */
import { asm, type ProgramSpec } from "../bpf/index.js";
import { IPPROTO_IP, SockOpt } from "../bpf/uapi.js";
import { MapName, Peer, TOA_SO_GET_LOOKUP } from "./layout.js";
import { count, peerStorage, returnOne } from "./macros.js";

const { add, jgt, jne, label, labels, ldx, mov, R0, R1, R2, R6, R7, R8, R9, stx } = asm;

/** cgroup/getsockopt. */
export function nat64LookupProgram(): ProgramSpec {
  const L = labels("nat64", ["out"]);
  return {
    name: "toa_nat64",
    type: "CGROUP_SOCKOPT",
    expectedAttachType: "CGROUP_GETSOCKOPT",
    license: "GPL",
    instructions: [
      mov(R6, R1),
      ldx("W", R2, R6, SockOpt.level),
      jne(R2, IPPROTO_IP, L.out),
      ldx("W", R2, R6, SockOpt.optname),
      jne(R2, TOA_SO_GET_LOOKUP, L.out),
      ...peerStorage(SockOpt.sk, false, L.out),
      mov(R7, R0),
      ldx("B", R2, R7, Peer.family),
      jne(R2, 6, L.out),
      // if (ctx->optval + 18 > ctx->optval_end) the caller's buffer is too small: leave the error
      ldx("DW", R8, R6, SockOpt.optval),
      ldx("DW", R9, R6, SockOpt.optvalEnd),
      mov(R2, R8),
      add(R2, 18),
      jgt(R2, R9, L.out),
      ...[0, 4, 8, 12].flatMap((o) => [ldx("W", R2, R7, Peer.addr + o), stx("W", R8, o, R2)]),
      ldx("H", R2, R7, Peer.port),
      stx("H", R8, 16, R2),
      // optlen and retval as two 4-byte stores: one 8-byte store over both is refused
      mov(R2, 18),
      stx("W", R6, SockOpt.optlen, R2),
      mov(R2, 0),
      stx("W", R6, SockOpt.retval, R2),
      ...count(MapName.stats, "nat64_lookup_ok"),
      label(L.out),
      ...returnOne(),
    ],
  };
}
