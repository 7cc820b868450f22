/** The agent's HTTP endpoints: Prometheus `/metrics`, `/healthz` (200 or 503 with the reason) and `/targets` (JSON). */
import { createServer, type Server } from "node:http";
import type { Agent } from "./agent.js";

/** Serve the agent's endpoints on host:port; resolves once listening. */
export async function serveAgent(agent: Agent, host: string, port: number): Promise<Server> {
  const server = createServer(async (req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    try {
      if (url === "/metrics") {
        const body = await agent.registry.metrics();
        res.writeHead(200, { "content-type": agent.registry.contentType }).end(body);
      } else if (url === "/healthz") {
        const h = agent.health();
        res.writeHead(h.ok ? 200 : 503, { "content-type": "text/plain" }).end(`${h.text}\n`);
      } else if (url === "/targets") {
        res.writeHead(200, { "content-type": "application/json" }).end(`${JSON.stringify(agent.list(), null, 2)}\n`);
      } else {
        res.writeHead(404, { "content-type": "text/plain" }).end("see /metrics, /healthz, /targets\n");
      }
    } catch (e) {
      res.writeHead(500).end(`${(e as Error).message}\n`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}
