/**
 * The kernel data path of `toa lb`: each relayed pair of sockets is spliced with a sockmap and the
 * sk_skb verdict program of src/programs/splice.ts, so payload bytes never cross into JavaScript.
 * The control plane (accept, pick, connect, PROXY header, TOA registration, close, idle timeout,
 * counters) stays here.
 *
 * Splicing one pair (the order matters):
 *  1. stop Node reading both sockets; bytes Node already buffered (a backend that spoke first) are
 *     written to the peer by hand, and every JS write (PROXY header included) is flushed into the
 *     kernel first, so nothing JS sends can overtake what the kernel redirects;
 *  2. read both cookies (SO_COOKIE) and register cookie → peer slot in splice_peers (one batch
 *     update); put both sockets into splice_socks (redirect targets, no program: nothing changes yet);
 *  3. put both into splice_verd, whose verdict program splices them from now on;
 *  4. Node reads again, only to learn about FIN (`end`, read returns 0), RST (ECONNRESET) and close.
 *
 * Backpressure is the kernel's: a redirected skb stays charged to the sender's receive buffer until
 * the peer's send path has taken it, and that takes only what the peer's send buffer holds, so a
 * peer that does not read closes the sender's TCP window (checked in test/priv/lb-splice.test.ts).
 * No socket is taken out of a map while its pair lives: leaving its last sockmap drops a socket's
 * psock, and with it the redirected bytes still queued for that socket.
 *
 * FIN: the kernel does not pass a FIN through a sockmap redirect. On `end` from one side, wait until
 * every byte the program redirected from it has been written into the peer (the redirect goes
 * through a work queue: a shutdown() too early would cut off the tail), then end() the peer; on
 * `close` of one side, the same wait before the peer is closed. RST resets the other side, as in the
 * JS relay. A closed socket leaves the sockmaps by itself (the kernel unlinks it in close()); the
 * pair's slots and splice_peers entries are freed once both sides closed, so a slot is never reused
 * while the surviving side could still redirect into it.
 * Idle timeout and byte metrics come from the program's per-socket byte counters, read for all
 * pairs at once (BPF_MAP_LOOKUP_BATCH) by one process-wide timer that runs only while pairs exist.
 */
import type { Socket } from "node:net";
import { AttachType, BpfMap, type MapSpec, Program } from "../bpf/index.js";
import { bpf, bpfTry, BpfCommand, syscalls } from "../bpf/syscall.js";
import { SyscallError } from "../bpf/errors.js";
import { SplicePeer, spliceMapSpecs, spliceVerdictProgram } from "../programs/splice.js";
import { relay, type RelayEnd, type RelayOptions } from "./relay.js";
import { socketSys } from "./splice-sys.js";

/** Pairs spliced at once by default (two sockets each); beyond it, pairs fall back to the JS relay. */
export const DEFAULT_MAX_PAIRS = 32768;
/**
 * Redirected bytes not yet written into the peer above which a pair leaves the kernel path for the
 * JS relay (whose backpressure is exact): the kernel applies none to a sockmap egress redirect.
 */
export const THROTTLE_HIGH = 4 << 20;
/**
 * Off: with it on, the 6 × 50 MB test hung in about one run in three (the hand-over to JS, not yet
 * diagnosed). Off, a peer that does not read lets the kernel queue without bound (docs/lb.md).
 */
export const THROTTLE_ENABLED = false;
/** Counters are read this often while bytes move (the throttle's reaction time). */
const FAST_POLL_MS = 10;
/** While a FIN or a close waits for redirected bytes to reach the peer, re-check this often. */
const FLUSH_TICK_MS = 5;
/** Counters (metrics, idle timeout) are read at most this often, and at least every idle timeout / 4. */
const POLL_MAX_MS = 1000;
const POLL_MIN_MS = 25;

const ENOENT = 2;

interface NodeHandle {
  fd?: number;
  reading?: boolean;
  readStop?(): number;
  readStart?(): number;
}
const handleOf = (s: Socket): NodeHandle | undefined => (s as unknown as { _handle?: NodeHandle })._handle ?? undefined;

/** The fd of a connected Node TCP socket, or -1. */
export function socketFd(s: Socket): number {
  const fd = handleOf(s)?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : -1;
}

function stopReading(s: Socket): void {
  s.pause();
  const h = handleOf(s);
  if (h?.readStop) {
    h.reading = false;
    h.readStop();
  }
}

