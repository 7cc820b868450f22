/**
 * Maps: {@link MapSpec} is the pure-data blueprint, {@link BpfMap} the kernel object (an fd with an
 * explicit close). Keys and values go through {@link Codec}s so callers work with typed values.
 */
import { closeSync, readFileSync } from "node:fs";
import { BpfError, SyscallError } from "./errors.js";
import { BpfCommand, bpf, bpfTry, syscalls } from "./syscall.js";
import { MapBatchAttr, MapCreateAttr, MapElemAttr, MapInfoStruct, nameText, objGet, objInfo, objName, objPin } from "./sys.js";
import { zero } from "./struct.js";
import { Btf, type BtfType, btfSize, buildBtf } from "./btf.js";
import { bytes, type Codec } from "./codec.js";
import { UpdateFlag } from "./uapi.js";

/** Map types (enum bpf_map_type). */
export const MapType = {
  HASH: 1,
  ARRAY: 2,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  LPM_TRIE: 11,
  SOCKMAP: 15,
  SOCKHASH: 18,
  SK_STORAGE: 24,
} as const;
export type MapTypeName = keyof typeof MapType;

/** Map flags. */
export const MapFlag = { NO_PREALLOC: 1, RDONLY: 1 << 3, WRONLY: 1 << 4 } as const;

/** Update flags: defined with the kernel's other constants. */
export { UpdateFlag } from "./uapi.js";

/** Blueprint of a map: plain data, no kernel involved. */
export interface MapSpec {
  /** Object name: [A-Za-z0-9_.], at most 15 characters. */
  name: string;
  type: MapTypeName;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
  /** BTF for key and value; required for SK_STORAGE. */
  key?: BtfType;
  value?: BtfType;
}

const needsNoPrealloc = new Set<MapTypeName>(["LPM_TRIE", "SK_STORAGE"]);

/** Check a spec where it enters, naming the field and what is allowed. */
export function validateMapSpec(spec: MapSpec): void {
  const bad = (field: string, why: string) => new BpfError("BPF_ERR_INVALID_ARG", `map ${spec.name}: ${field} ${why}`);
  if (!/^[A-Za-z0-9_.]{1,15}$/.test(spec.name)) throw bad("name", "must be 1-15 characters of [A-Za-z0-9_.]");
  if (!(spec.type in MapType)) throw bad("type", `must be one of ${Object.keys(MapType).join(", ")}`);
  if (!Number.isInteger(spec.keySize) || spec.keySize <= 0) throw bad("keySize", "must be a positive integer");
  if (!Number.isInteger(spec.valueSize) || spec.valueSize <= 0) throw bad("valueSize", "must be a positive integer");
  if (spec.type === "SK_STORAGE") {
    if (spec.maxEntries !== 0) throw bad("maxEntries", "must be 0 for SK_STORAGE (storage lives with each socket)");
    if (spec.keySize !== 4) throw bad("keySize", "must be 4 for SK_STORAGE (the key is a socket fd)");
    if (!spec.key || !spec.value) throw bad("key/value", "BTF types are required for SK_STORAGE");
  } else if (!Number.isInteger(spec.maxEntries) || spec.maxEntries <= 0) {
    throw bad("maxEntries", "must be a positive integer");
  }
  if (spec.key && btfSize(spec.key) !== spec.keySize) throw bad("key", `BTF size ${btfSize(spec.key)} differs from keySize ${spec.keySize}`);
  if (spec.value && btfSize(spec.value) !== spec.valueSize) throw bad("value", `BTF size ${btfSize(spec.value)} differs from valueSize ${spec.valueSize}`);
}

/** Number of possible CPUs: per-CPU values hold one slot for each (/sys/devices/system/cpu/possible). */
let possibleCpusCache: number | undefined;
export function possibleCpus(): number {
  if (possibleCpusCache !== undefined) return possibleCpusCache;
  const text = readFileSync("/sys/devices/system/cpu/possible", "utf8").trim();
  let n = 0;
  for (const part of text.split(",")) {
    const [a, b] = part.split("-").map(Number);
    n += b === undefined ? 1 : b - a + 1;
  }
  possibleCpusCache = n;
  return n;
}

