/**
 * The single executable's native add-on loading (src/executable/addon.ts), with koffi's real binary:
 * written once into a private cache folder named by its hash, checked on the next start, never taken
 * from a folder someone else can write to, and loaded from a throwaway folder when the cache is unusable.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheDir, loadAddon, placeAddon, ROOT_CACHE_DIR } from "../../src/executable/addon.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const KOFFI = readFileSync(join(root, "node_modules/@koromix", `koffi-linux-${process.arch}`, `linux_${process.arch}`, "koffi.node"));
const digest = createHash("sha256").update(KOFFI).digest("hex");

function scratch(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "toa-addon-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("cache folder: TOA_CACHE_DIR, else /var/cache/toa for root, else the user's XDG cache", () => {
  const cases: { name: string; env: NodeJS.ProcessEnv; euid: number; want: string }[] = [
    { name: "override", env: { TOA_CACHE_DIR: "/srv/toa-cache", HOME: "/home/a" }, euid: 0, want: "/srv/toa-cache" },
    { name: "root", env: { HOME: "/root" }, euid: 0, want: ROOT_CACHE_DIR },
    { name: "user with XDG", env: { XDG_CACHE_HOME: "/home/a/.xdg", HOME: "/home/a" }, euid: 1000, want: "/home/a/.xdg/toa" },
    { name: "user", env: { HOME: "/home/a" }, euid: 1000, want: "/home/a/.cache/toa" },
  ];
  for (const c of cases) {
    const saved = process.env.HOME;
    process.env.HOME = c.env.HOME; // os.homedir() reads it
    try {
      assert.equal(cacheDir(c.env, c.euid), c.want, c.name);
    } finally {
      process.env.HOME = saved;
    }
  }
});

test("placeAddon writes the binary once, named by its hash, read-only; an identical file is reused, a damaged one replaced", (t) => {
  const dir = join(scratch(t), "cache");
  const file = placeAddon(dir, "koffi.node", KOFFI);
  assert.equal(file, join(dir, `koffi-${digest.slice(0, 16)}.node`));
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(file).mode & 0o777, 0o500);
  const mtime = statSync(file).mtimeMs;
  assert.equal(placeAddon(dir, "koffi.node", KOFFI), file);
  assert.equal(statSync(file).mtimeMs, mtime, "not written again");
  chmodSync(file, 0o600);
  writeFileSync(file, "damaged");
  assert.equal(placeAddon(dir, "koffi.node", KOFFI), file);
  assert.ok(readFileSync(file).equals(KOFFI), "replaced with the carried bytes");
  assert.deepEqual(readdirSync(dir), [`koffi-${digest.slice(0, 16)}.node`], "no temporary file left");
});

test("placeAddon refuses a folder others can write to, or a symlink in its place", (t) => {
  const base = scratch(t);
  const open = join(base, "open");
  mkdirSync(open);
  chmodSync(open, 0o777);
  assert.throws(() => placeAddon(open, "koffi.node", KOFFI), /is writable by others \(mode 777\)/);
  assert.deepEqual(readdirSync(open), []);
  const real = join(base, "real");
  mkdirSync(real, { mode: 0o700 });
  symlinkSync(real, join(base, "link"));
  assert.throws(() => placeAddon(join(base, "link"), "koffi.node", KOFFI), /is not a folder/);
});

test("loadAddon dlopens koffi from the cache, or from a throwaway folder it removes when the cache is unusable", (t) => {
  const base = scratch(t);
  const koffi = loadAddon("koffi.node", KOFFI, join(base, "cache")) as { version: string; load: unknown };
  assert.equal(typeof koffi.load, "function");
  assert.equal(koffi.version, JSON.parse(readFileSync(join(root, "node_modules/koffi/package.json"), "utf8")).version);
  assert.ok(existsSync(join(base, "cache", `koffi-${digest.slice(0, 16)}.node`)));
  // Unusable cache: the fallback loads it and leaves nothing in the temporary folder.
  const open = join(base, "open");
  mkdirSync(open);
  chmodSync(open, 0o777);
  const savedTmp = process.env.TMPDIR;
  const tmp = join(base, "tmp");
  mkdirSync(tmp);
  process.env.TMPDIR = tmp;
  try {
    assert.equal((loadAddon("koffi.node", KOFFI, open) as { version: string }).version, koffi.version);
    assert.deepEqual(readdirSync(tmp), [], "the throwaway folder is gone");
    // Neither usable: the error names both places and the way out.
    process.env.TMPDIR = join(base, "no-such-folder");
    assert.throws(() => loadAddon("koffi.node", KOFFI, open), (e: Error) => {
      assert.match(e.message, /cannot load koffi\.node, the native FFI binary carried inside toa/);
      assert.match(e.message, new RegExp(`${open}: .*writable by others`));
      assert.match(e.message, /no-such-folder/);
      assert.match(e.message, /set TOA_CACHE_DIR to a folder of your own/);
      return true;
    });
  } finally {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
  }
});
