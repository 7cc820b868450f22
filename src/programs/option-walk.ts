/**
 * The receiver's search for an address option in a TCP header, in two memories:
 *
 *   packet  the segment being processed (sock_ops skb_data .. skb_data_end: exactly its TCP header):
 *           the handshake ACK and data segments, read in place — the hot path, no copy;
 *   map     a TCP header copied into the per-CPU scratch value (the saved SYN, from
 *           bpf_getsockopt(TCP_BPF_SYN)), with its length in r8.
 *
 * Either way the option found is copied, normalised, to the stack at `optSlot`:
 *
 *   0 kind | 1 len (8 or 20) | 2 be16 port | 4 addr[16]  (IPv4: addr[4..16) zero)
 *
 * Alibaba Cloud CDN's kind 28 ([28][7][ver][a.b.c.d], [28][19][ver][16 bytes], no port) is
 * normalised to lengths 8/20 with port 0, so whoever stores it need not know the format.
 *
 * bpf_load_hdr_opt() can't do this search: for kinds 253/254 it matches a 2- or 4-byte magic after
 * the length, and TOA puts the port there (reference/bpf-abi.md §5).
 *
 * Unrolled for the 40 bytes of option space (40 one-byte NOPs at most): hand-written loops need
 * bpf_loop (5.17) on the oldest kernels we support. Each step bounds the offset with a constant
 * first, which is what lets the 5.10/6.1 verifiers bound it (they don't learn from register-register
 * compares), and a step keeps nothing on the stack but the malformed flag, so paths that reach a
 * step with the same offset range are the same state and the verifier prunes them.
 */
import { asm } from "../bpf/index.js";
import { SockOps } from "../bpf/uapi.js";
import { ALIBABA_CDN_KIND } from "./layout.js";

const { add, and, FP, ja, jeq, jge, jgt, jlt, jne, label, labels, labelSeries, ldx, mov, R1, R2, R3, R4, R5, R6, R7, R8, R9, st, stx } = asm;
type Item = asm.Item;

/** Where the header is: see the file comment. */
export type HeaderMemory = "packet" | "map";

/**
 * r2 = the option at offset r9. In the packet the start is read from the context each time (r6):
 * a packet pointer kept in a register across steps would carry, per path, the range the last
 * bounds check gave it, and paths with different ranges are different states to the verifier.
 */
function optionPointer(memory: HeaderMemory): Item[] {
  return memory === "packet" ? [ldx("DW", R2, R6, SockOps.skbData), add(R2, R9)] : [mov(R2, R7), add(R2, R9)];
}

/** The most option bytes a TCP header carries, hence the most steps a walk takes. */
const OPTION_SPACE = 40;

export interface WalkOptions {
  memory: HeaderMemory;
  /** Option kinds accepted (8-byte IPv4 and 20-byte IPv6 forms; 28 adds the CDN forms). */
  kinds: readonly number[];
  /** Stack offset of the 24-byte normalised option. */
  optSlot: number;
  /** Stack offset of a u32 set to 1 when a malformed option is seen (the caller zeroes it first). */
  malformedSlot: number;
  /** Jumped to with the option at optSlot. */
  found: string;
  /** Jumped to when the options end without one. */
  notFound: string;
}

/**
 * The walk. In: r6 = the sock_ops context; packet: r8 = the packet's end (skb_data_end), the start
 * is skb_data; map: r7 = the value holding the header, r8 = its length (a scalar in [20, 60]).
 * Clobbers r1-r5, r9.
 */
