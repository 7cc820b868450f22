/**
 * The packet path outlives its process: pinned per instance, adopted by the next start, left serving
 * on SIGTERM and while no process runs, swapped under traffic by a build with other program bytes,
 * refused by a build with another table layout; two instances on one host; overlapping source ports
 * refused; the explicit removal. Real python clients and servers in the three-namespace topology,
 * IPv4 and IPv6; the balancer runs in the host's mount namespace (nsenter), as under systemd.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";
import { requireRoot } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { exitedWithin, sh, waitFor, type Started } from "../harness/exec.js";
import { scaled, TIME_FACTOR } from "../harness/time.js";
import { ADDR, createTopology, devices, lbStatus, startLb, TOA_BIN, type Topology, writeConfig } from "../../bench/lb/topology.js";
import { defaultPinDir } from "../../src/lb/packet/instance-name.js";

/** An echo server on port 7 and a bulk sender on port 9 (100 MB of seeded bytes), v4 and v6, on backend `i`. */
function startServers(t: Parameters<typeof createTopology>[0], topo: Topology, i: number, bulkMb: number): Started {
  return topo.backends.start(t as never, "/usr/bin/python3", ["-u", "-c", `
import socket, threading, random
CHUNK = random.Random(7).randbytes(1 << 20)
def serve(fam, addr, port, fn):
    s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(128)
    def loop():
        while True:
            c, _ = s.accept(); threading.Thread(target=fn, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
def echo(c):
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
def bulk(c):
    for _ in range(${bulkMb}): c.sendall(CHUNK)
    c.close()
for fam, addr in ((socket.AF_INET, "${ADDR.backend4[i]}"), (socket.AF_INET6, "${ADDR.backend6[i]}")):
    serve(fam, addr, 7, echo); serve(fam, addr, 9, bulk)
print("listening", flush=True)
threading.Event().wait()
`]);
}

/**
 * The client: holds `idle` connections per family to :7, and on each command line answers one JSON
 * line. ping: every idle connection echoes a line; new: one new connection per family echoes;
 * bulk: start reading 100 MB from :9 at a bounded rate; bulk?: the transfer's state.
 */
const CLIENT = String.raw`
import socket, sys, json, threading, time, random, hashlib
vip4, vip6, idle, mb, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
def conn(fam, addr, port):
    return socket.create_connection((addr, port), timeout=10)
conns = [conn(socket.AF_INET, vip4, 7) for _ in range(idle)] + [conn(socket.AF_INET6, vip6, 7) for _ in range(idle)]
errors = []
def echo_ok(c, tag):
    msg = ("%s-%d\n" % (tag, random.getrandbits(32))).encode()
    c.sendall(msg); got = b""
    while len(got) < len(msg):
        d = c.recv(100)
        if not d: raise ConnectionError("closed")
        got += d
    return got == msg
bulk = {"state": "idle", "bytes": 0}
def reader():
    bulk["state"] = "running"
    try:
        c = socket.create_connection((vip4, 9), timeout=30)
        h = hashlib.sha256(); n = 0; t0 = time.time()
        while True:
            d = c.recv(65536)
            if not d: break
            h.update(d); n += len(d); bulk["bytes"] = n
            # Bounded rate, so the transfer spans the restarts.
            ahead = n / (rate * 1e6) - (time.time() - t0)
            if ahead > 0: time.sleep(ahead)
        want = hashlib.sha256(random.Random(7).randbytes(1 << 20) * mb).hexdigest()
        bulk.update(state="done", ok=(h.hexdigest() == want), seconds=time.time() - t0)
    except Exception as e:
        bulk.update(state="failed", error="%s: %s" % (type(e).__name__, e))
print(json.dumps({"ready": len(conns)}), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    try:
        if cmd == "ping":
            bad = []
            for i, c in enumerate(conns):
                try:
                    if not echo_ok(c, "ping"): bad.append("%d: wrong echo" % i)
                except Exception as e:
                    bad.append("%d: %s: %s" % (i, type(e).__name__, e))
            print(json.dumps({"ok": len(conns) - len(bad), "bad": bad}), flush=True)
        elif cmd == "new":
            out = {}
            for fam, addr in ((socket.AF_INET, vip4), (socket.AF_INET6, vip6)):
                try:
                    c = conn(fam, addr, 7); out[addr] = echo_ok(c, "new"); c.close()
                except Exception as e:
                    out[addr] = "%s: %s" % (type(e).__name__, e)
            print(json.dumps(out), flush=True)
        elif cmd == "bulk":
            threading.Thread(target=reader, daemon=True).start(); print(json.dumps({"started": True}), flush=True)
        elif cmd == "bulk?":
            print(json.dumps(bulk), flush=True)
    except Exception as e:
        print(json.dumps({"error": str(e)}), flush=True)
`;

