/**
 * The balancer in-process on loopback with real sockets on port 0: relay both ways, half-close, RST,
 * backpressure, idle timeout, PROXY headers, failover, no-backend, TOA registration with a fake
 * writer, port exhaustion, reload, admin endpoints.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { connect, createServer, type Server, type Socket, type AddressInfo } from "node:net";
import { once } from "node:events";
import { pino } from "pino";
import { Balancer } from "../../src/lb/balancer.js";
import { validateConfig } from "../../src/lb/config.js";
import type { ClientAddressWriter, ConnectionKey } from "../../src/lb/client-address.js";
import { decodeProxyV2 } from "../../src/wire/proxy-v2.js";

const silent = pino({ level: "silent" });

/** A backend server on 127.0.0.1:0, closed at teardown. */
async function backend(t: TestContext, onConn: (s: Socket) => void): Promise<{ server: Server; port: number; id: string }> {
  const server = createServer({ allowHalfOpen: true }, onConn);
  const sockets = new Set<Socket>();
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return { server, port, id: `127.0.0.1:${port}` };
}

const echo = (s: Socket): void => {
  s.pipe(s);
};

/** A port nobody listens on (bound then closed). */
async function deadPort(): Promise<number> {
  const s = createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function balancer(t: TestContext, raw: Record<string, unknown>, writer?: ClientAddressWriter): Promise<{ lb: Balancer; port: number }> {
  const config = validateConfig(raw, "test");
  const lb = await Balancer.start(config, { log: silent, openWriter: writer ? () => writer : undefined });
  t.after(() => lb.close());
  return { lb, port: lb.listenerAddress(config.listeners[0].name)!.port };
}

const one = (backends: unknown[], extra: Record<string, unknown> = {}, pool: Record<string, unknown> = {}) => ({
  listeners: [{ name: "l", listen: "127.0.0.1:0", pool: "p", mode: "none", ...extra }],
  pools: { p: { backends, ...pool } },
});

function dial(t: TestContext, port: number): Promise<Socket> {
  const c = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  t.after(() => c.destroy());
  return once(c, "connect").then(() => c);
}

function readAll(s: Socket): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    let data = "";
    s.on("data", (d: Buffer) => (data += d.toString()));
    s.once("end", () => resolve({ data }));
    s.once("error", (e: NodeJS.ErrnoException) => resolve({ data, error: e.code }));
    s.once("close", () => resolve({ data }));
  });
}

test("relays both ways and passes a half-close on", async (t) => {
  const b = await backend(t, (s) => {
    let got = "";
    s.on("data", (d: Buffer) => (got += d.toString()));
    s.on("end", () => {
      // The client's FIN arrived; this direction is still open.
      s.write(`got ${got}`);
      setTimeout(() => s.end(" bye"), 50);
    });
  });
  const { lb, port } = await balancer(t, one([b.id]));
  const c = await dial(t, port);
  c.end("hello");
  const r = await readAll(c);
  assert.equal(r.data, "got hello bye");
  assert.equal(r.error, undefined);
  await new Promise((r) => setTimeout(r, 50));
  const s = lb.snapshot();
  assert.equal(s.listeners[0].bytesIn, 5);
  assert.equal(s.listeners[0].bytesOut, 13);
  assert.equal(s.pools[0].backends[0].connections, 1);
  assert.equal(lb.activeConnections(), 0);
});

test("a reset from the backend resets the client", async (t) => {
  const b = await backend(t, (s) => s.once("data", () => s.resetAndDestroy()));
  const { port } = await balancer(t, one([b.id]));
  const c = await dial(t, port);
  c.write("x");
  const r = await readAll(c);
  assert.equal(r.error, "ECONNRESET");
});

test("a reset from the client resets the backend", async (t) => {
  let backendSaw: Promise<{ data: string; error?: string }> | undefined;
  const b = await backend(t, (s) => (backendSaw = readAll(s)));
  const { port } = await balancer(t, one([b.id]));
  const c = await dial(t, port);
  c.write("x");
  await new Promise((r) => setTimeout(r, 50));
  c.resetAndDestroy();
  const r = await backendSaw!;
  assert.equal(r.error, "ECONNRESET");
});

