/**
 * Gate for privileged tests: they run as root; in CI (CI=true) they must run, so a non-root CI run
 * fails loudly instead of skipping. Outside CI without root they skip with the reason printed.
 */
import type { TestContext } from "node:test";
import { probe } from "../../src/bpf/probes.js";

/** True when the test may go on; otherwise the test was skipped (or throws in CI). */
export function requireRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  if (process.env.CI === "true") throw new Error("privileged test must run in CI, but the process is not root");
  const reason = "needs root (bpf, cgroups, network namespaces); run `sudo npm test`";
  console.log(`# skip ${t.name}: ${reason}`);
  t.skip(reason);
  return false;
}

/** A short name unique to this run: prefix-pid-counter-random, safe for netns/cgroup/pin names. */
let counter = 0;
export function uniqueName(prefix: string): string {
  counter++;
  return `${prefix}-${process.pid.toString(36)}${counter.toString(36)}${Math.random().toString(36).slice(2, 5)}`;
}

/**
 * True when the running kernel has the feature `id` (bpf/probes.ts); otherwise the test is skipped
 * with the probe's answer, in CI too: a probe that proves the kernel lacks a feature (tcx before 6.6)
 * is the one reason a privileged test may skip there. Call after requireRoot.
 */
export function requireKernelFeature(t: TestContext, id: string): boolean {
  const r = probe(id);
  if (r.available) return true;
  if (r.denied) throw new Error(`the ${id} probe was refused for want of privileges: ${r.error}`);
  const reason = `this kernel lacks ${r.name} (upstream Linux ${r.since}): ${r.error}`;
  console.log(`# skip ${t.name}: ${reason}`);
  t.skip(reason);
  return false;
}

/**
 * For test/vm/: tests that change the machine (install a .deb, write under /etc). They run only in
 * the kernel matrix's VMs (TOA_IN_VM=1, set by test/kernels/matrix.ts), whose root file system is a
 * throwaway overlay; anywhere else they skip with the reason, CI included (npm test never runs them).
 */
export function requireVm(t: TestContext): boolean {
  if (!requireRoot(t)) return false;
  if (process.env.TOA_IN_VM === "1") return true;
  const reason = "changes the machine (installs packages): runs only inside the kernel matrix's VMs (npm run test:kernels)";
  console.log(`# skip ${t.name}: ${reason}`);
  t.skip(reason);
  return false;
}
