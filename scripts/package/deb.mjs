// The .deb: dpkg-deb over a staged tree, with hand-written maintainer scripts (no debhelper here).
//   postinst  tell systemd about the unit (it stays disabled); on upgrade restart a running agent
//   prerm     on removal: stop the agent, unload every receiver it loaded (files.mjs)
//   postrm    remove the native-binary cache; on purge, forget the unit's enablement links
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { chmodSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { PATHS, removalFunctions } from "./files.mjs";

/** Every regular file below `dir`, relative to it. */
export function filesBelow(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

const script = (body) => `#!/bin/sh\nset -e\n\n${body.trim()}\n\nexit 0\n`;

/** The maintainer scripts, by name. */
export function debScripts() {
  return {
    postinst: script(`
case "$1" in
configure)
	# Installed disabled: nothing starts until /etc/toa/agent.yaml names a target and the unit is enabled.
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		# Record the links an enable would make, so that a purge removes them.
		deb-systemd-helper update-state toa.service >/dev/null || true
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		# An upgrade: a running agent goes on with the new executable (the receivers stay attached meanwhile).
		if [ -n "$2" ]; then systemctl try-restart toa.service >/dev/null || true; fi
	fi
	;;
esac`),
    prerm: script(`
${removalFunctions()}
case "$1" in
remove|deconfigure)
	toa_stop_agents
	toa_unload_all
	;;
esac`),
    postrm: script(`
case "$1" in
remove|purge)
	rm -rf ${PATHS.cache}
	if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null || true; fi
	;;
esac
if [ "$1" = purge ] && command -v deb-systemd-helper >/dev/null 2>&1; then
	deb-systemd-helper purge toa.service >/dev/null || true
fi`),
  };
}

/**
 * Build `out` from the staged tree `root` (usr/, etc/): control file, conffiles, md5sums, scripts.
 * `control` holds the fields; Installed-Size is added here. Leaves DEBIAN/ in the tree (the .rpm
 * build beside it copies only what the spec lists).
 */
export async function buildDeb(stageRoot, out, control, xzLevel) {
  const debian = join(stageRoot, "DEBIAN");
  rmSync(debian, { recursive: true, force: true });
  mkdirSync(debian);
  const files = filesBelow(stageRoot).filter((f) => !f.startsWith("DEBIAN/"));
  const size = files.reduce((n, f) => n + statSync(join(stageRoot, f)).size, 0);
  const fields = { ...control, "Installed-Size": String(Math.ceil(size / 1024)) };
  const order = ["Package", "Version", "Architecture", "Maintainer", "Installed-Size", "Depends", "Section", "Priority", "Homepage", "Description"];
  writeFileSync(join(debian, "control"), order.filter((k) => fields[k]).map((k) => `${k}: ${fields[k]}`).join("\n") + "\n");
  const conffiles = files.filter((f) => f.startsWith("etc/")).map((f) => `/${f}`);
  writeFileSync(join(debian, "conffiles"), conffiles.join("\n") + "\n");
  const md5 = files.filter((f) => !f.startsWith("etc/")).map((f) => `${createHash("md5").update(readFileSync(join(stageRoot, f))).digest("hex")}  ${f}`);
  writeFileSync(join(debian, "md5sums"), md5.join("\n") + "\n");
  for (const [name, text] of Object.entries(debScripts())) {
    writeFileSync(join(debian, name), text);
    chmodSync(join(debian, name), 0o755);
  }
  // xz: what every dpkg reads (Debian 11's cannot read zstd).
  await promisify(execFile)("dpkg-deb", ["--root-owner-group", "-Zxz", `-z${xzLevel}`, "--build", stageRoot, out]);
}
