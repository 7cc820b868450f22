/** `toa agent` targets and config: what matches, what is watched, pin folder names, and refusals naming the field. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTarget, parseUnit, targetPinDir } from "../../src/agent/targets.js";
import { readAgentFile, resolveAgentConfig } from "../../src/agent/agent-config.js";
import { run } from "../../src/cli/main.js";

const MOUNT = "/sys/fs/cgroup";
const segs = (p: string) => p.split("/").filter(Boolean);

test("targets: matches and mayContain, table-driven", () => {
  const cases: { target: string; unit?: boolean; path: string; matches: boolean; mayContain: boolean }[] = [
    { target: "system.slice/nginx.service", path: "system.slice/nginx.service", matches: true, mayContain: true },
    { target: "system.slice/nginx.service", path: "system.slice", matches: false, mayContain: true },
    { target: "system.slice/nginx.service", path: "user.slice", matches: false, mayContain: false },
    { target: "system.slice/nginx.service", path: "system.slice/nginx.service/x", matches: false, mayContain: false },
    { target: "/sys/fs/cgroup/system.slice/nginx.service", path: "system.slice/nginx.service", matches: true, mayContain: true },
    { target: "/", path: "", matches: true, mayContain: true },
    { target: "/", path: "system.slice", matches: false, mayContain: false },
    { target: "kubepods.slice/**/cri-containerd-*.scope", path: "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-ab12.scope", matches: true, mayContain: true },
    { target: "kubepods.slice/**/cri-containerd-*.scope", path: "kubepods.slice/kubepods-pod1.slice/cri-containerd-ab12.scope", matches: true, mayContain: true },
    { target: "kubepods.slice/**/cri-containerd-*.scope", path: "kubepods.slice/cri-containerd-x.scope", matches: true, mayContain: true },
    { target: "kubepods.slice/**/cri-containerd-*.scope", path: "kubepods.slice/kubepods-pod1.slice", matches: false, mayContain: true },
    { target: "kubepods.slice/**/cri-containerd-*.scope", path: "system.slice", matches: false, mayContain: false },
    { target: "kubepods.slice/**/cri-containerd-*.scope", path: "kubepods.slice/x/docker-1.scope", matches: false, mayContain: true },
    { target: "system.slice/app-?.service", path: "system.slice/app-1.service", matches: true, mayContain: true },
    { target: "system.slice/app-?.service", path: "system.slice/app-12.service", matches: false, mayContain: false },
    { target: "nginx.service", unit: true, path: "system.slice/nginx.service", matches: true, mayContain: false },
    { target: "nginx.service", unit: true, path: "web.slice/nginx.service", matches: true, mayContain: false },
    { target: "nginx.service", unit: true, path: "system.slice", matches: false, mayContain: true },
    { target: "nginx.service", unit: true, path: "", matches: false, mayContain: true },
    { target: "nginx.service", unit: true, path: "kubepods.slice/x.scope/nginx.service", matches: false, mayContain: false },
  ];
  for (const c of cases) {
    const t = c.unit ? parseUnit(c.target) : parseTarget(c.target, MOUNT);
    assert.equal(t.matches(segs(c.path)), c.matches, `${c.target} matches ${c.path}`);
    assert.equal(t.mayContain(segs(c.path)), c.mayContain, `${c.target} mayContain ${c.path}`);
  }
});

test("targets: refusals name the flag and the fix", () => {
  assert.throws(() => parseTarget("", MOUNT), /--target: is empty: give a cgroup folder/);
  assert.throws(() => parseTarget("/etc/passwd", MOUNT), /--target: "\/etc\/passwd" is not under the cgroup v2 mount \/sys\/fs\/cgroup/);
  assert.throws(() => parseTarget("a/../b", MOUNT), /has a "\.\." component/);
  assert.throws(() => parseTarget("a/b**", MOUNT), /\*\* must be a whole path component/);
  assert.throws(() => parseTarget("a/[ab]", MOUNT), /only \*, \? and \*\* are understood/);
  assert.throws(() => parseUnit("nginx"), /--unit: "nginx" is not a systemd unit name: write e\.g\. nginx\.service/);
  assert.throws(() => parseUnit("system.slice/nginx.service"), /for a cgroup path use --target/);
});

