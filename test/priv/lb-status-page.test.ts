/** The admin status page rendered by headless Chromium (Debian `chromium`), with a screenshot. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, statSync, readFileSync, copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { requireRoot } from "../harness/privileged.js";
import { sh, waitFor } from "../harness/exec.js";
import { scaled } from "../harness/time.js";
import { ADDR, createTopology, curl, startLb, startNginx, writeConfig } from "../../bench/lb/topology.js";

test("status page: listeners, pools, backends with health colours, in headless Chromium", async (t) => {
  if (!requireRoot(t)) return;
  const chromium = await sh("sh", ["-c", "command -v chromium || true"]);
  if (!chromium.trim()) {
    if (process.env.CI === "true") throw new Error("chromium is missing: apt-get install -y chromium");
    return t.skip("chromium is not installed (apt-get install -y chromium)");
  }
  const topo = await createTopology(t);
  await startNginx(t, topo, [{ index: 0, proxyProtocol: true }, { index: 1, proxyProtocol: true }]);
  const config = writeConfig(
    topo,
    "lb.yaml",
    `admin: 127.0.0.1:9100
listeners:
  - { name: web-v4, listen: "${ADDR.lb4}:80", pool: web, mode: proxy-v2 }
  - { name: web-v6, listen: "[${ADDR.lb6}]:80", pool: web, mode: proxy-v1 }
pools:
  web:
    scheduler: weighted-round-robin
    backends: ["${ADDR.backend4[0]}:80", { address: "${ADDR.backend4[1]}:80", weight: 2 }, "${ADDR.backend4[2]}:80"]
    healthCheck: { type: http, path: /, interval: 200ms, timeout: 150ms, rise: 1, fall: 1, sendProxy: true }
`,
  );
  await startLb(t, topo, ["--config", config], [`${ADDR.lb4}:80`]);
  // Backend 2 has no nginx: until its first check fails it may take a request, which is reset.
  await waitFor("backend 2 DOWN", async () => {
    const s = JSON.parse(await topo.balancer.run("curl", ["-sS", "http://127.0.0.1:9100/status.json"])) as { pools: { backends: { state: string }[] }[] };
    return s.pools[0].backends[2].state === "DOWN";
  });
  for (let i = 0; i < 6; i++) await curl(topo, `http://${ADDR.lb4}/`);
  await curl(topo, `http://[${ADDR.lb6}]/`);
  const html = await topo.balancer.run("curl", ["-sS", "http://127.0.0.1:9100/"]);
  assert.match(html, /<tr class="up"><td class="name">203\.0\.113\.10:80<\/td><td class="state">UP<\/td>/);
  assert.match(html, /<tr class="down"><td class="name">203\.0\.113\.12:80<\/td><td class="state">DOWN<\/td><td>ECONNREFUSED<\/td>/);

  const png = join(topo.dir, "status.png");
  const profile = join(topo.dir, "chromium-profile");
  // One process (browser, renderer, network service), no GPU process: under a kernel VM's emulation
  // the multi-process Chromium sat for its whole time limit without a screenshot (its network service
  // "crashed ... restarting") and exited 0 on the SIGTERM. --timeout takes the screenshot after that
  // long even if the page's load has not completed; the size and width checks below still demand a
  // rendered page.
  const chromiumArgs = ["--headless", "--single-process", "--no-zygote", "--disable-software-rasterizer", "--disable-dev-shm-usage", `--timeout=${scaled(15_000)}`, "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", `--user-data-dir=${profile}`, `--screenshot=${png}`, "--window-size=1200,800", "http://127.0.0.1:9100/"];
  // Chromium can exit 0 without a screenshot; its own output (merged) says why.
  const said = await topo.balancer.run("sh", ["-c", 'exec "$@" 2>&1', "chromium", "chromium", ...chromiumArgs], { timeoutMs: 60_000 });
  assert.ok(existsSync(png), `screenshot written; chromium said:\n${said.slice(-2000)}`);
  const bytes = readFileSync(png);
  assert.equal(bytes.subarray(1, 4).toString(), "PNG");
  assert.equal(bytes.readUInt32BE(16), 1200);
  assert.ok(statSync(png).size > 20_000, `screenshot is only ${statSync(png).size} bytes`);
  if (process.env.TOA_LB_SCREENSHOT_DIR) {
    mkdirSync(process.env.TOA_LB_SCREENSHOT_DIR, { recursive: true });
    copyFileSync(png, join(process.env.TOA_LB_SCREENSHOT_DIR, "lb-status.png"));
  }
});
