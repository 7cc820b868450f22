/**
 * What the packet program needs to know of an address family (where the IP header's fields are,
 * how long the TOA option is), and the labels every routine of one family's body may go to.
 */
import { ETH_HLEN } from "../../bpf/uapi.js";

/** One address family's packet layout: Ethernet, then IPv4 without options or IPv6 without extension headers. */
export interface Family {
  name: "4" | "6";
  family: 4 | 6;
  /** Address length. */
  alen: number;
  /** Offset of the TCP header in the frame. */
  l4: number;
  saddr: number;
  daddr: number;
  proto: number;
  /** Offset of IPv4 tot_len / IPv6 payload_len. */
  l3len: number;
  /** IPv4 header checksum offset (IPv6 has none). */
  ipCsum?: number;
  /** Length of the TOA option: [kind][len][port][address]. */
  toaLen: number;
}

export const V4: Family = { name: "4", family: 4, alen: 4, l4: ETH_HLEN + 20, saddr: ETH_HLEN + 12, daddr: ETH_HLEN + 16, proto: ETH_HLEN + 9, l3len: ETH_HLEN + 2, ipCsum: ETH_HLEN + 10, toaLen: 8 };
export const V6: Family = { name: "6", family: 6, alen: 16, l4: ETH_HLEN + 40, saddr: ETH_HLEN + 8, daddr: ETH_HLEN + 24, proto: ETH_HLEN + 6, l3len: ETH_HLEN + 4, toaLen: 20 };

/** PROXY v2 header length for a family: 16 + two addresses + two ports. */
export const proxyLen = (f: Family) => 16 + 2 * f.alen + 4;

/**
 * One family's body as the routines see it: the family, and where they may go
 *   pass  return TC_ACT_UNSPEC (not ours: the next tc program, then the stack)
 *   exit  return r0 (a verdict already in r0)
 *   flow  forward the packet of the known flow in r7
 *   open  a SYN to a service: open a new connection
 */
export interface Ctx {
  readonly f: Family;
  readonly pass: string;
  readonly exit: string;
  readonly flow: string;
  readonly open: string;
}
