/**
 * The balancer over its frontends: the TOA sender opened when a socket listener first needs it (at a
 * reload too), a refused reload leaving the running config, and the status summing what each
 * frontend counts (buildStatus).
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createServer, type AddressInfo } from "node:net";
import { once } from "node:events";
import { pino } from "pino";
import { Balancer } from "../../src/lb/balancer.js";
import type { ClientAddressWriter } from "../../src/lb/client-address.js";
import { validateConfig } from "../../src/lb/config.js";
import { LbError } from "../../src/lb/errors.js";
import type { Pool } from "../../src/lb/pool.js";
import { buildStatus, type FrontendStats } from "../../src/lb/status.js";

const silent = pino({ level: "silent" });

async function echoBackend(t: TestContext): Promise<string> {
  const server = createServer((s) => s.pipe(s)).listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => server.close());
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const config = (backend: string, mode: string) =>
  validateConfig({ listeners: [{ name: "l", listen: "127.0.0.1:0", pool: "p", mode }], pools: { p: { backends: [backend] } } }, "test");

test("a reload that switches a listener to toa opens the sender then, once; without one it is refused and the running config stays", async (t) => {
  const backend = await echoBackend(t);
  let opened = 0;
  const writer: ClientAddressWriter = { register: () => undefined, unregister: () => undefined, counters: () => ({ written: 3, skippedNoSpace: 1 }) };
  const lb = await Balancer.start(config(backend, "none"), { log: silent, openWriter: async () => (opened++, writer) });
  t.after(() => lb.close());
  assert.equal(opened, 0, "no toa listener: no sender");
  assert.equal(lb.snapshot().toa, null);
  await lb.reload(config(backend, "toa"));
  assert.equal(opened, 1);
  assert.deepEqual(lb.snapshot().toa, { written: 3, skippedNoSpace: 1 });
  await lb.reload(config(backend, "toa"));
  assert.equal(opened, 1, "kept across reloads");

  const bare = await Balancer.start(config(backend, "none"), { log: silent });
  t.after(() => bare.close());
  await assert.rejects(bare.reload(config(backend, "toa")), (e: unknown) => e instanceof LbError && e.code === "LB_ERR_TOA_SENDER");
  assert.equal(bare.snapshot().listeners[0].mode, "none");
  assert.equal(bare.snapshot().reloadFailures, 1);
  await assert.rejects(bare.reload(), (e: unknown) => e instanceof LbError && e.code === "LB_ERR_RELOAD" && /no config source/.test(e.message));
});

test("buildStatus: listeners of every frontend in order; backend figures and TOA counts summed over the frontends", () => {
  const cfg = validateConfig(
    {
      listeners: [
        { name: "a", listen: "127.0.0.1:1", pool: "p", mode: "toa" },
        { name: "b", listen: "127.0.0.1:2", pool: "p", mode: "none" },
      ],
      pools: { p: { backends: ["127.0.0.2:80"] } },
    },
    "test",
  );
  const backend = { id: "127.0.0.2:80", weight: 1, healthy: true, lastCheck: "", lastChange: 5, active: 1, stats: { connections: 10, bytesIn: 100, bytesOut: 200, connectErrors: 1, portExhausted: 0, checksFailed: 0 } };
  const pool = { name: "p", config: cfg.pools.p, backends: [backend] } as unknown as Pool;
  const listener = (name: string) => ({ name, listen: "x", mode: "none", dataPath: "js", pool: "p", accepted: 0, active: 0, bytesIn: 0, bytesOut: 0, noBackend: 0, failed: 0, connectErrors: 0 });
  const frontends: FrontendStats[] = [
    { listeners: [listener("a")], backend: () => undefined, toa: { written: 2, skippedNoSpace: 0 }, packet: null },
    { listeners: [listener("b")], backend: (p, id) => (p === "p" && id === backend.id ? { connections: 5, active: 2, bytesIn: 1, bytesOut: 2, connectErrors: 3 } : undefined), toa: { written: 4, skippedNoSpace: 1 }, packet: null },
  ];
  const s = buildStatus({ config: cfg, startedAtMs: 1, draining: false, reloads: 0, reloadFailures: 0 }, [pool], frontends);
  assert.deepEqual(
    s.listeners.map((l) => l.name),
    ["a", "b"],
  );
  assert.deepEqual(s.pools[0].backends[0], { id: backend.id, weight: 1, healthy: true, state: "no check", lastCheck: "", lastChangeMs: 5, connections: 15, bytesIn: 101, bytesOut: 202, connectErrors: 4, portExhausted: 0, checksFailed: 0, active: 3 });
  assert.equal(s.pools[0].healthCheck, "none");
  assert.deepEqual(s.toa, { written: 6, skippedNoSpace: 1 });
  assert.equal(s.packet, null);
});

test("a reload that opens the sender and then can't bind closes the sender again; close() goes on past a sender that throws", async (t) => {
  const backend = await echoBackend(t);
  // A port held by another socket: the reload's new listener can't bind it.
  const holder = createServer().listen(0, "127.0.0.1");
  await once(holder, "listening");
  t.after(() => holder.close());
  const busy = (holder.address() as AddressInfo).port;
  let opened = 0;
  let closed = 0;
  let throwOnClose = false;
  const writer: ClientAddressWriter = {
    register: () => undefined,
    unregister: () => undefined,
    counters: () => ({ written: 0, skippedNoSpace: 0 }),
    close: () => {
      closed++;
      if (throwOnClose) throw new Error("detach failed");
    },
  };
  const admin = (mode: string) =>
    validateConfig({ listeners: [{ name: "l", listen: "127.0.0.1:0", pool: "p", mode }], pools: { p: { backends: [backend] } }, admin: "127.0.0.1:0" }, "test");
  const lb = await Balancer.start(admin("none"), { log: silent, openWriter: async () => (opened++, writer) });
  let lbClosed = false;
  t.after(() => (lbClosed ? undefined : lb.close()));
  const toaOnBusyPort = validateConfig({ listeners: [{ name: "l", listen: `127.0.0.1:${busy}`, pool: "p", mode: "toa" }], pools: { p: { backends: [backend] } }, admin: "127.0.0.1:0" }, "test");
  await assert.rejects(lb.reload(toaOnBusyPort));
  assert.deepEqual({ opened, closed }, { opened: 1, closed: 1 }, "the sender opened for the refused config is closed");
  assert.equal(lb.snapshot().listeners[0].mode, "none");

  await lb.reload(admin("toa"));
  assert.equal(opened, 2);
  const port = lb.adminAddress()!.port;
  throwOnClose = true;
  await assert.rejects(lb.close(), /detach failed/);
  lbClosed = true;
  assert.equal(closed, 2);
  // What comes after the frontends was closed even so (before, a throwing sender stopped close()
  // there): the admin listener's port is free again.
  const again = createServer().listen(port, "127.0.0.1");
  await once(again, "listening");
  again.close();
});
