/**
 * The verdict on one connection: will a TOA receiver (toa.ko, DPVS, or this project's eBPF) give the
 * application the client address? Receivers read the SYN (Alibaba CDN, eBPF), the packet that
 * completes the handshake (toa.ko: the handshake ACK, or the first data segment when that ACK was
 * lost), and nothing later (reference/toa-formats.md §1, §4).
 */
import { type Cidr, formatCidr, inAnyCidr, MAX_TCP_OPTIONS_LENGTH } from "../wire/index.js";
import type { ToaSighting, Verdict } from "./report.js";
import type { Conn } from "./tracker.js";

/** What the verdict depends on. */
export interface JudgeOptions {
  /** Accepted kinds (--kinds). */
  kinds: readonly number[];
  /** Trusted source prefixes (--trust); undefined trusts every source. */
  trust?: readonly Cidr[];
}

/** The packets a receiver reads: the SYN, the handshake ACK and the first data segment. */
function isReadByReceiver(s: ToaSighting): boolean {
  return s.packet === "SYN" || s.packet.startsWith("handshake ACK") || s.packet === "data segment 1";
}

const where = (s: ToaSighting): string => `${s.packet} (packet ${s.packetNumber})`;
const carried = (s: ToaSighting): string =>
  s.port === null ? `${s.address}` : s.format === "ipv6" ? `[${s.address}]:${s.port}` : `${s.address}:${s.port}`;

/** Decide the verdict for a connection, with a reason a user can act on. */
export function judge(c: Conn, opts: JudgeOptions): { verdict: Verdict; reason: string; toa: ToaSighting | null } {
  const kinds = opts.kinds.join(",");
  const early = c.sightings.filter(isReadByReceiver);
  const valid = early.filter((s) => s.malformed === undefined);
  const accepted = valid.filter((s) => opts.kinds.includes(s.kind));
  if (accepted.length > 0) {
    const t = accepted[0];
    if (opts.trust && !inAnyCidr(t.source, opts.trust)) {
      return {
        verdict: "untrusted-source",
        reason: `TOA kind ${t.kind} in ${where(t)} comes from ${t.source}, outside --trust ${opts.trust.map(formatCidr).join(",")}: a receiver must ignore it (anyone can forge it)`,
        toa: t,
      };
    }
    return { verdict: "ok", reason: `TOA kind ${t.kind} (${t.format}) in ${where(t)} carries ${carried(t)}`, toa: t };
  }
  const badEarly = early.find((s) => s.malformed !== undefined);
  if (badEarly) return { verdict: "malformed", reason: `${where(badEarly)}: ${badEarly.malformed}`, toa: badEarly };
  for (const kp of [c.syn, c.ack, c.data1]) {
    if (kp?.malformed) return { verdict: "malformed", reason: `options of packet ${kp.packetNumber} are broken: ${kp.malformed}`, toa: null };
  }
  if (valid.length > 0) {
    const t = valid[0];
    return {
      verdict: "kind-not-accepted",
      reason: `TOA kind ${t.kind} in ${where(t)} carries ${carried(t)}, but the accepted kinds are ${kinds} (add it with --kinds ${kinds},${t.kind})`,
      toa: t,
    };
  }
  const later = c.sightings.find((s) => s.malformed === undefined);
  if (later) {
    return {
      verdict: "only-in-later-segments",
      reason: `TOA kind ${later.kind} first appears in ${where(later)}, after the handshake ACK and the first data segment: receivers have already created the socket`,
      toa: later,
    };
  }
  const badLater = c.sightings.find((s) => s.malformed !== undefined);
  if (badLater) return { verdict: "malformed", reason: `${where(badLater)}: ${badLater.malformed}`, toa: badLater };
  const full = [c.ack, c.syn, c.data1].find((kp) => kp && kp.optionsLength >= MAX_TCP_OPTIONS_LENGTH);
  if (full) {
    return {
      verdict: "option-space-full",
      reason: `no TOA, and packet ${full.packetNumber} uses all ${MAX_TCP_OPTIONS_LENGTH} bytes of TCP options: the load balancer had no room (LVS skips, DPVS prunes timestamps)`,
      toa: null,
    };
  }
  const seen = !c.synAck ? "the SYN (no SYN-ACK in the capture)" : c.ack || c.data1 ? "the SYN, handshake ACK or data segments" : "the SYN (no handshake ACK in the capture)";
  return { verdict: "no-toa", reason: `no TOA option (kinds ${[...new Set([...opts.kinds, 254, 253, 252, 200, 28])].join(",")}) in ${seen} from ${c.clientIp}`, toa: null };
}
