/**
 * The balancer's in-kernel data path: an sk_skb stream-verdict program that splices each relayed
 * pair of TCP sockets (client ⇄ backend) so their bytes never reach user space.
 *
 *   splice_socks  SOCKMAP  slot → socket      every spliced socket; redirect targets; no program
 *   splice_verd   SOCKMAP  slot → socket      the same sockets, added last; the verdict program is
 *                                             attached here, so a socket is spliced only once its
 *                                             peer is already a redirect target (no drop window)
 *   splice_peers  HASH     cookie → { peer slot, bytes }
 *
 *   int splice_verdict(struct __sk_buff *skb) {
 *     if (skb->len == 0) return SK_DROP;      // a bare FIN: TCP has noted it, read() returns 0
 *     __u64 cookie = bpf_get_socket_cookie(skb);
 *     struct splice_peer *p = bpf_map_lookup_elem(&splice_peers, &cookie);
 *     if (!p) return SK_PASS;                 // not ours (yet): user space reads it
 *     __sync_fetch_and_add(&p->bytes, skb->len);
 *     return bpf_sk_redirect_map(skb, &splice_socks, p->slot, 0);   // 0 = egress of the peer
 *   }
 *
 * The byte counter is what user space uses for the idle timeout, the metrics and to know when the
 * bytes redirected before a FIN have all been written into the peer (see src/lb/splice.ts).
 */
import { asm, type MapSpec, type ProgramSpec } from "../bpf/index.js";

const { add, atomicAdd, call, exit, FP, jeq, label, ldMap, ldx, mov, R0, R1, R2, R3, R4, R6, R7, stx } = asm;

export const SpliceMapName = { socks: "splice_socks", verdict: "splice_verd", peers: "splice_peers" } as const;

/**
 * struct splice_peer (value of splice_peers, 16 bytes)
 *   0  u32 slot    the peer's slot in splice_socks
 *   4  u32 pad
 *   8  u64 bytes   bytes redirected from this socket to its peer (skb->len summed)
 */
export const SplicePeer = { size: 16, slot: 0, bytes: 8 } as const;

/** `struct __sk_buff` offsets used here. */
const SkBuff = { len: 0 } as const;
const SK_DROP = 0;
const SK_PASS = 1;
const COOKIE = -8;

/** The three maps, sized for `maxPairs` relayed connections (two sockets each). */
export function spliceMapSpecs(maxPairs: number): Record<keyof typeof SpliceMapName, MapSpec> {
  const sockets = maxPairs * 2;
  return {
    // Value size 8: the fd goes in as a u64, and a lookup returns the socket's cookie.
    socks: { name: SpliceMapName.socks, type: "SOCKMAP", keySize: 4, valueSize: 8, maxEntries: sockets },
    verdict: { name: SpliceMapName.verdict, type: "SOCKMAP", keySize: 4, valueSize: 8, maxEntries: sockets },
    peers: { name: SpliceMapName.peers, type: "HASH", keySize: 8, valueSize: SplicePeer.size, maxEntries: sockets },
  };
}

/** Build the verdict program (attach to splice_verd with SK_SKB_STREAM_VERDICT). */
export function spliceVerdictProgram(): ProgramSpec {
  const instructions: asm.Item[] = [
    mov(R6, R1),
    // if (skb->len == 0) return SK_DROP: a bare FIN carries no byte, and TCP has already noted it
    // (read() returns 0). Redirected, it reaches the peer's send path as a 0-byte write, which
    // fails that socket with EPIPE; passed, read() may fail with EFAULT instead of returning 0.
    ldx("W", R2, R6, SkBuff.len),
    jeq(R2, 0, "drop"),
    // cookie = bpf_get_socket_cookie(skb)
    call("get_socket_cookie"),
    stx("DW", FP, COOKIE, R0),
    // p = bpf_map_lookup_elem(&splice_peers, &cookie); if (!p) return SK_PASS
    ldMap(R1, SpliceMapName.peers),
    mov(R2, FP),
    add(R2, COOKIE),
    call("map_lookup_elem"),
    jeq(R0, 0, "pass"),
    mov(R7, R0),
    // __sync_fetch_and_add(&p->bytes, skb->len)
    ldx("W", R2, R6, SkBuff.len),
    atomicAdd("DW", R7, SplicePeer.bytes, R2),
    // return bpf_sk_redirect_map(skb, &splice_socks, p->slot, 0)
    mov(R1, R6),
    ldMap(R2, SpliceMapName.socks),
    ldx("W", R3, R7, SplicePeer.slot),
    mov(R4, 0),
    call("sk_redirect_map"),
    exit(),
    label("pass"),
    mov(R0, SK_PASS),
    exit(),
    label("drop"),
    mov(R0, SK_DROP),
    exit(),
  ];
  return { name: "toa_splice", type: "SK_SKB", license: "GPL", instructions };
}
