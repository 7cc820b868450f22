/**
 * Operations through the real CLI: SIGHUP (and `toa lb --reload`) apply a new config while an
 * established keep-alive connection keeps working; SIGTERM drains: new clients refused, open ones
 * finish, the process exits 0 — or at the drain deadline when a client stays.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { requireRoot } from "../harness/privileged.js";
import { exitedWithin, waitFor } from "../harness/exec.js";
import { scaled } from "../harness/time.js";
import { ADDR, TOA_BIN, createTopology, curl, startLb, startNginx, writeConfig, type Topology } from "../../bench/lb/topology.js";

/** One keep-alive connection: GET, then wait for a line on stdin ("go"), GET again, print both answers. */
const KEEPALIVE = `
import net from "node:net";
import readline from "node:readline";
const { host, port, rounds } = JSON.parse(process.argv[2]);
const s = net.connect({ host, port });
const answers = [];
let buf = "";
const next = () => new Promise((resolve) => { const on = (d) => { buf += d; const m = /backend \\d/.exec(buf); if (m && buf.includes("\\n", m.index)) { s.off("data", on); answers.push(m[0]); buf = ""; resolve(); } }; s.on("data", on); });
const get = () => { s.write("GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"); return next(); };
// A connection closed before an answer is a failure to report, not a wait that never ends.
s.on("close", () => { console.log("closed by the balancer after " + answers.length + " answer(s)"); process.exit(3); });
await new Promise((r) => s.once("connect", r));
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
for (let i = 0; i < rounds; i++) {
  await get();
  console.log("answer " + answers[answers.length - 1]);
  if (i < rounds - 1) await lines.next();
}
s.removeAllListeners("close");
s.end();
console.log(JSON.stringify(answers));
process.exit(0);
`;

function keepalive(t: Parameters<typeof startLb>[0], topo: Topology, port: number, rounds: number) {
  const file = `${topo.dir}/keepalive.mjs`;
  writeFileSync(file, KEEPALIVE);
  const p = topo.client.start(t as never, process.execPath, [file, JSON.stringify({ host: ADDR.lb4, port, rounds })], { stdio: ["pipe", "pipe", "pipe"] });
  return p;
}

const yaml = (backend: number, admin = true, drainTimeout = "2s") => `${admin ? `admin: ${ADDR.lbInside4}:9100\n` : ""}drainTimeout: ${drainTimeout}
listeners:
  - { name: web, listen: "${ADDR.lb4}:80", pool: web, mode: proxy-v2 }
pools:
  web:
    backends: ["${ADDR.backend4[backend]}:80"]
`;

test("SIGHUP and toa lb --reload apply a new config; an established connection keeps its backend", async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  await startNginx(t, topo, [{ index: 0, proxyProtocol: true }, { index: 1, proxyProtocol: true }]);
  const config = writeConfig(topo, "lb.yaml", yaml(0));
  const lb = await startLb(t, topo, ["--config", config], [`${ADDR.lb4}:80`]);
  const ka = keepalive(t, topo, 80, 3);
  await waitFor("first answer", () => ka.output().includes("answer backend 0"));

  writeFileSync(config, yaml(1));
  process.kill(lb.proc.pid, "SIGHUP");
  await waitFor("reload", () => lb.proc.output().includes("reloaded"));
  assert.match(await curl(topo, `http://${ADDR.lb4}/`), /^backend 1 /);
  ka.child.stdin!.write("go\n");
  await waitFor("second answer", () => ka.output().split("answer backend 0").length === 3);

  // The CLI's --reload posts to the admin listener; a refused config keeps the running one.
  writeFileSync(config, yaml(0).replace("proxy-v2", "proxy-v9"));
  const bad = await topo.balancer.run("sh", ["-c", `${process.execPath} ${TOA_BIN} lb --reload --config ${config} 2>&1; echo exit=$?`]);
  assert.match(bad, /listeners\[0\]\.mode: must be one of toa, proxy-v1, proxy-v2, none; got "proxy-v9"[\s\S]*exit=1/);
  writeFileSync(config, yaml(0));
  const ok = await topo.balancer.run(process.execPath, [TOA_BIN, "lb", "--reload", "--config", config]);
  assert.match(ok, /reloaded .*lb\.yaml: 1 listener\(s\), 1 pool\(s\)/);
  assert.match(await curl(topo, `http://${ADDR.lb4}/`), /^backend 0 /);
  ka.child.stdin!.write("go\n");
  assert.equal(await exitedWithin("the keep-alive client", ka, 30_000), 0, ka.output());
  assert.match(ka.output(), /\["backend 0","backend 0","backend 0"\]/);
});

test("SIGTERM drains: open connections finish, new ones are refused, exit 0; the deadline closes stragglers", async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  await startNginx(t, topo, [{ index: 0, proxyProtocol: true }]);
  // The open connection must outlast the steps between SIGTERM and its last request (a curl in a
  // namespace, under emulation several seconds): with the 2 s deadline of the second half, the
  // balancer closed it first on 5.10 under qemu, and the client waited forever for its answer.
  const patient = writeConfig(topo, "lb-patient.yaml", yaml(0, false, `${Math.ceil(scaled(20_000) / 1000)}s`));
  const lb = await startLb(t, topo, ["--config", patient], [`${ADDR.lb4}:80`]);
  const ka = keepalive(t, topo, 80, 2);
  await waitFor("first answer", () => ka.output().includes("answer backend 0"));
  process.kill(lb.proc.pid, "SIGTERM");
  await waitFor("draining", () => lb.proc.output().includes("draining"));
  await assert.rejects(curl(topo, `http://${ADDR.lb4}/`, ["--max-time", "2"]), /exit 7/); // refused
  ka.child.stdin!.write("go\n");
  assert.equal(await exitedWithin("the keep-alive client", ka, 30_000), 0, ka.output());
  const t0 = Date.now();
  assert.equal(await exitedWithin("toa lb (SIGTERM)", lb.proc, 30_000), 0);
  assert.ok(Date.now() - t0 < 1000);

  // A client that never leaves: the process exits at the 2 s deadline.
  const config = writeConfig(topo, "lb.yaml", yaml(0, false));
  const lb2 = await startLb(t, topo, ["--config", config], [`${ADDR.lb4}:80`]);
  const stay = keepalive(t, topo, 80, 2);
  await waitFor("first answer", () => stay.output().includes("answer backend 0"));
  const t1 = Date.now();
  process.kill(lb2.proc.pid, "SIGTERM");
  assert.equal(await exitedWithin("toa lb (SIGTERM)", lb2.proc, 30_000), 0);
  const took = Date.now() - t1;
  assert.ok(took >= 1900 && took < 3500, `exited after ${took}ms`);
  assert.match(lb2.proc.output(), /drain deadline passed: closing 1 connection/);
});
