/**
 * Opening the backend side of a connection. In `toa` mode the balancer picks the local address and
 * port itself, registers the client address for that 4-tuple with the TOA sender, then connects, so
 * the handshake ACK already carries the TOA (a server that speaks first sees the client at accept()).
 */
import { connect as netConnect, type Socket } from "node:net";
import type { Backend } from "./backend.js";
import type { ClientAddressWriter, ConnectionKey } from "./client-address.js";
import { unmapV4 } from "./endpoint.js";
import { LbError } from "./errors.js";
import type { Pool } from "./pool.js";

/** Ports tried after EADDRINUSE (a port of ours still in TIME_WAIT, or used by another process). */
export const MAX_BIND_ATTEMPTS = 32;

/** A connected backend socket; `release` frees the local port and the sender entry when it closes. */
export interface BackendConnection {
  socket: Socket;
  key?: ConnectionKey;
}

export interface ConnectRequest {
  pool: Pool;
  backend: Backend;
  client: { address: string; port: number };
  /** Set in `toa` mode. */
  toa?: { writer: ClientAddressWriter; kind: number };
  timeoutMs: number;
  /** Read the backend socket with this (see RelayReader) instead of 'data' events. */
  onread?: OnRead;
}

/** net's `onread` option. */
export interface OnRead {
  buffer: () => Uint8Array;
  callback: (n: number, buf: Buffer) => boolean;
}

/** One TCP connect bounded by `timeoutMs`; the socket is half-open capable and not yet read. */
export function tcpConnect(opts: { host: string; port: number; localAddress?: string; localPort?: number; onread?: OnRead }, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // `host` is always an IP literal (config validation): net skips the DNS lookup for those.
    const s = netConnect({ host: opts.host, port: opts.port, localAddress: opts.localAddress, localPort: opts.localPort, onread: opts.onread, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new LbError("LB_ERR_CONNECT_TIMEOUT", `connect to ${opts.host}:${opts.port} timed out after ${timeoutMs}ms`));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(timer);
      s.removeAllListeners("error");
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(timer);
      s.destroy();
      reject(e);
    });
  });
}

/**
 * Connect to `req.backend`. Rejects with the socket error (ECONNREFUSED...), LB_ERR_CONNECT_TIMEOUT
 * or LB_ERR_PORTS_EXHAUSTED. In `toa` mode, the registration and the local port are released when
 * the returned socket closes.
 */
export async function connectBackend(req: ConnectRequest): Promise<BackendConnection> {
  const { pool, backend } = req;
  const deadline = Date.now() + req.timeoutMs;
  if (!req.toa) {
    const localAddress = pool.config.sourceAddresses.length > 0 ? await pool.localAddresses.pick(backend) : undefined;
    return { socket: await tcpConnect({ host: backend.address, port: backend.port, localAddress, onread: req.onread }, req.timeoutMs) };
  }
  const { writer, kind } = req.toa;
  const localAddress = await pool.localAddresses.pick(backend);
  const ports = pool.ports.get(localAddress, backend.id);
  const client = { address: unmapV4(req.client.address), port: req.client.port };
  for (let attempt = 0; attempt < MAX_BIND_ATTEMPTS; attempt++) {
    const localPort = ports.acquire();
    if (localPort === undefined) break;
    const key: ConnectionKey = { localAddress, localPort, remoteAddress: backend.address, remotePort: backend.port };
    writer.register(key, client, kind);
    const release = (): void => {
      writer.unregister(key);
      ports.release(localPort);
    };
    try {
      const socket = await tcpConnect({ host: backend.address, port: backend.port, localAddress, localPort, onread: req.onread }, Math.max(1, deadline - Date.now()));
      socket.once("close", release);
      return { socket, key };
    } catch (e) {
      release();
      if ((e as NodeJS.ErrnoException).code !== "EADDRINUSE") throw e;
    }
  }
  throw new LbError("LB_ERR_PORTS_EXHAUSTED", `no free local port on ${localAddress} for ${backend.id} (range ${pool.config.sourcePorts.first}-${pool.config.sourcePorts.last}, ${ports.inUse} in use)`);
}
