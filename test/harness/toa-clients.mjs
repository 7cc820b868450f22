// Client load for the receiver tests (started in the client netns): `count` connections to target,
// at most `concurrency` at once; each sends one line, reads one JSON line back and closes.
// Prints a JSON array: [{localAddress, localPort, reply | error}].
// Usage: node toa-clients.mjs '{"target": {"host": "198.51.100.1", "port": 80}, "count": 10, "concurrency": 2}'
import net from "node:net";

const { target, count, concurrency, localAddress } = JSON.parse(process.argv[2]);

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
  }
}
await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
process.stdout.write(JSON.stringify(results) + "\n");
