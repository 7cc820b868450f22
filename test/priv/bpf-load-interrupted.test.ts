/**
 * A verification that signals keep interrupting: the kernel's verifier gives up with EAGAIN when a
 * signal is pending (it checks as it goes). Program.load tries again, as libbpf does, and when a
 * sampling profiler interrupts every attempt the error says so — not "see bpf(2)". Found when
 * `node --cpu-prof` of `toa lb` failed to load toa_nat under emulation.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { requireRoot } from "../harness/privileged.js";
import { sh } from "../harness/exec.js";

const dist = resolve(fileURLToPath(import.meta.url), "../../..");

test("Program.load under a sampling profiler's SIGPROF: EAGAIN, retried, then an error that names the signal", async (t) => {
  if (!requireRoot(t)) return;
  const dir = mkdtempSync(join(tmpdir(), "toa-load-sigprof-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, "load.mjs");
  writeFileSync(
    script,
    `import { Program } from ${JSON.stringify(join(dist, "src/bpf/index.js"))};
import { NatTables } from ${JSON.stringify(join(dist, "src/lb/packet/tables.js"))};
import { natProgram } from ${JSON.stringify(join(dist, "src/programs/nat/index.js"))};
import { NatMapName } from ${JSON.stringify(join(dist, "src/programs/nat-layout.js"))};
const tables = NatTables.create(1024, 64);
const maps = Object.fromEntries(Object.keys(NatMapName).map((k) => [NatMapName[k], tables.maps[k]]));
try { Program.load(natProgram(), { maps }).close(); console.log("loaded"); }
catch (e) { console.log(e.message.split("\\n")[0]); }
tables.close();
`,
  );
  // toa_nat takes the verifier 0.1-4 s; a SIGPROF every 20 µs lands in each attempt.
  const out = await sh(process.execPath, ["--cpu-prof", "--cpu-prof-dir", dir, "--cpu-prof-interval", "20", script]);
  assert.match(out, /load program toa_nat: EAGAIN: the verifier stopped because a signal came in, five times in a row: a sampling profiler \(SIGPROF/, out);
  // Without the profiler the same load succeeds.
  assert.match(await sh(process.execPath, [script]), /^loaded$/m);
});
