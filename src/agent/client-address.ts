/**
 * The Node API: the client address of a socket, read by its fd from the pinned socket-storage map,
 * NAT64 included (an IPv6 client on an IPv4 socket, which getpeername can't carry).
 *
 * It is called from request handlers, so it never throws for a receiver that is not there (nothing
 * pinned at `pinDir`, no permission to open it, a closed socket): it returns null and warns once per
 * pin folder and cause (process.emitWarning, code TOA_NO_RECEIVER), with the fix. While nothing is
 * pinned each call tries the pin again (one failed syscall), so a later `toa load` is picked up at once.
 */
import type { Socket } from "node:net";
import { BpfMap, codec, socketFd, socketStorage, type ValueOf } from "../bpf/index.js";
import { Peer } from "../programs/layout.js";
import { DEFAULT_PIN_DIR, pinPaths } from "./pins.js";
import { formatAddress } from "../wire/addr.js";

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

/** Options of {@link clientAddress}. */
export interface ClientAddressOptions {
  /**
   * The pin folder of the receiver whose map to read: the `--pin-dir` of `toa load` (default
   * /sys/fs/bpf/toa), or for `toa agent` the target's folder (`toa agent --check` and /targets list it).
   */
  pinDir?: string;
}

/** struct toa_peer as the peers map holds it. */
type PeerStruct = ValueOf<typeof Peer>;
const peerCodecs = { key: codec.s32, value: Peer };

/** Decode a toa_peer value (its bytes, or as the typed map returns it). */
export function decodePeer(value: Buffer | PeerStruct): ClientAddress | null {
  const v = Buffer.isBuffer(value) ? Peer.decode(value) : value;
  if (v.family !== 4 && v.family !== 6) return null;
  const len = v.family === 4 ? 4 : 16;
  const viaLen = v.viaFamily === 6 ? 16 : 4;
  return {
    address: formatAddress(v.addr.subarray(0, len)),
    port: v.port,
    family: v.family === 4 ? "IPv4" : "IPv6",
    foundIn: (["syn", "ack", "data"] as const)[v.foundIn - 1] ?? "ack",
    kind: v.kind,
    via: { address: formatAddress(v.viaAddr.subarray(0, viaLen)), port: v.viaPort },
  };
}

const opened = new Map<string, BpfMap<number, PeerStruct>>();
const warned = new Set<string>();

/** Warn once per pin folder and cause. */
function warnOnce(pinDir: string, cause: string, text: string): void {
  const key = `${pinDir}\0${cause}`;
  if (warned.has(key)) return;
  warned.add(key);
  process.emitWarning(text, { code: "TOA_NO_RECEIVER" });
}

function fixFor(pinDir: string, e: Error & { errnoName?: string }): { cause: string; text: string } {
  const flag = pinDir === DEFAULT_PIN_DIR ? "" : ` --pin-dir ${pinDir}`;
  if (e.errnoName === "ENOENT") {
    return {
      cause: "ENOENT",
      text: `toa clientAddress: no receiver is loaded at ${pinDir} (${pinPaths(pinDir).peers} is not pinned), so every connection reads as having no TOA (null). Fix: \`sudo toa load${flag} --cgroup <this server's cgroup> --trust <balancer CIDRs>\`, or pass the pin folder it was loaded with: clientAddress(socket, { pinDir: "/sys/fs/bpf/..." })`,
    };
  }
  if (e.errnoName === "EPERM" || e.errnoName === "EACCES") {
    return { cause: e.errnoName, text: `toa clientAddress: not allowed to open ${pinPaths(pinDir).peers} (${e.errnoName}), so every connection reads as having no TOA (null). Fix: run the server as root or with CAP_BPF, or read the address with getpeername() (socket.remoteAddress), which the receiver rewrites for every process` };
  }
  return { cause: "other", text: `toa clientAddress: cannot read the receiver's map at ${pinDir}: ${e.message}; returning null` };
}

/** The map pinned at `pinDir`, opened once and kept; undefined (with a warning once) when it can't be. */
function peersMap(pinDir: string): BpfMap<number, PeerStruct> | undefined {
  const held = opened.get(pinDir);
  if (held) return held;
  try {
    const m = BpfMap.fromPin(pinPaths(pinDir).peers, peerCodecs);
    opened.set(pinDir, m);
    return m;
  } catch (e) {
    const { cause, text } = fixFor(pinDir, e as Error);
    warnOnce(pinDir, cause, text);
    return undefined;
  }
}

/** The map pinned at `pinDir` now, when it is not the one we hold; undefined when unpinned or the same. */
function replacedPeers(pinDir: string, held: BpfMap<number, PeerStruct>): BpfMap<number, PeerStruct> | undefined {
  let pinned: BpfMap<number, PeerStruct>;
  try {
    pinned = BpfMap.fromPin(pinPaths(pinDir).peers, peerCodecs);
  } catch {
    return undefined; // unloaded: no TOA for anyone, as before
  }
  if (pinned.info.id !== held.info.id) return pinned;
  pinned.close();
  return undefined;
}

function lookup(map: BpfMap<number, PeerStruct>, fd: number): PeerStruct | undefined {
  try {
    return socketStorage(map, fd);
  } catch {
    return undefined; // EBADF: the socket closed meanwhile
  }
}

/**
 * The client address of `socket` from its TOA, or null when the connection carried none — or when
 * no receiver can be read at `pinDir` (then a warning, once, says why and what fixes it). Never
 * throws. Reading needs root or CAP_BPF. The map stays open for later calls.
 *
 * ```js
 * clientAddress(req.socket)                                        // toa load (default /sys/fs/bpf/toa)
 * clientAddress(req.socket, { pinDir: "/sys/fs/bpf/toa-nginx" })   // toa load --pin-dir /sys/fs/bpf/toa-nginx
 * ```
 */
export function clientAddress(socket: Socket, options: ClientAddressOptions = {}): ClientAddress | null {
  const pinDir = options.pinDir ?? DEFAULT_PIN_DIR;
  let fd: number;
  try {
    fd = socketFd(socket);
  } catch {
    return null; // closed, or not a TCP socket
  }
  const held = peersMap(pinDir);
  if (!held) return null;
  let v = lookup(held, fd);
  if (v === undefined) {
    // A miss may also mean `toa unload` + `toa load` replaced the map we hold since: the pin then
    // names another map. Only misses pay for this check; hits stay one look-up.
    const pinned = replacedPeers(pinDir, held);
    if (pinned) {
      held.close();
      opened.set(pinDir, pinned);
      v = lookup(pinned, fd);
    }
  }
  return v ? decodePeer(v) : null;
}

/**
 * For http servers, Express and Fastify: the client of a request (`req.socket`), falling back to the
 * socket's own peer when there is no TOA. Never throws.
 */
export function requestClient(req: { socket: Socket }, options: ClientAddressOptions = {}): { address: string; port: number } {
  const c = clientAddress(req.socket, options);
  return c ? { address: c.address, port: c.port } : { address: req.socket.remoteAddress ?? "", port: req.socket.remotePort ?? 0 };
}

/** Close the maps opened by {@link clientAddress} (and forget its warnings). */
export function closeClientAddressMaps(): void {
  for (const m of opened.values()) m.close();
  opened.clear();
  warned.clear();
}
