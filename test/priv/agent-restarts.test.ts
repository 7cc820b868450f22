/**
 * `toa agent` through restarts, with real traffic: a server in a target cgroup; the cgroup removed
 * and made again (what `systemctl restart` does) and the server started again, three times: each
 * time the agent has re-attached within a second (inotify, no manual step) and the server sees the
 * client. The same for a glob with several pod cgroups appearing at once, twice, and a target added
 * by SIGHUP; SIGTERM stops the agent and leaves the programs attached.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, rmdirSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { requireRoot, uniqueName } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { waitFor, waitForProcess } from "../harness/exec.js";
import { scaled, TIME_FACTOR } from "../harness/time.js";
import { ADDR, clientConnections, createTopology, startBalancer, startNodeServer, type Receiver, type Topology, type Host } from "../harness/topology.js";
import { attachmentHealth, unloadReceiver } from "../../src/agent/receiver.js";
import { targetPinDir } from "../../src/agent/targets.js";
import { describeAttached, findCgroup2Mount } from "../../src/bpf/index.js";

const BIN = fileURLToPath(new URL("../../src/cli/bin.js", import.meta.url));
const T = { timeout: scaled(180_000) };
const v4mapped = (a: string) => `::ffff:${a}`;

/** A parent cgroup for the test's target folders, and the agent's pin base; both removed at the end. */
function testTree(topo: Topology): { parent: string; rel: string; base: string; mount: string } {
  const mount = findCgroup2Mount();
  const parent = createTestCgroup(undefined, "toa-agt");
  // Cleanups run in reverse: pins are unloaded, then child folders and the parent removed.
  topo.cleanup(() => parent.remove());
  topo.cleanup(() => {
    const rm = (dir: string): void => {
      for (const d of readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) rm(join(dir, d.name));
      if (dir !== parent.path) rmdirSync(dir);
    };
    if (existsSync(parent.path)) rm(parent.path);
  });
  const base = `/sys/fs/bpf/${uniqueName("toa-agt")}`;
  topo.cleanup(() => {
    if (!existsSync(base)) return;
    for (const d of readdirSync(base)) unloadReceiver(join(base, d));
    rmdirSync(base);
  });
  return { parent: parent.path, rel: parent.path.slice(mount.length + 1), base, mount };
}

/** The agent, started in the backend namespace (its endpoints stay there); stopped at teardown. */
async function startAgent(topo: Topology, args: string[]) {
  const proc = topo.backend.start(process.execPath, [BIN, "agent", "--listen", "127.0.0.1:0", "--resync", "3600", ...args]);
  const line = await waitForProcess("the agent to serve", proc, () => proc.output().split("\n").find((l) => l.includes("serving /metrics")), 20_000);
  const port = (JSON.parse(line!) as { port: number }).port;
  const get = (path: string) => topo.backend.run("curl", ["-sS", "-w", "\n%{http_code}", `http://127.0.0.1:${port}${path}`]);
  return { proc, get };
}

/** Wait until the receiver at the target's pin folder is attached to the folder as it is now; returns the ms it took. */
async function attachedWithin(pinDir: string, since: number): Promise<number> {
  await waitFor(`the agent to attach ${pinDir}`, () => existsSync(pinDir) && attachmentHealth(pinDir).every((h) => h.attached), 10_000, 10);
  return Date.now() - since;
}

async function checkClient(t: { diagnostic(s: string): void }, topo: Topology, port: number, label: string): Promise<void> {
  const [r] = await clientConnections(topo, { host: ADDR.lbFront4, port }, 1);
  assert.equal(r.error, undefined, label);
  assert.deepEqual([r.reply?.peer.address, r.reply?.peer.port, r.reply?.client?.address], [v4mapped(ADDR.client4), r.localPort, ADDR.client4], label);
  t.diagnostic(`${label}: the server saw ${r.reply?.peer.address} port ${r.reply?.peer.port} (client ${ADDR.client4}:${r.localPort}), clientAddress ${r.reply?.client?.address}`);
}

const receiverAt = (cgroup: string, pinDir: string) => ({ pinDir, cgroup: { path: cgroup } }) as unknown as Receiver;

test("service restart (rmdir + mkdir of its cgroup) three times: the agent re-attaches within a second each time, TOA works with no manual step", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const tree = testTree(topo);
  const app = join(tree.parent, "app.service");
  mkdirSync(app);
  const pinDir = targetPinDir(tree.base, [...tree.rel.split("/"), "app.service"]);
  const agent = await startAgent(topo, ["--target", `${tree.rel}/app.service`, "--pin-base", tree.base, "--trust", "203.0.113.0/24"]);
  t.diagnostic(`first attach: ${await attachedWithin(pinDir, Date.now())} ms after the agent served`);
  await startBalancer(topo, [{ listen: { host: ADDR.lbFront4, port: 82 }, backend: { host: ADDR.backend4, port: 8082 } }]);
  let server = await startNodeServer(topo, receiverAt(app, pinDir), "::", 8082);
  await checkClient(t, topo, 82, "before any restart");

  for (let round = 1; round <= 3; round++) {
    await server.proc.stop();
    rmdirSync(app);
    const made = Date.now();
    mkdirSync(app);
    const ms = await attachedWithin(pinDir, made);
    t.diagnostic(`restart ${round}: re-attached ${ms} ms after mkdir`);
    assert.ok(ms < scaled(1000), `restart ${round}: attached after ${ms} ms`);
    server = await startNodeServer(topo, receiverAt(app, pinDir), "::", 8082);
    await checkClient(t, topo, 82, `after restart ${round}`);
  }
  const health = await agent.get("/healthz");
  assert.match(health, /^ok: 1 target cgroup\(s\) attached/);
  assert.match(health, /\n200$/);
  const metrics = await agent.get("/metrics");
  assert.match(metrics, /toa_agent_attach_total\{result="reattached"\} 3/);
  assert.match(metrics, new RegExp(`toa_syn_recv_sock_toa_total\\{cgroup="${app}"\\} 4`));

  // SIGTERM: the agent exits 0 and the programs stay attached.
  await agent.proc.stop();
  assert.equal(agent.proc.child.exitCode, 0, agent.proc.output());
  assert.match(agent.proc.output(), /SIGTERM: stopping; the receivers stay attached/);
  assert.equal(describeAttached(app, "CGROUP_SOCK_OPS").length, 1);
  await checkClient(t, topo, 82, "after the agent stopped");
});

