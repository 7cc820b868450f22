/** Taking a receiver away: detach its hooks and remove the pins a load made, and nothing else. */
import { closeSync, existsSync } from "node:fs";
import { isBpffs, linkFromPin, openCgroup, pinMismatch, Program, progDetach, removePins } from "../bpf/index.js";
import { MapName } from "../programs/layout.js";
import { AgentError } from "./errors.js";
import { kernelLog } from "./kmsg.js";
import { readLoadedSettings } from "./loaded.js";
import { Attachments, pinPaths, RECEIVER_PINS } from "./pins.js";

/** What unload removed. */
export interface UnloadResult {
  detached: string[];
  unpinned: string[];
  wasLoaded: boolean;
  /** Entries of the pin folder that are not toa's pins, left in place (the folder then stays). */
  foreign: string[];
  /** Pins with toa's names that hold something else, left in place, with the reason. */
  kept: { path: string; reason: string }[];
  folderRemoved: boolean;
}

/**
 * Detach and unpin what a load made at `pinDir`: only toa's pin names, each only when it holds the
 * object a load pins there; the folder only when it is empty afterwards. Refuses a folder that is
 * not on bpffs. Idempotent.
 */
export function unloadReceiver(pinDir: string): UnloadResult {
  const none: UnloadResult = { detached: [], unpinned: [], wasLoaded: false, foreign: [], kept: [], folderRemoved: false };
  if (!existsSync(pinDir)) return none;
  if (!isBpffs(pinDir)) {
    throw new AgentError("AGENT_ERR_PIN_DIR", `--pin-dir: ${pinDir} is not on a bpffs mount (statfs type is not 0xcafe4a11), so no load pinned anything there; nothing removed. Give the --pin-dir the load used (a folder under /sys/fs/bpf)`);
  }
  const paths = pinPaths(pinDir);
  const expected = (name: string) => RECEIVER_PINS.find((p) => p.name === name)!;
  const previous = existsSync(paths.settings) && !pinMismatch(paths.settings, expected(MapName.settings)) ? readLoadedSettings(pinDir) : undefined;
  const detached: string[] = [];
  for (const a of Attachments) {
    const linkPin = paths.link(a.pin);
    const progPin = paths.program(a.program);
    if (existsSync(linkPin) && !pinMismatch(linkPin, expected(a.pin))) {
      const link = linkFromPin(linkPin, previous?.cgroup ?? "?", a.attachType);
      link.detach();
      detached.push(a.attachType);
    } else if (existsSync(progPin) && previous && !pinMismatch(progPin, expected(`prog_${a.program}`))) {
      const p = Program.fromPin(progPin);
      let cg = -1;
      try {
        cg = openCgroup(previous.cgroup);
        progDetach(cg, p.fd, a.attachType);
        detached.push(a.attachType);
      } catch {
        /* already detached, or the cgroup is gone (and its attachments with it) */
      } finally {
        if (cg >= 0) closeSync(cg);
        p.close();
      }
    }
  }
  const r = removePins(pinDir, RECEIVER_PINS);
  if (detached.length) kernelLog(`toa unloaded (eBPF): detached from ${previous?.cgroup ?? "cgroup"}`);
  return { detached, unpinned: r.removed, wasLoaded: detached.length > 0 || r.removed.length > 0, foreign: r.foreign, kept: r.kept, folderRemoved: r.folderRemoved };
}