function startReading(s: Socket): void {
  const h = handleOf(s);
  if (h?.readStart && !s.destroyed) {
    h.reading = true;
    h.readStart();
  }
  s.resume();
}

/** Resolves once everything written to `s` from JS is in the kernel (or `s` is gone). */
function flushed(s: Socket): Promise<void> {
  if (s.writableLength === 0 || s.destroyed || s.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      s.off("close", done);
      resolve();
    };
    s.once("close", done);
    s.write(Buffer.alloc(0), done);
  });
}

/** BPF_PROG_ATTACH with the map as target (sockmap programs attach to maps, not cgroups). */
function attachToMap(mapFd: number, progFd: number, type: keyof typeof AttachType): void {
  const attr = Buffer.alloc(20);
  attr.writeUInt32LE(mapFd, 0);
  attr.writeUInt32LE(progFd, 4);
  attr.writeUInt32LE(AttachType[type], 8);
  bpf(BpfCommand.PROG_ATTACH, attr, 20, `${type} on sockmap`);
}

const peerCodec = {
  size: SplicePeer.size,
  encode: (v: { slot: number; bytes: bigint }) => {
    const b = Buffer.alloc(SplicePeer.size);
    b.writeUInt32LE(v.slot, SplicePeer.slot);
    b.writeBigUInt64LE(v.bytes, SplicePeer.bytes);
    return b;
  },
  decode: (b: Buffer) => ({ slot: b.readUInt32LE(SplicePeer.slot), bytes: b.readBigUInt64LE(SplicePeer.bytes) }),
};
const u32Codec = {
  size: 4,
  encode: (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  },
  decode: (b: Buffer) => b.readUInt32LE(0),
};
const u64Codec = {
  size: 8,
  encode: (v: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return b;
  },
  decode: (b: Buffer) => b.readBigUInt64LE(0),
};

function dropSlot(m: BpfMap<number, bigint>, slot: number): void {
  try {
    m.delete(slot);
  } catch {
    /* already gone */
  }
}

/** Entry counts of the three maps (tests and status). */
export interface SpliceMapCounts {
  socks: number;
  verdict: number;
  peers: number;
}

/** One side of a spliced pair. */
interface Side {
  s: Socket;
  fd: number;
  slot: number;
  cookie: bigint;
  pair: Pair;
  /** Bytes written into this socket when splicing began (tcp_info + SIOCOUTQ, see splice-sys.ts). */
  writtenBase: number;
  /** Bytes JS wrote into this socket after `writtenBase` (bytes the program passed: none normally). */
  jsWritten: number;
  /** Bytes redirected from this socket, as last read from splice_peers. */
  counter: bigint;
  /** Of those, already reported to onBytes. */
  reported: bigint;
  /** Bytes the program wrote into this socket as last measured (only measured near THROTTLE_HIGH). */
  knownWritten: number;
}

interface Pair {
  c: Side;
  b: Side;
  opts: RelayOptions;
  pollMs: number;
  lastActive: number;
  lastJs: number;
  /** Closed by the idle timeout. */
  idle: boolean;
  /** Bytes moved in the last poll. */
  moved: boolean;
  /** Leaving the kernel path for the JS relay (see THROTTLE_HIGH). */
  demote?: () => void;
}

/** The in-kernel data path: one set of maps and one program for the whole process. */
export class KernelDataPath {
  private readonly free: number[] = [];
  private pairs = 0;
  private closed = false;
  /** Pairs handed to the JS relay because the kernel refused a socket (already half-closed). */
  fallbacks = 0;
  /** Pairs handed to the JS relay because a peer did not take the bytes redirected to it (THROTTLE_HIGH). */
  throttles = 0;
  /** Spliced sockets, by cookie (the counter poll reads splice_peers for all of them at once). */
  private readonly sides = new Map<bigint, Side>();
  private readonly live = new Set<Pair>();
  /** FIN/close hand-overs waiting for the redirected bytes to reach the peer; true when done. */
  private readonly waits = new Set<() => boolean>();
  private timer: NodeJS.Timeout | undefined;
  private timerDue = 0;
  private nextPoll = Infinity;
  // Buffers for the update batch and the look-up-and-delete (reused).
  private readonly attr = Buffer.alloc(56);
  private readonly pairKeys = Buffer.alloc(16);
  private readonly pairValues = Buffer.alloc(2 * SplicePeer.size);
  private readonly oneValue = Buffer.alloc(SplicePeer.size);
  private readonly oneKey = Buffer.alloc(8);

