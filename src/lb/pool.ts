/**
 * A pool at run time: its backends, scheduler, health checker, local addresses and port allocators.
 * {@link Pool.update} applies a reloaded config in place: backends with the same `addr:port` keep their
 * object (open connections, health, counters); the scheduler is rebuilt over the new list.
 */
import type { Logger } from "pino";
import { Backend } from "./backend.js";
import type { PoolConfig } from "./config.js";
import { HealthChecker } from "./health.js";
import { LocalAddressPicker } from "./local-address.js";
import { PortAllocators } from "./port-allocator.js";
import { createScheduler, type Scheduler } from "./scheduler/index.js";

export class Pool {
  backends: Backend[] = [];
  private scheduler!: Scheduler<Backend>;
  private checker: HealthChecker | null = null;
  localAddresses!: LocalAddressPicker;
  ports!: PortAllocators;
  /** Called when a backend goes UP or DOWN (the packet path rewrites its slot tables at once). */
  onHealthChange: (() => void) | null = null;

  constructor(
    public config: PoolConfig,
    private readonly log: Logger,
  ) {
    this.update(config);
  }

  get name(): string {
    return this.config.name;
  }

  /** Apply a (re)loaded config. */
  update(config: PoolConfig): void {
    const old = new Map(this.backends.map((b) => [b.id, b]));
    const rangeChanged = !this.ports || this.config.sourcePorts.first !== config.sourcePorts.first || this.config.sourcePorts.last !== config.sourcePorts.last;
    this.config = config;
    this.backends = config.backends.map((bc) => {
      const b = old.get(bc.id);
      if (!b) return new Backend(bc);
      b.config = bc;
      return b;
    });
    this.scheduler = createScheduler(config.scheduler, this.backends);
    this.localAddresses = new LocalAddressPicker(config.sourceAddresses);
    if (rangeChanged) this.ports = new PortAllocators(config.sourcePorts);
    this.checker?.stop();
    this.checker = null;
    if (config.healthCheck) {
      this.checker = new HealthChecker(config.name, config.healthCheck, this.log, () => this.onHealthChange?.());
      this.checker.watch(this.backends);
    } else {
      for (const b of this.backends) {
        b.setHealthy(true);
        b.lastCheck = "";
      }
    }
  }

  /** The backend for a new connection from `clientAddress`, passing over those in `skip`. */
  pick(clientAddress: string, skip?: ReadonlySet<Backend>): Backend | undefined {
    return this.scheduler.pick(clientAddress, skip);
  }

  /** Stop health checks (the pool was removed or the balancer stops). */
  stop(): void {
    this.checker?.stop();
    this.checker = null;
  }
}
