/**
 * Never delete what isn't ours, and restarts survived: `toa unload` removes only toa's own pins
 * (known names holding the objects a load pins) and the folder only when it is then empty; a folder
 * not on bpffs is refused; a load failing midway leaves nothing; `toa load` on links whose cgroup was
 * removed and made again re-attaches, keeping the socket-storage map, and `toa status` says so.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireRoot, uniqueName } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { ADDR, clientConnections, createReceiver, createTopology, startBalancer, startNodeServer } from "../harness/topology.js";
import { scaled } from "../harness/time.js";
import { loadReceiver, unloadReceiver } from "../../src/agent/receiver.js";
import { BpfMap, describeAttached, ensurePinDir, findCgroup2Mount, removePins, unpin } from "../../src/bpf/index.js";
import { Attachments, pinPaths } from "../../src/agent/pins.js";
import { run } from "../../src/cli/main.js";
import type { Io } from "../../src/cli/io.js";

const v4mapped = (a: string) => `::ffff:${a}`;

function capture(): Io & { text: () => string } {
  let out = "";
  return { out: (t) => void (out += `${t}\n`), err: (t) => void (out += `${t}\n`), text: () => out };
}

/** A tiny map pinned at `path` by this test, standing for another tool's pin; unpinned at the end. */
function foreignPin(t: { after(fn: () => void): void }, path: string, name = "other_tool"): number {
  const m = BpfMap.create({ name, type: "HASH", keySize: 4, valueSize: 4, maxEntries: 4 });
  m.pin(path);
  const id = m.info.id;
  m.close();
  t.after(() => unpin(path));
  return id;
}

test("unload in a pin folder shared with another tool's pin: toa's pins go, the other pin and the folder stay", (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t, "toa-pins");
  const dir = `/sys/fs/bpf/${uniqueName("toa-shared")}`;
  ensurePinDir(dir);
  const otherId = foreignPin(t, join(dir, "cilium_like_map"));
  t.after(() => removePins(dir, [])); // after-hooks run in order: the other pin is gone by then
  t.after(() => unloadReceiver(dir));
  loadReceiver({ cgroup: cg.path, pinDir: dir, kinds: [254], trust: [], syn: true });
  assert.ok(existsSync(pinPaths(dir).peers));

  const io = capture();
  return run(["unload", "--pin-dir", dir], io).then((code) => {
    assert.equal(code, 0, io.text());
    assert.match(io.text(), /toa unloaded: detached CGROUP_SOCK_OPS/);
    assert.match(io.text(), /left 1 entry that toa did not make in .* \(cilium_like_map\), so the folder stays/);
    assert.deepEqual(readdirSync(dir), ["cilium_like_map"], "only the other tool's pin is left");
    const still = BpfMap.fromPin(join(dir, "cilium_like_map"));
    assert.equal(still.info.id, otherId, "the same map");
    still.close();
    for (const a of Attachments) assert.deepEqual(describeAttached(cg.path, a.attachType), [], `${a.attachType} detached`);
  });
});

test("a pin with toa's name that holds another object is neither used by load nor removed by unload", (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t, "toa-pins");
  const dir = `/sys/fs/bpf/${uniqueName("toa-impostor")}`;
  ensurePinDir(dir);
  foreignPin(t, join(dir, "toa_peers"), "not_toa");
  t.after(() => removePins(dir, []));
  assert.throws(
    () => loadReceiver({ cgroup: cg.path, pinDir: dir, kinds: [254], trust: [], syn: true }),
    /--pin-dir: .*toa_peers map of type 1, expected type 24: it is not toa's.*give another --pin-dir/,
  );
  assert.deepEqual(readdirSync(dir), ["toa_peers"], "the refused load made nothing");
  const r = unloadReceiver(dir);
  assert.deepEqual(r.unpinned, []);
  assert.match(r.kept[0]?.reason ?? "", /map of type 1, expected type 24/);
  assert.equal(existsSync(join(dir, "toa_peers")), true);
});

