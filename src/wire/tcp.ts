/**
 * TCP header codec (RFC 9293 §3.1) and option insertion with an incremental checksum update, the
 * operation a TOA sender performs on the handshake ACK.
 *
 * ```
 *  [src port 16][dst port 16][seq 32][ack 32][doff 4|rsv 4|CWR ECE URG ACK PSH RST SYN FIN][window 16]
 *  [checksum 16][urgent 16][options 0..40]
 * ```
 */
import { parseAddress } from "./addr.js";
import { tcpChecksum, updateChecksum } from "./checksum.js";
import { WireError, need } from "./errors.js";
import { MAX_TCP_OPTIONS_LENGTH } from "./tcp-options.js";

/** TCP flag names, lowest bit first. */
export const TCP_FLAG_NAMES = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"] as const;
/** One TCP flag name. */
export type TcpFlag = (typeof TCP_FLAG_NAMES)[number];

/** A decoded TCP header. Offsets are absolute in the input buffer. */
export interface TcpHeader {
  sourcePort: number;
  destinationPort: number;
  seq: number;
  ack: number;
  headerLength: number;
  /** The raw flag byte; `flags` lists its names. */
  flagBits: number;
  flags: TcpFlag[];
  window: number;
  checksum: number;
  urgent: number;
  /** The options area (view into the input). */
  options: Buffer;
  payloadOffset: number;
  payloadLength: number;
}

/** Names of the set bits of a TCP flag byte. */
export function tcpFlagNames(bits: number): TcpFlag[] {
  const out: TcpFlag[] = [];
  for (let i = 0; i < 8; i++) if (bits & (1 << i)) out.push(TCP_FLAG_NAMES[i]);
  return out;
}

/** Flag byte of a list of names. */
export function tcpFlagBits(names: readonly string[]): number {
  let bits = 0;
  for (const n of names) {
    const i = (TCP_FLAG_NAMES as readonly string[]).indexOf(n.toUpperCase());
    if (i < 0) throw new WireError("WIRE_ERR_INVALID_ARG", `unknown TCP flag ${JSON.stringify(n)}; expected one of ${TCP_FLAG_NAMES.join(", ")}`);
    bits |= 1 << i;
  }
  return bits;
}

/** Decode a TCP header at `offset`; `end` bounds the segment (the IP payload end). */
export function decodeTcp(buf: Buffer, offset = 0, end = buf.length): TcpHeader {
  if (end > buf.length) end = buf.length;
  if (offset + 20 > end) need(buf.subarray(0, end), offset, 20, "TCP header");
  const doffByte = buf[offset + 12];
  const headerLength = (doffByte >> 4) * 4;
  if (headerLength < 20) throw new WireError("WIRE_ERR_MALFORMED", `TCP header: data offset ${doffByte >> 4} below 5`, offset + 12);
  if (offset + headerLength > end) need(buf.subarray(0, end), offset, headerLength, "TCP header with options");
  const flagBits = buf[offset + 13];
  return {
    sourcePort: buf.readUInt16BE(offset),
    destinationPort: buf.readUInt16BE(offset + 2),
    seq: buf.readUInt32BE(offset + 4),
    ack: buf.readUInt32BE(offset + 8),
    headerLength,
    flagBits,
    flags: tcpFlagNames(flagBits),
    window: buf.readUInt16BE(offset + 14),
    checksum: buf.readUInt16BE(offset + 16),
    urgent: buf.readUInt16BE(offset + 18),
    options: buf.subarray(offset + 20, offset + headerLength),
    payloadOffset: offset + headerLength,
    payloadLength: end - offset - headerLength,
  };
}

/** Fields of a TCP segment to build with {@link encodeTcp}. */
export interface TcpInit {
  sourcePort: number;
  destinationPort: number;
  seq?: number;
  ack?: number;
  flags?: readonly string[];
  window?: number;
  urgent?: number;
  /** Encoded options; zero-padded to a multiple of 4 here. */
  options?: Uint8Array;
  payload?: Uint8Array;
  /** With both addresses the checksum is computed; otherwise it is left 0. */
  source?: string;
  destination?: string;
}

