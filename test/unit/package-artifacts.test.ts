/**
 * `npm run package`'s outputs, without privileges and without installing anything: the executables
 * run with no node on PATH (the arm64 one under qemu-user), the .deb's and the .rpm's contents,
 * metadata and maintainer scripts as dpkg-deb and rpm read them. Installing, the agent and removal
 * are tested in the kernel matrix's VMs (test/vm/package-deb.test.ts).
 *
 * The package build runs once (scripts/package/build.mjs; it skips itself when its inputs have not
 * changed since the last build).
 */
import { before, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const OUT = join(root, "dist", "package");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
const V = pkg.version;
const FILES = {
  exe: { x64: join(OUT, "toa-linux-x64"), arm64: join(OUT, "toa-linux-arm64") },
  deb: { x64: join(OUT, `toa_${V}_amd64.deb`), arm64: join(OUT, `toa_${V}_arm64.deb`) },
  rpm: { x64: join(OUT, `toa-${V}-1.x86_64.rpm`), arm64: join(OUT, `toa-${V}-1.aarch64.rpm`) },
};

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; encoding?: "buffer" } = {}): Promise<Ran & { raw?: Buffer }> {
  return new Promise((done) => {
    execFile(cmd, args, { env: opts.env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 256 << 20, encoding: "buffer" }, (e, stdout, stderr) => {
      const code = e ? (typeof (e as { code?: unknown }).code === "number" ? ((e as { code: number }).code) : -1) : 0;
      done({ code, stdout: stdout.toString(), stderr: stderr.toString(), raw: stdout });
    });
  });
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** A scratch folder, removed after the test. */
function scratch(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * The environment of a machine without Node: PATH is one empty folder (no node, no npm), HOME and the
 * native-binary cache are scratch folders (nothing is written outside them).
 */
function noNodeEnv(dir: string): NodeJS.ProcessEnv {
  const bin = join(dir, "empty-bin");
  mkdirSync(bin, { recursive: true });
  return { PATH: bin, HOME: dir, TOA_CACHE_DIR: join(dir, "cache"), LANG: "C.UTF-8" };
}

before(async () => {
  const r = await run(process.execPath, [join(root, "scripts/package/build.mjs")], { timeoutMs: 900_000 });
  if (r.code !== 0) throw new Error(`scripts/package/build.mjs failed (exit ${r.code}):\n${r.stderr.slice(-4000)}`);
});

test("npm run package makes an executable, a .deb and an .rpm per architecture, listed with their SHA-256 in SHA256SUMS, with the notices", () => {
  const sums = readFileSync(join(OUT, "SHA256SUMS"), "utf8");
  for (const f of [...Object.values(FILES.exe), ...Object.values(FILES.deb), ...Object.values(FILES.rpm)]) {
    assert.ok(existsSync(f), `${f} was built`);
    const name = f.slice(OUT.length + 1);
    assert.match(sums, new RegExp(`^${sha256(readFileSync(f))}  ${name.replace(/\./g, "\\.")}$`, "m"), `${name} in SHA256SUMS`);
  }
  for (const exe of Object.values(FILES.exe)) {
    assert.equal(readFileSync(exe).includes(root), false, `${exe} holds no path of the machine that built it`);
  }
  const notices = readFileSync(join(OUT, "THIRD-PARTY-NOTICES.txt"), "utf8");
  for (const p of ["Node.js", "koffi", "commander", "pino", "prom-client", "yaml"]) assert.match(notices, new RegExp(`^== ${p}`, "m"), `${p}'s license is in the notices`);
});

test("the x64 executable runs with no node on PATH: --version, --help, agent --check on a config file", async (t) => {
  const dir = scratch(t, "toa-exe-");
  const env = noNodeEnv(dir);
  assert.notEqual((await run("/bin/sh", ["-c", "command -v node"], { env })).code, 0, "node is not on this PATH");
  const version = await run(FILES.exe.x64, ["--version"], { env });
  assert.equal(version.code, 0, version.stderr);
  assert.equal(version.stdout.trim(), V);
  const help = await run(FILES.exe.x64, ["--help"], { env });
  assert.equal(help.code, 0, help.stderr);
  for (const c of ["load", "unload", "status", "stats", "agent", "lb", "inspect", "doctor", "demo", "install-service"]) assert.match(help.stdout, new RegExp(`^  ${c} `, "m"), `--help lists ${c}`);
  assert.doesNotMatch(help.stdout, /demo-peer/, "the demo's helper command stays hidden");
  // The YAML parser and the agent's config checks, bundled.
  const config = join(dir, "agent.yaml");
  writeFileSync(config, "targets: [/]\ntrust: [100.125.0.0/16]\nlisten: off\n");
  const check = await run(FILES.exe.x64, ["agent", "--check", "--config", config], { env });
  assert.equal(check.code, 0, check.stderr);
  assert.match(check.stdout, /ok: 1 target\(s\): \/\n {2}kinds 254,253,200, trust 100\.125\.0\.0\/16/);
});

/** Run `exe ARGS` as an unprivileged user (nobody) when this test runs as root, so it makes no privileged call. */
function asUser(dir: string, exe: string, args: string[], env: NodeJS.ProcessEnv): Promise<Ran> {
  if (process.getuid?.() !== 0) return run(exe, args, { env });
  for (const d of [dir, env.TOA_CACHE_DIR!]) {
    mkdirSync(d, { recursive: true });
    chownSync(d, 65534, 65534);
  }
  return run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", exe, ...args], { env });
}

test("the x64 executable loads koffi's native binary from inside itself into its private cache and calls bpf(2) through it", async (t) => {
  const dir = scratch(t, "toa-exe-");
  const env = noNodeEnv(dir);
  const r = await asUser(dir, FILES.exe.x64, ["doctor", "--json"], env);
  const report = JSON.parse(r.stdout) as { checks: { id: string; ok: boolean | "warn"; detail: string }[] };
  const bpf = report.checks.find((c) => c.id === "feature:bpf-syscall");
  // Unprivileged, the kernel refuses the probe: its EPERM came back through koffi's syscall() and errno.
  assert.match(bpf?.detail ?? "", /BPF_MAP_CREATE .*: EPERM/);
  assert.doesNotMatch(JSON.stringify(report), /koffi|cannot load/i);
  const cached = readdirSync(env.TOA_CACHE_DIR!);
  assert.equal(cached.length, 1, `one file in the cache: ${cached.join(", ")}`);
  const addon = readFileSync(join(env.TOA_CACHE_DIR!, cached[0]));
  // npm installed the same version (package-lock.json pins both) for this x64 machine.
  const shipped = readFileSync(join(root, "node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node"));
  assert.equal(sha256(addon), sha256(shipped), "the cached file is koffi's linux_x64 binary");
  assert.match(cached[0], new RegExp(`^koffi-${sha256(shipped).slice(0, 16)}\\.node$`));
  // A second start finds it there and checks it: the folder is unchanged.
  await asUser(dir, FILES.exe.x64, ["doctor", "--json"], env);
  assert.deepEqual(readdirSync(env.TOA_CACHE_DIR!), cached);
});

const QEMU = "/usr/bin/qemu-aarch64";
const ARM64_ROOT = "/usr/aarch64-linux-gnu";

test("the arm64 executable runs under qemu-aarch64 with no node on PATH: --version, and doctor reaches bpf(2) through koffi's arm64 binary", { timeout: 180_000 }, async (t) => {
  if (!existsSync(QEMU) || !existsSync(join(ARM64_ROOT, "lib/ld-linux-aarch64.so.1"))) {
    if (process.env.CI === "true") throw new Error("qemu-user and Debian's arm64 cross libraries are missing: scripts/install-test-deps.sh installs them");
    return t.skip("needs qemu-user, libc6-arm64-cross, libstdc++6-arm64-cross (scripts/install-test-deps.sh)");
  }
  const dir = scratch(t, "toa-exe-arm64-");
  const env = noNodeEnv(dir);
  const version = await run(QEMU, ["-L", ARM64_ROOT, FILES.exe.arm64, "--version"], { env, timeoutMs: 120_000 });
  assert.equal(version.code, 0, version.stderr);
  assert.equal(version.stdout.trim(), V);
  const doctor = await asUser(dir, QEMU, ["-L", ARM64_ROOT, FILES.exe.arm64, "doctor", "--json"], env);
  const report = JSON.parse(doctor.stdout) as { checks: { id: string; detail: string }[] };
  assert.match(report.checks.find((c) => c.id === "kernel")!.detail, / arm64 /);
  // qemu-user does not pass bpf(2) on: the call went through koffi and came back with an errno.
  assert.match(report.checks.find((c) => c.id === "feature:bpf-syscall")!.detail, /BPF_MAP_CREATE .*: E[A-Z]+/);
  const cached = readdirSync(env.TOA_CACHE_DIR!);
  const elf = readFileSync(join(env.TOA_CACHE_DIR!, cached[0]));
  assert.equal(elf.readUInt16LE(18), 183, "the cached koffi binary is an aarch64 ELF (e_machine 183)");
});

/** The files a .deb installs, from `dpkg-deb -c`: path → "mode owner". */
async function debContents(deb: string): Promise<Map<string, string>> {
  const r = await run("dpkg-deb", ["-c", deb]);
  assert.equal(r.code, 0, r.stderr);
  const m = new Map<string, string>();
  for (const line of r.stdout.trim().split("\n")) {
    const f = line.split(/\s+/);
    if (!f[0].startsWith("d")) m.set(f[5].replace(/^\./, ""), `${f[0]} ${f[1]}`);
  }
  return m;
}

const INSTALLED = ["/etc/toa/agent.yaml", "/usr/bin/toa", "/usr/lib/systemd/system/toa.service", "/usr/share/doc/toa/README.md", "/usr/share/doc/toa/copyright", "/usr/share/man/man1/toa.1.gz"];

test(".deb: control fields, files (the executable byte for byte, root-owned), conffiles", async (t) => {
  for (const [arch, deb] of [["amd64", FILES.deb.x64], ["arm64", FILES.deb.arm64]] as const) {
    const info = await run("dpkg-deb", ["-f", deb, "Package", "Version", "Architecture", "Depends", "Maintainer"]);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, new RegExp(`^Package: toa\nVersion: ${V.replace(/\./g, "\\.")}\nArchitecture: ${arch}\nDepends: libc6 \\(>= 2\\.28\\), libstdc\\+\\+6 \\(>= 5\\.2\\), libgcc-s1 \\| libgcc1\nMaintainer: .+\n$`));
    const files = await debContents(deb);
    assert.deepEqual([...files.keys()].sort(), INSTALLED);
    assert.equal(files.get("/usr/bin/toa"), "-rwxr-xr-x root/root");
    for (const f of INSTALLED.filter((f) => f !== "/usr/bin/toa")) assert.equal(files.get(f), "-rw-r--r-- root/root", f);
  }
  const dir = scratch(t, "toa-deb-");
  assert.equal((await run("dpkg-deb", ["-x", FILES.deb.x64, dir])).code, 0);
  assert.equal(sha256(readFileSync(join(dir, "usr/bin/toa"))), sha256(readFileSync(FILES.exe.x64)), "the .deb installs the executable as built");
  assert.equal((await run("dpkg-deb", ["-e", FILES.deb.x64, join(dir, "DEBIAN")])).code, 0);
  assert.equal(readFileSync(join(dir, "DEBIAN/conffiles"), "utf8"), "/etc/toa/agent.yaml\n", "the config file survives upgrades and removal (dpkg asks before replacing an edited one)");
  const md5 = readFileSync(join(dir, "DEBIAN/md5sums"), "utf8");
  assert.match(md5, new RegExp(`^${createHash("md5").update(readFileSync(FILES.exe.x64)).digest("hex")}  usr/bin/toa$`, "m"));
});

test(".deb: the unit runs the installed agent on /etc/toa/agent.yaml and is not enabled; the shipped config is refused until it names a target", async (t) => {
  const dir = scratch(t, "toa-deb-");
  await run("dpkg-deb", ["-x", FILES.deb.x64, dir]);
  await run("dpkg-deb", ["-e", FILES.deb.x64, join(dir, "DEBIAN")]);
  const unit = readFileSync(join(dir, "usr/lib/systemd/system/toa.service"), "utf8");
  assert.match(unit, /^ExecStart=\/usr\/bin\/toa agent --config \/etc\/toa\/agent\.yaml$/m);
  assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  assert.match(unit, /^RestartPreventExitStatus=2$/m);
  for (const s of ["postinst", "prerm", "postrm"]) {
    const text = readFileSync(join(dir, "DEBIAN", s), "utf8");
    assert.doesNotMatch(text, /systemctl (--system )?enable|deb-systemd-helper enable|systemctl (--system )?start/, `${s} neither enables nor starts the unit`);
    assert.equal((await run("/bin/sh", ["-n", join(dir, "DEBIAN", s)])).code, 0, `${s} is valid sh`);
  }
  // The config as shipped: the agent refuses it (exit 2, which the unit does not restart) and says why.
  const env = noNodeEnv(dir);
  const r = await run(join(dir, "usr/bin/toa"), ["agent", "--check", "--config", join(dir, "etc/toa/agent.yaml")], { env });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no target: give --target/);
  // Uncommenting the examples' lines makes a config the agent accepts.
  const edited = readFileSync(join(dir, "etc/toa/agent.yaml"), "utf8").replace(/^#(targets:|trust:| {2}- \/ | {2}- 100\.125)/gm, "$1");
  writeFileSync(join(dir, "agent.yaml"), edited);
  const ok = await run(join(dir, "usr/bin/toa"), ["agent", "--check", "--config", join(dir, "agent.yaml")], { env });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /1 target\(s\): \/\n.*trust 100\.125\.0\.0\/16/);
});

