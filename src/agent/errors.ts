/**
 * Errors of the agent layer (receiver load/unload, settings, the agent's targets and config). Every
 * error the agent throws to a user is an {@link AgentError} with a stable code from this catalogue;
 * errors of the kernel calls underneath come through as the toolkit's BpfError (src/bpf/errors.ts),
 * and those of address and option parsing as WireError (src/wire/errors.ts).
 */
import { CodedError } from "../shared/coded-error.js";

/** Stable error codes of the agent layer. */
export type AgentErrorCode =
  /** A receiver setting (--kinds, --trust) the user got wrong: {@link SettingsError}. */
  | "AGENT_ERR_SETTINGS"
  /** A target (--target, --unit, or the file's targets:/units:) the user got wrong: {@link TargetError}. */
  | "AGENT_ERR_TARGET"
  /** Any other agent option or config file key the user got wrong: {@link AgentConfigError}. */
  | "AGENT_ERR_CONFIG"
  /** --cgroup is not an existing folder on a cgroup v2 mount. */
  | "AGENT_ERR_CGROUP"
  /** --pin-dir is not usable: not on bpffs, holding pins that are not toa's, or loaded for another cgroup. */
  | "AGENT_ERR_PIN_DIR"
  /** Nothing is loaded at the pin folder a command reads. */
  | "AGENT_ERR_NOT_LOADED";

/** The base of every error the agent throws; `field` names the flag or file key when there is one. */
export class AgentError extends CodedError<AgentErrorCode> {
  readonly field?: string;
  constructor(code: AgentErrorCode, message: string, options?: { field?: string; cause?: unknown }) {
    super(code, options?.field === undefined ? message : `${options.field}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    if (options?.field !== undefined) this.field = options.field;
  }
}

/** A settings value the user got wrong (AGENT_ERR_SETTINGS); the message starts with the field. */
export class SettingsError extends AgentError {
  declare readonly field: string;
  constructor(field: string, message: string) {
    super("AGENT_ERR_SETTINGS", message, { field });
  }
}

/** A target someone wrote wrong (AGENT_ERR_TARGET); the message starts with the field. */
export class TargetError extends AgentError {
  declare readonly field: string;
  constructor(field: string, message: string) {
    super("AGENT_ERR_TARGET", message, { field });
  }
}

/** A config value someone wrote wrong (AGENT_ERR_CONFIG): `field` names the flag or the file key. */
export class AgentConfigError extends AgentError {
  declare readonly field: string;
  constructor(field: string, message: string) {
    super("AGENT_ERR_CONFIG", message, { field });
  }
}
