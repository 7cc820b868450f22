/** The eBPF assembler: instruction builders, helper calls with arguments, frames, labels, encoding. */
export * from "./opcodes.js";
export * from "./helpers.js";
export * from "./instruction.js";
export * from "./args.js";
export * from "./frame.js";
export * from "./labels.js";
export * from "./encode.js";
export * from "./disasm.js";
