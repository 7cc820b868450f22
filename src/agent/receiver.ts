/**
 * Building, loading, attaching and pinning the receiver (sock_ops), the rewriters (getpeername4/6)
 * and the NAT64 look-up (getsockopt) on a cgroup. Taking them away is unload.ts; reading what is
 * loaded, loaded.ts; the cgroup folder checks, cgroup-folder.ts.
 *
 * State lives in the kernel only: maps and links are pinned, so the command can exit and the
 * addresses stay. A second load with other settings swaps the programs inside the pinned links
 * (BPF_LINK_UPDATE): there is no moment without a program, and the socket storage map is reused,
 * so connections accepted before keep their addresses.
 */
import { closeSync, existsSync, rmdirSync } from "node:fs";
import {
  attachCgroup,
  BpfMap,
  CgroupAttachment,
  ensurePinDir,
  linkFromPin,
  type MapSpec,
  Program,
  type ProgramSpec,
  progAttach,
  openCgroup,
  AttachFlag,
  raiseMemlockLimit,
  describeAttached,
  linkInfo,
  pinMismatch,
  queryCgroup,
  requireFeatures,
  unpin,
} from "../bpf/index.js";
import { mapSpecs, MapName, Trust4Key, Trust6Key } from "../programs/layout.js";
import { parseAddress } from "../wire/addr.js";
import { receiverProgram } from "../programs/receiver.js";
import { getpeername4Program, getpeername6Program } from "../programs/rewriter.js";
import { nat64LookupProgram } from "../programs/nat64.js";
import { checkCgroupFolder, cgroupId } from "./cgroup-folder.js";
import { findReceiverPinDirs, readLoadedSettings } from "./loaded.js";
import { AgentError } from "./errors.js";
import { Attachments, type ProgramKey, pinPaths, RECEIVER_PINS } from "./pins.js";
import { type Cidr, encodeSettings, type ReceiverSettings, type StoredSettings } from "./settings.js";
import { kernelLog } from "./kmsg.js";
import { join, resolve } from "node:path";

// The receiver's other jobs, re-exported for the many callers (and tests) that import them from here.
export { checkCgroupFolder, defaultCgroup } from "./cgroup-folder.js";
export { attachmentHealth, findReceiverPinDirs, readLoadedSettings } from "./loaded.js";
export { unloadReceiver, type UnloadResult } from "./unload.js";

/** Features the receiver needs, each probed by trying it. */
export const RECEIVER_FEATURES = ["bpf-syscall", "cgroup2", "sk-storage", "lpm-trie", "sock-ops", "sock-ops-hdr-opt", "getpeername-hooks", "cgroup-sockopt"];

/** Result of a load. */
export interface LoadResult {
  action: "loaded" | "replaced";
  settings: StoredSettings;
  line: string;
  kernelLogWritten: boolean;
  /** Hooks whose pinned link was defunct (the cgroup was removed, or removed and made again) and got a new attachment. */
  reattached: string[];
  /** What the operator should know (another receiver on the same cgroup...). */
  warnings: string[];
}

/** Pins a load made, so that a load failing midway takes them away again. */
class Created {
  readonly pins: string[] = [];
  readonly attachments: CgroupAttachment[] = [];
  pin(obj: { pin(path: string): void }, path: string): void {
    obj.pin(path);
    this.pins.push(path);
  }
  /** Undo: detach what this load attached, unpin what it pinned. */
  undo(): void {
    for (const a of this.attachments.reverse()) {
      try {
        a.detach();
      } catch {
        /* already gone */
      }
    }
    for (const p of this.pins.reverse()) {
      try {
        unpin(p);
      } catch {
        /* already gone */
      }
    }
  }
}

function openOrCreate(spec: MapSpec, path: string, created: Created): BpfMap {
  if (existsSync(path)) return BpfMap.fromPin(path);
  const m = BpfMap.create(spec);
  created.pin(m, path);
  return m;
}

/** A fresh trust trie filled with `cidrs` of one family. */
function buildTrust(spec: MapSpec, cidrs: Cidr[], family: 4 | 6): BpfMap {
  const m = BpfMap.create(spec);
  const Key = family === 4 ? Trust4Key : Trust6Key;
  for (const c of cidrs.filter((x) => x.family === family)) {
    m.update(Key.encode({ prefixlen: c.prefix, addr: Buffer.from(parseAddress(c.address).bytes) }), Buffer.from([1]));
  }
  return m;
}

