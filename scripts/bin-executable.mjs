// After a build: make the `toa` bin executable (tsc writes files 0644; `npx toa` runs the file
// itself, so without the x bit it fails with "Permission denied").
import { chmodSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const bin = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "src", "cli", "bin.js");
if (!existsSync(bin)) {
  console.error(`scripts/bin-executable.mjs: ${bin} was not built`);
  process.exit(1);
}
chmodSync(bin, 0o755);
