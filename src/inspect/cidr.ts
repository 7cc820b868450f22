/** CIDR prefixes for `--trust`: parse once, then match addresses of the same family. */
import { parseAddress, WireError } from "../wire/index.js";

/** A parsed prefix. */
export interface Cidr {
  text: string;
  bytes: Uint8Array;
  bits: number;
}

/** Parse `a.b.c.d/n`, `x::/n` or a bare address (a /32 or /128). Throws an Error naming the input. */
export function parseCidr(text: string): Cidr {
  const [addr, len, extra] = text.trim().split("/");
  let bytes: Uint8Array;
  try {
    bytes = parseAddress(addr, "trusted prefix").bytes;
  } catch (e) {
    if (e instanceof WireError) throw new Error(`--trust: ${JSON.stringify(text)} is not an address or CIDR prefix (e.g. 100.125.0.0/16)`);
    throw e;
  }
  const max = bytes.length * 8;
  const bits = len === undefined ? max : Number(len);
  if (extra !== undefined || !/^\d+$/.test(len ?? String(max)) || bits > max) {
    throw new Error(`--trust: ${JSON.stringify(text)} has a bad prefix length (0..${max})`);
  }
  return { text: text.trim(), bytes, bits };
}

/** Parse a comma-separated list of prefixes. */
export function parseCidrList(text: string): Cidr[] {
  return text.split(",").filter((s) => s.trim() !== "").map(parseCidr);
}

/** Is `address` (text) inside any of `prefixes`? */
export function inAnyCidr(address: string, prefixes: readonly Cidr[]): boolean {
  let a: Uint8Array;
  try {
    a = parseAddress(address).bytes;
  } catch {
    return false;
  }
  for (const p of prefixes) {
    if (p.bytes.length !== a.length) continue;
    let ok = true;
    const full = p.bits >> 3;
    for (let i = 0; i < full && ok; i++) ok = a[i] === p.bytes[i];
    const rem = p.bits & 7;
    if (ok && rem) {
      const mask = (0xff << (8 - rem)) & 0xff;
      ok = (a[full] & mask) === (p.bytes[full] & mask);
    }
    if (ok) return true;
  }
  return false;
}
