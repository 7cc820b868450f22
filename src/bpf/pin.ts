/** bpffs: find or mount it, make pin folders, remove pins. */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statfsSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { mountFs } from "./syscall.js";
import { BpfError } from "./errors.js";
import { inspectPin } from "./object.js";

const BPF_FS_MAGIC = 0xcafe4a11;

/** Whether `path` is on a bpffs mount. */
export function isBpffs(path: string): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/** The bpffs mounts listed in /proc/self/mountinfo. */
export function bpffsMounts(mountinfo = readFileSync("/proc/self/mountinfo", "utf8")): string[] {
  return mountinfo
    .split("\n")
    .filter((l) => l.includes(" - bpf "))
    .map((l) => l.split(" ")[4]);
}

/**
 * Make sure `dir` exists on bpffs. When its bpffs root (/sys/fs/bpf) is not mounted, mount it, as
 * `mount -t bpf bpf /sys/fs/bpf` would.
 */
export function ensurePinDir(dir: string, root = "/sys/fs/bpf"): void {
  // bpffs refuses names with a dot (EPERM; they are kept for the kernel's own "maps.debug" files).
  const below = dir.startsWith(`${root}/`) ? dir.slice(root.length + 1) : "";
  const dotted = below.split("/").find((n) => n.includes("."));
  if (dotted) throw new BpfError("BPF_ERR_INVALID_ARG", `pin folder ${dir}: bpffs refuses names with a dot ("${dotted}"): use e.g. ${join(root, below.replace(/\./g, "-"))}`);
  if (!dir.startsWith(`${root}/`) && dir !== root && !isBpffs(dir)) {
    if (!isBpffs(join(dir, ".."))) throw new BpfError("BPF_ERR_INVALID_ARG", `pin folder ${dir} is not on a bpffs mount (use a folder under ${root})`);
  }
  if (!isBpffs(root) && (dir === root || dir.startsWith(`${root}/`))) {
    mkdirSync(root, { recursive: true });
    mountFs("bpf", root, "bpf");
  }
  mkdirSync(dir, { recursive: true });
}

/** Remove a pin (no error when absent). */
export function unpin(path: string): boolean {
  if (!existsSync(path)) return false;
  unlinkSync(path);
  return true;
}

/** A pin that {@link removePins} may remove: its name in the folder and what it must hold. */
export interface ExpectedPin {
  name: string;
  kind: "map" | "program" | "link";
  /** Maps and programs: the object's name in the kernel (e.g. "my_map"); a prefix when it ends with "*". */
  objectName?: string;
  /** Maps: enum bpf_map_type. */
  mapType?: number;
  /** Links: enum bpf_link_type (3: cgroup). */
  linkType?: number;
}

/** What {@link removePins} did. */
export interface RemovedPins {
  /** Pins removed (paths). */
  removed: string[];
  /** Known names left in place because they hold something else, with the reason. */
  kept: { path: string; reason: string }[];
  /** Entries of the folder that are not ours (left in place). */
  foreign: string[];
  /** Whether the folder itself was removed (only when it was empty afterwards). */
  folderRemoved: boolean;
}

function nameMatches(want: string | undefined, have: string): boolean {
  if (want === undefined) return true;
  return want.endsWith("*") ? have.startsWith(want.slice(0, -1)) : have === want;
}

/** Why the pin at `path` is not the `expected` object, or undefined when it is. */
export function pinMismatch(path: string, expected: ExpectedPin): string | undefined {
  const o = inspectPin(path);
  if (!o) return "not a BPF object BPF_OBJ_GET can open";
  if (o.kind !== expected.kind) return `holds ${o.kind === "other" ? o.what : `a ${o.kind}`}, expected a ${expected.kind}`;
  if (o.kind === "map") {
    if (expected.mapType !== undefined && o.info.type !== expected.mapType) return `map of type ${o.info.type}, expected type ${expected.mapType}`;
    if (!nameMatches(expected.objectName, o.info.name)) return `map named "${o.info.name}", expected "${expected.objectName}"`;
  } else if (o.kind === "program") {
    if (!nameMatches(expected.objectName, o.info.name)) return `program named "${o.info.name}", expected "${expected.objectName}"`;
  } else if (o.kind === "link") {
    if (expected.linkType !== undefined && o.info.type !== expected.linkType) return `link of type ${o.info.type}, expected type ${expected.linkType}`;
  }
  return undefined;
}

/**
 * Remove the pins of `expected` from `dir` — each only when it holds the object it should (checked
 * with BPF_OBJ_GET + BPF_OBJ_GET_INFO_BY_FD) — then the folder, only when nothing else is left in it.
 * Anything else in the folder (another tool's pins, files) stays. A folder that is not on bpffs is
 * refused: it can't hold pins, and its files are not ours. Idempotent: a missing folder removes nothing.
 */
export function removePins(dir: string, expected: readonly ExpectedPin[]): RemovedPins {
  const out: RemovedPins = { removed: [], kept: [], foreign: [], folderRemoved: false };
  if (!existsSync(dir)) return out;
  if (!isBpffs(dir)) {
    throw new BpfError("BPF_ERR_INVALID_ARG", `${dir} is not on a bpffs mount (statfs type is not BPF_FS_MAGIC 0xcafe4a11): it can't hold pins, so nothing in it was made by a load; nothing removed. Give the --pin-dir the load used (under /sys/fs/bpf)`);
  }
  const names = new Set(expected.map((e) => e.name));
  for (const e of expected) {
    const path = join(dir, e.name);
    if (!existsSync(path)) continue;
    const why = pinMismatch(path, e);
    if (why) {
      out.kept.push({ path, reason: why });
      continue;
    }
    unlinkSync(path);
    out.removed.push(path);
  }
  const left = readdirSync(dir);
  out.foreign = left.filter((n) => !names.has(n)).map((n) => join(dir, n));
  if (left.length === 0) {
    rmdirSync(dir);
    out.folderRemoved = true;
  }
  return out;
}
