/**
 * IP address text <-> bytes, without node:net so the wire layer stays pure. Output follows RFC 5952
 * (lowercase, longest zero run compressed, `::ffff:a.b.c.d` for IPv4-mapped addresses).
 */
import { WireError } from "./errors.js";

/** Address family of an address string: 4, 6, or 0 when it is neither. */
export function addressFamily(text: string): 0 | 4 | 6 {
  if (parseIpv4(text) !== null) return 4;
  if (parseIpv6(text) !== null) return 6;
  return 0;
}

/** Parse dotted-quad IPv4 text into 4 bytes, or null. Leading zeros are refused (octal ambiguity). */
export function parseIpv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

/** Parse IPv6 text (with `::` and an optional trailing dotted quad) into 16 bytes, or null. */
export function parseIpv6(text: string): Uint8Array | null {
  if (text.length < 2 || text.length > 45) return null;
  let head = text;
  let tail = "";
  const dbl = text.indexOf("::");
  if (dbl !== -1) {
    if (text.indexOf("::", dbl + 1) !== -1) return null;
    head = text.slice(0, dbl);
    tail = text.slice(dbl + 2);
  }
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === "" ? [] : tail.split(":");
  const words: number[] = [];
  const pushGroups = (groups: string[], into: number[], isLast: boolean): boolean => {
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      if (isLast && i === groups.length - 1 && g.includes(".")) {
        const v4 = parseIpv4(g);
        if (!v4) return false;
        into.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return false;
      into.push(parseInt(g, 16));
    }
    return true;
  };
  const tailWords: number[] = [];
  if (dbl === -1) {
    if (!pushGroups(headGroups, words, true) || words.length !== 8) return null;
  } else {
    if (!pushGroups(headGroups, words, false) || !pushGroups(tailGroups, tailWords, true)) return null;
    if (words.length + tailWords.length > 7) return null;
    while (words.length + tailWords.length < 8) words.push(0);
    words.push(...tailWords);
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = words[i] >> 8;
    out[2 * i + 1] = words[i] & 0xff;
  }
  return out;
}

/** Parse an IPv4 or IPv6 address; throws WIRE_ERR_INVALID_ARG naming `what` when it is neither. */
export function parseAddress(text: string, what = "address"): { family: 4 | 6; bytes: Uint8Array } {
  const v4 = parseIpv4(text);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIpv6(text);
  if (v6) return { family: 6, bytes: v6 };
  throw new WireError("WIRE_ERR_INVALID_ARG", `${what} must be an IPv4 or IPv6 address, got ${JSON.stringify(text)}`);
}

/** Decimal text of 0..255, and the same followed by a dot: IPv4 text without number conversion. */
const DEC: string[] = [];
const DEC_DOT: string[] = [];
/**
 * Lowercase hex of 0..255 for IPv6 words: HEX without leading zeros ("0".."ff"), HEX2 always two
 * digits, and the variants with a colon after (HEX_C, HEX2_C) or before (C_HEX).
 */
const HEX: string[] = [];
const HEX2: string[] = [];
const HEX_C: string[] = [];
const HEX2_C: string[] = [];
const C_HEX: string[] = [];
for (let i = 0; i < 256; i++) {
  const h = i.toString(16);
  const h2 = h.padStart(2, "0");
  DEC.push(String(i));
  DEC_DOT.push(`${i}.`);
  HEX.push(h);
  HEX2.push(h2);
  HEX_C.push(`${h}:`);
  HEX2_C.push(`${h2}:`);
  C_HEX.push(`:${h}`);
}

/** Format 4 bytes at `offset` as dotted quad. */
export function formatIpv4(buf: Uint8Array, offset = 0): string {
  return DEC_DOT[buf[offset]] + DEC_DOT[buf[offset + 1]] + DEC_DOT[buf[offset + 2]] + DEC[buf[offset + 3]];
}

/** "w" for the 16-bit word at `o` (no leading zeros). */
function word(buf: Uint8Array, o: number): string {
  const hi = buf[o];
  return hi === 0 ? HEX[buf[o + 1]] : HEX[hi] + HEX2[buf[o + 1]];
}
/** "w:" for the word at `o`. */
function wordColon(buf: Uint8Array, o: number): string {
  const hi = buf[o];
  return hi === 0 ? HEX_C[buf[o + 1]] : HEX[hi] + HEX2_C[buf[o + 1]];
}
/** ":w" for the word at `o`. */
function colonWord(buf: Uint8Array, o: number): string {
  const hi = buf[o];
  return hi === 0 ? C_HEX[buf[o + 1]] : C_HEX[hi] + HEX2[buf[o + 1]];
}

/** Format 16 bytes at `offset` as RFC 5952 IPv6 text. */
export function formatIpv6(buf: Uint8Array, offset = 0): string {
  // Hot in the PROXY v2 and TOA decoders: table lookups, at most one concatenation per word.
  // Longest run of zero words (length >= 2, first one on ties) becomes "::" (RFC 5952 §4.2).
  let bestStart = -1;
  let bestLen = 1;
  let runStart = -1;
  for (let i = 0; i < 8; i++) {
    const o = offset + 2 * i;
    if ((buf[o] | buf[o + 1]) === 0) {
      if (runStart < 0) runStart = i;
      if (i - runStart + 1 > bestLen) {
        bestStart = runStart;
        bestLen = i - runStart + 1;
      }
    } else {
      runStart = -1;
    }
  }
  // ::ffff:a.b.c.d (RFC 5952 §5): the form Node and the kernel print for v4-mapped peers.
  if (bestStart === 0 && bestLen === 5 && buf[offset + 10] === 0xff && buf[offset + 11] === 0xff) {
    return "::ffff:" + formatIpv4(buf, offset + 12);
  }
  if (bestStart < 0) {
    // No compression: the common case of global addresses.
    return (
      wordColon(buf, offset) + wordColon(buf, offset + 2) + wordColon(buf, offset + 4) + wordColon(buf, offset + 6) +
      wordColon(buf, offset + 8) + wordColon(buf, offset + 10) + wordColon(buf, offset + 12) + word(buf, offset + 14)
    );
  }
  let out = bestStart === 0 ? ":" : "";
  for (let i = 0; i < bestStart; i++) out += wordColon(buf, offset + 2 * i);
  const after = bestStart + bestLen;
  if (after === 8) return out + ":";
  for (let i = after; i < 8; i++) out += colonWord(buf, offset + 2 * i);
  return out;
}

/** Format an address of either family from its bytes. */
export function formatAddress(bytes: Uint8Array): string {
  return bytes.length === 4 ? formatIpv4(bytes) : formatIpv6(bytes);
}

/** Check a port number, naming the field on error. */
export function checkPort(port: number, what = "port"): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new WireError("WIRE_ERR_INVALID_ARG", `${what} must be an integer 0..65535, got ${port}`);
  }
  return port;
}