/** Build the MAP_CREATE attr (exported for unit tests of the layout). */
export function mapCreateAttr(spec: MapSpec, btf?: { fd: number; keyId: number; valueId: number }): Buffer {
  let flags = spec.flags ?? 0;
  if (needsNoPrealloc.has(spec.type)) flags |= MapFlag.NO_PREALLOC;
  return MapCreateAttr.encode({
    ...zero(MapCreateAttr),
    mapType: MapType[spec.type],
    keySize: spec.keySize,
    valueSize: spec.valueSize,
    maxEntries: spec.maxEntries,
    mapFlags: flags,
    mapName: objName(spec.name),
    ...(btf && { btfFd: btf.fd, btfKeyTypeId: btf.keyId, btfValueTypeId: btf.valueId }),
  });
}

/** Kernel facts about a map (BPF_OBJ_GET_INFO_BY_FD). */
export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

/** Read bpf_map_info for an fd. */
export function mapInfo(fd: number): MapInfo {
  const { type, id, keySize, valueSize, maxEntries, mapFlags, name } = objInfo(fd, MapInfoStruct);
  return { type, id, keySize, valueSize, maxEntries, flags: mapFlags, name: nameText(name) };
}

/** A map in the kernel. K and V are the typed key and value. */
export class BpfMap<K = Buffer, V = Buffer> {
  private _fd: number;
  readonly keyCodec: Codec<K>;
  readonly valueCodec: Codec<V>;
  /** Per-CPU maps hold one value per possible CPU; lookups return them all. */
  readonly isPerCpu: boolean;
  /** Bytes of one value as the kernel copies it (per-CPU maps: one 8-aligned slot per possible CPU). */
  readonly valueBufferSize: number;
  /** Distance between two CPUs' values in a per-CPU copy. */
  private readonly perCpuStride: number;
  /** Reused buffers: lookups allocate nothing but the decoded value. */
  private readonly keyBuf: Buffer;
  private readonly valueBuf: Buffer;
  private readonly attr = Buffer.alloc(MapElemAttr.size);

  constructor(fd: number, readonly info: MapInfo, codecs: { key?: Codec<K>; value?: Codec<V> } = {}) {
    this._fd = fd;
    this.keyCodec = codecs.key ?? (bytes(info.keySize) as unknown as Codec<K>);
    this.valueCodec = codecs.value ?? (bytes(info.valueSize) as unknown as Codec<V>);
    this.isPerCpu = info.type === MapType.PERCPU_ARRAY || info.type === MapType.PERCPU_HASH;
    this.perCpuStride = Math.ceil(info.valueSize / 8) * 8;
    this.valueBufferSize = this.isPerCpu ? this.perCpuStride * possibleCpus() : info.valueSize;
    this.keyBuf = Buffer.alloc(info.keySize);
    this.valueBuf = Buffer.alloc(this.valueBufferSize);
    this.attr.writeBigUInt64LE(syscalls().address(this.keyBuf), MapElemAttr.key);
    this.attr.writeBigUInt64LE(syscalls().address(this.valueBuf), MapElemAttr.value);
  }

  /** Create a map from its spec (loads BTF first when the spec has key/value types). */
  static create<K = Buffer, V = Buffer>(spec: MapSpec, codecs: { key?: Codec<K>; value?: Codec<V> } = {}): BpfMap<K, V> {
    validateMapSpec(spec);
    let btf: Btf | undefined;
    let btfIds: { fd: number; keyId: number; valueId: number } | undefined;
    if (spec.key && spec.value) {
      const blob = buildBtf([spec.key, spec.value]);
      btf = Btf.load(blob.bytes);
      btfIds = { fd: btf.fd, keyId: blob.ids[0], valueId: blob.ids[1] };
    }
    try {
      const fd = bpf(BpfCommand.MAP_CREATE, mapCreateAttr(spec, btfIds), MapCreateAttr.size, `map ${spec.name}, type ${spec.type}`);
      return new BpfMap<K, V>(fd, mapInfo(fd), codecs);
    } finally {
      // The map holds its own reference to the BTF.
      btf?.close();
    }
  }

  /** Open a map pinned in bpffs. */
  static fromPin<K = Buffer, V = Buffer>(path: string, codecs: { key?: Codec<K>; value?: Codec<V> } = {}): BpfMap<K, V> {
    const fd = objGet(path);
    return new BpfMap<K, V>(fd, mapInfo(fd), codecs);
  }

  get fd(): number {
    if (this._fd < 0) throw new BpfError("BPF_ERR_CLOSED", `map ${this.info.name} is closed`);
    return this._fd;
  }

  private setFdFlags(flags: number): void {
    this.attr.writeUInt32LE(this.fd, MapElemAttr.mapFd);
    this.attr.writeBigUInt64LE(BigInt(flags), MapElemAttr.flags);
  }

