/**
 * Prometheus metrics of the receiver: one counter family per kernel counter, read from the pinned
 * per-CPU map at scrape time (prom-client), so Prometheus sees exactly what `toa stats` prints.
 */
import { createServer, type Server } from "node:http";
import { Counter, Registry } from "prom-client";
import { receiverCounters, receiverCounterNames } from "./stats.js";
import { freshFor } from "../shared/fresh.js";

/** Registry whose counters are read from the load pinned at `pinDir` on every scrape. */
export function receiverRegistry(pinDir: string): Registry {
  const registry = new Registry();
  // One read of the map per scrape, shared by every family.
  const read = freshFor(100, () => receiverCounters(pinDir));
  for (const name of receiverCounterNames) {
    new Counter({
      name: `toa_${name}_total`,
      help: `toa receiver counter ${name} (summed over CPUs)`,
      registers: [registry],
      collect() {
        const c = read();
        this.reset();
        if (c) this.inc(c[name]);
      },
    });
  }
  return registry;
}

/** Serve `/metrics` on host:port; resolves once listening. */
export async function serveMetrics(pinDir: string, host: string, port: number): Promise<Server> {
  const registry = receiverRegistry(pinDir);
  const server = createServer(async (req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end("see /metrics\n");
      return;
    }
    try {
      const body = await registry.metrics();
      res.writeHead(200, { "content-type": registry.contentType }).end(body);
    } catch (e) {
      res.writeHead(500).end(`${(e as Error).message}\n`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return server;
}
