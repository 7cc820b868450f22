/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, RFC 3720 §B.4), the checksum of the PROXY v2
 * CRC32C TLV. Slice-by-8: eight 256-entry tables, eight bytes per step, bytewise for the ends.
 */

/** TABLES[k * 256 + n]: the CRC of byte n followed by k zero bytes. */
const TABLES = (() => {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
})();

/** CRC-32C of `buf[start..end)`; chain calls by passing the previous result as `crc`. */
export function crc32c(buf: Uint8Array, start = 0, end = buf.length, crc = 0): number {
  const T = TABLES;
  let c = ~crc;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const a = c ^ (buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24));
    c =
      T[1792 + (a & 0xff)] ^ T[1536 + ((a >>> 8) & 0xff)] ^ T[1280 + ((a >>> 16) & 0xff)] ^ T[1024 + (a >>> 24)] ^
      T[768 + buf[i + 4]] ^ T[512 + buf[i + 5]] ^ T[256 + buf[i + 6]] ^ T[buf[i + 7]];
  }
  for (; i < end; i++) c = T[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** Continue a CRC-32C over `n` zero bytes (the CRC32C TLV's own field while checking it). */
export function crc32cZeros(n: number, crc = 0): number {
  let c = ~crc;
  for (let i = 0; i < n; i++) c = TABLES[c & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
