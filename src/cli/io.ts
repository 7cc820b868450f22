/** Where a command writes: injected so commands run in-process in tests. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

/** The process's stdout/stderr. */
export const processIo: Io = {
  out: (t) => process.stdout.write(t.endsWith("\n") ? t : `${t}\n`),
  err: (t) => process.stderr.write(t.endsWith("\n") ? t : `${t}\n`),
};

/**
 * An error meant for the user: printed without a stack, exits with `exitCode` (2: bad usage, 3: nothing
 * loaded, 1: the input could not be read). The CLI's only error class: errors of the layers below
 * (AgentError, WireError, BpfError, DemoError) carry their own codes and are printed by run().
 */
export class UsageError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = "UsageError";
  }
}
