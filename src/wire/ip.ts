/**
 * IPv4 (RFC 791) and IPv6 (RFC 8200) header codecs. IPv6 extension headers (hop-by-hop, routing,
 * destination options, fragment, AH) are skipped to find the upper-layer protocol.
 *
 * ```
 *  IPv4:  [ver|ihl][tos][total len 16][id 16][flags|frag 16][ttl][proto][csum 16][src 4][dst 4][options]
 *  IPv6:  [ver|tc|flow 32][payload len 16][next hdr][hop limit][src 16][dst 16][ext headers...]
 * ```
 */
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6 } from "./addr.js";
import { internetChecksum } from "./checksum.js";
import { WireError, need } from "./errors.js";

/** IP protocol numbers used here. */
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

interface IpCommon {
  source: string;
  destination: string;
  /** Raw address bytes (views into the input), for checksums. */
  sourceBytes: Uint8Array;
  destinationBytes: Uint8Array;
  /** Upper-layer protocol (after IPv6 extension headers). */
  protocol: number;
  /** Bytes from the start of the IP header to the upper-layer header. */
  headerLength: number;
  /** Absolute offsets of the upper-layer payload in the input buffer. */
  payloadOffset: number;
  payloadEnd: number;
  /** True when the capture holds fewer bytes than the header's length field says (snap length). */
  truncated: boolean;
  /** True for a non-first fragment: no upper-layer header here. */
  laterFragment: boolean;
}

/** A decoded IPv4 header. */
export interface Ipv4Header extends IpCommon {
  version: 4;
  tos: number;
  totalLength: number;
  id: number;
  dontFragment: boolean;
  moreFragments: boolean;
  fragmentOffset: number;
  ttl: number;
  checksum: number;
  options: Buffer;
}

/** A decoded IPv6 header. */
export interface Ipv6Header extends IpCommon {
  version: 6;
  trafficClass: number;
  flowLabel: number;
  payloadLength: number;
  hopLimit: number;
  /** Extension headers skipped, in order. */
  extensionHeaders: { type: number; length: number }[];
  fragment?: { offset: number; more: boolean; id: number };
}

/** Either IP header. */
export type IpHeader = Ipv4Header | Ipv6Header;

/** Decode an IPv4 header at `offset`. */
export function decodeIpv4(buf: Buffer, offset = 0): Ipv4Header {
  need(buf, offset, 20, "IPv4 header");
  const vihl = buf[offset];
  if (vihl >> 4 !== 4) throw new WireError("WIRE_ERR_MALFORMED", `IPv4 header: version ${vihl >> 4}`, offset);
  const headerLength = (vihl & 0xf) * 4;
  if (headerLength < 20) throw new WireError("WIRE_ERR_MALFORMED", `IPv4 header: IHL ${vihl & 0xf} below 5`, offset);
  need(buf, offset, headerLength, "IPv4 header with options");
  const totalLength = buf.readUInt16BE(offset + 2);
  if (totalLength < headerLength) {
    throw new WireError("WIRE_ERR_MALFORMED", `IPv4 header: total length ${totalLength} shorter than header ${headerLength}`, offset + 2);
  }
  const frag = buf.readUInt16BE(offset + 6);
  const available = buf.length - offset;
  const fragmentOffset = (frag & 0x1fff) * 8;
  return {
    version: 4,
    tos: buf[offset + 1],
    totalLength,
    id: buf.readUInt16BE(offset + 4),
    dontFragment: (frag & 0x4000) !== 0,
    moreFragments: (frag & 0x2000) !== 0,
    fragmentOffset,
    ttl: buf[offset + 8],
    protocol: buf[offset + 9],
    checksum: buf.readUInt16BE(offset + 10),
    sourceBytes: buf.subarray(offset + 12, offset + 16),
    destinationBytes: buf.subarray(offset + 16, offset + 20),
    source: formatIpv4(buf, offset + 12),
    destination: formatIpv4(buf, offset + 16),
    options: buf.subarray(offset + 20, offset + headerLength),
    headerLength,
    payloadOffset: offset + headerLength,
    // Ethernet pads short frames: the total length field, not the buffer, ends the packet.
    payloadEnd: offset + Math.min(totalLength, available),
    truncated: totalLength > available,
    laterFragment: fragmentOffset !== 0,
  };
}

