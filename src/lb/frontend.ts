/**
 * How clients come in: the socket listeners (./socket-frontend.ts: accept, connect, relay in JS) and
 * the packet path (./packet/frontend.ts: the kernel rewrites packets, no socket here). The balancer
 * drives both through this interface, never asking which one it holds.
 *
 *   reload:  prepare (every frontend) ─ ok ─▶ pools updated ─▶ commit (every frontend)
 *                 └─ one throws ─▶ abort (those prepared); the running config stays
 */
import type { AddressInfo } from "node:net";
import type { LbConfig } from "./config.js";
import type { FrontendStats } from "./status.js";

/** One data path's listeners, driven by the balancer. */
export interface Frontend {
  /**
   * Get ready to serve the listeners of `config` that are this frontend's (bind new sockets, load the
   * program, check routes) without changing what runs now. Throws, leaving nothing of its own behind,
   * when it cannot.
   */
  prepare(config: LbConfig): Promise<void>;
  /** Undo a successful {@link prepare} that will not be committed (another frontend refused). */
  abort(): void;
  /** Serve the prepared `config`; the pools it names are already updated. */
  commit(config: LbConfig): void;
  /** Stop taking new connections (drain); established ones go on. */
  stopAccepting(): void;
  /** Connections open now. */
  active(): number;
  /** Wait a moment while draining, then refresh what {@link active} counts. */
  settle(): Promise<void>;
  /** The address listener `name` serves on, or null when it is not this frontend's. */
  address(name: string): AddressInfo | null;
  /** What the status page, /status.json and /metrics show of this frontend. */
  stats(): FrontendStats;
  /**
   * Whether its connections outlive this process (the packet path: the kernel forwards them from
   * pinned tables). A SIGTERM drain neither stops nor waits for such a frontend.
   */
  readonly outlivesProcess: boolean;
  /** Close everything now: connections included, except those that outlive the process. */
  close(): void;
  /** A start that failed: close, and take away what this start made that would outlive it. */
  abandon(): Promise<void>;
}
