/** Typed key/value codecs for maps: how a TypeScript value becomes the bytes the kernel stores. */
import { BpfError } from "./errors.js";

/** Converts between T and a fixed number of bytes. */
export interface Codec<T> {
  readonly size: number;
  encode(value: T): Buffer;
  decode(bytes: Buffer): T;
}

/** Raw bytes of a fixed size. */
export function bytes(size: number): Codec<Buffer> {
  return {
    size,
    encode: (v) => {
      if (v.length !== size) throw new BpfError("BPF_ERR_INVALID_ARG", `expected ${size} bytes, got ${v.length}`);
      return v;
    },
    decode: (b) => Buffer.from(b),
  };
}

/** Host-endian u32 (what `__u32` keys and values are in the kernel). */
export const u32: Codec<number> = {
  size: 4,
  encode: (v) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return b;
  },
  decode: (b) => b.readUInt32LE(0),
};

/** Host-endian s32 (file descriptors as sk_storage keys). */
export const s32: Codec<number> = {
  size: 4,
  encode: (v) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return b;
  },
  decode: (b) => b.readInt32LE(0),
};

/** Host-endian u64. */
export const u64: Codec<bigint> = {
  size: 8,
  encode: (v) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return b;
  },
  decode: (b) => b.readBigUInt64LE(0),
};
