/**
 * Layouts shared by the eBPF programs and the TypeScript that reads their maps: declared once here
 * so the two sides can't disagree.
 *
 * struct toa_peer (sk_storage value, 40 bytes; one per socket that carried a TOA)
 *   0  u8  family      4 = IPv4 TOA, 6 = IPv6 TOA
 *   1  u8  kind        option kind it came in (254, 253, 200...)
 *   2  u8  found_in    1 = SYN, 2 = handshake ACK, 3 = data segment
 *   3  u8  via_family  4 or 6: family of the balancer's connection
 *   4  be16 port       client port, network order
 *   6  be16 via_port   balancer's source port, network order
 *   8  u8  addr[16]    client address (IPv4 in the first 4 bytes)
 *  24  u8  via_addr[16] balancer's address (IPv4 in the first 4 bytes)
 */
import type { BtfType, MapSpec } from "../bpf/index.js";
import { btf } from "../bpf/index.js";

export const Peer = {
  size: 40,
  family: 0,
  kind: 1,
  foundIn: 2,
  viaFamily: 3,
  port: 4,
  viaPort: 6,
  addr: 8,
  viaAddr: 24,
} as const;

/** Where the TOA was found (toa_peer.found_in). */
export const FoundIn = { SYN: 1, ACK: 2, DATA: 3 } as const;

const u8x16: BtfType = { kind: "array", element: btf.u8, length: 16 };
const be16: BtfType = { kind: "typedef", name: "__be16", type: btf.u16 };

/** BTF of struct toa_peer, so `bpftool map dump` prints it readably. */
export const peerBtf: BtfType = {
  kind: "struct",
  name: "toa_peer",
  size: Peer.size,
  members: [
    { name: "family", type: btf.u8, offset: Peer.family },
    { name: "kind", type: btf.u8, offset: Peer.kind },
    { name: "found_in", type: btf.u8, offset: Peer.foundIn },
    { name: "via_family", type: btf.u8, offset: Peer.viaFamily },
    { name: "port", type: be16, offset: Peer.port },
    { name: "via_port", type: be16, offset: Peer.viaPort },
    { name: "addr", type: u8x16, offset: Peer.addr },
    { name: "via_addr", type: u8x16, offset: Peer.viaAddr },
  ],
};

/**
 * Counters (per-CPU array of u64, summed by the reader). The first four carry toa.ko's names so
 * dashboards built on /proc/net/toa_stats map one to one.
 */
export const Counter = {
  syn_recv_sock_toa: 0, // connections that got a client address (any packet)
  syn_recv_sock_no_toa: 1, // passive connections with no TOA in SYN or handshake ACK
  getname_toa_ok: 2, // getpeername/accept rewritten
  getname_toa_empty: 3, // getpeername on a socket without TOA
  getname_toa_mismatch: 4, // IPv6 TOA on an AF_INET socket: NAT64, not rewritable
  untrusted: 5, // TOA from a source not in the trust list, ignored
  malformed: 6, // option with a bad length or running past the header
  nat64: 7, // IPv6 TOA stored on an AF_INET socket
  found_in_syn: 8,
  found_in_ack: 9,
  found_in_data: 10,
  nat64_lookup_ok: 11, // getsockopt(IPPROTO_IP, 4096) answered
  data_search_stopped: 12, // gave up looking in data segments
  sender_written: 13, // TOA options written by the sender
  sender_skipped_no_space: 14, // not written: no room in the 40-byte option space
  sender_syn_written: 15,
} as const;
export type CounterName = keyof typeof Counter;
export const COUNTER_SLOTS = 16;

/** Trust list keys (LPM trie): u32 prefix length, then the address. */
export const TRUST4_KEY_SIZE = 8;
export const TRUST6_KEY_SIZE = 20;

/**
 * Settings of a load, kept in a pinned one-entry array so `toa status` can read them back
 * (JSON text, NUL-padded).
 */
export const SETTINGS_SIZE = 1024;

/**
 * Sender connection key (48 bytes), filled from bpf_sock_ops on the balancer:
 *   0 u32 family (2 = AF_INET, 10 = AF_INET6)  4 u16 local port (host order)
 *   6 u16 remote port (host order)            8 u64 zero
 *  16 u8 local[16]   32 u8 remote[16]  (IPv4 in the first 4 bytes)
 * Value (24 bytes): 0 u8 kind, 1 u8 family (4/6), 2 u8 flags (bit0: also in SYN), 3 u8 pad,
 *   4 be16 client port, 6 u16 pad, 8 u8 addr[16]
 */
export const SenderKey = { size: 48, family: 0, localPort: 4, remotePort: 6, local: 16, remote: 32 } as const;
export const SenderValue = { size: 24, kind: 0, family: 1, flags: 2, port: 4, addr: 8 } as const;
export const SENDER_FLAG_SYN = 1;

/** Map names; the pins in the pin folder carry the same names. */
export const MapName = {
  peers: "toa_peers",
  stats: "toa_stats",
  scratch: "toa_scratch",
  trust4: "toa_trust4",
  trust6: "toa_trust6",
  settings: "toa_settings",
  senderConns: "toa_snd_conns",
  senderStats: "toa_snd_stats",
} as const;

/** Map blueprints. */
export const mapSpecs = {
  peers: { name: MapName.peers, type: "SK_STORAGE", keySize: 4, valueSize: Peer.size, maxEntries: 0, key: btf.s32, value: peerBtf },
  stats: { name: MapName.stats, type: "PERCPU_ARRAY", keySize: 4, valueSize: 8, maxEntries: COUNTER_SLOTS },
  // Per-CPU scratch for one TCP header (60 bytes) plus slack so that the option walk may read up to
  // 20 bytes past any in-header offset without a bounds check per field.
  scratch: { name: MapName.scratch, type: "PERCPU_ARRAY", keySize: 4, valueSize: 96, maxEntries: 1 },
  trust4: { name: MapName.trust4, type: "LPM_TRIE", keySize: TRUST4_KEY_SIZE, valueSize: 1, maxEntries: 1024 },
  trust6: { name: MapName.trust6, type: "LPM_TRIE", keySize: TRUST6_KEY_SIZE, valueSize: 1, maxEntries: 1024 },
  settings: { name: MapName.settings, type: "ARRAY", keySize: 4, valueSize: SETTINGS_SIZE, maxEntries: 1 },
  senderConns: { name: MapName.senderConns, type: "LRU_HASH", keySize: SenderKey.size, valueSize: SenderValue.size, maxEntries: 65536 },
  senderStats: { name: MapName.senderStats, type: "PERCPU_ARRAY", keySize: 4, valueSize: 8, maxEntries: COUNTER_SLOTS },
} satisfies Record<string, MapSpec>;

/** Kernel constants are in bpf/uapi.ts; these two stay importable from here for the agent's sender key. */
export { AF_INET, AF_INET6 } from "../bpf/uapi.js";
/** DPVS/elb-toa/Tencent NAT64 look-up: getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP). */
export const TOA_SO_GET_LOOKUP = 4096;
export const DEFAULT_KINDS = [254, 253, 200];
/**
 * Alibaba Cloud CDN's TOA: kind 28, [28][7][version][IPv4] or [28][19][version][IPv6], no port
 * (aliyun/alibabacloud-cdn-tool-toa). Accepted only when listed in --kinds.
 */
export const ALIBABA_CDN_KIND = 28;
