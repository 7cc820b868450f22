/**
 * Micro-benchmark of the eBPF toolkit.
 *
 * (a) Reading per-socket state from TypeScript: `map.lookup(fd)` on an SK_STORAGE map (one bpf(2)
 *     MAP_LOOKUP_ELEM by socket fd), side by side with a HASH map lookup of the same 4-byte key and
 *     with a plain JS `Map.get` of it (the baseline an in-process table would cost).
 * (b) Program build cost: `encode()` of a ~500-instruction program, and encode + `Program.load`
 *     (BPF_PROG_LOAD including the verifier) per program.
 *
 * Needs root: it creates a throwaway cgroup under the cgroup v2 mount, attaches a sock_ops program
 * there, makes a connection on 127.0.0.1 inside it, and removes everything at the end.
 *
 *   npm run bench:bpf
 */
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import net from "node:net";
import { once } from "node:events";
import os from "node:os";
import {
  attachCgroup,
  BpfMap,
  btf,
  type BtfType,
  codec,
  type Codec,
  findCgroup2Mount,
  Program,
  type ProgramSpec,
} from "../../src/bpf/index.js";
import {
  add,
  and,
  call,
  encode,
  exit,
  type Item,
  jeq,
  jgt,
  label,
  ldMap,
  ldx,
  mov,
  R0,
  R1,
  R2,
  R3,
  R4,
  R6,
  R7,
  slotCount,
  stx,
} from "../../src/bpf/asm/index.js";
import { median } from "../stats.js";

const ROUNDS = 5;
const LOOKUPS = 200_000;

/** Median over ROUNDS of the ns per call of `fn`, called `n` times per round (after one warm-up round). */
function measure(n: number, fn: (i: number) => unknown): number {
  let sink = 0;
  const once = () => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if (fn(i) !== undefined) sink++;
    return Number(process.hrtime.bigint() - t0) / n;
  };
  once();
  const rounds = Array.from({ length: ROUNDS }, once);
  if (sink < 0) console.log(sink);
  return median(rounds);
}

/** struct conn { __u32 op; __u32 port; } stored per socket. */
const connType: BtfType = {
  kind: "struct",
  name: "conn",
  size: 8,
  members: [
    { name: "op", type: btf.u32, offset: 0 },
    { name: "port", type: btf.u32, offset: 4 },
  ],
};
const connCodec: Codec<{ op: number; port: number }> = {
  size: 8,
  encode: (v) => {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(v.op, 0);
    b.writeUInt32LE(v.port, 4);
    return b;
  },
  decode: (b) => ({ op: b.readUInt32LE(0), port: b.readUInt32LE(4) }),
};

/** On ESTABLISHED (4, 5): v = bpf_sk_storage_get(&conns, sk, 0, F_CREATE); v->op = op. */
const recorder: ProgramSpec = {
  name: "bench_record",
  type: "SOCK_OPS",
  instructions: [
    mov(R6, R1),
    ldx("W", R7, R6, 0),
    jeq(R7, 4, "est"),
    jeq(R7, 5, "est"),
    mov(R0, 1),
    exit(),
    label("est"),
    ldx("DW", R2, R6, 184),
    jeq(R2, 0, "out"),
    ldMap(R1, "conns"),
    mov(R3, 0),
    mov(R4, 1),
    call("sk_storage_get"),
    jeq(R0, 0, "out"),
    stx("W", R0, 0, R7),
    ldx("W", R1, R6, 64),
    stx("W", R0, 4, R1),
    label("out"),
    mov(R0, 1),
    exit(),
  ],
};

/**
 * A ~500-instruction sock_ops program with labels and forward jumps the verifier can prove dead
 * (r7 is masked to 16 bits, so `r7 > 0xffff0` is never true): one path, cheap to verify, so the
 * load time is dominated by the loader and the per-instruction verifier work.
 */
function bigProgram(blocks = 124): ProgramSpec {
  const body: Item[] = [mov(R6, R1), mov(R7, 0)];
  for (let i = 0; i < blocks; i++) {
    body.push(add(R7, i + 1), and(R7, 0xffff), jgt(R7, 0xffff0, "out"), ldx("W", R2, R6, 0));
  }
  body.push(label("out"), mov(R0, 1), exit());
  return { name: "bench_big", type: "SOCK_OPS", instructions: body };
}

