/**
 * The Node API in a request handler with no receiver: clientAddress returns null and never throws,
 * warning once (TOA_NO_RECEIVER) with the fix; requestClient falls back to the socket's own peer.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, openSync } from "node:fs";
import type { Socket } from "node:net";
import { clientAddress, closeClientAddressMaps, requestClient } from "../../src/agent/client-address.js";

test("no receiver pinned: null, no throw, one warning naming the pin folder and the fix; a closed socket is null too", async (t) => {
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on("warning", onWarning);
  t.after(() => {
    process.off("warning", onWarning);
    closeClientAddressMaps();
  });
  const fd = openSync("/dev/null", "r");
  t.after(() => closeSync(fd));
  // What a request handler holds: a socket with a file descriptor (here not a TCP one: never looked up).
  const socket = { _handle: { fd }, remoteAddress: "203.0.113.1", remotePort: 10000 } as unknown as Socket;
  const pinDir = "/sys/fs/bpf/toa-nothing-pinned-here";
  for (let i = 0; i < 5; i++) assert.equal(clientAddress(socket, { pinDir }), null);
  assert.deepEqual(requestClient({ socket }, { pinDir }), { address: "203.0.113.1", port: 10000 });
  await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  const ours = warnings.filter((w) => (w as Error & { code?: string }).code === "TOA_NO_RECEIVER");
  assert.equal(ours.length, 1, ours.map((w) => w.message).join("\n"));
  // ENOENT as root; EPERM/EACCES for a user without CAP_BPF: both name the fix.
  assert.match(ours[0].message, /toa-nothing-pinned-here/);
  assert.match(ours[0].message, /Fix: /);
  assert.equal(clientAddress({} as Socket), null, "no handle: a closed socket");
});
