/**
 * The kernel's constants and context layouts, declared once (include/uapi/linux/bpf.h, in.h,
 * tcp.h, if_ether.h, pkt_cls.h). Programs and loaders import them from here; nothing beside its
 * user redefines a kernel value.
 */

/** Offsets in `struct __sk_buff` (the context of tc programs). */
export const Skb = { len: 0, protocol: 16, ifindex: 40, data: 76, dataEnd: 80 } as const;

/** Offsets in `struct bpf_sock_ops` (the context of sock_ops programs). */
export const SockOps = {
  op: 0,
  args: 4,
  reply: 4,
  family: 20,
  remoteIp4: 24,
  localIp4: 28,
  remoteIp6: 32,
  localIp6: 48,
  remotePort: 64,
  localPort: 68,
  cbFlags: 84,
  state: 88,
  dataSegsIn: 144,
  bytesReceived: 168,
  sk: 184,
  skbData: 192,
  skbDataEnd: 200,
  skbLen: 208,
  skbTcpFlags: 212,
} as const;

/** Offsets in `struct bpf_sock_addr` (cgroup connect/getpeername hooks). */
export const SockAddr = { userFamily: 0, userIp4: 4, userIp6: 8, userPort: 24, family: 28, sk: 64 } as const;

/** Offsets in `struct bpf_sockopt` (cgroup getsockopt/setsockopt hooks). */
export const SockOpt = { sk: 0, optval: 8, optvalEnd: 16, level: 24, optname: 28, optlen: 32, retval: 36 } as const;

/** `bpf_sock_ops.op` values (`BPF_SOCK_OPS_*_CB`). */
export const Op = {
  TCP_CONNECT_CB: 3,
  ACTIVE_ESTABLISHED_CB: 4,
  PASSIVE_ESTABLISHED_CB: 5,
  STATE_CB: 10,
  TCP_LISTEN_CB: 11,
  PARSE_HDR_OPT_CB: 13,
  HDR_OPT_LEN_CB: 14,
  WRITE_HDR_OPT_CB: 15,
} as const;

/** sock_ops callback flags (`BPF_SOCK_OPS_*_CB_FLAG`). */
export const CbFlag = { STATE: 4, PARSE_ALL_HDR_OPT: 16, PARSE_UNKNOWN_HDR_OPT: 32, WRITE_HDR_OPT: 64 } as const;

/** Address families (linux/socket.h). */
export const AF_INET = 2;
export const AF_INET6 = 10;
/** Protocol numbers (linux/in.h); SOL_TCP is IPPROTO_TCP as a socket option level. */
export const IPPROTO_IP = 0;
export const IPPROTO_TCP = 6;
export const SOL_TCP = 6;
/** TCP socket options (linux/tcp.h) and the BPF-only one (bpf.h) that reads the saved SYN. */
export const TCP_SAVE_SYN = 27;
export const TCP_BPF_SYN = 1005;

/** Ethernet (linux/if_ether.h): header length; EtherTypes as the u32 `skb->protocol` reads them on little endian. */
export const ETH_HLEN = 14;
export const ETH_P_IP_BE = 0x0008; // htons(0x0800)
export const ETH_P_IPV6_BE = 0xdd86; // htons(0x86dd)

/**
 * Verdicts of a tc program (TC_ACT_* in pkt_cls.h; tcx's TCX_* in bpf.h share the values). NEXT
 * (TC_ACT_UNSPEC) hands the packet to the next program or filter, OK lets it through, SHOT drops it.
 */
export const TcAction = { NEXT: -1, OK: 0, SHOT: 2, REDIRECT: 7 } as const;
export const TC_ACT_OK = TcAction.OK;
export const TC_ACT_SHOT = TcAction.SHOT;
export const TC_ACT_REDIRECT = TcAction.REDIRECT;

/** `flags` of BPF_MAP_UPDATE_ELEM: BPF_ANY, BPF_NOEXIST, BPF_EXIST. */
export const UpdateFlag = { ANY: 0, NOEXIST: 1, EXIST: 2 } as const;
export const BPF_ANY = UpdateFlag.ANY;
export const BPF_NOEXIST = UpdateFlag.NOEXIST;
export const BPF_EXIST = UpdateFlag.EXIST;

/** `flags` of bpf_l4_csum_replace: the change is in the pseudo-header (low 4 bits: field size). */
export const BPF_F_PSEUDO_HDR = 0x10;
/** `args[0]` bit of BPF_SOCK_OPS_HDR_OPT_LEN_CB/WRITE_HDR_OPT_CB: an MSS estimate, no packet. */
export const BPF_WRITE_HDR_TCP_CURRENT_MSS = 1;
/** `flags` of bpf_sk_storage_get: create the storage when missing. */
export const BPF_SK_STORAGE_GET_F_CREATE = 1;

/** errno values helpers return negated. */
export const E2BIG = 7;

/** TCP header flags (byte 13 of the header). */
export const TcpFlag = { FIN: 0x01, SYN: 0x02, RST: 0x04, ACK: 0x10 } as const;
