/**
 * Servers that defer accept until data arrives (TCP_DEFER_ACCEPT) create the connection from the
 * first data segment, not from the bare handshake ACK: Apache httpd with its Linux default
 * (`AcceptFilter http data`) and nginx with `listen ... deferred`. Both sit behind `toa lb` on
 * either data path, in a cgroup with `toa load --trust <balancer>`, and their access logs must show
 * the client, over IPv4 and IPv6: the balancer writes the TOA into the client's segments until the
 * backend has acknowledged data, so the segment that creates the connection carries it.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { requireRoot, uniqueName } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { waitFor } from "../harness/exec.js";
import { requireTool } from "../harness/topology.js";
import { nginxConf } from "../harness/nginx-conf.js";
import { ADDR, createTopology, curl, startLb, type Topology } from "../../bench/lb/topology.js";
import { run } from "../../src/cli/main.js";
import { unloadReceiver } from "../../src/agent/receiver.js";
import { receiverCounters } from "../../src/agent/stats.js";
import { scaled } from "../harness/time.js";

const T = { timeout: scaled(120_000) };
const quiet = { out: () => undefined, err: () => undefined };
const APACHE_PORT = 8081;
const NGINX_PORT = 8082;
const MODULES = "/usr/lib/apache2/modules";

/** Apache httpd (Debian's apache2) on the first backend address, logging %a; AcceptFilter left at its default. */
async function startApache(t: TestContext, topo: Topology, cgroup: string): Promise<() => string[]> {
  const dir = join(topo.dir, "apache");
  mkdirSync(join(dir, "www"), { recursive: true });
  writeFileSync(join(dir, "www", "index.html"), "apache\n");
  chmodSync(topo.dir, 0o755);
  chmodSync(dir, 0o755);
  const conf = join(dir, "httpd.conf");
  writeFileSync(
    conf,
    `ServerRoot "${dir}"
DefaultRuntimeDir "${dir}"
PidFile "${dir}/httpd.pid"
Mutex file:${dir} default
LoadModule mpm_event_module ${MODULES}/mod_mpm_event.so
LoadModule authz_core_module ${MODULES}/mod_authz_core.so
LoadModule dir_module ${MODULES}/mod_dir.so
User www-data
Group www-data
ServerName toa-test
Listen ${ADDR.backend4[0]}:${APACHE_PORT}
Listen [${ADDR.backend6[0]}]:${APACHE_PORT}
ErrorLog "${dir}/error.log"
LogFormat "%a %{remote}p \\"%r\\" %>s" toa
CustomLog "${dir}/access.log" toa
DocumentRoot "${dir}/www"
<Directory "${dir}/www">
  Require all granted
</Directory>
`,
  );
  const p = topo.backends.start(t, "apache2", ["-f", conf, "-DFOREGROUND"], { cgroup });
  await waitFor("apache to listen", async () => {
    if (p.child.exitCode !== null) throw new Error(`apache2 exited: ${p.output()} ${existsSync(join(dir, "error.log")) ? readFileSync(join(dir, "error.log"), "utf8") : ""}`);
    const ss = await topo.backends.run("ss", ["-Htln"]);
    return ss.includes(`${ADDR.backend4[0]}:${APACHE_PORT}`) && ss.includes(`[${ADDR.backend6[0]}]:${APACHE_PORT}`);
  });
  const log = join(dir, "access.log");
  return () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : []);
}

