/**
 * The TOA sender, the balancer's eBPF half of `toa` mode: loads the sender sock_ops program
 * (src/programs/sender.ts), attaches it to a cgroup and registers, per connection 4-tuple, the client
 * address to write. Register before connect(): the handshake ACK already carries the option. Also the
 * agent API's TOA source for tests and benchmarks (re-exported by src/agent/index.ts).
 */
import { attachCgroup, BpfMap, type CgroupAttachment, codec, Program, raiseMemlockLimit, requireFeatures } from "../../bpf/index.js";
import { AF_INET, AF_INET6 } from "../../bpf/uapi.js";
import { Counter, MapName, mapSpecs, SENDER_FLAG_SYN, SenderKey, SenderValue } from "../../programs/layout.js";
import { senderProgram } from "../../programs/sender.js";
import { parseIpv4, parseIpv6 } from "../../wire/addr.js";
import type { ClientAddressWriter, ConnectionKey } from "../client-address.js";
import { LbError } from "../errors.js";

export type { ConnectionKey } from "../client-address.js";

/** Network-order bytes of an IPv4 (4) or IPv6 (16) address; LB_ERR_INVALID_ARG naming `what` otherwise. */
function addressBytes(what: string, text: string): Uint8Array {
  const bytes = parseIpv4(text) ?? parseIpv6(text);
  if (!bytes) throw new LbError("LB_ERR_INVALID_ARG", `${what} "${text}" is not an IP address`);
  return bytes;
}

/** Encode the key of the sender's connection map (layout: `SenderKey` in src/programs/layout.ts). */
export function senderKey(c: ConnectionKey): Buffer {
  const k = Buffer.alloc(SenderKey.size);
  const remote = addressBytes("remote address", c.remoteAddress);
  k.writeUInt32LE(remote.length === 16 ? AF_INET6 : AF_INET, SenderKey.family);
  k.writeUInt16LE(c.localPort, SenderKey.localPort);
  k.writeUInt16LE(c.remotePort, SenderKey.remotePort);
  k.set(addressBytes("local address", c.localAddress), SenderKey.local);
  k.set(remote, SenderKey.remote);
  return k;
}

/** Encode the value of the sender's connection map (layout: `SenderValue` in src/programs/layout.ts). */
export function senderValue(client: { address: string; port: number }, kind: number, inSyn: boolean): Buffer {
  const v = Buffer.alloc(SenderValue.size);
  const addr = addressBytes("client address", client.address);
  v.writeUInt8(kind, SenderValue.kind);
  v.writeUInt8(addr.length === 16 ? 6 : 4, SenderValue.family);
  v.writeUInt8(inSyn ? SENDER_FLAG_SYN : 0, SenderValue.flags);
  v.writeUInt16BE(client.port, SenderValue.port);
  v.set(addr, SenderValue.addr);
  return v;
}

/** Options of {@link ToaSender.open}. */
export interface SenderOptions {
  /** cgroup v2 folder whose sockets may get a TOA (only registered connections do). */
  cgroupPath: string;
  /** Default option kind (254). */
  kind?: number;
  /** Also write the TOA into the SYN (as LVS does; DPVS stopped). */
  inSyn?: boolean;
}

/** The sender loaded and attached; close() detaches it. */
export class ToaSender implements ClientAddressWriter {
  private constructor(
    private readonly conns: BpfMap,
    private readonly stats: BpfMap<number, bigint>,
    private readonly program: Program,
    private readonly attachment: CgroupAttachment,
    private readonly options: SenderOptions,
  ) {}

  /** Load the program and attach it to `options.cgroupPath` (needs root or CAP_BPF + CAP_NET_ADMIN). */
  static open(options: SenderOptions): ToaSender {
    requireFeatures(["sock-ops", "sock-ops-hdr-opt", "cgroup2"]);
    try {
      raiseMemlockLimit();
    } catch {
      /* newer kernels don't need it */
    }
    const conns = BpfMap.create(mapSpecs.senderConns);
    const stats = BpfMap.create(mapSpecs.senderStats, { key: codec.u32, value: codec.u64 });
    let program: Program | undefined;
    try {
      program = Program.load(senderProgram(), { maps: { [MapName.senderConns]: conns, [MapName.senderStats]: stats } });
      const attachment = attachCgroup(options.cgroupPath, program, "CGROUP_SOCK_OPS");
      return new ToaSender(conns, stats, program, attachment, options);
    } catch (e) {
      program?.close();
      conns.close();
      stats.close();
      throw e;
    }
  }

  /** Write `client` as TOA on the connection `conn` (call before connect()). */
  register(conn: ConnectionKey, client: { address: string; port: number }, kind = this.options.kind ?? 254): void {
    this.conns.update(senderKey(conn), senderValue(client, kind, this.options.inSyn ?? false));
  }

  /** Forget a connection (after close). */
  unregister(conn: ConnectionKey): void {
    this.conns.delete(senderKey(conn));
  }

  /** Options written and skipped (no room), summed over CPUs. */
  counters(): { written: number; skippedNoSpace: number; synWritten: number } {
    const sum = (i: number) => Number((this.stats.lookupPerCpu(i) ?? []).reduce((a, b) => a + b, 0n));
    return { written: sum(Counter.sender_written), skippedNoSpace: sum(Counter.sender_skipped_no_space), synWritten: sum(Counter.sender_syn_written) };
  }

  /** Detach and release everything. */
  close(): void {
    this.attachment.detach();
    this.program.close();
    this.conns.close();
    this.stats.close();
  }
}

