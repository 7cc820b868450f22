/** Options shared by the receiver commands. */
import { Option } from "commander";
import { DEFAULT_PIN_DIR } from "../../agent/defaults.js";

/** `--pin-dir DIR`. */
export const pinDirOption = () =>
  new Option("--pin-dir <dir>", "bpffs folder for the pinned maps and links (one folder per load)").default(DEFAULT_PIN_DIR);

/** `--cgroup DIR`. */
export const cgroupOption = () =>
  new Option("--cgroup <dir>", "cgroup v2 folder to attach to: the whole host by default (the cgroup v2 root), or one container's or pod's folder");

/** JSON for machines. */
export const jsonOption = () => new Option("--json", "print JSON for machines");
