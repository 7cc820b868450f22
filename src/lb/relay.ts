/**
 * Copies bytes both ways between a client and a backend socket, in JavaScript.
 *
 *  client ──data──▶ backend.write ─ false? ─▶ client.pause() … backend 'drain' ─▶ client.resume()
 *  client ◀─write── backend onread (static buffer)  ─ queued? ─▶ backend paused … write done ─▶ resume
 *
 * - Backpressure: a side is paused while the other's write buffer is above its highWaterMark
 *   (16 KiB), so a connection holds at most about one read chunk (64 KiB) plus that per direction.
 * - Fast reads (backend sockets opened with `onread: new RelayReader().onread`): Node reads straight into a
 *   buffer of ours (`onread`), skipping the Readable stream machinery. Small reads land in one
 *   buffer shared by every socket and are copied out before the next read; a socket whose reads
 *   fill it gets its own 64 KiB buffer, written to the peer without a copy. That buffer is reused
 *   only once the kernel took every byte: a write that did not complete at once pauses the reader
 *   until its callback (so no read can overwrite bytes still queued).
 * - Half-close: a FIN from one side is passed on with end(); the other direction keeps flowing
 *   (both sockets need allowHalfOpen). The connection is done when both sockets are closed.
 * - RST: a side reset by its peer (ECONNRESET) resets the other (`resetAndDestroy`, Node ≥ 18.3).
 * - Idle timeout: no byte either way for `idleTimeoutMs` closes both sides. One coarse timer per
 *   timeout value sweeps the open relays (tick = timeout / 4, 25 ms – 1 s) and compares the bytes
 *   read on both sockets with the last tick: no per-socket timer, nothing per chunk.
 */
import type { Socket } from "node:net";

/** How a relayed connection ended. */
export type RelayEnd = "closed" | "client-reset" | "backend-reset" | "idle-timeout" | "error";

export interface RelayOptions {
  idleTimeoutMs: number;
  /** Bytes moved: `in` = client → backend, `out` = backend → client. */
  onBytes?(direction: "in" | "out", n: number): void;
  /** Once, after both sockets closed. */
  onEnd?(how: RelayEnd, error?: Error): void;
}

/** Reads below this size are copied out of the shared buffer; a read this big gives the socket its own. */
const SHARED_SIZE = 64 * 1024;
const OWN_SIZE = 64 * 1024;
let shared: Buffer | undefined;

/**
 * A reader for a socket created with `onread: reader.onread` (backend sockets), handing bytes to
 * whatever {@link relay} attaches. Bytes that arrive before (a backend that speaks first) are kept.
 */
export class RelayReader {
  /** Set by relay(): the write side of this direction. */
  private to: Socket | null = null;
  private from: Socket | null = null;
  private onBytes: ((n: number) => void) | null = null;
  private own: Buffer | null = null;
  /** Bytes read before relay() attached. */
  private early: Buffer[] | null = null;
  private waiting = false;
  readonly onread = {
    buffer: (): Buffer => this.own ?? (shared ??= Buffer.allocUnsafeSlow(SHARED_SIZE)),
    callback: (n: number, buf: Buffer): boolean => this.read(n, buf),
  };
  /** Write callback of own-buffer writes (made with the buffer: connections that never move bulk skip it). */
  private written: (() => void) | null = null;

  private read(n: number, buf: Buffer): boolean {
    const to = this.to;
    if (buf === this.own && to !== null) {
      this.onBytes?.(n);
      if (to.destroyed) return true;
      to.write(n === buf.length ? buf : buf.subarray(0, n), this.written!);
      if (to.writableLength === 0) return true; // the kernel took it all: the buffer is free again
      this.waiting = true;
      return false;
    }
    // The shared buffer (or nobody to write to yet): copy out now (the next read overwrites it).
    this.onBytes?.(n);
    const copy = Buffer.allocUnsafe(n);
    buf.copy(copy, 0, 0, n);
    if (n >= SHARED_SIZE / 2 && this.own === null) {
      this.own = Buffer.allocUnsafeSlow(OWN_SIZE);
      this.written = () => {
        if (!this.waiting) return;
        this.waiting = false;
        this.from?.resume();
      };
    }
    if (to === null) {
      (this.early ??= []).push(copy);
      return true;
    }
    if (to.destroyed) return true;
    if (to.write(copy)) return true;
    // 'drain' resumes (attached in relay); an own-buffer write waits for its callback instead.
    return false;
  }

  /** Start relaying to `to`; flushes bytes read so far. */
  attach(from: Socket, to: Socket, onBytes: ((n: number) => void) | null): void {
    this.from = from;
    this.to = to;
    this.onBytes = onBytes;
    if (this.early) {
      let n = 0;
      for (const b of this.early) {
        n += b.length;
        to.write(b);
      }
      this.early = null;
      onBytes?.(n);
    }
    to.on("drain", () => {
      if (!this.waiting) from.resume();
    });
  }
}

/** Open relays per idle timeout value, swept by one timer each. */
const idleSets = new Map<number, { relays: Set<Relay>; timer: NodeJS.Timeout }>();

