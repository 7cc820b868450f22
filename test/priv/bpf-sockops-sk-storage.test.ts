/**
 * A sock_ops program written with the DSL stores per-connection facts in an sk_storage map, and
 * TypeScript reads them back by socket fd, for the server's and the client's socket.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { requireRoot } from "../harness/privileged.js";
import { createTestCgroup } from "../harness/cgroup.js";
import { attachCgroup, BpfMap, btf, type BtfType, codec, type Codec, Program, type ProgramSpec } from "../../src/bpf/index.js";
import { call, exit, ja, jeq, label, ldMap, ldx, mov, R0, R1, R2, R3, R4, R6, R7, R8, R9, stx } from "../../src/bpf/asm/index.js";

const ACTIVE_ESTABLISHED_CB = 4;
const PASSIVE_ESTABLISHED_CB = 5;

/** struct conn_seen { __u32 op; __u32 remote_port; __u32 local_port; __u32 family; } */
const connSeen: BtfType = {
  kind: "struct",
  name: "conn_seen",
  size: 16,
  members: [
    { name: "op", type: btf.u32, offset: 0 },
    { name: "remote_port", type: btf.u32, offset: 4 },
    { name: "local_port", type: btf.u32, offset: 8 },
    { name: "family", type: btf.u32, offset: 12 },
  ],
};
interface ConnSeen {
  op: number;
  remotePort: number;
  localPort: number;
  family: number;
}
const connSeenCodec: Codec<ConnSeen> = {
  size: 16,
  encode: (v) => {
    const b = Buffer.alloc(16);
    b.writeUInt32LE(v.op, 0);
    b.writeUInt32LE(v.remotePort, 4);
    b.writeUInt32LE(v.localPort, 8);
    b.writeUInt32LE(v.family, 12);
    return b;
  },
  decode: (b) => ({
    op: b.readUInt32LE(0),
    // bpf_sock_ops.remote_port holds the network-order port in its upper 16 bits on
    // little-endian hosts (sock_ops_convert_ctx_access shifts skc_dport left by 16): bytes 2..3.
    remotePort: b.readUInt16BE(6),
    // local_port is in host order.
    localPort: b.readUInt32LE(8),
    family: b.readUInt32LE(12),
  }),
};

/** On ESTABLISHED: v = bpf_sk_storage_get(&seen, skops->sk, 0, F_CREATE); v->op = op; ... */
const recorder: ProgramSpec = {
  name: "test_skstore",
  type: "SOCK_OPS",
  instructions: [
    mov(R6, R1), //                                  r6 = skops
    ldx("W", R7, R6, 0), //                          r7 = skops->op
    jeq(R7, ACTIVE_ESTABLISHED_CB, "established"),
    jeq(R7, PASSIVE_ESTABLISHED_CB, "established"),
    ja("out"),
    label("established"),
    ldx("DW", R2, R6, 184), //                       r2 = skops->sk (8-byte load)
    jeq(R2, 0, "out"), //                            if (!sk) goto out
    ldx("W", R8, R6, 64), //                         r8 = skops->remote_port
    ldx("W", R9, R6, 68), //                         r9 = skops->local_port
    ldMap(R1, "seen"),
    mov(R3, 0),
    mov(R4, 1), //                                   BPF_SK_STORAGE_GET_F_CREATE
    call("sk_storage_get"),
    jeq(R0, 0, "out"),
    stx("W", R0, 0, R7),
    stx("W", R0, 4, R8),
    stx("W", R0, 8, R9),
    ldx("W", R1, R6, 20), //                         r1 = skops->family
    stx("W", R0, 12, R1),
    label("out"),
    mov(R0, 1),
    exit(),
  ],
};

const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

test("sock_ops program stores per-socket values in sk_storage; TypeScript reads them by fd", async (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t);
  const seen = BpfMap.create<number, ConnSeen>(
    { name: "test_seen", type: "SK_STORAGE", keySize: 4, valueSize: 16, maxEntries: 0, key: btf.s32, value: connSeen },
    { key: codec.s32, value: connSeenCodec },
  );
  t.after(() => seen.close());
  const prog = Program.load(recorder, { maps: { seen } });
  t.after(() => prog.close());
  const attachment = attachCgroup(cg.path, prog, "CGROUP_SOCK_OPS");
  t.after(() => attachment.detach());

  const { server, client, accepted } = await cg.inside(async () => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const acceptedP = once(server, "connection") as Promise<[net.Socket]>;
    const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
    await once(client, "connect");
    const [accepted] = await acceptedP;
    return { server, client, accepted };
  });
  t.after(() => {
    client.destroy();
    accepted.destroy();
    server.close();
  });
  const serverPort = (server.address() as net.AddressInfo).port;
  const clientPort = client.localPort!;

  const onServer = seen.lookup(fdOf(accepted));
  assert.deepEqual(onServer, { op: PASSIVE_ESTABLISHED_CB, remotePort: clientPort, localPort: serverPort, family: 2 });
  const onClient = seen.lookup(fdOf(client));
  assert.deepEqual(onClient, { op: ACTIVE_ESTABLISHED_CB, remotePort: serverPort, localPort: clientPort, family: 2 });
  // The listening socket never reached ESTABLISHED: no storage.
  assert.equal(seen.lookup(fdOf(server as unknown as net.Socket)), undefined);
});

test("sockets made outside the test cgroup get no sk_storage", async (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t);
  const seen = BpfMap.create<number, ConnSeen>(
    { name: "test_seen2", type: "SK_STORAGE", keySize: 4, valueSize: 16, maxEntries: 0, key: btf.s32, value: connSeen },
    { key: codec.s32, value: connSeenCodec },
  );
  t.after(() => seen.close());
  const prog = Program.load(recorder, { maps: { seen } });
  t.after(() => prog.close());
  const attachment = attachCgroup(cg.path, prog, "CGROUP_SOCK_OPS");
  t.after(() => attachment.detach());

  const server = net.createServer();
  t.after(() => server.close());
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const acceptedP = once(server, "connection") as Promise<[net.Socket]>;
  const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  t.after(() => client.destroy());
  await once(client, "connect");
  const [accepted] = await acceptedP;
  t.after(() => accepted.destroy());
  assert.equal(seen.lookup(fdOf(client)), undefined);
  assert.equal(seen.lookup(fdOf(accepted)), undefined);
});
