/** The schedulers by config name. */
import type { SchedulerName } from "../config.js";
import { LeastConnections } from "./least-connections.js";
import { RoundRobin } from "./round-robin.js";
import { SourceHash } from "./source-hash.js";
import type { Scheduler, SchedulerBackend } from "./types.js";
import { WeightedRoundRobin } from "./weighted-round-robin.js";

export type { Scheduler, SchedulerBackend } from "./types.js";
export { RoundRobin, WeightedRoundRobin, LeastConnections, SourceHash };

/** Build the scheduler a pool's config names, over `backends`. */
export function createScheduler<B extends SchedulerBackend>(name: SchedulerName, backends: readonly B[]): Scheduler<B> {
  switch (name) {
    case "round-robin":
      return new RoundRobin(backends);
    case "weighted-round-robin":
      return new WeightedRoundRobin(backends);
    case "least-connections":
      return new LeastConnections(backends);
    case "source-hash":
      return new SourceHash(backends);
  }
}