function ownCgroup(mount: string): string {
  const line = readFileSync("/proc/self/cgroup", "utf8").split("\n").find((l) => l.startsWith("0::"));
  return join(mount, line ? line.slice(3) : "/");
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error("bench:bpf needs root (bpf, cgroups)");
    process.exit(1);
  }
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? os.arch();
  console.log(`# eBPF toolkit micro-benchmark`);
  console.log(`machine: ${cpu}, ${os.cpus().length} CPUs; node ${process.version}; Linux ${os.release()} ${os.arch()}`);
  console.log(
    `method: median of ${ROUNDS} rounds after one warm-up round; (a) ${LOOKUPS.toLocaleString("en")} lookups per round of the same ` +
      `socket fd key, value decoded to an object; (b) encode ×2000 and encode+load ×50 per round of a ` +
      `${slotCount(bigProgram().instructions)}-slot program.`,
  );

  const mount = findCgroup2Mount();
  const home = ownCgroup(mount);
  const cgPath = join(mount, `toa-bench-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`);
  mkdirSync(cgPath);
  const cleanup: (() => void)[] = [() => rmdirSync(cgPath)];
  const rows: [string, number, string][] = [];
  try {
    const conns = BpfMap.create(
      { name: "bench_conns", type: "SK_STORAGE", keySize: 4, valueSize: 8, maxEntries: 0, key: btf.s32, value: connType },
      { key: codec.s32, value: connCodec },
    );
    cleanup.unshift(() => conns.close());
    const prog = Program.load(recorder, { maps: { conns } });
    cleanup.unshift(() => prog.close());
    const link = attachCgroup(cgPath, prog, "CGROUP_SOCK_OPS");
    cleanup.unshift(() => link.detach());

    // A connection made inside the cgroup: both ends get sk_storage.
    writeFileSync(join(cgPath, "cgroup.procs"), `${process.pid}\n`);
    let server: net.Server;
    let client: net.Socket;
    let accepted: net.Socket;
    try {
      server = net.createServer();
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      const acceptedP = once(server, "connection") as Promise<[net.Socket]>;
      client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
      await once(client, "connect");
      [accepted] = await acceptedP;
    } finally {
      writeFileSync(join(home, "cgroup.procs"), `${process.pid}\n`);
    }
    cleanup.unshift(() => {
      client.destroy();
      accepted.destroy();
      server.close();
    });
    const fd = (accepted as unknown as { _handle: { fd: number } })._handle.fd;
    const stored = conns.lookup(fd);
    if (!stored || stored.op !== 5) throw new Error(`sk_storage not filled for fd ${fd}: ${JSON.stringify(stored)}`);

    const hash = BpfMap.create({ name: "bench_hash", type: "HASH", keySize: 4, valueSize: 8, maxEntries: 1024 }, { key: codec.s32, value: connCodec });
    cleanup.unshift(() => hash.close());
    hash.update(fd, stored);
    const jsMap = new Map<number, { op: number; port: number }>([[fd, stored]]);

    const jsNs = measure(LOOKUPS, () => jsMap.get(fd));
    const hashNs = measure(LOOKUPS, () => hash.lookup(fd));
    const skNs = measure(LOOKUPS, () => conns.lookup(fd));
    const skRawNs = measure(LOOKUPS, () => conns.lookupRaw(fd));
    rows.push(["JS `Map.get(fd)` (baseline)", jsNs, "1×"]);
    rows.push(["HASH `map.lookup(fd)` (bpf syscall)", hashNs, `${(hashNs / jsNs).toFixed(0)}× JS`]);
    rows.push(["SK_STORAGE `map.lookup(fd)` (bpf syscall)", skNs, `${(skNs / jsNs).toFixed(0)}× JS, ${(skNs / hashNs).toFixed(2)}× HASH`]);
    rows.push(["SK_STORAGE `map.lookupRaw(fd)` (no decode)", skRawNs, `${(skRawNs / jsNs).toFixed(0)}× JS, ${(skRawNs / hashNs).toFixed(2)}× HASH`]);

    const big = bigProgram();
    const encodeNs = measure(2000, () => encode(big.instructions));
    const loadNs = measure(50, () => Program.load(big).close());
    const stats = Program.load(big, { stats: true });
    const processed = stats.verifierStats?.processedInstructions;
    stats.close();
    rows.push([`encode() of a ${slotCount(big.instructions)}-slot program`, encodeNs, "1×"]);
    rows.push([`encode + Program.load (verifier: ${processed} insns processed)`, loadNs, `${(loadNs / encodeNs).toFixed(0)}× encode`]);
  } finally {
    for (const f of cleanup) {
      try {
        f();
      } catch (e) {
        console.error(`cleanup: ${(e as Error).message}`);
      }
    }
  }

  const fmt = (ns: number) => (ns >= 10_000 ? `${(ns / 1000).toFixed(1)} µs` : ns < 10 ? `${ns.toFixed(1)} ns` : `${ns.toFixed(0)} ns`);
  console.log("");
  console.log("| operation | median per op | ratio |");
  console.log("|---|---:|---|");
  for (const [name, ns, ratio] of rows) console.log(`| ${name} | ${fmt(ns)} | ${ratio} |`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
