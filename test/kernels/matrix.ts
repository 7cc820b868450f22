/**
 * `npm run test:kernels`: the privileged tests on real kernels. For each kernel of the matrix it
 * fetches Debian's kernel package (cached), boots it under qemu with this machine's root file system,
 * runs the program census and the chosen test files inside as root, and prints a table kernel × test
 * file. The "host" leg runs the same files on this machine's own kernel, without a VM.
 *
 *   npm run test:kernels -- --kernels 5.10,6.1 --files receiver,demo --time-factor 4
 */
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError } from "commander";
import { selectKernels, type KernelTarget } from "./kernels.js";
import { parseEvents, type LegEvent } from "./results.js";
import { censusTable, matrixTable, type Leg } from "./report.js";
import { collectLegs, filesOf } from "./collect.js";
import { makeProjectDisk } from "./project-disk.js";
import { addArm64Runtime } from "./arm64-tree.js";

const here = dirname(fileURLToPath(import.meta.url)); // dist/test/kernels
const ROOT = resolve(here, "../../..");
const PRIV = join(ROOT, "dist/test/priv");
/**
 * Tests that change the machine (install a package, ...): they run only inside the VMs, whose root
 * file system is a throwaway overlay; npm test never runs them.
 */
const VM_ONLY = join(ROOT, "dist/test/vm");

/**
 * A copy of the built tree for the run, node_modules included: the legs run for many minutes, and a
 * rebuild meanwhile would change files under a test that is reading them; the VM legs get it as a
 * disk of its own (project-disk.ts).
 */
function snapshot(out: string): string {
  const tree = join(out, "tree");
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(tree, { recursive: true });
  for (const entry of ["dist", "test", "src", "docs", "scripts", "README.md", "package.json", "package-lock.json"]) {
    if (existsSync(join(ROOT, entry))) cpSync(join(ROOT, entry), join(tree, entry), { recursive: true });
  }
  // Not node_modules/.cache: the packager's downloads (hundreds of MB) that no test reads.
  const cache = join(ROOT, "node_modules", ".cache");
  cpSync(join(ROOT, "node_modules"), join(tree, "node_modules"), { recursive: true, verbatimSymlinks: true, filter: (src) => src !== cache });
  return tree;
}

interface Options {
  kernels: string;
  files: string;
  timeFactor: number;
  cache: string;
  out: string;
  census: boolean;
  json: boolean;
  markdown?: string;
  mem: string;
  cpus: string;
  vmTimeout?: number;
  report?: string;
}

/**
 * The test files (dist/test/priv, then dist/test/vm) whose names contain one of the comma-separated
 * patterns ("" = all).
 */
