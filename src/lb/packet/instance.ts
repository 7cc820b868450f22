/**
 * A packet-path instance in bpffs: the tables, the program and its tcx links pinned in one folder
 * (`packet.pinDir`, default /sys/fs/bpf/toa-lb/<instance>), so that the data path outlives the
 * process that made it, as LVS's connection table outlives ipvsadm. A later process adopts it: it
 * checks the layout recorded in nat_meta, opens the same maps, swaps its own program in.
 *
 *   <pinDir>/nat_meta      ARRAY[1] InstanceMeta: layout, sizes, program tag, times (written last:
 *                          a folder without it is a start that never finished)
 *   <pinDir>/nat_flows ... the seven maps of nat-layout.ts
 *   <pinDir>/toa_nat       the program attached now
 *   <pinDir>/tcx_<device>  tcx links (Linux 6.6+); on older kernels the clsact filters named
 *                          `toa:nat:<instance>` persist by themselves
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { BpfMap, codec, type ExpectedPin, MapType, removePins, unpin } from "../../bpf/index.js";
import { LinkType } from "../../bpf/object.js";
import { InstanceMeta, NAT_LAYOUT_VERSION, NAT_META_MAGIC, NAT_META_NAME, natLayoutHash, natMapSpecs, NatMapName, natMetaSpec } from "../../programs/nat-layout.js";
import { LbError } from "../errors.js";

export { defaultPinDir, filterName, INSTANCE_NAME, INSTANCE_PIN_ROOT, META_PIN } from "./instance-name.js";
export const PROGRAM_PIN = "toa_nat";
export const TCX_PIN_PREFIX = "tcx_";

export type Meta = ReturnType<typeof InstanceMeta.decode>;

const text = (b: Buffer): string => b.toString("utf8").replace(/\0.*$/s, "");
const padded = (s: string, n: number): Buffer => {
  const b = Buffer.alloc(n);
  b.write(s.slice(0, n), "utf8");
  return b;
};

/** What a person reads about an instance (status page, --check, `toa lb remove`). */
export interface InstanceFacts {
  name: string;
  pinDir: string;
  layoutVersion: number;
  layoutHash: string;
  createdMs: number;
  programTag: string;
  programSinceMs: number;
  adoptions: number;
  maxConnections: number;
  maxHalfOpen: number;
  build: string;
}

export function metaFacts(m: Meta, pinDir: string): InstanceFacts {
  return {
    name: text(m.instance),
    pinDir,
    layoutVersion: m.layoutVersion,
    layoutHash: m.layoutHash.toString("hex"),
    createdMs: Number(m.createdMs),
    programTag: m.programTag.toString("hex"),
    programSinceMs: Number(m.programSinceMs),
    adoptions: m.adoptions,
    maxConnections: m.maxConnections,
    maxHalfOpen: m.maxHalfOpen,
    build: text(m.build),
  };
}

/** The meta map of an instance folder, or undefined when there is no (finished) instance there. */
export function openMeta(pinDir: string): BpfMap<number, Buffer> | undefined {
  const path = join(pinDir, NAT_META_NAME);
  if (!existsSync(path)) return undefined;
  const m = BpfMap.fromPin<number, Buffer>(path, { key: codec.u32 });
  if (m.info.type !== MapType.ARRAY || m.info.keySize !== 4 || m.info.valueSize < 8 || m.info.name !== NAT_META_NAME) {
    m.close();
    throw new LbError("LB_ERR_INSTANCE", `${path} is not a toa lb instance record (map type ${m.info.type}, name "${m.info.name}", value ${m.info.valueSize} bytes); move it away or give packet.pinDir another folder`);
  }
  return m;
}

/** The record's raw bytes, checked for the magic number every build writes first. */
export function readMetaRaw(meta: BpfMap<number, Buffer>, pinDir: string): Buffer {
  const raw = meta.lookup(0);
  if (!raw || raw.readUInt32LE(0) !== NAT_META_MAGIC) throw new LbError("LB_ERR_INSTANCE", `${pinDir}/${NAT_META_NAME} holds no instance record (no magic number): give packet.pinDir another folder`);
  return raw;
}

