/**
 * Local ports for `toa` mode: the balancer binds each backend connection to a port it picks, so the
 * 4-tuple is known before connect() and can be registered with the TOA sender. One allocator per
 * (local address, backend) (LVS FULLNAT keeps one per local address and real server). Ports are
 * handed out round the range from a cursor, so a port just released (maybe in TIME_WAIT on our side)
 * is the last to come back; a bind that still fails with EADDRINUSE is retried on the next port.
 */
import type { PortRange } from "./config.js";

/** A bitmap of the ports of one range in use. */
export class PortAllocator {
  private readonly used: Uint8Array;
  private cursor = 0;
  private count = 0;
  constructor(readonly range: PortRange) {
    this.used = new Uint8Array(range.last - range.first + 1);
  }

  /** Ports in use now. */
  get inUse(): number {
    return this.count;
  }
  get size(): number {
    return this.used.length;
  }

  /** The next free port after the cursor, or undefined when every port is in use. */
  acquire(): number | undefined {
    const n = this.used.length;
    if (this.count >= n) return undefined;
    for (let i = 0; i < n; i++) {
      const at = (this.cursor + i) % n;
      if (this.used[at] === 0) {
        this.used[at] = 1;
        this.count++;
        this.cursor = (at + 1) % n;
        return this.range.first + at;
      }
    }
    return undefined;
  }

  /** Give a port back (idempotent). */
  release(port: number): void {
    const at = port - this.range.first;
    if (at < 0 || at >= this.used.length || this.used[at] === 0) return;
    this.used[at] = 0;
    this.count--;
  }
}

/** The allocators of a pool, keyed by local address and backend. */
export class PortAllocators {
  private readonly byKey = new Map<string, PortAllocator>();
  constructor(private range: PortRange) {}

  get(localAddress: string, backendId: string): PortAllocator {
    const key = `${localAddress}|${backendId}`;
    let a = this.byKey.get(key);
    if (!a) {
      a = new PortAllocator(this.range);
      this.byKey.set(key, a);
    }
    return a;
  }
}
