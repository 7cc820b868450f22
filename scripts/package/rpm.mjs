// The .rpm: rpmbuild (Debian's rpm package) packs the same staged tree as the .deb, for either
// architecture from this machine (the architecture is rpmbuild's --target; a BuildArch other than this
// machine's would be refused): nothing is compiled, and nothing may touch the executable (strip would
// drop the injected blob), so the build root's post-processing is off.
//   %post    tell systemd about the unit (it stays disabled)
//   %preun   on erase: stop the agent, unload every receiver it loaded (files.mjs)
//   %postun  on erase: remove the native-binary cache; on upgrade: restart a running agent
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PATHS, removalFunctions } from "./files.mjs";

/** The spec for the tree staged at `stageRoot`. */
export function rpmSpec({ version, summary, body, license, url, stageRoot, xzLevel }) {
  return `%global debug_package %{nil}
%global __os_install_post %{nil}
%global __strip /bin/true
%global _build_id_links none
%global _binary_payload w${xzLevel}.xzdio
# Requirements come from the ELF files (glibc, libstdc++, libgcc_s with their symbol versions); toa
# provides no libraries.
AutoProv: no

Name: toa
Version: ${version}
Release: 1
Summary: ${summary}
License: ${license}
${url ? `URL: ${url}\n` : ""}
%description
${body}

%install
cp -a ${stageRoot}/usr ${stageRoot}/etc %{buildroot}/

%files
%attr(0755,root,root) ${PATHS.bin}
${PATHS.unit}
%dir ${PATHS.configDir}
%config(noreplace) ${PATHS.config}
${PATHS.man}
%doc ${PATHS.doc}

%post
if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null 2>&1 || :; fi

%preun
${removalFunctions()}
# $1 = 0: erase (not an upgrade).
if [ "$1" -eq 0 ]; then
	toa_stop_agents
	toa_unload_all
fi

%postun
if [ "$1" -eq 0 ]; then
	rm -rf ${PATHS.cache}
fi
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null 2>&1 || :
	if [ "$1" -ge 1 ]; then systemctl try-restart toa.service >/dev/null 2>&1 || :; fi
fi
`;
}

/** Build the .rpm for `spec.arch` from the staged tree into `out`. */
export async function buildRpm(work, out, spec) {
  const top = join(work, `rpmbuild-${spec.arch}`);
  rmSync(top, { recursive: true, force: true });
  for (const d of ["BUILD", "BUILDROOT", "RPMS", "SPECS", "SOURCES"]) mkdirSync(join(top, d), { recursive: true });
  const specFile = join(top, "SPECS", "toa.spec");
  writeFileSync(specFile, spec.text);
  await promisify(execFile)("rpmbuild", ["-bb", "--quiet", "--target", `${spec.arch}-linux`, "--define", `_topdir ${top}`, "--define", "_tmppath %{_topdir}/tmp", specFile]);
  const dir = join(top, "RPMS", spec.arch);
  const built = readdirSync(dir).find((f) => f.endsWith(".rpm"));
  if (!built) throw new Error(`rpmbuild made no package in ${dir}`);
  renameSync(join(dir, built), out);
  rmSync(top, { recursive: true, force: true });
}
