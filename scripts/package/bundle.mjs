// One CommonJS script holding the whole CLI (dist/src, as tsc built it, and the npm dependencies), the
// form Node's single-executable applications run. koffi's JS loader is bundled as it is; only its
// require of the platform package (@koromix/koffi-linux-<arch>) is answered differently: with the
// native binary carried in the executable as the SEA asset "koffi.node" (src/executable/addon.ts).
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

/** The SEA asset key of koffi's native binary. */
export const KOFFI_ASSET = "koffi.node";

const embeddedKoffi = (root) => ({
  name: "toa-embedded-koffi",
  setup(b) {
    b.onResolve({ filter: /^@koromix\/koffi-/ }, (args) =>
      /^@koromix\/koffi-linux-(x64|arm64)$/.test(args.path)
        ? { path: args.path, namespace: "toa-embedded-addon" }
        : // Other platforms' packages: koffi asks for them only on those platforms (and catches the failure).
          { path: args.path, external: true },
    );
    b.onLoad({ filter: /.*/, namespace: "toa-embedded-addon" }, () => ({
      contents:
        `const { getAsset } = require("node:sea");\n` +
        `module.exports = require(${JSON.stringify(join(root, "dist/src/executable/addon.js"))}).loadAddon(${JSON.stringify(KOFFI_ASSET)}, new Uint8Array(getAsset(${JSON.stringify(KOFFI_ASSET)})));\n`,
      loader: "js",
      resolveDir: root,
    }));
  },
});

/** The npm packages whose code went into the bundle, with their license texts. */
function bundledPackages(root, metafile) {
  const names = new Set();
  for (const input of Object.keys(metafile.inputs)) {
    const parts = input.split(/[\\/]/);
    const i = parts.lastIndexOf("node_modules");
    if (i < 0) continue;
    names.add(parts[i + 1].startsWith("@") ? `${parts[i + 1]}/${parts[i + 2]}` : parts[i + 1]);
  }
  return [...names].sort().map((name) => {
    const dir = join(root, "node_modules", name);
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
    if (!file) throw new Error(`${name} ships no license file: its notice cannot go with the executable`);
    return { name, version: pkg.version, license: readFileSync(join(dir, file), "utf8") };
  });
}

/** Bundle src/executable/main.ts (built) into `outfile`; returns the bundled npm packages. */
export async function bundle(root, outfile) {
  const result = await build({
    entryPoints: [join(root, "dist/src/executable/main.js")],
    outfile,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    metafile: true,
    logLevel: "warning",
    legalComments: "none",
    // import.meta.url serves only the npm form (finding bin.js and node_modules next to the module);
    // the single executable never reads it (src/shared/self.ts, src/bpf/syscall.ts).
    // The executable carries no package.json: its version is written in at build time (self.ts).
    define: { "import.meta.url": "undefined", "process.env.TOA_BUILD_VERSION": JSON.stringify(JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version) },
    plugins: [embeddedKoffi(root)],
  });
  return bundledPackages(root, result.metafile);
}
