/**
 * Programs the receiver's run time is measured against (bench:agent's "program run time" rows):
 *
 *   empty    `return 1` on every sock_ops run: the floor the run-time statistics themselves add
 *            (two clock reads per run), which every program's figure includes;
 *   storage  only what a receiver built on socket storage can't avoid: at PASSIVE_ESTABLISHED,
 *            bpf_sk_storage_get(F_CREATE) on a toa_peers map and one address stored into it, and a
 *            getpeername4 program that only looks the storage up and writes that address;
 *   lookup   the empty sock_ops program and the same getpeername4 program on an empty map: what a
 *            connection without a TOA can't avoid (a storage look-up that finds nothing);
 *   cookie   the other way to keep a value per socket: a preallocated hash keyed by the socket
 *            cookie, written at PASSIVE_ESTABLISHED, deleted when the socket reaches TCP_CLOSE (the
 *            state callback is switched on for that socket only), and a getpeername4 program that
 *            finds it by cookie. It answers "would a hash be cheaper than sk_storage?".
 */
import { asm, BpfMap, Program } from "../../src/bpf/index.js";
import { CbFlag, Op, SockAddr, SockOps } from "../../src/bpf/uapi.js";
import { mapSpecs, Peer } from "../../src/programs/layout.js";
import { peerStorage } from "../../src/programs/macros.js";

const { add, call, exit, FP, jeq, jne, label, ldMap, ldx, mov, or, R0, R1, R2, R3, R4, R6, st, stx } = asm;

export type Baseline = "empty" | "storage" | "lookup" | "cookie";

/** Loaded programs: the sock_ops one, the getpeername4 one (all but the empty baseline), and what to close. */
export interface BaselinePrograms {
  sockops: Program;
  getpeername4?: Program;
  close(): void;
}

const BPF_TCP_CLOSE = 7;
/** 203.0.113.7 as the u32 the context holds (network order): what the storage baseline stores. */
const STORED_ADDR = 0x077100cb;
const COOKIE = -8; // u64 key slot
const VALUE = -8 - Peer.size; // toa_peer-sized value slot

function returnOne(): asm.Item[] {
  return [mov(R0, 1), exit()];
}

/** r0 = bpf_get_socket_cookie(ctx), stored at COOKIE. In: r6 = ctx. */
function cookieToStack(): asm.Item[] {
  return [mov(R1, R6), call("get_socket_cookie"), stx("DW", FP, COOKIE, R0)];
}

function storageProgram(): asm.Item[] {
  return [
    mov(R6, R1),
    ldx("W", R2, R6, SockOps.op),
    jeq(R2, Op.PASSIVE_ESTABLISHED_CB, "passive"),
    ...returnOne(),
    label("passive"),
    ...peerStorage(SockOps.sk, true, "out"), // the receiver's own storage call
    st("W", R0, Peer.addr, STORED_ADDR),
    label("out"),
    ...returnOne(),
  ];
}

/** getpeername4: p = bpf_sk_storage_get(peers, ctx->sk, NULL, 0); if p, user_ip4 = p->addr. */
function lookupGetpeername(): asm.Item[] {
  return [
    mov(R6, R1),
    ...peerStorage(SockAddr.sk, false, "out"),
    ldx("W", R2, R0, Peer.addr),
    stx("W", R6, SockAddr.userIp4, R2),
    label("out"),
    ...returnOne(),
  ];
}

function cookieSockops(map: string): asm.Item[] {
  return [
    mov(R6, R1),
    ldx("W", R2, R6, SockOps.op),
    jeq(R2, Op.PASSIVE_ESTABLISHED_CB, "passive"),
    jeq(R2, Op.STATE_CB, "state"),
    ...returnOne(),
    label("passive"),
    ...cookieToStack(),
    ...Array.from({ length: Peer.size / 8 }, (_, i) => st("DW", FP, VALUE + i * 8, i === 0 ? 4 : 0)),
    ldMap(R1, map),
    mov(R2, FP),
    add(R2, COOKIE),
    mov(R3, FP),
    add(R3, VALUE),
    mov(R4, 0), // BPF_ANY
    call("map_update_elem"),
    // The close is the only state this socket's entry needs: switch the callback on for it alone.
    ldx("W", R2, R6, SockOps.cbFlags),
    or(R2, CbFlag.STATE),
    mov(R1, R6),
    call("sock_ops_cb_flags_set"),
    ...returnOne(),
    label("state"),
    ldx("W", R2, R6, SockOps.args + 4), // args[1]: the new state
    jne(R2, BPF_TCP_CLOSE, "out"),
    ...cookieToStack(),
    ldMap(R1, map),
    mov(R2, FP),
    add(R2, COOKIE),
    call("map_delete_elem"),
    label("out"),
    ...returnOne(),
  ];
}

function cookieGetpeername(map: string): asm.Item[] {
  return [
    mov(R6, R1),
    ...cookieToStack(),
    ldMap(R1, map),
    mov(R2, FP),
    add(R2, COOKIE),
    call("map_lookup_elem"),
    jeq(R0, 0, "out"),
    ldx("W", R2, R0, Peer.addr),
    stx("W", R6, SockAddr.userIp4, R2),
    label("out"),
    ...returnOne(),
  ];
}

/** Load `which` with the maps it needs (closed by close()). */
export function loadBaseline(which: Baseline): BaselinePrograms {
  const name = `bench_${which}`;
  if (which === "empty") {
    const sockops = Program.load({ name, type: "SOCK_OPS", instructions: returnOne() });
    return { sockops, close: () => sockops.close() };
  }
  if (which === "storage" || which === "lookup") {
    const peers = BpfMap.create(mapSpecs.peers);
    const maps = { maps: { [mapSpecs.peers.name]: peers } };
    const sockops = Program.load({ name, type: "SOCK_OPS", instructions: which === "storage" ? storageProgram() : returnOne() }, maps);
    const getpeername4 = Program.load(
      { name: which === "storage" ? "bench_st_gp4" : "bench_lk_gp4", type: "CGROUP_SOCK_ADDR", expectedAttachType: "CGROUP_INET4_GETPEERNAME", instructions: lookupGetpeername() },
      maps,
    );
    return { sockops, getpeername4, close: () => (sockops.close(), getpeername4.close(), peers.close()) };
  }
  const map = "bench_cookies";
  const cookies = BpfMap.create({ name: map, type: "HASH", keySize: 8, valueSize: Peer.size, maxEntries: 65536 });
  const sockops = Program.load({ name, type: "SOCK_OPS", instructions: cookieSockops(map) }, { maps: { [map]: cookies } });
  const getpeername4 = Program.load(
    { name: "bench_ck_gp4", type: "CGROUP_SOCK_ADDR", expectedAttachType: "CGROUP_INET4_GETPEERNAME", instructions: cookieGetpeername(map) },
    { maps: { [map]: cookies } },
  );
  return { sockops, getpeername4, close: () => (sockops.close(), getpeername4.close(), cookies.close()) };
}
