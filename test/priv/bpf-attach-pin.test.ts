/**
 * Attach, query, replace, detach and pin, checked against what the kernel reports (BPF_PROG_QUERY),
 * on cgroups the test made; pinned links and maps under a unique folder in /sys/fs/bpf.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { requireRoot, uniqueName } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import {
  type AttachMode,
  attachCgroup,
  type CgroupAttachment,
  BpfMap,
  codec,
  describeAttached,
  ensurePinDir,
  linkFromPin,
  Program,
  queryCgroup,
  removePins,
} from "../../src/bpf/index.js";
import { exit, mov, R0 } from "../../src/bpf/asm/index.js";

/** A trivial sock_ops program; `n` makes each one a distinct kernel object. */
function loadTrivial(t: TestContext, name: string, n: number): Program {
  const p = Program.load({ name, type: "SOCK_OPS", instructions: [mov(R0, n), mov(R0, 1), exit()] });
  t.after(() => p.close());
  return p;
}

/**
 * Detach at teardown. After-hooks run in registration order, so the test cgroup (registered first)
 * is already gone when this runs; its removal dropped its attachments with it, and a multi
 * attachment's detach would fail to open the folder: then only release the fds.
 */
function detachAtEnd(t: TestContext, a: CgroupAttachment): void {
  t.after(() => (existsSync(a.cgroupPath) ? a.detach() : a.close()));
}

function pinDir(t: TestContext): string {
  const dir = join("/sys/fs/bpf", uniqueName("toa-test"));
  ensurePinDir(dir);
  // The pins these tests make, by name; removePins checks each holds what it should.
  t.after(() => removePins(dir, [{ name: "sockops_link", kind: "link" }, { name: "counters", kind: "map" }]));
  return dir;
}

for (const mode of ["link", "multi"] as AttachMode[]) {
  test(`attach (${mode}), query, replace, detach: the kernel's view follows`, (t) => {
    if (!requireRoot(t)) return;
    const cg = createTestCgroup(t);
    const first = loadTrivial(t, "test_first", 1);
    const second = loadTrivial(t, "test_second", 2);
    assert.notEqual(first.info.id, second.info.id);
    assert.deepEqual(queryCgroup(cg.path, "CGROUP_SOCK_OPS").programIds, []);

    const a = attachCgroup(cg.path, first, "CGROUP_SOCK_OPS", mode);
    detachAtEnd(t, a);
    assert.equal(a.mode, mode);
    const q = queryCgroup(cg.path, "CGROUP_SOCK_OPS");
    assert.deepEqual(q.programIds, [first.info.id]);
    if (mode === "multi") assert.equal(q.attachFlags, 2 /* ALLOW_MULTI */);
    assert.deepEqual(describeAttached(cg.path, "CGROUP_SOCK_OPS"), [{ id: first.info.id, name: "test_first" }]);
    // Other attach types of the same cgroup are untouched.
    assert.deepEqual(queryCgroup(cg.path, "CGROUP_INET4_GETPEERNAME").programIds, []);

    a.replace(second);
    assert.deepEqual(queryCgroup(cg.path, "CGROUP_SOCK_OPS").programIds, [second.info.id]);

    a.detach();
    assert.deepEqual(queryCgroup(cg.path, "CGROUP_SOCK_OPS").programIds, []);
    a.detach(); // idempotent
  });
}

test("effective query of a child cgroup includes the parent's program", (t) => {
  if (!requireRoot(t)) return;
  const parent = createTestCgroup(t);
  const prog = loadTrivial(t, "test_inherit", 3);
  const a = attachCgroup(parent.path, prog, "CGROUP_SOCK_OPS", "multi");
  detachAtEnd(t, a);
  // The child goes away in the test body: after-hooks run in registration order, and the parent's
  // removal (registered first) needs it gone.
  const child = join(parent.path, "child");
  mkdirSync(child);
  try {
    assert.deepEqual(queryCgroup(child, "CGROUP_SOCK_OPS").programIds, []);
    assert.deepEqual(queryCgroup(child, "CGROUP_SOCK_OPS", true).programIds, [prog.info.id]);
  } finally {
    rmdirSync(child);
  }
});

