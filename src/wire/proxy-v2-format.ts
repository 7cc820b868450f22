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
 *
 * This file holds the format: constants, types, the signature test.
 */
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

/** Family names by their 4-bit code (the index). */
export const PROXY_V2_FAMILIES: readonly ProxyV2Family[] = ["UNSPEC", "INET", "INET6", "UNIX"];
/** Transport names by their 4-bit code (the index). */
export const PROXY_V2_TRANSPORTS: readonly ProxyV2Transport[] = ["UNSPEC", "STREAM", "DGRAM"];

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
