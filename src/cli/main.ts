/**
 * `toa` command line. `main()` only calls {@link run}, which returns an exit code, so every command
 * runs in-process in tests. Each command lives in commands/<name>.ts and exports a factory
 * `(io, setExit) => Command`.
 */
import { Command, CommanderError } from "commander";
import { packageVersion } from "../shared/self.js";
import { type Io, processIo, UsageError } from "./io.js";
import { commandFactories, hiddenCommandFactories } from "./commands/index.js";
import { nameToaToToolkit } from "../programs/application.js";

/** Build the command tree; `exit` records the exit code an action wants. */
export function buildProgram(io: Io, exit: (code: number) => void): Command {
  const program = new Command("toa")
    .description(
      "Real client addresses for servers behind full-NAT load balancers (TCP Option Address, TOA), " +
        "with eBPF programs assembled in TypeScript: no kernel module, no compiler.",
    )
    .version(packageVersion())
    // A subcommand's options are its own wherever its parent has one of the same name (`toa lb remove --instance`).
    .enablePositionalOptions()
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .exitOverride();
  for (const factory of [...commandFactories, ...hiddenCommandFactories]) {
    const cmd = factory(io, exit);
    cmd.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
    program.addCommand(cmd, { hidden: hiddenCommandFactories.includes(factory) });
  }
  return program;
}

/** Run the CLI with `argv` (without node and script); resolves to the exit code. */
export async function run(argv: string[], io: Io = processIo): Promise<number> {
  nameToaToToolkit();
  let code = 0;
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv, { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof UsageError) {
      io.err(`toa: ${e.message}`);
      return e.exitCode;
    }
    const err = e as Error & { code?: string };
    io.err(`toa: ${err.message}`);
    if (process.env.TOA_DEBUG) io.err(String(err.stack));
    return 1;
  }
}

/**
 * The process's CLI, as `toa` runs it (bin.ts for the npm install, src/executable/main.ts for the single
 * executable): runs `argv` and sets process.exitCode. `toa ... | head` closes the pipe early: that is
 * the reader's choice, not an error.
 */
export async function main(argv: string[]): Promise<void> {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  process.exitCode = await run(argv);
}