/** nginx with `listen ... deferred` (TCP_DEFER_ACCEPT), logging $remote_addr. */
async function startNginxDeferred(t: TestContext, topo: Topology, cgroup: string): Promise<() => string[]> {
  const dir = join(topo.dir, "nginx-deferred");
  mkdirSync(dir, { recursive: true });
  const log = join(dir, "access.log");
  const conf = join(dir, "nginx.conf");
  writeFileSync(
    conf,
    nginxConf({
      dir,
      accessLog: { path: log, format: '$remote_addr $remote_port "$request" $status' },
      servers: `  server {
    listen ${ADDR.backend4[0]}:${NGINX_PORT} deferred;
    listen [${ADDR.backend6[0]}]:${NGINX_PORT} deferred;
    location / { return 200 "nginx\\n"; }
  }`,
    }),
  );
  const p = topo.backends.start(t, "nginx", ["-c", conf], { cgroup });
  await waitFor("nginx to listen", async () => {
    if (p.child.exitCode !== null) throw new Error(`nginx exited: ${p.output()}`);
    return (await topo.backends.run("ss", ["-Htln"])).includes(`${ADDR.backend4[0]}:${NGINX_PORT}`);
  });
  return () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : []);
}

for (const dataPath of ["packet", "js"] as const) {
  test(`${dataPath === "packet" ? "packet path" : "JS relay"}: Apache (default AcceptFilter) and nginx (listen deferred) log the client, IPv4 and IPv6`, T, async (t) => {
    if (!requireRoot(t) || !(await requireTool(t, "apache2", ["-v"], "apache2"))) return;
    const topo = await createTopology(t);
    const cg = createTestCgroup(t, "toa-defer-be");
    const pinDir = join("/sys/fs/bpf", uniqueName("toa-defer"));
    t.after(() => unloadReceiver(pinDir));
    assert.equal(await run(["load", "--cgroup", cg.path, "--pin-dir", pinDir, "--trust", `${ADDR.lbInside4}/32,${ADDR.lbInside6}/128`], quiet), 0);
    const apache = await startApache(t, topo, cg.path);
    const nginx = await startNginxDeferred(t, topo, cg.path);
    const listeners = [APACHE_PORT, NGINX_PORT]
      .flatMap((port) => [
        `  - { name: a${port}, listen: "${ADDR.lb4}:${port}", pool: p4_${port}, mode: toa }`,
        `  - { name: b${port}, listen: "[${ADDR.lb6}]:${port}", pool: p6_${port}, mode: toa }`,
      ])
      .join("\n");
    const pools = [APACHE_PORT, NGINX_PORT]
      .flatMap((port) => [`  p4_${port}: { backends: [ "${ADDR.backend4[0]}:${port}" ] }`, `  p6_${port}: { backends: [ "[${ADDR.backend6[0]}]:${port}" ] }`])
      .join("\n");
    const file = join(topo.dir, "lb.yaml");
    writeFileSync(file, `admin: ${ADDR.lb4}:9100\ndataPath: ${dataPath}\nlisteners:\n${listeners}\npools:\n${pools}\n`);
    if (dataPath === "packet") await startLb(t, topo, ["--config", file], [`${ADDR.lb4}:9100`]);
    else {
      const lbCg = createTestCgroup(t, "toa-defer-lb");
      await startLb(t, topo, ["--config", file, "--cgroup", lbCg.path], [`${ADDR.lb4}:${APACHE_PORT}`], { cgroup: lbCg.path });
    }
    for (const port of [APACHE_PORT, NGINX_PORT]) {
      assert.match(await curl(topo, `http://${ADDR.lb4}:${port}/`), /apache|nginx/);
      assert.match(await curl(topo, `http://[${ADDR.lb6}]:${port}/`), /apache|nginx/);
    }
    const a = (await waitFor("apache's log", () => (apache().length >= 2 ? apache() : undefined)))!;
    const n = (await waitFor("nginx's log", () => (nginx().length >= 2 ? nginx() : undefined)))!;
    t.diagnostic(`apache: ${JSON.stringify(a)}; nginx: ${JSON.stringify(n)}; receiver ${JSON.stringify(receiverCounters(pinDir))}`);
    for (const [server, lines] of [["apache", a], ["nginx", n]] as const) {
      assert.deepEqual(lines.map((l) => l.split(" ")[0]), [ADDR.client4, ADDR.client6], `${server} logged the client, not the balancer (${ADDR.lbInside4} / ${ADDR.lbInside6}): ${lines.join(" | ")}`);
    }
  });
}
