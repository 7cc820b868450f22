/**
 * The .deb on a machine without Node, as an operator uses it (inside the kernel matrix's VMs only: it
 * installs a package; build it first with `npm run package`). Every toa and dpkg command runs with
 * node unreachable: off PATH, and its binaries covered by /dev/null in a private mount namespace.
 *
 *   dpkg -i (offline) → /etc/toa/agent.yaml names a test cgroup → the agent started from the unit's
 *   own ExecStart line, as systemd would → a client's connection through a full-NAT balancer writing a
 *   TOA (the test harness's sender) is seen by nginx in that cgroup with the client's address →
 *   toa status, doctor and demo from the installed executable → dpkg --purge → no agent, no pins, no
 *   attachments on the cgroup, no file of the package, and nginx sees the balancer again.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { requireVm } from "../harness/privileged.js";
import { sh, start, waitFor, type Started } from "../harness/exec.js";
import { ADDR, createTopology, curl, startBalancer, startNginx } from "../harness/topology.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { scaled } from "../harness/time.js";
import { findCgroup2Mount, queryCgroup } from "../../src/bpf/cgroup.js";
import { Attachments } from "../../src/agent/pins.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const version = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string }).version;
const DEB = join(root, "dist", "package", `toa_${version}_${process.arch === "arm64" ? "arm64" : "amd64"}.deb`);
const PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

/** Every node binary a command could reach: ours, and any on PATH. */
function nodeBinaries(): string[] {
  const found = [process.execPath, ...PATH.split(":").map((d) => join(d, "node"))].filter((f) => existsSync(f)).map((f) => realpathSync(f));
  return [...new Set(found)];
}

/** `cmd ARGS` in a private mount namespace where every node binary is /dev/null, PATH without node. */
function noNodeArgv(cmd: string, args: string[]): [string, string[]] {
  const hide = nodeBinaries().map((f) => `mount --bind /dev/null '${f}'`).join(" && ");
  return ["unshare", ["--mount", "--propagation", "private", "--", "sh", "-c", `${hide} && exec "$@"`, "sh", cmd, ...args]];
}
const ENV = { PATH, HOME: "/root", LANG: "C.UTF-8" };

interface Ran {
  code: number;
  out: string;
}

/** Run to completion without node; never throws (the exit code is asserted). */
async function noNode(cmd: string, args: string[], timeoutMs = 60_000): Promise<Ran> {
  const [c, a] = noNodeArgv(cmd, args);
  const p = start(c, a, { env: ENV });
  const timer = setTimeout(() => void p.stop(), scaled(timeoutMs));
  const code = await p.exited;
  clearTimeout(timer);
  return { code: code ?? -1, out: p.output() };
}

const pins = (): string[] => readdirSync("/sys/fs/bpf").sort();
/**
 * man-db's switch for its dpkg trigger (its postinst: "Not building database; man-db/auto-update is
 * not 'true'"): the trigger re-reads every page of man1 (18,000 on these machines, over 9p) and takes
 * most of half an hour under the VM's emulation. toa's page is checked by the unit tests.
 */
const MAN_DB_AUTO_UPDATE = "/var/lib/man-db/auto-update";
const installed = async (): Promise<boolean> => (await sh("dpkg-query", ["-W", "-f", "${db:Status-Status}", "toa"]).catch(() => "")) === "installed";