export function walkOptions(o: WalkOptions): Item[] {
  const { memory, kinds, malformedSlot, notFound } = o;
  const L = labels(`walk_${memory}`, ["step", "option", "kind", "cdn", "bad", "v4", "v6", "cdn4", "cdn6"]);
  const packet = memory === "packet";
  const cdn = kinds.includes(ALIBABA_CDN_KIND);
  const portKinds = kinds.filter((k) => k !== ALIBABA_CDN_KIND);
  const step = labelSeries(L.step);
  const option = labelSeries(L.option);
  const kind = labelSeries(L.kind);
  const cdnKind = labelSeries(L.cdn);
  const bad = L.bad;
  /** Go to `fail` unless `n` bytes from r2 are inside the header (r5 clobbered). */
  const inside = (n: number | asm.Register, fail: string): Item[] =>
    packet
      ? [mov(R5, R2), add(R5, n), jgt(R5, R8, fail)] // pointer against the packet's end
      : // offset against the header length, through copies: newer verifiers narrow both sides of a
        // register compare (and registers linked to them), which would make r8 and r9 differ from
        // path to path and defeat pruning
        [mov(R5, n), add(R5, R9), mov(R1, R8), and(R1, 63), jgt(R5, R1, fail)];
  /**
   * r9 += the option's length, then forget exactly where: past the header ends the walk, and the
   * mask (a no-op below 60) leaves every path that gets here the same offset range, so the
   * verifier checks the next step once instead of once per way of reaching it.
   */
  const advance = (i: number): Item[] => [add(R9, R4), jge(R9, 60, notFound), and(R9, 63), ja(step(i + 1))];
  const out: Item[] = [mov(R9, 20)];
  for (let i = 0; i < OPTION_SPACE; i++) {
    out.push(
      label(step(i)),
      jge(R9, 60, notFound), // a header has at most 60 bytes; also bounds r9 for the verifier
      ...optionPointer(memory),
      ...inside(1, notFound), // no byte left: the options end here
      ldx("B", R3, R2, 0), // kind
      jeq(R3, 0, notFound), // EOL
      jne(R3, 1, option(i)),
      add(R9, 1), // NOP
      ja(step(i + 1)),
      label(option(i)),
      ...inside(2, bad), // a kind without its length byte
      ldx("B", R4, R2, 1), // length
      jlt(R4, 2, bad),
      ...inside(R4, bad), // runs past the header
      ...portKinds.map((k) => jeq(R3, k, kind(i))),
      ...(cdn ? [jeq(R3, ALIBABA_CDN_KIND, cdnKind(i))] : []),
      ...advance(i),
      label(kind(i)),
      jeq(R4, 8, L.v4),
      jeq(R4, 20, L.v6),
      st("W", FP, malformedSlot, 1), // a listed kind with another length: skip it, keep looking
      ...advance(i),
    );
    if (cdn) {
      out.push(
        label(cdnKind(i)),
        jeq(R4, 7, L.cdn4),
        jeq(R4, 19, L.cdn6),
        // Kind 28 is also TCP User Timeout (RFC 5482, length 4): not ours, not malformed.
        ...advance(i),
      );
    }
  }
  out.push(label(step(OPTION_SPACE)), ja(notFound), label(bad), st("W", FP, malformedSlot, 1), ja(notFound));
  out.push(...copies(o, L, cdn));
  return out;
}

/**
 * The option at r2 into the stack slot. In packet memory each copy proves its own length against
 * the end first (the walk proved it with a variable length); in the map value the offset is below
 * 60 and the value 96 bytes long, so 20 bytes past it are always readable.
 */
function copies(o: WalkOptions, L: asm.Labels<"v4" | "v6" | "cdn4" | "cdn6">, cdn: boolean): Item[] {
  const { memory, optSlot: at, found, notFound } = o;
  const proven = (n: number): Item[] => (memory === "packet" ? [mov(R5, R2), add(R5, n), jgt(R5, R8, notFound)] : []);
  /** Copy `bytes` from r2 + `from` to the slot + `to`, in words then a half-word and a byte. */
  const copy = (from: number, to: number, bytes: number): Item[] => {
    const out: Item[] = [];
    let k = 0;
    for (; k + 4 <= bytes; k += 4) out.push(ldx("W", R3, R2, from + k), stx("W", FP, at + to + k, R3));
    for (; k < bytes; k++) out.push(ldx("B", R3, R2, from + k), stx("B", FP, at + to + k, R3));
    return out;
  };
  const zeroTail = [8, 12, 16].map((k) => st("W", FP, at + k, 0)); // addr[4..16) of an IPv4 option
  const out: Item[] = [
    label(L.v4),
    ...proven(8),
    ...copy(0, 0, 8),
    ...zeroTail,
    ja(found),
    label(L.v6),
    ...proven(20),
    ...copy(0, 0, 20),
    ja(found),
  ];
  if (cdn) {
    out.push(
      // [28][7][ver][a.b.c.d] -> [28][8][0 0][a.b.c.d]
      label(L.cdn4),
      ...proven(7),
      ...copy(3, 4, 4),
      ...zeroTail,
      st("B", FP, at, ALIBABA_CDN_KIND),
      st("B", FP, at + 1, 8),
      st("H", FP, at + 2, 0),
      ja(found),
      // [28][19][ver][16 bytes] -> [28][20][0 0][16 bytes]
      label(L.cdn6),
      ...proven(19),
      ...copy(3, 4, 16),
      st("B", FP, at, ALIBABA_CDN_KIND),
      st("B", FP, at + 1, 20),
      st("H", FP, at + 2, 0),
      ja(found),
    );
  }
  return out;
}
