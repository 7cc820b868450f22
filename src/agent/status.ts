/**
 * What is loaded, where, with which settings, whether the kernel has what the receiver needs, and
 * what the operator should worry about. Used by `toa status` and `toa doctor`.
 */
import { existsSync } from "node:fs";
import { describeAttached, probe, type ProbeResult } from "../bpf/index.js";
import { Attachments, pinPaths } from "./pins.js";
import { readLoadedSettings } from "./loaded.js";
import { RECEIVER_FEATURES } from "./receiver.js";
import { formatCidr } from "../wire/cidr.js";
import type { StoredSettings } from "./settings.js";
import { DEFAULT_PIN_DIR } from "./pins.js";
import { DEFAULT_KINDS } from "../programs/layout.js";

/** The `toa load` command that loads `s` again: it re-attaches hooks whose cgroup was removed and made again. */
export function loadCommandFor(s: StoredSettings): string {
  const parts = ["toa load", `--cgroup ${s.cgroup}`];
  if (s.pinDir !== DEFAULT_PIN_DIR) parts.push(`--pin-dir ${s.pinDir}`);
  if (s.trust.length) parts.push(`--trust ${s.trust.map(formatCidr).join(",")}`);
  if (s.kinds.join(",") !== DEFAULT_KINDS.join(",")) parts.push(`--kinds ${s.kinds.join(",")}`);
  if (!s.syn) parts.push("--no-syn");
  return parts.join(" ");
}

/** A program attached on the same hook that isn't ours. */
export interface ForeignProgram {
  hook: string;
  id: number;
  name: string;
}

/** Status report. */
export interface Status {
  loaded: boolean;
  pinDir: string;
  settings?: StoredSettings;
  /** Hooks where our program is attached (kernel's view). */
  attached: { hook: string; programId: number; attached: boolean }[];
  foreign: ForeignProgram[];
  features: ProbeResult[];
  warnings: string[];
  /** Hooks the kernel no longer has attached (the cgroup was removed, or removed and made again). */
  gone: string[];
  /** What repairs the hooks that are gone. */
  fix?: string;
}

/** Build the status of the load pinned at `pinDir`. */
export function receiverStatus(pinDir: string): Status {
  const features = RECEIVER_FEATURES.map(probe);
  const settings = existsSync(pinPaths(pinDir).settings) ? readLoadedSettings(pinDir) : undefined;
  const warnings: string[] = [];
  const attached: Status["attached"] = [];
  const foreign: ForeignProgram[] = [];
  if (settings) {
    for (const a of Attachments) {
      const id = settings.programs[a.program];
      let here: { id: number; name: string }[] = [];
      try {
        // Effective: programs inherited from parent cgroups run too (and can undo our rewrite).
        here = describeAttached(settings.cgroup, a.attachType, true);
      } catch (e) {
        warnings.push(`cannot query ${a.attachType} on ${settings.cgroup}: ${(e as Error).message}`);
      }
      attached.push({ hook: a.attachType, programId: id, attached: here.some((p) => p.id === id) });
      for (const p of here) if (p.id !== id && !p.name.startsWith("toa_")) foreign.push({ hook: a.attachType, ...p });
    }
    if (settings.trust.length === 0) {
      warnings.push("no trust list: a TOA from ANY source is believed, so a client that can reach this host directly can forge its address. Reload with --trust <load balancer CIDRs> (Huawei ELB: 100.125.0.0/16)");
    }
    for (const a of attached) if (!a.attached) warnings.push(`${a.hook}: our program ${a.programId} is no longer attached to ${settings.cgroup}`);
    for (const f of foreign.filter((x) => x.hook.includes("GETPEERNAME"))) {
      warnings.push(`another ${f.hook} program is attached (id ${f.id}, "${f.name}", e.g. Cilium or Alinux vtoa): it may rewrite the peer address too; the last one to run wins`);
    }
  }
  for (const f of features) if (!f.available) warnings.push(`kernel lacks ${f.name} (upstream ${f.since}): ${f.error ?? ""}`);
  const gone = attached.filter((a) => !a.attached).map((a) => a.hook);
  let fix: string | undefined;
  if (settings && gone.length) {
    fix = existsSync(settings.cgroup)
      ? `${loadCommandFor(settings)}   (re-attaches, keeping the addresses of open connections; \`toa agent --target ${settings.cgroup}\` does it by itself whenever the cgroup is made again)`
      : `${settings.cgroup} does not exist now: when it is back (service or pod started again), run ${loadCommandFor(settings)}; \`toa agent --target ${settings.cgroup}\` re-attaches by itself the moment it appears`;
  }
  return { loaded: settings !== undefined, pinDir, settings, attached, foreign, features, warnings, gone, fix };
}
