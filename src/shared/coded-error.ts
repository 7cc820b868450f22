/**
 * The shape every layer's error class shares: a stable `code` from the layer's catalogue (a union of
 * string literals, documented where it is declared), the class's own name, and the underlying
 * error kept as `cause`. Each layer declares its codes and one class over this (agent/, lb/, demo/,
 * wire/); bpf/ keeps its own BpfError so the toolkit stands alone.
 */
export class CodedError<Code extends string> extends Error {
  readonly code: Code;
  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}
