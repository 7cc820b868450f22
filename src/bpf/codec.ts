/** Typed key/value codecs for maps: how a TypeScript value becomes the bytes the kernel stores. */
import { BpfError } from "./errors.js";
import { type FieldType, u32 as u32Field, s32 as s32Field, u64 as u64Field } from "./struct.js";

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

/** A map key or value that is one field type of struct.ts (u32, s32, u64...), alone. */
export function scalar<T>(field: FieldType<T>): Codec<T> {
  return {
    size: field.size,
    encode: (v) => {
      const b = Buffer.alloc(field.size);
      field.write(b, 0, v);
      return b;
    },
    decode: (b) => field.read(b, 0),
  };
}

/** Host-endian u32 (what `__u32` keys and values are in the kernel). */
export const u32: Codec<number> = scalar(u32Field);

/** Host-endian s32 (file descriptors as sk_storage keys). */
export const s32: Codec<number> = scalar(s32Field);

/** Host-endian u64. */
export const u64: Codec<bigint> = scalar(u64Field);
