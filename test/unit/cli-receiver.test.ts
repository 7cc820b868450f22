import { test } from "node:test";
import assert from "node:assert/strict";
import { run } from "../../src/cli/main.js";

function capture() {
  let out = "";
  let err = "";
  return { io: { out: (t: string) => void (out += `${t}\n`), err: (t: string) => void (err += `${t}\n`) }, get out() { return out; }, get err() { return err; } };
}

test("toa load refuses bad settings before touching the kernel, naming the flag and the fix", async () => {
  const cases: { args: string[]; want: RegExp }[] = [
    { args: ["load", "--kinds", "abc", "--cgroup", "/nonexistent"], want: /--kinds: "abc" is not an option kind/ },
    { args: ["load", "--trust", "10.0.0.0/40", "--cgroup", "/nonexistent"], want: /--trust: "10\.0\.0\.0\/40": prefix length must be 0-32/ },
    { args: ["load", "--trust", "lb.example", "--cgroup", "/nonexistent"], want: /--trust: "lb\.example" is not an address or CIDR: write e\.g\./ },
  ];
  for (const c of cases) {
    const cap = capture();
    const code = await run(c.args, cap.io);
    assert.equal(code, 2, c.args.join(" "));
    assert.match(cap.err, c.want);
  }
});

test("--help teaches: every receiver command explains itself with examples", async () => {
  for (const cmd of ["load", "unload", "status", "stats", "install-service", "agent"]) {
    const cap = capture();
    const code = await run([cmd, "--help"], cap.io);
    assert.equal(code, 0);
    assert.match(cap.out, cmd === "install-service" || cmd === "agent" ? /--pin-base/ : /--pin-dir/, cmd);
  }
  const cap = capture();
  await run(["load", "--help"], cap.io);
  assert.match(cap.out, /Examples:/);
  assert.match(cap.out, /--trust <cidrs>/);
});

test("unknown command exits non-zero with a pointer to --help", async () => {
  const cap = capture();
  const code = await run(["frobnicate"], cap.io);
  assert.notEqual(code, 0);
  assert.match(cap.err, /unknown command|--help/);
});

test("toa demo --cleanup of an id that left nothing fails, saying so and what exists", async () => {
  const cap = capture();
  assert.equal(await run(["demo", "--cleanup", "nonexist"], cap.io), 1);
  assert.match(cap.err, /--cleanup: no demo "nonexist" is left .*`toa demo --cleanup all` removes every leftover one/);
  assert.doesNotMatch(cap.out, /removed demo/);
});

test("toa stats --watch takes seconds above 0, refused before anything is read, naming the flag and the fix", async () => {
  for (const bad of ["0", "abc", "-1", "1s"]) {
    const cap = capture();
    assert.equal(await run(["stats", "--watch", bad, "--pin-dir", "/nonexistent"], cap.io), 2, bad);
    assert.match(cap.err, new RegExp(`--watch: "${bad}" is not a number of seconds above 0: write e\\.g\\. --watch 5`), bad);
  }
});