function programSpecs(s: ReceiverSettings): Record<ProgramKey, ProgramSpec> {
  return {
    receiver: receiverProgram({ kinds: s.kinds, trust: s.trust.length > 0, syn: s.syn }),
    getpeer4: getpeername4Program(),
    getpeer6: getpeername6Program(),
    nat64: nat64LookupProgram(),
  };
}

/** Other receivers attached directly to `cgroup` (not the one in `pinDir`), as warnings naming their pin folder. */
function otherReceivers(cgroup: string, pinDir: string, ourIds: number[]): string[] {
  let ids: number[];
  try {
    ids = describeAttached(cgroup, "CGROUP_SOCK_OPS").filter((p) => p.name === "toa_receiver" && !ourIds.includes(p.id)).map((p) => p.id);
  } catch {
    return [];
  }
  if (ids.length === 0) return [];
  const where = findReceiverPinDirs()
    .filter((d) => resolve(d) !== resolve(pinDir))
    .filter((d) => {
      try {
        return readLoadedSettings(d)?.cgroup === cgroup;
      } catch {
        return false;
      }
    });
  return [
    `another toa receiver (program id ${ids.join(", ")}) is already attached to ${cgroup}${where.length ? `, pinned at ${where.join(", ")}` : ""}: both now run on every connection there. Keep one: \`toa unload --pin-dir ${where[0] ?? "DIR"}\``,
  ];
}

/**
 * Load (or reload) the receiver for `settings`. Everything is pinned under settings.pinDir; the
 * programs stay attached after this process exits. A reload swaps the programs in the pinned links;
 * a pinned link whose cgroup was removed (and maybe made again) is replaced by a new attachment,
 * keeping the socket-storage map. A load that fails midway removes what it made.
 */
