// A single executable application (Node's SEA): the bundle and koffi's native binary go into a
// preparation blob, which postject injects into a copy of the official node binary of the target
// architecture. The blob holds no code compiled for a machine (no code cache, no snapshot): this
// machine's node of the same version makes it for either architecture. The node binary is left as
// released, but for the injected blob.
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative } from "node:path";
import { KOFFI_ASSET } from "./bundle.mjs";

/** The fuse every SEA-capable node binary carries (Node's docs, "Single executable applications"). */
const SENTINEL_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/**
 * The preparation blob for `bundleFile` and `addon`, made by `hostNode` (a node binary of the same
 * version as the targets', runnable here).
 */
export function seaBlob(hostNode, work, bundleFile, addon, name) {
  const config = join(work, `sea-config-${name}.json`);
  const blob = `sea-${name}.blob`;
  // The blob keeps `main` as written (it names the script in stack traces): relative to `work`, so
  // the executable holds no path of the machine that built it.
  writeFileSync(
    config,
    JSON.stringify({ main: relative(work, bundleFile), output: blob, disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: false, assets: { [KOFFI_ASSET]: addon } }, null, 2),
  );
  execFileSync(hostNode, ["--experimental-sea-config", config], { cwd: work, stdio: ["ignore", "ignore", "inherit"] });
  return join(work, blob);
}

/** Inject `blob` into a copy of `node` at `out` (written under a temporary name, then renamed). */
export function inject(root, node, blob, out) {
  const tmp = `${out}.tmp`;
  copyFileSync(node, tmp);
  chmodSync(tmp, 0o755);
  const cli = createRequire(join(root, "package.json")).resolve("postject/dist/cli.js");
  // postject's ELF library warns about the notes it does not name; only its errors matter.
  try {
    execFileSync(process.execPath, [cli, tmp, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SENTINEL_FUSE], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    const said = String(e.stderr ?? "").split("\n").filter((l) => l && !l.includes("Can't find string offset for section name"));
    throw new Error(`postject ${out}: ${said.join("\n") || e.message}`);
  }
  renameSync(tmp, out);
}
