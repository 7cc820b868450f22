/** Names of the pins a receiver load leaves in its pin folder. */
import { join } from "node:path";
import { MapName } from "../programs/layout.js";

export const DEFAULT_PIN_DIR = "/sys/fs/bpf/toa";

/** The receiver's attachments: pin name, attach type, program builder key. */
export const Attachments = [
  { pin: "link_sockops", attachType: "CGROUP_SOCK_OPS", program: "receiver" },
  { pin: "link_getpeer4", attachType: "CGROUP_INET4_GETPEERNAME", program: "getpeer4" },
  { pin: "link_getpeer6", attachType: "CGROUP_INET6_GETPEERNAME", program: "getpeer6" },
  { pin: "link_getsockopt", attachType: "CGROUP_GETSOCKOPT", program: "nat64" },
] as const;
export type ProgramKey = (typeof Attachments)[number]["program"];

/** Paths of every pin in `dir`. */
export function pinPaths(dir: string) {
  return {
    peers: join(dir, MapName.peers),
    stats: join(dir, MapName.stats),
    trust4: join(dir, MapName.trust4),
    trust6: join(dir, MapName.trust6),
    settings: join(dir, MapName.settings),
    link: (name: string) => join(dir, name),
    /** Programs are pinned only when bpf_link is missing (multi attachments can't be pinned). */
    program: (key: string) => join(dir, `prog_${key}`),
  };
}
