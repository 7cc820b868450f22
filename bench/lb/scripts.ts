/** Node scripts the lb bench runs inside the namespaces (written to files at run time). */

/**
 * The tiny backend: on 9000/9100 answers every "\n"-terminated request with "pong\n"; on 9001/9101
 * answers the first request with `BULK` bytes then closes. Ports 91xx expect a PROXY v2 header first.
 */
export const BACKEND = `
import net from "node:net";
const { host, bulk } = JSON.parse(process.argv[2]);
const block = Buffer.alloc(1 << 16, 120);
function serve(port, proxy, onRequest) {
  net.createServer({ noDelay: true }, (s) => {
    s.on("error", () => {});
    let skip = proxy ? -1 : 0; // -1: header length not known yet
    let head = Buffer.alloc(0);
    s.on("data", (d) => {
      if (skip !== 0) {
        head = Buffer.concat([head, d]);
        if (skip === -1) { if (head.length < 16) return; skip = 16 + head.readUInt16BE(14); }
        if (head.length < skip) return;
        d = head.subarray(skip); skip = 0;
      }
      for (let i = d.indexOf(10); i !== -1; i = d.indexOf(10, i + 1)) onRequest(s);
    });
  }).listen(port, host);
}
const pong = Buffer.from("pong\\n");
const ping = (s) => s.write(pong);
const send = (s) => {
  if (s.sending) return; s.sending = true;
  let left = bulk;
  const pump = () => { while (left > 0) { const n = Math.min(left, block.length); left -= n; if (!s.write(n === block.length ? block : block.subarray(0, n))) return s.once("drain", pump); } s.end(); };
  pump();
};
serve(9000, false, ping); serve(9100, true, ping); serve(9001, false, send); serve(9101, true, send);
console.log("ready");
`;

/** The client: `cps`, `bulk`, `latency` or `idle`, printing one JSON line. */
export const CLIENT = `
import net from "node:net";
const a = JSON.parse(process.argv[2]);
const connect = () => new Promise((resolve, reject) => { const s = net.connect({ host: a.host, port: a.port, noDelay: true }, () => resolve(s)); s.once("error", reject); });
const reply = (s, n = 5) => new Promise((resolve, reject) => { let got = 0; const on = (d) => { got += d.length; if (got >= n) { s.off("data", on); resolve(); } }; s.on("data", on); s.once("error", reject); });
if (a.test === "cps") {
  let done = 0, errors = 0; const until = Date.now() + a.ms;
  await Promise.all(Array.from({ length: a.concurrency }, async () => {
    while (Date.now() < until) {
      try { const s = await connect(); const r = reply(s); s.write("ping\\n"); await r; s.end(); s.destroy(); done++; } catch { errors++; }
    }
  }));
  console.log(JSON.stringify({ cps: done / (a.ms / 1000), errors }));
} else if (a.test === "bulk") {
  const t0 = process.hrtime.bigint(); const s = await connect(); let got = 0;
  await new Promise((resolve) => { s.on("data", (d) => (got += d.length)); s.on("end", resolve); s.on("error", resolve); s.write("go\\n"); });
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ bytes: got, mbps: got / 1e6 / sec }));
} else if (a.test === "latency") {
  const s = await connect(); const times = [];
  for (let i = 0; i < a.n + 200; i++) { const t0 = process.hrtime.bigint(); const r = reply(s); s.write("ping\\n"); await r; if (i >= 200) times.push(Number(process.hrtime.bigint() - t0) / 1000); }
  s.destroy(); times.sort((x, y) => x - y);
  console.log(JSON.stringify({ p50: times[Math.floor(times.length * 0.5)], p99: times[Math.floor(times.length * 0.99)] }));
} else if (a.test === "idle") {
  const sockets = [];
  for (let i = 0; i < a.n; i += 100) sockets.push(...(await Promise.all(Array.from({ length: Math.min(100, a.n - i) }, async () => { const s = await connect(); const r = reply(s); s.write("ping\\n"); await r; return s; }))));
  console.log("open");
  process.stdin.once("data", () => { for (const s of sockets) s.destroy(); console.log(JSON.stringify({ n: sockets.length })); process.exit(0); });
}
`;

/**
 * Not toa lb: the floor of a JS relay without net.Socket, for the optional "Node raw tcp_wrap relay"
 * row (RAW_FLOOR=1). Node's internal TCP handles (process.binding, deprecated), copy per read, no
 * idle timeout, no RST propagation, no metrics: a measurement of what net.Socket costs, nothing more.
 */
export const RAW_RELAY = `
const { TCP, TCPConnectWrap, constants } = process.binding("tcp_wrap");
const { WriteWrap, ShutdownWrap, kReadBytesOrError, streamBaseState } = process.binding("stream_wrap");
const [host, port, bhost, bport] = process.argv.slice(2);
const UV_EOF = -4095;
const shared = Buffer.allocUnsafe(65536);
function pipe(a, b, pair) {
  a.useUserBuffer(shared);
  a.onread = function () {
    const n = streamBaseState[kReadBytesOrError];
    if (n > 0) {
      const w = new WriteWrap(); w.handle = b; w.oncomplete = done; w.async = false;
      const copy = Buffer.allocUnsafe(n); shared.copy(copy, 0, 0, n); w.buffer = copy;
      const err = b.writeBuffer(w, copy);
      if (err) return close(pair);
      if (streamBaseState[1 /*kLastWriteWasAsync*/]) { a.readStop(); w.oncomplete = () => a.readStart(); }
      return;
    }
    if (n === UV_EOF) { const s = new ShutdownWrap(); s.handle = b; s.oncomplete = () => { if (++pair.eof === 2) close(pair); }; if (b.shutdown(s)) close(pair); a.readStop(); return; }
    if (n < 0) close(pair);
  };
  a.readStart();
}
function done() {}
function close(pair) { if (pair.closed) return; pair.closed = true; pair.c.close(); pair.b.close(); }
for (const [lport, bp] of [[port, bport], [String(+port + 1), String(+bport + 1)]]) {
  const server = new TCP(constants.SERVER);
  server.bind(host, +lport);
  server.onconnection = (err, c) => {
    if (err) return;
    c.setNoDelay(true);
    const b = new TCP(constants.SOCKET);
    const pair = { c, b, eof: 0, closed: false };
    const req = new TCPConnectWrap();
    req.oncomplete = (status) => { if (status < 0) return close(pair); b.setNoDelay(true); pipe(c, b, pair); pipe(b, c, pair); };
    req.address = bhost; req.port = +bp;
    if (b.connect(req, bhost, +bp)) close(pair);
  };
  server.listen(4096);
}
console.log("ready");
`;
