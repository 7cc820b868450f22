/**
 * Smooth weighted round robin, as nginx does it (ngx_http_upstream_get_peer, commit 52327e0627f4,
 * 2012): every pick adds each eligible backend's weight to its `current`, takes the largest and
 * subtracts the total from it. Weights 5,1,1 give a a b a c a a, not a a a a a b c: a heavy backend's
 * turns are spread out.
 */
import { eligible, type Scheduler, type SchedulerBackend } from "./types.js";

export class WeightedRoundRobin<B extends SchedulerBackend> implements Scheduler<B> {
  private readonly current: Map<B, number>;
  constructor(private readonly backends: readonly B[]) {
    this.current = new Map(backends.map((b) => [b, 0]));
  }

  pick(_client: string, skip?: ReadonlySet<B>): B | undefined {
    let total = 0;
    let best: B | undefined;
    let bestCurrent = -Infinity;
    for (const b of this.backends) {
      if (!eligible(b, skip)) continue;
      const cur = this.current.get(b)! + b.weight;
      this.current.set(b, cur);
      total += b.weight;
      if (cur > bestCurrent) {
        best = b;
        bestCurrent = cur;
      }
    }
    if (best) this.current.set(best, bestCurrent - total);
    return best;
  }
}
