/**
 * Errors of `toa demo`: every error the demo throws is a {@link DemoError} with a stable code from
 * this catalogue (errors of the receiver and the toolkit it drives come through as theirs).
 */
import { CodedError } from "../shared/coded-error.js";

/** Stable error codes of the demo. */
export type DemoErrorCode =
  /** A demo option is wrong (the demo id). */
  | "DEMO_ERR_INVALID_ARG"
  /** The demo needs root. */
  | "DEMO_ERR_NOT_ROOT"
  /** Interrupted (Ctrl-C) while setting up. */
  | "DEMO_ERR_INTERRUPTED"
  /** A system command (ip, nsenter) is missing or failed. */
  | "DEMO_ERR_COMMAND"
  /** Something the demo waits for did not happen in time. */
  | "DEMO_ERR_TIMEOUT"
  /** A process the demo started (toa lb, a peer) exited or failed to start. */
  | "DEMO_ERR_PROCESS"
  /** A cgroup the demo made could not be removed. */
  | "DEMO_ERR_CGROUP_BUSY";

/** The only error class the demo throws. */
export class DemoError extends CodedError<DemoErrorCode> {}
