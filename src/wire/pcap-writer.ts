/**
 * Minimal pcap and pcapng writers, to build captures in tests and benchmarks (the reader's mirror).
 */
import { WireError } from "./errors.js";
import { PCAP_MAGIC_NS, PCAP_MAGIC_US } from "./pcap.js";
import { PCAPNG_BYTE_ORDER_MAGIC, PCAPNG_SHB } from "./pcapng.js";

/** A frame to write: its link-layer bytes and a timestamp in seconds. */
export interface FrameToWrite {
  data: Uint8Array;
  timestamp?: number;
  /** Length on the wire; data.length by default. */
  originalLength?: number;
}

/** Options of {@link writePcap}. */
export interface PcapWriteOptions {
  linkType: number;
  nanoseconds?: boolean;
  bigEndian?: boolean;
  snaplen?: number;
}

/** The 24-byte pcap global header. */
export function pcapGlobalHeader(opts: PcapWriteOptions): Buffer {
  const h = Buffer.alloc(24);
  const le = !opts.bigEndian;
  const w32 = (v: number, o: number): number => (le ? h.writeUInt32LE(v >>> 0, o) : h.writeUInt32BE(v >>> 0, o));
  const w16 = (v: number, o: number): number => (le ? h.writeUInt16LE(v, o) : h.writeUInt16BE(v, o));
  w32(opts.nanoseconds ? PCAP_MAGIC_NS : PCAP_MAGIC_US, 0);
  w16(2, 4);
  w16(4, 6);
  w32(opts.snaplen ?? 262144, 16);
  w32(opts.linkType, 20);
  return h;
}

/** One pcap record (16-byte header + data). */
export function pcapRecord(f: FrameToWrite, opts: PcapWriteOptions): Buffer {
  const h = Buffer.alloc(16 + f.data.length);
  const le = !opts.bigEndian;
  const w32 = (v: number, o: number): number => (le ? h.writeUInt32LE(v >>> 0, o) : h.writeUInt32BE(v >>> 0, o));
  const ts = f.timestamp ?? 0;
  const sec = Math.floor(ts);
  const unit = opts.nanoseconds ? 1e9 : 1e6;
  w32(sec, 0);
  w32(Math.min(unit - 1, Math.round((ts - sec) * unit)), 4);
  w32(f.data.length, 8);
  w32(f.originalLength ?? f.data.length, 12);
  h.set(f.data, 16);
  return h;
}

/** A whole pcap file. */
export function writePcap(frames: Iterable<FrameToWrite>, opts: PcapWriteOptions): Buffer {
  const parts = [pcapGlobalHeader(opts)];
  for (const f of frames) parts.push(pcapRecord(f, opts));
  return Buffer.concat(parts);
}

/** Options of {@link writePcapng}. */
export interface PcapngWriteOptions {
  linkType: number;
  bigEndian?: boolean;
  /** if_tsresol byte (6 = microseconds, the default; 9 = nanoseconds; 0x80|n = 2^-n). */
  tsresol?: number;
  /** Write Simple Packet Blocks (no timestamps) instead of Enhanced ones. */
  simple?: boolean;
  /** Insert a block of an unknown type before the packets (readers must skip it). */
  unknownBlock?: boolean;
}

function block(type: number, body: Buffer, le: boolean): Buffer {
  const padded = (body.length + 3) & ~3;
  const len = 12 + padded;
  const b = Buffer.alloc(len);
  const w32 = (v: number, o: number): number => (le ? b.writeUInt32LE(v >>> 0, o) : b.writeUInt32BE(v >>> 0, o));
  w32(type, 0);
  w32(len, 4);
  body.copy(b, 8);
  w32(len, len - 4);
  return b;
}

/** A whole pcapng file: one section, one interface. */
export function writePcapng(frames: Iterable<FrameToWrite>, opts: PcapngWriteOptions): Buffer {
  const le = !opts.bigEndian;
  const u32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    if (le) b.writeUInt32LE(v >>> 0);
    else b.writeUInt32BE(v >>> 0);
    return b;
  };
  const u16 = (v: number): Buffer => {
    const b = Buffer.alloc(2);
    if (le) b.writeUInt16LE(v);
    else b.writeUInt16BE(v);
    return b;
  };
  const shb = Buffer.concat([u32(PCAPNG_BYTE_ORDER_MAGIC), u16(1), u16(0), Buffer.alloc(8, 0xff)]);
  const parts = [block(PCAPNG_SHB, shb, le)];
  const tsresol = opts.tsresol ?? 6;
  const idbOpts = Buffer.concat([u16(9), u16(1), Buffer.from([tsresol, 0, 0, 0]), u16(0), u16(0)]);
  parts.push(block(1, Buffer.concat([u16(opts.linkType), u16(0), u32(0), idbOpts]), le));
  if (opts.unknownBlock) parts.push(block(0x0badcafe, Buffer.from("skip me"), le));
  const ticks = tsresol & 0x80 ? 2 ** (tsresol & 0x7f) : 10 ** tsresol;
  if (!Number.isSafeInteger(ticks)) throw new WireError("WIRE_ERR_INVALID_ARG", `tsresol ${tsresol} is too fine to write`);
  for (const f of frames) {
    const data = Buffer.from(f.data.buffer, f.data.byteOffset, f.data.length);
    if (opts.simple) {
      parts.push(block(3, Buffer.concat([u32(f.originalLength ?? data.length), data]), le));
      continue;
    }
    const t = BigInt(Math.round((f.timestamp ?? 0) * 1e6)) * BigInt(ticks) / 1000000n;
    const hi = Number(t >> 32n);
    const lo = Number(t & 0xffffffffn);
    parts.push(block(6, Buffer.concat([u32(0), u32(hi), u32(lo), u32(data.length), u32(f.originalLength ?? data.length), data]), le));
  }
  return Buffer.concat(parts);
}