  private setKey(key: K): void {
    const k = this.keyCodec.encode(key);
    k.copy(this.keyBuf, 0, 0, this.info.keySize);
  }

  /** Raw value bytes for `key` (per-CPU: every CPU's slot), or undefined when absent. */
  lookupRaw(key: K): Buffer | undefined {
    this.setKey(key);
    this.setFdFlags(0);
    const r = bpfTry(BpfCommand.MAP_LOOKUP_ELEM, this.attr);
    if (r.ret < 0) {
      if (r.errno === 2 /* ENOENT */) return undefined;
      throw new SyscallError("BPF_MAP_LOOKUP_ELEM", r.errno, `map ${this.info.name}`);
    }
    return Buffer.from(this.valueBuf);
  }

  /** The value for `key`, or undefined. */
  lookup(key: K): V | undefined {
    const raw = this.lookupRaw(key);
    return raw === undefined ? undefined : this.valueCodec.decode(raw.subarray(0, this.info.valueSize));
  }

  /** Per-CPU maps: one decoded value per possible CPU. */
  lookupPerCpu(key: K): V[] | undefined {
    const raw = this.lookupRaw(key);
    if (raw === undefined) return undefined;
    const stride = this.perCpuStride;
    const out: V[] = [];
    for (let off = 0; off + stride <= raw.length; off += stride) out.push(this.valueCodec.decode(raw.subarray(off, off + this.info.valueSize)));
    return out;
  }

  /** Insert or replace (`flags`: UpdateFlag). Per-CPU maps take the same value for every CPU. */
  update(key: K, value: V, flags: number = UpdateFlag.ANY): void {
    this.setKey(key);
    const v = this.valueCodec.encode(value);
    if (!this.isPerCpu) {
      v.copy(this.valueBuf, 0, 0, this.info.valueSize);
    } else {
      const stride = this.perCpuStride;
      for (let off = 0; off < this.valueBufferSize; off += stride) v.copy(this.valueBuf, off, 0, this.info.valueSize);
    }
    this.setFdFlags(flags);
    bpf(BpfCommand.MAP_UPDATE_ELEM, this.attr, this.attr.length, `map ${this.info.name}`);
  }

  /** Delete `key`; returns false when it was not there. */
  delete(key: K): boolean {
    this.setKey(key);
    this.setFdFlags(0);
    // The attr ends at `key` for this command (BPF_MAP_DELETE_ELEM_LAST_FIELD): the shared attr's
    // value pointer would make CHECK_ATTR fail with EINVAL, so pass only the bytes before it.
    const r = bpfTry(BpfCommand.MAP_DELETE_ELEM, this.attr, MapElemAttr.value);
    if (r.ret >= 0) return true;
    if (r.errno === 2) return false;
    throw new SyscallError("BPF_MAP_DELETE_ELEM", r.errno, `map ${this.info.name}`);
  }

  /** Every key (BPF_MAP_GET_NEXT_KEY from no key). Keys deleted meanwhile restart nothing: best effort, as in the kernel. */
  *keys(): Generator<K> {
    const cur = Buffer.alloc(this.info.keySize);
    const next = Buffer.alloc(this.info.keySize);
    // NULL key: first key; `value` is where the next key goes.
    const attr = MapElemAttr.encode({ mapFd: this.fd, key: 0n, value: syscalls().address(next), flags: 0n });
    for (;;) {
      const r = bpfTry(BpfCommand.MAP_GET_NEXT_KEY, attr);
      if (r.ret < 0) {
        if (r.errno === 2) return;
        throw new SyscallError("BPF_MAP_GET_NEXT_KEY", r.errno, `map ${this.info.name}`);
      }
      next.copy(cur);
      yield this.keyCodec.decode(Buffer.from(cur));
      attr.writeBigUInt64LE(syscalls().address(cur), MapElemAttr.key);
    }
  }

