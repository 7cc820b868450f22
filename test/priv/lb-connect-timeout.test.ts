/**
 * A backend that silently drops SYNs (a black hole, not a refusal): no client waits past the connect
 * timeout, and once health checks mark it DOWN every request goes to the live backend.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireRoot } from "../harness/privileged.js";
import { waitFor } from "../harness/exec.js";
import { ADDR, createTopology, startLb, startNginx, writeConfig } from "../../bench/lb/topology.js";
import { scaled } from "../harness/time.js";

test("a black-holed backend: each client is answered or closed within the connect timeout, then it is DOWN", { timeout: scaled(60_000) }, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  await startNginx(t, topo, [{ index: 0 }, { index: 1 }], "n01");
  // Drop every SYN to backend 1: connect() gets no answer at all.
  await topo.backends.run("nft", ["-f", "-"], {
    input: `table inet blackhole {\n chain in {\n  type filter hook input priority 0;\n  ip daddr ${ADDR.backend4[1]} tcp dport 80 drop\n }\n}\n`,
  });
  const config = writeConfig(
    topo,
    "lb-bh.yaml",
    `admin: ${ADDR.lbInside4}:9100
timeouts: { connect: 500ms }
listeners:
  - { name: web, listen: "${ADDR.lb4}:80", pool: web, mode: none }
pools:
  web:
    backends: ["${ADDR.backend4[0]}:80", "${ADDR.backend4[1]}:80"]
    healthCheck: { type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 2 }
`,
  );
  await startLb(t, topo, ["--config", config], [`${ADDR.lb4}:80`]);
  // curl's own clock (time_total), not the spawn of six processes, which emulation slows down.
  const timed = async () => {
    const out = await topo.client.run("sh", ["-c", `curl -sS --max-time ${scaled(5000) / 1000} -w ' time=%{time_total}' http://${ADDR.lb4}/ 2>&1; echo " exit=$?"`]);
    return { ms: Number(/time=([\d.]+)/.exec(out)?.[1] ?? Infinity) * 1000, out };
  };
  // The connect timeout plus the balancer's own work (slower under emulation, hence scaled).
  const bound = 500 + scaled(1000);
  // Right away, before the checks have concluded: some requests may hit the black hole.
  const early = await Promise.all(Array.from({ length: 6 }, timed));
  for (const r of early) {
    assert.ok(r.ms < bound, `a client waited ${r.ms}ms with a 500ms connect timeout: ${r.out}`);
    assert.match(r.out, /backend 0 |exit=(52|56)/, r.out);
  }
  await waitFor("backend 1 DOWN", async () => {
    const s = JSON.parse(await topo.balancer.run("curl", ["-sS", `http://${ADDR.lbInside4}:9100/status.json`])) as { pools: { backends: { state: string }[] }[] };
    return s.pools[0].backends[1].state === "DOWN";
  });
  const later = await Promise.all(Array.from({ length: 6 }, timed));
  for (const r of later) assert.match(r.out, /^backend 0 .* exit=0/s, r.out);
});
