/** `toa lb` as a process: --check exit codes and messages for good and bad configs, --help examples. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const BIN = resolve(dirname(fileURLToPath(import.meta.url)), "../../src/cli/bin.js");

function toa(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((res) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 20_000 }, (e, out, err) => res({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }));
  });
}

test("toa lb --check: exit 0 with a summary, exit 1 naming the file and field", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lb-cli-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, "good.yaml");
  writeFileSync(good, `listeners:\n  - { name: web, listen: "198.51.100.1:80", pool: web, mode: proxy-v2 }\npools:\n  web:\n    backends: ["203.0.113.10:80", { address: "203.0.113.11:80", weight: 2 }]\n`);
  const ok = await toa(["lb", "--check", "--config", good]);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /good\.yaml: ok: 1 listener\(s\), 1 pool\(s\), 2 backend\(s\)/);
  assert.match(ok.out, /web: 198\.51\.100\.1:80 \(proxy-v2\) → web \[round-robin: 203\.0\.113\.10:80, 203\.0\.113\.11:80\*2\]/);

  const table = [
    { yaml: good, patch: (s: string) => s.replace("weight: 2", "weight: -1"), want: /bad\.yaml: pools\.web\.backends\[1\]\.weight: must be an integer 1\.\.256, got -1/ },
    { yaml: good, patch: (s: string) => s.replace("proxy-v2", "proxy"), want: /bad\.yaml: listeners\[0\]\.mode: must be one of toa, proxy-v1, proxy-v2, none; got "proxy"/ },
    { yaml: good, patch: (s: string) => s.replace("pool: web", "pool: api"), want: /bad\.yaml: listeners\[0\]\.pool: no pool named "api"; defined: web/ },
    { yaml: good, patch: (s: string) => `${s}    extra: 1\n`, want: /bad\.yaml: pools\.web\.extra: unknown field/ },
  ];
  for (const c of table) {
    const { readFileSync } = await import("node:fs");
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, c.patch(readFileSync(c.yaml, "utf8")));
    const r = await toa(["lb", "--check", "--config", bad]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^toa lb: config refused:/);
    assert.match(r.err, c.want);
  }
  const flags = await toa(["lb", "--check", "--listen", "198.51.100.1:80", "--backend", "203.0.113.10"]);
  assert.equal(flags.code, 1);
  assert.match(flags.err, /command line: pools\.default\.backends\[0\]: expected ADDR:PORT/);
  const usage = await toa(["lb", "--check"]);
  assert.equal(usage.code, 2);
  assert.match(usage.err, /give --config FILE, or at least one --listen ADDR:PORT and one --backend ADDR:PORT/);
  const choice = await toa(["lb", "--check", "--listen", "198.51.100.1:80", "--backend", "203.0.113.10:80", "--mode", "nat"]);
  assert.notEqual(choice.code, 0);
  assert.match(choice.err, /Allowed choices are toa, proxy-v1, proxy-v2, none/);
});

test("toa lb --help teaches with examples", async () => {
  const r = await toa(["lb", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.out, /Examples:/);
  assert.match(r.out, /toa lb --listen 198\.51\.100\.1:80 --backend 203\.0\.113\.10:80/);
  assert.match(r.out, /SIGHUP reloads/);
});

test("toa lb --cgroup X while the balancer runs outside X: a warning naming --cgroup, where it runs and the fix", async () => {
  const { senderCgroupWarning } = await import("../../src/lb/sender/load.js");
  assert.equal(senderCgroupWarning("/sys/fs/cgroup/lb", "/sys/fs/cgroup/lb"), undefined);
  assert.equal(senderCgroupWarning("/sys/fs/cgroup/lb", "/sys/fs/cgroup/lb/worker"), undefined, "below it: covered");
  const w = senderCgroupWarning("/sys/fs/cgroup/lb", "/sys/fs/cgroup/lb2") ?? "";
  assert.match(w, /^--cgroup \/sys\/fs\/cgroup\/lb: this balancer runs in \/sys\/fs\/cgroup\/lb2, outside it, so its backend connections get no TOA/);
  assert.match(w, /Start toa lb inside it .* or leave --cgroup out/);
});
