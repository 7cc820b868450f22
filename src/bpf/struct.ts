/**
 * C structs declared once: `struct(name, fields)` lays the fields out as a C compiler does (each at
 * its natural alignment, the size rounded up to the largest one) and yields, from that one
 * declaration,
 *
 *   - the byte offset of every field, as `S.<field>` (what the eBPF programs read and write),
 *   - `S.size` and `S.align`,
 *   - `S.btf`, the struct's BTF (map keys and values, `bpftool map dump`),
 *   - `S.encode(value)` / `S.decode(bytes)`, a typed codec: S is a {@link Codec} of {@link Value}.
 *
 *   const Peer = struct("peer", { family: u8, port: be16, _pad: pad(1), addr: bytes(16) });
 *   Peer.port === 2; Peer.size === 22; Peer.decode(buf).addr  // Buffer
 *
 * The names `size`, `align`, `btf`, `encode`, `decode`, `read` and `write` are the struct's own (a
 * struct is also a field type, for nesting): a field named so is a type error (and thrown at run
 * time). `pad(n)` reserves n bytes: written as zero, left out of the
 * value and of the BTF. Field names are camelCase in TypeScript and snake_case in the BTF.
 *
 * Integers are host order (little endian on the architectures we build for); be16/be32 are network
 * order, typed __be16/__be32 in the BTF.
 */
import { BpfError } from "./errors.js";
import { type BtfType, u8 as btfU8, u16 as btfU16, u32 as btfU32, u64 as btfU64, s32 as btfS32 } from "./btf-types.js";
import type { Codec } from "./codec.js";

/** One field type: its size, alignment, BTF and how it is read and written at an offset. */
export interface FieldType<T> {
  readonly size: number;
  readonly align: number;
  /** Undefined for padding (not in the BTF, not in the value). */
  readonly btf: BtfType | undefined;
  read(buf: Buffer, off: number): T;
  write(buf: Buffer, off: number, value: T): void;
}

/** Reserved bytes: zero when encoded, not part of the value. */
export interface Pad extends FieldType<undefined> {
  readonly pad: true;
}

function int<T>(size: 1 | 2 | 4 | 8, btf: BtfType, read: (b: Buffer, o: number) => T, write: (b: Buffer, o: number, v: T) => void): FieldType<T> {
  return { size, align: size, btf, read, write };
}

/**
 * A number field that refuses what it can't hold with a BpfError naming the type (Buffer's own
 * RangeError would escape the catalogue; a silent wrap would reach the kernel as a confusing EINVAL).
 */
function num(size: 1 | 2 | 4, btf: BtfType, min: number, max: number, read: (b: Buffer, o: number) => number, write: (b: Buffer, o: number, v: number) => void): FieldType<number> {
  const type = btf.kind === "int" || btf.kind === "typedef" ? btf.name : `${size * 8}-bit integer`;
  return int<number>(size, btf, read, (b, o, v) => {
    if (!Number.isInteger(v) || v < min || v > max) throw new BpfError("BPF_ERR_INVALID_ARG", `${v} does not fit a ${type} (${min}..${max})`);
    write(b, o, v);
  });
}

const be16Btf: BtfType = { kind: "typedef", name: "__be16", type: btfU16 };
const be32Btf: BtfType = { kind: "typedef", name: "__be32", type: btfU32 };
const U64_MAX = (1n << 64n) - 1n;

/** Unsigned 8-bit integer. */
export const u8 = num(1, btfU8, 0, 0xff, (b, o) => b[o], (b, o, v) => void b.writeUInt8(v, o));
/** Host-order u16. */
export const u16 = num(2, btfU16, 0, 0xffff, (b, o) => b.readUInt16LE(o), (b, o, v) => void b.writeUInt16LE(v, o));
/**
 * Host-order u32. Negative numbers down to -2^31 are their u32 bit pattern (`>>> 0`), so a mask
 * written as `~0` or `~flag` works.
 */
export const u32 = num(4, btfU32, -(2 ** 31), 2 ** 32 - 1, (b, o) => b.readUInt32LE(o), (b, o, v) => void b.writeUInt32LE(v >>> 0, o));
/** Host-order s32. */
export const s32 = num(4, btfS32, -(2 ** 31), 2 ** 31 - 1, (b, o) => b.readInt32LE(o), (b, o, v) => void b.writeInt32LE(v, o));
/** Host-order u64, as a bigint. */
export const u64 = int<bigint>(8, btfU64, (b, o) => b.readBigUInt64LE(o), (b, o, v) => {
  if (typeof v !== "bigint" || v < 0n || v > U64_MAX) throw new BpfError("BPF_ERR_INVALID_ARG", `${String(v)} does not fit a u64`);
  b.writeBigUInt64LE(v, o);
});
/** Network-order u16 (__be16): ports. */
export const be16 = num(2, be16Btf, 0, 0xffff, (b, o) => b.readUInt16BE(o), (b, o, v) => void b.writeUInt16BE(v, o));
/** Network-order u32 (__be32). */
export const be32 = num(4, be32Btf, 0, 2 ** 32 - 1, (b, o) => b.readUInt32BE(o), (b, o, v) => void b.writeUInt32BE(v, o));

const byteArrays = new Map<number, BtfType>();

