/**
 * BTF type descriptions (pure data) and the integer types, apart from the writer in btf.ts so that
 * struct.ts can use them without importing the syscalls btf.ts loads blobs with.
 */

/** A BTF type: what map keys and values need (INT, STRUCT, ARRAY, TYPEDEF). */
export type BtfType =
  | { kind: "int"; name: string; size: 1 | 2 | 4 | 8; signed?: boolean }
  | { kind: "struct"; name: string; size: number; members: { name: string; type: BtfType; offset: number }[] }
  | { kind: "array"; element: BtfType; length: number }
  | { kind: "typedef"; name: string; type: BtfType };

/** Handy integer types. */
export const u8: BtfType = { kind: "int", name: "unsigned char", size: 1 };
export const u16: BtfType = { kind: "int", name: "unsigned short", size: 2 };
export const u32: BtfType = { kind: "int", name: "unsigned int", size: 4 };
export const u64: BtfType = { kind: "int", name: "unsigned long long", size: 8 };
export const s32: BtfType = { kind: "int", name: "int", size: 4, signed: true };
