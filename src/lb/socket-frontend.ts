/**
 * The socket listeners as one {@link Frontend}: every listener not on the packet path, the ones a
 * reload removed whose clients are still connected, and the TOA sender they register connections
 * with (opened the first time a listener in `toa` mode needs it, kept until close).
 */
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { ClientAddressWriter } from "./client-address.js";
import type { LbConfig, ListenerConfig } from "./config.js";
import { formatEndpoint } from "./endpoint.js";
import { LbError } from "./errors.js";
import type { Frontend } from "./frontend.js";
import { Listener } from "./listener.js";
import type { Pool } from "./pool.js";
import { type FrontendStats, modeText } from "./status.js";

/** Opens the TOA sender; throws (or rejects) when it is unavailable. */
export type OpenWriter = () => ClientAddressWriter | Promise<ClientAddressWriter>;

/** Whether listener `l` is served by sockets in this process. */
const onSockets = (l: ListenerConfig): boolean => l.dataPath !== "packet";

export class SocketFrontend implements Frontend {
  private readonly listeners = new Map<string, Listener>();
  /** Listeners removed by a reload whose connections are still open. */
  private readonly retired = new Set<Listener>();
  private writer: ClientAddressWriter | null = null;
  /** The writer was opened by the prepare not yet committed (closed again if it is refused or aborted). */
  private writerOpenedByPrepare = false;
  /** Bound by {@link prepare}, waiting for {@link commit}: new listeners, and the running ones kept. */
  private pending: { opened: Listener[]; kept: Map<string, Listener> } | null = null;

  constructor(
    private readonly pools: ReadonlyMap<string, Pool>,
    private readonly log: Logger,
    private readonly openWriter?: OpenWriter,
  ) {}

  async prepare(config: LbConfig): Promise<void> {
    const mine = config.listeners.filter(onSockets);
    if (mine.some((l) => l.mode === "toa") && !this.writer) {
      if (!this.openWriter) throw new LbError("LB_ERR_TOA_SENDER", "TOA sender unavailable: no sender configured (use mode proxy-v2, proxy-v1 or none)");
      this.writer = await this.openWriter();
      // Opened for this config only: a refused prepare or an abort must not leave it attached.
      this.writerOpenedByPrepare = true;
    }
    try {
      await this.bindNew(mine);
    } catch (e) {
      this.closeWriterOpenedByPrepare();
      throw e;
    }
  }

  /** Bind the listeners of `mine` that are new or moved; the running ones are kept. */
  private async bindNew(mine: LbConfig["listeners"]): Promise<void> {
    // New listeners first: if one cannot bind, nothing has changed yet.
    const opened: Listener[] = [];
    const deps = { pool: (n: string) => this.pools.get(n), writer: () => this.writer, log: this.log };
    const kept = new Map<string, Listener>();
    for (const lc of mine) {
      const cur = this.listeners.get(lc.name);
      const boundPort = (cur?.server.address() as AddressInfo | null)?.port;
      if (cur && cur.config.listen.address === lc.listen.address && (cur.config.listen.port === lc.listen.port || boundPort === lc.listen.port || lc.listen.port === 0)) {
        kept.set(lc.name, cur);
        continue;
      }
      const l = new Listener(lc, deps);
      try {
        await l.listen();
      } catch (e) {
        for (const o of opened) o.stopAccepting();
        throw e;
      }
      opened.push(l);
    }
    this.pending = { opened, kept };
  }

  abort(): void {
    for (const l of this.pending?.opened ?? []) l.stopAccepting();
    this.pending = null;
    this.closeWriterOpenedByPrepare();
  }

  private closeWriterOpenedByPrepare(): void {
    if (!this.writerOpenedByPrepare) return;
    this.writerOpenedByPrepare = false;
    const w = this.writer;
    this.writer = null;
    w?.close?.();
  }

  /** Keep, add, retire. */
  commit(config: LbConfig): void {
    const { opened, kept } = this.pending ?? { opened: [], kept: new Map<string, Listener>() };
    this.pending = null;
    this.writerOpenedByPrepare = false;
    for (const lc of config.listeners) {
      const l = kept.get(lc.name);
      if (l) l.config = lc;
    }
    for (const [name, l] of this.listeners) {
      if (kept.get(name) === l) continue;
      l.stopAccepting();
      this.listeners.delete(name);
      if (l.stats.active > 0) this.retired.add(l);
    }
    for (const l of opened) {
      this.listeners.set(l.name, l);
      const a = l.server.address() as AddressInfo;
      this.log.info({ listener: l.name, mode: l.config.mode, pool: l.config.pool }, `listening on ${formatEndpoint(a)} (${l.config.mode}) → pool ${l.config.pool}`);
    }
  }

  stopAccepting(): void {
    for (const l of this.listeners.values()) l.stopAccepting();
  }

  active(): number {
    let n = 0;
    for (const l of this.listeners.values()) n += l.stats.active;
    for (const l of this.retired) n += l.stats.active;
    return n;
  }

  /** The relay counts its connections as they end: nothing to refresh. */
  async settle(): Promise<void> {
    await new Promise((r) => setTimeout(r, 50));
  }

  address(name: string): AddressInfo | null {
    return (this.listeners.get(name)?.server.address() as AddressInfo | null) ?? null;
  }

  stats(): FrontendStats {
    for (const l of this.retired) if (l.stats.active === 0) this.retired.delete(l);
    const sender = this.writer?.counters?.() ?? { written: 0, skippedNoSpace: 0 };
    return {
      listeners: [...this.listeners.values(), ...this.retired].map((l) => ({
        name: l.name,
        listen: formatEndpoint((l.server.address() as AddressInfo | null) ?? l.config.listen),
        mode: modeText(l.config),
        dataPath: l.config.dataPath,
        pool: l.config.pool,
        ...l.stats,
      })),
      // The relay counts on the pool's Backend objects themselves.
      backend: () => undefined,
      toa: { written: sender.written, skippedNoSpace: sender.skippedNoSpace },
      packet: null,
    };
  }

  readonly outlivesProcess = false;

  async abandon(): Promise<void> {
    this.close();
  }

  close(): void {
    for (const l of [...this.listeners.values(), ...this.retired]) {
      l.stopAccepting();
      l.destroyAll();
    }
    this.listeners.clear();
    this.retired.clear();
    try {
      this.writer?.close?.();
    } finally {
      this.writer = null;
    }
  }
}
