/**
 * Receiver settings: parsed and checked where they enter (naming the field and what is allowed),
 * then frozen. They are written into the pinned settings map so `toa status` reads back what is
 * loaded.
 */
import { ALIBABA_CDN_KIND, DEFAULT_KINDS, SETTINGS_SIZE } from "../programs/layout.js";
import { parseToaKinds } from "../wire/toa.js";
import { type Cidr, parseCidr as parseWireCidr } from "../wire/cidr.js";
import { WireError } from "../wire/errors.js";
import { SettingsError } from "./errors.js";

export type { Cidr } from "../wire/cidr.js";

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

export { SettingsError } from "./errors.js";

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

/** Parse one CIDR ("100.125.0.0/16", "2001:db8::/32", or a bare address); host bits set are refused. */
export function parseCidr(text: string): Cidr {
  try {
    return parseWireCidr(text);
  } catch (e) {
    if (e instanceof WireError) throw new SettingsError("--trust", e.message);
    throw e;
  }
}

/** Parse `--trust CIDR,...`; undefined (not given) is the empty list, an empty text is refused. */
export function parseTrust(text: string | undefined): Cidr[] {
  if (text === undefined) return [];
  if (text.split(",").every((s) => s.trim() === "")) {
    throw new SettingsError("--trust", "is empty: give the load balancers' source CIDRs (e.g. 100.125.0.0/16), or leave --trust out to believe a TOA from any source");
  }
  return text.split(",").filter((s) => s.trim() !== "").map(parseCidr);
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
