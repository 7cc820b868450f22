/** The balancer's instance without a kernel: port claims across processes, the layout check, the unit. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { validateConfig } from "../../src/lb/config.js";
import { checkClaims, liveClaims, portUses, removeClaim, writeClaim } from "../../src/lb/claims.js";
import { LbError } from "../../src/lb/errors.js";
import { layoutProblem, metaValue } from "../../src/lb/packet/instance.js";
import { NAT_LAYOUT_VERSION, natLayoutHash } from "../../src/programs/nat-layout.js";
import { lbUnitText } from "../../src/cli/commands/lb-instance.js";

const config = (instance: string, listener: Record<string, unknown>, pool: Record<string, unknown> = {}) =>
  validateConfig({ instance, listeners: [{ name: "web", listen: "198.51.100.1:80", pool: "web", ...listener }], pools: { web: { backends: ["203.0.113.10:80"], ...pool } } }, `${instance}.yaml`);

function claimDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "toa-claims-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("port uses: the packet path and the toa-mode relay take sourcePorts; other relayed modes take the kernel's ports", () => {
  assert.deepEqual(portUses(config("a", { dataPath: "packet", mode: "none" })), [{ listener: "web", dataPath: "packet", backend: "203.0.113.10:80", local: "*", first: 10000, last: 32767 }]);
  assert.equal(portUses(config("a", { mode: "toa" })).length, 1);
  assert.deepEqual(portUses(config("a", { mode: "proxy-v2" })), []);
  assert.deepEqual(portUses(config("a", { mode: "none" }, { sourceAddresses: ["203.0.113.1", "203.0.113.2"] })), []);
  assert.deepEqual(portUses(config("a", { mode: "toa" }, { sourceAddresses: ["203.0.113.1", "2001:db8::1"] })).map((u) => u.local), ["203.0.113.1"]);
});

test("claims: overlapping ranges towards one backend are refused naming both; apart ranges, other backends and other local addresses pass", (t) => {
  const dir = claimDir(t);
  // The other instance's process: this test's parent, alive for the whole test.
  writeClaim(config("relay", { mode: "toa" }), false, Date.now(), process.ppid, dir);
  assert.throws(
    () => checkClaims(config("packet", { dataPath: "packet", mode: "none" }), process.pid, dir),
    (e: unknown) => e instanceof LbError && e.code === "LB_ERR_INSTANCE" && /local ports 10000-32767 towards 203\.0\.113\.10:80/.test(e.message) && /instance "relay" \(pid \d+\) uses 10000-32767/.test(e.message),
  );
  checkClaims(config("packet", { dataPath: "packet", mode: "none" }, { sourcePorts: "40000-40999" }), process.pid, dir);
  checkClaims(validateConfig({ instance: "p2", dataPath: "packet", listeners: [{ listen: "198.51.100.1:80", mode: "none" }], pools: { web: { backends: ["203.0.113.11:80"] } } }, "x"), process.pid, dir);
  writeClaim(config("relay", { mode: "toa" }, { sourceAddresses: ["203.0.113.1"] }), false, Date.now(), process.ppid, dir);
  checkClaims(config("packet", { dataPath: "packet", mode: "none" }, { sourceAddresses: ["203.0.113.2"] }), process.pid, dir);
  assert.throws(() => checkClaims(config("packet", { dataPath: "packet", mode: "none" }), process.pid, dir), /from 203\.0\.113\.1/);
});

test("claims: a second live process for one instance is refused; a dead one's claim without pins is not live", (t) => {
  const dir = claimDir(t);
  writeClaim(config("same", { mode: "toa" }), false, Date.now(), process.ppid, dir);
  assert.throws(() => checkClaims(config("same", { mode: "toa" }), process.pid, dir), /instance "same" is served by pid \d+.*stop it first/);
  // A pid that can't be running (above pid_max), with no pinned instance: ignored.
  writeFileSync(join(dir, "gone.json"), JSON.stringify({ instance: "gone", pid: 4_194_305, startedMs: 0, pinDir: "/nonexistent", uses: portUses(config("gone", { mode: "toa" })) }));
  assert.deepEqual(liveClaims(dir).map((c) => c.instance), ["same"]);
  removeClaim("same", dir);
  assert.deepEqual(liveClaims(dir), []);
});

test("layout check: this build's record passes; another version or shape is refused with both named and the two ways to migrate", () => {
  const fields = { instance: "x", createdMs: 1, programTag: "00".repeat(8), programSinceMs: 1, adoptions: 0, maxConnections: 16, maxHalfOpen: 16, build: "0.1.0" };
  const mine = metaValue(fields);
  assert.equal(layoutProblem(mine, "/sys/fs/bpf/toa-lb/x"), undefined);
  const other = Buffer.from(mine);
  other.writeUInt32LE(NAT_LAYOUT_VERSION + 1, 4);
  const why = layoutProblem(other, "/sys/fs/bpf/toa-lb/x")!;
  assert.match(why, new RegExp(`has table layout ${NAT_LAYOUT_VERSION + 1} \\(${natLayoutHash()}\\), this build has layout ${NAT_LAYOUT_VERSION} \\(${natLayoutHash()}\\)`));
  assert.match(why, /toa lb remove --pin-dir \/sys\/fs\/bpf\/toa-lb\/x/);
  assert.match(why, /another `instance:` name/);
  const shape = Buffer.from(mine);
  shape[8] ^= 0xff;
  assert.match(layoutProblem(shape, "/p")!, /this build has layout/);
});

test("the balancer's unit: checks the config first, reloads with SIGHUP, restarts on failure, leaves the packet path on stop", () => {
  const u = lbUnitText(["/usr/bin/toa"], "/etc/toa/lb.yaml");
  assert.match(u, /^ExecStartPre=\/usr\/bin\/toa lb --check --config \/etc\/toa\/lb\.yaml$/m);
  assert.match(u, /^ExecStart=\/usr\/bin\/toa lb --config \/etc\/toa\/lb\.yaml$/m);
  assert.match(u, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  assert.match(u, /^Restart=on-failure$/m);
  assert.match(u, /^Type=notify$/m);
  assert.match(lbUnitText(["/usr/bin/node", "/opt/toa dir/bin.js"], "/etc/toa/lb.yaml"), /^ExecStart=\/usr\/bin\/node "\/opt\/toa dir\/bin\.js" lb/m);
});