/** Whether this build can use the tables an instance record describes; the refusal says what to do. */
export function layoutProblem(raw: Buffer, pinDir: string): string | undefined {
  const version = raw.readUInt32LE(4);
  const hash = raw.length >= 16 ? raw.subarray(8, 16).toString("hex") : "";
  const mine = natLayoutHash();
  if (raw.length === InstanceMeta.size && version === NAT_LAYOUT_VERSION && hash === mine) return undefined;
  return (
    `the instance pinned at ${pinDir} has table layout ${version} (${hash || "unknown"}), this build has layout ${NAT_LAYOUT_VERSION} (${mine}): ` +
    `it can't adopt those tables without misreading them. To move its traffic to this build: ` +
    `(1) drain and remove it: \`toa lb remove --pin-dir ${pinDir}\` (stops new connections, waits for open ones up to drainTimeout), then start this build; ` +
    `or (2) with no gap for new clients: give this build's config another \`instance:\` name, start it, then run \`toa lb remove --pin-dir ${pinDir}\`: ` +
    `the old program stops taking new connections and passes them on to the new one, while it carries its open connections to their end`
  );
}

/** The seven tables of a pinned instance, opened (the caller closes them). */
export function openPinnedMaps(pinDir: string): Record<keyof typeof NatMapName, BpfMap<any, any>> {
  const out: Partial<Record<keyof typeof NatMapName, BpfMap<any, any>>> = {};
  try {
    for (const [k, name] of Object.entries(NatMapName) as [keyof typeof NatMapName, string][]) {
      const path = join(pinDir, name);
      if (!existsSync(path)) throw new LbError("LB_ERR_INSTANCE", `${path} is missing: the instance at ${pinDir} is incomplete; remove it (\`toa lb remove --pin-dir ${pinDir}\`) and start again`);
      out[k] = BpfMap.fromPin(path);
    }
  } catch (e) {
    for (const m of Object.values(out)) m?.close();
    throw e;
  }
  return out as Record<keyof typeof NatMapName, BpfMap<any, any>>;
}

/** Create the instance record (not pinned yet). */
export function createMeta(): BpfMap<number, Buffer> {
  return BpfMap.create<number, Buffer>(natMetaSpec, { key: codec.u32 });
}

/** Build the record's value. */
export function metaValue(fields: { instance: string; createdMs: number; programTag: string; programSinceMs: number; adoptions: number; maxConnections: number; maxHalfOpen: number; build: string }): Buffer {
  return InstanceMeta.encode({
    magic: NAT_META_MAGIC,
    layoutVersion: NAT_LAYOUT_VERSION,
    layoutHash: Buffer.from(natLayoutHash(), "hex"),
    createdMs: BigInt(fields.createdMs),
    programTag: Buffer.from(fields.programTag.padEnd(16, "0").slice(0, 16), "hex"),
    programSinceMs: BigInt(fields.programSinceMs),
    adoptions: fields.adoptions,
    maxConnections: fields.maxConnections,
    maxHalfOpen: fields.maxHalfOpen,
    build: padded(fields.build, 16),
    instance: padded(fields.instance, 32),
  });
}

/** The tcx link pins in an instance folder, by device name. */
export function tcxPins(pinDir: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(pinDir)) return out;
  for (const n of readdirSync(pinDir)) if (n.startsWith(TCX_PIN_PREFIX)) out.set(n.slice(TCX_PIN_PREFIX.length), join(pinDir, n));
  return out;
}

/** Every pin an instance may have, each with what it must hold before it is removed. */
function expectedPins(pinDir: string): ExpectedPin[] {
  const specs = natMapSpecs(1, 1);
  return [
    ...Object.values(specs).map((s): ExpectedPin => ({ name: s.name, kind: "map", objectName: s.name, mapType: MapType[s.type] })),
    { name: NAT_META_NAME, kind: "map", objectName: NAT_META_NAME, mapType: MapType.ARRAY },
    { name: PROGRAM_PIN, kind: "program", objectName: PROGRAM_PIN },
    ...[...tcxPins(pinDir).keys()].map((dev): ExpectedPin => ({ name: `${TCX_PIN_PREFIX}${dev}`, kind: "link", linkType: LinkType.TCX })),
  ];
}

/**
 * Unpin everything of the instance (only pins that hold what they should), then its folder when it is
 * empty. Detaching comes first (the caller's): an unpinned tcx link whose last fd closes detaches
 * anyway, but maps and the program would live on in a netlink filter. Returns what was left and why.
 */
export function unpinInstance(pinDir: string): { removed: string[]; kept: string[] } {
  const r = removePins(pinDir, expectedPins(pinDir));
  return { removed: r.removed, kept: [...r.kept.map((k) => `${k.path}: ${k.reason}`), ...r.foreign.map((f) => `${f}: not one of the instance's pins`)] };
}

/** Remove one pin of the instance (the program pin before it is pinned again). */
export const unpinOne = (pinDir: string, name: string): boolean => unpin(join(pinDir, name));
