/**
 * Groups the TCP packets of a capture into connections (4-tuple, from SYN to FIN/RST) and notes every
 * TOA the client side sent, with the role of its packet. Pure: feed {@link Packet}s, read reports.
 */
import { decodeToa, KNOWN_TOA_KINDS, scanOptions, TOA_KIND_ALIBABA_CDN, WireError, type Packet } from "../wire/index.js";
import type { ConnectionReport, InspectResult, ToaSighting } from "./report.js";
import { judge, type JudgeOptions } from "./verdict.js";

/** Options of the tracker. */
export interface TrackerOptions extends JudgeOptions {
  /** Only connections with this port on either side. */
  port?: number;
}

/** Per-packet facts the verdict needs about the packets a receiver reads. */
export interface KeyPacket {
  packetNumber: number;
  optionsLength: number;
  /** Why the options list is broken, if it is. */
  malformed?: string;
}

/** Live state of one connection (exported for the verdict module). */
export interface Conn {
  client: string;
  server: string;
  clientIp: string;
  clientPort: number;
  synSeq: number;
  firstPacket: number;
  lastPacket: number;
  start: number;
  packets: number;
  synAck: boolean;
  handshakeAck: boolean;
  dataSegments: number;
  fin: number;
  rst: boolean;
  /** Key packets: SYN, handshake ACK, first data segment. */
  syn: KeyPacket;
  ack?: KeyPacket;
  data1?: KeyPacket;
  sightings: ToaSighting[];
}

const endpoint = (ip: string, port: number): string => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);

/** Groups packets into connections; call {@link ConnectionTracker.result} at the end. */
export class ConnectionTracker {
  private live = new Map<string, Conn>();
  private done: Conn[] = [];
  private noSyn = new Set<string>();
  private packets = 0;
  private tcpPackets = 0;
  private undecodable = 0;
  private firstUndecodable?: string;
  private readonly scanKinds: Set<number>;

  constructor(private readonly opts: TrackerOptions) {
    this.scanKinds = new Set([...KNOWN_TOA_KINDS, ...opts.kinds]);
  }

