/**
 * `toa demo` end to end as a child process (its own SIGINT handlers stay out of the test runner):
 * exit 0, the table shows the balancer's address without toa and the client's with it, and no
 * namespace, cgroup, pin or process it created remains. Then --keep / --cleanup, and Ctrl-C.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, existsSync } from "node:fs";
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { requireRoot } from "../harness/privileged.js";
import { sh } from "../harness/exec.js";
import { findCgroup2Mount } from "../../src/bpf/cgroup.js";
import { toaArgv } from "../../src/shared/self.js";
import { scaled } from "../harness/time.js";

const execFileP = promisify(execFile);

async function snapshot(): Promise<{ netns: string[]; cgroups: string[]; pins: string[]; procs: string[] }> {
  const netns = (await sh("ip", ["netns", "list"])).split("\n").map((l) => l.split(" ")[0]).filter((n) => n.startsWith("toa-demo-"));
  const cgroups = readdirSync(findCgroup2Mount()).filter((n) => n.startsWith("toa-demo-"));
  const pins = readdirSync("/sys/fs/bpf").filter((n) => n.startsWith("toa-demo-"));
  const procs = (await sh("ps", ["-eo", "pid=,args="])).split("\n").filter((l) => l.includes("lb --config /tmp/toa-demo-") || l.includes("demo-peer backend 8080"));
  return { netns, cgroups, pins, procs };
}

async function toa(args: string[], timeoutMs = 90_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const [file, ...rest] = toaArgv(...args);
    const { stdout, stderr } = await execFileP(file, rest, { timeout: scaled(timeoutMs) });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? -1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
  }
}

test("toa demo: the backend sees the balancer without toa, the client with it; nothing is left", async (t) => {
  if (!requireRoot(t)) return;
  const before = await snapshot();
  const r = await toa(["demo"]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /IPv4 without toa\s+203\.0\.113\.1:\d+\s+\(the load balancer\)/);
  assert.match(r.stdout, /IPv4 with toa load\s+198\.51\.100\.2:\d+\s+\(the real client\)\s+✓/);
  assert.match(r.stdout, /IPv6 with toa load\s+\[2001:db8:1::2\]:\d+\s+\(the real client\)\s+✓/);
  assert.match(r.stdout, /TOA written [1-9]/);
  assert.match(r.stderr, /creating namespaces…/);
  assert.match(r.stderr, /starting toa lb…/);
  assert.match(r.stderr, /cleaning up…/);
  assert.deepEqual(await snapshot(), before);
});

test("toa demo --json: the observations and counters", async (t) => {
  if (!requireRoot(t)) return;
  const before = await snapshot();
  const r = await toa(["demo", "--json", "--ipv4-only"]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const j = JSON.parse(r.stdout) as { ok: boolean; observations: { toa: boolean; who: string; client: { port: number }; backendSaw: { address: string; port: number } }[]; receiverCounters: Record<string, number>; lb: { toaWritten: number } };
  assert.equal(j.ok, true);
  const withToa = j.observations.find((o) => o.toa)!;
  assert.equal(withToa.backendSaw.address, "198.51.100.2");
  assert.equal(withToa.backendSaw.port, withToa.client.port, "the client's own port too");
  assert.equal(j.observations.find((o) => !o.toa)!.backendSaw.address, "203.0.113.1");
  assert.ok(j.receiverCounters.getname_toa_ok >= 1);
  assert.ok(j.lb.toaWritten >= 1);
  assert.deepEqual(await snapshot(), before);
});

test("toa demo --data-path packet: the kernel's NAT writes the TOA; same result, nothing left", async (t) => {
  if (!requireRoot(t)) return;
  const before = await snapshot();
  const r = await toa(["demo", "--json", "--data-path", "packet"]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stderr, /packet data path/);
  const j = JSON.parse(r.stdout) as { ok: boolean; observations: { family: number; toa: boolean; who: string }[]; lb: { toaWritten: number } };
  assert.equal(j.ok, true, JSON.stringify(j.observations));
  assert.deepEqual(j.observations.map((o) => `${o.family} ${o.toa} ${o.who}`), ["4 false balancer", "6 false balancer", "4 true client", "6 true client"]);
  // Four connections; each TOA'd one carries it in its handshake ACK and its request (client
  // segments get it until the backend acknowledges data); those made before `toa load` too.
  assert.equal(j.lb.toaWritten, 8, "every connection got its TOA from the packet path, in the ACK and the request");
  assert.deepEqual(await snapshot(), before);
});

test("toa demo --keep leaves it running; --cleanup ID removes it", async (t) => {
  if (!requireRoot(t)) return;
  const before = await snapshot();
  const r = await toa(["demo", "--keep", "--ipv4-only"]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const id = /toa demo --cleanup ([a-z0-9]+)/.exec(r.stdout)?.[1];
  assert.ok(id, r.stdout);
  t.after(() => toa(["demo", "--cleanup", id]));
  const kept = await snapshot();
  assert.equal(kept.netns.length, before.netns.length + 3);
  assert.ok(existsSync(`/sys/fs/bpf/toa-demo-${id}`));
  const c = await toa(["demo", "--cleanup", id]);
  assert.equal(c.code, 0, c.stderr);
  assert.deepEqual(await snapshot(), before);
});

test("toa demo: Ctrl-C (SIGINT) midway removes everything", async (t) => {
  if (!requireRoot(t)) return;
  const before = await snapshot();
  const [file, ...rest] = toaArgv("demo");
  const child = spawn(file, rest, { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  let sent = false;
  const code = new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  child.stderr.on("data", (d: Buffer) => {
    err += d.toString();
    if (!sent && err.includes("starting toa lb…")) {
      sent = true;
      child.kill("SIGINT");
    }
  });
  assert.equal(await code, 130, err);
  assert.match(err, /SIGINT: cleaning up/);
  assert.deepEqual(await snapshot(), before);
});