/** A line-by-line JSON conversation with the client process. */
function conversation(p: Started) {
  let seen = 0;
  const lines = () => p.output().split("\n").filter((l) => l.startsWith("{"));
  return async (cmd?: string): Promise<any> => {
    if (cmd) (p.child as ChildProcess).stdin!.write(`${cmd}\n`);
    const line = await waitFor(`client answer to ${cmd ?? "start"}`, () => (lines().length > seen ? lines()[seen] : undefined), scaled(30_000));
    seen++;
    return JSON.parse(line!);
  };
}

/** A copy of the build whose nat-layout or nat program differs: a second build to upgrade to. */
function variantBuild(t: { after(fn: () => void): void }, name: string, file: string, edit: (js: string) => string): string {
  const dist = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
  const root = join(dist, `variant-${name}-${process.pid}`);
  mkdirSync(root, { recursive: true });
  t.after(() => rmSync(root, { recursive: true, force: true }));
  cpSync(join(dist, "src"), join(root, "src"), { recursive: true });
  const path = join(root, "src", file);
  const before = readFileSync(path, "utf8");
  const after = edit(before);
  assert.notEqual(after, before, `the variant edit changed nothing in ${file}`);
  writeFileSync(path, after);
  return join(root, "src/cli/bin.js");
}

const IDLE = 10;

