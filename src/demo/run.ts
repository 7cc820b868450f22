/**
 * `toa demo`: client → toa lb → backend in three network namespaces, the backend asked "who is my
 * peer?" before and after `toa load`. Everything it makes is named with the run's id and recorded in
 * a state file, and removed at the end, on Ctrl-C/SIGTERM or on failure (or by `--cleanup ID` after
 * `--keep`). It attaches only to cgroups it made, never to the machine's root cgroup.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findCgroup2Mount } from "../bpf/cgroup.js";
import { loadReceiver } from "../agent/receiver.js";
import { unloadReceiver } from "../agent/unload.js";
import { receiverCounters, type Counters } from "../agent/stats.js";
import { parseTrust, synDefault } from "../agent/settings.js";
import { DEFAULT_KINDS } from "../programs/layout.js";
import { toaArgv } from "../shared/self.js";
import { DemoError } from "./errors.js";
import type { PeerResponse } from "./peers.js";
import { createNetns, deleteNetns, listening, nsRun, type Proc, removeCgroup, startIn, stopPid, vethLink, waitUntil as waitUntil0 } from "./system.js";

/** Documentation prefixes only. */
export const DEMO_ADDR = {
  client4: "198.51.100.2",
  client6: "2001:db8:1::2",
  lb4: "198.51.100.1",
  lb6: "2001:db8:1::1",
  lbInside4: "203.0.113.1",
  lbInside6: "2001:db8:2::1",
  backend4: "203.0.113.2",
  backend6: "2001:db8:2::2",
} as const;

const BACKEND_PORT = 8080;
const ADMIN = "127.0.0.1:9100";
/** Where `--keep` leaves the description of a run for `--cleanup ID`. */
export const STATE_DIR = "/run/toa-demo";

/** Everything one run makes, by name: enough to remove it from another process. */
export interface DemoState {
  id: string;
  netns: { client: string; balancer: string; backend: string };
  /** Parent folder first, then its children. */
  cgroups: { parent: string; balancer: string; backend: string };
  pinDir: string;
  tmpDir: string;
  pids: { lb?: number; backend?: number };
}

/** One request and what the backend saw. */
export interface Observation {
  family: 4 | 6;
  toa: boolean;
  url: string;
  /** The client's own socket: address and port it connected from. */
  client: { address: string; port: number };
  /** What accept()/getpeername() said in the backend. */
  backendSaw: { address: string; port: number };
  /** Who that address is. */
  who: "client" | "balancer" | "other";
}

export interface DemoResult {
  id: string;
  ok: boolean;
  observations: Observation[];
  receiverCounters?: Counters;
  lb: { toaWritten: number; skippedNoSpace: number } | null;
  kept: boolean;
  state: DemoState;
}

export interface DemoOptions {
  keep?: boolean;
  /** Progress lines ("creating namespaces…"). */
  progress?: (line: string) => void;
  /** Skip the IPv6 requests. */
  ipv4Only?: boolean;
  /** How the balancer forwards: `js` (a relay; the TOA sender on its cgroup) or `packet` (the kernel rewrites packets, no socket). */
  dataPath?: "js" | "packet";
}

/** A fresh run id: short, lower case, safe for netns, interface, cgroup and pin names. */
export function newDemoId(): string {
  return `${Date.now().toString(36).slice(-3)}${Math.random().toString(36).slice(2, 5)}`;
}

/** The names a run with `id` uses. */
export function demoState(id: string, mount = findCgroup2Mount()): DemoState {
  if (!/^[a-z0-9]{1,8}$/.test(id)) throw new DemoError("DEMO_ERR_INVALID_ARG", `demo id "${id}" must be 1-8 lower-case letters or digits`);
  const parent = join(mount, `toa-demo-${id}`);
  return {
    id,
    netns: { client: `toa-demo-${id}-client`, balancer: `toa-demo-${id}-lb`, backend: `toa-demo-${id}-backend` },
    cgroups: { parent, balancer: join(parent, "balancer"), backend: join(parent, "backend") },
    pinDir: `/sys/fs/bpf/toa-demo-${id}`,
    tmpDir: "",
    pids: {},
  };
}

