/**
 * PROXY v2 TLVs (haproxy doc/proxy-protocol.txt §2.2.1-§2.2.8): checking their framing and the values
 * of CRC32C, UNIQUE_ID and SSL, and reading them once checked.
 */
import { crc32c, crc32cZeros } from "./crc32c.js";
import { WireError } from "./errors.js";
import { PP2_TYPE, PROXY_V2_MAX_UNIQUE_ID, type ProxySslTlv, type ProxyTlv } from "./proxy-v2-format.js";

/** The SSL TLV's value (§2.2.6), its length already checked. */
export function decodeSsl(v: Buffer): ProxySslTlv {
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
export function readTlvs(buf: Buffer, start: number, end: number): ProxyTlv[] {
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

/** Bits of the set {@link checkTlvs} returns for the SSL and NETNS TLVs (types 1..5 use 1 << type). */
export const SSL_BIT = 1 << 6;
/** See {@link SSL_BIT}. */
export const NETNS_BIT = 1 << 7;
/** Set by checkTlvs when a UNIQUE_ID is longer than allowed (reported after the framing checks). */
export const LONG_UNIQUE_ID = 1 << 8;
/** TLV types whose values need a second, ordered pass (CRC32C and SSL). */
export const CHECKED = (1 << PP2_TYPE.CRC32C) | SSL_BIT;

/**
 * Check the framing of the TLVs in `buf[start..end)` and return a bit set of the known types present
 * (bit = 1 << type for types 1..5, SSL_BIT, NETNS_BIT, and LONG_UNIQUE_ID).
 */
export function checkTlvs(buf: Buffer, start: number, end: number): number {
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
export function checkTlvValues(buf: Buffer, start: number, length: number): void {
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
export function throwLongUniqueId(buf: Buffer, start: number, length: number): never {
  for (let i = start; i < length; ) {
    const len = (buf[i + 1] << 8) | buf[i + 2];
    if (buf[i] === PP2_TYPE.UNIQUE_ID && len > PROXY_V2_MAX_UNIQUE_ID) uniqueIdTooLong(i, len);
    i += 3 + len;
  }
  throw new WireError("WIRE_ERR_MALFORMED", "PROXY v2: UNIQUE_ID too long", start);
}
