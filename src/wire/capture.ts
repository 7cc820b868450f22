/**
 * Capture file reading, format detected from the first bytes (pcap or pcapng), over a whole Buffer or
 * incrementally over chunks (a file stream), so a large capture is never loaded whole. {@link packets}
 * and {@link packetsFromStream} also decode the link, IP and TCP headers of each frame.
 */
import { WireError } from "./errors.js";
import type { BlockParser, CaptureRecord } from "./capture-record.js";
import { decodeIp, IPPROTO_TCP, type IpHeader } from "./ip.js";
import { ipOffset } from "./link.js";
import { PcapParser, PCAP_MAGIC_NS, PCAP_MAGIC_US } from "./pcap.js";
import { PcapngParser, PCAPNG_SHB } from "./pcapng.js";
import { decodeTcp, type TcpHeader } from "./tcp.js";

export type { CaptureRecord } from "./capture-record.js";

/** Which format the first 4 bytes announce, or null. */
export function detectCaptureFormat(head: Uint8Array): "pcap" | "pcapng" | null {
  if (head.length < 4) return null;
  const be = ((head[0] << 24) | (head[1] << 16) | (head[2] << 8) | head[3]) >>> 0;
  const le = ((head[3] << 24) | (head[2] << 16) | (head[1] << 8) | head[0]) >>> 0;
  if (be === PCAPNG_SHB) return "pcapng";
  if (be === PCAP_MAGIC_US || be === PCAP_MAGIC_NS || le === PCAP_MAGIC_US || le === PCAP_MAGIC_NS) return "pcap";
  return null;
}

/**
 * Incremental capture reader: `push` chunks, get the complete records they finish; `end` checks that
 * nothing is left half-read. Errors are WireErrors whose offset is the file byte.
 */
export class CaptureReader {
  private parser: BlockParser | null = null;
  private pending: Buffer = Buffer.alloc(0);
  /** File offset of pending[0]. */
  private base = 0;
  private count = 0;

  /** The detected format, once known. */
  get format(): "pcap" | "pcapng" | null {
    return this.parser?.format ?? null;
  }

  /** Bytes consumed so far (complete records and headers). */
  get offset(): number {
    return this.base;
  }

  /** Add the next chunk; returns the records it completes. */
  push(chunk: Uint8Array): CaptureRecord[] {
    const c = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    const buf = this.pending.length === 0 ? c : Buffer.concat([this.pending, c]);
    if (!this.parser) {
      if (buf.length < 4) {
        this.pending = buf;
        return [];
      }
      const f = detectCaptureFormat(buf);
      if (!f) {
        const magic = buf.readUInt32BE(0).toString(16).padStart(8, "0");
        throw new WireError("WIRE_ERR_MALFORMED", `not a pcap or pcapng file (first bytes 0x${magic})`, 0);
      }
      this.parser = f === "pcap" ? new PcapParser() : new PcapngParser();
    }
    const out: CaptureRecord[] = [];
    let pos = 0;
    for (;;) {
      const r = this.parser.next(buf, pos, this.base);
      if (!r) break;
      if (r.record) out.push({ index: this.count++, ...r.record });
      pos += r.size;
    }
    this.base += pos;
    this.pending = buf.subarray(pos);
    return out;
  }

  /** Declare the input finished; throws WIRE_ERR_TRUNCATED naming the byte where a record was cut. */
  end(): void {
    if (this.pending.length === 0 && this.parser) return;
    if (!this.parser) {
      throw new WireError("WIRE_ERR_TRUNCATED", `not a pcap or pcapng file: only ${this.pending.length} bytes`, 0);
    }
    throw new WireError("WIRE_ERR_TRUNCATED", `capture truncated at byte ${this.base}: ${this.pending.length} bytes of an incomplete record`, this.base);
  }
}

/** Every record of a capture held in memory. */
export function* readCapture(buf: Buffer): Generator<CaptureRecord> {
  const r = new CaptureReader();
  yield* r.push(buf);
  r.end();
}

/** Every record of a capture read from a stream of chunks (e.g. fs.createReadStream). */
export async function* readCaptureStream(source: AsyncIterable<Uint8Array>): AsyncGenerator<CaptureRecord> {
  const r = new CaptureReader();
  for await (const chunk of source) yield* r.push(chunk);
  r.end();
}

/** A captured frame with its IP and TCP headers decoded where present. */
export interface Packet extends CaptureRecord {
  ip: IpHeader | null;
  tcp: TcpHeader | null;
  /** Why `ip` or `tcp` is null although the frame seemed to carry them (truncated, malformed...). */
  error?: string;
}

/** Decode the link, IP and TCP layers of a record; never throws (problems go to `error`). */
export function decodePacket(rec: CaptureRecord): Packet {
  const p: Packet = { ...rec, ip: null, tcp: null };
  try {
    const off = ipOffset(rec.linkType, rec.data);
    if (off < 0) return p;
    p.ip = decodeIp(rec.data, off);
    if (p.ip.protocol === IPPROTO_TCP && !p.ip.laterFragment) p.tcp = decodeTcp(rec.data, p.ip.payloadOffset, p.ip.payloadEnd);
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
    p.error = e.message;
  }
  return p;
}

/** Decoded packets of a capture in memory. */
export function* packets(buf: Buffer): Generator<Packet> {
  for (const rec of readCapture(buf)) yield decodePacket(rec);
}

/** Decoded packets of a capture stream. */
export async function* packetsFromStream(source: AsyncIterable<Uint8Array>): AsyncGenerator<Packet> {
  for await (const rec of readCaptureStream(source)) yield decodePacket(rec);
}