/** Start `toa ARGS` (this same toa, npm install or single executable) in a namespace and cgroup. */
function startToa(name: string, s: DemoState, netns: string, cgroup: string, args: string[], log: string): Proc {
  const [file, ...rest] = toaArgv(...args);
  return startIn(name, netns, cgroup, file, rest, join(s.tmpDir, log));
}

/** `toa demo-peer get URL` in a namespace: the response and the client's own address:port. */
async function getIn(netns: string, url: string): Promise<PeerResponse> {
  const [file, ...rest] = toaArgv("demo-peer", "get", url);
  const out = await nsRun(netns, file, rest, 60_000);
  return JSON.parse(out.trim().split("\n").pop()!) as PeerResponse;
}

/** "::ffff:198.51.100.2" → "198.51.100.2". */
const plain = (a: string): string => (a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a);

/**
 * Remove everything a run made: processes by pid, the receiver's pins and attachments, cgroups
 * (children first), network namespaces, temp files, the state file. Idempotent; collects errors.
 */
export async function cleanupDemo(s: DemoState): Promise<string[]> {
  const errors: string[] = [];
  const attempt = async (what: string, fn: () => unknown): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      errors.push(`${what}: ${(e as Error).message}`);
    }
  };
  for (const pid of [s.pids.lb, s.pids.backend]) {
    // Only a pid still inside one of our cgroups is ours (the pid may have been reused since).
    if (pid && inOurCgroup(pid, s)) await attempt(`stop pid ${pid}`, () => stopPid(pid));
  }
  await attempt(`unload ${s.pinDir}`, () => unloadReceiver(s.pinDir));
  // The balancer's packet path outlives its process (its pins): take the demo's instance away too.
  await attempt(`remove toa lb instance ${demoInstance(s.id)}`, async () => (await import("../lb/packet/remove.js")).removeInstanceNow(demoInstance(s.id)));
  for (const cg of [s.cgroups.balancer, s.cgroups.backend, s.cgroups.parent]) await attempt(`remove cgroup ${cg}`, () => removeCgroup(cg));
  for (const ns of Object.values(s.netns)) await attempt(`delete netns ${ns}`, () => deleteNetns(ns));
  if (s.tmpDir) await attempt(`remove ${s.tmpDir}`, () => rmSync(s.tmpDir, { recursive: true, force: true }));
  await attempt("state file", () => rmSync(join(STATE_DIR, `${s.id}.json`), { force: true }));
  return errors;
}

/** The demo balancer's instance name (its pins: /sys/fs/bpf/toa-lb/<name>). */
const demoInstance = (id: string): string => `demo-${id}`.slice(0, 32);

function inOurCgroup(pid: number, s: DemoState): boolean {
  try {
    const line = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n").find((l) => l.startsWith("0::")) ?? "";
    return line.includes(`/toa-demo-${s.id}/`);
  } catch {
    return false;
  }
}

/** Clean up a run left with --keep, from its state file (or from its names when the file is gone). */
export async function cleanupById(id: string): Promise<string[]> {
  const file = join(STATE_DIR, `${id}.json`);
  const s: DemoState = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as DemoState) : demoState(id);
  return cleanupDemo(s);
}

/** Ids of runs whose namespaces, cgroups or state files are still there. */
export function leftoverIds(mount = findCgroup2Mount()): string[] {
  const ids = new Set<string>();
  const scan = (dir: string, re: RegExp): void => {
    try {
      for (const n of readdirSync(dir)) {
        const m = re.exec(n);
        if (m) ids.add(m[1]);
      }
    } catch {
      /* no such folder */
    }
  };
  scan("/run/netns", /^toa-demo-([a-z0-9]+)-/);
  scan(mount, /^toa-demo-([a-z0-9]+)$/);
  scan("/sys/fs/bpf", /^toa-demo-([a-z0-9]+)$/);
  scan(STATE_DIR, /^([a-z0-9]+)\.json$/);
  return [...ids];
}

