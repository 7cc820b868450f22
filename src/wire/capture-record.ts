/** The record type shared by the pcap and pcapng readers, and the interface of their block parsers. */

/** One captured frame as stored in the file. */
export interface CaptureRecord {
  /** 0-based position among the packets of the file (Wireshark's number is index + 1). */
  index: number;
  /** Byte offset of the record in the file. */
  fileOffset: number;
  /** pcapng interface id (0 for pcap). */
  interfaceId: number;
  linkType: number;
  /** Seconds since the epoch (fractional; microsecond precision is exact, nanoseconds approximate). */
  timestamp: number;
  /** Captured bytes (a view into the reader's buffer; copy it to keep it past the next chunk). */
  data: Buffer;
  /** Length on the wire; more than data.length when the snap length cut the frame. */
  originalLength: number;
}

/**
 * A format's incremental parser: `next` parses one unit at `pos` in `buf` (whose first byte is file
 * offset `base`) and returns its size and record, or null when more bytes are needed.
 */
export interface BlockParser {
  readonly format: "pcap" | "pcapng";
  next(buf: Buffer, pos: number, base: number): { size: number; record?: Omit<CaptureRecord, "index"> } | null;
}

/** Largest block or record accepted: larger lengths are corruption, not packets (keeps streams bounded). */
export const MAX_RECORD_LENGTH = 16 * 1024 * 1024;
