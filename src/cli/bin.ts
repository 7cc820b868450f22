#!/usr/bin/env node
/** The `toa` executable of the npm install: runs the CLI and sets the exit code. */
import { main } from "./main.js";

await main(process.argv.slice(2));
