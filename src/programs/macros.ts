/**
 * Instruction sequences shared by the programs, expanded inline (like C macros) with a label prefix
 * so each expansion has its own labels. Every program keeps its context in r6.
 */
import { asm } from "../bpf/index.js";
import { BPF_SK_STORAGE_GET_F_CREATE, SockOps } from "../bpf/uapi.js";
import { Counter, type CounterName, MapName } from "./layout.js";

const { add, and, call, exit, FP, jeq, jge, jlt, label, ldMap, ldx, lsh, mov, R0, R1, R2, R3, R4, R6, R7, R8, rsh, st, stx } = asm;
type Item = asm.Item;

/** The stack slot (offset from r10) every TOA program keeps its u32 array key in. */
export const Stack = { key: -4 } as const;

/**
 * `stats[counter]++` on a per-CPU array (no atomics needed: each CPU owns its slot). Clobbers r0-r5.
 */
export function count(prefix: string, map: string, counter: CounterName | { reg: asm.Register }): Item[] {
  const key: Item[] =
    typeof counter === "string" ? [st("W", FP, Stack.key, Counter[counter])] : [stx("W", FP, Stack.key, counter.reg)];
  return [
    ...key,
    mov(R2, FP),
    add(R2, Stack.key),
    ldMap(R1, map),
    call("map_lookup_elem"),
    jeq(R0, 0, `${prefix}_cnt_done`),
    ldx("DW", R1, R0, 0),
    add(R1, 1),
    stx("DW", R0, 0, R1),
    label(`${prefix}_cnt_done`),
  ];
}

/**
 * `r0 = bpf_sk_storage_get(&toa_peers, ctx->sk, NULL, flags)`, going to `fail` when the context has
 * no full socket or there is no storage. `skOffset` is where the context keeps `sk` (read as 8 bytes,
 * as the verifier demands); `create` allocates the storage. Clobbers r1-r5.
 */
export function peerStorage(skOffset: number, create: boolean, fail: string): Item[] {
  return [
    ldx("DW", R2, R6, skOffset),
    jeq(R2, 0, fail),
    ldMap(R1, MapName.peers),
    mov(R3, 0),
    mov(R4, create ? BPF_SK_STORAGE_GET_F_CREATE : 0),
    call("sk_storage_get"),
    jeq(R0, 0, fail),
  ];
}

/** `r7 = &scratch[0]` or goto `fail`. Clobbers r0-r5. */
export function loadScratch(prefix: string, map: string, fail: string): Item[] {
  return [
    st("W", FP, Stack.key, 0),
    mov(R2, FP),
    add(R2, Stack.key),
    ldMap(R1, map),
    call("map_lookup_elem"),
    jeq(R0, 0, fail),
    mov(R7, R0),
  ];
}

/** r8 = min(r8, doff * 4) where doff is the high nibble of header byte 12; fail when r8 < 20. */
export function clampToDataOffset(prefix: string, fail: string): Item[] {
  return [
    jlt(R8, 20, fail),
    ldx("B", R2, R7, 12),
    rsh(R2, 4),
    lsh(R2, 2), // doff * 4, at most 60
    jge(R2, R8, `${prefix}_len_ok`),
    mov(R8, R2),
    label(`${prefix}_len_ok`),
    jlt(R8, 20, fail),
  ];
}

/** bpf_sock_ops_cb_flags_set(ctx, ctx->bpf_sock_ops_cb_flags | set & ~clear). Clobbers r0-r5. */
export function setCbFlags(set: number, clear = 0): Item[] {
  const out: Item[] = [ldx("W", R2, R6, SockOps.cbFlags)];
  if (set) out.push(asm.or(R2, set));
  if (clear) out.push(and(R2, ~clear));
  out.push(mov(R1, R6), call("sock_ops_cb_flags_set"));
  return out;
}

/** `return 1`. */
export function returnOne(): Item[] {
  return [mov(R0, 1), exit()];
}
