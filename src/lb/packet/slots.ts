/**
 * Slot tables of the packet data path: the {@link SLOTS} entries of nat_slots for one service, each a
 * backend index. The tc program picks a slot per new connection (round robin: in turn; source hash:
 * hash of the client address) among the first `filled`, so weights live in how often a backend
 * appears. Pure: no kernel, no I/O.
 *
 *   round-robin, weighted-round-robin  counts proportional to weight (round-robin: weight 1 each),
 *                                      spread by smooth weighted round robin so a heavy backend's
 *                                      slots alternate with the others' (nginx, 52327e0627f4)
 *   source-hash                        Maglev (Eisenbud et al., NSDI 2016, §3.4): each backend walks
 *                                      its own permutation of the slots, taking the first free one
 */
import type { SchedulerName } from "../config.js";
import { LbError } from "../errors.js";
import { hash32 } from "../scheduler/source-hash.js";
import { MAX_BACKENDS, NatScheduler, SLOTS } from "../../programs/nat-layout.js";

/** What the slot table needs of a backend. */
export interface SlotBackend {
  /** Index in nat_backends: the value written into the slots. */
  readonly index: number;
  /** Stable identity (`addr:port`): source hash permutations derive from it. */
  readonly id: string;
  /** 0 = no new connections; otherwise the share relative to the others. */
  readonly weight: number;
  readonly healthy: boolean;
}

/** Schedulers the packet path can run: least-connections needs per-connection state the program lacks. */
export type PacketSchedulerName = Exclude<SchedulerName, "least-connections">;
export const PACKET_SCHEDULERS: readonly PacketSchedulerName[] = ["round-robin", "weighted-round-robin", "source-hash"];

/** The nat_service `scheduler` byte for a config scheduler name; throws for one the packet path cannot run. */
export function natScheduler(name: SchedulerName): number {
  switch (name) {
    case "round-robin":
    case "weighted-round-robin":
      return NatScheduler.ROUND_ROBIN;
    case "source-hash":
      return NatScheduler.SOURCE_HASH;
    default:
      throw new LbError("LB_ERR_CONFIG", `scheduler ${name} is not supported on the packet data path; use one of ${PACKET_SCHEDULERS.join(", ")}`);
  }
}

/** A service's row of nat_slots. */
export interface SlotTable {
  /** {@link SLOTS} backend indices; entries from `filled` on repeat the start (see {@link fillSlots}). */
  readonly slots: Uint32Array;
  /** Slots the program chooses among (nat_service.slots); 0 when no backend is healthy. */
  readonly filled: number;
}

/**
 * Fill a service's slots from its backends (only healthy ones with weight > 0 get slots).
 *
 * Round robin fills `k × W` slots (W the healthy weights' sum after dividing by their gcd, k =
 * ⌊256/W⌋) so shares are exact, e.g. 255 slots for 3 equal backends; above 256 it fills all 256
 * with shares rounded by largest remainder. Source hash always fills 256: the program takes
 * hash % filled, and a count that moved with health would remap every client.
 *
 * Entries past `filled` repeat the first ones, so a program that read a stale, larger `filled`
 * during an update still lands on a healthy backend.
 */
export function fillSlots(scheduler: SchedulerName, backends: readonly SlotBackend[]): SlotTable {
  const kind = natScheduler(scheduler);
  for (const [i, b] of backends.entries()) checkBackend(b, `backends[${i}]`);
  const slots = new Uint32Array(SLOTS);
  let filled: number;
  if (kind === NatScheduler.SOURCE_HASH) filled = maglev(backends, slots);
  else filled = interleaved(scheduler === "round-robin", backends, slots);
  for (let i = filled; filled > 0 && i < SLOTS; i++) slots[i] = slots[i - filled];
  return { slots, filled };
}

function checkBackend(b: SlotBackend, path: string): void {
  const bad = (what: string) => new LbError("LB_ERR_CONFIG", `slot table: ${path}${b.id ? ` (${b.id})` : ""}: ${what}`);
  if (!Number.isInteger(b.index) || b.index < 0 || b.index >= MAX_BACKENDS) throw bad(`index must be an integer 0..${MAX_BACKENDS - 1}, got ${b.index}`);
  if (!Number.isInteger(b.weight) || b.weight < 0) throw bad(`weight must be an integer >= 0, got ${b.weight}`);
  if (typeof b.id !== "string" || b.id === "") throw bad("id must be a non-empty string");
}

