/**
 * TOA, the TCP Option Address: the client address a full-NAT load balancer writes into a TCP option
 * (reference/toa-formats.md). The length byte selects the layout; the kind is whatever the sender uses.
 *
 * ```
 *   len 8   [kind][8 ][port be16][IPv4 (4)]          254 Huawei/LVS/DPVS, 200 LVS 2012/Tencent, 253, 252
 *   len 20  [kind][20][port be16][IPv6 (16)]         254 DPVS/elb-toa, 253 alibaba/LVS, elb-toa
 *   len 7   [kind][7 ][ver=1][IPv4 (4)]              28 Alibaba CDN (no port)
 *   len 19  [kind][19][ver][IPv6 (16)]               28 Alibaba CDN (no port)
 * ```
 */
import { formatIpv4, formatIpv6, parseAddress, checkPort } from "./addr.js";
import { WireError, need } from "./errors.js";

/** Kinds accepted by default: Huawei/LVS/DPVS (254), alibaba/LVS IPv6 and ucloud (253), LVS 2012 and Tencent (200). */
export const DEFAULT_TOA_KINDS: readonly number[] = Object.freeze([254, 253, 200]);

/** Every kind some known sender uses for a TOA (254, 253, 252, 200, and 28 for Alibaba CDN). */
export const KNOWN_TOA_KINDS: readonly number[] = Object.freeze([254, 253, 252, 200, 28]);

/**
 * The option kinds a TOA may be given as: 9-255. Kinds 0-8 are TCP's own (EOL, NOP, MSS, window
 * scale, SACK-permitted, SACK, echo, echo reply, timestamps, RFC 9293 §3.1), which the kernel parses
 * itself; no load balancer writes a TOA there. `toa load`, `toa agent` and `toa inspect` all take this range.
 */
export const TOA_KIND_RANGE = Object.freeze({ min: 9, max: 255 });

/**
 * Parse a comma-separated list of option kinds ("254,253,200"), duplicates dropped. Throws
 * WIRE_ERR_INVALID_ARG whose message names the bad entry and what is allowed (callers prefix their flag).
 */
export function parseToaKinds(text: string): number[] {
  const out: number[] = [];
  for (const k of text.split(",").map((s) => s.trim())) {
    const n = Number(k);
    if (!/^\d+$/.test(k) || n < TOA_KIND_RANGE.min || n > TOA_KIND_RANGE.max) {
      throw new WireError("WIRE_ERR_INVALID_ARG", `"${k}" is not an option kind: give numbers ${TOA_KIND_RANGE.min}-${TOA_KIND_RANGE.max} separated by commas, e.g. 254,253,200 (0-8 are TCP's own options)`);
    }
    if (!out.includes(n)) out.push(n);
  }
  return out;
}

/** Kind used by the Alibaba CDN portless layout (IANA assigns 28 to User Timeout, which is 4 bytes long). */
export const TOA_KIND_ALIBABA_CDN = 28;

/** Layout of a TOA, named by family and whether it carries a port. */
export type ToaFormat = "ipv4" | "ipv6" | "cdn-ipv4" | "cdn-ipv6";

/** A decoded TOA option. `port` is null for the Alibaba CDN layouts; `version` only there. */
export interface Toa {
  kind: number;
  family: 4 | 6;
  address: string;
  port: number | null;
  /** Option length byte: 8, 20, 7 or 19. */
  length: number;
  format: ToaFormat;
  version?: number;
}

/** Does this option length byte belong to a TOA layout? */
export function isToaLength(len: number): boolean {
  return len === 8 || len === 20 || len === 7 || len === 19;
}

/** What {@link encodeToa} takes: no port (null/undefined) selects the CDN layout with version 1. */
export interface ToaInit {
  kind: number;
  address: string;
  port?: number | null;
  /** Version byte of the CDN layout; 1 by default. */
  version?: number;
}

/** Encode one TOA option; the family comes from the address text. */
export function encodeToa(init: ToaInit): Buffer {
  if (!Number.isInteger(init.kind) || init.kind < 2 || init.kind > 255) {
    throw new WireError("WIRE_ERR_INVALID_ARG", `kind must be an integer 2..255, got ${init.kind}`);
  }
  const { family, bytes } = parseAddress(init.address, "TOA address");
  const addrLen = family === 4 ? 4 : 16;
  if (init.port === null || init.port === undefined) {
    const out = Buffer.alloc(3 + addrLen);
    out[0] = init.kind;
    out[1] = out.length;
    out[2] = init.version ?? 1;
    out.set(bytes, 3);
    return out;
  }
  const out = Buffer.alloc(4 + addrLen);
  out[0] = init.kind;
  out[1] = out.length;
  out.writeUInt16BE(checkPort(init.port, "TOA port"), 2);
  out.set(bytes, 4);
  return out;
}

/** Decode the TOA option starting at `offset` (its kind byte); throws WireError on any other layout. */
export function decodeToa(buf: Buffer, offset = 0): Toa {
  need(buf, offset, 2, "TOA option header");
  const kind = buf[offset];
  const length = buf[offset + 1];
  if (!isToaLength(length)) {
    throw new WireError("WIRE_ERR_MALFORMED", `TOA option kind ${kind} has length ${length}, expected 8, 20 (with port) or 7, 19 (Alibaba CDN)`, offset);
  }
  need(buf, offset, length, `TOA option kind ${kind} length ${length}`);
  switch (length) {
    case 8:
      return { kind, family: 4, address: formatIpv4(buf, offset + 4), port: buf.readUInt16BE(offset + 2), length, format: "ipv4" };
    case 20:
      return { kind, family: 6, address: formatIpv6(buf, offset + 4), port: buf.readUInt16BE(offset + 2), length, format: "ipv6" };
    case 7:
      return { kind, family: 4, address: formatIpv4(buf, offset + 3), port: null, length, format: "cdn-ipv4", version: buf[offset + 2] };
    default:
      return { kind, family: 6, address: formatIpv6(buf, offset + 3), port: null, length, format: "cdn-ipv6", version: buf[offset + 2] };
  }
}

/**
 * Find the first TOA of one of `kinds` in a TCP options list (the bytes after the fixed header).
 * Returns null when there is none; throws WireError when the list is malformed before one is found or
 * when an option of a wanted kind has a non-TOA length.
 */
export function findToa(tcpOptions: Buffer, kinds: readonly number[] = DEFAULT_TOA_KINDS): Toa | null {
  let i = 0;
  const end = tcpOptions.length;
  while (i < end) {
    const kind = tcpOptions[i];
    if (kind === 0) return null;
    if (kind === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) throw new WireError("WIRE_ERR_TRUNCATED", `TCP options: kind ${kind} has no length byte`, i);
    const len = tcpOptions[i + 1];
    if (len < 2) throw new WireError("WIRE_ERR_MALFORMED", `TCP options: kind ${kind} has length ${len}`, i);
    if (i + len > end) throw new WireError("WIRE_ERR_TRUNCATED", `TCP options: kind ${kind} length ${len} runs past the end`, i);
    // Kind 28 with length 4 is a genuine User Timeout option, not a malformed CDN TOA.
    if (kinds.includes(kind) && !(kind === TOA_KIND_ALIBABA_CDN && len === 4)) return decodeToa(tcpOptions, i);
    i += len;
  }
  return null;
}
