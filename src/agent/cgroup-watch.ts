/**
 * Watching cgroupfs for target folders: inotify (fs.watch) on each folder below which a target can
 * be, so a folder made by systemd or the container runtime is seen at once (mkdir on cgroupfs
 * raises IN_CREATE like on any file system), not at the next poll. A new folder is watched before
 * its children are listed, so one made meanwhile is never missed; a removed one drops its watchers.
 */
import { type FSWatcher, readdirSync, statSync, watch } from "node:fs";
import { join } from "node:path";
import type { Target } from "./targets.js";

/** What the watcher reports. */
export interface WatchEvents {
  /** A target folder exists (at start, or it was just made). */
  appeared(path: string, segments: string[], targets: Target[]): void;
  /** A target folder was removed. */
  vanished(path: string, segments: string[]): void;
  /** A folder could not be watched or read. */
  error?(path: string, error: Error): void;
}

/** inotify watchers over the cgroup v2 tree, limited to where targets can be. */
export class CgroupWatcher {
  private readonly watchers = new Map<string, FSWatcher>();
  /** Target folders present, with their inode (the cgroup id): a folder removed and made again before its events are read has a new one. */
  private readonly present = new Map<string, bigint>();
  private closed = false;

  constructor(
    readonly mount: string,
    private targets: readonly Target[],
    private readonly events: WatchEvents,
  ) {}

  /** Folders watched now. */
  get watched(): number {
    return this.watchers.size;
  }

  /** Target folders present now. */
  get matched(): string[] {
    return [...this.present.keys()];
  }

  /** Watch and report every target folder there is. */
  start(): void {
    this.visit([]);
  }

  /** New targets (a reloaded config): drop every watcher and start again; appeared() runs for each match. */
  retarget(targets: readonly Target[]): void {
    this.targets = targets;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    this.present.clear();
    this.visit([]);
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  private pathOf(segments: readonly string[]): string {
    return segments.length ? join(this.mount, ...segments) : this.mount;
  }

  /** A folder exists: report it when it is a target, watch it and its children when targets can be below. */
  private visit(segments: string[]): void {
    if (this.closed) return;
    const path = this.pathOf(segments);
    const matching = this.targets.filter((t) => t.matches(segments));
    if (matching.length) {
      let ino: bigint;
      try {
        ino = statSync(path, { bigint: true }).ino;
      } catch {
        return; // gone again already: its removal event follows
      }
      const known = this.present.get(path);
      if (known !== ino) {
        if (known !== undefined) this.events.vanished(path, segments); // rmdir + mkdir seen as one
        this.present.set(path, ino);
        this.events.appeared(path, segments, matching);
      }
    }
    // Below a folder, a target can be only if some target can match a longer path through it.
    if (!this.targets.some((t) => t.mayContain(segments) && this.canGoDeeper(t, segments))) return;
    if (!this.watchers.has(path)) {
      try {
        const w = watch(path, { persistent: true }, (type, name) => {
          if (type === "rename" && name) this.changed([...segments, name.toString()]);
        });
        w.on("error", (e) => {
          // The folder went away (or cgroupfs said so): its removal is reported by the parent's watcher.
          w.close();
          if (this.watchers.get(path) === w) this.watchers.delete(path);
          if (!isGone(e)) this.events.error?.(path, e);
        });
        this.watchers.set(path, w);
      } catch (e) {
        if (!isGone(e as Error)) this.events.error?.(path, e as Error);
        return;
      }
    }
    let names: string[];
    try {
      names = readdirSync(path, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name);
    } catch (e) {
      if (!isGone(e as Error)) this.events.error?.(path, e as Error);
      return;
    }
    for (const n of names) {
      const child = [...segments, n];
      if (this.targets.some((t) => t.matches(child) || t.mayContain(child))) this.visit(child);
    }
  }

  /** Whether a path longer than `segments` can match `t` (called where mayContain(segments) holds). */
  private canGoDeeper(t: Target, segments: string[]): boolean {
    // A path target that is exactly this folder has nothing below it; globs and units may go deeper.
    if (t.kind === "path") return !t.matches(segments);
    return true;
  }

  /** inotify said a name below a watched folder was made or removed. */
  private changed(segments: string[]): void {
    if (this.closed) return;
    const path = this.pathOf(segments);
    let dir = false;
    try {
      dir = statSync(path).isDirectory();
    } catch {
      dir = false;
    }
    if (dir) {
      if (this.targets.some((t) => t.matches(segments) || t.mayContain(segments))) this.visit(segments);
      return;
    }
    // Removed: forget it and everything below it.
    for (const [p, w] of this.watchers) {
      if (p === path || p.startsWith(`${path}/`)) {
        w.close();
        this.watchers.delete(p);
      }
    }
    for (const p of [...this.present.keys()]) {
      if (p === path || p.startsWith(`${path}/`)) {
        this.present.delete(p);
        this.events.vanished(p, p.slice(this.mount.length).split("/").filter(Boolean));
      }
    }
  }
}

function isGone(e: Error): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}