  private constructor(
    private readonly socks: BpfMap<number, bigint>,
    private readonly verdict: BpfMap<number, bigint>,
    private readonly peers: BpfMap<bigint, { slot: number; bytes: bigint }>,
    private readonly program: Program,
    readonly maxPairs: number,
  ) {
    for (let i = maxPairs * 2 - 1; i >= 0; i--) this.free.push(i);
  }

  /** Create the maps, load the program, attach it. Throws when the kernel lacks a piece. */
  static open(maxPairs = DEFAULT_MAX_PAIRS): KernelDataPath {
    const specs = spliceMapSpecs(maxPairs);
    const made: BpfMap<any, any>[] = [];
    const create = <K, V>(spec: MapSpec, key: { size: number; encode(v: K): Buffer; decode(b: Buffer): K }, value: { size: number; encode(v: V): Buffer; decode(b: Buffer): V }) => {
      const m = BpfMap.create<K, V>(spec, { key, value });
      made.push(m);
      return m;
    };
    let program: Program | undefined;
    try {
      const socks = create(specs.socks, u32Codec, u64Codec);
      const verdict = create(specs.verdict, u32Codec, u64Codec);
      const peers = create(specs.peers, u64Codec, peerCodec);
      program = Program.load(spliceVerdictProgram(), { maps: { splice_socks: socks, splice_verd: verdict, splice_peers: peers } });
      attachToMap(verdict.fd, program.fd, "SK_SKB_STREAM_VERDICT");
      return new KernelDataPath(socks, verdict, peers, program, maxPairs);
    } catch (e) {
      program?.close();
      for (const m of made) m.close();
      throw e;
    }
  }

  /** Pairs spliced now. */
  get activePairs(): number {
    return this.pairs;
  }

  /** Entries in each map now (walks the maps: for tests and diagnostics). */
  mapCounts(): SpliceMapCounts {
    const count = (m: BpfMap<any, any>) => {
      let n = 0;
      if (m.info.type === 15 /* SOCKMAP: get_next_key walks every slot; count the filled ones */) {
        for (const k of m.keys()) if (m.lookupRaw(k) !== undefined) n++;
      } else for (const _ of m.keys()) n++;
      return n;
    };
    return { socks: count(this.socks), verdict: count(this.verdict), peers: count(this.peers) };
  }

  /**
   * Splice `client` and `backend` (connected, not yet relayed). Returns false, changing nothing,
   * when the pair cannot be spliced (no fd, maps full): the caller relays it in JS instead.
   */
  splice(client: Socket, backend: Socket, opts: RelayOptions): boolean {
    if (this.closed || this.free.length < 2) return false;
    const fdC = socketFd(client);
    const fdB = socketFd(backend);
    if (fdC < 0 || fdB < 0) return false;
    stopReading(client);
    stopReading(backend);
    // Bytes Node already read (a backend that speaks first) go to the peer before anything else.
    const early = (from: Socket, to: Socket): number => {
      let n = 0;
      for (let chunk = from.read() as Buffer | null; chunk !== null; chunk = from.read() as Buffer | null) {
        n += chunk.length;
        to.write(chunk);
      }
      stopReading(from); // read() may have restarted the handle
      return n;
    };
    const earlyIn = early(client, backend);
    const earlyOut = early(backend, client);
    if (earlyIn) opts.onBytes?.("in", earlyIn);
    if (earlyOut) opts.onBytes?.("out", earlyOut);
    const slotC = this.free.pop()!;
    const slotB = this.free.pop()!;
    this.pairs++;
    if (client.writableLength === 0 && backend.writableLength === 0) this.attach(client, backend, fdC, fdB, slotC, slotB, opts);
    else void Promise.all([flushed(client), flushed(backend)]).then(() => this.attach(client, backend, fdC, fdB, slotC, slotB, opts));
    return true;
  }

