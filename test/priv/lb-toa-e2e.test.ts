/**
 * The whole system: curl in the client namespace → `toa lb` (toa mode, eBPF sender on its cgroup) →
 * nginx in the backend namespace, whose cgroup has `toa load`. nginx's own access log must show the
 * client's address, IPv4 and IPv6, and a server that speaks first must know the client at accept().
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { requireRoot, uniqueName } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { waitFor } from "../harness/exec.js";
import { ADDR, createTopology, curl, startLb, startNginx, writeConfig } from "../../bench/lb/topology.js";
import { run } from "../../src/cli/main.js";
import { receiverCounters } from "../../src/agent/stats.js";
import { unloadReceiver } from "../../src/agent/receiver.js";

const quiet = { out: () => undefined, err: () => undefined };

test("client → toa lb (toa) → nginx with toa load: nginx logs the client, IPv4 and IPv6", async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const lbCg = createTestCgroup(t, "toa-e2e-lb");
  const backendCg = createTestCgroup(t, "toa-e2e-be");
  const pinDir = join("/sys/fs/bpf", uniqueName("toa-e2e"));
  // Detach before the cgroup goes: after-hooks run in registration order, so unload first here.
  t.after(() => unloadReceiver(pinDir));
  assert.equal(await run(["load", "--cgroup", backendCg.path, "--pin-dir", pinDir, "--trust", `${ADDR.lbInside4}/32,${ADDR.lbInside6}/128`], quiet), 0);

  const nginx = await startNginx(t, topo, [{ index: 0 }], "nginx-toa", { cgroup: backendCg.path });
  // v4 listener → IPv4 backend, v6 listener → IPv6 backend, and a v4 listener → IPv6 backend, where
  // nginx's AF_INET6 socket must show the IPv4 client as ::ffff:a.b.c.d.
  const config = writeConfig(topo, "lb-e2e.yaml", `
listeners:
  - { name: v4, listen: "${ADDR.lb4}:80", pool: v4 }
  - { name: v6, listen: "[${ADDR.lb6}]:80", pool: v6 }
  - { name: mapped, listen: "${ADDR.lb4}:8080", pool: v6 }
pools:
  v4: { backends: [ { address: "${ADDR.backend4[0]}:80" } ] }
  v6: { backends: [ { address: "[${ADDR.backend6[0]}]:80" } ] }
`);
  await startLb(t, topo, ["--config", config, "--cgroup", lbCg.path], [`${ADDR.lb4}:80`, `${ADDR.lb4}:8080`], { cgroup: lbCg.path });

  for (let i = 0; i < 3; i++) {
    const body = await curl(topo, `http://${ADDR.lb4}/`);
    assert.match(body, /remote=198\.51\.100\.2 /, `${body} ${JSON.stringify(receiverCounters(pinDir))}`);
  }
  assert.match(await curl(topo, `http://[${ADDR.lb6}]/`), /remote=2001:db8:1::2 /);
  assert.match(await curl(topo, `http://${ADDR.lb4}:8080/`), /remote=::ffff:198\.51\.100\.2 /);

  const lines = (await waitFor("nginx access log", () => (nginx.lines().length >= 5 ? nginx.lines() : undefined)))!;
  assert.deepEqual(
    lines.map((l) => l.split(" ")[0]),
    ["198.51.100.2", "198.51.100.2", "198.51.100.2", "2001:db8:1::2", "::ffff:198.51.100.2"],
    "nginx's access log shows the client, never the balancer",
  );

  const c = receiverCounters(pinDir)!;
  assert.ok(c.syn_recv_sock_toa >= 5, JSON.stringify(c));
  assert.ok(c.getname_toa_ok >= 5, JSON.stringify(c));
  assert.equal(c.untrusted, 0);
});

test("a server that speaks first (SMTP-style greeting) knows the client at accept()", async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const lbCg = createTestCgroup(t, "toa-sf-lb");
  const backendCg = createTestCgroup(t, "toa-sf-be");
  const pinDir = join("/sys/fs/bpf", uniqueName("toa-sf"));
  t.after(() => unloadReceiver(pinDir));
  assert.equal(await run(["load", "--cgroup", backendCg.path, "--pin-dir", pinDir], quiet), 0);
  // Greets with the peer accept() returned, before reading anything from the client.
  const server = topo.backends.start(
    t,
    "/usr/bin/python3",
    ["-u", "-c", `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("${ADDR.backend4[0]}", 25)); s.listen(16); print("listening", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(("220 hello %s:%d\\r\\n" % peer).encode()); c.close()
`],
    { cgroup: backendCg.path },
  );
  await waitFor("greeting server", () => server.output().includes("listening"));
  await startLb(t, topo, ["--listen", `${ADDR.lb4}:25`, "--backend", `${ADDR.backend4[0]}:25`, "--cgroup", lbCg.path], [`${ADDR.lb4}:25`], { cgroup: lbCg.path });
  const greeting = await topo.client.run("/usr/bin/python3", ["-c", `
import socket
c = socket.create_connection(("${ADDR.lb4}", 25), timeout=5)
print(c.recv(200).decode().strip())
`]);
  assert.match(greeting, /^220 hello 198\.51\.100\.2:\d+$/m, greeting);
  assert.equal(receiverCounters(pinDir)!.found_in_ack, 1, "found in the handshake ACK, before any data");
});
