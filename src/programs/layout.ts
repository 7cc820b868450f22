/**
 * Layouts shared by the eBPF programs and the TypeScript that reads their maps: declared once here
 * so the two sides can't disagree.
 */
import type { MapSpec } from "../bpf/index.js";
import { btf } from "../bpf/index.js";
import { nameToaToToolkit } from "./application.js";
import { be16, bytes, pad, struct, u16, u32, u8 } from "../bpf/struct.js";

// The Node API has no entry point: its first import of the layouts names toa to the toolkit.
nameToaToToolkit();

/**
 * struct toa_peer: the sk_storage value, one per socket that carried a TOA. Addresses are 16 bytes
 * (IPv4 in the first 4); ports in network order. `peerBtf` is its BTF, so `bpftool map dump` prints
 * it readably.
 */
export const Peer = struct("toa_peer", {
  /** 4 = IPv4 TOA, 6 = IPv6 TOA. */
  family: u8,
  /** Option kind it came in (254, 253, 200...). */
  kind: u8,
  /** FoundIn: 1 = SYN, 2 = handshake ACK, 3 = data segment. */
  foundIn: u8,
  /** 4 or 6: family of the balancer's connection. */
  viaFamily: u8,
  /** Client port. */
  port: be16,
  /** Balancer's source port. */
  viaPort: be16,
  /** Client address. */
  addr: bytes(16),
  /** Balancer's address. */
  viaAddr: bytes(16),
});

/** Where the TOA was found (toa_peer.found_in). */
export const FoundIn = { SYN: 1, ACK: 2, DATA: 3 } as const;

/** BTF of struct toa_peer. */
export const peerBtf = Peer.btf;

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
export const Trust4Key = struct("toa_trust4_key", { prefixlen: u32, addr: bytes(4) });
export const Trust6Key = struct("toa_trust6_key", { prefixlen: u32, addr: bytes(16) });
export const TRUST4_KEY_SIZE = Trust4Key.size;
export const TRUST6_KEY_SIZE = Trust6Key.size;

/**
 * Settings of a load, kept in a pinned one-entry array so `toa status` can read them back
 * (JSON text, NUL-padded).
 */
export const SETTINGS_SIZE = 1024;

/** Sender connection key, filled from bpf_sock_ops on the balancer. Addresses: IPv4 in the first 4 bytes. */
export const SenderKey = struct("toa_snd_key", {
  /** 2 = AF_INET, 10 = AF_INET6. */
  family: u32,
  /** Host order. */
  localPort: u16,
  /** Host order. */
  remotePort: u16,
  _zero: pad(8),
  local: bytes(16),
  remote: bytes(16),
});

/** Sender value: the TOA to write on the connection. */
export const SenderValue = struct("toa_snd_value", {
  kind: u8,
  /** 4 or 6. */
  family: u8,
  /** Bit 0 (SENDER_FLAG_SYN): also in the SYN. */
  flags: u8,
  _pad: pad(1),
  /** Client port, network order. */
  port: be16,
  _pad2: pad(2),
  addr: bytes(16),
});
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

/** DPVS/elb-toa/Tencent NAT64 look-up: getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP). */
export const TOA_SO_GET_LOOKUP = 4096;
export const DEFAULT_KINDS = [254, 253, 200];
/**
 * Alibaba Cloud CDN's TOA: kind 28, [28][7][version][IPv4] or [28][19][version][IPv6], no port
 * (aliyun/alibabacloud-cdn-tool-toa). Accepted only when listed in --kinds.
 */
export const ALIBABA_CDN_KIND = 28;