/** Decode an IPv6 header and its extension headers at `offset`. */
export function decodeIpv6(buf: Buffer, offset = 0): Ipv6Header {
  need(buf, offset, 40, "IPv6 header");
  const first = buf.readUInt32BE(offset);
  if (first >>> 28 !== 6) throw new WireError("WIRE_ERR_MALFORMED", `IPv6 header: version ${first >>> 28}`, offset);
  const payloadLength = buf.readUInt16BE(offset + 4);
  const available = buf.length - offset;
  const end = offset + Math.min(40 + payloadLength, available);
  let next = buf[offset + 6];
  let p = offset + 40;
  const extensionHeaders: { type: number; length: number }[] = [];
  let fragment: Ipv6Header["fragment"];
  // Each extension header advances p by at least 8 bytes, so this loop ends.
  for (;;) {
    let len: number;
    if (next === 0 || next === 43 || next === 60) {
      need(buf, p, 2, `IPv6 extension header ${next}`);
      len = (buf[p + 1] + 1) * 8; // Hdr Ext Len in 8-octet units, not counting the first 8 (RFC 8200 §4.3)
    } else if (next === 44) {
      need(buf, p, 8, "IPv6 fragment header");
      const fo = buf.readUInt16BE(p + 2);
      fragment = { offset: fo & 0xfff8, more: (fo & 1) === 1, id: buf.readUInt32BE(p + 4) };
      len = 8;
    } else if (next === 51) {
      need(buf, p, 2, "IPv6 authentication header");
      len = (buf[p + 1] + 2) * 4; // AH counts 4-octet units minus 2 (RFC 4302 §2.2)
    } else {
      break;
    }
    need(buf, p, len, `IPv6 extension header ${next}`);
    if (p + len > offset + 40 + payloadLength) {
      throw new WireError("WIRE_ERR_MALFORMED", `IPv6 extension header ${next} runs past the payload length`, p);
    }
    extensionHeaders.push({ type: next, length: len });
    next = buf[p];
    p += len;
    if (fragment && fragment.offset !== 0) break;
  }
  const header: Ipv6Header = {
    version: 6,
    trafficClass: (first >>> 20) & 0xff,
    flowLabel: first & 0xfffff,
    payloadLength,
    protocol: next,
    hopLimit: buf[offset + 7],
    sourceBytes: buf.subarray(offset + 8, offset + 24),
    destinationBytes: buf.subarray(offset + 24, offset + 40),
    source: formatIpv6(buf, offset + 8),
    destination: formatIpv6(buf, offset + 24),
    extensionHeaders,
    headerLength: p - offset,
    payloadOffset: p,
    payloadEnd: Math.max(p, end),
    truncated: 40 + payloadLength > available,
    laterFragment: fragment !== undefined && fragment.offset !== 0,
  };
  if (fragment) header.fragment = fragment;
  return header;
}

/** Decode an IPv4 or IPv6 header by its version nibble. */
export function decodeIp(buf: Buffer, offset = 0): IpHeader {
  need(buf, offset, 1, "IP header");
  const v = buf[offset] >> 4;
  if (v === 4) return decodeIpv4(buf, offset);
  if (v === 6) return decodeIpv6(buf, offset);
  throw new WireError("WIRE_ERR_MALFORMED", `IP header: version ${v} is neither 4 nor 6`, offset);
}

/** Fields of an IP packet to build with {@link encodeIp}; the family comes from the addresses. */
export interface IpInit {
  source: string;
  destination: string;
  protocol: number;
  payload: Uint8Array;
  /** TTL / hop limit; 64 by default. */
  ttl?: number;
  /** IPv4 only. */
  id?: number;
  dontFragment?: boolean;
  tos?: number;
  /** IPv4 options, a multiple of 4 bytes, at most 40. */
  options?: Uint8Array;
  /** IPv6 only. */
  flowLabel?: number;
}

/** Build an IPv4 or IPv6 packet around `payload` (the IPv4 header checksum is computed). */
export function encodeIp(init: IpInit): Buffer {
  const s4 = parseIpv4(init.source);
  const d4 = parseIpv4(init.destination);
  if (s4 && d4) {
    const opts = init.options ?? new Uint8Array(0);
    if (opts.length % 4 !== 0 || opts.length > 40) {
      throw new WireError("WIRE_ERR_INVALID_ARG", `IPv4 options must be a multiple of 4 bytes up to 40, got ${opts.length}`);
    }
    const hl = 20 + opts.length;
    if (hl + init.payload.length > 0xffff) throw new WireError("WIRE_ERR_INVALID_ARG", "IPv4 packet longer than 65535 bytes");
    const out = Buffer.alloc(hl + init.payload.length);
    out[0] = 0x40 | (hl / 4);
    out[1] = init.tos ?? 0;
    out.writeUInt16BE(out.length, 2);
    out.writeUInt16BE(init.id ?? 0, 4);
    out.writeUInt16BE(init.dontFragment === false ? 0 : 0x4000, 6);
    out[8] = init.ttl ?? 64;
    out[9] = init.protocol;
    out.set(s4, 12);
    out.set(d4, 16);
    out.set(opts, 20);
    out.writeUInt16BE(internetChecksum(out, 0, hl), 10);
    out.set(init.payload, hl);
    return out;
  }
  const s6 = parseIpv6(init.source);
  const d6 = parseIpv6(init.destination);
  if (s6 && d6) {
    if (init.payload.length > 0xffff) throw new WireError("WIRE_ERR_INVALID_ARG", "IPv6 payload longer than 65535 bytes (jumbograms unsupported)");
    const out = Buffer.alloc(40 + init.payload.length);
    out.writeUInt32BE(((6 << 28) | (((init.tos ?? 0) & 0xff) << 20) | ((init.flowLabel ?? 0) & 0xfffff)) >>> 0, 0);
    out.writeUInt16BE(init.payload.length, 4);
    out[6] = init.protocol;
    out[7] = init.ttl ?? 64;
    out.set(s6, 8);
    out.set(d6, 24);
    out.set(init.payload, 40);
    return out;
  }
  throw new WireError("WIRE_ERR_INVALID_ARG", `source and destination must both be IPv4 or both IPv6, got ${init.source} and ${init.destination}`);
}