test(".deb: removal stops the agent and unloads every pin folder under the agent's pin base and /sys/fs/bpf/toa; purge forgets the unit's links", async (t) => {
  const dir = scratch(t, "toa-deb-");
  await run("dpkg-deb", ["-e", FILES.deb.x64, dir]);
  const prerm = readFileSync(join(dir, "prerm"), "utf8");
  assert.match(prerm, /^remove\|deconfigure\)\n\ttoa_stop_agents\n\ttoa_unload_all\n\t;;$/m, "only on removal, not on upgrade");
  assert.match(prerm, /\/usr\/bin\/toa agent --check --json --config \/etc\/toa\/agent\.yaml/, "the configured pinBase is asked from toa itself");
  assert.match(prerm, /for dir in "\$base"\/\*; do\n.*\n\t\t\t\/usr\/bin\/toa unload --pin-dir "\$dir"/);
  assert.match(prerm, /\/usr\/bin\/toa unload --pin-dir \/sys\/fs\/bpf\/toa\b/);
  const postrm = readFileSync(join(dir, "postrm"), "utf8");
  assert.match(postrm, /rm -rf \/var\/cache\/toa/);
  assert.match(postrm, /"\$1" = purge .*\n\tdeb-systemd-helper purge toa\.service/);
  const postinst = readFileSync(join(dir, "postinst"), "utf8");
  assert.match(postinst, /systemctl try-restart toa\.service/, "an upgrade restarts a running agent");
});

