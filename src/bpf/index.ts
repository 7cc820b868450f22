/**
 * A general eBPF toolkit in TypeScript: assembler, BTF, maps, programs, cgroup attachment, pins and
 * tc attachment (tcx links or rtnetlink), feature probes over bpf(2). It knows nothing about TOA.
 */
export * as asm from "./asm/index.js";
export * from "./errors.js";
export * as uapi from "./uapi.js";
export * from "./syscall.js";
export { linkDetach, objInfo } from "./sys.js";
/** The bpf(2) attrs and info structs, declared with struct() (cilium/ebpf's internal/sys). */
export * as sys from "./sys.js";
export * as btf from "./btf.js";
export { Btf, buildBtf, type BtfType } from "./btf.js";
export * as codec from "./codec.js";
export { type Codec } from "./codec.js";
export * from "./map.js";
export { struct, type Struct, type StructMembers, type ValueOf, type FieldType } from "./struct.js";
/** Field types of {@link struct}: u8, u16, u32, u64, be16, be32, bytes(n), array(t, n), pad(n). */
export * as ctype from "./struct.js";
export * from "./program.js";
export * from "./cgroup.js";
export * from "./tc.js";
export * as netlink from "./netlink.js";
export * as tcNetlink from "./tc-netlink.js";
export * from "./pin.js";
export * from "./object.js";
export * from "./probes.js";
export * from "./run-stats.js";