export function selectFiles(patterns: string): string[] {
  const list = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".test.js")).sort().map((f) => join(dir, f)) : []);
  const all = [...list(PRIV), ...list(VM_ONLY)];
  const name = (f: string) => basename(f).replace(/\.test\.js$/, "");
  const wanted = patterns.split(",").map((p) => p.trim()).filter(Boolean);
  if (wanted.length === 0) return all;
  const chosen = new Set<string>();
  for (const p of wanted) {
    const hits = all.filter((f) => name(f) === p || basename(f).includes(p));
    if (hits.length === 0) throw new Error(`--files: "${p}" matches no file in dist/test/priv or dist/test/vm (${all.length} files: ${all.map(name).join(", ")})`);
    hits.forEach((h) => chosen.add(h));
  }
  return all.filter((f) => chosen.has(f));
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, onLine?: (line: string) => void): Promise<{ code: number | null; output: string }> {
  return new Promise((done) => {
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const take = (d: Buffer) => {
      output += d.toString();
      if (onLine) for (const l of d.toString().split("\n").filter(Boolean)) onLine(l);
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("close", (code) => done({ code, output }));
  });
}

/** Follow a leg's results.jsonl and print each finished file as it comes. */
function follow(path: string, leg: string, quiet: boolean): () => void {
  let seen = 0;
  const tick = () => {
    if (!existsSync(path)) return;
    const events = parseEvents(readFileSync(path, "utf8"));
    for (const e of events.slice(seen)) if (!quiet) console.error(progressLine(leg, e));
    seen = events.length;
  };
  const timer = setInterval(tick, 2000);
  return () => {
    clearInterval(timer);
    tick();
  };
}

function progressLine(leg: string, e: LegEvent): string {
  const p = `[${leg}]`;
  switch (e.type) {
    case "kernel":
      return `${p} kernel ${e.release} (${e.machine}) up`;
    case "program":
      return `${p} census ${e.program}${e.variant ? ` ${e.variant}` : ""}: ${e.error ? `REFUSED ${e.error}` : `${e.instructions} insns, ${e.processed} processed, loaded in ${e.ms} ms`}`;
    case "start":
      return `${p} ${e.file} ...`;
    case "file":
      return `${p} ${e.file} ${e.status}: ${e.pass} pass, ${e.fail} fail, ${e.skipped} skipped, ${(e.ms / 1000).toFixed(0)} s${e.failures.length ? `\n${p}   failed: ${e.failures.join("; ")}` : ""}`;
    case "done":
      return `${p} done in ${(e.ms / 1000).toFixed(0)} s`;
  }
}

async function runLeg(k: KernelTarget, files: string[], o: Options, tree: string): Promise<Leg> {
  const out = join(o.out, k.id);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "results.jsonl"), "");
  const started = Date.now();
  // The host leg runs no machine-changing tests (dist/test/vm): only the VMs' overlays may take them.
  const legFiles = k.suite ? files : files.filter((f) => !f.startsWith(VM_ONLY));
  const guestArgs = ["--files", legFiles.map((f) => join(tree, f.slice(ROOT.length + 1))).join(","), ...(o.census ? [] : ["--no-census"])];
  const guest = join(tree, "dist/test/kernels/guest.js");
  // The snapshot's scripts, not the checkout's: bash reads a script as it runs, so an edit to
  // run-kernel.sh during an hours-long leg would otherwise be executed half old, half new.
  const scripts = join(tree, "test/kernels");
  const stop = follow(join(out, "results.jsonl"), k.id, o.json);
  let error: string | undefined;
  if (!k.suite) {
    const r = await run(process.execPath, [guest, "--out", out, ...guestArgs], { ...process.env, TOA_TEST_TIME_FACTOR: "1" });
    if (r.code !== 0) error = `guest runner exited ${r.code}: ${r.output.slice(-2000)}`;
  } else {
    const f = await run(join(scripts, "fetch-kernel.sh"), [k.suite, o.cache, k.arch], process.env);
    const kdir = f.output.trim().split("\n").pop() ?? "";
    if (f.code !== 0 || !existsSync(kdir)) {
      error = `fetching ${k.suite}'s kernel failed: ${f.output.slice(-1000)}`;
    } else {
      // An arm64 kernel boots its own Debian (arm64-rootfs.sh) and runs the arm64 node put in the tree.
      const vm: NodeJS.ProcessEnv = { VM_ARCH: k.arch };
      let node = process.execPath;
      if (k.arch === "arm64") {
        const rootfs = await run(join(scripts, "arm64-rootfs.sh"), [o.cache, kdir], process.env, (l) => console.error(`[${k.id}] ${l}`));
        const image = rootfs.output.trim().split("\n").pop() ?? "";
        if (rootfs.code !== 0 || !existsSync(image)) {
          stop();
          return { kernel: k, events: [], error: `building the arm64 root file system failed: ${rootfs.output.slice(-1500)}`, ms: Date.now() - started };
        }
        Object.assign(vm, { VM_ROOT_IMAGE: image, VM_BUSYBOX: join(o.cache, "busybox-arm64") });
        node = await addArm64Runtime(ROOT, tree);
      }
      const cmd = `cd ${tree} && PATH=${dirname(node)}:$PATH TOA_IN_VM=1 TOA_TEST_TIME_FACTOR=${o.timeFactor} ${node} ${guest} --out /mnt ${guestArgs.map((a) => `'${a}'`).join(" ")}`;
      // A VM that hangs must not hold the run forever, but a long file list on a busy machine is slow:
      // 15 minutes plus 5 per file (time factor 4), unless --vm-timeout says otherwise.
      const timeout = o.vmTimeout ?? Math.round((900 + 300 * legFiles.length) * (o.timeFactor / 4));
      const disk = makeProjectDisk(tree, join(out, "project.img"));
      const r = await run(join(scripts, "run-kernel.sh"), [kdir, out, cmd], { ...process.env, ...vm, VM_MEM: o.mem, VM_CPUS: o.cpus, VM_TIMEOUT: String(timeout), VM_DISK: disk, VM_DISK_AT: tree });
      rmSync(disk, { force: true });
      const timedOut = /terminating on signal 15 from pid \d+ \(timeout\)/.test(existsSync(join(out, "console")) ? readFileSync(join(out, "console"), "utf8") : "");
      if (r.code !== 0 && r.code !== 1) error = `the VM gave no result (exit ${r.code}${timedOut ? `: stopped after --vm-timeout ${timeout} s` : ""}); console: ${join(out, "console")}\n${r.output.slice(-1500)}`;
      else if (r.code === 1 && existsSync(join(out, "log"))) {
        const log = readFileSync(join(out, "log"), "utf8");
        if (!parseEvents(readFileSync(join(out, "results.jsonl"), "utf8")).some((e) => e.type === "done")) error = `the guest runner failed:\n${log.slice(-2000)}`;
      }
    }
  }
  stop();
  const events = parseEvents(readFileSync(join(out, "results.jsonl"), "utf8"));
  const release = events.find((e): e is Extract<LegEvent, { type: "kernel" }> => e.type === "kernel")?.release;
  if (!error && !events.some((e) => e.type === "done")) error = `the leg ended before its last file (see ${out})`;
  return { kernel: k, release, events, error, ms: Date.now() - started };
}

