/**
 * The receiver on kernels without bpf_link for cgroups (before 5.7): attached with PROG_ATTACH +
 * ALLOW_MULTI, reloaded with REPLACE, unloaded with PROG_DETACH. Forced here with attachMode "multi".
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { requireRoot, uniqueName } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { loadReceiver, unloadReceiver, readLoadedSettings } from "../../src/agent/receiver.js";
import { queryCgroup } from "../../src/bpf/index.js";
import { parseTrust } from "../../src/agent/settings.js";

const hooks = ["CGROUP_SOCK_OPS", "CGROUP_INET4_GETPEERNAME", "CGROUP_INET6_GETPEERNAME", "CGROUP_GETSOCKOPT"] as const;

for (const mode of ["link", "multi"] as const) {
  test(`attach mode ${mode}: load, reload in place, unload; the kernel's view matches each step`, (t) => {
    if (!requireRoot(t)) return;
    const cg = createTestCgroup(t, `toa-am-${mode}`);
    const pinDir = join("/sys/fs/bpf", uniqueName("toa-am"));
    try {
      const first = loadReceiver({ cgroup: cg.path, pinDir, kinds: [254], trust: [], syn: true }, { attachMode: mode });
      assert.equal(first.action, "loaded");
      assert.equal(first.settings.mode, mode);
      const ids1 = hooks.map((h) => queryCgroup(cg.path, h).programIds);
      assert.deepEqual(ids1.map((ids) => ids.length), [1, 1, 1, 1]);
      assert.deepEqual(ids1.map((ids) => ids[0]), [first.settings.programs.receiver, first.settings.programs.getpeer4, first.settings.programs.getpeer6, first.settings.programs.nat64]);
      const pins = readdirSync(pinDir);
      assert.ok(pins.includes(mode === "link" ? "link_sockops" : "prog_receiver"), pins.join(","));

      const second = loadReceiver({ cgroup: cg.path, pinDir, kinds: [200], trust: parseTrust("203.0.113.0/24"), syn: false }, { attachMode: mode });
      assert.equal(second.action, "replaced");
      assert.equal(second.settings.mode, mode, "a reload keeps the attach mode");
      const ids2 = hooks.map((h) => queryCgroup(cg.path, h).programIds);
      assert.deepEqual(ids2.map((ids) => ids.length), [1, 1, 1, 1], "replaced, not added next to the old ones");
      assert.notEqual(ids2[0][0], ids1[0][0]);
      assert.equal(ids2[0][0], second.settings.programs.receiver);
      assert.deepEqual(readLoadedSettings(pinDir)?.kinds, [200]);

      const gone = unloadReceiver(pinDir);
      assert.deepEqual([...gone.detached].sort(), [...hooks].sort());
      assert.deepEqual(hooks.map((h) => queryCgroup(cg.path, h).programIds.length), [0, 0, 0, 0]);
      assert.ok(!existsSync(pinDir));
      assert.equal(unloadReceiver(pinDir).wasLoaded, false, "idempotent");
    } finally {
      unloadReceiver(pinDir);
    }
  });
}

test("a second load on another cgroup with the same pins is refused with the fix", (t) => {
  if (!requireRoot(t)) return;
  const a = createTestCgroup(t, "toa-am-a");
  const b = createTestCgroup(t, "toa-am-b");
  const pinDir = join("/sys/fs/bpf", uniqueName("toa-am"));
  try {
    loadReceiver({ cgroup: a.path, pinDir, kinds: [254], trust: [], syn: true });
    assert.throws(() => loadReceiver({ cgroup: b.path, pinDir, kinds: [254], trust: [], syn: true }), /already loaded on .* run `toa unload --pin-dir/);
    assert.equal(queryCgroup(b.path, "CGROUP_SOCK_OPS").programIds.length, 0, "nothing attached to the second cgroup");
  } finally {
    unloadReceiver(pinDir);
  }
});
