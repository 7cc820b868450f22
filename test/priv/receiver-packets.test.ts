/**
 * Which packet carries the TOA, and malformed options: scapy plays the load balancer from the
 * balancer namespace (toa-client.py) and puts exactly the option bytes a case needs into the SYN,
 * the handshake ACK or the first data segment. The Node server in the backend answers each line with
 * what getpeername() and clientAddress() say at that moment.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireRoot } from "../harness/privileged.js";
import {
  ADDR,
  counterDelta,
  crafted,
  createReceiver,
  createTopology,
  dropScapyResets,
  requireTool,
  startNodeServer,
  toaOption,
  type CraftedResult,
  type ServerReply,
} from "../harness/topology.js";
import { scaled } from "../harness/time.js";

const T = { timeout: scaled(60_000) };
const PORT = 8082;

function reply(r: CraftedResult): ServerReply {
  assert.equal(r.error, undefined, `sport ${r.sport}: ${r.error}`);
  assert.ok(r.reply, `sport ${r.sport}: no reply from the server`);
  return JSON.parse(r.reply.split("\n")[0]) as ServerReply;
}

async function scapyReady(t: Parameters<typeof requireRoot>[0]): Promise<boolean> {
  return (await requireTool(t, "/usr/bin/python3", ["-c", "import scapy"], "python3-scapy")) && (await requireTool(t, "nft", ["--version"], "nftables"));
}

test("TOA in the SYN only, in the handshake ACK only, in the first data segment only (IPv4 and IPv6)", T, async (t) => {
  if (!requireRoot(t) || !(await scapyReady(t))) return;
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  rcv.load({ syn: true }); // before the listener opens: its SYNs are saved
  const before = rcv.counters();
  await startNodeServer(topo, rcv, "::", PORT);
  await dropScapyResets(topo.balancer, [40000, 40999]);
  const v4 = { src: ADDR.lb4, dst: ADDR.backend4, dport: PORT };
  const v6 = { src: ADDR.lb6, dst: ADDR.backend6, dport: PORT };
  const results = await crafted(topo.balancer, [
    { ...v4, sport: 40001, synOptions: toaOption(254, "192.0.2.1", 1001) },
    { ...v4, sport: 40002, ackOptions: toaOption(254, "192.0.2.2", 1002) },
    { ...v4, sport: 40003, dataOptions: toaOption(254, "192.0.2.3", 1003) },
    // The ACK lost: the first data segment completes the handshake (what toa.ko reads then).
    { ...v4, sport: 40004, noAck: true, dataOptions: toaOption(254, "192.0.2.4", 1004) },
    { ...v4, sport: 40005 }, // no TOA anywhere
    { ...v6, sport: 40006, synOptions: toaOption(253, "2001:db8:99::6", 1006) },
    { ...v6, sport: 40007, ackOptions: toaOption(254, "2001:db8:99::7", 1007) },
    { ...v6, sport: 40008, dataOptions: toaOption(254, "2001:db8:99::8", 1008) },
  ]);
  const [syn, ack, data, lostAck, none, syn6, ack6, data6] = results.map(reply);
  const expect = (r: ServerReply, address: string, port: number, foundIn: string) => {
    assert.deepEqual([r.peer.address, r.peer.port], [address, port], JSON.stringify(r));
    assert.equal(r.client?.foundIn, foundIn, JSON.stringify(r));
  };
  expect(syn, "::ffff:192.0.2.1", 1001, "syn");
  expect(ack, "::ffff:192.0.2.2", 1002, "ack");
  expect(data, "::ffff:192.0.2.3", 1003, "data");
  expect(lostAck, "::ffff:192.0.2.4", 1004, "ack");
  assert.deepEqual([none.peer.address, none.peer.port, none.client], [`::ffff:${ADDR.lb4}`, 40005, null]);
  expect(syn6, "2001:db8:99::6", 1006, "syn");
  assert.equal(syn6.client?.kind, 253);
  expect(ack6, "2001:db8:99::7", 1007, "ack");
  expect(data6, "2001:db8:99::8", 1008, "data");

  const d = counterDelta(before, rcv.counters());
  t.diagnostic(`counters ${JSON.stringify(d)}`);
  assert.equal(d.syn_recv_sock_toa, 7, JSON.stringify(d));
  assert.equal(d.found_in_syn, 2, JSON.stringify(d));
  assert.equal(d.found_in_ack, 3, JSON.stringify(d));
  assert.equal(d.found_in_data, 2, JSON.stringify(d));
  // Nothing in SYN or ACK: the two data cases and the connection without TOA.
  assert.equal(d.syn_recv_sock_no_toa, 3, JSON.stringify(d));
  assert.equal(d.malformed, undefined, JSON.stringify(d));
});

test("malformed options (length 0, length 1, wrong length for the kind, running past the header) are ignored and counted; the server still works", T, async (t) => {
  if (!requireRoot(t) || !(await scapyReady(t))) return;
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  rcv.load();
  const before = rcv.counters();
  await startNodeServer(topo, rcv, "0.0.0.0", PORT);
  await dropScapyResets(topo.balancer, [40000, 40999]);
  const c = { src: ADDR.lb4, dst: ADDR.backend4, dport: PORT };
  const good = toaOption(254, "192.0.2.50", 5050);
  const cases: [string, string][] = [
    ["length 0", "fe00"],
    ["length 1", "fe01"],
    ["length 10 for kind 254", "fe0a" + "c0000201".repeat(2)],
    ["length 6 for kind 200", "c806" + "c0000201"],
    ["length 20 past the header end", "fe14" + "13880a000201"],
    ["length 40 past the header end", "fd28" + "00".repeat(14)],
  ];
  const results = await crafted(topo.balancer, [
    ...cases.map(([, hex], i) => ({ ...c, sport: 40100 + i, ackOptions: hex })),
    // A bad one then a good one: the good one is still found.
    { ...c, sport: 40199, ackOptions: "fe0a" + "c0000201".repeat(2) + "0101" + good },
  ]);
  cases.forEach(([what], i) => {
    const r = reply(results[i]);
    assert.deepEqual([r.peer.address, r.peer.port, r.client], [ADDR.lb4, 40100 + i, null], `${what}: ${JSON.stringify(r)}`);
  });
  const last = reply(results[cases.length]);
  assert.deepEqual([last.peer.address, last.peer.port], ["192.0.2.50", 5050]);

  const d = counterDelta(before, rcv.counters());
  t.diagnostic(`counters ${JSON.stringify(d)}`);
  assert.equal(d.malformed, cases.length + 1, JSON.stringify(d));
  assert.equal(d.syn_recv_sock_toa, 1, JSON.stringify(d));
  assert.equal(d.syn_recv_sock_no_toa, cases.length, JSON.stringify(d));
});

test("SYN cookies (net.ipv4.tcp_syncookies=2): the TOA of the cookie ACK is found; one only in the SYN is lost, as with toa.ko", T, async (t) => {
  if (!requireRoot(t) || !(await scapyReady(t))) return;
  const topo = await createTopology(t);
  await topo.backend.run("sysctl", ["-q", "-w", "net.ipv4.tcp_syncookies=2"]);
  const rcv = createReceiver(topo);
  rcv.load();
  const before = rcv.counters();
  await startNodeServer(topo, rcv, "::", PORT);
  await dropScapyResets(topo.balancer, [40000, 40999]);
  const v4 = { src: ADDR.lb4, dst: ADDR.backend4, dport: PORT };
  const v6 = { src: ADDR.lb6, dst: ADDR.backend6, dport: PORT };
  const [ack, ack6, syn] = (
    await crafted(topo.balancer, [
      { ...v4, sport: 40201, ackOptions: toaOption(254, "192.0.2.21", 2001) },
      { ...v6, sport: 40202, ackOptions: toaOption(254, "2001:db8:99::22", 2002) },
      { ...v4, sport: 40203, synOptions: toaOption(254, "192.0.2.23", 2003) },
    ])
  ).map(reply);
  assert.deepEqual([ack.peer.address, ack.peer.port, ack.client?.foundIn], ["::ffff:192.0.2.21", 2001, "ack"]);
  assert.deepEqual([ack6.peer.address, ack6.peer.port], ["2001:db8:99::22", 2002]);
  assert.deepEqual([syn.peer.address, syn.peer.port, syn.client], [`::ffff:${ADDR.lb4}`, 40203, null]);
  const d = counterDelta(before, rcv.counters());
  t.diagnostic(`counters ${JSON.stringify(d)}`);
  assert.equal(d.syn_recv_sock_toa, 2, JSON.stringify(d));
  assert.equal(d.syn_recv_sock_no_toa, 1, JSON.stringify(d));
  assert.equal(d.malformed, undefined, JSON.stringify(d));
});
