/**
 * Instruction sequences shared by the programs, expanded inline (like C macros); each expansion
 * takes fresh labels from asm.labels(). Every program keeps its context in r6.
 */
import { asm } from "../bpf/index.js";
import { BPF_SK_STORAGE_GET_F_CREATE, SockOps } from "../bpf/uapi.js";
import { Counter, type CounterName, MapName } from "./layout.js";

const { add, and, call, exit, FP, frame, jeq, jge, jlt, label, labels, ldMap, ldx, lsh, mov, R0, R1, R2, R6, R7, R8, rsh, st, stx } = asm;
type Item = asm.Item;

/** The stack slot (offset from r10) every TOA program keeps its u32 array key in: the first of its frame. */
export const Stack = frame({ key: 4 });

/** A TOA program's stack frame: {@link Stack}'s key first, then `slots` in order. */
export function toaFrame<const T extends Record<string, asm.SlotSpec>>(slots: T): asm.Frame<{ key: number } & T> {
  if ("key" in slots) throw new asm.AsmError(`toaFrame: "key" is Stack.key's slot`);
  return frame({ key: 4, ...slots });
}

/**
 * `stats[counter]++` on a per-CPU array (no atomics needed: each CPU owns its slot). Clobbers r0-r5.
 */
export function count(map: string, counter: CounterName | { reg: asm.Register }): Item[] {
  const L = labels("count", ["done"]);
  const key: Item[] =
    typeof counter === "string" ? [st("W", FP, Stack.key, Counter[counter])] : [stx("W", FP, Stack.key, counter.reg)];
  return [
    ...key,
    mov(R2, FP), // &key before &map: the order these programs were written in
    add(R2, Stack.key),
    ldMap(R1, map),
    call("map_lookup_elem"),
    jeq(R0, 0, L.done),
    ldx("DW", R1, R0, 0),
    add(R1, 1),
    stx("DW", R0, 0, R1),
    label(L.done),
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
    ...call("sk_storage_get", MapName.peers, R2, 0, create ? BPF_SK_STORAGE_GET_F_CREATE : 0),
    jeq(R0, 0, fail),
  ];
}

/** `r7 = &scratch[0]` or goto `fail`. Clobbers r0-r5. */
export function loadScratch(map: string, fail: string): Item[] {
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
export function clampToDataOffset(fail: string): Item[] {
  const L = labels("clamp", ["lenOk"]);
  return [
    jlt(R8, 20, fail),
    ldx("B", R2, R7, 12),
    rsh(R2, 4),
    lsh(R2, 2), // doff * 4, at most 60
    jge(R2, R8, L.lenOk),
    mov(R8, R2),
    label(L.lenOk),
    jlt(R8, 20, fail),
  ];
}

/** bpf_sock_ops_cb_flags_set(ctx, ctx->bpf_sock_ops_cb_flags | set & ~clear). Clobbers r0-r5. */
export function setCbFlags(set: number, clear = 0): Item[] {
  const out: Item[] = [ldx("W", R2, R6, SockOps.cbFlags)];
  if (set) out.push(asm.or(R2, set));
  if (clear) out.push(and(R2, ~clear));
  out.push(...call("sock_ops_cb_flags_set", R6, R2));
  return out;
}

/** `return 1`. */
export function returnOne(): Item[] {
  return [mov(R0, 1), exit()];
}
