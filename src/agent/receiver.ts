/**
 * Building, loading, attaching and pinning the receiver (sock_ops), the rewriters (getpeername4/6)
 * and the NAT64 look-up (getsockopt) on a cgroup, and taking them away again.
 *
 * State lives in the kernel only: maps and links are pinned, so the command can exit and the
 * addresses stay. A second load with other settings swaps the programs inside the pinned links
 * (BPF_LINK_UPDATE): there is no moment without a program, and the socket storage map is reused,
 * so connections accepted before keep their addresses.
 */
import { closeSync, existsSync } from "node:fs";
import {
  attachCgroup,
  BpfError,
  BpfMap,
  CgroupAttachment,
  ensurePinDir,
  findCgroup2Mount,
  linkFromPin,
  type MapSpec,
  Program,
  type ProgramSpec,
  progAttach,
  progDetach,
  openCgroup,
  AttachFlag,
  raiseMemlockLimit,
  removePinDir,
  requireFeatures,
  unpin,
} from "../bpf/index.js";
import { mapSpecs, MapName, TRUST4_KEY_SIZE, TRUST6_KEY_SIZE } from "../programs/layout.js";
import { receiverProgram } from "../programs/receiver.js";
import { getpeername4Program, getpeername6Program } from "../programs/rewriter.js";
import { nat64LookupProgram } from "../programs/nat64.js";
import { Attachments, type ProgramKey, pinPaths } from "./pins.js";
import { addressBytes, type Cidr, decodeSettings, encodeSettings, type ReceiverSettings, type StoredSettings } from "./settings.js";
import { kernelLog } from "./kmsg.js";
import { resolve } from "node:path";

/** Features the receiver needs, each probed by trying it. */
export const RECEIVER_FEATURES = ["bpf-syscall", "cgroup2", "sk-storage", "lpm-trie", "sock-ops", "sock-ops-hdr-opt", "getpeername-hooks", "cgroup-sockopt"];

/** The cgroup v2 root (the whole host), the default attach point. */
export function defaultCgroup(): string {
  return findCgroup2Mount();
}

/** Result of a load. */
export interface LoadResult {
  action: "loaded" | "replaced";
  settings: StoredSettings;
  line: string;
  kernelLogWritten: boolean;
}

function openOrCreate(spec: MapSpec, path: string): BpfMap {
  if (existsSync(path)) return BpfMap.fromPin(path);
  const m = BpfMap.create(spec);
  m.pin(path);
  return m;
}

