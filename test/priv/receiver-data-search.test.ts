/**
 * The data-segment search is bounded: while no TOA is found, segments carrying an unknown option
 * wake the receiver; after 16 data segments it stops asking the kernel for them (counted as
 * data_search_stopped), so a connection without a TOA doesn't pay per packet for its whole life, and
 * a TOA arriving that late is not taken.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireRoot } from "../harness/privileged.js";
import { ADDR, counterDelta, crafted, createReceiver, createTopology, dropScapyResets, requireTool, startNodeServer, toaOption } from "../harness/topology.js";
import { scaled } from "../harness/time.js";

const PORT = 8084;
const UNKNOWN_OPTION = "63040000"; // kind 99, length 4: an option the kernel doesn't know

test("the data-segment search gives up after 16 segments; a TOA in segment 2 is still found", { timeout: scaled(60_000) }, async (t) => {
  if (!requireRoot(t)) return;
  if (!(await requireTool(t, "/usr/bin/python3", ["-c", "import scapy"], "python3-scapy")) || !(await requireTool(t, "nft", ["--version"], "nftables"))) return;
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  rcv.load();
  await startNodeServer(topo, rcv, "::", PORT);
  await dropScapyResets(topo.balancer, [42000, 42999]);
  const base = { src: ADDR.lb4, dst: ADDR.backend4, dport: PORT };
  const unknown = (n: number) => Array.from({ length: n }, () => ({ options: UNKNOWN_OPTION, data: "x\n" }));

  let before = rcv.counters();
  await crafted(topo.balancer, [
    // 1 + 19 data segments with an unknown option and no TOA, then one with a TOA: too late.
    { ...base, sport: 42001, dataOptions: UNKNOWN_OPTION, moreSegments: [...unknown(19), { options: toaOption(254, "192.0.2.61", 6161), data: "x\n" }] },
  ]);
  let d = counterDelta(before, rcv.counters());
  t.diagnostic(`late: ${JSON.stringify(d)}`);
  assert.equal(d.data_search_stopped, 1, JSON.stringify(d));
  assert.equal(d.syn_recv_sock_toa, undefined, "a TOA after the search stopped is not taken");

  before = rcv.counters();
  await crafted(topo.balancer, [{ ...base, sport: 42002, dataOptions: UNKNOWN_OPTION, moreSegments: [{ options: toaOption(254, "192.0.2.62", 6262), data: "x\n" }] }]);
  d = counterDelta(before, rcv.counters());
  t.diagnostic(`early: ${JSON.stringify(d)}`);
  assert.equal(d.found_in_data, 1, JSON.stringify(d));
  assert.equal(d.data_search_stopped, undefined, JSON.stringify(d));
});
