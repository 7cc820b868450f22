/**
 * The sender never goes beyond the 40-byte TCP option space: when another program has taken the
 * room, the TOA is skipped and counted, and the connection works as before. A "filler" sock_ops
 * program attached first reserves and writes 24 bytes on every packet; with the 12 bytes of timestamps
 * that leaves 4, too little for 8.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { requireRoot } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { asm, attachCgroup, Program } from "../../src/bpf/index.js";
import { ToaSender } from "../../src/lb/sender/toa-sender.js";
import { CbFlag, Op, SockOps } from "../../src/bpf/uapi.js";

const { add, call, exit, FP, ja, jne, label, ldx, mov, or, R0, R1, R2, R3, R4, R6, st } = asm;

function fillerProgram(bytes: number) {
  return {
    name: "test_filler",
    type: "SOCK_OPS" as const,
    instructions: [
      mov(R6, R1),
      ldx("W", R2, R6, SockOps.op),
      jne(R2, Op.TCP_CONNECT_CB, "len"),
      ldx("W", R2, R6, SockOps.cbFlags),
      or(R2, CbFlag.WRITE_HDR_OPT),
      mov(R1, R6),
      call("sock_ops_cb_flags_set"),
      label("len"),
      ldx("W", R2, R6, SockOps.op),
      jne(R2, Op.HDR_OPT_LEN_CB, "write"),
      mov(R1, R6),
      mov(R2, bytes),
      mov(R3, 0),
      call("reserve_hdr_opt"),
      ja("out"),
      // Reserved room is a pool shared by all programs: fill it, or the sender would write there.
      label("write"),
      jne(R2, Op.WRITE_HDR_OPT_CB, "out"),
      ...[-32, -24, -16, -8].map((off) => st("DW", FP, off, 0)),
      st("B", FP, -32, 100), // an unassigned kind
      st("B", FP, -31, bytes),
      mov(R1, R6),
      mov(R2, FP),
      add(R2, -32),
      mov(R3, bytes),
      mov(R4, 0),
      call("store_hdr_opt"),
      label("out"),
      mov(R0, 1),
      exit(),
    ],
  };
}

async function exchange(cg: { inside<T>(fn: () => Promise<T> | T): Promise<T> }, sender: ToaSender, localPort: number): Promise<string> {
  return cg.inside(async () => {
    const server = net.createServer((s) => s.end("pong"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      sender.register({ localAddress: "127.0.0.1", localPort, remoteAddress: "127.0.0.1", remotePort: port }, { address: "198.51.100.2", port: 4242 });
      const c = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.1", localPort });
      let got = "";
      c.on("data", (d) => (got += d.toString()));
      c.write("ping");
      await new Promise((r) => c.on("close", r));
      return got;
    } finally {
      server.close();
    }
  });
}

test("a TOA that doesn't fit the option space is skipped and counted; the connection still works", async (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t, "toa-snd-space");
  const filler = Program.load(fillerProgram(24));
  const fillerLink = attachCgroup(cg.path, filler, "CGROUP_SOCK_OPS");
  const sender = ToaSender.open({ cgroupPath: cg.path });
  try {
    assert.equal(await exchange(cg, sender, 41001), "pong");
    const c = sender.counters();
    assert.equal(c.written, 0, JSON.stringify(c));
    assert.ok(c.skippedNoSpace >= 1, JSON.stringify(c));
  } finally {
    sender.close();
    fillerLink.detach();
    filler.close();
  }
});

test("with room (a 12-byte neighbour), the TOA is written next to the other option", async (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t, "toa-snd-room");
  const filler = Program.load(fillerProgram(12));
  const fillerLink = attachCgroup(cg.path, filler, "CGROUP_SOCK_OPS");
  const sender = ToaSender.open({ cgroupPath: cg.path });
  try {
    assert.equal(await exchange(cg, sender, 41002), "pong");
    const c = sender.counters();
    assert.ok(c.written >= 1, JSON.stringify(c));
    assert.equal(c.skippedNoSpace, 0, JSON.stringify(c));
  } finally {
    sender.close();
    fillerLink.detach();
    filler.close();
  }
});
