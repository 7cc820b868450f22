/** Requests through `toa lb` spread over three nginx backends as the scheduler says. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireRoot } from "../harness/privileged.js";
import { ADDR, createTopology, nodeScript, startLb, startNginx } from "../../bench/lb/topology.js";

/** N sequential GETs, each on a new connection; prints the count per answer's first two words. */
export const GETS = `
import http from "node:http";
const { url, n, localAddress } = JSON.parse(process.argv[2]);
const count = {};
for (let i = 0; i < n; i++) {
  const body = await new Promise((resolve, reject) => {
    http.get(url, { agent: false, localAddress }, (res) => { let b = ""; res.on("data", (d) => (b += d)); res.on("end", () => resolve(b)); }).on("error", reject);
  });
  const k = body.split(" ").slice(0, 2).join(" ");
  count[k] = (count[k] ?? 0) + 1;
}
console.log(JSON.stringify(count));
`;

test("weighted round robin 1:2:3 over three nginx backends", async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  await startNginx(t, topo, [{ index: 0 }, { index: 1 }, { index: 2 }]);
  await startLb(
    t,
    topo,
    ["--listen", `${ADDR.lb4}:80`, "--mode", "none", "--scheduler", "weighted-round-robin", "--backend", `${ADDR.backend4[0]}:80*1`, "--backend", `${ADDR.backend4[1]}:80*2`, "--backend", `${ADDR.backend4[2]}:80*3`],
    [`${ADDR.lb4}:80`],
  );
  const count = await nodeScript<Record<string, number>>(topo.client, topo, "gets", GETS, { url: `http://${ADDR.lb4}/`, n: 60 });
  assert.deepEqual(count, { "backend 0": 10, "backend 1": 20, "backend 2": 30 });
});

test("source-hash keeps a client on one backend; least-connections spreads sequential clients", async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  await startNginx(t, topo, [{ index: 0 }, { index: 1 }, { index: 2 }]);
  const backends = ADDR.backend4.flatMap((a) => ["--backend", `${a}:80`]);
  await startLb(t, topo, ["--listen", `${ADDR.lb4}:80`, "--mode", "none", "--scheduler", "source-hash", ...backends], [`${ADDR.lb4}:80`]);
  const sticky = await nodeScript<Record<string, number>>(topo.client, topo, "gets", GETS, { url: `http://${ADDR.lb4}/`, n: 20 });
  assert.equal(Object.keys(sticky).length, 1, JSON.stringify(sticky));
  assert.equal(Object.values(sticky)[0], 20);
  await startLb(t, topo, ["--listen", `${ADDR.lb4}:81`, "--mode", "none", "--scheduler", "least-connections", ...backends], [`${ADDR.lb4}:81`]);
  const spread = await nodeScript<Record<string, number>>(topo.client, topo, "gets", GETS, { url: `http://${ADDR.lb4}:81/`, n: 30 });
  assert.deepEqual(spread, { "backend 0": 10, "backend 1": 10, "backend 2": 10 });
});
