/**
 * `toa agent`: keeps the receiver attached to declared targets while cgroups come and go.
 *
 * One receiver per target cgroup, each in its own pin folder below the base folder (targetPinDir):
 * the same cgroup path always maps to the same folder, so when a service or pod restart removes its
 * cgroup and makes it again, the agent finds the pinned maps (the socket storage among them) and
 * attaches new links to the new folder — the load path `toa load` takes for defunct links. Each
 * receiver is a plain `toa load` result: `toa status --pin-dir <folder>` and `toa unload` work on it.
 *
 * New folders are seen through inotify (CgroupWatcher) and attached at once; a full check every
 * resyncSeconds is only a safety net (another tool detaching our links). The agent never detaches a
 * cgroup that still exists; pins of a removed cgroup are kept keepGoneSeconds for it to come back,
 * then removed. Stopping the agent leaves every program attached.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { Counter as PromCounter, Gauge, Histogram, Registry } from "prom-client";
import { attachmentHealth, readLoadedSettings } from "./loaded.js";
import { loadReceiver } from "./receiver.js";
import { unloadReceiver } from "./unload.js";
import { CgroupWatcher } from "./cgroup-watch.js";
import { targetPinDir } from "./targets.js";
import type { AgentConfig } from "./agent-config.js";
import { formatCidr } from "../wire/cidr.js";
import { receiverCounterNames, receiverCounters } from "./stats.js";
import { ensurePinDir, isBpffs } from "../bpf/index.js";

/** One target cgroup the agent looks after. */
export interface TargetState {
  cgroup: string;
  pinDir: string;
  /** Targets (as written) it matches. */
  matchedBy: string[];
  state: "attached" | "failed" | "gone";
  since: string;
  error?: string;
  /** When the folder was removed (state "gone"): its pins go keepGoneSeconds later. */
  goneAt?: number;
}

/** The agent's Prometheus metrics. */
function agentMetrics(registry: Registry, agent: Agent) {
  const attach = new PromCounter({ name: "toa_agent_attach_total", help: "receiver loads by the agent, by result (loaded, replaced, reattached, unchanged, failed)", labelNames: ["result"], registers: [registry] });
  const latency = new Histogram({
    name: "toa_agent_attach_seconds",
    help: "time from a target cgroup's appearance (inotify event) to the receiver attached",
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
    registers: [registry],
  });
  new Gauge({
    name: "toa_agent_targets",
    help: "target cgroups by state (attached, failed, gone)",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of ["attached", "failed", "gone"] as const) this.set({ state: s }, agent.list().filter((x) => x.state === s).length);
    },
  });
  new Gauge({ name: "toa_agent_watched_folders", help: "cgroup folders watched with inotify", registers: [registry], collect() { this.set(agent.watchedFolders); } });
  for (const name of receiverCounterNames) {
    new PromCounter({
      name: `toa_${name}_total`,
      help: `toa receiver counter ${name} (summed over CPUs), per target cgroup`,
      labelNames: ["cgroup"],
      registers: [registry],
      collect() {
        this.reset();
        for (const t of agent.list()) {
          try {
            const c = receiverCounters(t.pinDir);
            if (c) this.inc({ cgroup: t.cgroup }, c[name]);
          } catch {
            /* pins going away meanwhile */
          }
        }
      },
    });
  }
  return { attach, latency };
}

/** The long-running agent. */
export class Agent {
  readonly registry = new Registry();
  private readonly states = new Map<string, TargetState>();
  private readonly metrics = agentMetrics(this.registry, this);
  private watcher?: CgroupWatcher;
  private timer?: NodeJS.Timeout;

  constructor(
    private config: AgentConfig,
    readonly mount: string,
    private readonly log: Logger,
  ) {}

  get watchedFolders(): number {
    return this.watcher?.watched ?? 0;
  }

  /** Every target cgroup known, attached or not. */
  list(): TargetState[] {
    return [...this.states.values()];
  }

  /** Healthy when every target cgroup that exists has the receiver attached. */
  health(): { ok: boolean; text: string } {
    const bad = this.list().filter((s) => s.state === "failed");
    const attached = this.list().filter((s) => s.state === "attached").length;
    if (!this.watcher) return { ok: false, text: "not started" };
    if (bad.length) return { ok: false, text: `${bad.length} target cgroup(s) without the receiver: ${bad.map((b) => `${b.cgroup}: ${b.error}`).join("; ")}` };
    return { ok: true, text: `ok: ${attached} target cgroup(s) attached, ${this.watchedFolders} folder(s) watched` };
  }

  /** Watch, attach to every target there is, adopt pins left by an earlier run. */
  start(): void {
    ensurePinDir(this.config.pinBase);
    this.adoptLeftovers();
    this.watcher = new CgroupWatcher(this.mount, this.config.targets, {
      appeared: (path, segments, targets) => this.ensure(path, segments, targets.map((t) => t.text), process.hrtime.bigint()),
      vanished: (path) => this.gone(path),
      error: (path, e) => this.log.warn({ cgroup: path, err: e.message }, "cannot watch a cgroup folder"),
    });
    this.watcher.start();
    this.timer = setInterval(() => this.resync(), this.config.resyncSeconds * 1000);
    this.timer.unref();
    this.log.info({ targets: this.config.targets.map((t) => t.text), attached: this.list().filter((s) => s.state === "attached").length, watched: this.watchedFolders, pinBase: this.config.pinBase }, "toa agent started");
  }

