/** The cgroup v2 folder a receiver attaches to: the default one, checking a given one, its id. */
import { statfsSync, statSync } from "node:fs";
import { findCgroup2Mount } from "../bpf/index.js";
import { AgentError } from "./errors.js";

/** The cgroup v2 root (the whole host), the default attach point. */
export function defaultCgroup(): string {
  return findCgroup2Mount();
}

/** cgroup2's statfs magic (CGROUP2_SUPER_MAGIC). */
const CGROUP2_MAGIC = 0x63677270;

/** Check `--cgroup` before anything is created: an existing cgroup v2 folder. */
export function checkCgroupFolder(path: string, flag = "--cgroup"): void {
  let magic: number;
  let isFolder: boolean;
  try {
    isFolder = statSync(path).isDirectory();
    magic = statfsSync(path).type;
  } catch (e) {
    throw new AgentError(
      "AGENT_ERR_CGROUP",
      `${flag}: ${path} does not exist: give an existing cgroup v2 folder (see \`systemctl status UNIT\` or /proc/PID/cgroup for where a service runs), or run \`toa agent --target ...\`, which attaches when the folder appears`,
      { cause: e },
    );
  }
  // findCgroup2Mount() only in the messages, outside the try: a missing cgroup2 mount is its own error.
  if (!isFolder) throw new AgentError("AGENT_ERR_CGROUP", `${flag}: ${path} is not a folder: give a cgroup v2 folder, e.g. ${findCgroup2Mount()}/system.slice/nginx.service`);
  if (magic !== CGROUP2_MAGIC) throw new AgentError("AGENT_ERR_CGROUP", `${flag}: ${path} is not on a cgroup v2 mount: give a folder under ${findCgroup2Mount()}`);
}

/** Id of a cgroup folder: its inode number on cgroupfs, as bpf_link_info reports it. */
export function cgroupId(path: string): bigint {
  return statSync(path, { bigint: true }).ino;
}
