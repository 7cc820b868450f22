// A minimal full-NAT TCP proxy playing the load balancer, with the real TOA sender (agent API): for
// each client connection on a front it picks the next local port, registers the 4-tuple with the
// client's address and port (and the front's kind), then connects to the front's backend and relays.
// Started inside the balancer netns AND the cgroup the sender attaches to (cgroupPath).
// Usage: node toa-balancer.mjs '{"agent": "...", "cgroupPath": "...", "local4": "203.0.113.1", "local6": "2001:db8:2::1",
//   "inSyn": false, "fronts": [{"listen": {"host", "port"}, "backend": {"host", "port"}, "kind": 254}]}'
import net from "node:net";

const { agent, cgroupPath, local4, local6, inSyn, fronts } = JSON.parse(process.argv[2]);
const { ToaSender } = await import(agent);
const sender = ToaSender.open({ cgroupPath, inSyn });
let nextPort = 20000;

function unmap(a) {
  return a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a;
}

function relay(front, client) {
  client.pause();
  const backendIsV6 = net.isIP(front.backend.host) === 6;
  const localAddress = backendIsV6 ? local6 : local4;
  const clientAddr = { address: unmap(client.remoteAddress), port: client.remotePort };
  const attempt = (tries) => {
    const localPort = nextPort++;
    if (nextPort > 60000) nextPort = 20000;
    const key = { localAddress, localPort, remoteAddress: front.backend.host, remotePort: front.backend.port };
    sender.register(key, clientAddr, front.kind ?? 254);
    const up = net.connect({ host: front.backend.host, port: front.backend.port, localAddress, localPort });
    up.once("error", (e) => {
      if (e.code === "EADDRINUSE" && tries > 0) return attempt(tries - 1);
      process.stdout.write(JSON.stringify({ event: "upstream-error", error: e.message }) + "\n");
      client.destroy();
    });
    up.once("connect", () => {
      up.on("error", () => client.destroy());
      client.on("error", () => up.destroy());
      client.pipe(up);
      up.pipe(client);
      client.resume();
      up.once("close", () => sender.unregister(key));
    });
  };
  attempt(20);
}

let ready = 0;
for (const front of fronts) {
  const server = net.createServer((c) => relay(front, c));
  server.listen({ host: front.listen.host, port: front.listen.port }, () => {
    if (++ready === fronts.length) process.stdout.write(JSON.stringify({ event: "ready" }) + "\n");
  });
}
process.on("SIGTERM", () => {
  process.stdout.write(JSON.stringify({ event: "sender", counters: sender.counters() }) + "\n");
  sender.close();
  process.exit(0);
});
