/**
 * Feature probes on the running kernel: everything the receiver, the sender and the balancer need is
 * there on every kernel of the matrix (5.10+); tcx links (6.6+) are optional: without them tc
 * programs go through a clsact qdisc and a netlink filter.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireRoot } from "../harness/privileged.js";
import { clearProbeCache, features, probe, probeAll, requireFeatures, UnsupportedFeatureError } from "../../src/bpf/index.js";

/** Features with a fallback, and the fallback. */
const OPTIONAL: Record<string, string> = { tcx: "netlink tc filters" };

test("probeAll reports every feature the project needs available on this kernel; optional ones are probed too", (t) => {
  if (!requireRoot(t)) return;
  clearProbeCache();
  const results = probeAll();
  assert.deepEqual(
    results.map((r) => r.id),
    features.map((f) => f.id),
  );
  const missing = results.filter((r) => !r.available && !(r.id in OPTIONAL)).map((r) => `${r.id}: ${r.error}`);
  assert.deepEqual(missing, [], `missing features:\n${missing.join("\n")}`);
  for (const r of results) {
    assert.match(r.since, /^\d+\.\d+$/);
    assert.equal(r.denied, undefined, `${r.id} was not refused for privileges`);
    if (!r.available) t.diagnostic(`${r.id} missing (${r.error}): ${OPTIONAL[r.id]} are used instead`);
  }
  const required = features.map((f) => f.id).filter((id) => !(id in OPTIONAL));
  assert.doesNotThrow(() => requireFeatures(required));
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
