/** Parsing a PROXY v2 header: {@link parseProxyV2} checks it all and returns a lazy view. */
import { formatIpv4, formatIpv6 } from "./addr.js";
import { need, WireError } from "./errors.js";
import type { ProxyEndpoint } from "./proxy-v1.js";
import {
  PP2_TYPE,
  PROXY_V2_FAMILIES as FAMILIES,
  PROXY_V2_SIGNATURE,
  PROXY_V2_TRANSPORTS as TRANSPORTS,
  type ProxySslTlv,
  type ProxyTlv,
  type ProxyV2Family,
  type ProxyV2Header,
  type ProxyV2Transport,
} from "./proxy-v2-format.js";
import { CHECKED, checkTlvs, checkTlvValues, decodeSsl, LONG_UNIQUE_ID, NETNS_BIT, readTlvs, SSL_BIT, throwLongUniqueId } from "./proxy-v2-tlv.js";

/** Shared empty TLV list of headers without TLVs (frozen: callers must not push into it). */
const NO_TLVS: ProxyTlv[] = Object.freeze([]) as unknown as ProxyTlv[];

/** The NUL-terminated UTF-8 text in `buf[start..end)` (a UNIX path). */
function cString(buf: Buffer, start: number, end: number): string {
  let z = start;
  while (z < end && buf[z] !== 0) z++;
  return buf.toString("utf8", start, z);
}

/**
 * The source (`side` 0) or destination (1) of a header's address block, which starts at byte 16:
 * INET [src 4][dst 4][sport 2][dport 2], INET6 [src 16][dst 16][sport 2][dport 2], UNIX [108][108].
 */
function endpointAt(b: Buffer, family: ProxyV2Family, side: 0 | 1): ProxyEndpoint | { path: string } | undefined {
  switch (family) {
    case "INET":
      return { address: formatIpv4(b, 16 + 4 * side), port: (b[24 + 2 * side] << 8) | b[25 + 2 * side] };
    case "INET6":
      return { address: formatIpv6(b, 16 + 16 * side), port: (b[48 + 2 * side] << 8) | b[49 + 2 * side] };
    case "UNIX":
      return { path: cString(b, 16 + 108 * side, 124 + 108 * side) };
    default:
      return undefined;
  }
}