test("packet path through SIGKILL, no process, restarts, an upgrade and a refused layout: no connection lost (IPv4 and IPv6)", async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const servers = startServers(t, topo, 0, 100);
  await waitFor("servers", () => servers.output().includes("listening"));
  // The v4 echo listener writes the TOA (the echo server ignores the option), the v6 one and the bulk
  // transfer plain full NAT.
  const config = writeConfig(topo, "lb-restart.yaml", `
admin: ${ADDR.lb4}:9100
dataPath: packet
listeners:
  - { name: echo4, listen: "${ADDR.lb4}:7", pool: echo4, mode: toa }
  - { name: echo6, listen: "[${ADDR.lb6}]:7", pool: echo6, mode: none }
  - { name: bulk4, listen: "${ADDR.lb4}:9", pool: bulk4, mode: none }
pools:
  echo4: { backends: [ "${ADDR.backend4[0]}:7" ] }
  echo6: { backends: [ "[${ADDR.backend6[0]}]:7" ] }
  bulk4: { backends: [ "${ADDR.backend4[0]}:9" ] }
`);
  const instance = `rs-${process.pid.toString(36)}`;
  const pinDir = defaultPinDir(instance);
  const admin = `${ADDR.lb4}:9100`;
  const startAt = async (bin = TOA_BIN) => {
    const t0 = Date.now();
    const lb = await startLb(t, topo, ["--config", config, "--instance", instance], [admin], { hostMounts: true, bin });
    return { lb, ms: Date.now() - t0 };
  };
  const counters = async () => (await lbStatus(topo, admin)).packet!;

  const first = await startAt();
  const fresh = await counters();
  assert.equal(fresh.instance.adopted, false);
  assert.equal(fresh.instance.name, instance);
  assert.ok(existsSync(join(pinDir, "nat_meta")) && existsSync(join(pinDir, "nat_flows")), "the instance is pinned");

  const client = topo.client.start(t, "/usr/bin/python3", ["-u", "-c", CLIENT, ADDR.lb4, ADDR.lb6, String(IDLE), "100", String(TIME_FACTOR > 1 ? 2 : 4)], { stdio: ["pipe", "pipe", "pipe"] });
  const say = conversation(client);
  assert.deepEqual(await say(), { ready: 2 * IDLE });
  const allPing = async (when: string) => {
    const r = await say("ping");
    assert.deepEqual(r, { ok: 2 * IDLE, bad: [] }, `${when}: every idle connection echoes`);
  };
  const newServed = async (when: string) => {
    const r = await say("new");
    assert.deepEqual(r, { [ADDR.lb4]: true, [ADDR.lb6]: true }, `${when}: a new connection is served`);
  };
  await allPing("at start");
  assert.deepEqual(await say("bulk"), { started: true });

  // 1. SIGKILL: nothing runs for 5 s; open connections keep flowing, new ones are served.
  process.kill(first.lb.proc.pid, "SIGKILL");
  await first.lb.proc.exited;
  const killedAt = Date.now();
  await allPing("with no process");
  await newServed("with no process");
  await new Promise((r) => setTimeout(r, Math.max(0, 5000 - (Date.now() - killedAt))));
  await allPing("after 5 s with no process");
  assert.equal((await say("bulk?")).state, "running", "the bulk transfer goes on with no process");

  // 2. Start again: the instance is adopted, its counters continue.
  const second = await startAt();
  const adopted = await counters();
  assert.equal(adopted.instance.adopted, true);
  assert.equal(adopted.instance.adoptions, 1);
  assert.equal(adopted.instance.createdMs, fresh.instance.createdMs);
  assert.ok(adopted.counters.flows_created >= 2 * IDLE + 2 + 1, `counters continue: ${adopted.counters.flows_created} connections created`);
  assert.match(second.lb.proc.output(), /adopted instance/);
  await allPing("after the adopting start");
  await newServed("after the adopting start");

  // 3. SIGTERM (systemctl stop/restart): exits at once, leaving the data path serving; start again.
  process.kill(second.lb.proc.pid, "SIGTERM");
  assert.equal(await exitedWithin("toa lb (SIGTERM)", second.lb.proc, 10_000), 0);
  await allPing("after SIGTERM");
  const third = await startAt();
  await allPing("after SIGTERM and start");

  // 4. Upgrade to a build whose program differs (bytes, not layout): swapped under traffic.
  const programVariant = variantBuild(t, "prog", "programs/nat/index.js", (js) => js.replace("mov(R6, R1),", "mov(R6, R1), mov(R0, 0), mov(R0, 0),"));
  process.kill(third.lb.proc.pid, "SIGTERM");
  assert.equal(await exitedWithin("toa lb (SIGTERM)", third.lb.proc, 10_000), 0);
  const before = (await counters().catch(() => adopted)).instance.programTag;
  const upgraded = await startAt(programVariant);
  const up = await counters();
  assert.notEqual(up.instance.programTag, before, "the upgrade swapped another program in");
  assert.match(upgraded.lb.proc.output(), new RegExp(`program ${before} → ${up.instance.programTag}`));
  await allPing("after the upgrade");
  await newServed("after the upgrade");

  // 5. A build whose table layout differs refuses to adopt, names both layouts and the way out, and
  //    changes nothing: the instance serves on.
  const layoutVariant = variantBuild(t, "layout", "programs/nat-layout.js", (js) => js.replace("export const MAX_SERVICES = 64;", "export const MAX_SERVICES = 32;"));
  process.kill(upgraded.lb.proc.pid, "SIGTERM");
  assert.equal(await exitedWithin("toa lb (SIGTERM)", upgraded.lb.proc, 10_000), 0);
  const refused = await startLb(t, topo, ["--config", config, "--instance", instance], [], { hostMounts: true, bin: layoutVariant, waitRunning: false });
  assert.equal(await exitedWithin("the other layout's toa lb", refused.proc, 30_000), 1);
  assert.match(refused.proc.output(), /has table layout 1 \([0-9a-f]{16}\), this build has layout 1 \([0-9a-f]{16}\)/);
  assert.match(refused.proc.output(), /toa lb remove --pin-dir/);
  assert.ok(existsSync(join(pinDir, "nat_meta")), "the refused start left the instance in place");
  await allPing("after the refused layout");
  await newServed("after the refused layout");

  // 6. Back to this build (a downgrade is an upgrade too).
  const back = await startAt();
  await allPing("after going back");
  const bulk = await waitFor("the bulk transfer", async () => {
    const b = await say("bulk?");
    return b.state === "running" ? undefined : b;
  }, scaled(120_000), 500);
  assert.equal(bulk.state, "done", JSON.stringify(bulk));
  assert.equal(bulk.ok, true, "100 MB arrived with the right checksum");
  const end = await counters();
  assert.equal(end.counters.redirect_failed, 0);
  assert.equal(end.instance.adoptions, 4, "adopted by each of the 4 starts after the first (the refused one changed nothing)");
  t.diagnostic(`start to serving: fresh ${first.ms} ms, adopted ${second.ms} ms (toa lb's own figures: ${[first, second].map((s) => /serving (\d+) ms after start/.exec(s.lb.proc.output())?.[1]).join(" and ")} ms); bulk took ${bulk.seconds.toFixed(1)} s`);
  assert.ok(back.lb.proc.output().includes("adopted instance"));
});

