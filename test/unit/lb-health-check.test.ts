/**
 * The balancer's health check against a real server on loopback: a TCP check succeeds, reports a
 * refused port, and leaves no TIME_WAIT socket behind (it resets instead of closing first), so checks
 * every few hundred ms cannot use up a narrow local port range.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type AddressInfo } from "node:net";
import { createServer as createHttpServer } from "node:http";
import { readFileSync } from "node:fs";
import { checkOnce } from "../../src/lb/health.js";
import type { HealthCheckConfig } from "../../src/lb/config.js";

const tcp: HealthCheckConfig = { type: "tcp", intervalMs: 300, timeoutMs: 2000, rise: 1, fall: 2, path: "/", expectStatus: 200, sendProxy: false };

/** Sockets in TIME_WAIT (state 06) towards 127.0.0.1:port, from /proc/net/tcp. */
function timeWaitTo(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length > 3 && f[2] === `0100007F:${hexPort}` && f[3] === "06").length;
}

test("a TCP check succeeds against a listener and leaves no TIME_WAIT behind", async (t) => {
  const server = createServer((c) => c.on("error", () => undefined));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  for (let i = 0; i < 5; i++) assert.equal(await checkOnce({ address: "127.0.0.1", port }, tcp), "");
  await new Promise((r) => setTimeout(r, 200)); // let the last reset land
  assert.equal(timeWaitTo(port), 0, "a health check left its port in TIME_WAIT");
});

test("a TCP check of a closed port reports ECONNREFUSED", async () => {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  await new Promise((r) => server.close(r));
  assert.equal(await checkOnce({ address: "127.0.0.1", port }, tcp), "ECONNREFUSED");
});

test("an HTTP check reads the status and leaves no TIME_WAIT behind", async (t) => {
  // The check asks for "connection: close", so the server closes first and keeps the TIME_WAIT.
  const server = createHttpServer({ keepAliveTimeout: 60_000 }, (req, res) => res.writeHead(req.url === "/ok" ? 200 : 503).end("ok"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  server.on("connection", (c) => t.after(() => c.destroy()));
  const port = (server.address() as AddressInfo).port;
  const http: HealthCheckConfig = { ...tcp, type: "http", path: "/ok" };
  for (let i = 0; i < 5; i++) assert.equal(await checkOnce({ address: "127.0.0.1", port }, http), "");
  assert.equal(await checkOnce({ address: "127.0.0.1", port }, { ...http, path: "/down" }), "HTTP 503 (expected 200)");
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(timeWaitTo(port), 0, "a health check left its port in TIME_WAIT");
});
