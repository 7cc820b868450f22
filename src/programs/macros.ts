/**
 * Instruction sequences shared by the programs, expanded inline (like C macros) with a label prefix
 * so each expansion has its own labels. Register conventions of the TOA programs:
 *   r6 = context, r7 = per-CPU scratch (TCP header copy), r8 = header length, r9 = option offset.
 */
import { asm } from "../bpf/index.js";
import { ALIBABA_CDN_KIND, Counter, type CounterName, MapName, SockOps } from "./layout.js";

const { add, and, call, exit, FP, ja, jeq, jge, jgt, jlt, jne, label, ldMap, ldx, lsh, mov, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, rsh, st, stx } = asm;
type Item = asm.Item;

/** Stack slots (offsets from r10) used by the TOA programs. */
export const Stack = {
  key: -4, // u32 key for array look-ups
  foundIn: -8, // u32 where the option was found
  kind: -12, // u32 option kind
  len: -16, // u32 option length
  trustKey: -40, // 20 bytes: LPM key (prefix length + address)
  one: -44, // int 1, for setsockopt
  malformed: -48, // u8 flag: a malformed option was seen in the current walk
  option: -72, // 24 bytes: an option being written by the sender
} as const;

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
    mov(R4, create ? 1 /* BPF_SK_STORAGE_GET_F_CREATE */ : 0),
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

/**
 * Copy the TCP header of the current packet ([skb_data, skb_data_end), sock_ops) into scratch, one
 * bounds-checked word at a time (a TCP header is a whole number of words, at most 15), and set
 * r8 = min(bytes copied, data offset * 4). Goes to `fail` when not even the 20-byte fixed header is
 * there. Clobbers r2-r5.
 */
export function copyTcpHeader(prefix: string, fail: string): Item[] {
  const out: Item[] = [ldx("DW", R2, R6, SockOps.skbData), ldx("DW", R3, R6, SockOps.skbDataEnd), mov(R8, 0)];
  for (let i = 0; i < 15; i++) {
    out.push(
      mov(R4, R2),
      add(R4, 4 * (i + 1)),
      jgt(R4, R3, `${prefix}_copied`), // if (data + 4(i+1) > data_end) break
      ldx("W", R5, R2, 4 * i),
      stx("W", R7, 4 * i, R5),
      mov(R8, 4 * (i + 1)),
    );
  }
  out.push(label(`${prefix}_copied`), ...clampToDataOffset(prefix, fail));
  return out;
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

/**
 * Walk the options of the TCP header in scratch (r7, length r8) looking for an address option of
 * one of `kinds` with length 8 (IPv4) or 20 (IPv6) — for Alibaba CDN's kind 28, length 7 or 19 (no
 * port). On a match jumps to `found` with r9 = offset,
 * r3 = kind, r4 = length; otherwise ends at `notFound`. A malformed option (length 0 or 1, running
 * past the header, or a listed kind with another length) sets the malformed flag on the stack.
 *
 * Unrolled for the 40 bytes of option space (40 one-byte NOPs at most): a rolled loop with these
 * branches exceeds the verifier's budget (reference/bpf-abi.md §6). Each step checks the offset
 * against a constant first, which is what lets pre-6.8 verifiers bound it (they don't refine on
 * register-register compares).
 */
export function walkOptions(prefix: string, kinds: readonly number[], found: string, notFound: string): Item[] {
  const cdn = kinds.includes(ALIBABA_CDN_KIND);
  const portKinds = kinds.filter((k) => k !== ALIBABA_CDN_KIND);
  const out: Item[] = [mov(R9, 20), st("B", FP, Stack.malformed, 0)];
  const step = (i: number) => `${prefix}_s${i}`;
  for (let i = 0; i < 40; i++) {
    out.push(
      label(step(i)),
      jge(R9, 60, notFound),
      jge(R9, R8, notFound), // end of options
      mov(R2, R7),
      add(R2, R9),
      ldx("B", R3, R2, 0), // kind
      jeq(R3, 0, notFound), // EOL
      jne(R3, 1, `${prefix}_o${i}`),
      add(R9, 1), // NOP
      ja(step(i + 1)),
      label(`${prefix}_o${i}`),
      ldx("B", R4, R2, 1), // length
      jlt(R4, 2, `${prefix}_bad`),
      mov(R5, R9),
      add(R5, R4),
      jgt(R5, R8, `${prefix}_bad`), // runs past the header
      ...portKinds.map((k) => jeq(R3, k, `${prefix}_k${i}`)),
      ...(cdn ? [jeq(R3, ALIBABA_CDN_KIND, `${prefix}_c${i}`)] : []),
      mov(R9, R5),
      ja(step(i + 1)),
      label(`${prefix}_k${i}`),
      jeq(R4, 8, found),
      jeq(R4, 20, found),
      st("B", FP, Stack.malformed, 1), // listed kind, wrong length: skip it, keep looking
      mov(R9, R5),
      ja(step(i + 1)),
    );
    if (cdn) {
      out.push(
        label(`${prefix}_c${i}`),
        jeq(R4, 7, found),
        jeq(R4, 19, found),
        // Kind 28 is also TCP User Timeout (RFC 5482, length 4): not ours, not malformed.
        mov(R9, R5),
        ja(step(i + 1)),
      );
    }
  }
  out.push(label(step(40)), ja(notFound), label(`${prefix}_bad`), st("B", FP, Stack.malformed, 1), ja(notFound));
  return out;
}

/** If the walk saw a malformed option, count it. Clobbers r0-r5. */
export function countMalformed(prefix: string, map: string): Item[] {
  return [ldx("B", R2, FP, Stack.malformed), jeq(R2, 0, `${prefix}_mf_done`), ...count(`${prefix}_mf`, map, "malformed"), label(`${prefix}_mf_done`)];
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