function watchIdle(r: Relay, ms: number): void {
  let s = idleSets.get(ms);
  if (!s) {
    const relays = new Set<Relay>();
    const tick = Math.min(1000, Math.max(25, Math.floor(ms / 4)));
    const timer = setInterval(() => {
      const now = Date.now();
      for (const x of relays) x.sweep(now, ms);
    }, tick);
    timer.unref();
    s = { relays, timer };
    idleSets.set(ms, s);
  }
  s.relays.add(r);
}

function unwatchIdle(r: Relay, ms: number): void {
  const s = idleSets.get(ms);
  if (!s) return;
  s.relays.delete(r);
  if (s.relays.size === 0) {
    clearInterval(s.timer);
    idleSets.delete(ms);
  }
}

const readBytes = (s: Socket): number => s.bytesRead;

class Relay {
  how: RelayEnd = "closed";
  firstError: Error | undefined;
  open = 2;
  lastBytes = -1;
  lastActive = 0;

  constructor(
    readonly client: Socket,
    readonly backend: Socket,
    readonly opts: RelayOptions,
  ) {}

  sweep(now: number, ms: number): void {
    const b = readBytes(this.client) + readBytes(this.backend);
    if (b !== this.lastBytes) {
      this.lastBytes = b;
      this.lastActive = now;
    } else if (now - this.lastActive >= ms) {
      if (this.how === "closed") this.how = "idle-timeout";
      this.client.destroy();
      this.backend.destroy();
    }
  }

  side(from: Socket, to: Socket, direction: "in" | "out", reader: RelayReader | undefined): void {
    const opts = this.opts;
    if (reader) reader.attach(from, to, opts.onBytes ? (n) => opts.onBytes!(direction, n) : null);
    else {
      from.on("data", (chunk: Buffer) => {
        opts.onBytes?.(direction, chunk.length);
        if (!to.write(chunk)) from.pause();
      });
      to.on("drain", () => from.resume());
    }
    from.on("end", () => {
      if (!to.destroyed) to.end();
    });
    from.on("error", (e: NodeJS.ErrnoException) => {
      this.firstError ??= e;
      const reset = e.code === "ECONNRESET";
      if (this.how === "closed") this.how = reset ? (from === this.client ? "client-reset" : "backend-reset") : "error";
      if (to.destroyed) return;
      if (reset && typeof to.resetAndDestroy === "function" && to.readyState !== "closed") to.resetAndDestroy();
      else to.destroy();
    });
    from.on("close", () => {
      // `from` is gone (normally both ways, or destroyed by a timeout or a drain): flush what is
      // queued for `to`, then close it, so no socket outlives its partner.
      if (!to.destroyed) to.destroySoon();
      if (--this.open === 0) {
        if (opts.idleTimeoutMs > 0) unwatchIdle(this, opts.idleTimeoutMs);
        opts.onEnd?.(this.how, this.firstError);
      }
    });
  }
}

/** Node's own symbols for `onread` (net.Socket keeps them as own properties), looked up once. */
let onreadSymbols: { buffer: symbol; callback: symbol; gen: symbol } | null | undefined;

/**
 * Switch an accepted socket that is not reading yet (`pauseOnConnect`) to `reader`, as if it had been
 * created with `onread: reader.onread` (net.Server has no such option). Returns false, changing
 * nothing, when this Node does not lay the socket out as expected: the relay then uses 'data' events.
 */
export function adoptReader(socket: Socket, reader: RelayReader): boolean {
  if (onreadSymbols === undefined) {
    const find = (name: string): symbol | undefined => Object.getOwnPropertySymbols(socket).find((x) => x.description === name);
    const buffer = find("kBuffer");
    const callback = find("kBufferCb");
    const gen = find("kBufferGen");
    onreadSymbols = buffer && callback && gen ? { buffer, callback, gen } : null;
  }
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void; reading?: boolean } })._handle;
  if (!onreadSymbols || !handle || typeof handle.useUserBuffer !== "function" || handle.reading) return false;
  const o = socket as unknown as Record<symbol, unknown>;
  if (o[onreadSymbols.buffer] !== null) return false;
  const buf = reader.onread.buffer();
  o[onreadSymbols.buffer] = buf;
  o[onreadSymbols.callback] = reader.onread.callback;
  o[onreadSymbols.gen] = reader.onread.buffer;
  handle.useUserBuffer(buf);
  return true;
}

/**
 * Relay between two connected sockets until both are closed. `backendReader`: the reader the
 * backend socket was opened with, if any (its bytes then skip the stream machinery); `clientReader`:
 * the same for the client, adopted with {@link adoptReader}.
 */
export function relay(client: Socket, backend: Socket, opts: RelayOptions, backendReader?: RelayReader, clientReader?: RelayReader): void {
  const r = new Relay(client, backend, opts);
  r.side(client, backend, "in", clientReader);
  r.side(backend, client, "out", backendReader);
  if (opts.idleTimeoutMs > 0) {
    r.lastActive = Date.now();
    r.lastBytes = readBytes(client) + readBytes(backend);
    watchIdle(r, opts.idleTimeoutMs);
  }
}