/** Run the demo. Cleans up unless `keep`; on failure it cleans up and rethrows. */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const say = opts.progress ?? (() => undefined);
  if (process.getuid?.() !== 0) throw new DemoError("DEMO_ERR_NOT_ROOT", "toa demo needs root (network namespaces, cgroups, eBPF): run `sudo toa demo`");
  const mount = findCgroup2Mount();
  const s = demoState(newDemoId(), mount);
  const abort = new AbortController();
  let cleaning: Promise<string[]> | undefined;
  const cleanup = (): Promise<string[]> => (cleaning ??= cleanupDemo(s));
  let finished: Promise<unknown> = Promise.resolve();
  // Ctrl-C or SIGTERM: stop between two steps (so nothing is created after the cleanup), remove
  // everything, then exit 130/143. A second signal cleans up at once.
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    const code = sig === "SIGINT" ? 130 : 143;
    if (signalled) {
      void cleanup().finally(() => process.exit(code));
      return;
    }
    signalled = true;
    say(`\n${sig}: cleaning up demo ${s.id}…`);
    abort.abort();
    void finished.catch(() => undefined).finally(() => process.exit(code));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let kept = false;
  const work = (async () => {
    try {
      const result = await demoSteps(s, say, opts, abort.signal);
      if (opts.keep) {
        kept = true;
        // Let this process exit while they run on.
        for (const p of result.procs) p.child.unref();
        mkdirSync(STATE_DIR, { recursive: true });
        writeFileSync(join(STATE_DIR, `${s.id}.json`), JSON.stringify(s, null, 2));
      }
      const { procs: _procs, ...rest } = result;
      return { ...rest, kept };
    } finally {
      if (!kept) {
        if (!signalled) say("cleaning up…");
        const errs = await cleanup();
        for (const e of errs) say(`  cleanup: ${e}`);
      }
      // Once signalled, keep the handlers until process.exit: a further Ctrl-C must not kill us midway.
      if (!signalled) {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    }
  })();
  finished = work;
  return work;
}

