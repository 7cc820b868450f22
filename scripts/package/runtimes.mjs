// The pieces of each executable that are not built here: the official node binary for the target
// architecture and koffi's prebuilt native binary for it. Both come from the npm registry through
// `npm pack` (so npm's cache and settings apply, and nothing else is contacted), each checked against
// an integrity pinned in the repository before it is used:
//   node-linux-<arch>          package.json "singleExecutable" (version and sha512 per architecture)
//   @koromix/koffi-linux-<arch> package-lock.json (koffi's optional platform packages, locked with koffi)
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The architectures built, with each packaging system's name for them. */
export const TARGETS = [
  { arch: "x64", deb: "amd64", rpm: "x86_64", koffiDir: "linux_x64" },
  { arch: "arm64", deb: "arm64", rpm: "aarch64", koffiDir: "linux_arm64" },
];

/** The pinned versions and integrities of one target's pieces. */
export function pins(root, target) {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));
  const sea = pkg.singleExecutable;
  const nodeName = `node-linux-${target.arch}`;
  if (!sea?.node || !sea.integrity?.[nodeName]) throw new Error(`package.json: singleExecutable.node and singleExecutable.integrity["${nodeName}"] must pin the runtime`);
  const koffiVersion = lock.packages["node_modules/koffi"]?.version;
  const koffiName = `@koromix/koffi-linux-${target.arch}`;
  const koffiLock = lock.packages[`node_modules/${koffiName}`];
  if (!koffiLock?.integrity) throw new Error(`package-lock.json has no ${koffiName}: koffi's platform packages are locked with koffi`);
  if (koffiLock.version !== koffiVersion) throw new Error(`package-lock.json: ${koffiName} ${koffiLock.version} does not match koffi ${koffiVersion}`);
  return {
    node: { name: nodeName, version: sea.node, integrity: sea.integrity[nodeName] },
    koffi: { name: koffiName, version: koffiLock.version, integrity: koffiLock.integrity },
  };
}

function integrityOf(file) {
  return `sha512-${createHash("sha512").update(readFileSync(file)).digest("base64")}`;
}

/**
 * `name@version` unpacked under `cache` (its "package" folder), fetched with `npm pack` and checked
 * against `integrity` first; kept for the next build.
 */
export function fetchPackage(cache, { name, version, integrity }) {
  const dir = join(cache, `${name.replace("/", "+")}@${version}`);
  const stamp = join(dir, ".integrity");
  if (existsSync(stamp) && readFileSync(stamp, "utf8") === integrity) return join(dir, "package");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const file = execFileSync("npm", ["pack", `${name}@${version}`, "--pack-destination", dir, "--prefer-offline", "--silent"], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] })
    .trim()
    .split("\n")
    .pop();
  const tgz = join(dir, file);
  const got = integrityOf(tgz);
  if (got !== integrity) throw new Error(`${name}@${version}: integrity ${got} is not the pinned ${integrity}`);
  execFileSync("tar", ["-xzf", tgz, "-C", dir]);
  rmSync(tgz);
  writeFileSync(stamp, integrity);
  return join(dir, "package");
}

/** One target's node binary, its license, and koffi's native binary, fetched and checked. */
export function runtime(root, cache, target) {
  const p = pins(root, target);
  const nodeDir = fetchPackage(cache, p.node);
  const koffiDir = fetchPackage(cache, p.koffi);
  const addon = join(koffiDir, target.koffiDir, "koffi.node");
  if (!existsSync(addon)) throw new Error(`${p.koffi.name}@${p.koffi.version} has no ${target.koffiDir}/koffi.node`);
  return { pins: p, node: join(nodeDir, "bin", "node"), nodeLicense: join(nodeDir, "LICENSE"), addon };
}
