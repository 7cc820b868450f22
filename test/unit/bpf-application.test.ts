/** setApplication: the toolkit names no application until told; then its filters and hints do. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { currentApplication, setApplication, SyscallError, tcFilterNamePrefix } from "../../src/bpf/index.js";

test("neutral by default: filters named bpf:<program>, hints without a feature-check command", () => {
  assert.deepEqual(currentApplication(), { name: "bpf" });
  assert.equal(tcFilterNamePrefix(), "bpf:");
  assert.match(new SyscallError("BPF_LINK_CREATE", 22).hint, /a feature may be missing from this kernel, or a field is out of range/);
  assert.match(new SyscallError("BPF_LINK_CREATE", 95).hint, /^this kernel does not support the operation$/);
});

test("setApplication names the default filters and the feature check of the hints", (t) => {
  const before = currentApplication();
  t.after(() => setApplication(before));
  setApplication({ name: "toa", featureCheck: "toa doctor" });
  assert.equal(tcFilterNamePrefix(), "toa:");
  assert.match(new SyscallError("BPF_LINK_CREATE", 22).hint, /a feature may be missing from this kernel \(run `toa doctor`\), or a field/);
  assert.match(new SyscallError("BPF_LINK_CREATE", 524).hint, /does not support the operation \(run `toa doctor`\)/);
  assert.throws(() => setApplication({ name: "a b" }), /application name "a b"/);
});

test("toa names itself when its layouts are loaded: filters toa:<program>, hints run `toa doctor`", async (t) => {
  const before = currentApplication();
  t.after(() => setApplication(before));
  await import("../../src/programs/layout.js");
  assert.deepEqual(currentApplication(), { name: "toa", featureCheck: "toa doctor" });
});
