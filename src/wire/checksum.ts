/**
 * The internet checksum (RFC 1071), the TCP pseudo-header sums for IPv4 (RFC 9293 §3.1) and IPv6
 * (RFC 8200 §8.1), and the incremental update of RFC 1624 used when a middlebox inserts a TOA.
 */

/** One's-complement sum of 16-bit big-endian words over `buf[start..end)`, folded to 16 bits. */
export function onesSum(buf: Uint8Array, start = 0, end = buf.length, acc = 0): number {
  let sum = acc;
  let i = start;
  for (; i + 1 < end; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  // An odd trailing byte is padded with a zero byte on the right (RFC 1071 §4.1).
  if (i < end) sum += buf[i] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The internet checksum of a buffer: the complement of its one's-complement sum. */
export function internetChecksum(buf: Uint8Array, start = 0, end = buf.length): number {
  return ~onesSum(buf, start, end) & 0xffff;
}

/** One's-complement sum of the TCP/UDP pseudo-header for either family (address byte length picks it). */
export function pseudoHeaderSum(source: Uint8Array, destination: Uint8Array, protocol: number, length: number): number {
  let sum = onesSum(source) + onesSum(destination);
  if (source.length === 4) {
    // [src 4][dst 4][0][proto][tcp length 16]
    sum += protocol + (length & 0xffff);
  } else {
    // [src 16][dst 16][tcp length 32][0 0 0][next header]
    sum += (length >>> 16) + (length & 0xffff) + protocol;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/**
 * TCP checksum of `segment` (header + payload) between two addresses (4 or 16 bytes each). The
 * checksum field (bytes 16-17) is treated as zero, so this is the value to store.
 */
export function tcpChecksum(source: Uint8Array, destination: Uint8Array, segment: Uint8Array): number {
  let sum = pseudoHeaderSum(source, destination, 6, segment.length);
  sum = onesSum(segment, 0, 16, sum);
  sum = onesSum(segment, 18, segment.length, sum);
  return ~sum & 0xffff;
}

/** True when the checksum stored in `segment` is right. */
export function verifyTcpChecksum(source: Uint8Array, destination: Uint8Array, segment: Uint8Array): boolean {
  if (segment.length < 18) return false;
  const stored = (segment[16] << 8) | segment[17];
  return stored === tcpChecksum(source, destination, segment);
}

/**
 * RFC 1624 eqn. 3: the new checksum after 16-bit-aligned data `before` became `after`,
 * HC' = ~(~HC + ~m + m'). Either side may be empty (an insertion is zeros -> bytes); odd lengths are
 * padded with a zero byte, so callers keep changes on even offsets.
 */
export function updateChecksum(checksum: number, before: Uint8Array, after: Uint8Array): number {
  let sum = ~checksum & 0xffff;
  if (before.length > 0) sum += ~onesSum(before) & 0xffff;
  sum += onesSum(after);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** {@link updateChecksum} for a single 16-bit word. */
export function updateChecksumWord(checksum: number, before: number, after: number): number {
  let sum = (~checksum & 0xffff) + (~before & 0xffff) + (after & 0xffff);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
