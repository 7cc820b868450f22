// A Node TCP server for the receiver tests (started inside the backend netns and cgroup).
// For each line received it answers, and logs to stdout, one JSON line:
//   peer: getpeername() now (through the handle, not Node's cache), remoteAddress/remotePort (Node's
//   cached first look-up), client: clientAddress(socket) from the agent API (or clientError).
// Usage: node toa-node-server.mjs '{"agent": "/abs/dist/src/agent/index.js", "pinDir": "...", "host": "::", "port": 8082}'
import net from "node:net";

const { agent, pinDir, host, port } = JSON.parse(process.argv[2]);
const api = await import(agent);

function peerNow(socket) {
  const out = {};
  const err = socket._handle?.getpeername(out);
  return err ? { error: err } : out;
}

const server = net.createServer((socket) => {
  let buf = "";
  socket.on("data", (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let client = null;
      let clientError;
      try {
        client = api.clientAddress(socket, { pinDir });
      } catch (e) {
        clientError = String(e?.message ?? e);
      }
      const reply = { peer: peerNow(socket), remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, client, clientError, line };
      const text = JSON.stringify(reply);
      process.stdout.write(text + "\n");
      socket.write(text + "\n");
    }
  });
  socket.on("error", () => {});
});
server.listen({ host, port, ipv6Only: false }, () => process.stdout.write(JSON.stringify({ event: "ready", address: server.address() }) + "\n"));
process.on("SIGTERM", () => process.exit(0));
