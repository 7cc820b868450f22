/**
 * `toa lb remove`: take a packet-path instance away, explicitly. New SYNs stop at once (the services
 * are deleted: the program passes them on, and the stack refuses them), open connections are
 * followed until they end or the drain deadline passes, then every attachment and pin of the
 * instance goes — its own only: other instances' filters, links and pins are never touched.
 *
 * Works without the process that served it (it must not run: a live one would put its services
 * back), and on an instance of another layout: then nothing can be swept, so it waits until the flow
 * table is empty or the deadline passes.
 */
import { existsSync, readdirSync, rmdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { BpfMap } from "../../bpf/index.js";
import { InstanceMeta, NAT_META_NAME, NatMapName } from "../../programs/nat-layout.js";
import { LbError } from "../errors.js";
import { detachElsewhere } from "./attach.js";
import { type SweepTimeouts } from "./flows.js";
import { removeClaim } from "../claims.js";
import { defaultPinDir, filterName, INSTANCE_PIN_ROOT, layoutProblem, metaFacts, openMeta, openPinnedMaps, readMetaRaw, unpinInstance } from "./instance.js";
import { NatTables } from "./tables.js";

export interface RemoveOptions {
  pinDir: string;
  /** How long open connections may take to end (the config's drainTimeout). */
  drainMs: number;
  /** Expiry used while draining (the listeners' timeouts; the defaults without a config). */
  timeouts: SweepTimeouts;
  /** Progress, about once a second. */
  progress?: (line: string) => void;
  /** How often the tables are looked at. */
  pollMs?: number;
}

export interface RemoveReport {
  instance: string;
  pinDir: string;
  /** Whether there was an instance at all (false: nothing to do, as a second run finds). */
  found: boolean;
  /** Connections open when new ones were stopped, and those cut by the deadline. */
  openAtStart: number;
  cutAtDeadline: number;
  drainMs: number;
  /** Devices the instance was detached from. */
  detached: string[];
  removedPins: string[];
  /** Pins left in place (not the object they should hold, or another tool's). */
  kept: string[];
  /** Set when the instance had another build's layout: drained by the table's emptiness only. */
  foreignLayout?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A drain under way: new SYNs already stopped; `count` says how many connections are still open. */
interface Drain {
  count(): number;
  /** How it counts, for the progress line ("" for the usual way). */
  how: string;
  close(): void;
}

/** This build's layout: delete the services, then sweep, as the balancer itself does. */
function stopBySweep(pinDir: string, timeouts: SweepTimeouts): Drain {
  const tables = NatTables.open(openPinnedMaps(pinDir), { own: true });
  try {
    tables.apply([]); // new SYNs pass on (refused by the stack); backends stay while flows name them
  } catch (e) {
    tables.close();
    throw e;
  }
  return {
    count: () => [...tables.sweep(timeouts).active.values()].reduce((a, b) => a + b, 0),
    how: "",
    close: () => tables.close(),
  };
}

/** Another build's layout: nothing can be read but keys, so delete every service and wait for an empty flow table. */
function stopByEmptiness(pinDir: string): Drain {
  const services = BpfMap.fromPin(join(pinDir, NatMapName.services));
  const flows = BpfMap.fromPin(join(pinDir, NatMapName.flows));
  for (const k of [...services.keys()]) services.delete(k);
  services.close();
  return {
    count: () => Math.ceil([...flows.keys()].length / 2), // two entries per connection
    how: " (another build's layout: waiting for its flow table to empty)",
    close: () => flows.close(),
  };
}

export async function removeInstance(o: RemoveOptions): Promise<RemoveReport> {
  const { pinDir } = o;
  const pollMs = o.pollMs ?? 200;
  const base = { pinDir, found: false, openAtStart: 0, cutAtDeadline: 0, drainMs: 0, detached: [] as string[], removedPins: [] as string[], kept: [] as string[] };
  if (!existsSync(pinDir)) return { instance: "", ...base };
  const meta = openMeta(pinDir);
  // An unfinished start (pins, no record): nothing serves through it; unpin what is there.
  if (!meta) {
    const r = unpinInstance(pinDir);
    return { instance: "", ...base, found: r.removed.length > 0, removedPins: r.removed, kept: r.kept };
  }
  const raw = readMetaRaw(meta, pinDir);
  meta.close();
  const foreignLayout = layoutProblem(raw, pinDir);
  // Another build's record may be laid out otherwise: its name is then taken from the folder.
  const instance = foreignLayout ? pinDir.split("/").pop()! : metaFacts(InstanceMeta.decode(raw), pinDir).name;
  // New SYNs stop here; then what is still open is counted until it ends or the deadline passes.
  const drain = foreignLayout ? stopByEmptiness(pinDir) : stopBySweep(pinDir, o.timeouts);
  const t0 = Date.now();
  let openAtStart = 0;
  let open = 0;
  try {
    open = openAtStart = drain.count();
    let said = 0;
    while (open > 0 && Date.now() - t0 < o.drainMs) {
      if (Date.now() - said >= 1000) {
        o.progress?.(`draining instance ${instance}${drain.how}: ${open} connection(s) open, ${Math.ceil((o.drainMs - (Date.now() - t0)) / 1000)} s left`);
        said = Date.now();
      }
      await sleep(pollMs);
      open = drain.count();
    }
  } finally {
    drain.close();
  }
  const detached = await detachElsewhere([], pinDir, filterName(instance));
  const r = unpinInstance(pinDir);
  // The shared parent (/sys/fs/bpf/toa-lb) goes with its last instance.
  if (dirname(pinDir) === INSTANCE_PIN_ROOT) rmdirIfEmpty(INSTANCE_PIN_ROOT);
  if (existsSync(join(pinDir, NAT_META_NAME))) throw new LbError("LB_ERR_INSTANCE", `${pinDir}: the instance record could not be removed (${r.kept.join("; ")})`);
  return { instance, ...base, found: true, openAtStart, cutAtDeadline: open, drainMs: Date.now() - t0, detached, removedPins: r.removed, kept: r.kept, ...(foreignLayout ? { foreignLayout } : {}) };
}

function rmdirIfEmpty(dir: string): void {
  try {
    if (readdirSync(dir).length === 0) rmdirSync(dir);
  } catch {
    // another instance made something there meanwhile, or it is gone already
  }
}

/**
 * Take the instance named `instance` (at its default folder) away at once, cutting what is open, and
 * forget its claim: the end of a demo or a test, whose balancer's instance must not outlive it.
 */
export async function removeInstanceNow(instance: string): Promise<RemoveReport> {
  try {
    return await removeInstance({ pinDir: defaultPinDir(instance), drainMs: 0, timeouts: { connectMs: 1000, synMs: 1000, idleMs: 1000, closedMs: 0 } });
  } finally {
    removeClaim(instance);
  }
}
