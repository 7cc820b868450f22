/**
 * HAProxy PROXY protocol version 2 (haproxy doc/proxy-protocol.txt §2.2): a binary header.
 *
 * ```
 *  [signature 0D0A0D0A000D0A515549540A (12)][ver<<4|cmd][family<<4|transport][length be16]
 *  INET:  [src 4][dst 4][sport 2][dport 2]            12 bytes
 *  INET6: [src 16][dst 16][sport 2][dport 2]          36 bytes
 *  UNIX:  [src path 108][dst path 108]                216 bytes
 *  then TLVs up to `length`: [type][length be16][value]
 * ```
 */
import { formatIpv4, formatIpv6, parseAddress, checkPort } from "./addr.js";
import { crc32c, crc32cZeros } from "./crc32c.js";
import { WireError, need } from "./errors.js";
import type { ProxyEndpoint } from "./proxy-v1.js";

/** The 12-byte v2 signature. */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** TLV types of spec §2.2.7-§2.2.8. */
export const PP2_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  SSL_VERSION: 0x21,
  SSL_CN: 0x22,
  SSL_CIPHER: 0x23,
  SSL_SIG_ALG: 0x24,
  SSL_KEY_ALG: 0x25,
  NETNS: 0x30,
} as const;

/** Longest PP2_TYPE_UNIQUE_ID value (§2.2.5). */
export const PROXY_V2_MAX_UNIQUE_ID = 128;

/** A raw TLV. */
export interface ProxyTlv {
  type: number;
  value: Buffer;
}

/** The SSL TLV (§2.2.6): client flags, verify result, and its own sub-TLVs. */
export interface ProxySslTlv {
  client: number;
  verify: number;
  version?: string;
  cn?: string;
  cipher?: string;
  sigAlg?: string;
  keyAlg?: string;
  tlvs: ProxyTlv[];
}

/** Address family names of the v2 header. */
export type ProxyV2Family = "UNSPEC" | "INET" | "INET6" | "UNIX";
/** Transport names of the v2 header. */
export type ProxyV2Transport = "UNSPEC" | "STREAM" | "DGRAM";

/** A decoded v2 header. Addresses are absent for UNSPEC (and ignored by receivers for LOCAL). */
export interface ProxyV2Header {
  version: 2;
  command: "LOCAL" | "PROXY";
  family: ProxyV2Family;
  transport: ProxyV2Transport;
  source?: ProxyEndpoint | { path: string };
  destination?: ProxyEndpoint | { path: string };
  tlvs: ProxyTlv[];
  alpn?: string;
  authority?: string;
  crc32c?: number;
  uniqueId?: Buffer;
  ssl?: ProxySslTlv;
  netns?: string;
  /** Total header size: 16 + the length field. */
  length: number;
}

const FAMILIES: ProxyV2Family[] = ["UNSPEC", "INET", "INET6", "UNIX"];
const TRANSPORTS: ProxyV2Transport[] = ["UNSPEC", "STREAM", "DGRAM"];
/** Shared empty TLV list of headers without TLVs (frozen: callers must not push into it). */
const NO_TLVS: ProxyTlv[] = Object.freeze([]) as unknown as ProxyTlv[];

/** What {@link encodeProxyV2} takes; the family comes from the source (IPv4, IPv6 or `{path}`). */
export interface ProxyV2Init {
  command: "PROXY" | "LOCAL";
  transport?: "STREAM" | "DGRAM" | "UNSPEC";
  source?: ProxyEndpoint | { path: string };
  destination?: ProxyEndpoint | { path: string };
  tlvs?: { type: number; value: Uint8Array | string }[];
  /** Append a CRC32C TLV covering the whole header. */
  crc32c?: boolean;
}

function isPath(e: ProxyEndpoint | { path: string }): e is { path: string } {
  return typeof (e as { path?: unknown }).path === "string";
}

