/**
 * How a running balancer answers signals: SIGHUP reloads; the first SIGTERM or SIGINT drains (stop
 * accepting, wait up to drainTimeout, close); a second one closes at once. Resolves with the exit
 * code once stopped: 0, or 1 when closing failed (a detach the kernel refused, ...), which is then
 * logged with its message instead of escaping as an unhandled rejection that skips the rest of the
 * shutdown (the pid file, the log's last lines).
 */
import type { EventEmitter } from "node:events";

/** What the signal handling needs of the balancer. */
export interface Stoppable {
  reload(): Promise<unknown>;
  drain(): Promise<void>;
  close(): Promise<void>;
}

/** The logger calls used (pino's shape). */
export interface SignalLog {
  info(msg: string): void;
  warn(msg: string): void;
  error(obj: object, msg: string): void;
}

export interface SignalOptions {
  /** False when there is no config file to read again (flags only): SIGHUP then only warns. */
  canReload: boolean;
  /** Runs once stopped, before the promise resolves (remove the pid file, flush the log). */
  onStopped?: (code: number) => void;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Install the handlers on `proc` (the process); they are removed when the balancer has stopped. */
export function handleSignals(proc: EventEmitter, balancer: Stoppable, log: SignalLog, options: SignalOptions): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onHup = (): void => {
      if (!options.canReload) return void log.warn("SIGHUP: the config came from the command line; nothing to reload");
      // reload() logs its own refusal; the balancer keeps the config it had.
      balancer.reload().catch(() => undefined);
    };
    const onTerm = (sig: string): void => {
      if (stopping) {
        log.warn(`${sig} again: closing now`);
        // The drain under way sees no connection left and finishes; it reports any close error.
        balancer.close().catch((e: unknown) => log.error({ err: e }, `closing: ${message(e)}`));
        return;
      }
      stopping = true;
      log.info(`${sig}: draining`);
      void balancer
        .drain()
        .then(
          () => 0,
          (e: unknown) => {
            log.error({ err: e }, `stopped with an error: ${message(e)}`);
            return 1;
          },
        )
        .then((code) => {
          proc.off("SIGHUP", onHup);
          proc.off("SIGTERM", onTerm);
          proc.off("SIGINT", onTerm);
          options.onStopped?.(code);
          resolve(code);
        });
    };
    proc.on("SIGHUP", onHup);
    proc.on("SIGTERM", onTerm);
    proc.on("SIGINT", onTerm);
  });
}
