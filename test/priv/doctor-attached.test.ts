/**
 * `toa doctor --pid` on a real receiver loaded on a test cgroup: exit 0 and attached ok for a process
 * inside it; non-zero, naming the process's cgroup and the fix, for a process outside it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireRoot, uniqueName } from "../harness/privileged.js";
import { createTestCgroup, ownCgroup } from "../harness/cgroup.js";
import { start } from "../harness/exec.js";
import { loadReceiver, unloadReceiver } from "../../src/agent/receiver.js";
import { run } from "../../src/cli/main.js";
import type { Io } from "../../src/cli/io.js";

function capture(): Io & { text: () => string } {
  let out = "";
  return { out: (t) => void (out += `${t}\n`), err: (t) => void (out += `${t}\n`), text: () => out };
}

test("doctor --pid: attached ok inside the loaded cgroup, a failure with the fix outside it", async (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t, "toa-doctor");
  const pinDir = `/sys/fs/bpf/${uniqueName("toa-doc")}`;
  loadReceiver({ cgroup: cg.path, pinDir, kinds: [254], trust: [{ family: 4, address: "203.0.113.1", prefix: 32 }], syn: true });
  // Registered after createTestCgroup's cleanup, so it runs first: unload before the folder goes.
  t.after(() => unloadReceiver(pinDir));
  const inside = start("sh", ["-c", 'echo $$ > "$0/cgroup.procs" && exec sleep 60', cg.path]);
  t.after(() => inside.stop());
  const outside = start("sleep", ["60"]);
  t.after(() => outside.stop());
  // Wait until the shell moved itself into the cgroup.
  for (let i = 0; i < 100 && !(await import("node:fs")).readFileSync(`${cg.path}/cgroup.procs`, "utf8").includes(String(inside.pid)); i++) await new Promise((r) => setTimeout(r, 20));

  const io = capture();
  assert.equal(await run(["doctor", "--pin-dir", pinDir, "--pid", String(inside.pid)], io), 0, io.text());
  assert.match(io.text(), /ok\s+attached, pid \d+/);

  const json = capture();
  assert.equal(await run(["doctor", "--pin-dir", pinDir, "--pid", String(inside.pid), "--json"], json), 0);
  const report = JSON.parse(json.text()) as { ready: boolean; checks: { id: string; ok: boolean | string; detail: string }[] };
  assert.equal(report.ready, true);
  const attached = report.checks.find((c) => c.id === "attached")!;
  assert.equal(attached.ok, true);
  assert.match(attached.detail, /toa_receiver .* toa_getpeer4 .* toa_getpeer6/);
  assert.equal(report.checks.find((c) => c.id === "loaded")!.ok, true);
  assert.equal(report.checks.find((c) => c.id === "trust")!.ok, true);

  const bad = capture();
  assert.equal(await run(["doctor", "--pin-dir", pinDir, "--pid", String(outside.pid)], bad), 1, bad.text());
  const home = ownCgroup().replace(/(.)\/$/, "$1");
  assert.match(bad.text(), new RegExp(`FAIL\\s+attached, pid ${outside.pid}\\s+pid ${outside.pid} runs in cgroup ${home.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
  assert.match(bad.text(), new RegExp(`attached to ${cg.path}`));
  assert.match(bad.text(), /fix: .*toa load/);
  assert.match(bad.text(), /not ready: 1 check failed/);
});

test("doctor: nothing loaded at --pin-dir is a failure with `toa load`", async (t) => {
  if (!requireRoot(t)) return;
  const io = capture();
  const pinDir = `/sys/fs/bpf/${uniqueName("toa-none")}`;
  assert.equal(await run(["doctor", "--pin-dir", pinDir], io), 1);
  assert.match(io.text(), /FAIL\s+receiver loaded\s+nothing loaded at/);
  assert.match(io.text(), new RegExp(`fix: toa load .*--pin-dir ${pinDir}`));
});
