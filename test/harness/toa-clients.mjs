// Client load for the receiver tests (started in the client netns): `count` connections to target,
// at most `concurrency` at once; each sends one line, reads one JSON line back and closes.
// Prints a JSON array: [{localAddress, localPort, reply | error}].
// Usage: node toa-clients.mjs '{"target": {"host": "198.51.100.1", "port": 80}, "count": 10, "concurrency": 2, "intervalMs": 0}'
// With "hold": true, one connection stays open: each line on stdin is sent, each reply printed as a
// JSON line {localPort, reply}; the connection closes when stdin ends.
import net from "node:net";
import readline from "node:readline";

const { target, count, concurrency, localAddress, intervalMs = 0, hold = false } = JSON.parse(process.argv[2]);

if (hold) {
  const s = net.connect({ host: target.host, port: target.port, localAddress });
  s.on("error", (e) => {
    process.stdout.write(JSON.stringify({ error: e.message }) + "\n");
    process.exit(1);
  });
  s.on("connect", () => process.stdout.write(JSON.stringify({ event: "connected", localPort: s.localPort }) + "\n"));
  readline.createInterface({ input: s }).on("line", (line) => process.stdout.write(JSON.stringify({ localPort: s.localPort, reply: JSON.parse(line) }) + "\n"));
  readline.createInterface({ input: process.stdin }).on("line", (line) => s.write(line + "\n")).on("close", () => s.end());
  s.on("close", () => process.exit(0));
} else {
  await many();
}

async function many() {

function one(i) {
  return new Promise((resolve) => {
    const s = net.connect({ host: target.host, port: target.port, localAddress });
    let buf = "";
    const result = { localAddress: "", localPort: 0 };
    const timer = setTimeout(() => {
      result.error = "timeout";
      s.destroy();
      resolve(result);
    }, 10_000);
    s.on("connect", () => {
      result.localAddress = s.localAddress;
      result.localPort = s.localPort;
      s.write(`hello ${i}\n`);
    });
    s.on("data", (d) => {
      buf += d.toString();
      const j = buf.indexOf("\n");
      if (j >= 0) {
        clearTimeout(timer);
        try {
          result.reply = JSON.parse(buf.slice(0, j));
        } catch {
          result.error = `bad reply ${buf.slice(0, j)}`;
        }
        s.end();
        resolve(result);
      }
    });
    s.on("error", (e) => {
      clearTimeout(timer);
      result.error = e.message;
      resolve(result);
    });
    s.on("close", () => {
      clearTimeout(timer);
      if (!result.reply && !result.error) result.error = "closed without a reply";
      resolve(result);
    });
  });
}

const results = new Array(count);
let next = 0;
async function worker() {
  while (next < count) {
    const i = next++;
    results[i] = await one(i);
    if (intervalMs) await new Promise((r) => setTimeout(r, intervalMs));
  }
}
await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
process.stdout.write(JSON.stringify(results) + "\n");
}