test(".deb: the man page has every command's --help", async (t) => {
  const dir = scratch(t, "toa-deb-");
  await run("dpkg-deb", ["-x", FILES.deb.x64, dir]);
  const man = gunzipSync(readFileSync(join(dir, "usr/share/man/man1/toa.1.gz"))).toString();
  assert.match(man, /^\.TH TOA 1 /);
  for (const c of ["load", "unload", "status", "stats", "agent", "lb", "inspect", "doctor", "demo", "install-service", "uninstall-service"]) {
    assert.match(man, new RegExp(`^\\.SS toa ${c}\n\\.nf\nUsage: toa ${c} `, "m"), `toa ${c}`);
  }
  assert.doesNotMatch(man, /demo-peer/);
});

test(".rpm: name, version, architecture, files, config file and the libraries it requires", async () => {
  for (const [arch, rpm] of [["x86_64", FILES.rpm.x64], ["aarch64", FILES.rpm.arm64]] as const) {
    const q = await run("rpm", ["-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}\n", rpm]);
    assert.equal(q.code, 0, q.stderr);
    assert.equal(q.stdout, `toa ${V} 1 ${arch} MIT\n`);
    const list = await run("rpm", ["-qpl", rpm]);
    assert.deepEqual(list.stdout.trim().split("\n").sort(), ["/etc/toa", ...INSTALLED.slice(0, 3), "/usr/share/doc/toa", ...INSTALLED.slice(3)].sort());
    const conf = await run("rpm", ["-qp", "--configfiles", rpm]);
    assert.equal(conf.stdout, "/etc/toa/agent.yaml\n");
    const modes = await run("rpm", ["-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]", rpm]);
    assert.match(modes.stdout, /^-rwxr-xr-x root:root \/usr\/bin\/toa$/m);
    const req = await run("rpm", ["-qpR", rpm]);
    assert.match(req.stdout, /^libc\.so\.6\(GLIBC_2\.28\)\(64bit\)$/m);
    assert.match(req.stdout, /^libstdc\+\+\.so\.6\(GLIBCXX_3\.4\.21\)\(64bit\)$/m);
    const prov = await run("rpm", ["-qp", "--provides", rpm]);
    assert.deepEqual(prov.stdout.trim().split("\n").sort(), [`toa = ${V}-1`, `toa(${arch === "x86_64" ? "x86-64" : "aarch-64"}) = ${V}-1`], "no libraries provided (AutoProv off)");
  }
  const cpio = await run("sh", ["-c", `rpm2cpio '${FILES.rpm.x64}' | cpio -i --quiet --to-stdout ./usr/bin/toa | sha256sum`]);
  assert.equal(cpio.stdout.split(" ")[0], sha256(readFileSync(FILES.exe.x64)), "the .rpm installs the executable as built");
});

