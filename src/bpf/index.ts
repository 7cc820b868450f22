/**
 * A general eBPF toolkit in TypeScript: assembler, BTF, maps, programs, cgroup attachment, pins and
 * tc attachment (tcx links or rtnetlink), feature probes over bpf(2). It knows nothing about TOA.
 */
export * as asm from "./asm/index.js";
export * from "./errors.js";
export * as uapi from "./uapi.js";
export * from "./syscall.js";
export * as btf from "./btf.js";
export { Btf, buildBtf, type BtfType } from "./btf.js";
export * as codec from "./codec.js";
export { type Codec } from "./codec.js";
export * from "./map.js";
export * from "./program.js";
export * from "./cgroup.js";
export * from "./tc.js";
export * as netlink from "./netlink.js";
export * as tcNetlink from "./tc-netlink.js";
export * from "./pin.js";
export * from "./object.js";
export * from "./probes.js";
export * from "./run-stats.js";
