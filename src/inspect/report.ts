/** The report types of `toa inspect`: one entry per TCP connection. */

/** Why a TOA will or will not reach the backend application. */
export type Verdict =
  /** A TOA of an accepted kind, from a trusted source, in a packet the receiver reads. */
  | "ok"
  /** No TOA in any packet from the client side. */
  | "no-toa"
  /** TOA only after the handshake ACK and the first data segment: receivers have already created the socket. */
  | "only-in-later-segments"
  /** No TOA and the options area is full (40 bytes): the load balancer had no room for it. */
  | "option-space-full"
  /** A TOA is present but its kind is not in --kinds. */
  | "kind-not-accepted"
  /** A TOA is present but the packet's source is outside --trust. */
  | "untrusted-source"
  /** An option of a TOA kind with a bad length, or a broken options list. */
  | "malformed";

/** Every verdict, in the order summaries list them. */
export const VERDICTS: readonly Verdict[] = ["ok", "no-toa", "only-in-later-segments", "option-space-full", "kind-not-accepted", "untrusted-source", "malformed"];

/** One TOA seen in one packet from the client side. */
export interface ToaSighting {
  /** "SYN", "handshake ACK", "handshake ACK (data segment 1)", "data segment N", or "ACK" (a later pure ACK). */
  packet: string;
  /** 1-based packet number in the capture (as Wireshark counts). */
  packetNumber: number;
  /** Source IP of that packet (the load balancer, normally). */
  source: string;
  kind: number;
  /** ipv4 / ipv6 (with port), cdn-ipv4 / cdn-ipv6 (Alibaba CDN, no port), or null when malformed. */
  format: string | null;
  address: string | null;
  port: number | null;
  /** Why it could not be decoded. */
  malformed?: string;
}

/** The report of one TCP connection. */
export interface ConnectionReport {
  /** Side that sent the SYN, as `address:port` (`[v6]:port` for IPv6). */
  client: string;
  server: string;
  firstPacket: number;
  lastPacket: number;
  /** Capture time of the SYN, ISO 8601. */
  start: string;
  packets: number;
  /** How far the handshake got. */
  handshake: "complete" | "syn-ack-missing" | "ack-missing";
  /** How it ended in the capture. */
  closed: "fin" | "rst" | "open";
  /** The TOA the verdict is about (null when none). */
  toa: ToaSighting | null;
  /** Every TOA seen, in packet order. */
  sightings: ToaSighting[];
  verdict: Verdict;
  reason: string;
}

/** The whole result of inspecting a capture. */
export interface InspectResult {
  connections: ConnectionReport[];
  /** Connections whose SYN is not in the capture (started before it): not reported. */
  withoutSyn: number;
  packets: number;
  tcpPackets: number;
  /** Packets whose headers could not be decoded, with the first reason. */
  undecodable: number;
  firstUndecodable?: string;
}
