/**
 * PROXY protocol header detection and streaming parse: feed the first bytes of a connection in
 * whatever chunks the socket delivers, get the header and the bytes after it.
 */
import { WireError } from "./errors.js";
import { decodeProxyV1Line, findProxyV1End, type ProxyV1Header } from "./proxy-v1.js";
import { parseProxyV2, proxyV2Length, startsLikeProxyV2, type ProxyV2Header, type ProxyV2View } from "./proxy-v2.js";

/** A v1 or v2 header (v2 headers from the parser and decodeProxyHeader are {@link ProxyV2View}s). */
export type ProxyHeader = ProxyV1Header | ProxyV2Header;

/** What {@link ProxyHeaderParser.push} returns. */
export type ProxyParseResult = { state: "need-more" } | { state: "done"; header: ProxyHeader; rest: Buffer };

const V1_PREFIX = Buffer.from("PROXY ", "latin1");

function startsLikeProxyV1(buf: Uint8Array): boolean {
  const n = Math.min(buf.length, V1_PREFIX.length);
  for (let i = 0; i < n; i++) if (buf[i] !== V1_PREFIX[i]) return false;
  return true;
}

/**
 * Incremental PROXY header parser (v1 or v2, detected from the first bytes). It decides as early as
 * the bytes allow: a first byte that starts neither signature fails at once, and a v1 line without
 * CRLF within 107 bytes fails instead of waiting.
 */
export class ProxyHeaderParser {
  private buf: Buffer = Buffer.alloc(0);
  private finished = false;

  /** Add the next chunk; throws WireError on invalid input or when called after `done`. */
  push(chunk: Uint8Array): ProxyParseResult {
    if (this.finished) throw new WireError("WIRE_ERR_INVALID_ARG", "PROXY header parser already returned its header");
    const c = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    this.buf = this.buf.length === 0 ? c : Buffer.concat([this.buf, c]);
    const b = this.buf;
    if (b.length === 0) return { state: "need-more" };
    if (startsLikeProxyV2(b)) {
      const len = proxyV2Length(b);
      if (len === 0 || b.length < len) return { state: "need-more" };
      return this.done(parseProxyV2(b), len);
    }
    if (startsLikeProxyV1(b)) {
      const end = findProxyV1End(b);
      if (end === 0) return { state: "need-more" };
      return this.done(decodeProxyV1Line(b, end), end);
    }
    throw new WireError("WIRE_ERR_MALFORMED", "not a PROXY protocol header: starts with neither \"PROXY \" nor the v2 signature", 0);
  }

  private done(header: ProxyHeader, len: number): ProxyParseResult {
    this.finished = true;
    const rest = this.buf.subarray(len);
    this.buf = Buffer.alloc(0);
    return { state: "done", header, rest };
  }
}

/**
 * What {@link decodeProxyHeader} returns: the header and, on first access, the bytes after it (a view
 * of the input; making it costs more than validating a v2 header, so it is made only when asked for).
 */
export class DecodedProxyHeader {
  readonly header: ProxyHeader;
  private readonly input: Buffer;
  private after: Buffer | undefined;

  constructor(header: ProxyHeader, input: Buffer, rest?: Buffer) {
    this.header = header;
    this.input = input;
    this.after = rest;
  }

  /** The bytes after the header (a view of the input). */
  get rest(): Buffer {
    if (this.after === undefined) this.after = this.input.subarray(this.header.length);
    return this.after;
  }
}

/**
 * Decode the PROXY header at the start of `buf`; throws WIRE_ERR_TRUNCATED if it is incomplete. A v2
 * header comes back as a {@link ProxyV2View}: fully validated, its address text and TLVs decoded on
 * first access.
 */
export function decodeProxyHeader(buf: Buffer): DecodedProxyHeader {
  // Fast path for v2, the binary and common case (no copy, no parser object).
  if (buf.length >= 16 && buf[0] === 0x0d) return new DecodedProxyHeader(parseProxyV2(buf), buf); // checks the whole signature itself
  const r = new ProxyHeaderParser().push(buf);
  if (r.state === "need-more") throw new WireError("WIRE_ERR_TRUNCATED", `PROXY header incomplete after ${buf.length} bytes`, buf.length);
  return new DecodedProxyHeader(r.header, buf, r.rest);
}