/** Encode a v2 header. */
export function encodeProxyV2(init: ProxyV2Init): Buffer {
  if (init.command !== "PROXY" && init.command !== "LOCAL") {
    throw new WireError("WIRE_ERR_INVALID_ARG", `command must be PROXY or LOCAL, got ${JSON.stringify(init.command)}`);
  }
  const transport = init.transport ?? "STREAM";
  const t = TRANSPORTS.indexOf(transport);
  if (t < 0) throw new WireError("WIRE_ERR_INVALID_ARG", `transport must be STREAM, DGRAM or UNSPEC, got ${JSON.stringify(transport)}`);
  let fam = 0;
  let addr: Buffer = Buffer.alloc(0);
  if (init.source || init.destination) {
    if (!init.source || !init.destination) throw new WireError("WIRE_ERR_INVALID_ARG", "source and destination go together");
    const s = init.source;
    const d = init.destination;
    if (isPath(s) || isPath(d)) {
      if (!isPath(s) || !isPath(d)) throw new WireError("WIRE_ERR_INVALID_ARG", "a UNIX source needs a UNIX destination");
      fam = 3;
      addr = Buffer.alloc(216);
      for (const [p, at] of [[s.path, 0], [d.path, 108]] as const) {
        const b = Buffer.from(p, "utf8");
        if (b.length > 108) throw new WireError("WIRE_ERR_INVALID_ARG", `UNIX path is ${b.length} bytes, at most 108`);
        b.copy(addr, at);
      }
    } else {
      const sa = parseAddress(s.address, "source.address");
      const da = parseAddress(d.address, "destination.address");
      if (sa.family !== da.family) throw new WireError("WIRE_ERR_INVALID_ARG", "source and destination must be the same family");
      fam = sa.family === 4 ? 1 : 2;
      const n = sa.bytes.length;
      addr = Buffer.alloc(2 * n + 4);
      addr.set(sa.bytes, 0);
      addr.set(da.bytes, n);
      addr.writeUInt16BE(checkPort(s.port, "source.port"), 2 * n);
      addr.writeUInt16BE(checkPort(d.port, "destination.port"), 2 * n + 2);
    }
  } else if (init.command === "PROXY") {
    throw new WireError("WIRE_ERR_INVALID_ARG", "PROXY command needs source and destination");
  }
  const tlvParts: Buffer[] = [];
  for (const tlv of init.tlvs ?? []) {
    const v = typeof tlv.value === "string" ? Buffer.from(tlv.value, "utf8") : Buffer.from(tlv.value);
    if (!Number.isInteger(tlv.type) || tlv.type < 0 || tlv.type > 255) throw new WireError("WIRE_ERR_INVALID_ARG", `TLV type must be 0..255, got ${tlv.type}`);
    if (tlv.type === PP2_TYPE.UNIQUE_ID && v.length > PROXY_V2_MAX_UNIQUE_ID) {
      throw new WireError("WIRE_ERR_INVALID_ARG", `UNIQUE_ID is ${v.length} bytes, at most ${PROXY_V2_MAX_UNIQUE_ID}`);
    }
    if (v.length > 0xffff) throw new WireError("WIRE_ERR_INVALID_ARG", `TLV 0x${tlv.type.toString(16)} value longer than 65535 bytes`);
    const h = Buffer.alloc(3);
    h[0] = tlv.type;
    h.writeUInt16BE(v.length, 1);
    tlvParts.push(h, v);
  }
  if (init.crc32c) tlvParts.push(Buffer.from([PP2_TYPE.CRC32C, 0, 4, 0, 0, 0, 0]));
  const body = Buffer.concat([addr, ...tlvParts]);
  if (body.length > 0xffff) throw new WireError("WIRE_ERR_INVALID_ARG", `header body is ${body.length} bytes, at most 65535`);
  const out = Buffer.alloc(16 + body.length);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = 0x20 | (init.command === "PROXY" ? 1 : 0);
  out[13] = (fam << 4) | t;
  out.writeUInt16BE(body.length, 14);
  body.copy(out, 16);
  // §2.2.2: the CRC covers the whole header with the CRC field itself zeroed.
  if (init.crc32c) out.writeUInt32BE(crc32c(out), out.length - 4);
  return out;
}