async function demoSteps(s: DemoState, say0: (l: string) => void, opts: DemoOptions, signal: AbortSignal): Promise<Omit<DemoResult, "kept"> & { procs: Proc[] }> {
  const A = DEMO_ADDR;
  // Every step starts with a progress line: stop there once interrupted.
  const say = (l: string): void => {
    if (signal.aborted) throw new DemoError("DEMO_ERR_INTERRUPTED", "interrupted");
    say0(l);
  };
  // Generous: loading and verifying the programs takes seconds on a slow or emulated machine.
  const waitUntil = (what: string, check: () => Promise<boolean> | boolean) => waitUntil0(what, check, 60_000, signal);
  say(`toa demo ${s.id}: client → toa lb → backend, in network namespaces`);
  say(`creating namespaces…     ${s.netns.client} (${A.client4}), ${s.netns.balancer} (${A.lb4} | ${A.lbInside4}), ${s.netns.backend} (${A.backend4})`);
  for (const ns of [s.netns.client, s.netns.balancer, s.netns.backend]) await createNetns(ns);
  const ifs = (tag: string) => `td${s.id}${tag}`;
  await vethLink({ ns: s.netns.client, ifname: ifs("c"), v4: `${A.client4}/24`, v6: `${A.client6}/64` }, { ns: s.netns.balancer, ifname: ifs("l"), v4: `${A.lb4}/24`, v6: `${A.lb6}/64` });
  await vethLink({ ns: s.netns.balancer, ifname: ifs("i"), v4: `${A.lbInside4}/24`, v6: `${A.lbInside6}/64` }, { ns: s.netns.backend, ifname: ifs("b"), v4: `${A.backend4}/24`, v6: `${A.backend6}/64` });

  say(`creating cgroups…        ${s.cgroups.balancer}, ${s.cgroups.backend}`);
  mkdirSync(s.cgroups.parent);
  mkdirSync(s.cgroups.balancer);
  mkdirSync(s.cgroups.backend);
  s.tmpDir = mkdtempSync(join(tmpdir(), `toa-demo-${s.id}-`));

  say(`starting backend…        Node HTTP server on [::]:${BACKEND_PORT} that answers with the peer address it sees`);
  const backend = startToa("backend", s, s.netns.backend, s.cgroups.backend, ["demo-peer", "backend", String(BACKEND_PORT)], "backend.log");
  s.pids.backend = backend.pid;
  await waitUntil("the backend to listen", () => alive(backend) && listening(s.netns.backend, `*:${BACKEND_PORT}`).then((l) => l || listening(s.netns.backend, `[::]:${BACKEND_PORT}`)));

  const packet = opts.dataPath === "packet";
  say(
    `starting toa lb…         ${A.lb4}:80 → ${A.backend4}:${BACKEND_PORT}${opts.ipv4Only ? "" : `, [${A.lb6}]:80 → [${A.backend6}]:${BACKEND_PORT}`}, mode toa ` +
      (packet ? "(packet data path: the kernel rewrites packets and inserts the TOA, no socket on the balancer)" : "(TOA sender on the balancer's cgroup)"),
  );
  const config = join(s.tmpDir, "lb.yaml");
  writeFileSync(
    config,
    `admin: ${ADMIN}
instance: ${demoInstance(s.id)}
drainTimeout: 1s
dataPath: ${packet ? "packet" : "js"}
listeners:
  - { name: web4, listen: "${A.lb4}:80", pool: web4, mode: toa }
${opts.ipv4Only ? "" : `  - { name: web6, listen: "[${A.lb6}]:80", pool: web6, mode: toa }\n`}pools:
  web4: { backends: ["${A.backend4}:${BACKEND_PORT}"] }
${opts.ipv4Only ? "" : `  web6: { backends: ["[${A.backend6}]:${BACKEND_PORT}"] }\n`}`,
  );
  const lb = startToa("toa lb", s, s.netns.balancer, s.cgroups.balancer, ["lb", "--config", config, "--cgroup", s.cgroups.balancer, "--log-level", "warn"], "lb.log");
  s.pids.lb = lb.pid;
  // The packet path has no listening socket: its admin listener says it is up.
  try {
    await waitUntil("toa lb to run", async () => alive(lb) && lb.output().includes("running (pid") && (await listening(s.netns.balancer, packet ? ADMIN : `${A.lb4}:80`)));
  } catch (e) {
    // Whatever the balancer said is the diagnosis: show it.
    const said = lb.output().trim();
    throw new DemoError("DEMO_ERR_PROCESS", `${(e as Error).message}${said && !(e as Error).message.includes(said) ? `\ntoa lb's output:\n${said}` : "\n(toa lb printed nothing)"}`, { cause: e });
  }

  const families: (4 | 6)[] = opts.ipv4Only ? [4] : [4, 6];
  const observations: Observation[] = [];
  const request = async (family: 4 | 6, toa: boolean): Promise<void> => {
    const url = family === 4 ? `http://${A.lb4}/` : `http://[${A.lb6}]/`;
    const r = await getIn(s.netns.client, url);
    const saw = JSON.parse(r.body) as { address: string; port: number };
    const address = plain(saw.address);
    const client = { address: plain(r.local.address), port: r.local.port };
    const who = address === client.address ? "client" : address === A.lbInside4 || address === A.lbInside6 ? "balancer" : "other";
    observations.push({ family, toa, url, client, backendSaw: { address, port: saw.port }, who });
  };

  say("requests without toa…    the backend's cgroup has no receiver yet");
  for (const f of families) await request(f, false);

  say(`toa load…                on ${s.cgroups.backend} only (trust ${A.lbInside4}, ${A.lbInside6}), pins ${s.pinDir}`);
  loadReceiver({ cgroup: s.cgroups.backend, pinDir: s.pinDir, kinds: [...DEFAULT_KINDS], trust: parseTrust(`${A.lbInside4}/32,${A.lbInside6}/128`), syn: synDefault(DEFAULT_KINDS) });

  say("requests with toa…");
  for (const f of families) await request(f, true);

  const counters = receiverCounters(s.pinDir);
  let lbToa: DemoResult["lb"] = null;
  try {
    const st = await getIn(s.netns.balancer, `http://${ADMIN}/status.json`);
    const toa = (JSON.parse(st.body) as { toa: { written: number; skippedNoSpace: number } | null }).toa;
    lbToa = toa && { toaWritten: toa.written, skippedNoSpace: toa.skippedNoSpace };
  } catch (e) {
    say(`  (could not read toa lb's status: ${(e as Error).message})`);
  }
  const ok = observations.every((o) => (o.toa ? o.who === "client" && o.backendSaw.port === o.client.port : o.who === "balancer"));
  return { id: s.id, ok, observations, receiverCounters: counters, lb: lbToa, state: s, procs: [backend, lb] };
}

function alive(p: Proc): boolean {
  if (p.child.exitCode !== null || p.child.signalCode !== null) throw new DemoError("DEMO_ERR_PROCESS", `${p.name} exited: ${p.output().trim() || `code ${p.child.exitCode}`}`);
  return true;
}

/** The side-by-side table and counters a person reads. */
export function formatDemo(r: DemoResult): string {
  const A = DEMO_ADDR;
  const ep = (a: { address: string; port: number }): string => (a.address.includes(":") ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
  const label = (o: Observation): string => `IPv${o.family} ${o.toa ? "with toa load" : "without toa"}`;
  const whoText = (o: Observation): string => (o.who === "client" ? "the real client" : o.who === "balancer" ? "the load balancer" : "someone else");
  const mark = (o: Observation): string => (o.toa ? (o.who === "client" ? "✓" : "✗") : "");
  const w1 = Math.max(...r.observations.map((o) => label(o).length));
  const w2 = Math.max(12, ...r.observations.map((o) => ep(o.backendSaw).length));
  const w3 = Math.max(...r.observations.map((o) => whoText(o).length));
  const lines = [
    "",
    `client ${A.client4} ─▶ toa lb ${A.lb4} │ ${A.lbInside4} ─▶ backend ${A.backend4}:${BACKEND_PORT}`,
    "",
    `${"".padEnd(w1)}   backend saw`,
    ...[...r.observations].sort((a, b) => a.family - b.family || Number(a.toa) - Number(b.toa)).map((o) => `${label(o).padEnd(w1)}   ${ep(o.backendSaw).padEnd(w2)}   ${`(${whoText(o)})`.padEnd(w3 + 2)}  ${mark(o)}`.trimEnd()),
    "",
  ];
  const c = r.receiverCounters;
  if (c) {
    lines.push(
      `receiver counters: TOA found ${c.syn_recv_sock_toa} (handshake ACK ${c.found_in_ack}, SYN ${c.found_in_syn}, data ${c.found_in_data}), ` +
        `getpeername rewritten ${c.getname_toa_ok}, untrusted ${c.untrusted}, malformed ${c.malformed}`,
    );
  }
  if (r.lb) lines.push(`toa lb: TOA written ${r.lb.toaWritten}, skipped (no option room) ${r.lb.skippedNoSpace}`);
  lines.push(
    "",
    r.ok
      ? "Same unmodified server, same load balancer: after `toa load` on its cgroup, accept()/getpeername() return the real client."
      : "Unexpected: the backend did not see what it should (see above). `toa doctor` explains what is missing.",
  );
  return lines.join("\n");
}
