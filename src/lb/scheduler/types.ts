/** What a scheduler sees of a backend, and what every scheduler implements. */

/** A backend as seen by a scheduler: fake ones in tests, {@link Backend} at run time. */
export interface SchedulerBackend {
  readonly id: string;
  readonly weight: number;
  /** Connections open right now (least-connections). */
  readonly active: number;
  /** False when the health check says down: the backend gets no new connections. */
  readonly healthy: boolean;
}

/**
 * Picks the backend of each new connection. Built once per backend list (a reload builds a new one);
 * health changes need no rebuild: unhealthy backends and those in `skip` (already tried for this
 * client) are passed over.
 */
export interface Scheduler<B extends SchedulerBackend = SchedulerBackend> {
  pick(clientAddress: string, skip?: ReadonlySet<B>): B | undefined;
}

/** True when `b` may take this connection. */
export function eligible<B extends SchedulerBackend>(b: B, skip?: ReadonlySet<B>): boolean {
  return b.healthy && !(skip?.has(b) ?? false);
}
