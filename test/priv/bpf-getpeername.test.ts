/**
 * cgroup/getpeername4 and getpeername6 programs rewrite what a Node server inside the test cgroup
 * sees as its peer; invalid programs fail with the verifier's own words in VerifierError.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { requireRoot } from "../harness/privileged.js";
import { createTestCgroup, type TestCgroup } from "../harness/cgroup.js";
import { attachCgroup, Program, type ProgramSpec, VerifierError } from "../../src/bpf/index.js";
import { exit, type Item, ldx, mov, mov32, R0, R1, R2, stx } from "../../src/bpf/asm/index.js";

/** A u32 whose in-memory (little-endian) bytes are `bytes`: how network-order fields are stored. */
const wordOf = (bytes: number[]) => Buffer.from(bytes).readUInt32LE(0);

// struct bpf_sock_addr: user_ip4 at 4, user_ip6[4] at 8..20, user_port at 24 (network order, low 16 bits).
const port4242 = wordOf([0x10, 0x92, 0, 0]);

/** ctx->user_ip4 = 192.0.2.7; ctx->user_port = htons(4242); return 1; */
const peer4: ProgramSpec = {
  name: "test_getpeer4",
  type: "CGROUP_SOCK_ADDR",
  expectedAttachType: "CGROUP_INET4_GETPEERNAME",
  instructions: [mov32(R2, wordOf([192, 0, 2, 7])), stx("W", R1, 4, R2), mov32(R2, port4242), stx("W", R1, 24, R2), mov(R0, 1), exit()],
};

/** ctx->user_ip6 = 2001:db8::7; ctx->user_port = htons(4242); return 1; */
const ip6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
const peer6: ProgramSpec = {
  name: "test_getpeer6",
  type: "CGROUP_SOCK_ADDR",
  expectedAttachType: "CGROUP_INET6_GETPEERNAME",
  instructions: [
    ...[0, 1, 2, 3].flatMap((i): Item[] => [mov32(R2, wordOf(ip6.slice(4 * i, 4 * i + 4))), stx("W", R1, 8 + 4 * i, R2)]),
    mov32(R2, port4242),
    stx("W", R1, 24, R2),
    mov(R0, 1),
    exit(),
  ],
};

/** A server and a client inside the cgroup; resolves with the server's accepted socket. */
async function connectInside(t: TestContext, cg: TestCgroup, host: string): Promise<{ accepted: net.Socket; client: net.Socket }> {
  return cg.inside(async () => {
    const server = net.createServer();
    server.listen(0, host);
    await once(server, "listening");
    t.after(() => server.close());
    const acceptedP = once(server, "connection") as Promise<[net.Socket]>;
    const client = net.connect((server.address() as net.AddressInfo).port, host);
    t.after(() => client.destroy());
    await once(client, "connect");
    const [accepted] = await acceptedP;
    t.after(() => accepted.destroy());
    return { accepted, client };
  });
}

test("cgroup/getpeername4 rewrites the peer a Node server sees to 192.0.2.7:4242", async (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t);
  const prog = Program.load(peer4);
  t.after(() => prog.close());
  const attachment = attachCgroup(cg.path, prog, "CGROUP_INET4_GETPEERNAME");
  t.after(() => attachment.detach());
  const { accepted, client } = await connectInside(t, cg, "127.0.0.1");
  assert.equal(accepted.remoteAddress, "192.0.2.7");
  assert.equal(accepted.remotePort, 4242);
  assert.equal(accepted.remoteFamily, "IPv4");
  // getsockname is a different hook: the local side is untouched.
  assert.equal(accepted.localAddress, "127.0.0.1");
  assert.equal(client.localAddress, "127.0.0.1");
});

test("cgroup/getpeername6 rewrites the peer a Node server on ::1 sees to 2001:db8::7", async (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t);
  const prog = Program.load(peer6);
  t.after(() => prog.close());
  const attachment = attachCgroup(cg.path, prog, "CGROUP_INET6_GETPEERNAME");
  t.after(() => attachment.detach());
  const { accepted } = await connectInside(t, cg, "::1");
  assert.equal(accepted.remoteAddress, "2001:db8::7");
  assert.equal(accepted.remotePort, 4242);
  assert.equal(accepted.remoteFamily, "IPv6");
});

test("without the program attached the peer is the real one (control)", async (t) => {
  if (!requireRoot(t)) return;
  const cg = createTestCgroup(t);
  const { accepted, client } = await connectInside(t, cg, "127.0.0.1");
  assert.equal(accepted.remoteAddress, "127.0.0.1");
  assert.equal(accepted.remotePort, client.localPort);
});

test("invalid programs fail with VerifierError carrying the verifier's log", async (t) => {
  if (!requireRoot(t)) return;
  // The errno is the verifier's: EACCES for memory-safety refusals, EINVAL for a bad return range
  // (check_return_code) or context access.
  const cases: { name: string; have: ProgramSpec; want: RegExp; errno: string }[] = [
    { name: "reads r2 uninitialised", have: { name: "test_bad_r2", type: "SOCK_OPS", instructions: [mov(R0, R2), exit()] }, want: /R2 !read_ok/, errno: "EACCES" },
    {
      name: "getpeername program returning 0",
      have: { name: "test_bad_ret", type: "CGROUP_SOCK_ADDR", expectedAttachType: "CGROUP_INET4_GETPEERNAME", instructions: [mov(R0, 0), exit()] },
      // 6.x prints "[1, 1]", 5.10 "(0x1; 0x0)"
      want: /should have been in (\[1, 1\]|\(0x1; 0x0\))/,
      errno: "EINVAL",
    },
    {
      name: "sock_ops reading skops->sk with a 4-byte load",
      have: { name: "test_bad_sk", type: "SOCK_OPS", instructions: [ldx("W", R2, R1, 184), mov(R0, 1), exit()] },
      want: /invalid bpf_context access off=184 size=4/,
      errno: "EACCES",
    },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      assert.throws(() => Program.load(c.have).close(), (e: unknown) => {
        assert.ok(e instanceof VerifierError, String(e));
        assert.equal(e.code, "BPF_ERR_VERIFIER");
        assert.equal(e.errnoName, c.errno);
        assert.match(e.log, c.want);
        assert.match(e.message, c.want);
        assert.match(e.message, new RegExp(`^load program ${c.have.name}: ${c.errno}`));
        return true;
      });
    });
  }
  await t.test("getpeername program without expected attach type: EINVAL before verification, empty log", () => {
    assert.throws(() => Program.load({ ...peer4, name: "test_no_eat", expectedAttachType: undefined }).close(), (e: unknown) => {
      assert.ok(e instanceof VerifierError, String(e));
      assert.equal(e.errnoName, "EINVAL");
      return true;
    });
  });
});