test("pods: a glob with several cgroups appearing at once, twice (new container folders each time), and a target added by SIGHUP", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const tree = testTree(topo);
  const config = join(topo.dir, "agent.yaml");
  const glob = `${tree.rel}/kubepods.slice/**/cri-containerd-*.scope`;
  writeFileSync(config, `targets:\n  - "${glob}"\ntrust: [203.0.113.0/24]\npinBase: ${tree.base}\n`);
  const agent = await startAgent(topo, ["--config", config]);
  const ports = [8083, 8084, 8085];
  await startBalancer(
    topo,
    ports.map((p) => ({ listen: { host: ADDR.lbFront4, port: p - 8000 }, backend: { host: ADDR.backend4, port: p } })),
  );
  const servers: { proc: { stop(): Promise<void> } }[] = [];
  for (const gen of [1, 2]) {
    // Container folders of three pods, made at once (their pod folders too, in the first round).
    const folders = ["a", "b", "c"].map((p) => join(tree.parent, "kubepods.slice", `kubepods-pod${p}.slice`, `cri-containerd-${p}${gen}.scope`));
    const made = Date.now();
    for (const f of folders) mkdirSync(f, { recursive: true });
    const pinDirs = folders.map((f) => targetPinDir(tree.base, f.slice(tree.mount.length + 1).split("/")));
    const ms = await Promise.all(pinDirs.map((d) => attachedWithin(d, made)));
    t.diagnostic(`round ${gen}: 3 pod cgroups made at once, attached after ${ms.join(", ")} ms`);
    // Each target gets its own receiver, loaded in turn: on the host all three are in within a second.
    // Under emulation one load (the verifier's CPU work) alone takes 1-4 s, so the budget there only
    // says "no pod is left out": two scaled seconds per pod (measured under TCG with a second VM
    // running: 4.5, 6.5, 8.6 s on 5.10; 8.0, 10.1, 12.3 s on 6.12).
    const budget = TIME_FACTOR > 1 ? scaled(2000) * folders.length : 1000;
    assert.ok(Math.max(...ms) < budget, `attached after ${ms.join(", ")} ms (budget ${budget} ms)`);
    for (let i = 0; i < 3; i++) servers.push(await startNodeServer(topo, receiverAt(folders[i], pinDirs[i]), "::", ports[i]));
    for (let i = 0; i < 3; i++) await checkClient(t, topo, ports[i] - 8000, `round ${gen}, pod ${"abc"[i]}`);
    // The pods restart: their containers go, new ones come (new folder names, as the runtime makes them).
    for (const s of servers.splice(0)) await s.proc.stop();
    for (const f of folders) rmdirSync(f);
  }

  // SIGHUP: a target added to the file is watched and attached; the old ones stay.
  const extra = join(tree.parent, "extra.service");
  writeFileSync(config, `targets:\n  - "${glob}"\n  - ${tree.rel}/extra.service\ntrust: [203.0.113.0/24]\npinBase: ${tree.base}\n`);
  process.kill(agent.proc.pid, "SIGHUP");
  await waitFor("the reload", () => agent.proc.output().includes("config reloaded"));
  const made = Date.now();
  mkdirSync(extra);
  const ms = await attachedWithin(targetPinDir(tree.base, [...tree.rel.split("/"), "extra.service"]), made);
  t.diagnostic(`after SIGHUP: the added target attached ${ms} ms after mkdir`);
  const s = await startNodeServer(topo, receiverAt(extra, targetPinDir(tree.base, [...tree.rel.split("/"), "extra.service"])), "::", 8083);
  await checkClient(t, topo, 83, "added by SIGHUP");
  await s.proc.stop();
  const targets = JSON.parse((await agent.get("/targets")).replace(/\n\d+$/, "")) as { cgroup: string; state: string }[];
  assert.deepEqual(targets.filter((x) => x.state === "attached").map((x) => x.cgroup), [extra]);
  assert.equal(targets.filter((x) => x.state === "gone").length, 6, "the removed pod folders, their pins kept for --keep-gone");

  // SIGHUP with the target taken out again: the agent forgets it but detaches nothing that still exists.
  writeFileSync(config, `targets:\n  - "${glob}"\ntrust: [203.0.113.0/24]\npinBase: ${tree.base}\n`);
  process.kill(agent.proc.pid, "SIGHUP");
  await waitFor("the second reload", () => agent.proc.output().split("config reloaded").length > 2);
  assert.match(agent.proc.output(), /no target matches this cgroup any more: left attached/);
  assert.equal(describeAttached(extra, "CGROUP_SOCK_OPS").length, 1, "still attached");
});
