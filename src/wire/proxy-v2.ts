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
import { crc32c } from "./crc32c.js";
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
const ADDRESS_LENGTH = [0, 12, 36, 216];
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

function decodeSsl(v: Buffer, at: number): ProxySslTlv {
  if (v.length < 5) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: SSL TLV is ${v.length} bytes, at least 5`, at);
  const ssl: ProxySslTlv = { client: v[0], verify: v.readUInt32BE(1), tlvs: [] };
  for (const sub of readTlvs(v, 5, v.length, at)) {
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

function readTlvs(buf: Buffer, start: number, end: number, base: number): ProxyTlv[] {
  const tlvs: ProxyTlv[] = [];
  let i = start;
  while (i < end) {
    if (i + 3 > end) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: TLV header cut by the header length (${end - i} bytes left)`, base + i);
    const len = (buf[i + 1] << 8) | buf[i + 2];
    if (i + 3 + len > end) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: TLV 0x${buf[i].toString(16)} length ${len} runs past the header`, base + i);
    tlvs.push({ type: buf[i], value: buf.subarray(i + 3, i + 3 + len) });
    i += 3 + len;
  }
  return tlvs;
}

function cString(buf: Buffer, start: number, end: number): string {
  let z = start;
  while (z < end && buf[z] !== 0) z++;
  return buf.toString("utf8", start, z);
}

/** Decode a complete v2 header at the start of `buf` (extra bytes after it are ignored). */
export function decodeProxyV2(buf: Buffer): ProxyV2Header {
  need(buf, 0, 16, "PROXY v2 header");
  for (let i = 0; i < 12; i++) {
    if (buf[i] !== PROXY_V2_SIGNATURE[i]) throw new WireError("WIRE_ERR_MALFORMED", "PROXY v2: bad signature", i);
  }
  const vc = buf[12];
  if (vc >> 4 !== 2) throw new WireError("WIRE_ERR_UNSUPPORTED", `PROXY v2: version ${vc >> 4}, expected 2`, 12);
  const cmd = vc & 0xf;
  if (cmd > 1) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: command ${cmd} is neither LOCAL (0) nor PROXY (1)`, 12);
  const ft = buf[13];
  const fam = ft >> 4;
  const tr = ft & 0xf;
  if (fam > 3 || tr > 2) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: family/transport byte 0x${ft.toString(16)} is unknown`, 13);
  const length = 16 + buf.readUInt16BE(14);
  need(buf, 0, length, "PROXY v2 header");
  const alen = ADDRESS_LENGTH[fam];
  if (length - 16 < alen) {
    throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: length ${length - 16} is shorter than the ${FAMILIES[fam]} addresses (${alen})`, 14);
  }
  let source: ProxyV2Header["source"];
  let destination: ProxyV2Header["destination"];
  if (fam === 1) {
    source = { address: formatIpv4(buf, 16), port: (buf[24] << 8) | buf[25] };
    destination = { address: formatIpv4(buf, 20), port: (buf[26] << 8) | buf[27] };
  } else if (fam === 2) {
    source = { address: formatIpv6(buf, 16), port: (buf[48] << 8) | buf[49] };
    destination = { address: formatIpv6(buf, 32), port: (buf[50] << 8) | buf[51] };
  } else if (fam === 3) {
    source = { path: cString(buf, 16, 124) };
    destination = { path: cString(buf, 124, 232) };
  }
  const h: ProxyV2Header = {
    version: 2,
    command: cmd === 1 ? "PROXY" : "LOCAL",
    family: FAMILIES[fam],
    transport: TRANSPORTS[tr],
    tlvs: 16 + alen === length ? NO_TLVS : readTlvs(buf, 16 + alen, length, 0),
    length,
  };
  // Optional properties are set only when present, so deepEqual-style comparisons stay exact.
  if (source) {
    h.source = source;
    h.destination = destination;
  }
  if (h.tlvs.length === 0) return h;
  for (const tlv of h.tlvs) {
    const at = tlv.value.byteOffset - buf.byteOffset - 3;
    switch (tlv.type) {
      case PP2_TYPE.ALPN:
        h.alpn = tlv.value.toString("latin1");
        break;
      case PP2_TYPE.AUTHORITY:
        h.authority = tlv.value.toString("utf8");
        break;
      case PP2_TYPE.CRC32C: {
        if (tlv.value.length !== 4) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: CRC32C TLV is ${tlv.value.length} bytes, expected 4`, at);
        const stored = tlv.value.readUInt32BE(0);
        const vo = at + 3;
        let c = crc32c(buf, 0, vo);
        c = crc32c(new Uint8Array(4), 0, 4, c);
        c = crc32c(buf, vo + 4, length, c);
        if (c !== stored) {
          throw new WireError("WIRE_ERR_CHECKSUM", `PROXY v2: CRC32C 0x${stored.toString(16)} does not match the header (0x${c.toString(16)})`, vo);
        }
        h.crc32c = stored;
        break;
      }
      case PP2_TYPE.UNIQUE_ID:
        if (tlv.value.length > PROXY_V2_MAX_UNIQUE_ID) {
          throw new WireError("WIRE_ERR_MALFORMED", `PROXY v2: UNIQUE_ID is ${tlv.value.length} bytes, at most ${PROXY_V2_MAX_UNIQUE_ID}`, at);
        }
        h.uniqueId = tlv.value;
        break;
      case PP2_TYPE.SSL:
        h.ssl = decodeSsl(tlv.value, at + 3);
        break;
      case PP2_TYPE.NETNS:
        h.netns = tlv.value.toString("latin1");
        break;
    }
  }
  return h;
}
