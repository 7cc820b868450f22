/**
 * tc attachment on a real kernel, in both modes (tcx links and classic tc over rtnetlink), inside two
 * network namespaces the test makes, joined by a veth pair (198.51.100.0/24):
 *
 *   client 198.51.100.2 ── veth ── 198.51.100.1 server (listens on 8080 and 9999)
 *                                  └ ingress: counts packets, drops TCP to 9999
 *
 * The attacher (test/harness/tc-attacher.mjs) runs inside the server namespace (nsenter --net):
 * ifindexes, links and tc filters belong to the caller's namespace. Nothing is attached elsewhere.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createInterface } from "node:readline";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { requireKernelFeature, requireRoot } from "../harness/privileged.js";
import { probe } from "../../src/bpf/probes.js";
import { Netns, link } from "../harness/netns.js";
import { start, waitFor, type Started } from "../harness/exec.js";
import type { TcFilter, TcMode, TcxQuery } from "../../src/bpf/index.js";

const here = dirname(fileURLToPath(import.meta.url)); // dist/test/priv
const ATTACHER = resolve(here, "../../../test/harness/tc-attacher.mjs");
const BPF_MODULE = resolve(here, "../../src/bpf/index.js");
const SERVER = "198.51.100.1";
const OPEN_PORT = 8080;
const DROP_PORT = 9999;

interface Reply {
  event: string;
  mode?: TcMode;
  ifindex?: number;
  programId?: number;
  packets?: number;
  dropped?: number;
  tcx?: TcxQuery;
  filters?: TcFilter[];
  removed?: TcFilter[];
}

/** The attacher process: JSON lines out, commands in. */
class Attacher {
  private readonly replies: Reply[] = [];
  private seen = 0;
  constructor(readonly proc: Started) {
    createInterface({ input: proc.child.stdout! }).on("line", (l) => {
      if (l.startsWith("{")) this.replies.push(JSON.parse(l) as Reply);
    });
  }
  /** The next reply, which must be `event`. */
  async next(event: string): Promise<Reply> {
    const r = await waitFor(`attacher "${event}"`, () => {
      if (this.proc.child.exitCode !== null && this.replies.length <= this.seen) throw new Error(`attacher exited: ${this.proc.output()}`);
      return this.replies[this.seen];
    });
    this.seen++;
    assert.equal(r.event, event, `attacher said ${JSON.stringify(r)}; output: ${this.proc.output()}`);
    return r;
  }
  async ask(cmd: string, event: string): Promise<Reply> {
    this.proc.child.stdin!.write(`${cmd}\n`);
    return this.next(event);
  }
}

interface Setup {
  server: Netns;
  client: Netns;
  ifname: string;
  /** Start an attacher in the server namespace (stopped at teardown). */
  attacher(args: object): Attacher;
  /** Connect from the client: "ok", "timeout" or the error code. */
  connect(port: number): Promise<string>;
  /** `tc filter show dev <server veth> ingress` in the server namespace. */
  tcFilters(): Promise<string>;
}

/** Two namespaces, a veth pair, listeners; one teardown that stops processes before the namespaces go. */
async function setUp(t: TestContext): Promise<Setup> {
  const cleanups: (() => unknown)[] = [];
  t.after(async () => {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
  });
  const server = await Netns.create(undefined, "ttcs");
  cleanups.push(() => server.delete());
  const client = await Netns.create(undefined, "ttcc");
  cleanups.push(() => client.delete());
  const { aIf } = await link(server, client, { a4: `${SERVER}/24`, b4: "198.51.100.2/24" });

  const listeners = server.start(undefined, process.execPath, [
    "-e",
    `const net = require("node:net"); for (const p of [${OPEN_PORT}, ${DROP_PORT}]) net.createServer((s) => s.end("hi\\n")).listen(p, "${SERVER}");`,
  ]);
  cleanups.push(() => listeners.stop());
  await waitFor("listeners", async () => {
    const ss = await server.run("ss", ["-Htln"]);
    return ss.includes(`${SERVER}:${OPEN_PORT}`) && ss.includes(`${SERVER}:${DROP_PORT}`);
  });

  return {
    server,
    client,
    ifname: aIf,
    attacher(args) {
      const proc = start("nsenter", [`--net=/run/netns/${server.name}`, process.execPath, ATTACHER, JSON.stringify({ bpf: BPF_MODULE, ifname: aIf, ...args })], {
        stdio: ["pipe", "pipe", "pipe"],
      });
      cleanups.push(() => proc.stop());
      return new Attacher(proc);
    },
    connect(port) {
      const code = `const s = require("node:net").connect(${port}, "${SERVER}");
        s.setTimeout(1500, () => { console.log("timeout"); process.exit(0); });
        s.on("data", () => { console.log("ok"); process.exit(0); });
        s.on("error", (e) => { console.log(e.code); process.exit(0); });`;
      return client.run(process.execPath, ["-e", code]).then((o) => o.trim());
    },
    tcFilters: () => server.run("tc", ["filter", "show", "dev", aIf, "ingress"]),
  };
}