async function main(argv: string[]): Promise<number> {
  const positive = (v: string) => {
    const n = Number(v);
    if (!(n > 0)) throw new InvalidArgumentError("a positive number, e.g. 4");
    return n;
  };
  const program = new Command("test:kernels")
    .description("Run the privileged tests on real Debian kernels under qemu (and on this machine's kernel), and print kernel × test file.")
    .option("--kernels <ids>", "comma list of 5.10, 6.1, 6.12, 6.1-arm64, 6.12-arm64, host; or amd64, arm64, all", "all")
    .option("--files <patterns>", "test files in dist/test/priv whose names contain one of these (comma list); default every file", "")
    .option("--time-factor <n>", "multiply the tests' waits by this inside VMs (qemu TCG is several times slower)", positive, 4)
    .option("--cache <dir>", "where kernel packages are kept", process.env.TOA_KERNEL_CACHE ?? "/var/cache/toa-kernels")
    .option("--out <dir>", "where logs and results go", join("/tmp", `toa-kernels-${new Date().toISOString().replace(/[:.]/g, "-")}`))
    .option("--no-census", "skip loading each program with verifier statistics")
    .option("--mem <size>", "VM memory", "6G")
    .option("--cpus <n>", "VM CPUs", "2")
    .option("--vm-timeout <seconds>", "stop a VM after this long (default: 900 + 300 per test file, scaled by the time factor)", positive)
    .option("--markdown <file>", "also write the tables as markdown to this file")
    .option("--json", "print the results as JSON on stdout (progress stays on stderr)")
    .option("--report <dirs>", "run nothing: print one table from earlier runs' --out folders (comma list), e.g. legs run one at a time")
    .addHelpText("after", "\nNeeds root and the Debian packages qemu-system-x86, busybox-static, cpio, kmod, xz-utils, zstd, e2fsprogs;\nthe arm64 legs also qemu-system-arm and debootstrap (their Debian root file system is built once, ~30 min, and cached).\nExit status 0 only when every file passed (or skipped) on every kernel and every program loaded.");
  program.parse(argv, { from: "user" });
  const o = program.opts<Options>();
  if (o.report) {
    const legs = collectLegs(o.report.split(",").map((d) => d.trim()).filter(Boolean));
    return report(legs, filesOf(legs), o, `--report ${o.report}`);
  }
  if (process.getuid?.() !== 0) throw new Error("the kernel matrix runs tests as root: run it with sudo");
  const kernels = selectKernels(o.kernels);
  const files = selectFiles(o.files);
  if (kernels.some((k) => k.suite)) {
    const needs = [["qemu-system-x86_64", "qemu-system-x86"], ["busybox", "busybox-static"], ["cpio", "cpio"], ["zstd", "zstd"], ["mkfs.ext4", "e2fsprogs"]];
    if (kernels.some((k) => k.arch === "arm64")) needs.push(["qemu-system-aarch64", "qemu-system-arm"], ["debootstrap", "debootstrap"]);
    for (const [bin, pkg] of needs) {
      const r = await run("sh", ["-c", `command -v ${bin}`], process.env);
      if (r.code !== 0) throw new Error(`${bin} is missing: apt-get install -y ${pkg} (scripts/install-test-deps.sh installs everything)`);
    }
  }
  await ensurePackages(files, kernels);
  mkdirSync(o.out, { recursive: true });
  console.error(`kernel matrix: ${kernels.map((k) => k.id).join(", ")} × ${files.length} test files; logs in ${o.out}`);
  const legs: Leg[] = [];
  const tree = snapshot(o.out);
  for (const k of kernels) legs.push(await runLeg(k, files, o, tree));
  writeFileSync(join(o.out, "matrix.md"), "");
  return report(legs, files.map((f) => basename(f)), o, `--kernels ${o.kernels}${o.files ? ` --files ${o.files}` : ""}`, join(o.out, "matrix.md"));
}

