/**
 * Receiver settings end to end: option kinds (254, 253, 200 by default; a kind not listed is
 * ignored) and the trust list (a TOA from a source outside it is ignored and counted, including a
 * client that reaches the backend directly and forges its address).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireRoot } from "../harness/privileged.js";
import {
  ADDR,
  clientConnections,
  counterDelta,
  crafted,
  createReceiver,
  createTopology,
  dropScapyResets,
  requireTool,
  startBalancer,
  startNodeServer,
  toaOption,
  type ClientResult,
} from "../harness/topology.js";
import { scaled } from "../harness/time.js";

const T = { timeout: scaled(60_000) };

function ok(r: ClientResult): NonNullable<ClientResult["reply"]> {
  assert.equal(r.error, undefined, JSON.stringify(r));
  assert.ok(r.reply);
  return r.reply;
}

test("kinds: 254, 253 and 200 by default (IPv4 and IPv6 TOA); a kind not in `kinds` is ignored; custom kinds", T, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  rcv.load();
  await startNodeServer(topo, rcv, "::", 8082);
  const fronts = [254, 253, 200, 252].map((kind, i) => ({ listen: { host: ADDR.lbFront4, port: 80 + i }, backend: { host: ADDR.backend4, port: 8082 }, kind }));
  const fronts6 = [254, 253].map((kind, i) => ({ listen: { host: ADDR.lbFront6, port: 90 + i }, backend: { host: ADDR.backend6, port: 8082 }, kind }));
  await startBalancer(topo, [...fronts, ...fronts6]);
  const via = async (host: string, port: number) => ok((await clientConnections(topo, { host, port }, 1))[0]);

  let before = rcv.counters();
  for (const [i, kind] of [254, 253, 200].entries()) {
    const r = await via(ADDR.lbFront4, 80 + i);
    assert.equal(r.peer.address, `::ffff:${ADDR.client4}`, `kind ${kind}: ${JSON.stringify(r)}`);
    assert.equal(r.client?.kind, kind);
  }
  for (const [i, kind] of [254, 253].entries()) {
    const r = await via(ADDR.lbFront6, 90 + i);
    assert.equal(r.peer.address, ADDR.client6, `IPv6 kind ${kind}: ${JSON.stringify(r)}`);
    assert.equal(r.client?.kind, kind);
  }
  const r252 = await via(ADDR.lbFront4, 83);
  assert.deepEqual([r252.peer.address, r252.client], [`::ffff:${ADDR.lb4}`, null], "252 is not a default kind");
  let d = counterDelta(before, rcv.counters());
  t.diagnostic(`default kinds: ${JSON.stringify(d)}`);
  assert.equal(d.syn_recv_sock_toa, 5, JSON.stringify(d));
  assert.equal(d.syn_recv_sock_no_toa, 1, JSON.stringify(d));
  assert.equal(d.malformed, undefined, "an unlisted kind is not malformed");

  // Only 254: 200 and 253 are now someone else's options.
  rcv.load({ kinds: [254] });
  before = rcv.counters();
  assert.equal((await via(ADDR.lbFront4, 80)).peer.address, `::ffff:${ADDR.client4}`);
  assert.equal((await via(ADDR.lbFront4, 82)).peer.address, `::ffff:${ADDR.lb4}`);
  assert.equal((await via(ADDR.lbFront6, 91)).peer.address, ADDR.lb6);
  d = counterDelta(before, rcv.counters());
  t.diagnostic(`kinds 254: ${JSON.stringify(d)}`);
  assert.equal(d.syn_recv_sock_toa, 1, JSON.stringify(d));
  assert.equal(d.syn_recv_sock_no_toa, 2, JSON.stringify(d));

  // A custom kind (UCloud's 252).
  rcv.load({ kinds: [252] });
  before = rcv.counters();
  const c252 = await via(ADDR.lbFront4, 83);
  assert.equal(c252.peer.address, `::ffff:${ADDR.client4}`);
  assert.equal(c252.client?.kind, 252);
  assert.equal((await via(ADDR.lbFront4, 80)).peer.address, `::ffff:${ADDR.lb4}`);
  d = counterDelta(before, rcv.counters());
  assert.equal(d.syn_recv_sock_toa, 1, JSON.stringify(d));
  assert.equal(d.syn_recv_sock_no_toa, 1, JSON.stringify(d));
});

test("trust: a TOA from a source outside --trust is ignored and counted (balancer not listed; a client forging its address directly); listed sources work", T, async (t) => {
  if (!requireRoot(t)) return;
  if (!(await requireTool(t, "/usr/bin/python3", ["-c", "import scapy"], "python3-scapy"))) return;
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  rcv.load({ trust: "192.0.2.0/24,2001:db8:ff::/48" });
  await startNodeServer(topo, rcv, "::", 8082); // IPv4 connections on it: ::ffff:a.b.c.d sources
  await startNodeServer(topo, rcv, "0.0.0.0", 8084); // AF_INET
  await startBalancer(topo, [
    { listen: { host: ADDR.lbFront4, port: 82 }, backend: { host: ADDR.backend4, port: 8082 } },
    { listen: { host: ADDR.lbFront6, port: 82 }, backend: { host: ADDR.backend6, port: 8082 } },
    { listen: { host: ADDR.lbFront4, port: 84 }, backend: { host: ADDR.backend4, port: 8084 } },
  ]);
  const via = async (host: string, port: number) => ok((await clientConnections(topo, { host, port }, 1))[0]);

  // The balancer is not trusted.
  let before = rcv.counters();
  assert.equal((await via(ADDR.lbFront4, 82)).peer.address, `::ffff:${ADDR.lb4}`);
  assert.equal((await via(ADDR.lbFront6, 82)).peer.address, ADDR.lb6);
  const r84 = await via(ADDR.lbFront4, 84);
  assert.deepEqual([r84.peer.address, r84.client], [ADDR.lb4, null]);
  let d = counterDelta(before, rcv.counters());
  t.diagnostic(`untrusted balancer: ${JSON.stringify(d)}`);
  assert.equal(d.untrusted, 3, JSON.stringify(d));
  assert.equal(d.syn_recv_sock_toa, undefined, JSON.stringify(d));

  // Trust the balancer's addresses (one as a /32 host, one as a prefix).
  rcv.load({ trust: `${ADDR.lb4}/32,2001:db8:2::/64` });
  before = rcv.counters();
  assert.equal((await via(ADDR.lbFront4, 82)).peer.address, `::ffff:${ADDR.client4}`);
  assert.equal((await via(ADDR.lbFront6, 82)).peer.address, ADDR.client6);
  assert.equal((await via(ADDR.lbFront4, 84)).peer.address, ADDR.client4);
  d = counterDelta(before, rcv.counters());
  t.diagnostic(`trusted balancer: ${JSON.stringify(d)}`);
  assert.equal(d.syn_recv_sock_toa, 3, JSON.stringify(d));
  assert.equal(d.untrusted, undefined, JSON.stringify(d));

  // A client that reaches the backend directly (routed through the balancer host, not proxied)
  // and writes its own TOA claiming to be someone else: ignored.
  await dropScapyResets(topo.client, [41000, 41999]);
  before = rcv.counters();
  const forged = await crafted(topo.client, [
    { src: ADDR.client4, dst: ADDR.backend4, sport: 41001, dport: 8084, ackOptions: toaOption(254, "192.0.2.66", 6666) },
    { src: ADDR.client6, dst: ADDR.backend6, sport: 41002, dport: 8082, ackOptions: toaOption(254, "2001:db8:ff::66", 6666) },
  ]);
  const [f4, f6] = forged.map((r) => {
    assert.equal(r.error, undefined);
    assert.ok(r.reply, `no reply for sport ${r.sport}`);
    return JSON.parse(r.reply.split("\n")[0]) as NonNullable<ClientResult["reply"]>;
  });
  assert.deepEqual([f4.peer.address, f4.peer.port], [ADDR.client4, 41001]);
  assert.deepEqual([f6.peer.address, f6.peer.port], [ADDR.client6, 41002]);
  d = counterDelta(before, rcv.counters());
  t.diagnostic(`forged by a client: ${JSON.stringify(d)}`);
  assert.equal(d.untrusted, 2, JSON.stringify(d));
  assert.equal(d.syn_recv_sock_toa, undefined, JSON.stringify(d));
});
