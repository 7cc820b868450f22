/**
 * The balancer's packet data path: a tc (SCHED_CLS, direct action) program on the balancer's
 * devices that does full NAT per packet, as LVS FULLNAT and DPVS do, and writes the TOA into the
 * ACK that completes the handshake. No socket exists on the balancer for these connections: the
 * kernel rewrites and forwards packets, so a connection costs two map entries and no user space.
 *
 *   client ──SYN──▶ VIP:vport      nat_flows[client→VIP] missing: a SYN to a service in
 *                                  nat_services picks a backend (nat_slots), a free local port
 *                                  (round the range, NOEXIST insert of the reply direction),
 *                                  stores both directions and forwards:         new-connection.ts
 *   local:lport ──SYN──▶ backend   (source = the balancer's local address, like any full NAT)
 *   backend ──SYN/ACK──▶ local     nat_flows[backend→local]: rewritten to VIP → client  forward.ts
 *   client ──ACK──▶ VIP            TOA_PENDING: the option [kind][len][port][addr] is inserted
 *                                  after the TCP options (the packet grows at the tail, a payload
 *                                  moves up), lengths and checksums fixed, then the flag is cleared
 *                                                                               insert-bytes.ts
 *                                  PROXY v2 flows instead: the header goes in front of the client's
 *                                  bytes at ISN + 1 until the backend acknowledges it, later client
 *                                  sequence numbers move up and the backend's acknowledgments down
 *                                  by its length                                seq-shift.ts
 *
 * Packets the program doesn't own go on untouched with TC_ACT_UNSPEC (tcx's TCX_NEXT): the next tc
 * program or filter on the device runs (another balancer instance, Cilium, a firewall), then the
 * stack; TC_ACT_OK would end the chain there. A SYN to a service with no healthy backend or no free
 * port reaches the stack, which refuses it (nothing listens), so a client is never left waiting. IP options, fragments and IPv6 extension headers also pass (the
 * listener is refused then, never mangled): parse.ts.
 *
 * Checksums: addresses are in the pseudo-header (BPF_F_PSEUDO_HDR), ports and the inserted option
 * are not. With CHECKSUM_PARTIAL (local senders, veth) the kernel only keeps the pseudo-header sum,
 * and bpf_l4_csum_replace applies just the pseudo-header part; with a full checksum it applies both.
 * The control plane (src/lb/packet/) fills the tables and removes finished connections.
 *
 * Registers, for the whole program: r6 = skb; r7 = the flow's entry (r7 = &nat_backend or a sum
 * while a connection opens); r8, r9 = scratch that survives helper calls. Stack: frame.ts.
 */
import { asm, type ProgramSpec } from "../../bpf/index.js";
import { ETH_P_IP_BE, ETH_P_IPV6_BE, Skb, TcAction, TcpFlag as TCP } from "../../bpf/uapi.js";
import { FlowFlag, FlowValue, NatCounter, NatMapName } from "../nat-layout.js";
import { type Ctx, type Family, V4, V6 } from "./family.js";
import { counterAdd, reverseKey, S } from "./frame.js";
import { forward } from "./forward.js";
import { newConnection } from "./new-connection.js";
import { parse } from "./parse.js";

const { and, call, exit, fp, FP, ja, jeq, jne, jset, label, labels, ldx, mov, R0, R1, R2, R6, R7 } = asm;
type Item = asm.Item;

/**
 * The body for one address family (from `start`): known flow → forward; a SYN on a finished
 * connection's 4-tuple → start over; SYN → new connection; else pass.
 */
function family(f: Family, start: string, program: { pass: string; exit: string }): Item[] {
  const L = labels(`family${f.name}`, ["flow", "open", "reuse", "miss"]);
  const c: Ctx = { f, pass: program.pass, exit: program.exit, flow: L.flow, open: L.open };
  return [
    label(start),
    ...parse(c),
    ...call("map_lookup_elem", NatMapName.flows, fp(S.key)),
    jeq(R0, 0, L.miss),
    mov(R7, R0),
    // A new SYN on a finished connection's 4-tuple (the client reused its port): start over. Finished
    // means a FIN or RST either way (a backend's RST marks only its own direction) or the other
    // direction gone; a copy of the SYN of a connection still opening follows it.
    ldx("W", R1, FP, S.tcpFlags),
    and(R1, TCP.SYN | TCP.ACK),
    jne(R1, TCP.SYN, c.flow),
    ...reverseKey(f),
    ldx("B", R1, R7, FlowValue.flags),
    jset(R1, FlowFlag.FIN | FlowFlag.RST, L.reuse),
    ...call("map_lookup_elem", NatMapName.flows, fp(S.rkey)),
    jeq(R0, 0, L.reuse), // its other direction gone: finished too (the delete below finds nothing)
    ldx("B", R1, R0, FlowValue.flags),
    jset(R1, FlowFlag.FIN | FlowFlag.RST, L.reuse),
    ja(c.flow),
    label(L.reuse),
    ...counterAdd(NatCounter.flows_replaced),
    ...call("map_delete_elem", NatMapName.flows, fp(S.rkey)),
    ja(c.open),
    label(L.miss),
    // Only a SYN (without ACK) opens a connection.
    ldx("W", R1, FP, S.tcpFlags),
    and(R1, TCP.SYN | TCP.ACK),
    jne(R1, TCP.SYN, c.pass),
    ...newConnection(c),
    ...forward(c),
  ];
}

/** Build the tc program (attach to the ingress of every device clients and backends come in by). */
export function natProgram(): ProgramSpec {
  const L = labels("nat", ["v4", "v6", "pass", "exit"]);
  const instructions: Item[] = [
    mov(R6, R1),
    ldx("W", R2, R6, Skb.protocol),
    jeq(R2, ETH_P_IP_BE, L.v4),
    jeq(R2, ETH_P_IPV6_BE, L.v6),
    ja(L.pass),
    ...family(V4, L.v4, L),
    ...family(V6, L.v6, L),
    label(L.pass),
    mov(R0, TcAction.NEXT),
    label(L.exit),
    exit(),
  ];
  return { name: "toa_nat", type: "SCHED_CLS", license: "GPL", instructions };
}