/** Program ids on the ingress of the balancer's devices (tcx and classic filters), read inside its namespace. */
async function attachedPrograms(topo: Topology): Promise<number[]> {
  const bpf = resolve(dirname(TOA_BIN), "../bpf/index.js");
  const out = await sh("nsenter", [`--net=/run/netns/${topo.balancer.name}`, process.execPath, "--input-type=module", "-e", `
const b = await import(${JSON.stringify(bpf)});
const ids = [];
for (const dev of ${JSON.stringify(await devices(topo.balancer))}) {
  const i = b.ifindexOf(dev);
  ids.push(...b.queryTcx(i, "ingress").programIds);
  try { ids.push(...b.listTcFilters(i, "ingress").map((f) => f.programId)); } catch {}
}
console.log(JSON.stringify(ids));
`]);
  return JSON.parse(out.trim()) as number[];
}

test("two packet-path instances on one host both serve; `toa lb remove` drains one and takes away only its own", async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const s0 = startServers(t, topo, 0, 1);
  const s1 = startServers(t, topo, 1, 1);
  await waitFor("servers", () => s0.output().includes("listening") && s1.output().includes("listening"));
  const a = await startLb(t, topo, ["--listen", `${ADDR.lb4}:7`, "--backend", `${ADDR.backend4[0]}:7`, "--data-path", "packet", "--mode", "none", "--admin", `${ADDR.lb4}:9100`], [`${ADDR.lb4}:9100`], { hostMounts: true });
  const b = await startLb(
    t,
    topo,
    ["--listen", `${ADDR.lb4}:8`, "--backend", `${ADDR.backend4[1]}:7`, "--data-path", "packet", "--mode", "none", "--admin", `${ADDR.lb4}:9101`, "--drain-timeout", "30s"],
    [`${ADDR.lb4}:9101`],
    { hostMounts: true },
  );
  const echo = (port: number) =>
    topo.client.run("/usr/bin/python3", ["-c", `
import socket
try:
    c = socket.create_connection(("${ADDR.lb4}", ${port}), timeout=3); c.sendall(b"hi"); print(c.recv(10).decode())
except ConnectionRefusedError:
    print("refused")
`]);
  // Both serve, whichever of the two programs runs first on the device.
  assert.equal((await echo(7)).trim(), "hi");
  assert.equal((await echo(8)).trim(), "hi");
  const idA = (await lbStatus(topo, `${ADDR.lb4}:9100`)).packet!.instance.programTag;
  assert.ok(idA);

  // An open connection to B, then B's process stops: `toa lb remove` stops new connections to B,
  // waits for the open one, then takes B away.
  const held = topo.client.start(t, "/usr/bin/python3", ["-u", "-c", `
import socket, sys
c = socket.create_connection(("${ADDR.lb4}", 8), timeout=5)
c.sendall(b"one"); print("echo", c.recv(10).decode(), flush=True)
sys.stdin.readline()
c.sendall(b"two"); print("echo", c.recv(10).decode(), flush=True)
c.close()
`], { stdio: ["pipe", "pipe", "pipe"] });
  await waitFor("first echo", () => held.output().includes("echo one"));
  process.kill(b.proc.pid, "SIGTERM");
  assert.equal(await exitedWithin("instance B's process", b.proc, 10_000), 0);
  const remove = topo.balancer.start(t, process.execPath, [TOA_BIN, "lb", "remove", "--instance", b.instance, "--json"], { hostMounts: true });
  await waitFor("remove to drain", () => {
    if (remove.child.exitCode !== null) throw new Error(`toa lb remove exited ${remove.child.exitCode}: ${remove.output()}`);
    return remove.output().includes("draining instance");
  }, scaled(10_000));
  assert.equal((await echo(8)).trim(), "refused", "new connections to B are refused while it drains");
  assert.equal((await echo(7)).trim(), "hi", "A serves on");
  (held.child as ChildProcess).stdin!.write("go\n");
  await waitFor("second echo", () => held.output().includes("echo two"));
  assert.equal(await exitedWithin("toa lb remove", remove, 30_000), 0, remove.output());
  const report = JSON.parse(remove.output().slice(remove.output().indexOf("{")));
  assert.equal(report.found, true);
  assert.equal(report.openAtStart, 1);
  assert.equal(report.cutAtDeadline, 0);
  assert.ok(report.drainMs < scaled(25_000), `drained when the connection closed, not at the deadline: ${report.drainMs} ms`);

  // Nothing of B is left; A is untouched and still serving.
  assert.equal(existsSync(defaultPinDir(b.instance)), false, "B's pin folder is gone");
  assert.ok(existsSync(join(defaultPinDir(a.instance), "nat_meta")), "A's pins are untouched");
  const attached = await attachedPrograms(topo);
  const progA = (await lbStatus(topo, `${ADDR.lb4}:9100`)).packet!;
  assert.equal(attached.length, (await devices(topo.balancer)).length, `one program per device, A's: ${JSON.stringify(attached)}`);
  assert.equal(new Set(attached).size, 1, `only A's program is attached: ${JSON.stringify(attached)} (A: ${progA.instance.programTag})`);
  assert.equal((await echo(7)).trim(), "hi");
  assert.equal((await echo(8)).trim(), "refused");
  // A second removal finds nothing.
  const again = await topo.balancer.run(process.execPath, [TOA_BIN, "lb", "remove", "--instance", b.instance]);
  assert.match(again, /nothing to remove/);
});

