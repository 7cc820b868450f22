/**
 * Where `toa` mode registers each backend connection's client address before connect(), so the
 * kernel's sock_ops sender (src/lb/sender/toa-sender.ts) puts it in the handshake ACK as a TOA. An interface,
 * so unit tests inject a fake and the lb never imports eBPF code it does not use.
 */

/** The 4-tuple of a backend connection as the balancer sees it (local = balancer side). */
export interface ConnectionKey {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

/** Registers client addresses for connections about to be opened. */
export interface ClientAddressWriter {
  /** Before connect(): the sender writes `client` (option `kind`) on this connection. */
  register(conn: ConnectionKey, client: { address: string; port: number }, kind?: number): void;
  /** After the connection closed, or when connect() failed. */
  unregister(conn: ConnectionKey): void;
  /** TOA options written, and skipped because the segment had no option room. */
  counters?(): { written: number; skippedNoSpace: number };
  /** Detach and free (the balancer owns the writer it was given). */
  close?(): void;
}
