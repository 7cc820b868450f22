/**
 * What `toa agent` attaches to: cgroup folders named by path, by glob, or by systemd unit. Pure: a
 * target is parsed once into a matcher over the path segments below the cgroup v2 mount, so the
 * watcher can ask both "is this folder a target?" and "can a target be below this folder?" (only
 * those folders are watched).
 *
 *   system.slice/nginx.service                   one folder (relative to the cgroup v2 mount)
 *   /sys/fs/cgroup/system.slice/nginx.service    the same, absolute
 *   kubepods.slice/**\/cri-containerd-*.scope     a glob: * and ? within one name, ** any depth
 *   /                                            the cgroup v2 root: the whole host
 *   unit nginx.service                           a systemd unit, wherever its slice puts it
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { TargetError } from "./errors.js";

/** A target the agent keeps the receiver attached to. */
export interface Target {
  /** As the operator wrote it (for logs). */
  text: string;
  kind: "path" | "glob" | "unit";
  /** Whether the folder at these segments (below the mount) is a target. */
  matches(segments: readonly string[]): boolean;
  /** Whether a target can be at or below the folder at these segments (the watcher watches only those). */
  mayContain(segments: readonly string[]): boolean;
}

export { TargetError } from "./errors.js";

const UNIT_SUFFIXES = [".service", ".scope", ".slice", ".socket"];
const UNIT_NAME = /^[A-Za-z0-9:_.\\@-]+$/;

function segmentRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]");
  return new RegExp(`^${body}$`);
}

function globMatch(p: readonly (RegExp | "**")[], i: number, s: readonly string[], j: number): boolean {
  if (i === p.length) return j === s.length;
  const seg = p[i];
  if (seg === "**") return globMatch(p, i + 1, s, j) || (j < s.length && globMatch(p, i, s, j + 1));
  return j < s.length && seg.test(s[j]) && globMatch(p, i + 1, s, j + 1);
}

/** Whether some folder at or below `s` can match `p` from position i/j. */
function globPrefix(p: readonly (RegExp | "**")[], i: number, s: readonly string[], j: number): boolean {
  if (j === s.length) return true;
  if (i === p.length) return false;
  const seg = p[i];
  if (seg === "**") return true;
  return seg.test(s[j]) && globPrefix(p, i + 1, s, j + 1);
}

/** Path segments of `path` below the cgroup v2 `mount`; throws when it is outside. */
export function segmentsBelow(path: string, mount: string, field: string): string[] {
  const m = mount.replace(/\/+$/, "");
  if (path !== m && !path.startsWith(`${m}/`)) {
    throw new TargetError(field, `"${path}" is not under the cgroup v2 mount ${m}: write it relative to it (e.g. system.slice/nginx.service) or as ${m}/...`);
  }
  return path.slice(m.length).split("/").filter(Boolean);
}

/**
 * Parse one `--target`: an absolute path under `mount` or one relative to it, with optional globs.
 * `field` names where it came from in errors ("--target", "targets[2] (agent.yaml)").
 */
export function parseTarget(text: string, mount: string, field = "--target"): Target {
  const t = text.trim();
  if (t === "") throw new TargetError(field, "is empty: give a cgroup folder such as system.slice/nginx.service, a glob such as kubepods.slice/**/cri-containerd-*.scope, or / for the whole host");
  const segments = t.startsWith("/") ? (t === "/" ? [] : segmentsBelow(t, mount, field)) : t.split("/").filter(Boolean);
  for (const s of segments) {
    if (s === "." || s === "..") throw new TargetError(field, `"${text}" has a "${s}" component: write the folder's path without it`);
    if (s.includes("**") && s !== "**") throw new TargetError(field, `"${text}": ** must be a whole path component (a/**/b), not part of "${s}"`);
    if (/[[\]{}]/.test(s)) throw new TargetError(field, `"${text}": only *, ? and ** are understood in globs, not [ ] or { }`);
  }
  const glob = segments.some((s) => /[*?]/.test(s));
  if (!glob) {
    return {
      text,
      kind: "path",
      matches: (s) => s.length === segments.length && s.every((x, i) => x === segments[i]),
      mayContain: (s) => s.length <= segments.length && s.every((x, i) => x === segments[i]),
    };
  }
  const p = segments.map((s) => (s === "**" ? ("**" as const) : segmentRegExp(s)));
  return { text, kind: "glob", matches: (s) => globMatch(p, 0, s, 0), mayContain: (s) => globPrefix(p, 0, s, 0) };
}

/**
 * Parse one `--unit`: a systemd unit's folder is named after it and sits below slices
 * (system.slice/nginx.service, or the slice of its Slice= setting), so only slices are searched.
 */
export function parseUnit(text: string, field = "--unit"): Target {
  const name = text.trim();
  if (!UNIT_NAME.test(name) || !UNIT_SUFFIXES.some((x) => name.endsWith(x)) || name.startsWith(".")) {
    throw new TargetError(field, `"${text}" is not a systemd unit name: write e.g. nginx.service (${UNIT_SUFFIXES.join(", ")}); for a cgroup path use --target`);
  }
  const slices = (s: readonly string[]) => s.every((x) => x.endsWith(".slice"));
  return {
    text: `unit ${name}`,
    kind: "unit",
    matches: (s) => s.length > 0 && s[s.length - 1] === name && slices(s.slice(0, -1)),
    mayContain: (s) => slices(s),
  };
}

/**
 * The pin folder of one target cgroup under the agent's base folder: the cgroup's path below the
 * mount with `/` turned into `_` and `.` (which bpffs refuses in names: EPERM) and other unusual
 * characters into `-`, plus a short hash of the exact path (two paths never share a folder). The same path always gives the same folder, so a cgroup removed
 * and made again (a service restart) finds its pins, and its socket-storage map, again.
 *
 *   system.slice/nginx.service  →  <base>/system-slice_nginx-service-a4dad00b
 *   (the cgroup v2 root)        →  <base>/root-<hash>
 */
export function targetPinDir(base: string, segments: readonly string[]): string {
  const rel = segments.join("/");
  const hash = createHash("sha256").update(rel).digest("hex").slice(0, 8);
  const readable = (rel === "" ? "root" : rel.replace(/\//g, "_").replace(/[^A-Za-z0-9_@:-]/g, "-")).slice(-160);
  return join(base, `${readable}-${hash}`);
}
