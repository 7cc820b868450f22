#!/usr/bin/env node
// `npm run package`: the self-contained `toa` executables (x86-64, arm64) and the .deb and .rpm
// packages that install them, into dist/package/. See docs/packaging.md.
//
//   npm run package                 both architectures
//   npm run package -- --arch x64   one
//   npm run package -- --force      rebuild even when nothing changed
//   npm run package -- --best       xz preset 6 (dpkg's default) instead of 1: 13% smaller
//                                   packages, five times the compression time (docs/packaging.md)
//
// The build is skipped when its inputs (the bundle, these scripts, the pinned runtimes) are those of
// the last one: dist/package/manifest.json keeps their fingerprint.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { bundle } from "./bundle.mjs";
import { buildDeb } from "./deb.mjs";
import { PATHS, configFile, description, manPage, notices, unitFile } from "./files.mjs";
import { buildRpm, rpmSpec } from "./rpm.mjs";
import { TARGETS, runtime } from "./runtimes.mjs";
import { inject, seaBlob } from "./sea.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** Where the outputs go (gitignored with dist/). */
const OUT = join(root, "dist", "package");
const CACHE = join(root, "node_modules", ".cache", "toa-package");

const { values } = parseArgs({ options: { arch: { type: "string", multiple: true }, force: { type: "boolean", default: false }, best: { type: "boolean", default: false } } });
const xzLevel = values.best ? 6 : 1;
const wanted = (values.arch ?? []).flatMap((a) => a.split(","));
const targets = wanted.length ? TARGETS.filter((t) => wanted.includes(t.arch)) : TARGETS;
if (targets.length !== (wanted.length || TARGETS.length)) {
  console.error(`--arch: choose from ${TARGETS.map((t) => t.arch).join(", ")}`);
  process.exit(2);
}
if (!existsSync(join(root, "dist/src/executable/main.js"))) {
  console.error("dist/src/executable/main.js is missing: `npm run build` first (npm run package does)");
  process.exit(1);
}

for (const [tool, pkgName] of [["dpkg-deb", "dpkg"], ["rpmbuild", "rpm"], ["tar", "tar"]]) {
  if (spawnSync(tool, ["--version"], { stdio: "ignore" }).error) {
    console.error(`${tool} is missing: apt-get install ${pkgName} (scripts/install-test-deps.sh installs what the package build needs)`);
    process.exit(1);
  }
}

