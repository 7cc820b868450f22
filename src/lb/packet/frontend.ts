/**
 * The packet path as one {@link Frontend}: opens the {@link PacketDataPath} when a config first has a
 * listener on it (the program assembler, tc and netlink code are imported only then: a JS-relay
 * balancer starts without them, seconds under emulation), keeps its tables in step with each reload
 * and closes it when no listener uses it any more.
 */
import { existsSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Logger } from "pino";
import type { LbConfig, ListenerConfig } from "../config.js";
import { formatEndpoint } from "../endpoint.js";
import type { Frontend } from "../frontend.js";
import type { Pool } from "../pool.js";
import { type FrontendStats, modeText } from "../status.js";
import type { PacketDataPath } from "./data-path.js";
import { META_PIN } from "./instance-name.js";

/** How often a drain looks at the tables again (a sweep reads them all). */
const SETTLE_MS = 200;

const onPacketPath = (l: ListenerConfig): boolean => l.dataPath === "packet";

export class PacketFrontend implements Frontend {
  readonly outlivesProcess = true;
  private path: PacketDataPath | null = null;
  /** Set by {@link prepare}: the path was opened for the config being applied (closed again on abort). */
  private openedNow = false;

  constructor(
    private readonly pools: ReadonlyMap<string, Pool>,
    private readonly log: Logger,
  ) {}

  /** A listen address that isn't ours or a backend without a route is refused here, before anything changes. */
  async prepare(config: LbConfig): Promise<void> {
    const mine = config.listeners.filter(onPacketPath);
    // An instance pinned from before is adopted even by a config without packet listeners: its
    // open connections are still to be followed and swept.
    this.openedNow = !this.path && (mine.length > 0 || existsSync(join(config.packet.pinDir, META_PIN)));
    if (this.openedNow) this.path = await (await import("./data-path.js")).PacketDataPath.open(config.packet, this.log);
    try {
      await this.path?.prepare(mine, new Map(Object.entries(config.pools)), config.packet);
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  abort(): void {
    if (this.openedNow) void this.dropNew();
    this.openedNow = false;
  }

  /**
   * The tables follow the pools just updated. Without packet listeners the services go (new SYNs
   * pass) but the instance stays: its open connections end by themselves; `toa lb remove` takes it.
   */
  commit(config: LbConfig): void {
    this.openedNow = false;
    const mine = config.listeners.filter(onPacketPath);
    const had = new Set(this.path?.listeners.map((l) => l.name));
    this.path?.sync(mine, this.pools, config.packet);
    for (const l of mine) {
      if (!had.has(l.name)) this.log.info({ listener: l.name, mode: l.mode, pool: l.pool }, `packet path for ${formatEndpoint(l.listen)} (${l.mode}) → pool ${l.pool}`);
    }
  }

  /** New SYNs go to the stack (refused); established connections go on. */
  stopAccepting(): void {
    this.path?.stopNew();
    this.path?.sweep();
  }

  /** Connections in the tables at the last sweep. */
  active(): number {
    return this.path?.active ?? 0;
  }

  /** The count comes from a sweep of the tables: a fresh one while draining. */
  async settle(): Promise<void> {
    if (!this.path) return;
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    this.path?.sweep();
  }

  address(name: string): AddressInfo | null {
    const l = this.path?.listeners.find((x) => x.name === name);
    return l ? { address: l.listen.address, port: l.listen.port, family: l.listen.family === 6 ? "IPv6" : "IPv4" } : null;
  }

  stats(): FrontendStats {
    const path = this.path;
    if (!path) return { listeners: [], backend: () => undefined, toa: { written: 0, skippedNoSpace: 0 }, packet: null };
    // One read of the kernel's counters for the whole snapshot.
    const counters = path.counters();
    let written = 0;
    for (const c of counters.backends.values()) written += c.toaWritten;
    const g = counters.global;
    return {
      listeners: path.listeners.map((c) => ({ name: c.name, listen: formatEndpoint(c.listen), mode: modeText(c), dataPath: c.dataPath, pool: c.pool, ...path.listenerStats(c, counters) })),
      backend: (pool, id) => path.backendFigures(id, pool, counters),
      toa: { written, skippedNoSpace: g.toa_skipped_no_room + g.toa_skipped_mtu },
      packet: path.status(counters),
    };
  }

  /** Let go, leaving the instance serving from the kernel. */
  close(): void {
    const p = this.path;
    this.path = null;
    p?.close();
  }

  abandon(): Promise<void> {
    return this.dropNew();
  }

  /** Remove an instance this process made, let go of one it adopted (a failed start leaves nothing of its own). */
  private async dropNew(): Promise<void> {
    const p = this.path;
    this.path = null;
    if (!p) return;
    if (p.instance().adopted) return p.close();
    try {
      await p.remove();
    } catch (e) {
      this.log.error({ err: (e as Error).message }, "packet data path: removing the instance of a failed start");
    }
  }

  /** The instance this process serves, or null. */
  instance(): ReturnType<PacketDataPath["instance"]> | null {
    return this.path?.instance() ?? null;
  }
}