test(".rpm: scriptlets: erase (not upgrade) stops the agent and unloads its receivers, then drops the cache; nothing enables the unit", async (t) => {
  const r = await run("rpm", ["-qp", "--scripts", FILES.rpm.x64]);
  assert.equal(r.code, 0, r.stderr);
  const parts = Object.fromEntries(
    r.stdout
      .split(/^(\w+) scriptlet \(using \/bin\/sh\):\n/m)
      .slice(1)
      .reduce<[string, string][]>((acc, x, i, a) => (i % 2 === 0 ? [...acc, [x, a[i + 1]]] : acc), []),
  );
  assert.deepEqual(Object.keys(parts).sort(), ["postinstall", "postuninstall", "preuninstall"]);
  assert.match(parts.preuninstall, /if \[ "\$1" -eq 0 \]; then\n\ttoa_stop_agents\n\ttoa_unload_all\nfi/);
  assert.match(parts.preuninstall, /\/usr\/bin\/toa unload --pin-dir "\$dir"/);
  assert.match(parts.postuninstall, /if \[ "\$1" -eq 0 \]; then\n\trm -rf \/var\/cache\/toa\nfi/);
  assert.match(parts.postuninstall, /if \[ "\$1" -ge 1 \]; then systemctl try-restart toa\.service/);
  const dir = scratch(t, "toa-rpm-");
  for (const [name, text] of Object.entries(parts)) {
    assert.doesNotMatch(text, /systemctl (--system )?(enable|start)/, `${name} neither enables nor starts the unit`);
    writeFileSync(join(dir, name), text);
    assert.equal((await run("/bin/sh", ["-n", join(dir, name)])).code, 0, `${name} is valid sh`);
  }
});
