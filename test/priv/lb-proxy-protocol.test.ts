/**
 * `toa lb` in the balancer namespace between curl (client namespace) and nginx (backends namespace):
 * PROXY v1 and v2 to nginx `listen ... proxy_protocol` carry the client's address (IPv4 and IPv6);
 * mode none shows nginx the balancer's own address (full NAT).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireRoot } from "../harness/privileged.js";
import { ADDR, createTopology, curl, startLb, startNginx, writeConfig } from "../../bench/lb/topology.js";

test("proxy-v1 and proxy-v2: nginx's $proxy_protocol_addr is the client, over IPv4 and IPv6", async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const nginx = await startNginx(t, topo, [{ index: 0, proxyProtocol: true }]);
  const config = writeConfig(
    topo,
    "lb.yaml",
    `listeners:
  - { name: v1-4, listen: "${ADDR.lb4}:81", pool: pp, mode: proxy-v1 }
  - { name: v1-6, listen: "[${ADDR.lb6}]:81", pool: pp, mode: proxy-v1 }
  - { name: v2-4, listen: "${ADDR.lb4}:82", pool: pp, mode: proxy-v2 }
  - { name: v2-6, listen: "[${ADDR.lb6}]:82", pool: pp, mode: proxy-v2 }
pools:
  pp:
    backends: ["${ADDR.backend4[0]}:80"]
`,
  );
  await startLb(t, topo, ["--config", config], [`${ADDR.lb4}:82`, `[${ADDR.lb6}]:82`]);
  const cases = [
    { url: `http://${ADDR.lb4}:81/`, client: ADDR.client4 },
    { url: `http://[${ADDR.lb6}]:81/`, client: ADDR.client6 },
    { url: `http://${ADDR.lb4}:82/`, client: ADDR.client4 },
    { url: `http://[${ADDR.lb6}]:82/`, client: ADDR.client6 },
  ];
  for (const c of cases) {
    const body = await curl(topo, c.url);
    // nginx's TCP peer is the balancer (full NAT); the PROXY header names the client.
    assert.equal(body.trim(), `backend 0 remote=${ADDR.lbInside4} proxy=${c.client}`, c.url);
  }
  const log = nginx.lines();
  assert.equal(log.length, 4);
  assert.deepEqual(log.map((l) => l.split(" ")[1]), [ADDR.client4, ADDR.client6, ADDR.client4, ADDR.client6]);
});

test("mode none: nginx sees the balancer's address, IPv4 and IPv6", async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const nginx = await startNginx(t, topo, [{ index: 1 }]);
  await startLb(t, topo, ["--listen", `${ADDR.lb4}:80`, "--listen", `[${ADDR.lb6}]:80`, "--backend", `[${ADDR.backend6[1]}]:80`, "--mode", "none"], [`${ADDR.lb4}:80`]);
  assert.equal((await curl(topo, `http://${ADDR.lb4}/`)).trim(), `backend 1 remote=${ADDR.lbInside6} proxy=`);
  assert.equal((await curl(topo, `http://[${ADDR.lb6}]/`)).trim(), `backend 1 remote=${ADDR.lbInside6} proxy=`);
  assert.deepEqual(nginx.lines().map((l) => l.split(" ")[0]), [ADDR.lbInside6, ADDR.lbInside6]);
});