const t0 = Date.now();
const step = (what) => console.error(`package: ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const version = pkg.version;
const work = join(CACHE, "work");
mkdirSync(work, { recursive: true });
mkdirSync(OUT, { recursive: true });

step("bundling dist/src/executable/main.js");
const bundleFile = join(work, "toa.cjs");
const packages = await bundle(root, bundleFile);

step("fetching the runtimes (npm pack, checked against the pinned integrities)");
const runtimes = new Map(targets.map((t) => [t.arch, runtime(root, CACHE, t)]));

const names = (t) => ({
  exe: `toa-linux-${t.arch}`,
  deb: `toa_${version}_${t.deb}.deb`,
  rpm: `toa-${version}-1.${t.rpm}.rpm`,
});
const outputs = targets.flatMap((t) => Object.values(names(t)));
const scriptsDir = dirname(fileURLToPath(import.meta.url));
const fingerprint = createHash("sha256")
  .update(readFileSync(bundleFile))
  .update(JSON.stringify({ version, xzLevel, pins: targets.map((t) => runtimes.get(t.arch).pins), packages: packages.map((p) => `${p.name}@${p.version}`) }))
  .update(readdirSync(scriptsDir).sort().map((f) => readFileSync(join(scriptsDir, f), "utf8")).join("\0"))
  .digest("hex");
const manifestFile = join(OUT, "manifest.json");
const previous = existsSync(manifestFile) ? JSON.parse(readFileSync(manifestFile, "utf8")) : undefined;
if (!values.force && previous?.fingerprint === fingerprint && outputs.every((f) => existsSync(join(OUT, f)))) {
  step(`up to date: ${outputs.join(", ")} in dist/package (--force rebuilds)`);
  process.exit(0);
}
rmSync(manifestFile, { force: true });

// The blob is made by the runtime that runs here (the same node version as every target's).
const hostTarget = TARGETS.find((t) => t.arch === process.arch);
if (!hostTarget) throw new Error(`building on ${process.arch}: the runtime that makes the SEA blob must run here (x64 or arm64)`);
const host = runtimes.get(hostTarget.arch) ?? runtime(root, CACHE, hostTarget);

const date = new Date().toISOString().slice(0, 10);
const unit = await unitFile(root);
const man = gzipSync(await manPage(root, version, date), { level: 9 });
const { summary, body } = description();
const copyright = (nodeLicense) =>
  `toa ${version}\n\ntoa is licensed under the ${pkg.license} license (package.json "license").\n\n` + notices({ nodeLicense, packages });

/** The tree both packages install, for one target. */
function stage(t, exe, nodeLicense) {
  const dir = join(work, `stage-${t.arch}`);
  rmSync(dir, { recursive: true, force: true });
  const put = (path, data, mode = 0o644) => {
    const p = join(dir, path);
    mkdirSync(dirname(p), { recursive: true });
    if (Buffer.isBuffer(data) || typeof data === "string") writeFileSync(p, data, { mode });
    else copyFileSync(data.copy, p);
  };
  put(PATHS.bin, { copy: exe });
  put(PATHS.unit, unit);
  put(PATHS.config, configFile());
  put(PATHS.man, man);
  put(join(PATHS.doc, "copyright"), copyright(nodeLicense));
  put(join(PATHS.doc, "README.md"), readFileSync(join(root, "README.md")));
  return dir;
}

const manifest = { version, fingerprint, node: pkg.singleExecutable.node, built: new Date().toISOString(), files: {} };
for (const t of targets) {
  const n = names(t);
  const rt = runtimes.get(t.arch);
  step(`${n.exe}: SEA blob (node ${rt.pins.node.version}, ${rt.pins.koffi.name}@${rt.pins.koffi.version}) injected into ${rt.pins.node.name}`);
  const blob = seaBlob(host.node, work, bundleFile, rt.addon, t.arch);
  inject(root, rt.node, blob, join(OUT, n.exe));
  const dir = stage(t, join(OUT, n.exe), rt.nodeLicense);
  step(`${n.deb} and ${n.rpm}: dpkg-deb and rpmbuild, xz -${xzLevel}`);
  await Promise.all([
    buildDeb(
      dir,
      join(OUT, n.deb),
      {
        Package: "toa",
        Version: version,
        Architecture: t.deb,
        Maintainer: pkg.author,
        // The official node binary's needs (readelf -V): glibc 2.28, GLIBCXX_3.4.21 (GCC 5), libgcc_s.
        Depends: "libc6 (>= 2.28), libstdc++6 (>= 5.2), libgcc-s1 | libgcc1",
        Section: "net",
        Priority: "optional",
        Description: `${summary}\n${wrap(body)}`,
      },
      xzLevel,
    ),
    buildRpm(work, join(OUT, n.rpm), { arch: t.rpm, text: rpmSpec({ version, summary, body: wrap(body, ""), license: pkg.license, url: pkg.homepage, stageRoot: dir, xzLevel }) }),
  ]);
  rmSync(dir, { recursive: true, force: true });
}
// Beside the executables: what the packages carry as /usr/share/doc/toa/copyright.
writeFileSync(join(OUT, "THIRD-PARTY-NOTICES.txt"), notices({ nodeLicense: runtimes.get(targets[0].arch).nodeLicense, packages }));

const sha256 = (f) => createHash("sha256").update(readFileSync(f)).digest("hex");
for (const f of outputs) manifest.files[f] = { bytes: statSync(join(OUT, f)).size, sha256: sha256(join(OUT, f)) };
writeFileSync(join(OUT, "SHA256SUMS"), outputs.map((f) => `${manifest.files[f].sha256}  ${f}`).join("\n") + "\n");
writeFileSync(manifestFile, JSON.stringify(manifest, null, 2) + "\n");
step(`done: ${outputs.map((f) => `${f} ${(manifest.files[f].bytes / 2 ** 20).toFixed(1)} MiB`).join(", ")}`);

/** A Debian description body: lines of at most 78 columns, each led by `lead`. */
function wrap(text, lead = " ") {
  const lines = [];
  let line = "";
  for (const w of text.split(/\s+/)) {
    if (line && line.length + 1 + w.length > 78) {
      lines.push(lead + line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(lead + line);
  return lines.join("\n");
}