  /**
   * Every [key, value] pair present. Hash and array maps are read `chunk` entries per syscall
   * ({@link forEachBatch}): a sweep over 100k entries is tens of syscalls instead of 200k. Map types
   * without batch support (and per-CPU maps) walk key by key.
   */
  *entries(chunk = 4096): Generator<[K, V]> {
    const { keySize, valueSize } = this.info;
    const batch: [K, V][] = [];
    const batched = this.forEachBatch((keys, values, n) => {
      for (let i = 0; i < n; i++) {
        batch.push([
          this.keyCodec.decode(Buffer.from(keys.subarray(i * keySize, (i + 1) * keySize))),
          this.valueCodec.decode(Buffer.from(values.subarray(i * valueSize, (i + 1) * valueSize))),
        ]);
      }
    }, chunk);
    if (batched) {
      yield* batch;
      return;
    }
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v !== undefined) yield [k, v];
    }
  }

  /** Unknown until tried; false after EINVAL/ENOTSUPP from a batch call. */
  private batchSupported: boolean | undefined;
  /** BPF_MAP_LOOKUP_BATCH state, kept between calls so a frequent reader allocates nothing. */
  private batch?: { attr: Buffer; keys: Buffer; values: Buffer; tokenIn: Buffer; tokenOut: Buffer };

  /**
   * Walk the map with BPF_MAP_LOOKUP_BATCH (Linux 5.6), handing `visit` the kernel's packed keys and
   * values of each batch (valid only during the call: the buffers are reused). A hash bucket larger
   * than the room left (ENOSPC) is read again with twice the room. Returns false, having visited
   * nothing, when the map can't be read this way (per-CPU values, or a type without batch support).
   */
  forEachBatch(visit: (keys: Buffer, values: Buffer, count: number) => void, chunk = 4096): boolean {
    if (this.isPerCpu || this.batchSupported === false) return false;
    const { keySize, valueSize } = this.info;
    const sys = syscalls();
    let b = this.batch;
    const room = (n: number) => {
      if (b && b.keys.length >= n * keySize) return b;
      // The batch token is opaque (a bucket index for hash maps); key size is always enough.
      const tokenSize = Math.max(8, keySize);
      b = { attr: b?.attr ?? Buffer.alloc(MapBatchAttr.size), keys: Buffer.alloc(n * keySize), values: Buffer.alloc(n * valueSize), tokenIn: b?.tokenIn ?? Buffer.alloc(tokenSize), tokenOut: b?.tokenOut ?? Buffer.alloc(tokenSize) };
      this.batch = b;
      return b;
    };
    b = room(chunk);
    let first = true;
    for (;;) {
      const { attr, keys, values, tokenIn, tokenOut } = b;
      attr.fill(0);
      attr.writeBigUInt64LE(first ? 0n : sys.address(tokenIn), MapBatchAttr.inBatch); // NULL: from the start
      attr.writeBigUInt64LE(sys.address(tokenOut), MapBatchAttr.outBatch);
      attr.writeBigUInt64LE(sys.address(keys), MapBatchAttr.keys);
      attr.writeBigUInt64LE(sys.address(values), MapBatchAttr.values);
      attr.writeUInt32LE(keys.length / keySize, MapBatchAttr.count); // in: room, out: entries written
      attr.writeUInt32LE(this.fd, MapBatchAttr.mapFd);
      const r = bpfTry(BpfCommand.MAP_LOOKUP_BATCH, attr);
      const done = r.ret < 0 && r.errno === 2; // ENOENT: this was the last batch
      if (r.ret < 0 && !done) {
        if (r.errno === 28 /* ENOSPC */) {
          b = room((keys.length / keySize) * 2); // nothing was copied: the same token again
          continue;
        }
        if (this.batchSupported === undefined && (r.errno === 22 || r.errno === 95 || r.errno === 524)) {
          this.batchSupported = false;
          return false;
        }
        throw new SyscallError("BPF_MAP_LOOKUP_BATCH", r.errno, `map ${this.info.name}`);
      }
      this.batchSupported = true;
      const n = attr.readUInt32LE(MapBatchAttr.count);
      if (n > 0) visit(keys, values, n);
      if (done) return true;
      tokenOut.copy(tokenIn);
      first = false;
    }
  }
  /** Pin in bpffs so the map outlives this process. */
  pin(path: string): void {
    objPin(path, this.fd);
  }

  close(): void {
    if (this._fd >= 0) closeSync(this._fd);
    this._fd = -1;
  }
}

export { objGet, objPin } from "./sys.js";

/** The fd of a connected Node socket (libuv's handle), for sk_storage look-ups. */
export function socketFd(socket: object): number {
  const fd = (socket as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new BpfError("BPF_ERR_INVALID_ARG", "socket has no file descriptor (closed, or not a TCP socket)");
  return fd;
}

/**
 * The sk_storage value of a socket: the key of SK_STORAGE maps is a socket fd of the calling
 * process, given as a number or as a Node socket.
 */
export function socketStorage<V>(map: BpfMap<number, V>, socket: number | object): V | undefined {
  return map.lookup(typeof socket === "number" ? socket : socketFd(socket));
}
