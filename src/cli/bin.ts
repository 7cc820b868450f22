#!/usr/bin/env node
/** The `toa` executable: runs the CLI and sets the exit code. */
import { run } from "./main.js";

process.exitCode = await run(process.argv.slice(2));
