/** The eBPF assembler: instruction builders, labels, encoding. */
export * from "./opcodes.js";
export * from "./helpers.js";
export * from "./instruction.js";
export * from "./encode.js";
export * from "./disasm.js";
