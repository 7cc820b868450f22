/**
 * Least connections, weighted: the eligible backend with the fewest open connections per unit of
 * weight (active/weight; compared as active_a*weight_b < active_b*weight_a to stay in integers).
 * Ties go round robin so equal backends share a burst of new connections.
 */
import { eligible, type Scheduler, type SchedulerBackend } from "./types.js";

export class LeastConnections<B extends SchedulerBackend> implements Scheduler<B> {
  private next = 0;
  constructor(private readonly backends: readonly B[]) {}

  pick(_client: string, skip?: ReadonlySet<B>): B | undefined {
    const n = this.backends.length;
    let best: B | undefined;
    let bestAt = 0;
    for (let i = 0; i < n; i++) {
      const at = (this.next + i) % n;
      const b = this.backends[at];
      if (!eligible(b, skip)) continue;
      if (!best || b.active * best.weight < best.active * b.weight) {
        best = b;
        bestAt = at;
      }
    }
    if (best) this.next = (bestAt + 1) % n;
    return best;
  }
}
