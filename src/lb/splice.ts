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
 *  2. put both sockets into splice_socks (redirect targets, no program: nothing changes yet), read
 *     back their cookies, register cookie → peer slot in splice_peers;
 *  3. put both into splice_verd, whose verdict program splices them from now on. Bytes that were
 *     already waiting in a receive queue are redirected as soon as the socket is read again (the
 *     sockmap recvmsg hands queued skbs to the verdict program), which step 4 does;
 *  4. Node reads again, only to learn about FIN (`end`, read returns 0), RST (ECONNRESET) and close.
 *
 * FIN: the kernel does not pass a FIN through a sockmap redirect. On `end` from one side, wait until
 * every byte the program redirected from it has been written into the peer (the redirect goes
 * through a work queue: a shutdown() too early would cut off the tail), then end() the peer.
 * RST resets the other side, as in the JS relay. On close both leave the maps.
 * Idle timeout and byte metrics come from the per-socket byte counters of the program.
 */
import type { Socket } from "node:net";
import { AttachType, BpfMap, type MapSpec, Program } from "../bpf/index.js";
import { bpf, BpfCommand } from "../bpf/syscall.js";
import { SplicePeer, spliceMapSpecs, spliceVerdictProgram } from "../programs/splice.js";
import { relay, type RelayEnd, type RelayOptions } from "./relay.js";
import { socketSys } from "./splice-sys.js";

/** Pairs spliced at once by default (two sockets each); beyond it, pairs fall back to the JS relay. */
export const DEFAULT_MAX_PAIRS = 32768;
/** Redirected bytes not yet taken by the peer's socket above which the sender is paused, and below which it resumes. */
export const THROTTLE_HIGH = 4 << 20;
export const THROTTLE_LOW = 1 << 20;
/** Counter poll while bytes move (metrics, throttle); idle pairs are polled at most once a second. */
const FAST_TICK_MS = 10;

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
  /** tcp bytes written into this socket when splicing began (see splice-sys.ts). */
  writtenBase: number;
  /** Bytes JS wrote into this socket after `writtenBase` (fallback passes). */
  jsWritten: number;
  /** Bytes redirected from this socket already reported to onBytes. */
  reported: bigint;
  /** Out of splice_verd for now: its peer has too much queued (see the throttle). */
  throttled: boolean;
  /** Left splice_verd for good (see the throttle): its bytes are relayed by the 'data' handler. */
  jsOnly: boolean;
}

