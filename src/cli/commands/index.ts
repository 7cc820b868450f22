/** Every command of the CLI, in the order `toa --help` lists them. */
import type { Command } from "commander";
import type { Io } from "../io.js";
import { loadCommand } from "./load.js";
import { unloadCommand } from "./unload.js";
import { statusCommand } from "./status.js";
import { statsCommand } from "./stats.js";
import { installServiceCommand, uninstallServiceCommand } from "./service.js";
import { lbCommand } from "./lb.js";
import { inspectCommand } from "./inspect.js";
import { doctorCommand } from "./doctor.js";
import { demoCommand, demoPeerCommand } from "./demo.js";
import { agentCommand } from "./agent.js";

/** A command factory: builds the commander Command; `exit` sets the process exit code. */
export type CommandFactory = (io: Io, exit: (code: number) => void) => Command;

export const commandFactories: CommandFactory[] = [
  loadCommand,
  unloadCommand,
  statusCommand,
  statsCommand,
  agentCommand,
  lbCommand,
  inspectCommand,
  doctorCommand,
  demoCommand,
  installServiceCommand,
  uninstallServiceCommand,
];

/** Commands `toa --help` does not list: toa's own helpers, which it starts as child processes. */
export const hiddenCommandFactories: CommandFactory[] = [demoPeerCommand];
