/**
 * One leg of the kernel matrix, run as root inside the VM (or on the host for the "host" leg): the
 * program census, then each test file in turn with CI=true (nothing may skip for want of root) and
 * the time factor, one JSON line per result appended to OUT/results.jsonl, each file's TAP output in
 * OUT/files/<name>.log.
 *
 *   node dist/test/kernels/guest.js --out DIR --files a.test.js,b.test.js [--no-census]
 */
import { spawn } from "node:child_process";
import { appendFileSync, createWriteStream, mkdirSync, writeFileSync } from "node:fs";
import { arch, release } from "node:os";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { fileStatus, parseTapSummary, type LegEvent } from "./results.js";
import { programCensus } from "./program-census.js";

const { values } = parseArgs({ options: { out: { type: "string" }, files: { type: "string", default: "" }, "no-census": { type: "boolean", default: false } } });
const out = values.out!;
mkdirSync(join(out, "files"), { recursive: true });
const emit = (e: LegEvent) => appendFileSync(join(out, "results.jsonl"), JSON.stringify(e) + "\n");

/** Run one test file; resolves with its event. */
function runFile(file: string): Promise<LegEvent> {
  const started = Date.now();
  const logPath = join(out, "files", basename(file).replace(/\.js$/, ".log"));
  const log = createWriteStream(logPath);
  let tap = "";
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--test", "--test-reporter=tap", "--test-concurrency=1", file], {
      env: { ...process.env, CI: "true" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const take = (d: Buffer) => {
      tap += d.toString();
      log.write(d);
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("close", (code) => {
      log.end();
      const c = parseTapSummary(tap);
      resolve({ type: "file", file: basename(file), status: fileStatus(code, c), ...c, ms: Date.now() - started });
    });
  });
}

const t0 = Date.now();
emit({ type: "kernel", release: release(), machine: arch() });
if (!values["no-census"]) {
  mkdirSync(join(out, "census"), { recursive: true });
  for (const { log, ...row } of programCensus()) {
    if (log) writeFileSync(join(out, "census", `${row.program}-${row.variant.replace(/[^a-z0-9]+/gi, "-")}.log`), log);
    emit({ type: "program", ...row });
  }
}
for (const file of values.files.split(",").filter(Boolean)) {
  emit({ type: "start", file: basename(file) });
  emit(await runFile(file));
}
emit({ type: "done", ms: Date.now() - t0 });