test("a JS relay in toa mode and a packet path with one source range towards one backend: the second start is refused, naming both", async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const s0 = startServers(t, topo, 0, 1);
  await waitFor("servers", () => s0.output().includes("listening"));
  const cg = createTestCgroup(t, "toa-lb-claims");
  const relay = await startLb(t, topo, ["--listen", `${ADDR.lb4}:7`, "--backend", `${ADDR.backend4[0]}:7`, "--mode", "toa", "--cgroup", cg.path], [`${ADDR.lb4}:7`], { cgroup: cg.path });
  const packet = await startLb(t, topo, ["--listen", `${ADDR.lb4}:8`, "--backend", `${ADDR.backend4[0]}:7`, "--data-path", "packet", "--mode", "none"], [], { hostMounts: true, waitRunning: false });
  assert.equal(await exitedWithin("the overlapping packet path", packet.proc, 30_000), 1);
  const out = packet.proc.output();
  assert.match(out, new RegExp(`local ports 10000-32767 towards ${ADDR.backend4[0].replace(/\./g, "\\.")}:7`));
  assert.match(out, new RegExp(`instance "${relay.instance}" \\(pid ${relay.proc.pid}\\)`));
  assert.match(out, /JS relay, toa mode/);
  assert.equal(existsSync(defaultPinDir(packet.instance)), false, "the refused start pinned nothing");
  // Apart ranges: both run.
  const apart = await startLb(t, topo, ["--listen", `${ADDR.lb4}:8`, "--backend", `${ADDR.backend4[0]}:7`, "--data-path", "packet", "--mode", "none", "--source-ports", "40000-40999", "--admin", `${ADDR.lb4}:9102`], [`${ADDR.lb4}:9102`], { hostMounts: true });
  assert.ok(apart.proc.child.exitCode === null);
});