test("a pinned link keeps the program attached after its fd closes; reopened, it detaches", (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t);
  const dir = pinDir(t);
  const prog = loadTrivial(t, "test_pinned", 4);
  const pin = join(dir, "sockops_link");

  const a = attachCgroup(cg.path, prog, "CGROUP_SOCK_OPS", "link");
  detachAtEnd(t, a);
  a.pin(pin);
  assert.ok(existsSync(pin));
  a.close();
  prog.close();
  assert.deepEqual(queryCgroup(cg.path, "CGROUP_SOCK_OPS").programIds, [prog.info.id], "still attached through the pin");

  const reopened = linkFromPin(pin, cg.path, "CGROUP_SOCK_OPS");
  detachAtEnd(t, reopened);
  assert.ok(reopened.fd >= 0);
  reopened.detach();
  assert.deepEqual(queryCgroup(cg.path, "CGROUP_SOCK_OPS").programIds, []);
});

test("an unpinned link detaches when its last fd closes", (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t);
  const prog = loadTrivial(t, "test_unpinned", 5);
  const a = attachCgroup(cg.path, prog, "CGROUP_SOCK_OPS", "link");
  detachAtEnd(t, a);
  assert.deepEqual(queryCgroup(cg.path, "CGROUP_SOCK_OPS").programIds, [prog.info.id]);
  a.close();
  assert.deepEqual(queryCgroup(cg.path, "CGROUP_SOCK_OPS").programIds, []);
});

test("multi attachments cannot be pinned: BpfError says why", (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t);
  const prog = loadTrivial(t, "test_multi_pin", 6);
  const a = attachCgroup(cg.path, prog, "CGROUP_SOCK_OPS", "multi");
  detachAtEnd(t, a);
  assert.throws(() => a.pin("/sys/fs/bpf/never"), /only bpf_link attachments can be pinned/);
});

test("a pinned map outlives its fd and reopens with the values written before", (t) => {
  if (!requireRoot(t)) return;
  const dir = pinDir(t);
  const path = join(dir, "counters");
  const m = BpfMap.create({ name: "test_pinmap", type: "HASH", keySize: 4, valueSize: 8, maxEntries: 8 }, { key: codec.u32, value: codec.u64 });
  t.after(() => m.close());
  m.update(7, 0xdeadbeefn);
  m.pin(path);
  const id = m.info.id;
  m.close();

  const again = BpfMap.fromPin(path, { key: codec.u32, value: codec.u64 });
  t.after(() => again.close());
  assert.equal(again.info.id, id);
  assert.equal(again.info.name, "test_pinmap");
  assert.equal(again.lookup(7), 0xdeadbeefn);
  assert.deepEqual(removePins(dir, [{ name: "counters", kind: "map", objectName: "test_pinmap" }]).removed, [path]);
  assert.equal(existsSync(dir), false);
  // The open fd keeps the map alive after unpinning.
  assert.equal(again.lookup(7), 0xdeadbeefn);
});

test("a pinned program reopens with the type the kernel reports, not an assumed one", (t) => {
  if (!requireRoot(t)) return;
  const dir = pinDir(t);
  const path = join(dir, "prog");
  const p = Program.load({ name: "test_pinprog", type: "SCHED_CLS", instructions: [mov(R0, 0), exit()] });
  t.after(() => p.close());
  t.after(() => removePins(dir, [{ name: "prog", kind: "program" }]));
  p.pin(path);
  const again = Program.fromPin(path);
  t.after(() => again.close());
  assert.equal(again.spec.type, "SCHED_CLS");
  assert.equal(again.spec.name, "test_pinprog");
  assert.equal(again.info.id, p.info.id);
  assert.deepEqual(removePins(dir, [{ name: "prog", kind: "program", objectName: "test_pinprog" }]).removed, [path]);
});