test("target pin folders: stable per path, distinct per path, no dots (bpffs refuses them)", () => {
  assert.equal(targetPinDir("/sys/fs/bpf/toa-agent", segs("system.slice/nginx.service")), "/sys/fs/bpf/toa-agent/system-slice_nginx-service-a4dad00b");
  assert.equal(targetPinDir("/b", []), `/b/root-${"e3b0c442"}`);
  assert.notEqual(targetPinDir("/b", segs("a_b/c")), targetPinDir("/b", segs("a/b_c")));
  const long = targetPinDir("/b", segs(`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${"1".repeat(36)}.slice/cri-containerd-${"f".repeat(64)}.scope`));
  assert.ok(long.length - 3 <= 255 && !long.slice(3).includes("."), long);
});

test("agent config: flags over the file, each refusal naming the flag or the file key", () => {
  const dir = mkdtempSync(join(tmpdir(), "toa-agent-cfg-"));
  try {
    const file = join(dir, "agent.yaml");
    writeFileSync(file, "targets: [system.slice/a.service]\nunits: [b.service]\ntrust: [100.125.0.0/16]\nkinds: [254, 200]\nlisten: 0.0.0.0:9102\n");
    const c = resolveAgentConfig({ trust: "10.0.0.0/8" }, MOUNT, file, readAgentFile(file));
    assert.deepEqual(c.targets.map((t) => t.text), ["system.slice/a.service", "unit b.service"]);
    assert.deepEqual([c.kinds, c.trust.map((x) => `${x.address}/${x.prefix}`), c.listen], [[254, 200], ["10.0.0.0/8"], { host: "0.0.0.0", port: 9102 }]);
    assert.ok(Object.isFrozen(c));
    writeFileSync(file, "targets: [a.service]\nkinds: [999]\n");
    assert.throws(() => resolveAgentConfig({}, MOUNT, file, readAgentFile(file)), new RegExp(`kinds \\(${file.replace(/[.]/g, "\\.")}\\): "999" is not an option kind`));
    writeFileSync(file, "target: [a]\n");
    assert.throws(() => readAgentFile(file), /target \(.*\): unknown key: the keys are targets, units/);
    writeFileSync(file, "targets: system.slice\n");
    assert.throws(() => readAgentFile(file), /targets \(.*\): must be a list of strings/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => resolveAgentConfig({}, MOUNT), /--target: no target: give --target PATH\|GLOB or --unit NAME/);
  assert.throws(() => resolveAgentConfig({ target: ["/"], listen: "9102" }, MOUNT), /--listen: "9102" is not ADDR:PORT/);
  assert.throws(() => resolveAgentConfig({ target: ["/"], pinBase: "/tmp/x" }, MOUNT), /--pin-base: "\/tmp\/x" must be a folder under \/sys\/fs\/bpf/);
  assert.throws(() => resolveAgentConfig({ target: ["/"], keepGone: "soon" }, MOUNT), /--keep-gone: "soon" is not a number of seconds/);
});

test("toa agent --check: exit 0 with a summary, 2 with the refusal", async () => {
  let out = "";
  const io = { out: (t: string) => void (out += `${t}\n`), err: (t: string) => void (out += `${t}\n`) };
  assert.equal(await run(["agent", "--check", "--unit", "nginx.service", "--trust", "100.125.0.0/16", "--json"], io), 0, out);
  const j = JSON.parse(out) as { targets: string[]; trust: string[] };
  assert.deepEqual([j.targets, j.trust], [["unit nginx.service"], ["100.125.0.0/16"]]);
  out = "";
  assert.equal(await run(["agent", "--check", "--unit", "nginx"], io), 2);
  assert.match(out, /--unit: "nginx" is not a systemd unit name/);
});

test("a pin folder with a dot is refused before anything is made, naming the name and a usable one", async () => {
  const { ensurePinDir } = await import("../../src/bpf/pin.js");
  assert.throws(() => ensurePinDir("/sys/fs/bpf/toa.nginx"), /pin folder \/sys\/fs\/bpf\/toa\.nginx: bpffs refuses names with a dot \("toa\.nginx"\): use e\.g\. \/sys\/fs\/bpf\/toa-nginx/);
  assert.throws(() => resolveAgentConfig({ target: ["/"], pinBase: "/sys/fs/bpf/toa.agent" }, MOUNT), /--pin-base: .*without dots/);
});
