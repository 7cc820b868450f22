/**
 * Address prefixes (CIDR, RFC 4632 §3.1): `100.125.0.0/16`, `2001:db8::/32`, or a bare address (a /32
 * or /128). One parser and one matcher for every `--trust` list: the receiver's (agent/settings.ts)
 * and the capture inspector's (inspect/verdict.ts).
 */
import { formatAddress, parseAddress } from "./addr.js";
import { WireError } from "./errors.js";

/** A parsed prefix; plain JSON, as the receiver records it in its pinned settings map. */
export interface Cidr {
  family: 4 | 6;
  /** The address as written (a network address unless host bits were allowed). */
  address: string;
  /** Prefix length: 0..32 or 0..128. */
  prefix: number;
}

/** Options of {@link parseCidr}. */
export interface CidrOptions {
  /**
   * Accept an address with bits set past the prefix (`10.0.0.1/8`); matching ignores them. Default:
   * refuse it, since it is almost always a typo for the network (or for the host alone).
   */
  allowHostBits?: boolean;
}

/** What was wrong with a prefix's text. */
export type CidrProblem = "not-an-address" | "prefix-length" | "host-bits";

/**
 * A prefix that does not parse (code WIRE_ERR_INVALID_ARG). It carries the input and the problem, so
 * a command can word the message its own way; the default message quotes the input and says what to
 * write instead, and callers put the flag name in front.
 */
export class CidrError extends WireError {
  constructor(readonly input: string, readonly problem: CidrProblem, readonly maxPrefix: number, message: string) {
    super("WIRE_ERR_INVALID_ARG", message);
    this.name = "CidrError";
  }
}

/** `bytes` with every bit past `prefix` cleared. */
function network(bytes: Uint8Array, prefix: number): Uint8Array {
  return bytes.map((b, i) => b & (0xff << Math.max(0, 8 - Math.max(0, prefix - 8 * i))) & 0xff);
}

/** Parse one prefix; throws a {@link CidrError}. */
export function parseCidr(text: string, options: CidrOptions = {}): Cidr {
  const [addr, len, extra] = text.trim().split("/");
  let bytes: Uint8Array;
  try {
    bytes = parseAddress(addr).bytes;
    if (extra !== undefined) throw new WireError("WIRE_ERR_INVALID_ARG", "two slashes");
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
    throw new CidrError(text, "not-an-address", 0, `"${text}" is not an address or CIDR: write e.g. 100.125.0.0/16 or 2001:db8::/32`);
  }
  const family = bytes.length === 4 ? 4 : 6;
  const max = bytes.length * 8;
  const prefix = len === undefined ? max : Number(len);
  if (!/^\d+$/.test(len ?? String(max)) || prefix > max) {
    throw new CidrError(text, "prefix-length", max, `"${text}": prefix length must be 0-${max}`);
  }
  if (!options.allowHostBits) {
    const net = network(bytes, prefix);
    if (net.some((b, i) => b !== bytes[i])) {
      throw new CidrError(text, "host-bits", max, `"${text}" has host bits set: write the network, ${formatAddress(net)}/${prefix}, or the host alone, ${addr}/${max}`);
    }
  }
  return { family, address: addr, prefix };
}

/** Parse a comma-separated list of prefixes (empty items skipped). */
export function parseCidrList(text: string, options: CidrOptions = {}): Cidr[] {
  return text.split(",").filter((s) => s.trim() !== "").map((s) => parseCidr(s, options));
}

/** Text of a prefix: `address/prefix`. */
export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

/** Is the address `bytes` (4 or 16) inside `c`? An address of the other family never is. */
export function cidrContains(c: Cidr, bytes: Uint8Array): boolean {
  const p = parseAddress(c.address).bytes;
  if (p.length !== bytes.length) return false;
  const full = c.prefix >> 3;
  for (let i = 0; i < full; i++) if (bytes[i] !== p[i]) return false;
  const rem = c.prefix & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (bytes[full] & mask) === (p[full] & mask);
}

/** Is `address` (text) inside any of `prefixes`? Text that is not an address is inside none. */
export function inAnyCidr(address: string, prefixes: readonly Cidr[]): boolean {
  let a: Uint8Array;
  try {
    a = parseAddress(address).bytes;
  } catch {
    return false;
  }
  return prefixes.some((p) => cidrContains(p, a));
}
