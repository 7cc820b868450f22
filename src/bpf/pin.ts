/** bpffs: find or mount it, make pin folders, remove pins. */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statfsSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { mountFs } from "./syscall.js";
import { BpfError } from "./errors.js";

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

/** Remove every pin in `dir` and the folder itself (idempotent). */
export function removePinDir(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    unlinkSync(join(dir, name));
    removed.push(join(dir, name));
  }
  rmdirSync(dir);
  return removed;
}
