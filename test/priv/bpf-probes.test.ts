/** Feature probes on the running kernel: this project's CI kernel (6.18) has every feature. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireRoot } from "../harness/privileged.js";
import { clearProbeCache, features, probe, probeAll, requireFeatures, UnsupportedFeatureError } from "../../src/bpf/index.js";

test("probeAll reports every feature available on this kernel", (t) => {
  if (!requireRoot(t)) return;
  clearProbeCache();
  const results = probeAll();
  assert.deepEqual(
    results.map((r) => r.id),
    features.map((f) => f.id),
  );
  const missing = results.filter((r) => !r.available).map((r) => `${r.id}: ${r.error}`);
  assert.deepEqual(missing, [], `missing features:\n${missing.join("\n")}`);
  for (const r of results) assert.match(r.since, /^\d+\.\d+$/);
  assert.doesNotThrow(() => requireFeatures(features.map((f) => f.id)));
});

test("probe results are cached per process and unknown features are refused", (t) => {
  if (!requireRoot(t)) return;
  const a = probe("sk-storage");
  assert.equal(probe("sk-storage"), a);
  assert.throws(() => probe("time-travel"), /unknown feature time-travel/);
});

test("UnsupportedFeatureError names the feature and the kernel that added it", () => {
  const e = new UnsupportedFeatureError("cgroup getpeername hooks", "5.8");
  assert.equal(e.code, "BPF_ERR_UNSUPPORTED");
  assert.match(e.message, /cgroup getpeername hooks is not supported by this kernel \(upstream Linux 5\.8 has it/);
});
