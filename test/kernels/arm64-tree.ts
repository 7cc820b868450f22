/**
 * What an arm64 leg adds to the run's tree: Node for arm64 and koffi's arm64 native binary. `npm ci`
 * on this x86-64 machine installs only koffi's x64 package, and the arm64 root file system has no
 * node. Both come from the npm registry, checked against the integrities the packager pins
 * (scripts/package/runtimes.mjs: package.json "singleExecutable", package-lock.json), so the VM runs
 * the same Node and koffi the arm64 executable carries.
 */
import { cpSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

interface Runtime {
  node: string;
  addon: string;
}
interface RuntimesModule {
  TARGETS: { arch: string }[];
  runtime(root: string, cache: string, target: { arch: string }): Runtime;
}

/** Folder (inside `tree`) whose bin/node is the arm64 node. */
const ARM64_NODE_DIR = ".vm-arm64";

/**
 * Put node (tree/.vm-arm64/bin/node) and @koromix/koffi-linux-arm64 (tree/node_modules) into `tree`;
 * returns the node's path. Fetches into the packager's cache (node_modules/.cache/toa-package) once.
 */
export async function addArm64Runtime(root: string, tree: string): Promise<string> {
  const node = join(tree, ARM64_NODE_DIR, "bin", "node");
  if (existsSync(node)) return node;
  const runtimes = (await import(pathToFileURL(join(root, "scripts/package/runtimes.mjs")).href)) as RuntimesModule;
  const target = runtimes.TARGETS.find((t) => t.arch === "arm64");
  if (!target) throw new Error("scripts/package/runtimes.mjs has no arm64 target");
  const rt = runtimes.runtime(root, join(root, "node_modules", ".cache", "toa-package"), target);
  // koffi's loader requires its platform package by name: the fetched package as npm would lay it out.
  cpSync(dirname(dirname(rt.addon)), join(tree, "node_modules", "@koromix", "koffi-linux-arm64"), { recursive: true });
  mkdirSync(dirname(node), { recursive: true });
  cpSync(rt.node, node);
  return node;
}
