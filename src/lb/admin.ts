/**
 * The admin listener: `GET /metrics` (Prometheus text), `GET /` (HTML status page),
 * `GET /status.json`, `POST /reload` (re-read the config file, like SIGHUP). Bind it to a loopback or
 * management address: it has no authentication.
 */
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";
import type { Endpoint } from "./endpoint.js";
import { formatEndpoint } from "./endpoint.js";
import { LbError } from "./errors.js";
import type { StatusSnapshot } from "./status.js";
import { renderStatusPage } from "./status-page.js";

export interface AdminHandlers {
  snapshot(): StatusSnapshot;
  registry: Registry;
  /** Resolves to a message on success; rejects with the reason. */
  reload(): Promise<string>;
}

/** Start the admin HTTP server on `at`. */
export async function startAdmin(at: Endpoint, h: AdminHandlers): Promise<Server> {
  const server = createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    if (req.method === "GET" && url === "/metrics") {
      h.registry.metrics().then(
        (text) => send(200, h.registry.contentType, text),
        (e: Error) => send(500, "text/plain", `${e.message}\n`),
      );
    } else if (req.method === "GET" && url === "/") {
      send(200, "text/html; charset=utf-8", renderStatusPage(h.snapshot()));
    } else if (req.method === "GET" && url === "/status.json") {
      send(200, "application/json", `${JSON.stringify(h.snapshot(), null, 2)}\n`);
    } else if (req.method === "POST" && url === "/reload") {
      h.reload().then(
        (msg) => send(200, "text/plain", `${msg}\n`),
        (e: Error) => send(400, "text/plain", `${e.message}\n`),
      );
    } else {
      send(404, "text/plain", "not found: try /, /status.json, /metrics or POST /reload\n");
    }
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(new LbError("LB_ERR_LISTEN", `admin: cannot listen on ${formatEndpoint(at)}: ${e.message}`, { cause: e })));
    server.listen({ host: at.address, port: at.port }, () => resolve());
  });
  return server;
}