for (const mode of ["tcx", "netlink"] as TcMode[]) {
  test(`tc (${mode}): the program counts ingress packets and drops TCP to one port; detach leaves no trace`, async (t) => {
    if (!requireRoot(t)) return;
    if (mode === "tcx" && !requireKernelFeature(t, "tcx")) return;
    const s = await setUp(t);
    assert.equal(await s.connect(DROP_PORT), "ok", "before attaching, both ports answer");

    const a = s.attacher({ direction: "ingress", mode, dropPort: DROP_PORT });
    const attached = await a.next("attached");
    assert.equal(attached.mode, mode);
    if (mode === "tcx") {
      assert.deepEqual(attached.tcx?.programIds, [attached.programId], "the kernel lists our program on the device's tcx ingress");
      assert.deepEqual(attached.filters, []);
    } else {
      assert.deepEqual(attached.tcx?.programIds, []);
      assert.equal(attached.filters?.length, 1);
      assert.deepEqual(
        { kind: attached.filters![0].kind, name: attached.filters![0].name, programId: attached.filters![0].programId, directAction: attached.filters![0].directAction },
        { kind: "bpf", name: "bpf:tc_test", programId: attached.programId, directAction: true },
      );
      // iproute2's view agrees.
      assert.match(await s.tcFilters(), /bpf .*bpf:tc_test direct-action/);
    }

    assert.equal(await s.connect(OPEN_PORT), "ok", "other ports pass");
    assert.equal(await s.connect(DROP_PORT), "timeout", "SYNs to the dropped port never arrive");
    const seen = await a.ask("counts", "counts");
    assert.ok(seen.packets! >= 3, `packets counted: ${seen.packets}`);
    assert.ok(seen.dropped! >= 1, `SYNs dropped: ${seen.dropped}`);

    const detached = await a.ask("detach", "detached");
    assert.deepEqual(detached.tcx?.programIds, []);
    assert.deepEqual(detached.filters, []);
    // Counted once detached: a packet of the earlier connections may still have come in between
    // the first count and the detach.
    const atDetach = await a.ask("counts", "counts");
    assert.equal(await s.connect(DROP_PORT), "ok", "after detach the port answers again");
    const after = await a.ask("counts", "counts");
    assert.equal(after.packets, atDetach.packets, "the detached program sees nothing");
    assert.doesNotMatch(await s.tcFilters(), /bpf|toa:/, "tc filter show lists nothing of ours");
    // We created the clsact qdisc (netlink mode) and left no filter in it: it went too.
    assert.doesNotMatch(await s.server.run("tc", ["qdisc", "show", "dev", s.ifname]), /clsact/);
    a.proc.child.stdin!.end("exit\n");
    assert.equal(await a.proc.exited, 0, a.proc.output());
  });
}

test("tc after a crash: a tcx link goes with the process; a netlink filter stays until removed by name", async (t) => {
  if (!requireRoot(t)) return;
  const s = await setUp(t);
  const modes: TcMode[] = probe("tcx").available ? ["tcx", "netlink"] : ["netlink"];
  if (modes.length === 1) t.diagnostic("no tcx on this kernel (6.6+): the netlink half only");
  for (const mode of modes) {
    const a = s.attacher({ direction: "ingress", mode, dropPort: DROP_PORT });
    await a.next("attached");
    assert.equal(await s.connect(DROP_PORT), "timeout");
    a.proc.child.kill("SIGKILL");
    await a.proc.exited;

    if (mode === "tcx") {
      assert.equal(await s.connect(DROP_PORT), "ok", "the link closed with its last fd");
      continue;
    }
    assert.equal(await s.connect(DROP_PORT), "timeout", "the classic filter outlives its process");
    assert.match(await s.tcFilters(), /bpf:tc_test/);
    const cleaner = s.attacher({ cleanup: true });
    const cleaned = await cleaner.next("cleaned");
    assert.deepEqual(cleaned.removed?.map((f) => f.name), ["bpf:tc_test"]);
    assert.deepEqual(cleaned.tcx?.programIds, []);
    assert.doesNotMatch(await s.tcFilters(), /bpf|toa:/);
    assert.equal(await s.connect(DROP_PORT), "ok");
  }
});