  /** A new config (SIGHUP): new targets are watched and attached; settings changes reload every target. */
  reconfigure(config: AgentConfig): void {
    const before = this.config;
    this.config = config;
    if (before.pinBase !== config.pinBase) this.log.warn({ from: before.pinBase, to: config.pinBase }, "pinBase changed: receivers already pinned under the old folder stay there (toa unload --pin-dir removes them)");
    for (const s of this.states.values()) if (s.state !== "gone") s.matchedBy = [];
    this.watcher?.retarget(config.targets);
    for (const s of this.states.values()) {
      if (s.state !== "gone" && s.matchedBy.length === 0) {
        this.log.warn({ cgroup: s.cgroup, pinDir: s.pinDir }, "no target matches this cgroup any more: left attached (the agent never detaches a live cgroup); remove it with toa unload --pin-dir");
        this.states.delete(s.cgroup);
      }
    }
    this.log.info({ targets: config.targets.map((t) => t.text), source: config.source }, "config reloaded");
  }

  /** Stop watching. Every program stays attached and pinned. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
  }

  private settingsFor(cgroup: string, pinDir: string) {
    return { cgroup, pinDir, kinds: this.config.kinds, trust: this.config.trust, syn: this.config.syn };
  }

  /** Make sure the receiver is attached to `cgroup` with the current settings; no reload when it already is. */
  private ensure(cgroup: string, segments: readonly string[], matchedBy: string[], seenAt: bigint): void {
    const pinDir = targetPinDir(this.config.pinBase, segments);
    const prev = this.states.get(cgroup);
    const state: TargetState = { cgroup, pinDir, matchedBy, state: "attached", since: new Date().toISOString() };
    let result: "loaded" | "replaced" | "reattached" | "unchanged" | "failed";
    try {
      const loaded = existsSync(pinDir) ? readLoadedSettings(pinDir) : undefined;
      const same =
        loaded &&
        loaded.cgroup === cgroup &&
        loaded.syn === this.config.syn &&
        loaded.kinds.join(",") === this.config.kinds.join(",") &&
        loaded.trust.map(formatCidr).join(",") === this.config.trust.map(formatCidr).join(",");
      if (same && attachmentHealth(pinDir).every((h) => h.attached)) {
        result = "unchanged";
      } else {
        const r = loadReceiver(this.settingsFor(cgroup, pinDir));
        for (const w of r.warnings) this.log.warn({ cgroup }, w);
        result = r.reattached.length ? "reattached" : r.action;
      }
    } catch (e) {
      result = "failed";
      state.state = "failed";
      state.error = (e as Error).message;
    }
    if (prev?.state === state.state && result === "unchanged") state.since = prev.since;
    this.states.set(cgroup, state);
    this.metrics.attach.inc({ result });
    if (result === "failed") {
      // The folder may have gone again meanwhile (a container that exited at once): not worth an error then.
      if (!existsSync(cgroup)) return this.gone(cgroup);
      this.log.error({ cgroup, pinDir, err: state.error }, "cannot attach the receiver");
      return;
    }
    const seconds = Number(process.hrtime.bigint() - seenAt) / 1e9;
    if (result !== "unchanged") this.metrics.latency.observe(seconds);
    this.log[result === "unchanged" ? "debug" : "info"]({ cgroup, pinDir, result, ms: Math.round(seconds * 1000), matchedBy }, result === "unchanged" ? "receiver already attached" : "receiver attached");
  }

  /** A target folder was removed: keep its pins for a while, it may come back (a restart). */
  private gone(cgroup: string): void {
    const s = this.states.get(cgroup);
    if (!s || s.state === "gone") return;
    s.state = "gone";
    s.goneAt = Date.now();
    s.since = new Date().toISOString();
    delete s.error;
    this.log.info({ cgroup, pinDir: s.pinDir, keepSeconds: this.config.keepGoneSeconds }, "target cgroup removed: pins kept for it to come back");
  }

  /** Pin folders an earlier run left: their cgroups are looked after again (or collected when gone). */
  private adoptLeftovers(): void {
    if (!isBpffs(this.config.pinBase)) return;
    for (const name of readdirSync(this.config.pinBase)) {
      const pinDir = join(this.config.pinBase, name);
      let cgroup: string | undefined;
      try {
        cgroup = readLoadedSettings(pinDir)?.cgroup;
      } catch {
        cgroup = undefined;
      }
      if (!cgroup || existsSync(cgroup)) continue; // live ones are found by the watcher
      this.states.set(cgroup, { cgroup, pinDir, matchedBy: [], state: "gone", since: new Date().toISOString(), goneAt: Date.now() });
    }
  }

  /** The safety net: every live target checked, pins of long-gone cgroups removed. */
  resync(): void {
    const now = Date.now();
    for (const s of [...this.states.values()]) {
      if (s.state === "gone") {
        if (existsSync(s.cgroup)) continue; // back: the watcher reports it
        if (now - (s.goneAt ?? now) < this.config.keepGoneSeconds * 1000) continue;
        try {
          const r = unloadReceiver(s.pinDir);
          this.states.delete(s.cgroup);
          this.log.info({ cgroup: s.cgroup, pinDir: s.pinDir, removed: r.unpinned.length }, "target cgroup gone for good: pins removed");
        } catch (e) {
          this.log.warn({ cgroup: s.cgroup, pinDir: s.pinDir, err: (e as Error).message }, "cannot remove the pins of a gone cgroup");
        }
        continue;
      }
      if (!existsSync(s.cgroup)) {
        this.gone(s.cgroup);
        continue;
      }
      const segments = s.cgroup.slice(this.mount.length).split("/").filter(Boolean);
      this.ensure(s.cgroup, segments, s.matchedBy, process.hrtime.bigint());
    }
  }
}
