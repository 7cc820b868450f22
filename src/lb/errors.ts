/**
 * Errors of the load balancer, one class with a stable, literal-typed `code` (the undici
 * `UND_ERR_*` model): callers branch on the code, users read the message.
 */
import { CodedError } from "../shared/coded-error.js";

/** Stable error codes of `src/lb`. */
export type LbErrorCode =
  /** The configuration was refused; the message lists every problem with its field path. */
  | "LB_ERR_CONFIG"
  /** No healthy backend in the pool: the client is closed at once. */
  | "LB_ERR_NO_BACKEND"
  /** Connecting to a backend took longer than the connect timeout. */
  | "LB_ERR_CONNECT_TIMEOUT"
  /** Every local port of the range is in use for this (local address, backend). */
  | "LB_ERR_PORTS_EXHAUSTED"
  /** The TOA sender (eBPF) could not be loaded or attached. */
  | "LB_ERR_TOA_SENDER"
  /** A listener or the admin listener could not bind. */
  | "LB_ERR_LISTEN"
  /** No usable route to an address (packet path: a listen address or a backend); see {@link RouteError}. */
  | "LB_ERR_NO_ROUTE"
  /** A reload was refused before it started: no config source, or the balancer is draining. */
  | "LB_ERR_RELOAD"
  /** A function of `src/lb` was called with a value it cannot use (e.g. an address that is not one). */
  | "LB_ERR_INVALID_ARG"
  /** Something already closed was used (the packet path's tables after close()). */
  | "LB_ERR_CLOSED"
  /**
   * A packet-path instance (its pinned tables and program) can't be used as asked: another build's
   * layout, another process serving it, or source ports another instance uses towards the same backend.
   */
  | "LB_ERR_INSTANCE";

/** The only error class thrown by `src/lb`; `cause` keeps the underlying error. */
export class LbError extends CodedError<LbErrorCode> {}

/** No usable route to `address` (unreachable, blackhole, no source address...); `reason` is the kernel's word. */
export class RouteError extends LbError {
  constructor(
    readonly address: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super("LB_ERR_NO_ROUTE", `no route to ${address}: ${reason}`, options);
  }
}

/** One problem in a configuration: where (`file`, dotted `path`) and what is allowed. */
export interface ConfigIssue {
  path: string;
  message: string;
}

/** A refused configuration; `issues` holds every problem found, the message lists them one a line. */
export class ConfigError extends LbError {
  constructor(
    readonly file: string,
    readonly issues: readonly ConfigIssue[],
  ) {
    super("LB_ERR_CONFIG", issues.map((i) => `${file}: ${i.path || "(top level)"}: ${i.message}`).join("\n"));
  }
}
