/**
 * Shipping to many nodes: `npm pack` makes one tarball with its dependencies bundled, which installs
 * with no registry (an empty npm cache, --offline) and runs. Also the systemd unit commands.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
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

test("from a fresh clone, the README's set-up command (npm ci) is enough: npx toa --help works and the bin is executable", { timeout: 600_000 }, async (t) => {
  if (!existsSync(join(root, ".git"))) return t.skip("not a git checkout: nothing to clone");
  const dir = mkdtempSync(join(tmpdir(), "toa-clone-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const clone = join(dir, "toa");
  // The committed tree, as a new user gets it.
  await exec("git", ["clone", "--quiet", root, clone], { timeout: 120_000 });
  assert.equal(existsSync(join(clone, "dist")), false, "nothing built yet");
  // --prefer-offline: the packages come from the local npm cache when they are there.
  await exec("npm", ["ci", "--prefer-offline", "--no-audit", "--no-fund"], { cwd: clone, timeout: 480_000 });
  const bin = join(clone, "dist", "src", "cli", "bin.js");
  assert.ok(existsSync(bin), "npm ci built the CLI (the prepare script)");
  assert.ok((statSync(bin).mode & 0o111) !== 0, "the bin is executable");
  const { stdout } = await exec("npx", ["--no-install", "toa", "--help"], { cwd: clone, timeout: 60_000 });
  assert.match(stdout, /^Usage: toa \[options\] \[command\]/);
  assert.match(stdout, /agent/);
});

test("install-service writes a unit that runs the agent with the given options; uninstall-service removes it", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "toa-unit-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const unit = join(dir, "toa.service");
  const io = { out: () => undefined, err: () => undefined };
  assert.equal(await run(["install-service", "--unit-path", unit, "--no-enable", "--trust", "100.125.0.0/16", "--kinds", "254,200", "--unit", "nginx.service"], io), 0);
  const text = readFileSync(unit, "utf8");
  assert.match(text, /^ExecStart=\S+node\S* \S+ agent --unit nginx\.service --trust 100\.125\.0\.0\/16 --kinds 254,200$/m);
  assert.match(text, /^Before=network-pre\.target nginx\.service$/m);
  assert.equal(await run(["install-service", "--unit-path", unit, "--no-enable", "--trust", "100.125.0.0/16"], io), 0);
  assert.match(readFileSync(unit, "utf8"), /^ExecStart=\S+ \S+ agent --target \/ --trust 100\.125\.0\.0\/16$/m, "the whole host by default");
  assert.equal(await run(["uninstall-service", "--unit-path", unit, "--no-enable"], io), 0);
  assert.ok(!existsSync(unit));
});

test("install-service checks every option before it writes a unit, naming the field and the fix", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "toa-unit-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const unit = join(dir, "toa.service");
  const cases: { args: string[]; want: RegExp }[] = [
    { args: ["--kinds", "999"], want: /--kinds: "999" is not an option kind: give numbers 9-255/ },
    { args: ["--cgroup", "/sys/fs/cgroup/no-such-folder-for-toa"], want: /--cgroup: \/sys\/fs\/cgroup\/no-such-folder-for-toa does not exist: give an existing cgroup v2 folder.*toa agent --target/ },
    { args: ["--trust", "10.0.0.1/8"], want: /--trust: "10\.0\.0\.1\/8" has host bits set/ },
    { args: ["--trust", ""], want: /--trust: is empty/ },
    { args: ["--unit", "nginx"], want: /--unit: "nginx" is not a systemd unit name/ },
    { args: ["--target", "/etc"], want: /--target: "\/etc" is not under the cgroup v2 mount/ },
    { args: ["--listen", "everywhere"], want: /--listen: "everywhere" is not ADDR:PORT/ },
    { args: ["--pin-base", "/tmp/pins"], want: /--pin-base: "\/tmp\/pins" must be a folder under \/sys\/fs\/bpf/ },
  ];
  for (const c of cases) {
    let err = "";
    const io = { out: () => undefined, err: (s: string) => void (err += s) };
    assert.notEqual(await run(["install-service", "--unit-path", unit, "--no-enable", ...c.args], io), 0, c.args.join(" "));
    assert.match(err, c.want, c.args.join(" "));
    assert.equal(existsSync(unit), false, `no unit written for ${c.args.join(" ")}`);
  }
});

test("install-service --help reads whole: no line broken in the middle of the description", async () => {
  let out = "";
  await run(["install-service", "--help"], { out: (s) => void (out += s), err: () => undefined });
  // commander wraps at the terminal's width; the text itself has no hard line break (it had one after "with these").
  const flat = out.replace(/\s+/g, " ");
  assert.match(flat, /Write a systemd unit \(default \/etc\/systemd\/system\/toa\.service\) that runs `toa agent` with these options from boot/);
  assert.match(out, /Examples:/);
});
