/**
 * Classic libpcap files (tcpdump's default): a 24-byte global header, then per packet a 16-byte record
 * header and the captured bytes. The magic tells byte order and timestamp unit.
 *
 * ```
 *  global: [magic 4][major 2][minor 2][thiszone 4][sigfigs 4][snaplen 4][linktype 4]
 *  record: [ts sec 4][ts usec|nsec 4][incl len 4][orig len 4][data incl len]
 *  magic a1b2c3d4 = microseconds, a1b23c4d = nanoseconds (read in either byte order)
 * ```
 */
import { WireError } from "./errors.js";
import { MAX_RECORD_LENGTH, type BlockParser, type CaptureRecord } from "./capture-record.js";

/** Magic numbers as read in the file's own byte order. */
export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const PCAP_MAGIC_NS = 0xa1b23c4d;

/** The fields of a pcap global header. */
export interface PcapHeader {
  littleEndian: boolean;
  nanoseconds: boolean;
  versionMajor: number;
  versionMinor: number;
  snaplen: number;
  linkType: number;
}

/** Read the global header at the start of `buf` (24 bytes); throws WireError when it is not pcap. */
export function decodePcapHeader(buf: Buffer): PcapHeader {
  if (buf.length < 24) throw new WireError("WIRE_ERR_TRUNCATED", `pcap global header: need 24 bytes, have ${buf.length}`, 0);
  const be = buf.readUInt32BE(0);
  const le = buf.readUInt32LE(0);
  let littleEndian: boolean;
  let nanoseconds: boolean;
  if (le === PCAP_MAGIC_US || le === PCAP_MAGIC_NS) {
    littleEndian = true;
    nanoseconds = le === PCAP_MAGIC_NS;
  } else if (be === PCAP_MAGIC_US || be === PCAP_MAGIC_NS) {
    littleEndian = false;
    nanoseconds = be === PCAP_MAGIC_NS;
  } else {
    throw new WireError("WIRE_ERR_MALFORMED", `not a pcap file: magic 0x${be.toString(16).padStart(8, "0")}`, 0);
  }
  const u16 = (o: number): number => (littleEndian ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number): number => (littleEndian ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  return {
    littleEndian,
    nanoseconds,
    versionMajor: u16(4),
    versionMinor: u16(6),
    snaplen: u32(16),
    // The upper bits may carry FCS information (pcap-savefile(5)); the link type is the low 16 bits.
    linkType: u32(20) & 0xffff,
  };
}

/** Incremental pcap parser; see {@link BlockParser}. */
export class PcapParser implements BlockParser {
  readonly format = "pcap";
  header: PcapHeader | null = null;

  next(buf: Buffer, pos: number, base: number): { size: number; record?: Omit<CaptureRecord, "index"> } | null {
    if (!this.header) {
      if (buf.length - pos < 24) return null;
      this.header = decodePcapHeader(buf.subarray(pos, pos + 24));
      return { size: 24 };
    }
    if (buf.length - pos < 16) return null;
    const h = this.header;
    const le = h.littleEndian;
    const sec = le ? buf.readUInt32LE(pos) : buf.readUInt32BE(pos);
    const frac = le ? buf.readUInt32LE(pos + 4) : buf.readUInt32BE(pos + 4);
    const incl = le ? buf.readUInt32LE(pos + 8) : buf.readUInt32BE(pos + 8);
    const orig = le ? buf.readUInt32LE(pos + 12) : buf.readUInt32BE(pos + 12);
    if (incl > MAX_RECORD_LENGTH) {
      throw new WireError("WIRE_ERR_MALFORMED", `pcap record of ${incl} bytes is implausible (corrupt file?)`, base + pos + 8);
    }
    if (buf.length - pos < 16 + incl) return null;
    return {
      size: 16 + incl,
      record: {
        fileOffset: base + pos,
        interfaceId: 0,
        linkType: h.linkType,
        timestamp: sec + frac / (h.nanoseconds ? 1e9 : 1e6),
        data: buf.subarray(pos + 16, pos + 16 + incl),
        originalLength: orig,
      },
    };
  }
}