test("unload refuses a plain folder with files (not bpffs), naming the reason; every file stays", async (t) => {
  if (!requireRoot(t)) return;
  const dir = mkdtempSync(join(tmpdir(), "toa-plain-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "notes.txt"), "mine\n");
  writeFileSync(join(dir, "config.yaml"), "a: 1\n");
  writeFileSync(join(dir, "toa_settings"), "also mine\n");
  const io = capture();
  assert.equal(await run(["unload", "--pin-dir", dir], io), 1);
  assert.match(io.text(), /--pin-dir: .* is not on a bpffs mount \(statfs type is not 0xcafe4a11\).*nothing removed/);
  assert.deepEqual(readdirSync(dir).sort(), ["config.yaml", "notes.txt", "toa_settings"]);
  assert.equal(readFileSync(join(dir, "notes.txt"), "utf8"), "mine\n");
});

test("a load that fails leaves nothing behind: a missing --cgroup folder, and a failure after pinning its maps", async (t) => {
  if (!requireRoot(t)) return;
  const dir = `/sys/fs/bpf/${uniqueName("toa-fail")}`;
  t.after(() => removePins(dir, []));
  const io = capture();
  const missing = join(findCgroup2Mount(), uniqueName("no-such-cgroup"));
  assert.equal(await run(["load", "--cgroup", missing, "--pin-dir", dir], io), 1);
  assert.match(io.text(), /--cgroup: .* does not exist: give an existing cgroup v2 folder/);
  assert.equal(existsSync(dir), false, "no pin folder made");
  const status = capture();
  assert.equal(await run(["status", "--pin-dir", dir], status), 3, "nothing loaded, not a half load");

  // Fails after its maps are made and pinned (the settings record is too large for its map): they
  // must go again, and nothing stays attached.
  const cg = createTestCgroup(t, "toa-pins");
  const trust = Array.from({ length: 60 }, (_, i) => ({ family: 4 as const, address: `10.${i}.0.0`, prefix: 16 }));
  assert.throws(() => loadReceiver({ cgroup: cg.path, pinDir: dir, kinds: [254], trust, syn: true }), /too many entries to record/);
  assert.equal(existsSync(dir), false, "the pin folder it made is gone");
  for (const a of Attachments) assert.deepEqual(describeAttached(cg.path, a.attachType), [], `${a.attachType} left attached`);
});

test("cgroup removed and made again: status exits 1 naming the fix, `toa load` re-attaches keeping the socket storage, TOA works again", { timeout: scaled(90_000) }, async (t) => {
  if (!requireRoot(t)) return;
  const topo = await createTopology(t);
  const rcv = createReceiver(topo);
  rcv.load();
  const peersId = () => {
    const m = BpfMap.fromPin(pinPaths(rcv.pinDir).peers);
    const id = m.info.id;
    m.close();
    return id;
  };
  const mapId = peersId();
  await startBalancer(topo, [{ listen: { host: ADDR.lbFront4, port: 82 }, backend: { host: ADDR.backend4, port: 8082 } }]);
  let node = await startNodeServer(topo, rcv, "::", 8082);
  const [before] = await clientConnections(topo, { host: ADDR.lbFront4, port: 82 }, 1);
  assert.equal(before.reply?.peer.address, v4mapped(ADDR.client4));

  // What `systemctl restart` does to a service's cgroup.
  await node.proc.stop();
  rcv.cgroup.remove();
  mkdirSync(rcv.cgroup.path);
  node = await startNodeServer(topo, rcv, "::", 8082);
  const [off] = await clientConnections(topo, { host: ADDR.lbFront4, port: 82 }, 1);
  assert.equal(off.reply?.peer.address, v4mapped(ADDR.lb4), "the pinned links point at the removed cgroup");

  const status = capture();
  assert.equal(await run(["status", "--pin-dir", rcv.pinDir], status), 1, status.text());
  assert.match(status.text(), /GONE CGROUP_SOCK_OPS/);
  assert.match(status.text(), new RegExp(`4 hooks are gone .*Fix: toa load --cgroup ${rcv.cgroup.path} --pin-dir ${rcv.pinDir}`));
  const doctor = capture();
  assert.equal(await run(["doctor", "--pin-dir", rcv.pinDir], doctor), 1);
  assert.match(doctor.text(), /fix: toa load --cgroup/);

  const load = capture();
  assert.equal(await run(["load", "--cgroup", rcv.cgroup.path, "--pin-dir", rcv.pinDir, "--json"], load), 0, load.text());
  const r = JSON.parse(load.text()) as { action: string; reattached: string[] };
  assert.equal(r.action, "replaced");
  assert.deepEqual([...r.reattached].sort(), Attachments.map((a) => a.attachType).sort());
  assert.equal(peersId(), mapId, "the socket-storage map is the same one");
  assert.equal(await run(["status", "--pin-dir", rcv.pinDir], capture()), 0);
  const [on] = await clientConnections(topo, { host: ADDR.lbFront4, port: 82 }, 1);
  assert.deepEqual([on.reply?.peer.address, on.reply?.client?.address], [v4mapped(ADDR.client4), ADDR.client4]);
  // A second load finds healthy links: it swaps programs, re-attaches nothing.
  assert.deepEqual(rcv.load().reattached, []);
});

test("a second load on the same cgroup with another --pin-dir warns, naming the first one's pin folder and the fix", async (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t, "toa-pins");
  const first = `/sys/fs/bpf/${uniqueName("toa-first")}`;
  const second = `/sys/fs/bpf/${uniqueName("toa-second")}`;
  loadReceiver({ cgroup: cg.path, pinDir: first, kinds: [254], trust: [], syn: true });
  t.after(() => unloadReceiver(first));
  t.after(() => unloadReceiver(second));
  const io = capture();
  assert.equal(await run(["load", "--cgroup", cg.path, "--pin-dir", second, "--trust", "203.0.113.0/24"], io), 0, io.text());
  assert.match(io.text(), new RegExp(`warning: another toa receiver \\(program id \\d+\\) is already attached to ${cg.path}, pinned at ${first}: both now run .*toa unload --pin-dir ${first}`));
  const again = capture();
  assert.equal(await run(["load", "--cgroup", cg.path, "--pin-dir", second, "--trust", "203.0.113.0/24"], again), 0);
  assert.doesNotMatch(again.text(), /another toa receiver/, "a reload of the same pin folder is not a second receiver");
});