/** Round robin: exact shares, interleaved. */
function interleaved(ignoreWeights: boolean, backends: readonly SlotBackend[], out: Uint32Array): number {
  const up = backends.filter((b) => b.healthy && b.weight > 0);
  if (up.length === 0) return 0;
  const weights = up.map((b) => (ignoreWeights ? 1 : b.weight));
  const g = weights.reduce(gcd);
  const reduced = weights.map((w) => w / g);
  const total = reduced.reduce((a, b) => a + b, 0);
  const counts = total <= SLOTS ? reduced.map((w) => w * Math.floor(SLOTS / total)) : apportion(reduced, SLOTS);
  const order = smoothOrder(counts);
  order.forEach((who, slot) => (out[slot] = up[who].index));
  return order.length;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * Split `total` seats by `weights` (largest remainder, Hamilton's method): each share is its exact
 * quota rounded down or up, and they sum to `total`. Ties go to the earlier weight.
 */
export function apportion(weights: readonly number[], total: number): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum === 0) return weights.map(() => 0);
  // Integers throughout: weight × total ≤ 2^53 for any realistic input.
  const counts = weights.map((w) => Math.floor((w * total) / sum));
  let left = total - counts.reduce((a, b) => a + b, 0);
  const byRemainder = weights.map((w, i) => ({ i, r: (w * total) % sum })).sort((x, y) => y.r - x.r || x.i - y.i);
  for (const { i } of byRemainder) {
    if (left === 0) break;
    counts[i]++;
    left--;
  }
  return counts;
}

/**
 * Smooth weighted round robin over one full cycle: the position picked at each of Σcounts turns,
 * position i exactly counts[i] times, a heavy one's turns spread between the others' (5,1,1 gives
 * 0 0 1 0 2 0 0). Ties go to the earlier position.
 */
export function smoothOrder(counts: readonly number[]): number[] {
  const total = counts.reduce((a, b) => a + b, 0);
  const current = counts.map(() => 0);
  const order: number[] = [];
  for (let turn = 0; turn < total; turn++) {
    let best = -1;
    for (let i = 0; i < counts.length; i++) {
      if (counts[i] === 0) continue;
      current[i] += counts[i];
      if (best < 0 || current[i] > current[best]) best = i;
    }
    current[best] -= total;
    order.push(best);
  }
  return order;
}

/**
 * The slot order a backend prefers: slot j of its walk is (offset + j × skip) mod 256. The skip is
 * odd, hence coprime with 256, so the walk visits every slot once (Maglev uses a prime table size
 * for the same reason; 256 is fixed by the layout).
 */
export function maglevPermutation(id: string): { offset: number; skip: number } {
  return { offset: hash32(`${id}#offset`) % SLOTS, skip: (hash32(`${id}#skip`) % (SLOTS / 2)) * 2 + 1 };
}

/**
 * Source hash: a Maglev table over every configured backend (healthy or not), then the slots of the
 * unhealthy ones handed to healthy ones by the same walk. A backend going down so moves exactly
 * its own slots, and they come back when it is up; adding or removing a backend in the config
 * moves a few more (Maglev's near-minimal disruption). Backends are taken in id order, so the
 * table does not depend on the order of the config.
 */
function maglev(backends: readonly SlotBackend[], out: Uint32Array): number {
  const all = backends.filter((b) => b.weight > 0).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (!all.some((b) => b.healthy)) return 0;
  const walks = all.map((b) => ({ ...maglevPermutation(b.id), next: 0 }));
  const owner = new Int32Array(SLOTS).fill(-1);
  const take = (who: number): void => {
    const w = walks[who];
    for (;;) {
      const slot = (w.offset + w.next * w.skip) % SLOTS;
      w.next++;
      if (owner[slot] < 0) {
        owner[slot] = who;
        return;
      }
    }
  };
  const base = apportion(all.map((b) => b.weight), SLOTS);
  for (const who of smoothOrder(base)) take(who);

  if (all.some((b) => !b.healthy)) {
    // Free the unhealthy backends' slots; healthy ones top up to their share among the healthy
    // (never below what they hold: with largest remainder a share can, rarely, shrink by one).
    let freed = 0;
    for (let s = 0; s < SLOTS; s++) {
      if (!all[owner[s]].healthy) {
        owner[s] = -1;
        freed++;
      }
    }
    const held = all.map(() => 0);
    for (let s = 0; s < SLOTS; s++) if (owner[s] >= 0) held[owner[s]]++;
    const share = apportion(all.map((b) => (b.healthy ? b.weight : 0)), SLOTS);
    const extra = share.map((n, i) => Math.max(0, n - held[i]));
    for (const w of walks) w.next = 0;
    for (const who of smoothOrder(extra)) {
      if (freed === 0) break;
      take(who);
      freed--;
    }
  }
  for (let s = 0; s < SLOTS; s++) out[s] = all[owner[s]].index;
  return SLOTS;
}
