/**
 * One listening socket: accepts clients, picks a backend (retrying others until the connect timeout),
 * writes the PROXY header for those modes, then relays. A client is never left waiting: with no
 * healthy backend it is closed at once; when every try failed or the connect timeout passed it is
 * closed too.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import type { Backend } from "./backend.js";
import type { ClientAddressWriter } from "./client-address.js";
import type { ListenerConfig } from "./config.js";
import { type BackendConnection, connectBackend } from "./connect.js";
import { formatEndpoint } from "./endpoint.js";
import { LbError } from "./errors.js";
import type { Pool } from "./pool.js";
import { proxyHeader } from "./proxy-header.js";
import { adoptReader, RelayReader, relay, type RelayOptions } from "./relay.js";

/** Counters of one listener. */
export interface ListenerStats {
  accepted: number;
  active: number;
  bytesIn: number;
  bytesOut: number;
  /** Clients closed because no backend was healthy. */
  noBackend: number;
  /** Clients closed because every connect attempt failed. */
  failed: number;
  connectErrors: number;
}

/** What a listener needs from the balancer (looked up per connection, so a reload applies at once). */
export interface ListenerDeps {
  pool(name: string): Pool | undefined;
  writer(): ClientAddressWriter | null;
  log: Logger;
}

export class Listener {
  readonly server: Server;
  readonly stats: ListenerStats = { accepted: 0, active: 0, bytesIn: 0, bytesOut: 0, noBackend: 0, failed: 0, connectErrors: 0 };
  /** Client sockets open now (drain waits for them, close destroys them). */
  readonly clients = new Set<Socket>();
  private accepting = false;

  constructor(
    public config: ListenerConfig,
    private readonly deps: ListenerDeps,
  ) {
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (s) => void this.handle(s));
    this.server.on("error", (e) => deps.log.error({ listener: config.name, err: e }, "listener error"));
  }

  get name(): string {
    return this.config.name;
  }

  /** Bind and listen; rejects with LB_ERR_LISTEN naming the address. */
  listen(): Promise<void> {
    const { address, port } = this.config.listen;
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(new LbError("LB_ERR_LISTEN", `listener ${this.name}: cannot listen on ${formatEndpoint(this.config.listen)}: ${e.message}`, { cause: e }));
      this.server.once("error", onError);
      // ipv6Only for [::] would hide IPv4 clients; Node's default (dual stack) is what users expect.
      this.server.listen({ host: address, port, backlog: 4096 }, () => {
        this.server.off("error", onError);
        this.accepting = true;
        resolve();
      });
    });
  }

  /** Stop accepting; established connections go on. */
  stopAccepting(): void {
    if (!this.accepting) return;
    this.accepting = false;
    this.server.close();
  }

  /** Close every client connection now (the end of a drain). */
  destroyAll(): void {
    for (const c of this.clients) c.destroy();
  }

  private async handle(client: Socket): Promise<void> {
    const cfg = this.config;
    const log = this.deps.log;
    const st = this.stats;
    client.on("error", () => undefined); // reported by the relay; before it, the client just goes
    // The client's address costs a getpeername(): read it only when used (source-hash, toa, PROXY, logs).
    let peer: { address: string; port: number } | undefined;
    const clientAddr = (): { address: string; port: number } => (peer ??= { address: client.remoteAddress ?? "", port: client.remotePort ?? 0 });
    st.accepted++;
    st.active++;
    this.clients.add(client);
    client.once("close", () => {
      st.active--;
      this.clients.delete(client);
    });
    if (!this.accepting) return void client.destroy();

    const pool = this.deps.pool(cfg.pool);
    const writer = cfg.mode === "toa" ? this.deps.writer() : null;
    const deadline = Date.now() + cfg.connectTimeoutMs;
    // The relay reads backends into its own buffers (onread): no allocation per read.
    const reader = new RelayReader();
    const tried = new Set<Backend>();
    const hashed = pool?.config.scheduler === "source-hash";
    let conn: BackendConnection | undefined;
    let backend: Backend | undefined;
    while (pool && Date.now() < deadline && !client.destroyed) {
      backend = pool.pick(hashed ? clientAddr().address : "", tried);
      if (!backend) break;
      tried.add(backend);
      backend.active++;
      try {
        conn = await connectBackend({
          pool,
          backend,
          client: writer ? clientAddr() : { address: "", port: 0 },
          toa: writer ? { writer, kind: cfg.toaKind } : undefined,
          timeoutMs: deadline - Date.now(),
          onread: reader.onread,
        });
        break;
      } catch (e) {
        backend.active--;
        const err = e as NodeJS.ErrnoException & { code?: string };
        st.connectErrors++;
        backend.stats.connectErrors++;
        if (err.code === "LB_ERR_PORTS_EXHAUSTED") backend.stats.portExhausted++;
        log.warn({ listener: cfg.name, pool: cfg.pool, backend: backend.id, client: formatEndpoint(clientAddr()), code: err.code }, `connect to ${backend.id} failed: ${err.message}`);
        backend = undefined;
      }
    }
    if (!conn || !backend) {
      if (tried.size === 0) {
        st.noBackend++;
        log.warn({ listener: cfg.name, pool: cfg.pool, client: formatEndpoint(clientAddr()) }, "no healthy backend: client closed");
      } else st.failed++;
      client.destroy();
      return;
    }
    const b = backend;
    const upstream = conn.socket;
    if (client.destroyed) {
      b.active--;
      upstream.destroy();
      return;
    }
    b.stats.connections++;
    if (cfg.mode === "proxy-v1" || cfg.mode === "proxy-v2") {
      const header = proxyHeader(cfg.mode, clientAddr(), { address: client.localAddress ?? "", port: client.localPort ?? 0 });
      if (header) upstream.write(header);
    }
    const relayOpts: RelayOptions = {
      idleTimeoutMs: cfg.idleTimeoutMs,
      onBytes(direction, n) {
        if (direction === "in") {
          st.bytesIn += n;
          b.stats.bytesIn += n;
        } else {
          st.bytesOut += n;
          b.stats.bytesOut += n;
        }
      },
      onEnd(how, error) {
        b.active--;
        if (how !== "closed" && log.isLevelEnabled("debug")) log.debug({ listener: cfg.name, backend: b.id, client: formatEndpoint(clientAddr()), how, err: error?.message }, "connection ended");
      },
    };
    const clientReader = new RelayReader();
    relay(client, upstream, relayOpts, reader, adoptReader(client, clientReader) ? clientReader : undefined);
    client.resume();
  }
}