  /** splice_peers[cookieC] = { slotB, 0 }, splice_peers[cookieB] = { slotC, 0 }: one BPF_MAP_UPDATE_BATCH. */
  private registerPair(cookieC: bigint, slotB: number, cookieB: bigint, slotC: number): void {
    const k = this.pairKeys;
    const v = this.pairValues.fill(0);
    k.writeBigUInt64LE(cookieC, 0);
    k.writeBigUInt64LE(cookieB, 8);
    v.writeUInt32LE(slotB, SplicePeer.slot);
    v.writeUInt32LE(slotC, SplicePeer.size + SplicePeer.slot);
    const a = this.attr.fill(0);
    const addr = syscalls().address.bind(syscalls());
    a.writeBigUInt64LE(addr(k), 16);
    a.writeBigUInt64LE(addr(v), 24);
    a.writeUInt32LE(2, 32);
    a.writeUInt32LE(this.peers.fd, 36);
    bpf(BpfCommand.MAP_UPDATE_BATCH, a, 56, "map splice_peers");
  }

  /** Remove `cookie` from splice_peers and return its byte counter (undefined when absent). */
  private takeCounter(cookie: bigint): bigint | undefined {
    const a = this.attr.fill(0, 0, 32);
    const addr = syscalls().address.bind(syscalls());
    this.oneKey.writeBigUInt64LE(cookie);
    a.writeUInt32LE(this.peers.fd, 0);
    a.writeBigUInt64LE(addr(this.oneKey), 8);
    a.writeBigUInt64LE(addr(this.oneValue), 16);
    const r = bpfTry(BpfCommand.MAP_LOOKUP_AND_DELETE_ELEM, a, 32);
    if (r.ret < 0) {
      if (r.errno === ENOENT) return undefined;
      throw new SyscallError("BPF_MAP_LOOKUP_AND_DELETE_ELEM", r.errno, "map splice_peers");
    }
    return this.oneValue.readBigUInt64LE(SplicePeer.bytes);
  }

  /** Read every socket's byte counter into its Side (BPF_MAP_LOOKUP_BATCH: a few syscalls for all pairs). */
  private readCounters(): void {
    const batched = this.peers.forEachBatch((keys, values, n) => {
      for (let i = 0; i < n; i++) {
        const side = this.sides.get(keys.readBigUInt64LE(i * 8));
        if (side) side.counter = values.readBigUInt64LE(i * SplicePeer.size + SplicePeer.bytes);
      }
    }, this.sides.size + 64);
    if (!batched) throw new Error("splice_peers: BPF_MAP_LOOKUP_BATCH refused (needs Linux 5.6)");
  }

  /** Report counter deltas, apply idle timeouts. */
  private poll(now: number): void {
    this.readCounters();
    for (const p of this.live) this.report(p, now);
  }

  private report(p: Pair, now: number): void {
    const { c, b, opts } = p;
    let moved = false;
    if (c.counter > c.reported) {
      opts.onBytes?.("in", Number(c.counter - c.reported));
      c.reported = c.counter;
      moved = true;
    }
    if (b.counter > b.reported) {
      opts.onBytes?.("out", Number(b.counter - b.reported));
      b.reported = b.counter;
      moved = true;
    }
    const js = c.jsWritten + b.jsWritten;
    if (js !== p.lastJs) {
      p.lastJs = js;
      moved = true;
    }
    p.moved = moved;
    if (moved) {
      p.lastActive = now;
      if (THROTTLE_ENABLED && p.demote && (this.backlog(c, b) > THROTTLE_HIGH || this.backlog(b, c) > THROTTLE_HIGH)) p.demote();
    } else if (opts.idleTimeoutMs > 0 && now - p.lastActive >= opts.idleTimeoutMs) {
      p.idle = true;
      c.s.destroy();
      b.s.destroy();
    }
  }

  /**
   * Bytes redirected from `from` not yet written into `to`. Measured (getsockopt + ioctl) only when
   * it could exceed THROTTLE_HIGH given the last measurement: written only grows.
   */
  private backlog(from: Side, to: Side): number {
    const upper = Number(from.counter) - to.knownWritten;
    if (upper <= THROTTLE_HIGH) return upper;
    const w = socketSys().bytesWritten(to.fd);
    if (w < 0) return 0;
    to.knownWritten = w - to.writtenBase - to.jsWritten;
    return Number(from.counter) - to.knownWritten;
  }

  private tick = (): void => {
    this.timer = undefined;
    if (this.closed) return;
    for (const w of this.waits) if (w()) this.waits.delete(w);
    const now = Date.now();
    if (now >= this.nextPoll) {
      this.nextPoll = Infinity;
      if (this.live.size) {
        this.poll(now);
        let ms = POLL_MAX_MS;
        for (const p of this.live) if ((p.moved ? FAST_POLL_MS : p.pollMs) < ms) ms = p.moved ? FAST_POLL_MS : p.pollMs;
        this.nextPoll = now + ms;
      }
    }
    this.arm();
  };

