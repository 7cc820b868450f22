/** The kernel matrix's reading of `node --test` TAP output: counts, failed names, a file's status. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileStatus, parseEvents, parseTapSummary } from "../kernels/results.js";
import { censusTable, matrixTable, type Leg } from "../kernels/report.js";

const TAP = `TAP version 13
# Subtest: a
ok 1 - a
# Subtest: suite
    # Subtest: inner
    not ok 1 - inner
not ok 2 - suite
# Subtest: slow one
not ok 3 - slow one # test timed out
1..3
# tests 3
# pass 1
# fail 1
# cancelled 1
# skipped 0
# todo 0
`;

test("parseTapSummary: counts (a cancelled test counts as failed) and the failed names at any depth", () => {
  assert.deepEqual(parseTapSummary(TAP), { pass: 1, fail: 2, skipped: 0, todo: 0, failures: ["inner", "suite", "slow one"] });
});

test("fileStatus: pass, skip, fail (also on a crash with no summary)", () => {
  const cases = [
    { name: "all passed", code: 0, c: { pass: 3, fail: 0, skipped: 0 }, want: "pass" },
    { name: "some skipped", code: 0, c: { pass: 2, fail: 0, skipped: 1 }, want: "pass" },
    { name: "all skipped", code: 0, c: { pass: 0, fail: 0, skipped: 2 }, want: "skip" },
    { name: "a failure", code: 1, c: { pass: 2, fail: 1, skipped: 0 }, want: "fail" },
    { name: "crashed before any summary", code: 1, c: { pass: 0, fail: 0, skipped: 0 }, want: "fail" },
    { name: "nothing ran", code: 0, c: { pass: 0, fail: 0, skipped: 0 }, want: "fail" },
  ] as const;
  for (const c of cases) assert.equal(fileStatus(c.code, c.c), c.want, c.name);
});

test("parseEvents: one JSON object per line; a half-written last line is left for later", () => {
  const text = `{"type":"kernel","release":"5.10.0","machine":"x64"}\n{"type":"start","file":"a.test.js"}\n{"type":"fi`;
  assert.deepEqual(
    parseEvents(text).map((e) => e.type),
    ["kernel", "start"],
  );
});

test("matrixTable and censusTable: one column per kernel, a missing file is a dash, a refused program says so", () => {
  const k = (id: string) => ({ id, label: id, arch: "amd64" as const });
  const legs: Leg[] = [
    {
      kernel: k("5.10"),
      release: "5.10.0-32-amd64",
      ms: 61_000,
      events: [
        { type: "program", program: "toa_receiver", variant: "default", instructions: 3174, processed: 35240, ms: 400 },
        { type: "program", program: "toa_nat", variant: "", instructions: 8537, processed: -1, ms: 20, error: "R3 min value is outside of the allowed memory range" },
        { type: "file", file: "a.test.js", status: "pass", pass: 3, fail: 0, skipped: 0, todo: 0, ms: 12_400, failures: [] },
        { type: "file", file: "b.test.js", status: "fail", pass: 1, fail: 2, skipped: 0, todo: 0, ms: 30_000, failures: ["x", "y"] },
      ],
    },
    { kernel: k("host"), ms: 2000, events: [{ type: "file", file: "a.test.js", status: "skip", pass: 0, fail: 0, skipped: 3, todo: 0, ms: 100, failures: [] }] },
  ];
  assert.equal(
    matrixTable(legs, ["/x/a.test.js", "/x/b.test.js"]),
    ["| test file | 5.10 (5.10.0-32-amd64) | host |", "|---|---|---|", "| a | pass 12s | skip 0s |", "| b | FAIL 2/3 30s | — |", "| **leg time** | 61 s | 2 s |"].join("\n"),
  );
  assert.equal(
    censusTable(legs),
    ["| program | insns | 5.10 | host |", "|---|---:|---:|---:|", "| toa_receiver default | 3174 | 35240 | — |", "| toa_nat | 8537 | refused | — |"].join("\n"),
  );
});

test("collectLegs: legs run in parts (separate --out folders) come back as one matrix, in kernel order", async () => {
  const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { collectLegs, filesOf } = await import("../kernels/collect.js");
  const a = mkdtempSync(join(tmpdir(), "toa-matrix-a-"));
  const b = mkdtempSync(join(tmpdir(), "toa-matrix-b-"));
  try {
    const leg = (dir: string, id: string, lines: object[]) => {
      mkdirSync(join(dir, id));
      writeFileSync(join(dir, id, "results.jsonl"), lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
    };
    const file = (name: string, status: string, ms: number) => ({ type: "file", file: name, status, pass: 1, fail: status === "fail" ? 1 : 0, skipped: 0, todo: 0, ms, failures: [] });
    leg(a, "6.1", [{ type: "kernel", release: "6.1.0-x", machine: "x86_64" }, file("x.test.js", "pass", 1000), file("y.test.js", "fail", 2000), { type: "done", ms: 5000 }]);
    leg(b, "5.10", [{ type: "kernel", release: "5.10.0-y", machine: "x86_64" }, file("y.test.js", "pass", 3000)]);
    mkdirSync(join(b, "tree")); // the snapshot folder of a run is not a leg
    const legs = collectLegs([a, b]);
    assert.deepEqual(legs.map((l) => l.kernel.id), ["5.10", "6.1"]);
    assert.equal(legs[1].ms, 5000);
    assert.match(legs[0].error ?? "", /has no end/, "a leg without its done event is reported as unfinished");
    assert.equal(legs[0].ms, 3000);
    assert.deepEqual(filesOf(legs), ["y.test.js", "x.test.js"]);
    assert.match(matrixTable(legs, filesOf(legs)), /\| y \| pass 3s \| FAIL 1\/2 2s \|/);
    assert.throws(() => collectLegs([join(a, "missing")]), /does not exist/);

    // A second part for 6.1 that ran y again: one 6.1 column, y from the rerun and marked so.
    const c = mkdtempSync(join(tmpdir(), "toa-matrix-c-"));
    try {
      leg(c, "6.1", [{ type: "kernel", release: "6.1.0-x", machine: "x86_64" }, file("y.test.js", "pass", 4000), { type: "done", ms: 4500 }]);
      const merged = collectLegs([a, c]);
      assert.deepEqual(merged.map((l) => l.kernel.id), ["6.1"]);
      assert.equal(merged[0].ms, 9500);
      assert.equal(merged[0].error, undefined);
      assert.match(matrixTable(merged, filesOf(merged)), /\| x \| pass 1s \|\n\| y \| pass 4s \(run 2; before: fail\) \|/);
    } finally {
      rmSync(c, { recursive: true, force: true });
    }
  } finally {
    rmSync(a, { recursive: true, force: true });
    rmSync(b, { recursive: true, force: true });
  }
});

test("selectKernels: ids, suites, the amd64 and arm64 groups; an unknown id is named with the choices", async () => {
  const { selectKernels } = await import("../kernels/kernels.js");
  assert.deepEqual(selectKernels("arm64").map((k) => k.id), ["6.1-arm64", "6.12-arm64"]);
  assert.deepEqual(selectKernels("amd64").map((k) => k.id), ["5.10", "6.1", "6.12", "host"]);
  assert.deepEqual(selectKernels("5.10,6.12-arm64").map((k) => [k.id, k.arch]), [["5.10", "amd64"], ["6.12-arm64", "arm64"]]);
  assert.equal(selectKernels("bookworm")[0]!.arch, "amd64", "a suite name picks the x86-64 kernel");
  assert.throws(() => selectKernels("4.19"), /unknown kernel "4\.19".*6\.1-arm64.*arm64 or all/);
});
