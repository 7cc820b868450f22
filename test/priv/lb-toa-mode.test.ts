/**
 * `toa` mode with the real eBPF sender (src/lb/sender/toa-sender.ts) attached to a cgroup the test made: each
 * backend connection gets the client address as a TOA (counters from the sender's map). The nginx
 * access-log check through `toa load` on the backend comes with the `load` command.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { requireRoot } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { ADDR, createTopology, curl, startLb, startNginx } from "../../bench/lb/topology.js";

const SENDER = new URL("../../src/lb/sender/toa-sender.js", import.meta.url);

test("toa mode: the sender writes a TOA on every backend connection of the balancer's cgroup", async (t) => {
  if (!requireRoot(t)) return;
  if (!existsSync(SENDER)) return t.skip("src/lb/sender/toa-sender.ts is not built yet");
  const topo = await createTopology(t);
  const cg = createTestCgroup(t, "toa-lb");
  await startNginx(t, topo, [{ index: 0 }]);
  await startLb(t, topo, ["--listen", `${ADDR.lb4}:80`, "--listen", `[${ADDR.lb6}]:80`, "--backend", `${ADDR.backend4[0]}:80`, "--admin", "127.0.0.1:9100", "--cgroup", cg.path], [`${ADDR.lb4}:80`], { cgroup: cg.path });
  assert.match(await curl(topo, `http://${ADDR.lb4}/`), /^backend 0 /);
  assert.match(await curl(topo, `http://[${ADDR.lb6}]/`), /^backend 0 /);
  const s = JSON.parse(await topo.balancer.run("curl", ["-sS", "http://127.0.0.1:9100/status.json"])) as { toa: { written: number; skippedNoSpace: number } };
  assert.ok(s.toa.written >= 2, JSON.stringify(s.toa));
  assert.equal(s.toa.skippedNoSpace, 0);
  const metrics = await topo.balancer.run("curl", ["-sS", "http://127.0.0.1:9100/metrics"]);
  assert.match(metrics, /toa_lb_toa_written_total [1-9]/);
});
