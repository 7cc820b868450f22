/**
 * Link-layer framing of captured packets (tcpdump.org/linktypes.html): where the IP header starts.
 *
 * ```
 *  1   Ethernet      [dst 6][src 6][(0x8100|0x88a8)[tci 2]]*[ethertype 2]
 *  113 Linux SLL     [pkttype 2][arphrd 2][addr len 2][addr 8][protocol 2]
 *  276 Linux SLL2    [protocol 2][reserved 2][ifindex 4][arphrd 2][pkttype][addr len][addr 8]
 *  0   BSD null      [AF_ value 4, byte order of the capturing host]   108 LOOP: same, big-endian
 *  101 raw IP (version nibble), 228 raw IPv4, 229 raw IPv6
 * ```
 */
import { WireError } from "./errors.js";

/** Link types this reader understands. */
export const LINKTYPE = {
  NULL: 0,
  ETHERNET: 1,
  RAW: 101,
  LOOP: 108,
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
} as const;

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;

/** Is this link type one {@link ipOffset} can read? */
export function isSupportedLinkType(linkType: number): boolean {
  return (Object.values(LINKTYPE) as number[]).includes(linkType);
}

function fromEthertype(et: number, offset: number): number {
  return et === ETHERTYPE_IPV4 || et === ETHERTYPE_IPV6 ? offset : -1;
}

/**
 * Offset of the IP header inside a captured frame, or -1 when the frame carries something else
 * (ARP, LLDP...). Throws WIRE_ERR_TRUNCATED for a frame shorter than its link header and
 * WIRE_ERR_UNSUPPORTED for an unknown link type.
 */
export function ipOffset(linkType: number, frame: Uint8Array): number {
  const short = (n: number, what: string): void => {
    if (frame.length < n) throw new WireError("WIRE_ERR_TRUNCATED", `${what} header: need ${n} bytes, have ${frame.length}`, 0);
  };
  switch (linkType) {
    case LINKTYPE.ETHERNET: {
      short(14, "Ethernet");
      let p = 12;
      let et = (frame[p] << 8) | frame[p + 1];
      // 802.1Q (0x8100) and 802.1ad (0x88a8) tags, stacked for QinQ: 4 bytes each.
      while (et === 0x8100 || et === 0x88a8) {
        p += 4;
        short(p + 2, "802.1Q VLAN");
        et = (frame[p] << 8) | frame[p + 1];
      }
      return fromEthertype(et, p + 2);
    }
    case LINKTYPE.LINUX_SLL:
      short(16, "Linux cooked (SLL)");
      return fromEthertype((frame[14] << 8) | frame[15], 16);
    case LINKTYPE.LINUX_SLL2:
      short(20, "Linux cooked v2 (SLL2)");
      return fromEthertype((frame[0] << 8) | frame[1], 20);
    case LINKTYPE.RAW:
    case LINKTYPE.IPV4:
    case LINKTYPE.IPV6:
      return 0;
    case LINKTYPE.NULL:
    case LINKTYPE.LOOP: {
      short(4, "loopback");
      // The family is in the capturing host's byte order; AF_INET is 2 everywhere, AF_INET6 is
      // 10 (Linux), 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS). A zero low half means big-endian.
      const le = frame[0] | (frame[1] << 8);
      const be = (frame[2] << 8) | frame[3];
      const af = linkType === LINKTYPE.LOOP || le === 0 ? be : le;
      return af === 2 || af === 10 || af === 24 || af === 28 || af === 30 ? 4 : -1;
    }
    default:
      throw new WireError("WIRE_ERR_UNSUPPORTED", `link type ${linkType} is not supported (Ethernet, Linux cooked v1/v2, raw IP and loopback are)`);
  }
}

/** Options of {@link encodeLinkFrame}. */
export interface LinkFrameOptions {
  /** 802.1Q VLAN ids to insert (Ethernet only), outermost first. */
  vlans?: number[];
}

/** Wrap an IP packet in a link-layer header of `linkType` (for building test captures). */
export function encodeLinkFrame(linkType: number, ipPacket: Uint8Array, opts: LinkFrameOptions = {}): Buffer {
  const v6 = ipPacket.length > 0 && ipPacket[0] >> 4 === 6;
  const et = v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4;
  switch (linkType) {
    case LINKTYPE.ETHERNET: {
      const vlans = opts.vlans ?? [];
      const h = Buffer.alloc(14 + 4 * vlans.length);
      h.set([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01], 0); // locally administered MACs
      let p = 12;
      for (const id of vlans) {
        h.writeUInt16BE(0x8100, p);
        h.writeUInt16BE(id & 0xfff, p + 2);
        p += 4;
      }
      h.writeUInt16BE(et, p);
      return Buffer.concat([h, ipPacket]);
    }
    case LINKTYPE.LINUX_SLL: {
      const h = Buffer.alloc(16);
      h.writeUInt16BE(0, 0); // PACKET_HOST
      h.writeUInt16BE(1, 2); // ARPHRD_ETHER
      h.writeUInt16BE(6, 4);
      h.writeUInt16BE(et, 14);
      return Buffer.concat([h, ipPacket]);
    }
    case LINKTYPE.LINUX_SLL2: {
      const h = Buffer.alloc(20);
      h.writeUInt16BE(et, 0);
      h.writeUInt32BE(2, 4);
      h.writeUInt16BE(1, 8);
      h[11] = 6;
      return Buffer.concat([h, ipPacket]);
    }
    case LINKTYPE.RAW:
    case LINKTYPE.IPV4:
    case LINKTYPE.IPV6:
      return Buffer.from(ipPacket);
    case LINKTYPE.NULL: {
      const h = Buffer.alloc(4);
      h.writeUInt32LE(v6 ? 10 : 2, 0);
      return Buffer.concat([h, ipPacket]);
    }
    case LINKTYPE.LOOP: {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(v6 ? 10 : 2, 0);
      return Buffer.concat([h, ipPacket]);
    }
    default:
      throw new WireError("WIRE_ERR_INVALID_ARG", `cannot build frames of link type ${linkType}`);
  }
}
