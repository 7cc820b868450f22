/** Programs the receiver bench runs inside the namespaces (written to files at run time). */
import { nginxConf as buildNginxConf } from "../../test/harness/nginx-conf.js";

/**
 * Python roles (C-speed loops: every socket call is one syscall, no event loop): bulk download and
 * upload counted in a wall-clock window, a getpeername() loop on accepted sockets, and idle
 * connections held open. Every client
 * socket closes with SO_LINGER 0 (RST), so no 4-tuple is left in TIME_WAIT and the registered ports
 * can be used again by the next round. Each role prints one JSON line.
 */
export const PY = String.raw`
import json, os, socket, struct, sys, time
a = json.loads(sys.argv[1])
mode = a["mode"]
LINGER0 = struct.pack("ii", 1, 0)
CHUNK = 4 << 20

def out(**kw):
    print(json.dumps(kw), flush=True)

def listen(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a["host"], port))
    s.listen(4096)
    return s

def connect(port, lport):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    c.bind((a["local"], lport))
    c.connect((a["host"], port))
    return c

def wait_close(c):
    try:
        c.recv(1)
    except OSError:
        pass

def window_count(recv):
    # Bytes moved between a["start"] and a["stop"] (wall clock, shared by both pipelines).
    got = 0
    while True:
        n = recv()
        if n == 0: break
        now = time.time()
        if now >= a["start"]: got += n
        if now >= a["stop"]: break
    return got

if mode == "down-server":
    s = listen(a["port"]); out(ready=True)
    c, _ = s.accept(); c.recv(1); mv = memoryview(bytearray(CHUNK))
    try:
        while True: c.sendall(mv)
    except OSError:
        pass
elif mode == "down-client":
    c = connect(a["port"], a["lport"]); buf = bytearray(CHUNK); c.send(b"g")
    got = window_count(lambda: c.recv_into(buf))
    out(bytes=got, mbps=got / 1e6 / (a["stop"] - a["start"])); c.close()
elif mode == "up-server":
    s = listen(a["port"]); out(ready=True)
    c, _ = s.accept(); buf = bytearray(CHUNK)
    got = window_count(lambda: c.recv_into(buf))
    out(bytes=got, mbps=got / 1e6 / (a["stop"] - a["start"]))
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0); c.close()
elif mode == "up-client":
    c = connect(a["port"], a["lport"]); mv = memoryview(bytearray(CHUNK))
    try:
        while time.time() < a["stop"] + 5: c.sendall(mv)
    except OSError:
        pass
elif mode == "gp-server":
    # One listener per cgroup: the process moves itself before each socket(), and accepted sockets
    # belong to their listener's cgroup, so the two sockets are timed in turn in one process.
    socks = []
    for l in a["listeners"]:
        with open(l["cgroup"] + "/cgroup.procs", "w") as f: f.write(str(os.getpid()))
        socks.append(listen(l["port"]))
    out(ready=True)
    conns = [ls.accept() for ls in socks]
    gps = [c.getpeername for c, _ in conns]; n = a["calls"]; times = [[] for _ in gps]
    for r in range(a["reps"]):
        for i in (range(len(gps)) if r % 2 == 0 else reversed(range(len(gps)))):
            gp = gps[i]; t0 = time.perf_counter_ns()
            for _ in range(n):
                gp()
            times[i].append((time.perf_counter_ns() - t0) / n)
    out(ns=times, accepted=["%s:%d" % p for _, p in conns], peer=["%s:%d" % g() for g in gps])
    for c, _ in conns:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0); c.close()
elif mode == "gp-client":
    cs = [connect(p, lp) for p, lp in a["pairs"]]; wait_close(cs[0])
elif mode == "mem-server":
    s = listen(a["port"]); out(ready=True); conns = []
    while len(conns) < a["n"]:
        conns.append(s.accept()[0])
    out(accepted=len(conns)); sys.stdin.readline()
    for c in conns:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0); c.close()
elif mode == "mem-client":
    out(ready=True); sys.stdin.readline()
    conns = [connect(a["port"], a["lport"] + i) for i in range(a["n"])]
    out(open=len(conns)); sys.stdin.readline()
`;

/**
 * The connection-rate client (Node, one process, `concurrency` loops): connect from a registered
 * local port, send an HTTP/1.0 request, read the response to the server's FIN, close with RST (no
 * TIME_WAIT, so the port can be reused), repeat. Counts completed exchanges in a wall-clock window
 * shared by both pipelines, and the CPU time its pipeline's two cgroups used meanwhile (read from their cpu.stat, visible since nsenter keeps /sys).
 */
export const CPS_CLIENT = `
import net from "node:net";
import { readFileSync } from "node:fs";
const a = JSON.parse(process.argv[2]);
const req = Buffer.from("GET / HTTP/1.0\\r\\nHost: bench\\r\\n\\r\\n");
const free = Array.from({ length: a.ports }, (_, i) => a.lport + i);
let done = 0, errors = 0, total = 0, counting = false;
const one = (port) => new Promise((resolve) => {
  const s = net.connect({ host: a.host, port: a.port, localAddress: a.local, localPort: port, noDelay: true });
  let got = 0;
  s.on("connect", () => s.write(req));
  s.on("data", (d) => (got += d.length));
  s.on("end", () => { s.resetAndDestroy(); resolve(got > 0); });
  s.on("error", () => { s.destroy(); resolve(false); });
});
// CPU time of both cgroups (client and server, softirq work included) over the counted window.
const cpu = () => a.cgroups.reduce((s, p) => s + Number(/^usage_usec (\\d+)/m.exec(readFileSync(p + "/cpu.stat", "utf8"))[1]), 0);
let cpu0 = 0, cpuUs = 0;
const now = Date.now();
const stopWindow = () => { if (counting) { counting = false; cpuUs = cpu() - cpu0; } };
setTimeout(() => { counting = true; cpu0 = cpu(); }, a.start - now);
const stopTimer = setTimeout(stopWindow, a.stop - now);
await Promise.all(Array.from({ length: a.concurrency }, async () => {
  while (Date.now() < a.stop) {
    const port = free.shift();
    const ok = await one(port);
    free.push(port);
    if (Date.now() >= a.stop) stopWindow();
    if (counting) ok ? done++ : errors++;
    if (ok) total++;
  }
}));
stopWindow(); clearTimeout(stopTimer);
console.log(JSON.stringify({ cps: done / ((a.stop - a.start) / 1000), done, errors, total, cpuUs }));
`;

/** nginx answering `return 200` with nothing logged per request, one process, in the foreground. */
export function nginxConf(dir: string, name: string, listen: string): string {
  return buildNginxConf({
    dir,
    name,
    masterProcess: false,
    workerConnections: 4096,
    httpExtra: "  keepalive_timeout 0;",
    servers: `  server {\n    listen ${listen} backlog=4096;\n    location / { return 200 "ok\\n"; }\n  }`,
  });
}
