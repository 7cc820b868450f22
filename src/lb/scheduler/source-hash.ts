/**
 * Source-address hash on a consistent-hash ring (Karger et al. 1997; the ketama layout): each backend
 * owns `VNODES_PER_WEIGHT × weight` points; a client goes to the first point clockwise of the hash of
 * its address. Adding or removing one backend moves only ~1/n of the clients; a backend going down
 * moves only its own clients (the walk steps over it), and they come back when it is up again.
 */
import { eligible, type Scheduler, type SchedulerBackend } from "./types.js";

/** Points per unit of weight (HAProxy's `hash-type consistent` uses 16 per weight unit × 10 ≈ 160). */
export const VNODES_PER_WEIGHT = 160;

/** FNV-1a 32-bit followed by murmur3's fmix32 finalizer, so close inputs land far apart on the ring. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class SourceHash<B extends SchedulerBackend> implements Scheduler<B> {
  private readonly points: Uint32Array;
  private readonly owners: B[];

  constructor(backends: readonly B[]) {
    const ring: { point: number; owner: B }[] = [];
    for (const b of backends) {
      for (let v = 0; v < VNODES_PER_WEIGHT * b.weight; v++) ring.push({ point: hash32(`${b.id}#${v}`), owner: b });
    }
    ring.sort((x, y) => x.point - y.point);
    this.points = Uint32Array.from(ring, (r) => r.point);
    this.owners = ring.map((r) => r.owner);
  }

  pick(clientAddress: string, skip?: ReadonlySet<B>): B | undefined {
    const n = this.points.length;
    if (n === 0) return undefined;
    const h = hash32(clientAddress);
    // First point >= h (binary search), wrapping around.
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    const seen = new Set<B>();
    for (let i = 0; i < n; i++) {
      const b = this.owners[(lo + i) % n];
      if (seen.has(b)) continue;
      if (eligible(b, skip)) return b;
      seen.add(b);
    }
    return undefined;
  }
}
