/**
 * HAProxy PROXY protocol version 1 (haproxy doc/proxy-protocol.txt §2.1): one ASCII line
 * `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` or `PROXY UNKNOWN ...\r\n`, at most 107 bytes.
 */
import { checkPort, parseIpv4, parseIpv6, formatIpv6 } from "./addr.js";
import { WireError } from "./errors.js";

/** Longest v1 header including CRLF (spec §2.1: "a 108-byte buffer" holding 107 bytes and a NUL). */
export const PROXY_V1_MAX_LENGTH = 107;

/** An address and port as carried by the PROXY protocol. */
export interface ProxyEndpoint {
  address: string;
  port: number;
}

/** A PROXY v1 header. UNKNOWN carries no addresses. */
export type ProxyV1Header =
  | { version: 1; family: "TCP4" | "TCP6"; source: ProxyEndpoint; destination: ProxyEndpoint; length: number }
  | { version: 1; family: "UNKNOWN"; length: number };

/** What {@link encodeProxyV1} takes. */
export interface ProxyV1Init {
  family: "TCP4" | "TCP6" | "UNKNOWN";
  source?: ProxyEndpoint;
  destination?: ProxyEndpoint;
}

/** Encode a v1 line. Addresses are checked against the family; IPv6 is written in RFC 5952 form. */
export function encodeProxyV1(init: ProxyV1Init): Buffer {
  if (init.family === "UNKNOWN") return Buffer.from("PROXY UNKNOWN\r\n", "latin1");
  if (init.family !== "TCP4" && init.family !== "TCP6") {
    throw new WireError("WIRE_ERR_INVALID_ARG", `family must be TCP4, TCP6 or UNKNOWN, got ${JSON.stringify(init.family)}`);
  }
  if (!init.source || !init.destination) throw new WireError("WIRE_ERR_INVALID_ARG", `${init.family} needs source and destination`);
  const fmt = (a: string, what: string): string => {
    if (init.family === "TCP4") {
      if (!parseIpv4(a)) throw new WireError("WIRE_ERR_INVALID_ARG", `${what} must be an IPv4 address for TCP4, got ${JSON.stringify(a)}`);
      return a;
    }
    const b = parseIpv6(a);
    if (!b) throw new WireError("WIRE_ERR_INVALID_ARG", `${what} must be an IPv6 address for TCP6, got ${JSON.stringify(a)}`);
    return formatIpv6(b);
  };
  const line =
    `PROXY ${init.family} ${fmt(init.source.address, "source.address")} ${fmt(init.destination.address, "destination.address")} ` +
    `${checkPort(init.source.port, "source.port")} ${checkPort(init.destination.port, "destination.port")}\r\n`;
  return Buffer.from(line, "latin1");
}

const PORT_RE = /^(0|[1-9][0-9]{0,4})$/;

/**
 * Decode a complete v1 line `buf[0..crlfEnd)` (including CRLF); `length` of the result is that size.
 * Used by the streaming parser once it has seen CRLF.
 */
export function decodeProxyV1Line(buf: Buffer, length: number): ProxyV1Header {
  const line = buf.toString("latin1", 0, length - 2);
  const parts = line.split(" ");
  if (parts[0] !== "PROXY") throw new WireError("WIRE_ERR_MALFORMED", "PROXY v1: line does not start with \"PROXY \"", 0);
  const family = parts[1];
  // §2.1: after UNKNOWN the receiver must ignore everything up to CRLF.
  if (family === "UNKNOWN") return { version: 1, family: "UNKNOWN", length };
  if (family !== "TCP4" && family !== "TCP6") {
    throw new WireError("WIRE_ERR_MALFORMED", `PROXY v1: protocol ${JSON.stringify(family)} is not TCP4, TCP6 or UNKNOWN`, 6);
  }
  if (parts.length !== 6) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v1: expected 6 space-separated fields, got ${parts.length}`, 0);
  const parse = family === "TCP4" ? parseIpv4 : parseIpv6;
  const src = parse(parts[2]);
  const dst = parse(parts[3]);
  if (!src) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v1: source ${JSON.stringify(parts[2])} is not an ${family} address`, 0);
  if (!dst) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v1: destination ${JSON.stringify(parts[3])} is not an ${family} address`, 0);
  const port = (s: string, what: string): number => {
    if (!PORT_RE.test(s) || Number(s) > 65535) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v1: ${what} port ${JSON.stringify(s)} is not 0..65535`, 0);
    return Number(s);
  };
  const norm = (a: string, b: Uint8Array): string => (family === "TCP4" ? a : formatIpv6(b));
  return {
    version: 1,
    family,
    source: { address: norm(parts[2], src), port: port(parts[4], "source") },
    destination: { address: norm(parts[3], dst), port: port(parts[5], "destination") },
    length,
  };
}

/**
 * Find the end of a v1 line in `buf`: the index after CRLF, 0 when more bytes are needed; throws
 * when no CRLF can arrive within 107 bytes or a bare CR/LF appears.
 */
export function findProxyV1End(buf: Buffer): number {
  const limit = Math.min(buf.length, PROXY_V1_MAX_LENGTH);
  for (let i = 0; i < limit; i++) {
    const c = buf[i];
    if (c === 0x0d) {
      if (i + 2 > PROXY_V1_MAX_LENGTH) break;
      if (i + 1 >= buf.length) return 0;
      if (buf[i + 1] !== 0x0a) throw new WireError("WIRE_ERR_MALFORMED", "PROXY v1: CR not followed by LF", i);
      return i + 2;
    }
    if (c === 0x0a) throw new WireError("WIRE_ERR_MALFORMED", "PROXY v1: LF without CR", i);
    if (c < 0x20 || c > 0x7e) throw new WireError("WIRE_ERR_MALFORMED", `PROXY v1: non-printable byte 0x${c.toString(16)}`, i);
  }
  if (buf.length >= PROXY_V1_MAX_LENGTH) {
    throw new WireError("WIRE_ERR_MALFORMED", `PROXY v1: no CRLF within ${PROXY_V1_MAX_LENGTH} bytes`, PROXY_V1_MAX_LENGTH);
  }
  return 0;
}