/** A fresh trust trie filled with `cidrs` of one family. */
function buildTrust(spec: MapSpec, cidrs: Cidr[], family: 4 | 6): BpfMap {
  const m = BpfMap.create(spec);
  const keySize = family === 4 ? TRUST4_KEY_SIZE : TRUST6_KEY_SIZE;
  for (const c of cidrs.filter((x) => x.family === family)) {
    const key = Buffer.alloc(keySize);
    key.writeUInt32LE(c.prefix, 0);
    addressBytes(c.address).copy(key, 4);
    m.update(key, Buffer.from([1]));
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
 * Load (or reload) the receiver for `settings`. Everything is pinned under settings.pinDir; the
 * programs stay attached after this process exits.
 */
export function loadReceiver(input: ReceiverSettings, options: { attachMode?: "link" | "multi" } = {}): LoadResult {
  const settings: ReceiverSettings = { ...input, cgroup: resolve(input.cgroup) };
  requireFeatures(RECEIVER_FEATURES);
  try {
    raiseMemlockLimit(); // needed before 5.11; harmless after
  } catch {
    /* not fatal: newer kernels account BPF memory to the cgroup */
  }
  ensurePinDir(settings.pinDir);
  const paths = pinPaths(settings.pinDir);
  const previous = readLoadedSettings(settings.pinDir);
  if (previous && previous.cgroup !== settings.cgroup) {
    throw new BpfError(
      "BPF_ERR_INVALID_ARG",
      `--cgroup: toa is already loaded on ${previous.cgroup} with pins in ${settings.pinDir}; run \`toa unload --pin-dir ${settings.pinDir}\` first, or use another --pin-dir`,
    );
  }
  const opened: { close(): void }[] = [];
  try {
    const peers = openOrCreate(mapSpecs.peers, paths.peers);
    const stats = openOrCreate(mapSpecs.stats, paths.stats);
    const settingsMap = openOrCreate(mapSpecs.settings, paths.settings);
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

    let mode: "link" | "multi" = previous?.mode ?? "link";
    for (const a of Attachments) {
      const linkPin = paths.link(a.pin);
      const progPin = paths.program(a.program);
      if (previous && existsSync(linkPin)) {
        const link = linkFromPin(linkPin, settings.cgroup, a.attachType);
        opened.push(link);
        link.replace(programs[a.program]);
      } else if (previous && existsSync(progPin)) {
        // Multi attachment: swap with PROG_ATTACH + REPLACE, then re-pin the program.
        const old = Program.fromPin(progPin);
        opened.push(old);
        const cg = openCgroup(settings.cgroup);
        try {
          progAttach(cg, programs[a.program].fd, a.attachType, AttachFlag.ALLOW_MULTI | AttachFlag.REPLACE, old.fd);
        } finally {
          closeSync(cg);
        }
        unpin(progPin);
        programs[a.program].pin(progPin);
      } else {
        // bpf_link unless told otherwise (tests force "multi", the path kernels before 5.7 take).
        const att: CgroupAttachment = attachCgroup(settings.cgroup, programs[a.program], a.attachType, options.attachMode);
        opened.push(att);
        mode = att.mode;
        if (att.mode === "link") att.pin(linkPin);
        else programs[a.program].pin(progPin);
      }
    }
    // The new programs now use the new tries: replace their pins.
    unpin(paths.trust4);
    trust4.pin(paths.trust4);
    unpin(paths.trust6);
    trust6.pin(paths.trust6);

    const stored: StoredSettings = {
      version: 1,
      ...settings,
      mode,
      loadedAt: new Date().toISOString(),
      programs: Object.fromEntries(Object.entries(programs).map(([k, p]) => [k, p.info.id])),
    };
    settingsMap.update(Buffer.alloc(4), encodeSettings(stored));
    const action = previous ? "replaced" : "loaded";
    const trustText = settings.trust.length ? `trust ${settings.trust.map((c) => `${c.address}/${c.prefix}`).join(",")}` : "trust ANY SOURCE (no --trust)";
    const line = `toa ${action} (eBPF): receiver + getpeername4/6 + NAT64 getsockopt on cgroup ${settings.cgroup}, kinds ${settings.kinds.join(",")}, ${trustText}, pins ${settings.pinDir}`;
    const kernelLogWritten = kernelLog(line);
    return { action, settings: stored, line, kernelLogWritten };
  } finally {
    // Pins and links hold the kernel objects now; our fds can go.
    for (const o of opened.reverse()) o.close();
  }
}

/** What unload removed. */
export interface UnloadResult {
  detached: string[];
  unpinned: string[];
  wasLoaded: boolean;
}

/** Detach and unpin everything a load made at `pinDir`. Idempotent. */
export function unloadReceiver(pinDir: string): UnloadResult {
  const paths = pinPaths(pinDir);
  const previous = existsSync(pinDir) ? readLoadedSettings(pinDir) : undefined;
  const detached: string[] = [];
  for (const a of Attachments) {
    const linkPin = paths.link(a.pin);
    const progPin = paths.program(a.program);
    if (existsSync(linkPin)) {
      const link = linkFromPin(linkPin, previous?.cgroup ?? "?", a.attachType);
      link.detach();
      detached.push(a.attachType);
    } else if (existsSync(progPin) && previous) {
      const p = Program.fromPin(progPin);
      const cg = openCgroup(previous.cgroup);
      try {
        progDetach(cg, p.fd, a.attachType);
        detached.push(a.attachType);
      } catch {
        /* already detached */
      } finally {
        closeSync(cg);
        p.close();
      }
    }
  }
  const unpinned = removePinDir(pinDir);
  if (detached.length) kernelLog(`toa unloaded (eBPF): detached from ${previous?.cgroup ?? "cgroup"}`);
  return { detached, unpinned, wasLoaded: detached.length > 0 || unpinned.length > 0 };
}
