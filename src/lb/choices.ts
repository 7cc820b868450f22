/**
 * The balancer's named choices and defaults, apart from the config parser so that `toa lb --help`
 * can list them without loading the parser (and its YAML library): a CLI start reads only what the
 * command it runs needs.
 */

/** How a listener passes the client address to the backend. */
export type ClientAddressMode = "toa" | "proxy-v1" | "proxy-v2" | "none";
export const CLIENT_ADDRESS_MODES: readonly ClientAddressMode[] = ["toa", "proxy-v1", "proxy-v2", "none"];

/**
 * How a listener forwards: `packet` (no socket on the balancer: a tc program rewrites each packet,
 * full NAT like LVS FULLNAT, src/programs/nat/ + src/lb/packet/) or `js` (two sockets per
 * connection, bytes relayed by src/lb/relay.ts).
 */
export type DataPath = "packet" | "js";
export const DATA_PATHS: readonly DataPath[] = ["packet", "js"];

/** How a pool picks a backend for a new connection. */
export type SchedulerName = "round-robin" | "weighted-round-robin" | "least-connections" | "source-hash";
export const SCHEDULERS: readonly SchedulerName[] = ["round-robin", "weighted-round-robin", "least-connections", "source-hash"];

export const DEFAULTS = Object.freeze({
  mode: "toa" as ClientAddressMode,
  dataPath: "js" as DataPath,
  toaKind: 254,
  scheduler: "round-robin" as SchedulerName,
  weight: 1,
  connectTimeoutMs: 3000,
  idleTimeoutMs: 300_000,
  drainTimeoutMs: 30_000,
  packet: Object.freeze({ maxConnections: 65536, mtu: 1500, interfaces: Object.freeze([]) as readonly string[], closedTimeoutMs: 2_000, maxHalfOpen: 16384, synTimeoutMs: 5_000 }),
  // Below Linux's default ephemeral range (32768-60999): the packet path's NAT ports must not be
  // ports the kernel hands out itself (health checks, relayed connections).
  sourcePorts: Object.freeze({ first: 10000, last: 32767 }),
  health: Object.freeze({ intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3, path: "/", expectStatus: 200 }),
});