  /** Account for one decoded packet. */
  add(p: Packet): void {
    this.packets++;
    if (p.error !== undefined) {
      this.undecodable++;
      this.firstUndecodable ??= `packet ${p.index + 1}: ${p.error}`;
    }
    const ip = p.ip;
    const tcp = p.tcp;
    if (!ip || !tcp) return;
    this.tcpPackets++;
    if (this.opts.port !== undefined && tcp.sourcePort !== this.opts.port && tcp.destinationPort !== this.opts.port) return;
    const a = endpoint(ip.source, tcp.sourcePort);
    const b = endpoint(ip.destination, tcp.destinationPort);
    const key = a < b ? `${a} ${b}` : `${b} ${a}`;
    const num = p.index + 1;
    const bits = tcp.flagBits;
    const isSyn = (bits & 0x02) !== 0;
    const isAck = (bits & 0x10) !== 0;
    let c = this.live.get(key);
    if (isSyn && !isAck) {
      // A new SYN starts a new connection unless it is a retransmission of the current one's SYN.
      if (c && (c.synSeq !== tcp.seq || c.rst || c.fin >= 2)) {
        this.done.push(c);
        c = undefined;
      }
      if (!c) {
        c = {
          client: a, server: b, clientIp: ip.source, clientPort: tcp.sourcePort, synSeq: tcp.seq,
          firstPacket: num, lastPacket: num, start: p.timestamp, packets: 0,
          synAck: false, handshakeAck: false, dataSegments: 0, fin: 0, rst: false,
          syn: { packetNumber: num, optionsLength: tcp.options.length }, sightings: [],
        };
        this.live.set(key, c);
        this.noSyn.delete(key);
      }
    } else if (!c) {
      this.noSyn.add(key);
      return;
    }
    c.packets++;
    c.lastPacket = num;
    if (bits & 0x04) c.rst = true;
    if (bits & 0x01) c.fin++;
    const fromClient = a === c.client;
    if (!fromClient) {
      if (isSyn && isAck) c.synAck = true;
      return;
    }
    let role: string;
    let keyPacket: keyof Pick<Conn, "ack" | "data1"> | "syn" | undefined;
    if (isSyn) {
      role = "SYN";
      keyPacket = "syn";
    } else if (isAck && c.synAck && !c.handshakeAck) {
      c.handshakeAck = true;
      role = "handshake ACK";
      keyPacket = "ack";
    } else {
      role = "ACK";
    }
    if (tcp.payloadLength > 0 && !isSyn) {
      c.dataSegments++;
      // A handshake ACK carrying data (the bare ACK was lost or merged) is both.
      role = role === "ACK" ? `data segment ${c.dataSegments}` : `${role} (data segment ${c.dataSegments})`;
      if (c.dataSegments === 1) c.data1 = { packetNumber: num, optionsLength: tcp.options.length };
    }
    const scan = scanOptions(tcp.options);
    const kp = keyPacket === "ack" ? (c.ack = { packetNumber: num, optionsLength: tcp.options.length }) : keyPacket === "syn" ? c.syn : undefined;
    if (scan.malformed !== undefined) {
      if (kp) kp.malformed = scan.malformed;
      if (c.dataSegments === 1 && c.data1?.packetNumber === num) c.data1.malformed = scan.malformed;
    }
    for (const o of scan.options) {
      if (o.name !== "UNKNOWN" || !this.scanKinds.has(o.kind)) continue;
      // Kind 28 with length 4 is a real User Timeout option (RFC 5482), not a CDN TOA.
      if (o.kind === TOA_KIND_ALIBABA_CDN && o.data.length === 2) continue;
      const s: ToaSighting = { packet: role, packetNumber: num, source: ip.source, kind: o.kind, format: null, address: null, port: null };
      try {
        const t = decodeToa(tcp.options, o.offset ?? 0);
        s.format = t.format;
        s.address = t.address;
        s.port = t.port;
      } catch (e) {
        if (!(e instanceof WireError)) throw e;
        s.malformed = e.message.replace(/ \(at byte \d+\)$/, "");
      }
      c.sightings.push(s);
    }
    // Option scanning stops at a malformed entry; a kind of interest there is a malformed TOA too.
    if (scan.malformed !== undefined && scan.malformedAt !== undefined && this.scanKinds.has(tcp.options[scan.malformedAt])) {
      c.sightings.push({ packet: role, packetNumber: num, source: ip.source, kind: tcp.options[scan.malformedAt], format: null, address: null, port: null, malformed: scan.malformed });
    }
  }

  /** The reports, in order of each connection's SYN. */
  result(): InspectResult {
    const all = [...this.done, ...this.live.values()].sort((x, y) => x.firstPacket - y.firstPacket);
    const r: InspectResult = {
      connections: all.map((c) => this.report(c)),
      withoutSyn: this.noSyn.size,
      packets: this.packets,
      tcpPackets: this.tcpPackets,
      undecodable: this.undecodable,
    };
    if (this.firstUndecodable !== undefined) r.firstUndecodable = this.firstUndecodable;
    return r;
  }

  private report(c: Conn): ConnectionReport {
    const { verdict, reason, toa } = judge(c, this.opts);
    return {
      client: c.client,
      server: c.server,
      firstPacket: c.firstPacket,
      lastPacket: c.lastPacket,
      start: new Date(c.start * 1000).toISOString(),
      packets: c.packets,
      handshake: !c.synAck ? "syn-ack-missing" : c.handshakeAck || c.dataSegments > 0 ? "complete" : "ack-missing",
      closed: c.rst ? "rst" : c.fin > 0 ? "fin" : "open",
      toa,
      sightings: c.sightings,
      verdict,
      reason,
    };
  }
}
