/**
 * The project's files for a VM leg, on a disk of their own. Every test starts node processes (the
 * CLI, `toa lb`, demo peers) that read hundreds of files each; over the 9p root under qemu's TCG that
 * made `toa --help` take 18–25 s in Debian 11's kernel, against 8–11 s from an ext4 disk (measured
 * 2026-12-03, test/kernels/run-kernel.sh with and without VM_DISK). The image is a throwaway copy,
 * mounted read-write at the tree's own path, so paths inside the VM are the same as on the host.
 */
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr.slice(-500)}`);
  return r.stdout;
}

/** Write an ext4 image at `image` holding `tree` (room for the tests' own writes); returns `image`. */
export function makeProjectDisk(tree: string, image: string): string {
  const bytes = Number(sh("du", ["-sb", "--dereference-args", tree]).split(/\s/)[0]);
  // ext4's metadata and the files' block rounding take about a fifth more; 512 MiB for what tests write.
  const size = Math.ceil((bytes * 1.3 + 512 * 2 ** 20) / 2 ** 20);
  rmSync(image, { force: true });
  sh("truncate", ["-s", `${size}M`, image]);
  sh("mkfs.ext4", ["-q", "-F", "-E", "root_owner=0:0", "-d", tree, image]);
  return image;
}
