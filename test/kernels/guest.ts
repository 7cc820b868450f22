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
import { scaled } from "../harness/time.js";

/**
 * No test file may hold a leg forever: one whose test waits on something that never comes (it
 * happened: a client waiting for an answer its connection could no longer bring) is stopped after
 * this long, counted as failed, and the leg goes on with the next file. The longest file measured
 * (demo-run) took 1,197 s at time factor 4; this is three times that. (node's --test-timeout is no
 * help here: with one file per run it applies to the whole file and runs no cleanup either.)
 */
const FILE_LIMIT_MS = scaled(900_000);

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
      detached: true, // its own process group, so that a stop reaches the servers it started too
    });
    let stopped = false;
    const limit = setTimeout(() => {
      stopped = true;
      log.write(`\n# stopped by the kernel matrix after ${FILE_LIMIT_MS / 1000} s\n`);
      const group = (sig: NodeJS.Signals) => {
        try {
          process.kill(-child.pid!, sig);
        } catch {
          // already gone
        }
      };
      group("SIGTERM");
      setTimeout(() => group("SIGKILL"), 10_000).unref();
    }, FILE_LIMIT_MS);
    const take = (d: Buffer) => {
      tap += d.toString();
      log.write(d);
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("close", (code) => {
      clearTimeout(limit);
      log.end();
      const c = parseTapSummary(tap);
      if (stopped) c.failures.push(`(the file was stopped after ${FILE_LIMIT_MS / 1000} s)`);
      resolve({ type: "file", file: basename(file), status: stopped ? "fail" : fileStatus(code, c), ...c, ms: Date.now() - started });
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
