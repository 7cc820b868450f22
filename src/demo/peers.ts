/**
 * The demo's two peers, run by `toa demo-peer` inside the demo's namespaces (toa starts itself again,
 * so the single executable needs no Node): a backend that answers with the peer accept() gave it,
 * and a client that makes one request and tells which local address and port it used.
 */
import http from "node:http";
import { DemoError } from "./errors.js";

/** What the client prints: the response and its own end of the connection. */
export interface PeerResponse {
  status: number;
  body: string;
  local: { address: string; port: number };
}

/**
 * The backend: an unmodified Node HTTP server on [::]:`port` answering every request with
 * `{"address","port"}` of socket.remoteAddress/remotePort (what accept()/getpeername() returned).
 * Calls `ready` once it listens.
 */
export function serveWhoAmI(port: number, ready: () => void): http.Server {
  const server = http.createServer((req, res) => {
    const address = req.socket.remoteAddress;
    const remotePort = req.socket.remotePort;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ address, port: remotePort }) + "\n");
  });
  server.listen({ host: "::", port }, ready);
  return server;
}

/** The client: one GET of `url` on a fresh connection. */
export function getOnce(url: string, timeoutMs = 5000): Promise<PeerResponse> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, local: { address: req.socket?.localAddress ?? "", port: req.socket?.localPort ?? 0 } }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new DemoError("DEMO_ERR_TIMEOUT", `timed out after ${timeoutMs / 1000}s`)));
    req.on("error", reject);
  });
}
