/**
 * pcapng files (IETF draft-ietf-opsawg-pcapng): a sequence of blocks `[type 4][total length 4][body]
 * [total length 4]`. A Section Header Block sets the byte order; Interface Description Blocks give each
 * interface's link type and timestamp resolution; packets come in Enhanced (EPB), Simple (SPB) or
 * obsolete Packet Blocks. Every other block type is skipped.
 *
 * ```
 *  SHB 0x0A0D0D0A: [byte-order magic 1A2B3C4D][major 2][minor 2][section length 8][options]
 *  IDB 1:          [linktype 2][reserved 2][snaplen 4][options: if_tsresol = code 9]
 *  EPB 6:          [interface 4][ts high 4][ts low 4][captured 4][original 4][data, padded to 4][options]
 *  SPB 3:          [original 4][data]
 * ```
 */
import { WireError } from "./errors.js";
import { MAX_RECORD_LENGTH, type BlockParser, type CaptureRecord } from "./capture-record.js";

/** Block type of the Section Header Block (a palindrome, readable before the byte order is known). */
export const PCAPNG_SHB = 0x0a0d0d0a;
/** The byte-order magic inside the SHB. */
export const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;

interface Interface {
  linkType: number;
  snaplen: number;
  /** Timestamp ticks per second. */
  ticksPerSecond: number;
}

/** Ticks per second of an if_tsresol value: 10^-n, or 2^-n when the top bit is set. */
export function tsresolTicks(v: number): number {
  return v & 0x80 ? 2 ** (v & 0x7f) : 10 ** v;
}

/** Incremental pcapng parser; see {@link BlockParser}. */
export class PcapngParser implements BlockParser {
  readonly format = "pcapng";
  private le = true;
  private inSection = false;
  private interfaces: Interface[] = [];

  next(buf: Buffer, pos: number, base: number): { size: number; record?: Omit<CaptureRecord, "index"> } | null {
    const avail = buf.length - pos;
    if (avail < 12) return null;
    const typeBE = buf.readUInt32BE(pos);
    if (typeBE === PCAPNG_SHB) {
      const bomLE = buf.readUInt32LE(pos + 8);
      const bomBE = buf.readUInt32BE(pos + 8);
      if (bomLE === PCAPNG_BYTE_ORDER_MAGIC) this.le = true;
      else if (bomBE === PCAPNG_BYTE_ORDER_MAGIC) this.le = false;
      else throw new WireError("WIRE_ERR_MALFORMED", `pcapng section header: byte-order magic 0x${bomBE.toString(16)}`, base + pos + 8);
      this.inSection = true;
      this.interfaces = []; // interface ids are per section
    } else if (!this.inSection) {
      throw new WireError("WIRE_ERR_MALFORMED", `not a pcapng file: first block type 0x${typeBE.toString(16).padStart(8, "0")}`, base + pos);
    }
    const u16 = (o: number): number => (this.le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
    const u32 = (o: number): number => (this.le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
    const type = u32(pos);
    const len = u32(pos + 4);
    if (len < 12 || len % 4 !== 0 || len > MAX_RECORD_LENGTH) {
      throw new WireError("WIRE_ERR_MALFORMED", `pcapng block type ${type}: total length ${len} is invalid`, base + pos + 4);
    }
    if (avail < len) return null;
    if (u32(pos + len - 4) !== len) {
      throw new WireError("WIRE_ERR_MALFORMED", `pcapng block type ${type}: trailing length ${u32(pos + len - 4)} differs from ${len}`, base + pos + len - 4);
    }
    const short = (min: number): void => {
      if (len < min) throw new WireError("WIRE_ERR_MALFORMED", `pcapng block type ${type}: length ${len} below its minimum ${min}`, base + pos + 4);
    };
    const iface = (id: number): Interface => {
      const i = this.interfaces[id];
      if (!i) throw new WireError("WIRE_ERR_MALFORMED", `pcapng packet refers to interface ${id}, which no IDB described`, base + pos);
      return i;
    };
    switch (type) {
      case PCAPNG_SHB:
        short(28);
        return { size: len };
      case 1: {
        short(20);
        const i: Interface = { linkType: u16(pos + 8), snaplen: u32(pos + 12), ticksPerSecond: 1e6 };
        // Options: [code 2][length 2][value padded to 4], ending at code 0 or the block's end.
        let o = pos + 16;
        const end = pos + len - 4;
        while (o + 4 <= end) {
          const code = u16(o);
          const olen = u16(o + 2);
          if (code === 0 || o + 4 + olen > end) break;
          if (code === 9 && olen >= 1) i.ticksPerSecond = tsresolTicks(buf[o + 4]);
          o += 4 + ((olen + 3) & ~3);
        }
        this.interfaces.push(i);
        return { size: len };
      }
      case 6:
      case 2: {
        short(32);
        const id = type === 6 ? u32(pos + 8) : u16(pos + 8);
        const i = iface(id);
        const caplen = u32(pos + 20);
        if (28 + caplen > len - 4) {
          throw new WireError("WIRE_ERR_MALFORMED", `pcapng packet block: captured length ${caplen} exceeds the block (${len} bytes)`, base + pos + 20);
        }
        const hi = u32(pos + 12);
        const lo = u32(pos + 16);
        return {
          size: len,
          record: {
            fileOffset: base + pos,
            interfaceId: id,
            linkType: i.linkType,
            timestamp: (hi * 4294967296) / i.ticksPerSecond + lo / i.ticksPerSecond,
            data: buf.subarray(pos + 28, pos + 28 + caplen),
            originalLength: u32(pos + 24),
          },
        };
      }
      case 3: {
        short(16);
        const i = iface(0);
        const orig = u32(pos + 8);
        // SPB has no captured length: it is the smaller of the original length, the snap length and the room.
        let caplen = Math.min(orig, len - 16);
        if (i.snaplen > 0) caplen = Math.min(caplen, i.snaplen);
        return {
          size: len,
          record: { fileOffset: base + pos, interfaceId: 0, linkType: i.linkType, timestamp: 0, data: buf.subarray(pos + 12, pos + 12 + caplen), originalLength: orig },
        };
      }
      default:
        return { size: len };
    }
  }
}
