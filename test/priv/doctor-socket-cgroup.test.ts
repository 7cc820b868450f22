/**
 * `toa doctor --port/--pid` checks the listening socket's own cgroup (sock_diag): a listener made
 * outside the loaded cgroup and handed to a process inside it is not covered — the hooks follow the
 * socket's cgroup — and doctor says so with the fix; a listener the process made inside passes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { requireRoot, uniqueName } from "../harness/privileged.js";
import { createTestCgroup, ownCgroup } from "../harness/cgroup.js";
import { Netns } from "../harness/netns.js";
import { start, waitFor } from "../harness/exec.js";
import { loadReceiver, unloadReceiver } from "../../src/agent/receiver.js";
import { listeningSockets } from "../../src/doctor/sock-diag.js";
import { run } from "../../src/cli/main.js";
import type { Io } from "../../src/cli/io.js";

function capture(): Io & { text: () => string } {
  let out = "";
  return { out: (t) => void (out += `${t}\n`), err: (t) => void (out += `${t}\n`), text: () => out };
}

/**
 * A python process in `ns` holding a listener on 127.0.0.1:port, then sleeping inside `cgroup`.
 * `made`: "outside" creates the socket first and then moves into the cgroup (what socket
 * activation or a handed-over fd amounts to); "inside" moves first.
 */
const PY = `
import os, socket, sys
port, cg, made = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def move(): open(cg + "/cgroup.procs", "w").write(str(os.getpid()))
if made == "inside": move()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", port)); s.listen(); s.set_inheritable(True)
if made == "outside": move()
print("ready", flush=True)
os.execvp("sleep", ["sleep", "120"])
`;

test("doctor --port: a listener made outside the loaded cgroup and handed to a process inside fails naming the socket's cgroup and the fix; one made inside passes", async (t) => {
  if (!requireRoot(t)) return;
  const ns = await Netns.create(t, "toa-dsk");
  const cg = createTestCgroup(t, "toa-dsk");
  const pinDir = `/sys/fs/bpf/${uniqueName("toa-dsk")}`;
  loadReceiver({ cgroup: cg.path, pinDir, kinds: [254], trust: [{ family: 4, address: "203.0.113.0", prefix: 24 }], syn: true });
  t.after(() => unloadReceiver(pinDir)); // runs before the cgroup's removal (registered after it)
  const spawnAt = (port: number, made: string) => {
    const p = start("nsenter", [`--net=/run/netns/${ns.name}`, "/usr/bin/python3", "-c", PY, String(port), cg.path, made]);
    t.after(() => p.stop());
    return p;
  };
  const handed = spawnAt(8091, "outside");
  const own = spawnAt(8092, "inside");
  for (const p of [handed, own]) await waitFor("the listener", () => p.output().includes("ready") && readFileSync(`${cg.path}/cgroup.procs`, "utf8").includes(String(p.pid)));

  const sockets = listeningSockets(`/proc/${handed.pid}/ns/net`);
  assert.ok(sockets.some((s) => s.port === 8091 && s.cgroupId !== undefined), JSON.stringify(sockets, (_, v) => (typeof v === "bigint" ? String(v) : v)));

  const bad = capture();
  assert.equal(await run(["doctor", "--pin-dir", pinDir, "--port", "8091"], bad), 1, bad.text());
  t.diagnostic(bad.text().split("\n").filter((l) => /attached, port|socket cgroup|fix: attach/.test(l)).join("\n"));
  assert.match(bad.text(), /ok\s+attached, port 8091/, "the process itself is inside the loaded cgroup");
  const home = ownCgroup().replace(/(.)\/$/, "$1");
  assert.match(bad.text(), new RegExp(`FAIL\\s+socket cgroup, port 8091 pid ${handed.pid}\\s+the listening socket on port 8091 \\(inode \\d+\\) was made in cgroup ${home.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}, not in ${cg.path}`));
  assert.match(bad.text(), /the receiver's hooks follow the socket's cgroup, not the process's/);
  // Here the socket was made in the cgroup v2 root, which contains the process's cgroup.
  assert.match(bad.text(), /fix: attach where the socket was made, which contains the process's cgroup too: toa load --cgroup \S+ --pin-dir \/sys\/fs\/bpf\/toa-parent .*or let the application open its listener itself/);

  const json = capture();
  assert.equal(await run(["doctor", "--pin-dir", pinDir, "--pid", String(handed.pid), "--json"], json), 1);
  const report = JSON.parse(json.text()) as { checks: { id: string; ok: boolean | string }[] };
  assert.equal(report.checks.find((c) => c.id === "socket-cgroup")?.ok, false);

  const good = capture();
  assert.equal(await run(["doctor", "--pin-dir", pinDir, "--port", "8092"], good), 0, good.text());
  assert.match(good.text(), new RegExp(`ok\\s+socket cgroup, port 8092 pid ${own.pid}\\s+listening socket on port 8092 made in ${cg.path}, the process's own cgroup`));
});