/**
 * The package tests (dist/test/vm/package-*) install dist/package's .deb: when one is selected for
 * a VM leg and the package of that architecture is not built yet, build it first (`npm run package
 * -- --arch ...`, several minutes), so a fresh clone's matrix run tests the package, not its absence.
 */
async function ensurePackages(files: string[], kernels: KernelTarget[]): Promise<void> {
  if (!files.some((f) => f.startsWith(VM_ONLY) && basename(f).startsWith("package-"))) return;
  const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
  // Debian's architecture name (the kernel's, the .deb's) → the packager's (Node's).
  const nodeArch: Record<string, string> = { amd64: "x64", arm64: "arm64" };
  const debArchs = [...new Set(kernels.filter((k) => k.suite).map((k) => k.arch as string))];
  const missing = debArchs.filter((a) => !existsSync(join(ROOT, "dist/package", `toa_${version}_${a}.deb`))).map((a) => nodeArch[a] ?? a);
  if (missing.length === 0) return;
  console.error(`building the package for ${missing.join(", ")} first (the package tests install it): node scripts/package/build.mjs --arch ${missing.join(",")}`);
  const r = await run(process.execPath, [join(ROOT, "scripts/package/build.mjs"), "--arch", missing.join(",")], process.env, (l) => console.error(`  package: ${l}`));
  if (r.code !== 0) throw new Error(`building the package failed (exit ${r.code}); run \`npm run package\` to see why`);
}

/** Print the tables (and write them as markdown); 0 only when every file passed on every leg. */
function report(legs: Leg[], files: string[], o: Options, how: string, mdFile?: string): number {
  const table = matrixTable(legs, files);
  const census = censusTable(legs);
  const date = new Date().toISOString().slice(0, 10);
  const md = `Kernel matrix, ${date}: \`npm run test:kernels -- ${how}\` (time factor ${o.timeFactor})\n\n${table}\n${census ? `\nVerifier: instructions processed per program\n\n${census}\n` : ""}`;
  if (mdFile) writeFileSync(mdFile, md);
  if (o.markdown) writeFileSync(o.markdown, md);
  const failed = legs.filter((l) => l.error || l.events.some((e) => (e.type === "file" && e.status === "fail") || (e.type === "program" && e.error)));
  if (o.json) {
    console.log(JSON.stringify({ date, legs: legs.map((l) => ({ kernel: l.kernel.id, release: l.release, ms: l.ms, error: l.error, events: l.events })) }, null, 2));
  } else {
    console.log(`\n${md}`);
    for (const l of legs) if (l.error) console.log(`${l.kernel.id}: ${l.error}`);
    console.log(failed.length === 0 ? "every file passed on every kernel" : `failures on: ${failed.map((l) => l.kernel.id).join(", ")} (logs: ${o.out}/<kernel>/files/)`);
  }
  return failed.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`test:kernels: ${e.message}`);
    process.exit(2);
  },
);