/** `__u8 name[n]`, as a Buffer (a shorter one is zero-filled, a longer one refused). */
export function bytes(n: number): FieldType<Buffer> {
  let btf = byteArrays.get(n);
  if (!btf) byteArrays.set(n, (btf = { kind: "array", element: btfU8, length: n }));
  return {
    size: n,
    align: 1,
    btf,
    read: (b, o) => Buffer.from(b.subarray(o, o + n)),
    write: (b, o, v) => {
      if (v.length > n) throw new BpfError("BPF_ERR_INVALID_ARG", `expected at most ${n} bytes, got ${v.length}`);
      b.fill(0, o, o + n);
      b.set(v, o);
    },
  };
}

/** `T name[n]` for any field type (a struct, too), as an array of n values. */
export function array<T>(element: FieldType<T>, n: number): FieldType<T[]> {
  if (!element.btf) throw new BpfError("BPF_ERR_INVALID_ARG", "an array of padding: use pad()");
  return {
    size: element.size * n,
    align: element.align,
    btf: { kind: "array", element: element.btf, length: n },
    read: (b, o) => Array.from({ length: n }, (_, i) => element.read(b, o + i * element.size)),
    write: (b, o, v) => {
      if (v.length !== n) throw new BpfError("BPF_ERR_INVALID_ARG", `expected ${n} elements, got ${v.length}`);
      v.forEach((x, i) => element.write(b, o + i * element.size, x));
    },
  };
}

/** `n` bytes of padding. */
export function pad(n: number): Pad {
  return { pad: true, size: n, align: 1, btf: undefined, read: () => undefined, write: (b, o) => void b.fill(0, o, o + n) };
}

/** The struct's own members: no field may take these names. */
export type Reserved = "size" | "align" | "btf" | "encode" | "decode" | "read" | "write";
const RESERVED = new Set<string>(["size", "align", "btf", "encode", "decode", "read", "write"]);

/** Field declarations: name → type, in memory order. */
export type Fields = Record<string, FieldType<any>>;

/** The TypeScript value of a struct with fields F (padding left out). */
export type Value<F extends Fields> = { -readonly [K in keyof F as F[K] extends Pad ? never : K]: F[K] extends FieldType<infer T> ? T : never };

/** What a struct declaration yields: offsets by field name, then size, BTF and codec. */
export type Struct<F extends Fields> = { readonly [K in keyof F]: number } & StructMembers<Value<F>>;

/** The members every struct has, beside its field offsets. */
export interface StructMembers<T> extends Codec<T>, FieldType<T> {
  readonly size: number;
  readonly align: number;
  readonly btf: BtfType;
}

/** The value type of a struct declaration: `type PeerValue = ValueOf<typeof Peer>`. */
export type ValueOf<S> = S extends StructMembers<infer T> ? T : never;

/** Fields with a reserved name become `never`, so the declaration fails to type-check. */
type NoReserved<F> = { [K in keyof F]: K extends Reserved ? never : F[K] };

const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * Declare a C struct named `name` (the BTF name, a C identifier). Fields are laid out in the order
 * given, each at its natural alignment; declare explicit `pad()`s where the C has them so the
 * layout reads like the struct, and the size comes out the same.
 */
export function struct<const F extends Fields>(name: string, fields: F & NoReserved<F>): Struct<F> {
  const layout: { key: string; type: FieldType<any>; offset: number }[] = [];
  let offset = 0;
  let align = 1;
  for (const [key, type] of Object.entries(fields)) {
    if (RESERVED.has(key)) throw new BpfError("BPF_ERR_INVALID_ARG", `struct ${name}: field name "${key}" is reserved`);
    offset = Math.ceil(offset / type.align) * type.align;
    layout.push({ key, type, offset });
    offset += type.size;
    align = Math.max(align, type.align);
  }
  const size = Math.ceil(offset / align) * align;
  const members = layout.filter((f) => f.type.btf !== undefined);
  const btf: BtfType = { kind: "struct", name, size, members: members.map((f) => ({ name: snake(f.key), type: f.type.btf!, offset: f.offset })) };
  const read = (b: Buffer, o: number) => {
    const v: Record<string, unknown> = {};
    for (const f of members) v[f.key] = f.type.read(b, o + f.offset);
    return v;
  };
  const write = (b: Buffer, o: number, v: Record<string, unknown>) => {
    for (const f of layout) {
      const x = v[f.key];
      if (x === undefined && f.type.btf) throw new BpfError("BPF_ERR_INVALID_ARG", `struct ${name}: field ${f.key} is missing`);
      try {
        f.type.write(b, o + f.offset, x);
      } catch (e) {
        if (e instanceof BpfError) throw new BpfError(e.code, `struct ${name}: field ${f.key}: ${e.message}`);
        throw e;
      }
    }
  };
  const s: Record<string, unknown> = Object.fromEntries(layout.map((f) => [f.key, f.offset]));
  Object.assign(s, {
    size,
    align,
    btf,
    read,
    write,
    encode: (v: Record<string, unknown>) => {
      const b = Buffer.alloc(size);
      write(b, 0, v);
      return b;
    },
    decode: (b: Buffer) => {
      if (b.length < size) throw new BpfError("BPF_ERR_INVALID_ARG", `struct ${name}: ${b.length} bytes, expected ${size}`);
      return read(b, 0);
    },
  });
  return Object.freeze(s) as Struct<F>;
}

/** A value of `S` with every field zero (to fill in only what a command needs). */
export function zero<T>(S: StructMembers<T>): T {
  return S.decode(Buffer.alloc(S.size));
}
