/**
 * The instance's program on its devices: attach it where nothing of the instance is, swap it in
 * where an earlier process left one (BPF_LINK_UPDATE on a pinned tcx link; a filter replace at the
 * same handle and priority on clsact), so a restart or an upgrade never leaves a device without the
 * program, and remove the instance's attachments from devices it no longer covers.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { attachTc, ifindexOf, type Program, TcAttachment, unpin } from "../../bpf/index.js";
import { tcxPins, TCX_PIN_PREFIX } from "./instance.js";

const run = promisify(execFile);

/** What {@link attachInstance} did per device. */
export interface AttachResult {
  attachments: TcAttachment[];
  /** Devices whose earlier program was swapped for this one. */
  swapped: string[];
  /** Devices attached afresh. */
  created: string[];
  /** Devices the instance no longer covers, whose attachment was removed. */
  removed: string[];
}

/** The devices of this network namespace (lo included), or only those that are up. */
export async function allDevices(o: { up?: boolean } = {}): Promise<{ name: string; index: number; flags: string[] }[]> {
  const { stdout } = await run("ip", ["-j", "link", "show", ...(o.up ? ["up"] : [])]);
  // `ip -j link show up` prints an empty object for each link the filter leaves out.
  const links = JSON.parse(stdout) as { ifname?: string; ifindex?: number; flags?: string[] }[];
  return links.filter((l) => l.ifname && l.ifindex).map((l) => ({ name: l.ifname!, index: l.ifindex!, flags: l.flags ?? [] }));
}

/**
 * Put `program` on the ingress of every device in `devices`, adopting what the instance has there.
 * On a failure part way, what this call attached afresh is detached again and the error thrown;
 * devices it already swapped keep the new program (the old one's tables are the same).
 */
export async function attachInstance(devices: readonly string[], program: Program, pinDir: string, name: string): Promise<AttachResult> {
  const pins = tcxPins(pinDir);
  const out: AttachResult = { attachments: [], swapped: [], created: [], removed: [] };
  const fresh: TcAttachment[] = [];
  try {
    for (const dev of devices) {
      const ifindex = ifindexOf(dev);
      const pin = pins.get(dev);
      let a: TcAttachment | undefined;
      if (pin) {
        try {
          a = TcAttachment.fromPinnedLink(pin);
          if (a.ifindex !== ifindex) {
            // The name now belongs to another device (the old one went, a new one took its name).
            a.release();
            a = undefined;
          }
        } catch {
          a = undefined; // defunct (its device went away) or not a tcx link: replaced below
        }
        if (!a) unpin(pin);
      }
      a ??= TcAttachment.findFilter(ifindex, name);
      if (a) {
        a.replace(program);
        out.swapped.push(dev);
      } else {
        a = attachTc(ifindex, program, "ingress", { name });
        fresh.push(a);
        if (a.mode === "tcx") a.pin(join(pinDir, `${TCX_PIN_PREFIX}${dev}`));
        out.created.push(dev);
      }
      out.attachments.push(a);
    }
  } catch (e) {
    for (const a of fresh) {
      try {
        a.detach();
      } catch {
        // already gone with its device
      }
    }
    for (const a of out.attachments) if (!fresh.includes(a)) a.release();
    throw e;
  }
  out.removed = await detachElsewhere(devices, pinDir, name);
  return out;
}

/**
 * Detach the instance from every device not in `keep`: its tcx link pins and its named filters.
 * Filters of other names (another instance, another tool) are never touched.
 */
export async function detachElsewhere(keep: readonly string[], pinDir: string, name: string): Promise<string[]> {
  const removed: string[] = [];
  for (const [dev, pin] of tcxPins(pinDir)) {
    if (keep.includes(dev)) continue;
    try {
      TcAttachment.fromPinnedLink(pin).detach();
    } catch {
      // defunct: its device is gone, so is the attachment
    }
    unpin(pin);
    removed.push(dev);
  }
  for (const d of await allDevices()) {
    if (keep.includes(d.name)) continue;
    // A crash loop of an old build could have left more than one; a filter that won't go stops it.
    for (let i = 0; i < 8; i++) {
      const f = TcAttachment.findFilter(d.index, name);
      if (!f) break;
      f.detach();
      if (!removed.includes(d.name)) removed.push(d.name);
    }
  }
  return removed;
}