/** Build a TCP segment. */
export function encodeTcp(init: TcpInit): Buffer {
  const opts = init.options ?? new Uint8Array(0);
  if (opts.length > MAX_TCP_OPTIONS_LENGTH) {
    throw new WireError("WIRE_ERR_INVALID_ARG", `TCP options are ${opts.length} bytes, at most ${MAX_TCP_OPTIONS_LENGTH} fit`);
  }
  const hl = 20 + ((opts.length + 3) & ~3);
  const payload = init.payload ?? new Uint8Array(0);
  const out = Buffer.alloc(hl + payload.length);
  out.writeUInt16BE(init.sourcePort, 0);
  out.writeUInt16BE(init.destinationPort, 2);
  out.writeUInt32BE((init.seq ?? 0) >>> 0, 4);
  out.writeUInt32BE((init.ack ?? 0) >>> 0, 8);
  out[12] = (hl / 4) << 4;
  out[13] = tcpFlagBits(init.flags ?? []);
  out.writeUInt16BE(init.window ?? 65535, 14);
  out.writeUInt16BE(init.urgent ?? 0, 18);
  out.set(opts, 20);
  out.set(payload, hl);
  if (init.source !== undefined && init.destination !== undefined) {
    const s = parseAddress(init.source, "source");
    const d = parseAddress(init.destination, "destination");
    out.writeUInt16BE(tcpChecksum(s.bytes, d.bytes, out), 16);
  }
  return out;
}

/**
 * Insert an option (e.g. a TOA) at the end of a segment's options area, growing the header, and
 * update the checksum incrementally (RFC 1624) instead of summing the payload again. The option is
 * NOP-padded in front to a multiple of 4 bytes. The caller fixes the IP length fields.
 *
 * What changes in the sum: the data-offset word (bytes 12-13), the TCP length in the pseudo-header,
 * and the inserted bytes; the payload shifts by a multiple of 4, so its words sum the same.
 */
export function insertTcpOption(segment: Buffer, option: Uint8Array): Buffer {
  need(segment, 0, 20, "TCP header");
  const hl = (segment[12] >> 4) * 4;
  if (hl < 20) throw new WireError("WIRE_ERR_MALFORMED", `TCP header: data offset ${segment[12] >> 4} below 5`, 12);
  need(segment, 0, hl, "TCP header with options");
  const padded = (option.length + 3) & ~3;
  if (hl - 20 + padded > MAX_TCP_OPTIONS_LENGTH) {
    throw new WireError("WIRE_ERR_INVALID_ARG", `no option space: ${hl - 20} bytes used, ${padded} more needed, ${MAX_TCP_OPTIONS_LENGTH} fit`);
  }
  const insert = Buffer.alloc(padded, 1); // NOPs, then the option right-aligned
  insert.set(option, padded - option.length);
  const out = Buffer.alloc(segment.length + padded);
  segment.copy(out, 0, 0, hl);
  insert.copy(out, hl);
  segment.copy(out, hl + padded, hl);
  const oldWord = segment.subarray(12, 14);
  out[12] = (((hl + padded) / 4) << 4) | (segment[12] & 0x0f);
  const lenBefore = Buffer.alloc(4);
  const lenAfter = Buffer.alloc(4);
  lenBefore.writeUInt32BE(segment.length);
  lenAfter.writeUInt32BE(out.length);
  let sum = segment.readUInt16BE(16);
  sum = updateChecksum(sum, oldWord, out.subarray(12, 14));
  sum = updateChecksum(sum, lenBefore, lenAfter);
  sum = updateChecksum(sum, new Uint8Array(0), insert);
  out.writeUInt16BE(sum, 16);
  return out;
}
