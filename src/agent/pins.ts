/** Names of the pins a receiver load leaves in its pin folder, and what each must hold. */
import { join } from "node:path";
import { LinkType, MapType, type ExpectedPin } from "../bpf/index.js";
import { MapName } from "../programs/layout.js";

export { DEFAULT_PIN_DIR } from "./defaults.js";

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

/**
 * Every pin a load may leave, with the kernel object it must hold: `toa unload` removes a name only
 * when BPF_OBJ_GET finds that object there (another tool's pin of the same name stays).
 */
export const RECEIVER_PINS: readonly ExpectedPin[] = [
  { name: MapName.peers, kind: "map", objectName: MapName.peers, mapType: MapType.SK_STORAGE },
  { name: MapName.stats, kind: "map", objectName: MapName.stats, mapType: MapType.PERCPU_ARRAY },
  { name: MapName.trust4, kind: "map", objectName: MapName.trust4, mapType: MapType.LPM_TRIE },
  { name: MapName.trust6, kind: "map", objectName: MapName.trust6, mapType: MapType.LPM_TRIE },
  { name: MapName.settings, kind: "map", objectName: MapName.settings, mapType: MapType.ARRAY },
  ...Attachments.map((a): ExpectedPin => ({ name: a.pin, kind: "link", linkType: LinkType.CGROUP })),
  ...Attachments.map((a): ExpectedPin => ({ name: `prog_${a.program}`, kind: "program", objectName: "toa_*" })),
];