test("the .deb without node: install offline, the agent from its unit, a TOA connection seen in the target cgroup, doctor and demo, then purge leaves nothing", { timeout: scaled(900_000) }, async (t) => {
  if (!requireVm(t)) return;
  assert.ok(existsSync(DEB), `${DEB} is missing: run \`npm run package\` before the kernel matrix`);
  t.diagnostic(`installing ${DEB.split("/").pop()} on ${process.arch}`);
  const t0 = Date.now();
  let last = t0;
  const took = (what: string): void => {
    t.diagnostic(`${what}: ${((Date.now() - last) / 1000).toFixed(1)} s (${((Date.now() - t0) / 1000).toFixed(0)} s in all)`);
    last = Date.now();
  };
  if (existsSync(MAN_DB_AUTO_UPDATE)) {
    rmSync(MAN_DB_AUTO_UPDATE);
    t.after(() => writeFileSync(MAN_DB_AUTO_UPDATE, ""));
  }
  assert.equal(await installed(), false, "toa is not installed before the test");
  const pinsBefore = pins();
  let agent: Started | undefined;
  t.after(async () => {
    await agent?.stop();
    if (await installed()) await noNode("dpkg", ["--purge", "toa"], 120_000);
  });

  // No node anywhere: the shell of that namespace cannot run it.
  const probe = await noNode("sh", ["-c", "node --version"]);
  assert.notEqual(probe.code, 0, `node ran: ${probe.out}`);

  // 1. Install, offline (the VM has no network at all).
  const install = await noNode("dpkg", ["-i", DEB], 300_000);
  assert.equal(install.code, 0, install.out);
  const files = (await sh("dpkg", ["-L", "toa"])).trim().split("\n").filter((f) => f !== "/." && existsSync(f) && !statSync(f).isDirectory());
  assert.ok(files.includes("/usr/bin/toa") && files.includes("/etc/toa/agent.yaml") && files.includes("/usr/lib/systemd/system/toa.service"), files.join(" "));
  const v = await noNode("toa", ["--version"]);
  assert.equal(v.out.trim(), version);
  took("dpkg -i");

  // 2. The operator's step: a target and the trust list in /etc/toa/agent.yaml.
  const cg = createTestCgroup(t, "toa-pkg");
  const target = relative(findCgroup2Mount(), cg.path);
  writeFileSync("/etc/toa/agent.yaml", `targets: [${target}]\ntrust: [${ADDR.lb4}/32, "${ADDR.lb6}/128"]\nlisten: 127.0.0.1:9102\n`);
  const check = await noNode("toa", ["agent", "--check", "--config", "/etc/toa/agent.yaml"]);
  assert.equal(check.code, 0, check.out);

  // 3. The agent, started as systemd would start the unit: its ExecStart line, word for word.
  const unit = readFileSync("/usr/lib/systemd/system/toa.service", "utf8");
  const execStart = /^ExecStart=(.+)$/m.exec(unit)![1].split(" ");
  assert.deepEqual(execStart, ["/usr/bin/toa", "agent", "--config", "/etc/toa/agent.yaml"]);
  const [cmd, args] = noNodeArgv(execStart[0], execStart.slice(1));
  agent = start(cmd, args, { env: ENV });
  await waitFor(
    "the agent's /healthz to say every target is attached",
    async () => {
      if (agent!.child.exitCode !== null) throw new Error(`the agent exited ${agent!.child.exitCode}: ${agent!.output()}`);
      return (await fetch("http://127.0.0.1:9102/healthz").catch(() => undefined))?.status === 200;
    },
    60_000,
    200,
  );
  took("the agent attached (healthz 200)");
  const pinDir = readdirSync("/sys/fs/bpf/toa-agent").map((d) => join("/sys/fs/bpf/toa-agent", d));
  assert.equal(pinDir.length, 1, `one pin folder for the one target: ${pinDir.join(", ")}`);

  // 4. The receiver's independent check: client → full-NAT balancer with the TOA sender → nginx in the cgroup.
  const topo = await createTopology(t);
  const nginx = await startNginx(topo, cg.path, 8080);
  await startBalancer(topo, [
    { listen: { host: ADDR.lbFront4, port: 80 }, backend: { host: ADDR.backend4, port: 8080 } },
    { listen: { host: ADDR.lbFront6, port: 80 }, backend: { host: ADDR.backend6, port: 8080 } },
  ]);
  assert.match(await curl(topo, `http://${ADDR.lbFront4}/`), new RegExp(`^ok ${ADDR.client4} \\d+`));
  assert.match(await curl(topo, `http://[${ADDR.lbFront6}]/`), new RegExp(`^ok ${ADDR.client6} \\d+`));
  await waitFor("nginx's access log", () => nginx.lines().length >= 2);
  assert.match(nginx.lines()[0], new RegExp(`^${ADDR.client4.replace(/\./g, "\\.")} \\d+$`));
  took("topology, nginx, balancer and two connections");

  // 5. The installed executable's own views: status, counters, doctor; then the demo.
  const status = await noNode("toa", ["status", "--pin-dir", pinDir[0]]);
  assert.equal(status.code, 0, status.out);
  const stats = JSON.parse((await noNode("toa", ["stats", "--json", "--pin-dir", pinDir[0]])).out) as Record<string, number>;
  assert.ok(stats.getname_toa_ok >= 2, JSON.stringify(stats));
  const doctor = await noNode("toa", ["doctor", "--pin-dir", pinDir[0]], 120_000);
  assert.equal(doctor.code, 0, doctor.out);
  took("toa status, stats, doctor");
  const demo = await noNode("toa", ["demo"], 300_000);
  assert.equal(demo.code, 0, demo.out);
  assert.match(demo.out, /IPv4 with toa load +198\.51\.100\.2:\d+ +\(the real client\) +✓/);
  assert.match(demo.out, /IPv6 with toa load +\[2001:db8:1::2\]:\d+ +\(the real client\) +✓/);
  took("toa demo");

  // 6. Purge, with the agent still running: the package stops it and unloads what it loaded.
  const purge = await noNode("dpkg", ["--purge", "toa"], 300_000);
  assert.equal(purge.code, 0, purge.out);
  took("dpkg --purge");
  assert.match(purge.out, new RegExp(`TOA: toa unloaded: detached .*from ${pinDir[0]}`));
  const exited = await Promise.race([agent.exited, new Promise((r) => setTimeout(() => r("running"), scaled(10_000)))]);
  assert.equal(exited, 0, "the agent was stopped by the package's removal (SIGTERM, exit 0)");
  assert.equal(await installed(), false);
  assert.deepEqual(files.filter((f) => existsSync(f)), [], "no file of the package is left");
  for (const dir of ["/etc/toa", "/usr/share/doc/toa", "/var/cache/toa", "/var/lib/systemd/deb-systemd-helper-enabled/toa.service.dsh-also"]) {
    assert.equal(existsSync(dir), false, `${dir} is gone`);
  }
  assert.deepEqual(pins(), pinsBefore, "no pins left under /sys/fs/bpf");
  for (const a of Attachments) assert.deepEqual(queryCgroup(cg.path, a.attachType).programIds, [], `nothing attached to ${a.attachType} on the target cgroup`);
  assert.match(await curl(topo, `http://${ADDR.lbFront4}/`), new RegExp(`^ok ${ADDR.lb4} \\d+`), "without the receiver nginx sees the balancer again");
});
