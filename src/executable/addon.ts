/**
 * Native add-ons carried inside the single executable (koffi's FFI binary, as a SEA asset). dlopen(3)
 * needs a file, so the bytes are written once to a private cache folder, named by their SHA-256, and
 * loaded from there; the next start finds the same file and checks its hash. When no cache folder is
 * usable (read-only root, a noexec mount) a fresh private temporary folder is used and removed right
 * after loading.
 *
 * Private means: owned by this user and writable by nobody else, since root loads code from it.
 */
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

/** Where the cache folder is for root; removed by the .deb/.rpm on purge. */
export const ROOT_CACHE_DIR = "/var/cache/toa";

/**
 * The cache folder to try first: TOA_CACHE_DIR when set; /var/cache/toa for root; otherwise
 * $XDG_CACHE_HOME/toa or ~/.cache/toa.
 */
export function cacheDir(env: NodeJS.ProcessEnv = process.env, euid = process.geteuid?.() ?? -1): string {
  if (env.TOA_CACHE_DIR) return env.TOA_CACHE_DIR;
  if (euid === 0) return ROOT_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "toa");
}

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** Throws unless `dir` is a real folder of this user that nobody else can write to. */
function checkPrivate(dir: string): void {
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a folder`);
  const euid = process.geteuid?.();
  if (euid !== undefined && st.uid !== euid) throw new Error(`${dir} belongs to uid ${st.uid}, not to this user (uid ${euid})`);
  if (st.mode & 0o022) throw new Error(`${dir} is writable by others (mode ${(st.mode & 0o777).toString(8)})`);
}

/**
 * The add-on's file in the private folder `dir` (made when missing): `<name>-<sha256 prefix>.node`,
 * written (atomically: a temporary name, then rename) unless a file with the same content is there.
 */
export function placeAddon(dir: string, name: string, bytes: Uint8Array): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  checkPrivate(dir);
  const digest = sha256(bytes);
  const file = join(dir, `${name.replace(/\.node$/, "")}-${digest.slice(0, 16)}.node`);
  try {
    if (sha256(readFileSync(file)) === digest) return file;
  } catch {
    /* not there yet */
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes, { mode: 0o500 });
  renameSync(tmp, file);
  return file;
}

function dlopen(file: string): unknown {
  const module = { exports: {} as unknown };
  process.dlopen(module, file);
  return module.exports;
}

/**
 * Load the add-on `name` (e.g. "koffi.node") from `bytes`: from the cache folder, else from a
 * temporary private folder. Throws naming every place tried and the way out (TOA_CACHE_DIR).
 */
export function loadAddon(name: string, bytes: Uint8Array, dir = cacheDir()): unknown {
  const failures: string[] = [];
  try {
    return dlopen(placeAddon(dir, name, bytes));
  } catch (e) {
    failures.push(`${dir}: ${(e as Error).message}`);
  }
  let tmp: string | undefined;
  try {
    tmp = mkdtempSync(join(tmpdir(), "toa-"));
    return dlopen(placeAddon(tmp, name, bytes));
  } catch (e) {
    failures.push(`${tmp ?? tmpdir()}: ${(e as Error).message}`);
  } finally {
    // Once loaded, the mapping outlives the file.
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
  throw new Error(
    `cannot load ${name}, the native FFI binary carried inside toa (${failures.join("; ")}): ` +
      "set TOA_CACHE_DIR to a folder of your own on a file system that allows executables",
  );
}
