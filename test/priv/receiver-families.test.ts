/**
 * The receiver end to end, per address family: a client in its own namespace goes through a full-NAT
 * proxy (the real TOA sender) to real servers in the backend namespace and cgroup, where the
 * receiver is loaded with the agent API. Each server must see the client, not the balancer:
 * nginx ($remote_addr in its access log), python3 -m http.server (its log line), a Node server
 * (socket.remoteAddress, getpeername and clientAddress()), and, for NAT64, a Python server reading
 * getsockopt(IPPROTO_IP, 4096). Counters are asserted before/after.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireRoot } from "../harness/privileged.js";
import { waitFor } from "../harness/exec.js";
import {
  ADDR,
  clientConnections,
  counterDelta,
  createReceiver,
  createTopology,
  curl,
  startBalancer,
  startNat64Server,
  startNginx,
  startNodeServer,
  startPythonHttp,
} from "../harness/topology.js";
import { scaled } from "../harness/time.js";

const T = { timeout: scaled(60_000) };

test("IPv4: nginx, python http.server and a Node server see the client through the TOA of the handshake ACK", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  rcv.load();
  const before = rcv.counters();
  const nginx = await startNginx(topo, rcv.cgroup.path, 8080);
  const py = await startPythonHttp(topo, rcv.cgroup.path, ADDR.backend4, 8081);
  const node = await startNodeServer(topo, rcv, "0.0.0.0", 8082);
  await startBalancer(topo, [
    { listen: { host: ADDR.lbFront4, port: 80 }, backend: { host: ADDR.backend4, port: 8080 } },
    { listen: { host: ADDR.lbFront4, port: 81 }, backend: { host: ADDR.backend4, port: 8081 } },
    { listen: { host: ADDR.lbFront4, port: 82 }, backend: { host: ADDR.backend4, port: 8082 } },
  ]);

  assert.match(await curl(topo, `http://${ADDR.lbFront4}/`), new RegExp(`^ok ${ADDR.client4} \\d+`));
  await waitFor("nginx access log line", () => nginx.lines().length >= 1);
  assert.match(nginx.lines()[0], new RegExp(`^${ADDR.client4.replace(/\./g, "\\.")} \\d+$`));

  await curl(topo, `http://${ADDR.lbFront4}:81/`);
  await waitFor("http.server log line", () => /"GET \/ HTTP/.test(py.output()));
  assert.match(py.output(), new RegExp(`^${ADDR.client4.replace(/\./g, "\\.")} - - .*"GET / HTTP/1.1" 200`, "m"));
  assert.doesNotMatch(py.output(), new RegExp(ADDR.lb4.replace(/\./g, "\\.")));

  const [r] = await clientConnections(topo, { host: ADDR.lbFront4, port: 82 }, 1);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.reply!.peer, { address: ADDR.client4, family: "IPv4", port: r.localPort });
  assert.equal(r.reply!.remoteAddress, ADDR.client4);
  assert.equal(r.reply!.remotePort, r.localPort);
  assert.deepEqual({ ...r.reply!.client, via: { address: r.reply!.client!.via.address } }, {
    address: ADDR.client4,
    port: r.localPort,
    family: "IPv4",
    foundIn: "ack",
    kind: 254,
    via: { address: ADDR.lb4 },
  });

  const d = counterDelta(before, rcv.counters());
  t.diagnostic(`counters ${JSON.stringify(d)}`);
  assert.equal(d.syn_recv_sock_toa, 3, JSON.stringify(d));
  assert.equal(d.found_in_ack, 3, JSON.stringify(d));
  assert.equal(d.syn_recv_sock_no_toa, undefined, JSON.stringify(d));
  assert.ok((d.getname_toa_ok ?? 0) >= 3, JSON.stringify(d));
  assert.equal(d.malformed, undefined);
  assert.equal(d.untrusted, undefined);
  assert.equal(d.nat64, undefined);
});

test("IPv6: nginx, python http.server and a Node server see the IPv6 client (TOA length 20)", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  rcv.load();
  const before = rcv.counters();
  const nginx = await startNginx(topo, rcv.cgroup.path, 8080);
  const py = await startPythonHttp(topo, rcv.cgroup.path, ADDR.backend6, 8081);
  const node = await startNodeServer(topo, rcv, ADDR.backend6, 8082);
  await startBalancer(topo, [
    { listen: { host: ADDR.lbFront6, port: 80 }, backend: { host: ADDR.backend6, port: 8080 } },
    { listen: { host: ADDR.lbFront6, port: 81 }, backend: { host: ADDR.backend6, port: 8081 } },
    { listen: { host: ADDR.lbFront6, port: 82 }, backend: { host: ADDR.backend6, port: 8082 } },
  ]);

  assert.match(await curl(topo, `http://[${ADDR.lbFront6}]/`), new RegExp(`^ok ${ADDR.client6} \\d+`));
  await waitFor("nginx access log line", () => nginx.lines().length >= 1);
  assert.match(nginx.lines()[0], new RegExp(`^${ADDR.client6} \\d+$`));

  await curl(topo, `http://[${ADDR.lbFront6}]:81/`);
  await waitFor("http.server log line", () => /"GET \/ HTTP/.test(py.output()));
  assert.match(py.output(), new RegExp(`^${ADDR.client6} - - .*"GET / HTTP/1.1" 200`, "m"));

  const [r] = await clientConnections(topo, { host: ADDR.lbFront6, port: 82 }, 1);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.reply!.peer, { address: ADDR.client6, family: "IPv6", port: r.localPort });
  assert.equal(r.reply!.client?.address, ADDR.client6);
  assert.equal(r.reply!.client?.family, "IPv6");
  assert.equal(r.reply!.client?.via.address, ADDR.lb6);
  assert.equal(node.replies().length, 1);

  const d = counterDelta(before, rcv.counters());
  t.diagnostic(`counters ${JSON.stringify(d)}`);
  assert.equal(d.syn_recv_sock_toa, 3, JSON.stringify(d));
  assert.equal(d.found_in_ack, 3, JSON.stringify(d));
  assert.ok((d.getname_toa_ok ?? 0) >= 3, JSON.stringify(d));
  assert.equal(d.nat64, undefined);
  assert.equal(d.malformed, undefined);
});

test("dual-stack: a Node server on :: sees ::ffff:<client> for an IPv4 TOA and the IPv6 client for IPv6", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  rcv.load();
  const before = rcv.counters();
  const node = await startNodeServer(topo, rcv, "::", 8082);
  await startBalancer(topo, [
    { listen: { host: ADDR.lbFront4, port: 82 }, backend: { host: ADDR.backend4, port: 8082 } },
    { listen: { host: ADDR.lbFront6, port: 82 }, backend: { host: ADDR.backend6, port: 8082 } },
    { listen: { host: ADDR.lbFront6, port: 83 }, backend: { host: ADDR.backend4, port: 8082 } },
  ]);

  const [r4] = await clientConnections(topo, { host: ADDR.lbFront4, port: 82 }, 1);
  assert.equal(r4.error, undefined);
  assert.deepEqual(r4.reply!.peer, { address: `::ffff:${ADDR.client4}`, family: "IPv6", port: r4.localPort });
  assert.equal(r4.reply!.remoteAddress, `::ffff:${ADDR.client4}`);
  assert.equal(r4.reply!.client?.address, ADDR.client4);
  assert.equal(r4.reply!.client?.family, "IPv4");
  assert.equal(r4.reply!.client?.port, r4.localPort);
  assert.equal(r4.reply!.client?.via.address, `::ffff:${ADDR.lb4}`);

  const [r6] = await clientConnections(topo, { host: ADDR.lbFront6, port: 82 }, 1);
  assert.equal(r6.error, undefined);
  assert.deepEqual(r6.reply!.peer, { address: ADDR.client6, family: "IPv6", port: r6.localPort });
  assert.equal(r6.reply!.client?.address, ADDR.client6);

  // An IPv6 client over an IPv4 balancer connection to the same AF_INET6 socket: no NAT64 problem
  // here, getpeername carries it.
  const [r64] = await clientConnections(topo, { host: ADDR.lbFront6, port: 83 }, 1);
  assert.equal(r64.error, undefined);
  assert.deepEqual(r64.reply!.peer, { address: ADDR.client6, family: "IPv6", port: r64.localPort });
  assert.equal(r64.reply!.client?.via.address, `::ffff:${ADDR.lb4}`);
  assert.equal(node.replies().length, 3);

  const d = counterDelta(before, rcv.counters());
  t.diagnostic(`counters ${JSON.stringify(d)}`);
  assert.equal(d.syn_recv_sock_toa, 3, JSON.stringify(d));
  assert.equal(d.nat64, undefined, JSON.stringify(d));
  assert.ok((d.getname_toa_ok ?? 0) >= 3, JSON.stringify(d));
  assert.equal(d.getname_toa_mismatch, undefined);
});

test("NAT64: an IPv6 client in the TOA of an IPv4 connection: getpeername unchanged, getsockopt(IPPROTO_IP, 4096) and clientAddress() give the client", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  rcv.load();
  const before = rcv.counters();
  const py = await startNat64Server(topo, rcv, 8083);
  const node = await startNodeServer(topo, rcv, "0.0.0.0", 8082);
  await startBalancer(topo, [
    { listen: { host: ADDR.lbFront6, port: 83 }, backend: { host: ADDR.backend4, port: 8083 } },
    { listen: { host: ADDR.lbFront4, port: 83 }, backend: { host: ADDR.backend4, port: 8083 } },
    { listen: { host: ADDR.lbFront6, port: 82 }, backend: { host: ADDR.backend4, port: 8082 } },
  ]);

  const [p] = await clientConnections(topo, { host: ADDR.lbFront6, port: 83 }, 1);
  assert.equal(p.error, undefined);
  assert.equal(p.reply!.clientError, undefined);
  assert.equal(p.reply!.peer.address, ADDR.lb4, "getpeername of an AF_INET socket can't carry an IPv6 client: unchanged");
  assert.deepEqual(p.reply!.nat64, { address: ADDR.client6, port: p.localPort });

  // An IPv4 client (IPv4 TOA): no NAT64 answer, the kernel's own error stays.
  const [p4] = await clientConnections(topo, { host: ADDR.lbFront4, port: 83 }, 1);
  assert.equal(p4.error, undefined);
  assert.equal(p4.reply!.peer.address, ADDR.client4);
  assert.equal(p4.reply!.nat64, null);
  assert.match(p4.reply!.clientError ?? "", /errno 92/, "ENOPROTOOPT, as without the program");

  const [n] = await clientConnections(topo, { host: ADDR.lbFront6, port: 82 }, 1);
  assert.equal(n.error, undefined);
  assert.equal(n.reply!.peer.address, ADDR.lb4);
  assert.equal(n.reply!.client?.address, ADDR.client6);
  assert.equal(n.reply!.client?.family, "IPv6");
  assert.equal(n.reply!.client?.port, n.localPort);
  assert.equal(node.replies().length, 1);
  assert.equal(py.replies().length, 2);

  const d = counterDelta(before, rcv.counters());
  t.diagnostic(`counters ${JSON.stringify(d)}`);
  assert.equal(d.syn_recv_sock_toa, 3, JSON.stringify(d));
  assert.equal(d.nat64, 2, JSON.stringify(d));
  assert.equal(d.nat64_lookup_ok, 1, JSON.stringify(d));
  assert.ok((d.getname_toa_mismatch ?? 0) >= 2, JSON.stringify(d));
  assert.ok((d.getname_toa_ok ?? 0) >= 1, JSON.stringify(d));
});
