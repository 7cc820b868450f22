/**
 * Alibaba Cloud CDN's TOA (kind 28, length 7 = [28][7][version][IPv4], length 19 for IPv6, no port)
 * when `--kinds` lists 28: the address is rewritten, the port stays the connection's own. Kind 28 is
 * also TCP User Timeout (length 4): that option is left alone and is not counted as malformed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireRoot } from "../harness/privileged.js";
import { ADDR, counterDelta, crafted, createReceiver, createTopology, dropScapyResets, requireTool, startNodeServer, type CraftedResult, type ServerReply } from "../harness/topology.js";
import { parseAddress } from "../../src/wire/addr.js";
import { scaled } from "../harness/time.js";

const PORT = 8083;

function cdnOption(address: string): string {
  const a = Buffer.from(parseAddress(address).bytes);
  return Buffer.concat([Buffer.from([28, 2 + 1 + a.length, 1]), a]).toString("hex");
}

function reply(r: CraftedResult): ServerReply {
  assert.equal(r.error, undefined, `sport ${r.sport}: ${r.error}`);
  assert.ok(r.reply, `sport ${r.sport}: no reply`);
  return JSON.parse(r.reply.split("\n")[0]) as ServerReply;
}

test("kind 28 (Alibaba CDN, no port): IPv4 and IPv6 addresses taken, port kept; User Timeout ignored", { timeout: scaled(60_000) }, async (t) => {
  if (!requireRoot(t)) return;
  if (!(await requireTool(t, "/usr/bin/python3", ["-c", "import scapy"], "python3-scapy")) || !(await requireTool(t, "nft", ["--version"], "nftables"))) return;
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  rcv.load({ kinds: [254, 28] });
  const before = rcv.counters();
  await startNodeServer(topo, rcv, "::", PORT);
  await dropScapyResets(topo.balancer, [41000, 41999]);
  const v4 = { src: ADDR.lb4, dst: ADDR.backend4, dport: PORT };
  const v6 = { src: ADDR.lb6, dst: ADDR.backend6, dport: PORT };
  const [cdn4, cdn6, uto] = (
    await crafted(topo.balancer, [
      { ...v4, sport: 41001, ackOptions: cdnOption("192.0.2.28") },
      { ...v6, sport: 41002, ackOptions: cdnOption("2001:db8:28::1") },
      { ...v4, sport: 41003, ackOptions: "1c048001" }, // User Timeout, 1 minute
    ])
  ).map(reply);
  assert.deepEqual([cdn4.peer.address, cdn4.peer.port], ["::ffff:192.0.2.28", 41001], JSON.stringify(cdn4));
  assert.equal(cdn4.client?.kind, 28);
  assert.equal(cdn4.client?.port, 0, "the option carries no port");
  assert.deepEqual([cdn6.peer.address, cdn6.peer.port], ["2001:db8:28::1", 41002], JSON.stringify(cdn6));
  assert.deepEqual([uto.peer.address, uto.client], [`::ffff:${ADDR.lb4}`, null], JSON.stringify(uto));
  const d = counterDelta(before, rcv.counters());
  t.diagnostic(JSON.stringify(d));
  assert.equal(d.syn_recv_sock_toa, 2, JSON.stringify(d));
  assert.equal(d.malformed, undefined, "a User Timeout option is not malformed");
});