  private arm(): void {
    if (this.closed || (this.live.size === 0 && this.waits.size === 0)) return;
    const now = Date.now();
    const delay = this.waits.size ? FLUSH_TICK_MS : Math.max(1, this.nextPoll - now);
    if (this.timer) {
      if (this.timerDue <= now + delay) return; // already due sooner
      clearTimeout(this.timer);
    }
    this.timerDue = now + delay;
    this.timer = setTimeout(this.tick, delay);
    this.timer.unref();
  }

  /**
   * Every byte the program redirected from `from` has been written into `to` (it left the sockmap's
   * queue for `to`'s send queue), or the question no longer matters.
   */
  private flushedInto(from: Side, to: Side): boolean {
    if (to.s.destroyed) return true;
    const redirected = this.peers.lookup(from.cookie)?.bytes;
    if (redirected === undefined) return true;
    const written = socketSys().bytesWritten(to.fd);
    return written < 0 || written - to.writtenBase - to.jsWritten >= Number(redirected);
  }

  /** Run `done` once every redirected byte from `from` reached `to` (now, or from the timer). */
  private afterFlush(from: Side, to: Side, done: () => void): void {
    if (this.flushedInto(from, to)) return done();
    this.waits.add(() => {
      if (!this.flushedInto(from, to)) return false;
      done();
      return true;
    });
    this.arm();
  }

