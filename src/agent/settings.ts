/**
 * Receiver settings: parsed and checked where they enter (naming the field and what is allowed),
 * then frozen. They are written into the pinned settings map so `toa status` reads back what is
 * loaded.
 */
import { isIP } from "node:net";
import { ALIBABA_CDN_KIND, DEFAULT_KINDS, SETTINGS_SIZE } from "../programs/layout.js";
import { parseToaKinds } from "../wire/toa.js";

/** An address prefix of the trust list. */
export interface Cidr {
  family: 4 | 6;
  address: string;
  prefix: number;
}

/** What `toa load` was asked to do. */
export interface ReceiverSettings {
  /** cgroup v2 folder the programs are attached to. */
  cgroup: string;
  /** bpffs folder holding the pins. */
  pinDir: string;
  kinds: number[];
  /** Empty: every source is trusted (as toa.ko does). */
  trust: Cidr[];
  /** Look in the saved SYN too. */
  syn: boolean;
}

/** Settings as stored in the pinned map. */
export interface StoredSettings extends ReceiverSettings {
  version: 1;
  mode: "link" | "multi";
  loadedAt: string;
  programs: Record<string, number>;
}

/** A settings value the user got wrong. */
export class SettingsError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "SettingsError";
  }
}

/**
 * Whether to read the saved SYN when neither --syn nor --no-syn is given: only when kind 28 is
 * accepted, since Alibaba Cloud CDN writes its option in the SYN alone; every other writer puts the
 * TOA in the handshake ACK (toa.ko reads nothing else). Saving SYNs costs every connection of the
 * cgroup an allocation and about 100 bytes until close, whether it carries a TOA or not.
 */
export function synDefault(kinds: readonly number[]): boolean {
  return kinds.includes(ALIBABA_CDN_KIND);
}

/** Parse `--kinds 254,253,200` (the range every command shares: wire/toa.ts TOA_KIND_RANGE). */
export function parseKinds(text: string | undefined): number[] {
  if (text === undefined || text.trim() === "") return [...DEFAULT_KINDS];
  let out: number[];
  try {
    out = parseToaKinds(text);
  } catch (e) {
    throw new SettingsError("--kinds", (e as Error).message);
  }
  // The receiver's option walk is unrolled per kind.
  if (out.length > 8) throw new SettingsError("--kinds", `${out.length} kinds given: at most 8`);
  return out;
}

/** Parse one CIDR ("100.125.0.0/16", "2001:db8::/32", or a bare address). */
export function parseCidr(text: string): Cidr {
  const [addr, len, extra] = text.trim().split("/");
  const family = isIP(addr);
  if (extra !== undefined || family === 0) {
    throw new SettingsError("--trust", `"${text}" is not an address or CIDR: write e.g. 100.125.0.0/16 or 2001:db8::/32`);
  }
  const max = family === 4 ? 32 : 128;
  const prefix = len === undefined ? max : Number(len);
  if (!/^\d+$/.test(len ?? String(max)) || prefix > max) {
    throw new SettingsError("--trust", `"${text}": prefix length must be 0-${max}`);
  }
  // 10.0.0.1/8 is almost always a typo for 10.0.0.0/8 (or for the host 10.0.0.1): refuse rather than guess.
  const bytes = addressBytes(addr);
  const network = Buffer.from(bytes.map((b, i) => b & (0xff << Math.max(0, 8 - Math.max(0, prefix - 8 * i))) & 0xff));
  if (!network.equals(bytes)) {
    const net = formatAddress(family === 4 ? network.subarray(0, 4) : network);
    throw new SettingsError("--trust", `"${text}" has host bits set: write the network, ${net}/${prefix}, or the host alone, ${addr}/${max}`);
  }
  return { family: family as 4 | 6, address: addr, prefix };
}

/** Parse `--trust CIDR,...`; undefined (not given) is the empty list, an empty text is refused. */
export function parseTrust(text: string | undefined): Cidr[] {
  if (text === undefined) return [];
  if (text.split(",").every((s) => s.trim() === "")) {
    throw new SettingsError("--trust", "is empty: give the load balancers' source CIDRs (e.g. 100.125.0.0/16), or leave --trust out to believe a TOA from any source");
  }
  return text.split(",").filter((s) => s.trim() !== "").map(parseCidr);
}

/** Address bytes in network order. */
export function addressBytes(address: string): Buffer {
  if (isIP(address) === 4) return Buffer.from(address.split(".").map(Number));
  // Expand "::" and an embedded dotted quad.
  let text = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1].split(".").map(Number);
    text = text.slice(0, -v4[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, tail] = text.split("::");
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), 2 * i));
  return out;
}

/** Text form of an address from network-order bytes (4 or 16). */
export function formatAddress(bytes: Buffer): string {
  if (bytes.length === 4) return Array.from(bytes).join(".");
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(2 * i).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes.readUInt16BE(10) === 0xffff) {
    return `::ffff:${Array.from(bytes.subarray(12)).join(".")}`;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

/** Encode stored settings into the settings map value. */
export function encodeSettings(s: StoredSettings): Buffer {
  const json = Buffer.from(JSON.stringify(s));
  if (json.length >= SETTINGS_SIZE) throw new SettingsError("--trust", `too many entries to record (settings exceed ${SETTINGS_SIZE} bytes)`);
  const out = Buffer.alloc(SETTINGS_SIZE);
  json.copy(out);
  return out;
}

/** Decode the settings map value. */
export function decodeSettings(b: Buffer): StoredSettings | undefined {
  const end = b.indexOf(0);
  const text = b.toString("utf8", 0, end < 0 ? b.length : end);
  if (!text) return undefined;
  return JSON.parse(text) as StoredSettings;
}

/** Text of a CIDR. */
export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}