export function loadReceiver(input: ReceiverSettings, options: { attachMode?: "link" | "multi" } = {}): LoadResult {
  const settings: ReceiverSettings = { ...input, cgroup: resolve(input.cgroup) };
  checkCgroupFolder(settings.cgroup);
  requireFeatures(RECEIVER_FEATURES);
  try {
    raiseMemlockLimit(); // needed before 5.11; harmless after
  } catch {
    /* not fatal: newer kernels account BPF memory to the cgroup */
  }
  const dirExisted = existsSync(settings.pinDir);
  ensurePinDir(settings.pinDir);
  const paths = pinPaths(settings.pinDir);
  const created = new Created();
  const opened: { close(): void }[] = [];
  const reattached: string[] = [];
  const warnings: string[] = [];
  let previous: StoredSettings | undefined;
  try {
    previous = readLoadedSettings(settings.pinDir);
    if (previous && previous.cgroup !== settings.cgroup) {
      throw new AgentError(
        "AGENT_ERR_PIN_DIR",
        `--cgroup: toa is already loaded on ${previous.cgroup} with pins in ${settings.pinDir}; run \`toa unload --pin-dir ${settings.pinDir}\` first, or use another --pin-dir`,
      );
    }
    for (const pin of RECEIVER_PINS) {
      const path = join(settings.pinDir, pin.name);
      const why = existsSync(path) ? pinMismatch(path, pin) : undefined;
      if (why) throw new AgentError("AGENT_ERR_PIN_DIR", `--pin-dir: ${path} ${why}: it is not toa's, so this folder is not a toa pin folder; give another --pin-dir`);
    }
    const peers = openOrCreate(mapSpecs.peers, paths.peers, created);
    const stats = openOrCreate(mapSpecs.stats, paths.stats, created);
    const settingsMap = openOrCreate(mapSpecs.settings, paths.settings, created);
    // Trust tries are rebuilt each load and swapped in with the programs: never a moment where a
    // half-filled list turns a trusted balancer away.
    const trust4 = buildTrust(mapSpecs.trust4, settings.trust, 4);
    const trust6 = buildTrust(mapSpecs.trust6, settings.trust, 6);
    const scratch = BpfMap.create(mapSpecs.scratch);
    opened.push(peers, stats, settingsMap, trust4, trust6, scratch);
    const maps = new Map<string, BpfMap>([
      [MapName.peers, peers],
      [MapName.stats, stats],
      [MapName.trust4, trust4],
      [MapName.trust6, trust6],
      [MapName.scratch, scratch],
    ]);
    const specs = programSpecs(settings);
    const programs = {} as Record<ProgramKey, Program>;
    for (const key of Object.keys(specs) as ProgramKey[]) {
      programs[key] = Program.load(specs[key], { maps });
      opened.push(programs[key]);
    }
    if (!previous) warnings.push(...otherReceivers(settings.cgroup, settings.pinDir, []));
    const programIds = Object.fromEntries(Object.entries(programs).map(([k, p]) => [k, p.info.id]));
    // Refused here, before anything is attached, rather than after (a trust list too long to record).
    encodeSettings({ version: 1, ...settings, mode: "multi", loadedAt: new Date().toISOString(), programs: programIds });

    let mode: "link" | "multi" = previous?.mode ?? "link";
    const id = cgroupId(settings.cgroup);
    const attachNew = (a: (typeof Attachments)[number], want?: "link" | "multi"): void => {
      // bpf_link unless told otherwise (tests force "multi", the path kernels before 5.7 take).
      const att: CgroupAttachment = attachCgroup(settings.cgroup, programs[a.program], a.attachType, want);
      created.attachments.push(att);
      opened.push(att);
      mode = att.mode;
      if (att.mode === "link") {
        unpin(paths.link(a.pin));
        created.pin(att, paths.link(a.pin));
      } else {
        unpin(paths.program(a.program));
        created.pin(programs[a.program], paths.program(a.program));
      }
    };
    for (const a of Attachments) {
      const linkPin = paths.link(a.pin);
      const progPin = paths.program(a.program);
      if (previous && existsSync(linkPin)) {
        const link = linkFromPin(linkPin, settings.cgroup, a.attachType);
        opened.push(link);
        // A link whose cgroup went away reports cgroup id 0 and refuses updates (ENOLINK); one made
        // for an earlier folder of the same path names the old id. Either way: attach anew.
        if (linkInfo(link.fd).cgroupId === id) link.replace(programs[a.program]);
        else {
          attachNew(a, "link");
          reattached.push(a.attachType);
        }
      } else if (previous && existsSync(progPin)) {
        const old = Program.fromPin(progPin);
        opened.push(old);
        if (!queryCgroup(settings.cgroup, a.attachType).programIds.includes(old.info.id)) {
          attachNew(a, "multi");
          reattached.push(a.attachType);
          continue;
        }
        // Multi attachment: swap with PROG_ATTACH + REPLACE, then re-pin the program.
        const cg = openCgroup(settings.cgroup);
        try {
          progAttach(cg, programs[a.program].fd, a.attachType, AttachFlag.ALLOW_MULTI | AttachFlag.REPLACE, old.fd);
        } finally {
          closeSync(cg);
        }
        unpin(progPin);
        programs[a.program].pin(progPin);
      } else {
        attachNew(a, options.attachMode);
      }
    }
    // The new programs now use the new tries: replace their pins.
    unpin(paths.trust4);
    created.pin(trust4, paths.trust4);
    unpin(paths.trust6);
    created.pin(trust6, paths.trust6);

    const stored: StoredSettings = {
      version: 1,
      ...settings,
      mode,
      loadedAt: new Date().toISOString(),
      programs: programIds,
    };
    settingsMap.update(Buffer.alloc(4), encodeSettings(stored));
    const action = previous ? "replaced" : "loaded";
    const trustText = settings.trust.length ? `trust ${settings.trust.map((c) => `${c.address}/${c.prefix}`).join(",")}` : "trust ANY SOURCE (no --trust)";
    const again = reattached.length ? ` (re-attached ${reattached.length} hook${reattached.length > 1 ? "s" : ""}: the cgroup had been removed)` : "";
    const line = `toa ${action} (eBPF): receiver + getpeername4/6 + NAT64 getsockopt on cgroup ${settings.cgroup}${again}, kinds ${settings.kinds.join(",")}, ${trustText}, pins ${settings.pinDir}`;
    const kernelLogWritten = kernelLog(line);
    return { action, settings: stored, line, kernelLogWritten, reattached, warnings };
  } catch (e) {
    // Leave nothing behind: what this load attached and pinned goes; a folder it made goes when empty.
    created.undo();
    if (!dirExisted) {
      try {
        rmdirSync(settings.pinDir);
      } catch {
        /* not empty: something else is in it now */
      }
    }
    throw e;
  } finally {
    // Pins and links hold the kernel objects now; our fds can go.
    for (const o of opened.reverse()) o.close();
  }
}

