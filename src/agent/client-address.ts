/**
 * The Node API: the client address of a socket, read by its fd from the pinned socket-storage map,
 * NAT64 included (an IPv6 client on an IPv4 socket, which getpeername can't carry).
 */
import type { Socket } from "node:net";
import { BpfMap, codec, socketStorage } from "../bpf/index.js";
import { Peer } from "../programs/layout.js";
import { DEFAULT_PIN_DIR, pinPaths } from "./pins.js";
import { formatAddress } from "./settings.js";

/** A client address as the load balancer wrote it. */
export interface ClientAddress {
  address: string;
  port: number;
  family: "IPv4" | "IPv6";
  /** Which packet carried it. */
  foundIn: "syn" | "ack" | "data";
  /** Option kind it came in. */
  kind: number;
  /** The balancer's end of the connection (what getpeername would say without TOA). */
  via: { address: string; port: number };
}

/** Decode a toa_peer value. */
export function decodePeer(v: Buffer): ClientAddress | null {
  const family = v.readUInt8(Peer.family);
  if (family !== 4 && family !== 6) return null;
  const len = family === 4 ? 4 : 16;
  const viaLen = v.readUInt8(Peer.viaFamily) === 6 ? 16 : 4;
  return {
    address: formatAddress(v.subarray(Peer.addr, Peer.addr + len)),
    port: v.readUInt16BE(Peer.port),
    family: family === 4 ? "IPv4" : "IPv6",
    foundIn: (["syn", "ack", "data"] as const)[v.readUInt8(Peer.foundIn) - 1] ?? "ack",
    kind: v.readUInt8(Peer.kind),
    via: { address: formatAddress(v.subarray(Peer.viaAddr, Peer.viaAddr + viaLen)), port: v.readUInt16BE(Peer.viaPort) },
  };
}

const opened = new Map<string, BpfMap<number, Buffer>>();

function openPeers(pinDir: string): BpfMap<number, Buffer> {
  const m = BpfMap.fromPin(pinPaths(pinDir).peers, { key: codec.s32 });
  opened.set(pinDir, m);
  return m;
}

/** The map pinned at `pinDir` now, when it is not the one we hold; undefined when unpinned or the same. */
function replacedPeers(pinDir: string, held: BpfMap<number, Buffer>): BpfMap<number, Buffer> | undefined {
  let pinned: BpfMap<number, Buffer>;
  try {
    pinned = BpfMap.fromPin(pinPaths(pinDir).peers, { key: codec.s32 });
  } catch {
    return undefined; // unloaded: no TOA for anyone, as before
  }
  if (pinned.info.id !== held.info.id) return pinned;
  pinned.close();
  return undefined;
}

/**
 * The client address of `socket` from its TOA, or null when the connection carried none.
 * Needs read access to the pinned map (root or CAP_BPF). The map stays open for later calls.
 */
export function clientAddress(socket: Socket, options: { pinDir?: string } = {}): ClientAddress | null {
  const pinDir = options.pinDir ?? DEFAULT_PIN_DIR;
  const held = opened.get(pinDir);
  let v = socketStorage(held ?? openPeers(pinDir), socket);
  if (v === undefined && held) {
    // A miss may also mean `toa unload` + `toa load` replaced the map we hold since: the pin then
    // names another map. Only misses pay for this check; hits stay one look-up.
    const pinned = replacedPeers(pinDir, held);
    if (pinned) {
      held.close();
      opened.set(pinDir, pinned);
      v = socketStorage(pinned, socket);
    }
  }
  return v ? decodePeer(v) : null;
}

/**
 * For http servers, Express and Fastify: the client of a request (`req.socket`), falling back to the
 * socket's own peer when there is no TOA.
 */
export function requestClient(req: { socket: Socket }, options: { pinDir?: string } = {}): { address: string; port: number } {
  const c = clientAddress(req.socket, options);
  return c ? { address: c.address, port: c.port } : { address: req.socket.remoteAddress ?? "", port: req.socket.remotePort ?? 0 };
}

/** Close the maps opened by {@link clientAddress}. */
export function closeClientAddressMaps(): void {
  for (const m of opened.values()) m.close();
  opened.clear();
}