test("backpressure: a backend that does not read stops the balancer reading the client", async (t) => {
  let held: Socket | undefined;
  const b = await backend(t, (s) => {
    held = s;
    s.pause();
  });
  const { lb, port } = await balancer(t, one([b.id]));
  const c = await dial(t, port);
  const chunk = Buffer.alloc(1 << 20, 1);
  const total = 64;
  for (let i = 0; i < total; i++) c.write(chunk);
  await new Promise((r) => setTimeout(r, 500));
  const readFromClient = lb.snapshot().listeners[0].bytesIn;
  // Only kernel socket buffers plus one chunk and the 16 KiB highWaterMark are in flight, not 64 MiB.
  assert.ok(readFromClient < 24 << 20, `balancer read ${readFromClient} bytes of ${total << 20}`);
  assert.ok(c.writableLength > 16 << 20, "the client's writes are held back");
  // Once the backend reads, everything arrives.
  let got = 0;
  held!.on("data", (d: Buffer) => (got += d.length));
  held!.resume();
  const { setTimeout: sleep } = await import("node:timers/promises");
  for (let i = 0; i < 100 && got < total << 20; i++) await sleep(50);
  assert.equal(got, total << 20);
});

test("idle timeout closes both sides", async (t) => {
  let backendClosed = false;
  const b = await backend(t, (s) => {
    s.on("end", () => (backendClosed = true));
    s.resume();
  });
  const { port } = await balancer(t, one([b.id], { timeouts: { idle: 200 } }));
  const c = await dial(t, port);
  const t0 = Date.now();
  await readAll(c);
  const took = Date.now() - t0;
  assert.ok(took >= 150 && took < 1500, `closed after ${took}ms`);
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(backendClosed);
});

test("proxy-v2 and proxy-v1 headers come first and carry the client", async (t) => {
  for (const mode of ["proxy-v2", "proxy-v1"] as const) {
    let first: Promise<Buffer> | undefined;
    const b = await backend(t, (s) => {
      const chunks: Buffer[] = [];
      s.on("data", (d: Buffer) => chunks.push(d));
      first = new Promise((r) => setTimeout(() => r(Buffer.concat(chunks)), 80));
    });
    const { port } = await balancer(t, one([b.id], { mode }));
    const c = await dial(t, port);
    c.write("PING");
    const buf = await new Promise<Buffer>((r) => setTimeout(async () => r(await first!), 100));
    if (mode === "proxy-v2") {
      const h = decodeProxyV2(buf) as unknown as { command: string; source: { address: string; port: number }; destination: { port: number }; length: number };
      assert.equal(h.command, "PROXY");
      assert.deepEqual(h.source, { address: "127.0.0.1", port: c.localPort });
      assert.equal(h.destination.port, port);
      assert.equal(buf.subarray(h.length).toString(), "PING");
    } else {
      assert.equal(buf.toString(), `PROXY TCP4 127.0.0.1 127.0.0.1 ${c.localPort} ${port}\r\nPING`);
    }
  }
});

test("a refused backend is passed over; with every backend down the client is closed at once", async (t) => {
  const b = await backend(t, echo);
  const dead = await deadPort();
  const { lb, port } = await balancer(t, one([`127.0.0.1:${dead}`, b.id]));
  for (let i = 0; i < 4; i++) {
    const c = await dial(t, port);
    c.end("ok");
    assert.equal((await readAll(c)).data, "ok");
  }
  assert.ok(lb.snapshot().pools[0].backends[0].connectErrors >= 1);

  const d2 = await deadPort();
  const { lb: lb2, port: port2 } = await balancer(t, one([`127.0.0.1:${d2}`], {}, { healthCheck: { type: "tcp", interval: 50, timeout: 40, fall: 1, rise: 1 } }));
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(lb2.snapshot().pools[0].backends[0].state, "DOWN");
  const t0 = Date.now();
  const c = await dial(t, port2);
  await readAll(c);
  assert.ok(Date.now() - t0 < 300, `closed after ${Date.now() - t0}ms`);
  assert.equal(lb2.snapshot().listeners[0].noBackend, 1);
});

