/** Round robin: each eligible backend in turn, weights ignored. */
import { eligible, type Scheduler, type SchedulerBackend } from "./types.js";

/** Plain rotation over the list; ineligible backends are stepped over. */
export class RoundRobin<B extends SchedulerBackend> implements Scheduler<B> {
  private next = 0;
  constructor(private readonly backends: readonly B[]) {}

  pick(_client: string, skip?: ReadonlySet<B>): B | undefined {
    const n = this.backends.length;
    for (let i = 0; i < n; i++) {
      const b = this.backends[(this.next + i) % n];
      if (eligible(b, skip)) {
        this.next = (this.next + i + 1) % n;
        return b;
      }
    }
    return undefined;
  }
}
