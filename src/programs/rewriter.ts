/**
 * The rewriters: cgroup/getpeername4 and getpeername6 programs that make accept() and getpeername()
 * return the client's address kept by the receiver. inet_getname() runs them for every peer look-up,
 * accept() included.
 *
 *   AF_INET socket,  IPv4 TOA  -> client a.b.c.d
 *   AF_INET6 socket, IPv6 TOA  -> client IPv6
 *   AF_INET6 socket, IPv4 TOA  -> ::ffff:a.b.c.d (dual-stack listeners: Node, Go, Java listen on ::)
 *   AF_INET socket,  IPv6 TOA  -> unchanged (NAT64: counted; read it with getsockopt 4096)
 */
import { asm, type ProgramSpec } from "../bpf/index.js";
import { SockAddr } from "../bpf/uapi.js";
import { MapName, Peer } from "./layout.js";
import { count, returnOne } from "./macros.js";

const { call, ja, jeq, jne, label, labels, ldx, mov, R0, R1, R2, R6, R7, stx } = asm;
type Item = asm.Item;

/** toa_peer *p = bpf_sk_storage_get(&toa_peers, ctx->sk, NULL, 0): r7, or count empty and return. */
function lookupPeer(out: string): Item[] {
  const L = labels("peer", ["found"]);
  return [
    mov(R6, R1),
    ldx("DW", R2, R6, SockAddr.sk), // never NULL in sock_addr programs
    ...call("sk_storage_get", MapName.peers, R2, 0, 0),
    jne(R0, 0, L.found),
    ...count(MapName.stats, "getname_toa_empty"),
    ja(out),
    label(L.found),
    mov(R7, R0),
    ldx("B", R2, R7, Peer.family),
  ];
}

/**
 * user_port = p->port: both are network order; the context field keeps it in its low 16 bits.
 * Port 0 means the option carried none (Alibaba CDN): keep the connection's own.
 */
function rewritePort(): Item[] {
  const L = labels("port", ["keep"]);
  return [ldx("H", R2, R7, Peer.port), jeq(R2, 0, L.keep), stx("W", R6, SockAddr.userPort, R2), label(L.keep)];
}

/** A getpeername program: `body` runs with r7 = the peer and r2 = its family, and goes to `out` when done. */
function getpeernameProgram(family: 4 | 6, body: (out: string) => Item[]): ProgramSpec {
  const L = labels(`getpeername${family}`, ["out"]);
  return {
    name: `toa_getpeer${family}`,
    type: "CGROUP_SOCK_ADDR",
    expectedAttachType: family === 4 ? "CGROUP_INET4_GETPEERNAME" : "CGROUP_INET6_GETPEERNAME",
    license: "GPL",
    instructions: [...lookupPeer(L.out), ...body(L.out), ...rewritePort(), ...count(MapName.stats, "getname_toa_ok"), label(L.out), ...returnOne()],
  };
}

/** cgroup/getpeername4. */
export function getpeername4Program(): ProgramSpec {
  return getpeernameProgram(4, (out) => {
    const L = labels("v4", ["v4", "empty"]);
    return [
      jeq(R2, 4, L.v4),
      jeq(R2, 0, L.empty),
      ...count(MapName.stats, "getname_toa_mismatch"),
      ja(out),
      label(L.empty),
      ...count(MapName.stats, "getname_toa_empty"),
      ja(out),
      label(L.v4),
      ldx("W", R2, R7, Peer.addr),
      stx("W", R6, SockAddr.userIp4, R2),
    ];
  });
}

/** cgroup/getpeername6. */
export function getpeername6Program(): ProgramSpec {
  return getpeernameProgram(6, (out) => {
    const L = labels("v6", ["v6", "mapped", "port"]);
    return [
      jeq(R2, 6, L.v6),
      jeq(R2, 4, L.mapped),
      ...count(MapName.stats, "getname_toa_empty"),
      ja(out),
      label(L.v6),
      // Context stores must be register stores (BPF_ST into ctx is refused).
      ...[0, 4, 8, 12].flatMap((o) => [ldx("W", R2, R7, Peer.addr + o), stx("W", R6, SockAddr.userIp6 + o, R2)]),
      ja(L.port),
      label(L.mapped),
      // ::ffff:a.b.c.d, the IPv4-mapped form a dual-stack socket reports for IPv4 peers
      mov(R2, 0),
      stx("W", R6, SockAddr.userIp6, R2),
      stx("W", R6, SockAddr.userIp6 + 4, R2),
      asm.mov32(R2, 0xffff0000 | 0),
      stx("W", R6, SockAddr.userIp6 + 8, R2),
      ldx("W", R2, R7, Peer.addr),
      stx("W", R6, SockAddr.userIp6 + 12, R2),
      label(L.port),
    ];
  });
}