/** The in-kernel data path: one set of maps and one program for the whole process. */
export class KernelDataPath {
  private readonly free: number[] = [];
  private pairs = 0;
  private closed = false;
  /** Times a sender was paused because its peer had THROTTLE_HIGH bytes queued. */
  throttles = 0;
  /** Pairs handed to the JS relay because the kernel refused a socket (already half-closed). */
  fallbacks = 0;

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
    void Promise.all([flushed(client), flushed(backend)]).then(() => this.attach(client, backend, fdC, fdB, slotC, slotB, opts));
    return true;
  }

  private attach(client: Socket, backend: Socket, fdC: number, fdB: number, slotC: number, slotB: number, opts: RelayOptions): void {
    const sys = socketSys();
    let how: RelayEnd = "closed";
    let firstError: Error | undefined;
    let c: Side | undefined;
    let b: Side | undefined;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      if (c && b) report();
      for (const side of [c, b]) if (side) this.peers.delete(side.cookie);
      for (const slot of [slotC, slotB]) {
        // A closed socket has already left the sockmaps (and deleting an empty slot is EINVAL).
        dropSlot(this.verdict, slot);
        dropSlot(this.socks, slot);
        this.free.push(slot);
      }
      this.pairs--;
    };
    // Bytes redirected by the program since the last report, to onBytes.
    const counters = (): [bigint, bigint] => [this.peers.lookup(c!.cookie)?.bytes ?? c!.reported, this.peers.lookup(b!.cookie)?.bytes ?? b!.reported];
    const report = (): boolean => {
      const [inB, outB] = counters();
      let moved = false;
      if (inB > c!.reported) {
        opts.onBytes?.("in", Number(inB - c!.reported));
        c!.reported = inB;
        moved = true;
      }
      if (outB > b!.reported) {
        opts.onBytes?.("out", Number(outB - b!.reported));
        b!.reported = outB;
        moved = true;
      }
      return moved;
    };

    if (client.destroyed || backend.destroyed) {
      client.destroy();
      backend.destroy();
      release();
      opts.onEnd?.("closed");
      return;
    }
    try {
      this.socks.update(slotC, BigInt(fdC));
      this.socks.update(slotB, BigInt(fdB));
      const cookieC = this.socks.lookup(slotC)!;
      const cookieB = this.socks.lookup(slotB)!;
      c = { s: client, fd: fdC, slot: slotC, cookie: cookieC, writtenBase: sys.bytesWritten(fdC), jsWritten: 0, reported: 0n, throttled: false, jsOnly: false };
      b = { s: backend, fd: fdB, slot: slotB, cookie: cookieB, writtenBase: sys.bytesWritten(fdB), jsWritten: 0, reported: 0n, throttled: false, jsOnly: false };
      this.peers.update(cookieC, { slot: slotB, bytes: 0n });
      this.peers.update(cookieB, { slot: slotC, bytes: 0n });
      this.verdict.update(slotB, BigInt(fdB));
      this.verdict.update(slotC, BigInt(fdC));
    } catch (e) {
      // A sockmap takes only ESTABLISHED TCP sockets: a side that already sent its FIN (a client
      // that wrote and half-closed at once) is refused with EOPNOTSUPP. Nothing was read and
      // nothing is spliced yet (the verdict map is filled last), so the JS relay takes the pair.
      for (const side of [c, b]) if (side) this.peers.delete(side.cookie);
      c = b = undefined;
      release();
      for (const side of [client, backend]) if (side.destroyed) return void (client.destroy(), backend.destroy(), opts.onEnd?.("closed"));
      this.fallbacks++;
      relay(client, backend, opts);
      startReading(client);
      startReading(backend);
      return;
    }
    const C = c;
    const B = b;
    let open = 2;

    const pipe = (from: Side, to: Side, direction: "in" | "out"): void => {
      // Only bytes the program passed (none, once registered) arrive here; relay them anyway.
      from.s.on("data", (chunk: Buffer) => {
        opts.onBytes?.(direction, chunk.length);
        to.jsWritten += chunk.length;
        if (!to.s.write(chunk)) from.s.pause();
      });
      to.s.on("drain", () => from.s.resume());
      from.s.on("end", () => {
        // FIN: end the peer once every byte redirected from `from` is written into it.
        let wait = 1;
        const check = (): void => {
          if (to.s.destroyed || to.s.writableEnded) return;
          const redirected = this.peers.lookup(from.cookie)?.bytes;
          const written = sys.bytesWritten(to.fd);
          if (redirected === undefined || written < 0 || written - to.writtenBase >= Number(redirected) + to.jsWritten) {
            to.s.end();
            return;
          }
          wait = Math.min(wait * 2, 50);
          setTimeout(check, wait);
        };
        check();
      });
      from.s.on("error", (e: NodeJS.ErrnoException) => {
        firstError ??= e;
        const reset = e.code === "ECONNRESET";
        if (how === "closed") how = reset ? (from === C ? "client-reset" : "backend-reset") : "error";
        if (to.s.destroyed) return;
        if (reset && typeof to.s.resetAndDestroy === "function" && to.s.readyState !== "closed") to.s.resetAndDestroy();
        else to.s.destroy();
      });
      from.s.on("close", () => {
        release();
        if (!to.s.destroyed) to.s.destroySoon();
        if (--open === 0) {
          clearTimeout(idleTimer);
          opts.onEnd?.(how, firstError);
        }
      });
    };
    pipe(C, B, "in");
    pipe(B, C, "out");

    // One timer per pair: byte metrics and idle timeout from the program's counters (JS sees no
    // traffic), and the throttle. A sockmap redirect queues the bytes for the peer's send path
    // without charging them to the sender's receive window, so a peer that does not read would let
    // that queue grow without bound: while bytes move the timer compares what was redirected with
    // what the peer has taken, and over THROTTLE_HIGH takes the sender out of splice_verd (its
    // bytes then wait in its own TCP receive queue, whose window closes) until under THROTTLE_LOW.
    const idleMs = opts.idleTimeoutMs;
    const slow = idleMs > 0 ? Math.max(25, Math.min(250, Math.floor(idleMs / 4))) : 250;
    let quietSince = Date.now();
    let lastJs = 0;
    let idleTimer: NodeJS.Timeout | undefined;
    const pending = (from: Side, to: Side, redirected: bigint): number => {
      const w = sys.bytesWritten(to.fd);
      return w < 0 ? 0 : Number(redirected) - (w - to.writtenBase - to.jsWritten);
    };
    const throttle = (from: Side, to: Side, redirected: bigint): void => {
      const p = pending(from, to, redirected);
      if (!from.throttled && p > THROTTLE_HIGH) {
        stopReading(from.s);
        dropSlot(this.verdict, from.slot);
        from.throttled = true;
        this.throttles++;
      } else if (from.throttled && !from.s.destroyed) {
        if (!from.jsOnly && p < THROTTLE_LOW) {
          try {
            this.verdict.update(from.slot, BigInt(from.fd));
            from.throttled = false;
            startReading(from.s); // also hands what waited in the receive queue to the program
            return;
          } catch {
            // Refused: its FIN came while it was paused (a sockmap takes only ESTABLISHED sockets).
            // Its last bytes go through JS, once everything redirected before has been written.
            from.jsOnly = true;
          }
        }
        if (from.jsOnly && p <= 0) {
          from.throttled = false;
          startReading(from.s);
        }
      }
    };
    const tick = (): void => {
      if (released) return;
      const js = C.jsWritten + B.jsWritten;
      const moved = report() || js !== lastJs;
      if (moved) quietSince = Date.now();
      lastJs = js;
      if (idleMs > 0 && Date.now() - quietSince >= idleMs) {
        if (how === "closed") how = "idle-timeout";
        client.destroy();
        backend.destroy();
        return;
      }
      if (moved || C.throttled || B.throttled) {
        throttle(C, B, C.reported);
        throttle(B, C, B.reported);
      }
      idleTimer = setTimeout(tick, C.throttled || B.throttled ? 5 : moved ? FAST_TICK_MS : slow);
      idleTimer.unref();
    };
    idleTimer = setTimeout(tick, FAST_TICK_MS);
    idleTimer.unref();
    startReading(client);
    startReading(backend);
  }

  /** Detach by closing the maps and the program (spliced sockets leave the maps as they close). */
  close(): void {
    this.closed = true;
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
