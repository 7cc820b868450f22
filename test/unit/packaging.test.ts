/**
 * Shipping to many nodes: `npm pack` makes one tarball with its dependencies bundled, which installs
 * with no registry (an empty npm cache, --offline) and runs. Also the systemd unit commands.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { run } from "../../src/cli/main.js";

const exec = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

test("npm pack bundles the dependencies: installs offline from the tarball alone and runs", { timeout: 180_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "toa-pack-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await exec("npm", ["pack", "--pack-destination", dir, "--silent"], { cwd: root, timeout: 120_000 });
  const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"));
  assert.ok(tarball, "npm pack made a tarball");
  const node = join(dir, "node");
  await exec("mkdir", ["-p", node]);
  writeFileSync(join(node, "package.json"), JSON.stringify({ name: "node-without-registry", private: true }));
  // An empty cache and --offline: anything not inside the tarball would fail to install.
  await exec("npm", ["install", "--offline", "--cache", join(dir, "empty-cache"), "--no-audit", "--no-fund", join(dir, tarball!)], { cwd: node, timeout: 120_000 });
  for (const dep of ["commander", "koffi", "pino", "prom-client", "yaml"]) {
    assert.ok(existsSync(join(node, "node_modules", "toa", "node_modules", dep)), `${dep} is bundled`);
  }
  const { stdout } = await exec(join(node, "node_modules", ".bin", "toa"), ["--version"]);
  assert.match(stdout, /^\d+\.\d+\.\d+/);
  const help = await exec(join(node, "node_modules", ".bin", "toa"), ["load", "--help"]);
  assert.match(help.stdout, /--trust <cidrs>/);
});

test("install-service writes a unit that loads at boot with the given options; uninstall-service removes it", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "toa-unit-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const unit = join(dir, "toa.service");
  const io = { out: () => undefined, err: () => undefined };
  assert.equal(await run(["install-service", "--unit-path", unit, "--no-enable", "--trust", "100.125.0.0/16", "--kinds", "254,200", "--pin-dir", "/sys/fs/bpf/toa"], io), 0);
  const text = readFileSync(unit, "utf8");
  assert.match(text, /^ExecStart=\S+node\S* \S+ load --pin-dir \/sys\/fs\/bpf\/toa --trust 100\.125\.0\.0\/16 --kinds 254,200$/m);
  assert.match(text, /^ExecStop=.* unload --pin-dir \/sys\/fs\/bpf\/toa$/m);
  assert.equal(await run(["uninstall-service", "--unit-path", unit, "--no-enable"], io), 0);
  assert.ok(!existsSync(unit));
});
