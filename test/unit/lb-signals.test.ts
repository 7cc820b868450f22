/**
 * `toa lb`'s signal handling (src/lb/signals.ts) over an EventEmitter standing in for the process:
 * what an operator's SIGTERM, second SIGTERM and SIGHUP do, and that a failing close ends in exit
 * code 1 with the error logged and the pid file step run, not in an unhandled rejection.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { handleSignals, type SignalLog, type Stoppable } from "../../src/lb/signals.js";

function recorder(): SignalLog & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(`info ${m}`), warn: (m) => lines.push(`warn ${m}`), error: (_o, m) => lines.push(`error ${m}`) };
}

/** A balancer whose drain waits for `release()` (connections still open) and then closes. */
function balancer(closeError?: Error): Stoppable & { calls: string[]; release(): void } {
  const calls: string[] = [];
  let release = () => {};
  const b = {
    calls,
    release: () => release(),
    reload: async () => void calls.push("reload"),
    close: async () => {
      calls.push("close");
      if (closeError) throw closeError;
    },
    drain: async () => {
      calls.push("drain");
      await new Promise<void>((r) => (release = r));
      await b.close();
    },
  };
  return b;
}

const tick = () => new Promise((r) => setImmediate(r));

test("SIGTERM drains once; the handlers are gone after; exit 0", async () => {
  const proc = new EventEmitter();
  const b = balancer();
  const log = recorder();
  const stopped: number[] = [];
  const done = handleSignals(proc, b, log, { canReload: true, onStopped: (c) => stopped.push(c) });
  proc.emit("SIGTERM", "SIGTERM");
  await tick();
  assert.deepEqual(b.calls, ["drain"]);
  b.release();
  assert.equal(await done, 0);
  assert.deepEqual(stopped, [0]);
  assert.equal(proc.listenerCount("SIGTERM") + proc.listenerCount("SIGINT") + proc.listenerCount("SIGHUP"), 0);
  assert.deepEqual(log.lines, ["info SIGTERM: draining"]);
});

test("a second SIGINT closes at once while the drain waits", async () => {
  const proc = new EventEmitter();
  const b = balancer();
  const log = recorder();
  const done = handleSignals(proc, b, log, { canReload: true });
  proc.emit("SIGINT", "SIGINT");
  proc.emit("SIGINT", "SIGINT");
  await tick();
  assert.deepEqual(b.calls, ["drain", "close"]);
  assert.ok(log.lines.includes("warn SIGINT again: closing now"));
  b.release();
  assert.equal(await done, 0);
});

test("a close that fails: exit 1, the error logged, the stop step still runs", async () => {
  const proc = new EventEmitter();
  const b = balancer(new Error("tc filter toa:nat on eth0: ENOENT"));
  const log = recorder();
  const stopped: number[] = [];
  let unhandled: unknown;
  const onUnhandled = (e: unknown) => (unhandled = e);
  process.on("unhandledRejection", onUnhandled);
  try {
    const done = handleSignals(proc, b, log, { canReload: true, onStopped: (c) => stopped.push(c) });
    proc.emit("SIGTERM", "SIGTERM");
    proc.emit("SIGTERM", "SIGTERM"); // the immediate close fails too
    await tick();
    b.release();
    assert.equal(await done, 1);
    await tick();
    assert.deepEqual(stopped, [1]);
    assert.ok(log.lines.includes("error stopped with an error: tc filter toa:nat on eth0: ENOENT"), log.lines.join("\n"));
    assert.ok(log.lines.includes("error closing: tc filter toa:nat on eth0: ENOENT"), log.lines.join("\n"));
    assert.equal(unhandled, undefined);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("SIGHUP reloads from the config file; without one it only warns", async () => {
  const withFile = balancer();
  const proc = new EventEmitter();
  void handleSignals(proc, withFile, recorder(), { canReload: true });
  proc.emit("SIGHUP", "SIGHUP");
  await tick();
  assert.deepEqual(withFile.calls, ["reload"]);

  const flagsOnly = balancer();
  const proc2 = new EventEmitter();
  const log = recorder();
  void handleSignals(proc2, flagsOnly, log, { canReload: false });
  proc2.emit("SIGHUP", "SIGHUP");
  await tick();
  assert.deepEqual(flagsOnly.calls, []);
  assert.deepEqual(log.lines, ["warn SIGHUP: the config came from the command line; nothing to reload"]);
});