test("http health check: wrong status takes a backend down, right status brings it up", async (t) => {
  let status = 503;
  const { createServer: createHttp } = await import("node:http");
  const http = createHttp((req, res) => {
    res.writeHead(req.url === "/healthz" ? status : 404);
    res.end();
  }).listen(0, "127.0.0.1");
  await once(http, "listening");
  t.after(() => {
    http.closeAllConnections();
    http.close();
  });
  const id = `127.0.0.1:${(http.address() as AddressInfo).port}`;
  const { lb } = await balancer(t, one([id], {}, { healthCheck: { type: "http", path: "/healthz", interval: 50, timeout: 40, fall: 2, rise: 2 } }));
  const { setTimeout: sleep } = await import("node:timers/promises");
  await sleep(250);
  assert.equal(lb.snapshot().pools[0].backends[0].state, "DOWN");
  assert.match(lb.snapshot().pools[0].backends[0].lastCheck, /HTTP 503 \(expected 200\)/);
  status = 200;
  await sleep(250);
  assert.equal(lb.snapshot().pools[0].backends[0].state, "UP");
});

class FakeWriter implements ClientAddressWriter {
  registered = new Map<string, { address: string; port: number; kind?: number }>();
  log: string[] = [];
  register(conn: ConnectionKey, client: { address: string; port: number }, kind?: number): void {
    const k = `${conn.localAddress}:${conn.localPort}>${conn.remoteAddress}:${conn.remotePort}`;
    this.registered.set(k, { ...client, kind });
    this.log.push(`+${k}`);
  }
  unregister(conn: ConnectionKey): void {
    const k = `${conn.localAddress}:${conn.localPort}>${conn.remoteAddress}:${conn.remotePort}`;
    this.registered.delete(k);
    this.log.push(`-${k}`);
  }
  counters() {
    return { written: this.log.length, skippedNoSpace: 0 };
  }
}

test("toa mode registers the 4-tuple before connect, on a port it picked, and unregisters at close", async (t) => {
  const seen: string[] = [];
  const w = new FakeWriter();
  const b = await backend(t, (s) => {
    // At accept() the registration already exists for exactly this 4-tuple.
    const k = `${s.remoteAddress}:${s.remotePort}>${s.localAddress}:${s.localPort}`;
    seen.push(JSON.stringify(w.registered.get(k)));
    s.pipe(s);
  });
  const { lb, port } = await balancer(t, one([b.id], { mode: "toa", toaKind: 200 }, { sourcePorts: "41000-41999" }), w);
  const c = await dial(t, port);
  const clientPort = c.localPort;
  c.end("x");
  assert.equal((await readAll(c)).data, "x");
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(seen, [JSON.stringify({ address: "127.0.0.1", port: clientPort, kind: 200 })]);
  assert.equal(w.registered.size, 0, "unregistered after close");
  assert.match(w.log[0], /^\+127\.0\.0\.1:41\d{3}>127\.0\.0\.1:\d+$/);
  assert.deepEqual(lb.snapshot().toa, { written: 2, skippedNoSpace: 0 });
});

test("toa mode: port exhaustion closes the client and is counted, no crash", async (t) => {
  const w = new FakeWriter();
  const b = await backend(t, () => undefined); // holds connections open
  const { lb, port } = await balancer(t, one([b.id], { mode: "toa" }, { sourcePorts: "42000-42001" }), w);
  const a1 = await dial(t, port);
  const a2 = await dial(t, port);
  await new Promise((r) => setTimeout(r, 100));
  const c = await dial(t, port);
  const r = await readAll(c);
  assert.equal(r.data, "");
  const s = lb.snapshot();
  assert.equal(s.pools[0].backends[0].portExhausted, 1);
  assert.equal(s.listeners[0].failed, 1);
  assert.equal(lb.activeConnections(), 2);
  a1.destroy();
  a2.destroy();
});

