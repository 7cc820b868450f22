/**
 * What a receiver load left at a pin folder: its recorded settings, the pin folders of every receiver
 * on the host, and whether each hook is still attached to its cgroup.
 */
import { type Dirent, existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { BpfMap, linkFromPin, linkInfo, queryCgroup } from "../bpf/index.js";
import { MapName } from "../programs/layout.js";
import { cgroupId } from "./cgroup-folder.js";
import { Attachments, pinPaths } from "./pins.js";
import { decodeSettings, type StoredSettings } from "./settings.js";

/** Read the settings of what is loaded at `pinDir`, if anything. */
export function readLoadedSettings(pinDir: string): StoredSettings | undefined {
  const paths = pinPaths(pinDir);
  if (!existsSync(paths.settings)) return undefined;
  const m = BpfMap.fromPin(paths.settings);
  try {
    const v = m.lookup(Buffer.alloc(4));
    return v ? decodeSettings(v) : undefined;
  } finally {
    m.close();
  }
}

/**
 * Pin folders of receivers under `root` (bpffs), up to `depth` levels down: folders holding a
 * toa_settings pin. Unreadable folders are skipped.
 */
export function findReceiverPinDirs(root = "/sys/fs/bpf", depth = 3): string[] {
  const out: string[] = [];
  const walk = (dir: string, left: number): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    if (entries.some((e) => e.name === MapName.settings && !e.isDirectory())) out.push(dir);
    if (left > 0) for (const e of entries) if (e.isDirectory()) walk(join(dir, e.name), left - 1);
  };
  walk(root, depth);
  return out;
}

/**
 * Whether each hook of the load at `pinDir` is attached to its cgroup as it is now (a link made for
 * a folder that was removed, or removed and made again, is not). Cheap: no probes.
 */
export function attachmentHealth(pinDir: string): { hook: string; attached: boolean }[] {
  const settings = readLoadedSettings(pinDir);
  if (!settings) return Attachments.map((a) => ({ hook: a.attachType, attached: false }));
  let id: bigint | undefined;
  try {
    id = cgroupId(settings.cgroup);
  } catch {
    id = undefined;
  }
  const paths = pinPaths(pinDir);
  return Attachments.map((a) => {
    if (id === undefined) return { hook: a.attachType, attached: false };
    try {
      if (existsSync(paths.link(a.pin))) {
        const link = linkFromPin(paths.link(a.pin), settings.cgroup, a.attachType);
        try {
          return { hook: a.attachType, attached: linkInfo(link.fd).cgroupId === id };
        } finally {
          link.close();
        }
      }
      return { hook: a.attachType, attached: queryCgroup(settings.cgroup, a.attachType).programIds.includes(settings.programs[a.program]) };
    } catch {
      return { hook: a.attachType, attached: false };
    }
  });
}
