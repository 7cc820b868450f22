/**
 * Receiver settings: parsed and checked where they enter (naming the field and what is allowed),
 * then frozen. They are written into the pinned settings map so `toa status` reads back what is
 * loaded.
 */
import { isIP } from "node:net";
import { DEFAULT_KINDS, SETTINGS_SIZE } from "../programs/layout.js";

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

/** Parse `--kinds 254,253,200`. */
export function parseKinds(text: string | undefined): number[] {
  if (text === undefined || text.trim() === "") return [...DEFAULT_KINDS];
  const kinds = text.split(",").map((s) => s.trim());
  const out: number[] = [];
  for (const k of kinds) {
    const n = Number(k);
    // 0 (EOL), 1 (NOP), 2-8 and 30 are standard options whose meaning the kernel owns.
    if (!/^\d+$/.test(k) || n < 9 || n > 255) {
      throw new SettingsError("--kinds", `"${k}" is not an option kind: give numbers 9-255 separated by commas, e.g. 254,253,200`);
    }
    if (!out.includes(n)) out.push(n);
  }
  if (out.length > 8) throw new SettingsError("--kinds", "at most 8 kinds");
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
  return { family: family as 4 | 6, address: addr, prefix };
}

/** Parse `--trust CIDR,...`. */
export function parseTrust(text: string | undefined): Cidr[] {
  if (text === undefined || text.trim() === "") return [];
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