/** Is `buf` (possibly short) a prefix of the v2 signature? */
export function startsLikeProxyV2(buf: Uint8Array): boolean {
  const n = Math.min(buf.length, 12);
  for (let i = 0; i < n; i++) if (buf[i] !== PROXY_V2_SIGNATURE[i]) return false;
  return true;
}

/** Total size of the v2 header at the start of `buf` once 16 bytes are there, else 0. */
export function proxyV2Length(buf: Uint8Array): number {
  return buf.length < 16 ? 0 : 16 + ((buf[14] << 8) | buf[15]);
}

function decodeSsl(v: Buffer): ProxySslTlv {
  const ssl: ProxySslTlv = { client: v[0], verify: v.readUInt32BE(1), tlvs: [] };
  for (const sub of readTlvs(v, 5, v.length)) {
    ssl.tlvs.push(sub);
    const s = sub.value.toString("latin1");
    if (sub.type === PP2_TYPE.SSL_VERSION) ssl.version = s;
    else if (sub.type === PP2_TYPE.SSL_CN) ssl.cn = sub.value.toString("utf8");
    else if (sub.type === PP2_TYPE.SSL_CIPHER) ssl.cipher = s;
    else if (sub.type === PP2_TYPE.SSL_SIG_ALG) ssl.sigAlg = s;
    else if (sub.type === PP2_TYPE.SSL_KEY_ALG) ssl.keyAlg = s;
  }
  return ssl;
}

/** The TLVs of `buf[start..end)`, already checked by {@link checkTlvs}. */
function readTlvs(buf: Buffer, start: number, end: number): ProxyTlv[] {
  const tlvs: ProxyTlv[] = [];
  for (let i = start; i < end; ) {
    const len = (buf[i + 1] << 8) | buf[i + 2];
    tlvs.push({ type: buf[i], value: buf.subarray(i + 3, i + 3 + len) });
    i += 3 + len;
  }
  return tlvs;
}