  private attach(client: Socket, backend: Socket, fdC: number, fdB: number, slotC: number, slotB: number, opts: RelayOptions): void {
    const sys = socketSys();
    let how: RelayEnd = "closed";
    let firstError: Error | undefined;
    const giveBack = (): void => {
      this.free.push(slotC, slotB);
      this.pairs--;
    };

    if (client.destroyed || backend.destroyed) {
      client.destroy();
      backend.destroy();
      giveBack();
      opts.onEnd?.("closed");
      return;
    }
    const cookieC = sys.cookie(fdC);
    const cookieB = sys.cookie(fdB);
    const p = { opts, pollMs: opts.idleTimeoutMs > 0 ? Math.max(POLL_MIN_MS, Math.min(POLL_MAX_MS, Math.floor(opts.idleTimeoutMs / 4))) : POLL_MAX_MS, lastActive: Date.now(), lastJs: 0, idle: false, moved: true } as Pair;
    const side = (s: Socket, fd: number, slot: number, cookie: bigint): Side => ({ s, fd, slot, cookie, pair: p, writtenBase: sys.bytesWritten(fd), jsWritten: 0, counter: 0n, reported: 0n, knownWritten: 0 });
    const C = (p.c = side(client, fdC, slotC, cookieC));
    const B = (p.b = side(backend, fdB, slotB, cookieB));
    let stage = 0;
    try {
      if (cookieC < 0n || cookieB < 0n || C.writtenBase < 0 || B.writtenBase < 0) throw new Error("socket gone");
      this.registerPair(cookieC, slotB, cookieB, slotC);
      stage = 1;
      this.socks.update(slotC, BigInt(fdC));
      stage = 2;
      this.socks.update(slotB, BigInt(fdB));
      stage = 3;
    } catch {
      // A sockmap takes only ESTABLISHED TCP sockets: a side that already sent its FIN (a client
      // that wrote and half-closed at once) is refused with EOPNOTSUPP. Nothing was read and
      // nothing is spliced yet (no socket is in splice_verd), so the JS relay takes the pair.
      if (stage >= 1) {
        this.takeCounter(cookieC);
        this.takeCounter(cookieB);
      }
      if (stage >= 2) dropSlot(this.socks, slotC);
      giveBack();
      for (const s of [client, backend]) if (s.destroyed) return void (client.destroy(), backend.destroy(), opts.onEnd?.("closed"));
      this.fallbacks++;
      relay(client, backend, opts);
      startReading(client);
      startReading(backend);
      return;
    }
    // From here each direction is spliced, or (its socket refused by splice_verd because its FIN
    // arrived in between) read by Node and written by the 'data' handler below: never both.
    for (const s of [B, C]) {
      try {
        this.verdict.update(s.slot, BigInt(s.fd));
      } catch {
        /* relayed by JS: its bytes and FIN wait in its receive queue */
      }
    }
    this.sides.set(cookieC, C);
    this.sides.set(cookieB, B);
    this.live.add(p);
    if (this.nextPoll > Date.now() + FAST_POLL_MS) this.nextPoll = Date.now() + FAST_POLL_MS;
    this.arm();

    let open = 2;
    const listeners: [Socket, string, (...a: any[]) => void][] = [];
    const on = (s: Socket, ev: string, fn: (...a: any[]) => void): void => {
      s.on(ev, fn);
      listeners.push([s, ev, fn]);
    };
    const release = (): void => {
      this.live.delete(p);
      this.sides.delete(cookieC);
      this.sides.delete(cookieB);
      C.counter = this.takeCounter(cookieC) ?? C.counter;
      B.counter = this.takeCounter(cookieB) ?? B.counter;
      p.demote = undefined;
      this.report(p, Date.now());
      giveBack();
    };
    // The throttle: a peer that does not take what is redirected to it. Stop both redirects (out of
    // splice_verd: new bytes wait in the TCP receive queues, whose windows close), wait until every
    // byte redirected so far is written into its peer, take both sockets out of splice_socks (their
    // psocks go, with nothing queued in them) and hand the pair to the JS relay.
    p.demote = (): void => {
      p.demote = undefined;
      if ([C, B].some((x) => x.s.destroyed || x.s.readableEnded || x.s.writableEnded)) return; // finishing anyway
      this.throttles++;
      stopReading(client);
      stopReading(backend);
      dropSlot(this.verdict, slotB);
      dropSlot(this.verdict, slotC);
      this.afterFlush(C, B, () =>
        this.afterFlush(B, C, () => {
          for (const [s, ev, fn] of listeners) s.off(ev, fn);
          dropSlot(this.socks, slotC);
          dropSlot(this.socks, slotB);
          release();
          if (client.destroyed || backend.destroyed) {
            client.destroy();
            backend.destroy();
            return void opts.onEnd?.(how, firstError);
          }
          relay(client, backend, opts);
          startReading(client);
          startReading(backend);
        }),
      );
    };
    const pipe = (from: Side, to: Side, direction: "in" | "out"): void => {
      // Only bytes the program did not redirect arrive here; relay them.
      on(from.s, "data", (chunk: Buffer) => {
        opts.onBytes?.(direction, chunk.length);
        to.jsWritten += chunk.length;
        if (!to.s.write(chunk)) from.s.pause();
      });
      on(to.s, "drain", () => from.s.resume());
      // FIN: end the peer once every byte redirected from `from` is written into it.
      on(from.s, "end", () => this.afterFlush(from, to, () => to.s.destroyed || to.s.writableEnded || to.s.end()));
      on(from.s, "error", (e: NodeJS.ErrnoException) => {
        firstError ??= e;
        const reset = e.code === "ECONNRESET";
        if (how === "closed") how = reset ? (from === C ? "client-reset" : "backend-reset") : "error";
        if (to.s.destroyed) return;
        if (reset && typeof to.s.resetAndDestroy === "function" && to.s.readyState !== "closed") to.s.resetAndDestroy();
        else to.s.destroy();
      });
      on(from.s, "close", () => {
        // The peer keeps its slot and psock until it closes too, so bytes queued for it still go out.
        if (!to.s.destroyed) this.afterFlush(from, to, () => to.s.destroyed || to.s.destroySoon());
        if (--open === 0) {
          release();
          if (how === "closed" && p.idle) how = "idle-timeout";
          opts.onEnd?.(how, firstError);
        }
      });
    };
    pipe(C, B, "in");
    pipe(B, C, "out");
    startReading(client);
    startReading(backend);
  }

  /** Detach by closing the maps and the program (spliced sockets leave the maps as they close). */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.program.close();
    this.verdict.close();
    this.socks.close();
    this.peers.close();
  }
}

let shared: KernelDataPath | null | undefined;
let sharedError: Error | undefined;

/** The process's kernel data path, opened on first use; null when the kernel (or privilege) lacks it. */
export function kernelDataPath(): KernelDataPath | null {
  if (shared !== undefined) return shared;
  try {
    shared = KernelDataPath.open();
  } catch (e) {
    shared = null;
    sharedError = e as Error;
  }
  return shared;
}

/** Why {@link kernelDataPath} returned null. */
export function kernelDataPathError(): Error | undefined {
  return sharedError;
}
