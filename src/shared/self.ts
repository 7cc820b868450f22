/**
 * How to start this same `toa` again in a child process (the demo's balancer and peers, the agent's
 * systemd unit). toa comes in two forms:
 *
 *   npm install          process.execPath is node:  node …/dist/src/cli/bin.js ARGS
 *   single executable    process.execPath is toa:   /usr/bin/toa ARGS
 *
 * so `process.execPath` alone is right in one form only; {@link toaArgv} is right in both.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

let singleExecutable = false;

/**
 * Called once by the single executable's entry (src/executable/main.ts) before anything else: from
 * then on process.execPath is toa itself.
 */
export function markSingleExecutable(): void {
  singleExecutable = true;
}

/** Whether this process is the single executable (no Node or npm install behind it). */
export function isSingleExecutable(): boolean {
  return singleExecutable;
}

/** The npm form's CLI script, dist/src/cli/bin.js, next to this module (dist/src/shared). */
export function cliScript(): string {
  return fileURLToPath(new URL("../cli/bin.js", import.meta.url));
}

/** The full argv that runs `toa ARGS` in either form: `[file, ...args]`, ready for spawn/execFile. */
export function toaArgv(...args: string[]): [string, ...string[]] {
  return singleExecutable ? [process.execPath, ...args] : [process.execPath, cliScript(), ...args];
}

let version: string | undefined;

/**
 * This build's package version: written into the single executable when it is bundled
 * (scripts/package/bundle.mjs), else package.json beside dist/; "unknown" where neither is found.
 */
export function packageVersion(): string {
  if (version === undefined && process.env.TOA_BUILD_VERSION) version = process.env.TOA_BUILD_VERSION;
  if (version === undefined) {
    try {
      version = (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version?: string }).version ?? "unknown";
    } catch {
      version = process.env.npm_package_version ?? "unknown";
    }
  }
  return version;
}
