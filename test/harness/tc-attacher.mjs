// Attaches a small SCHED_CLS program to a device with the toolkit's attachTc, from inside the network
// namespace it was started in (nsenter --net: ifindexes and tc act in the caller's namespace). The
// program counts every packet (ARRAY slot 0) and drops IPv4 TCP to `dropPort` (slot 1 counts drops).
// Answers one JSON line per stdin command: "counts", "query", "detach", "exit".
// Usage: node tc-attacher.mjs '{"bpf": ".../dist/src/bpf/index.js", "ifname": "x", "direction": "ingress",
//   "mode": "tcx" | "netlink", "dropPort": 9999}'
// or, to remove what a crashed attacher left: '{"bpf": "...", "ifname": "x", "cleanup": true}'
import { createInterface } from "node:readline";

const { bpf: bpfModule, ifname, direction, mode, dropPort, cleanup } = JSON.parse(process.argv[2]);
const bpf = await import(bpfModule);
const { add, atomicAdd, and, call, exit, FP, jne, label, ldMap, ldx, lsh, mov, R0, R1, R2, R3, R4, R6, R7, st } = bpf.asm;
const say = (o) => process.stdout.write(`${JSON.stringify(o, (_, v) => (typeof v === "bigint" ? Number(v) : v))}\n`);

if (cleanup) {
  const ifindex = bpf.ifindexOf(ifname);
  say({ event: "cleaned", removed: bpf.removeTcFilters(ifindex), tcx: bpf.queryTcx(ifindex, "ingress") });
  process.exit(0);
}

const counts = bpf.BpfMap.create({ name: "tc_counts", type: "ARRAY", keySize: 4, valueSize: 8, maxEntries: 2 }, { key: bpf.codec.u32, value: bpf.codec.u64 });

/** counts[slot] += 1; clobbers r0-r5. */
const count = (slot) => [
  st("W", FP, -4, slot),
  ldMap(R1, "counts"),
  mov(R2, FP),
  add(R2, -4),
  call("map_lookup_elem"),
  jne(R0, 0, `have${slot}`),
  ...[mov(R0, bpf.TcAction.OK), exit()],
  label(`have${slot}`),
  mov(R1, 1),
  atomicAdd("DW", R0, 0, R1),
];
const htons = (v) => ((v & 0xff) << 8) | (v >> 8);
const loadBytes = (offsetReg, into, len) => [mov(R1, R6), mov(R2, offsetReg), mov(R3, FP), add(R3, into), mov(R4, len), call("skb_load_bytes")];

const instructions = [
  mov(R6, R1), // the __sk_buff
  ...count(0),
  ldx("W", R2, R6, 16), // __sk_buff.protocol, network order
  jne(R2, htons(0x0800), "pass"),
  mov(R7, 14), // the IPv4 header follows the Ethernet header
  ...loadBytes(R7, -32, 20),
  jne(R0, 0, "pass"),
  ldx("B", R2, FP, -32 + 9), // protocol
  jne(R2, 6, "pass"),
  ldx("B", R7, FP, -32), // version + IHL
  and(R7, 0xf),
  lsh(R7, 2),
  add(R7, 14 + 2), // the TCP destination port
  ...loadBytes(R7, -36, 2),
  jne(R0, 0, "pass"),
  ldx("H", R2, FP, -36),
  jne(R2, htons(dropPort), "pass"),
  ...count(1),
  mov(R0, bpf.TcAction.SHOT),
  exit(),
  label("pass"),
  mov(R0, bpf.TcAction.OK),
  exit(),
];
const program = bpf.Program.load({ name: "tc_test", type: "SCHED_CLS", instructions }, { maps: { counts } });
const attachment = bpf.attachTc(ifname, program, direction, { mode });
const query = () => ({ tcx: bpf.queryTcx(attachment.ifindex, direction), filters: bpf.listTcFilters(attachment.ifindex, direction) });
say({ event: "attached", mode: attachment.mode, ifindex: attachment.ifindex, programId: attachment.programId, filter: attachment.filter, ...query() });

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = line.trim();
  if (cmd === "counts") say({ event: "counts", packets: counts.lookup(0), dropped: counts.lookup(1) });
  else if (cmd === "query") say({ event: "query", ...query() });
  else if (cmd === "detach") {
    attachment.detach();
    say({ event: "detached", ...query() });
  } else if (cmd === "exit") break;
}
program.close();
counts.close();
