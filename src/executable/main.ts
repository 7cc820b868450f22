/**
 * The single executable's entry: scripts/package bundles this file and everything it imports into one
 * CommonJS script for Node's single-executable applications (SEA), and injects it, with koffi's
 * native binary as an asset, into a copy of the official node binary. This file runs only so bundled:
 * `require` below is the bundler's, which resolves at build time.
 */
import { useKoffi, type Koffi } from "../bpf/syscall.js";
import { main } from "../cli/main.js";
import { markSingleExecutable } from "../shared/self.js";

// process.execPath is toa itself: children are started as `toa ARGS`, not `node bin.js ARGS`.
markSingleExecutable();
// koffi's own JS loader, bundled; its require of the platform package (@koromix/koffi-linux-<arch>) is
// answered with the binary carried inside (src/executable/addon.ts). Loaded on first use, as from npm.
useKoffi(() => require("koffi") as Koffi);
void main(process.argv.slice(2));
