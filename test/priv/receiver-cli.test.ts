/**
 * Smoke test of the backend's command line on the receiver topology: `toa load` (then again with
 * other settings: replaced), traffic through the proxy shows the client, `toa stats --json` and
 * `toa status --json` report it, `toa unload` twice.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { requireRoot } from "../harness/privileged.js";
import { sh } from "../harness/exec.js";
import { ADDR, clientConnections, createReceiver, createTopology, startBalancer, startNodeServer } from "../harness/topology.js";
import { scaled } from "../harness/time.js";

const BIN = fileURLToPath(new URL("../../src/cli/bin.js", import.meta.url));
const toa = (args: string[]) => sh(process.execPath, [BIN, ...args]);

test("toa load / stats / status / unload on a test cgroup, with a connection through the proxy", { timeout: scaled(60_000) }, async (t) => {
  if (!requireRoot(t)) return;
  if (!existsSync(BIN)) return t.skip("the CLI is not built");
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  const where = ["--cgroup", rcv.cgroup.path, "--pin-dir", rcv.pinDir];
  const first = await toa(["load", ...where, "--trust", "203.0.113.0/24,2001:db8:2::/64"]);
  assert.match(first, /^TOA: toa loaded \(eBPF\)/);
  const again = JSON.parse(await toa(["load", ...where, "--trust", "203.0.113.0/24,2001:db8:2::/64", "--kinds", "254,200", "--json"])) as { action: string; settings: { kinds: number[] } };
  assert.deepEqual([again.action, again.settings.kinds], ["replaced", [254, 200]]);

  await startNodeServer(topo, rcv, "::", 8082);
  await startBalancer(topo, [{ listen: { host: ADDR.lbFront6, port: 82 }, backend: { host: ADDR.backend6, port: 8082 }, kind: 200 }]);
  const [r] = await clientConnections(topo, { host: ADDR.lbFront6, port: 82 }, 1);
  assert.equal(r.error, undefined);
  assert.deepEqual([r.reply!.peer.address, r.reply!.peer.port], [ADDR.client6, r.localPort]);

  const stats = JSON.parse(await toa(["stats", "--json", "--pin-dir", rcv.pinDir])) as Record<string, number>;
  assert.equal(stats.syn_recv_sock_toa, 1, JSON.stringify(stats));
  assert.equal(stats.found_in_ack, 1);
  const status = JSON.parse(await toa(["status", "--json", "--pin-dir", rcv.pinDir])) as { loaded: boolean; attached: { hook: string; attached: boolean }[] };
  assert.equal(status.loaded, true);
  assert.deepEqual(status.attached.map((a) => a.attached), [true, true, true, true]);

  assert.match(await toa(["unload", "--pin-dir", rcv.pinDir]), /^TOA: toa unloaded/);
  assert.equal(existsSync(rcv.pinDir), false);
  assert.match(await toa(["unload", "--pin-dir", rcv.pinDir]), /nothing loaded/);
  const [after] = await clientConnections(topo, { host: ADDR.lbFront6, port: 82 }, 1);
  assert.equal(after.reply?.peer.address, ADDR.lb6);
});
