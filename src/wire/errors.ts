/**
 * Errors of the wire codecs. Decoders throw only {@link WireError}, so a caller parsing untrusted
 * bytes (a capture, a socket) needs one `catch` and can branch on a stable `code`. The one subclass,
 * CidrError (cidr.ts), carries the input and what was wrong with it, with WIRE_ERR_INVALID_ARG.
 */
import { CodedError } from "../shared/coded-error.js";

/** Stable error codes of the wire layer. */
export type WireErrorCode =
  /** The input ends before the structure does; more bytes might make it valid. */
  | "WIRE_ERR_TRUNCATED"
  /** The bytes can never be valid (bad length, bad signature, bad checksum...). */
  | "WIRE_ERR_MALFORMED"
  /** Valid framing, but a version, family or link type this codec does not handle. */
  | "WIRE_ERR_UNSUPPORTED"
  /** An encoder was given a value it cannot represent (bad address, port out of range...). */
  | "WIRE_ERR_INVALID_ARG"
  /** A CRC32c TLV did not match the header it protects. */
  | "WIRE_ERR_CHECKSUM";

/** The only error the wire codecs throw; `offset` is the byte where the problem was found. */
export class WireError extends CodedError<WireErrorCode> {
  readonly offset?: number;
  constructor(code: WireErrorCode, message: string, offset?: number) {
    super(code, offset === undefined ? message : `${message} (at byte ${offset})`);
    if (offset !== undefined) this.offset = offset;
  }
}

/** Throw WIRE_ERR_TRUNCATED unless `need` bytes are available in `buf` from `offset`. */
export function need(buf: Uint8Array, offset: number, need: number, what: string): void {
  if (offset < 0 || offset + need > buf.length) {
    throw new WireError("WIRE_ERR_TRUNCATED", `${what}: need ${need} bytes, have ${Math.max(0, buf.length - offset)}`, offset);
  }
}