test("reload keeps established connections and applies the new pool", async (t) => {
  const b1 = await backend(t, (s) => s.on("data", (d) => s.write(`b1:${d}`)));
  const b2 = await backend(t, (s) => s.on("data", (d) => s.write(`b2:${d}`)));
  const { lb, port } = await balancer(t, one([b1.id]));
  const old = await dial(t, port);
  old.write("a");
  const [d1] = (await once(old, "data")) as [Buffer];
  assert.equal(d1.toString(), "b1:a");
  const msg = await lb.reload(validateConfig({ ...one([b2.id]), listeners: [{ name: "l", listen: `127.0.0.1:${port}`, pool: "p", mode: "none" }] }, "test2"));
  assert.match(msg, /reloaded test2/);
  old.write("b");
  const [d2] = (await once(old, "data")) as [Buffer];
  assert.equal(d2.toString(), "b1:b", "the old connection still goes to b1");
  const fresh = await dial(t, port);
  fresh.write("c");
  const [d3] = (await once(fresh, "data")) as [Buffer];
  assert.equal(d3.toString(), "b2:c");
  assert.equal(lb.snapshot().reloads, 1);
});

test("drain waits for open connections, then stops", async (t) => {
  const b = await backend(t, echo);
  const { lb, port } = await balancer(t, one([b.id]));
  const c = await dial(t, port);
  const done = lb.drain(5000);
  await new Promise((r) => setTimeout(r, 100));
  // New clients are refused, the open one still works.
  await assert.rejects(dial(t, port));
  c.write("still");
  const [d] = (await once(c, "data")) as [Buffer];
  assert.equal(d.toString(), "still");
  const t0 = Date.now();
  c.end();
  await done;
  assert.ok(Date.now() - t0 < 1000);
});

test("admin listener: /metrics, /status.json, status page, 404", async (t) => {
  const b = await backend(t, echo);
  const config = validateConfig({ ...one([b.id]), admin: "127.0.0.1:0" }, "test");
  const lb = await Balancer.start(config, { log: silent });
  t.after(() => lb.close());
  const c = await dial(t, lb.listenerAddress("l")!.port);
  c.end("z");
  await readAll(c);
  const base = `http://127.0.0.1:${lb.adminAddress()!.port}`;
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /toa_lb_connections_total\{listener="l"\} 1/);
  assert.match(metrics, new RegExp(`toa_lb_backend_up\\{pool="p",backend="${b.id}"\\} 1`));
  assert.match(metrics, /toa_lb_backend_bytes_in_total\{pool="p",backend="127\.0\.0\.1:\d+"\} 1/);
  const json = (await (await fetch(`${base}/status.json`)).json()) as { listeners: { accepted: number }[] };
  assert.equal(json.listeners[0].accepted, 1);
  const page = await (await fetch(`${base}/`)).text();
  assert.match(page, /<title>toa lb — status<\/title>/);
  assert.match(page, new RegExp(`<td class="name">${b.id}</td><td class="state">no check</td>`));
  assert.equal((await fetch(`${base}/nope`)).status, 404);
  assert.equal((await fetch(`${base}/reload`, { method: "POST" })).status, 400);
});

test("bulk both ways through slow readers arrives intact (the relay's read buffers are never overwritten while queued)", async (t) => {
  const { createHash, randomBytes } = await import("node:crypto");
  const { setTimeout: sleep } = await import("node:timers/promises");
  const size = 24 << 20;
  const down = randomBytes(size);
  // A slow reader: reads in bursts with pauses, so the relay's writes queue and its reads pause.
  const slowRead = (s: Socket, total: number): Promise<string> =>
    new Promise((resolve) => {
      const h = createHash("sha256");
      let got = 0;
      s.on("data", (d: Buffer) => {
        h.update(d);
        got += d.length;
        if (got >= total) return resolve(h.digest("hex"));
        if (Math.random() < 0.05) {
          s.pause();
          setTimeout(() => s.resume(), 2);
        }
      });
    });
  let upDigest: Promise<string> | undefined;
  const b = await backend(t, (s) => {
    upDigest = slowRead(s, size);
    s.write(down);
  });
  const { port } = await balancer(t, one([b.id]));
  const c = await dial(t, port);
  const downDigest = slowRead(c, size);
  const up = randomBytes(size);
  c.write(up);
  assert.equal(await downDigest, createHash("sha256").update(down).digest("hex"));
  for (let i = 0; i < 100 && !upDigest; i++) await sleep(10);
  assert.equal(await upDigest!, createHash("sha256").update(up).digest("hex"));
});
