/**
 * Copies bytes both ways between a client and a backend socket, in JavaScript.
 *
 *  client ──data──▶ backend.write ─ false? ─▶ client.pause() … backend 'drain' ─▶ client.resume()
 *  client ◀─write── backend data   (the same the other way)
 *
 * - Backpressure: a side is paused while the other's write buffer is above its highWaterMark
 *   (16 KiB), so a connection holds at most about one read chunk (64 KiB) plus that per direction.
 * - Half-close: a FIN from one side is passed on with end(); the other direction keeps flowing
 *   (both sockets need allowHalfOpen). The connection is done when both sockets are closed.
 * - RST: a side reset by its peer (ECONNRESET) resets the other (`resetAndDestroy`, Node ≥ 18.3).
 * - Idle timeout: no byte either way for `idleTimeoutMs` closes both sides (the socket timer counts
 *   reads and writes, and every byte relayed is read on one socket and written on the other).
 */
import type { Socket } from "node:net";

/** How a relayed connection ended. */
export type RelayEnd = "closed" | "client-reset" | "backend-reset" | "idle-timeout" | "error";

export interface RelayOptions {
  idleTimeoutMs: number;
  /** Bytes moved: `in` = client → backend, `out` = backend → client. */
  onBytes?(direction: "in" | "out", n: number): void;
  /** Once, after both sockets closed. */
  onEnd?(how: RelayEnd, error?: Error): void;
}

/** Relay between two connected sockets until both are closed. */
export function relay(client: Socket, backend: Socket, opts: RelayOptions): void {
  let how: RelayEnd = "closed";
  let firstError: Error | undefined;
  let open = 2;

  const pipe = (from: Socket, to: Socket, direction: "in" | "out"): void => {
    from.on("data", (chunk: Buffer) => {
      opts.onBytes?.(direction, chunk.length);
      if (!to.write(chunk)) from.pause();
    });
    to.on("drain", () => from.resume());
    from.on("end", () => {
      if (!to.destroyed) to.end();
    });
    from.on("error", (e: NodeJS.ErrnoException) => {
      firstError ??= e;
      const reset = e.code === "ECONNRESET";
      if (how === "closed") how = reset ? (from === client ? "client-reset" : "backend-reset") : "error";
      if (to.destroyed) return;
      if (reset && typeof to.resetAndDestroy === "function" && to.readyState !== "closed") to.resetAndDestroy();
      else to.destroy();
    });
    from.on("close", () => {
      // `from` is gone (normally both ways, or destroyed by a timeout or a drain): flush what is
      // queued for `to`, then close it, so no socket outlives its partner.
      if (!to.destroyed) to.destroySoon();
      if (--open === 0) opts.onEnd?.(how, firstError);
    });
  };
  pipe(client, backend, "in");
  pipe(backend, client, "out");

  if (opts.idleTimeoutMs > 0) {
    client.setTimeout(opts.idleTimeoutMs, () => {
      if (how === "closed") how = "idle-timeout";
      client.destroy();
      backend.destroy();
    });
  }
}