/** Cold paths of {@link checkTlvs}: the errors, out of line so the checks stay small enough to inline. */
function tlvCut(end: number, at: number): never {
  throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: TLV header cut by the header length (${end - at} bytes left)`, at);
}
function tlvOverrun(buf: Buffer, at: number, len: number): never {
  throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: TLV 0x${buf[at].toString(16)} length ${len} runs past the header`, at);
}
function uniqueIdTooLong(at: number, len: number): never {
  throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: UNIQUE_ID is ${len} bytes, at most ${PROXY_V2_MAX_UNIQUE_ID}`, at);
}

const SSL_BIT = 1 << 6;
const NETNS_BIT = 1 << 7;
/** Set by checkTlvs when a UNIQUE_ID is longer than allowed (reported after the framing checks). */
const LONG_UNIQUE_ID = 1 << 8;
/** TLV types whose values need a second, ordered pass (CRC32C and SSL). */
const CHECKED = (1 << PP2_TYPE.CRC32C) | SSL_BIT;

/**
 * Check the framing of the TLVs in `buf[start..end)` and return a bit set of the known types present
 * (bit = 1 << type for types 1..5, SSL_BIT, NETNS_BIT, and LONG_UNIQUE_ID).
 */
function checkTlvs(buf: Buffer, start: number, end: number): number {
  let seen = 0;
  let i = start;
  while (i < end) {
    if (i + 3 > end) tlvCut(end, i);
    const type = buf[i];
    const len = (buf[i + 1] << 8) | buf[i + 2];
    const next = i + 3 + len;
    if (next > end) tlvOverrun(buf, i, len);
    if (type <= 5) {
      seen |= 1 << type;
      if (type === PP2_TYPE.UNIQUE_ID && len > PROXY_V2_MAX_UNIQUE_ID) seen |= LONG_UNIQUE_ID;
    } else if (type === PP2_TYPE.SSL) seen |= SSL_BIT;
    else if (type === PP2_TYPE.NETNS) seen |= NETNS_BIT;
    i = next;
  }
  return seen;
}

/**
 * The value checks of CRC32C, UNIQUE_ID and SSL TLVs, in TLV order (framing already checked), so the
 * first bad one is reported, as the eager decoder did.
 */
function checkTlvValues(buf: Buffer, start: number, length: number): void {
  for (let i = start; i < length; ) {
    const type = buf[i];
    const len = (buf[i + 1] << 8) | buf[i + 2];
    const vo = i + 3;
    if (type === PP2_TYPE.CRC32C) {
      if (len !== 4) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: CRC32C TLV is ${len} bytes, expected 4`, i);
      const stored = ((buf[vo] << 24) | (buf[vo + 1] << 16) | (buf[vo + 2] << 8) | buf[vo + 3]) >>> 0;
      // §2.2.2: the CRC covers the whole header with the CRC field itself zeroed.
      const c = crc32c(buf, vo + 4, length, crc32cZeros(4, crc32c(buf, 0, vo)));
      if (c !== stored) {
        throw new WireError("WIRE_ERR_CHECKSUM", `PROXY v2: CRC32C 0x${stored.toString(16)} does not match the header (0x${c.toString(16)})`, vo);
      }
    } else if (type === PP2_TYPE.UNIQUE_ID) {
      if (len > PROXY_V2_MAX_UNIQUE_ID) uniqueIdTooLong(i, len);
    } else if (type === PP2_TYPE.SSL) {
      if (len < 5) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: SSL TLV is ${len} bytes, at least 5`, vo);
      checkTlvs(buf, vo + 5, vo + len);
    }
    i = vo + len;
  }
}

/** Where the first UNIQUE_ID longer than allowed starts (checkTlvs saw one). */
function throwLongUniqueId(buf: Buffer, start: number, length: number): never {
  for (let i = start; i < length; ) {
    const len = (buf[i + 1] << 8) | buf[i + 2];
    if (buf[i] === PP2_TYPE.UNIQUE_ID && len > PROXY_V2_MAX_UNIQUE_ID) uniqueIdTooLong(i, len);
    i += 3 + len;
  }
  throw new WireError("WIRE_ERR_MALFORMED", "PROXY v2: UNIQUE_ID too long", start);
}

function cString(buf: Buffer, start: number, end: number): string {
  let z = start;
  while (z < end && buf[z] !== 0) z++;
  return buf.toString("utf8", start, z);
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
interface TlvFields {
  alpn?: string;
  authority?: string;
  crc32c?: number;
  uniqueId?: Buffer;
  ssl?: ProxySslTlv;
  netns?: string;
}
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
    if (this.src !== undefined) return this.src;
    const b = this.buffer;
    switch (this.family) {
      case "INET":
        return (this.src = { address: formatIpv4(b, 16), port: (b[24] << 8) | b[25] });
      case "INET6":
        return (this.src = { address: formatIpv6(b, 16), port: (b[48] << 8) | b[49] });
      case "UNIX":
        return (this.src = { path: cString(b, 16, 124) });
      default:
        return undefined;
    }
  }

  get destination(): ProxyEndpoint | { path: string } | undefined {
    if (this.dst !== undefined) return this.dst;
    const b = this.buffer;
    switch (this.family) {
      case "INET":
        return (this.dst = { address: formatIpv4(b, 20), port: (b[26] << 8) | b[27] });
      case "INET6":
        return (this.dst = { address: formatIpv6(b, 32), port: (b[50] << 8) | b[51] });
      case "UNIX":
        return (this.dst = { path: cString(b, 124, 232) });
      default:
        return undefined;
    }
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