/** The errors of the fixed 16 bytes, in the order the checks were always made. */
function badFixedHeader(buf: Buffer): never {
  const vc = buf[12];
  if (vc >> 4 !== 2) throw new WireError("WIRE_ERR_UNSUPPORTED", `PROXY v2: version ${vc >> 4}, expected 2`, 12);
  const cmd = vc & 0xf;
  if (cmd > 1) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: command ${cmd} is neither LOCAL (0) nor PROXY (1)`, 12);
  const ft = buf[13];
  const fam = ft >> 4;
  const tr = ft & 0xf;
  if (fam > 3 || tr > 2) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: family/transport byte 0x${ft.toString(16)} is unknown`, 13);
  const length = 16 + ((buf[14] << 8) | buf[15]);
  need(buf, 0, length, "PROXY v2 header");
  const alen = [0, 12, 36, 216][fam];
  throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: length ${length - 16} is shorter than the ${FAMILIES[fam]} addresses (${alen})`, 14);
}

function badSignature(buf: Buffer): never {
  let i = 0;
  while (buf[i] === PROXY_V2_SIGNATURE[i]) i++;
  throw new WireError("WIRE_ERR_MALFORMED", "PROXY v2: bad signature", i);
}

/** The TLV-derived fields of a header, decoded on first use. */
type TlvFields = Pick<ProxyV2Header, "alpn" | "authority" | "crc32c" | "uniqueId" | "ssl" | "netns">;
const NO_FIELDS: TlvFields = Object.freeze({});

/**
 * A validated v2 header read lazily from the buffer it was parsed from: the framing, the lengths, the
 * TLV framing and the CRC32C, UNIQUE_ID and SSL values are checked by {@link parseProxyV2}, so every
 * getter below succeeds; the address text, the TLV list and the TLV-derived fields are built on first
 * access and remembered. The header keeps a reference to the buffer (as the TLV values always did):
 * don't overwrite its bytes while the header is in use. `toObject()` (also `toJSON()`) returns the
 * plain object {@link decodeProxyV2} returns.
 */
export class ProxyV2View implements ProxyV2Header {
  readonly version: 2;
  readonly command: "LOCAL" | "PROXY";
  readonly family: ProxyV2Family;
  readonly transport: ProxyV2Transport;
  /** Total header size: 16 + the length field. */
  readonly length: number;
  /** The buffer the header starts at. */
  readonly buffer: Buffer;
  /** Offset of the TLVs (16 + the address block). */
  private readonly tlvStart: number;
  /** Known TLV types present (see checkTlvs). */
  private readonly seen: number;
  private src: ProxyEndpoint | { path: string } | undefined;
  private dst: ProxyEndpoint | { path: string } | undefined;
  private tlvList: ProxyTlv[] | undefined;
  private fields: TlvFields | undefined;

  constructor(buffer: Buffer, command: number, family: number, transport: number, length: number, tlvStart: number, seen: number) {
    this.version = 2;
    this.command = command === 1 ? "PROXY" : "LOCAL";
    this.family = FAMILIES[family];
    this.transport = TRANSPORTS[transport];
    this.length = length;
    this.buffer = buffer;
    this.tlvStart = tlvStart;
    this.seen = seen;
    this.src = undefined;
    this.dst = undefined;
    this.tlvList = undefined;
    this.fields = undefined;
  }

  get source(): ProxyEndpoint | { path: string } | undefined {
    if (this.src === undefined) this.src = endpointAt(this.buffer, this.family, 0);
    return this.src;
  }

  get destination(): ProxyEndpoint | { path: string } | undefined {
    if (this.dst === undefined) this.dst = endpointAt(this.buffer, this.family, 1);
    return this.dst;
  }

  /** The TLVs in header order; values are views of the buffer. */
  get tlvs(): ProxyTlv[] {
    if (this.tlvList !== undefined) return this.tlvList;
    return (this.tlvList = this.tlvStart === this.length ? NO_TLVS : readTlvs(this.buffer, this.tlvStart, this.length));
  }

  private get tlvFields(): TlvFields {
    if (this.fields !== undefined) return this.fields;
    if (this.seen === 0) return (this.fields = NO_FIELDS);
    const f: TlvFields = {};
    // The last TLV of a type wins, as in decodeProxyV2.
    for (const tlv of this.tlvs) {
      switch (tlv.type) {
        case PP2_TYPE.ALPN:
          f.alpn = tlv.value.toString("latin1");
          break;
        case PP2_TYPE.AUTHORITY:
          f.authority = tlv.value.toString("utf8");
          break;
        case PP2_TYPE.CRC32C:
          f.crc32c = tlv.value.readUInt32BE(0);
          break;
        case PP2_TYPE.UNIQUE_ID:
          f.uniqueId = tlv.value;
          break;
        case PP2_TYPE.SSL:
          f.ssl = decodeSsl(tlv.value);
          break;
        case PP2_TYPE.NETNS:
          f.netns = tlv.value.toString("latin1");
          break;
      }
    }
    return (this.fields = f);
  }

  get alpn(): string | undefined {
    return this.seen & (1 << PP2_TYPE.ALPN) ? this.tlvFields.alpn : undefined;
  }
  get authority(): string | undefined {
    return this.seen & (1 << PP2_TYPE.AUTHORITY) ? this.tlvFields.authority : undefined;
  }
  /** The CRC32C TLV's value (already verified against the header). */
  get crc32c(): number | undefined {
    return this.seen & (1 << PP2_TYPE.CRC32C) ? this.tlvFields.crc32c : undefined;
  }
  get uniqueId(): Buffer | undefined {
    return this.seen & (1 << PP2_TYPE.UNIQUE_ID) ? this.tlvFields.uniqueId : undefined;
  }
  get ssl(): ProxySslTlv | undefined {
    return this.seen & SSL_BIT ? this.tlvFields.ssl : undefined;
  }
  get netns(): string | undefined {
    return this.seen & NETNS_BIT ? this.tlvFields.netns : undefined;
  }

  /** The bytes after the header in the buffer (a view). */
  get rest(): Buffer {
    return this.buffer.subarray(this.length);
  }

  /** Everything decoded, as a plain object (optional properties only when present). */
  toObject(): ProxyV2Header {
    const h: ProxyV2Header = {
      version: 2,
      command: this.command,
      family: this.family,
      transport: this.transport,
      tlvs: this.tlvs,
      length: this.length,
    };
    const source = this.source;
    if (source !== undefined) {
      h.source = source;
      h.destination = this.destination;
    }
    if (this.seen === 0) return h;
    const f = this.tlvFields;
    if (f.alpn !== undefined) h.alpn = f.alpn;
    if (f.authority !== undefined) h.authority = f.authority;
    if (f.crc32c !== undefined) h.crc32c = f.crc32c;
    if (f.uniqueId !== undefined) h.uniqueId = f.uniqueId;
    if (f.ssl !== undefined) h.ssl = f.ssl;
    if (f.netns !== undefined) h.netns = f.netns;
    return h;
  }

  toJSON(): ProxyV2Header {
    return this.toObject();
  }

  [Symbol.for("nodejs.util.inspect.custom")](): ProxyV2Header {
    return this.toObject();
  }
}

/**
 * Validate the v2 header at the start of `buf` and return a lazy view of it (extra bytes after it are
 * ignored). It rejects exactly what {@link decodeProxyV2} rejects, with the same errors.
 */
export function parseProxyV2(buf: Buffer): ProxyV2View {
  const n = buf.length;
  if (n < 16) need(buf, 0, 16, "PROXY v2 header");
  if (
    buf[0] !== 0x0d || buf[1] !== 0x0a || buf[2] !== 0x0d || buf[3] !== 0x0a || buf[4] !== 0x00 || buf[5] !== 0x0d ||
    buf[6] !== 0x0a || buf[7] !== 0x51 || buf[8] !== 0x55 || buf[9] !== 0x49 || buf[10] !== 0x54 || buf[11] !== 0x0a
  ) {
    badSignature(buf);
  }
  const vc = buf[12];
  const ft = buf[13];
  const fam = ft >> 4;
  const tr = ft & 0xf;
  const length = 16 + ((buf[14] << 8) | buf[15]);
  const alen = fam === 1 ? 12 : fam === 2 ? 36 : fam === 3 ? 216 : 0;
  // One test for the common case; badFixedHeader reports the first problem in the eager order.
  if ((vc & 0xfe) !== 0x20 || fam > 3 || tr > 2 || length > n || length - 16 < alen) badFixedHeader(buf);
  const cmd = vc & 0xf;
  const tlvStart = 16 + alen;
  let seen = 0;
  if (tlvStart !== length) {
    seen = checkTlvs(buf, tlvStart, length);
    if (seen & CHECKED) checkTlvValues(buf, tlvStart, length);
    else if (seen & LONG_UNIQUE_ID) throwLongUniqueId(buf, tlvStart, length);
  }
  return new ProxyV2View(buf, cmd, fam, tr, length, tlvStart, seen);
}

/**
 * Decode a complete v2 header at the start of `buf` (extra bytes after it are ignored) into a plain
 * object with everything decoded. {@link parseProxyV2} does the same checks and decodes on demand.
 */
export function decodeProxyV2(buf: Buffer): ProxyV2Header {
  return parseProxyV2(buf).toObject();
}
