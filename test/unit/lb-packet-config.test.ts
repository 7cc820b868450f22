/** `dataPath: packet` in the config: what it accepts and what it refuses, naming the field; and the program's shape. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { validateConfig } from "../../src/lb/config.js";
import { ConfigError } from "../../src/lb/errors.js";
import { natProgram } from "../../src/programs/nat/index.js";
import { asm } from "../../src/bpf/index.js";

const base = (listener: Record<string, unknown>, pool: Record<string, unknown> = {}, top: Record<string, unknown> = {}) => ({
  listeners: [{ name: "web", listen: "198.51.100.1:80", pool: "web", dataPath: "packet", ...listener }],
  pools: { web: { backends: ["203.0.113.10:80", "203.0.113.11:80"], ...pool } },
  ...top,
});

function refused(raw: unknown): string {
  try {
    validateConfig(raw, "lb.yaml");
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return (e as Error).message;
  }
  assert.fail("config accepted");
}

test("dataPath packet: toa and none are accepted, with defaults for the packet block", () => {
  const c = validateConfig(base({}), "lb.yaml");
  assert.equal(c.listeners[0].dataPath, "packet");
  assert.deepEqual(
    { ...c.packet, interfaces: [...c.packet.interfaces] },
    { maxConnections: 65536, mtu: 1500, interfaces: [], closedTimeoutMs: 2_000, maxHalfOpen: 16384, synTimeoutMs: 5_000, instance: "default", pinDir: "/sys/fs/bpf/toa-lb/default" },
  );
  const n = validateConfig(base({ mode: "none" }, { scheduler: "source-hash" }, { packet: { maxConnections: 1000, mtu: 9000, interfaces: ["eth0"], closedTimeout: "2s" } }), "lb.yaml");
  assert.equal(n.packet.maxConnections, 1000);
  assert.equal(n.packet.closedTimeoutMs, 2000);
  assert.equal(n.packet.maxHalfOpen, 250, "a quarter of maxConnections by default");
  const h = validateConfig(base({}, {}, { packet: { maxConnections: 32, maxHalfOpen: 100, synTimeout: "1s" } }), "lb.yaml");
  assert.deepEqual([h.packet.maxHalfOpen, h.packet.synTimeoutMs], [100, 1000]);
  assert.equal(validateConfig(base({}, {}, { packet: { maxConnections: 32 } }), "lb.yaml").packet.maxHalfOpen, 16, "at least 16");
  assert.deepEqual([...n.packet.interfaces], ["eth0"]);
});

test("instance: names the pin folder unless packet.pinDir does; --instance overrides the file; bad names and folders are refused by field", () => {
  const named = validateConfig(base({}, {}, { instance: "blue" }), "lb.yaml");
  assert.deepEqual([named.instance, named.packet.instance, named.packet.pinDir], ["blue", "blue", "/sys/fs/bpf/toa-lb/blue"]);
  const over = validateConfig(base({}, {}, { instance: "blue" }), "lb.yaml", { instance: "green" });
  assert.deepEqual([over.instance, over.packet.pinDir], ["green", "/sys/fs/bpf/toa-lb/green"]);
  const dir = validateConfig(base({}, {}, { instance: "blue", packet: { pinDir: "/sys/fs/bpf/lb/blue/" } }), "lb.yaml");
  assert.equal(dir.packet.pinDir, "/sys/fs/bpf/lb/blue");
  assert.match(refused(base({}, {}, { instance: "a.b" })), /lb\.yaml: instance: must be 1-32 letters, digits, '_' or '-'/);
  assert.match(refused(base({}, {}, { packet: { pinDir: "relative/dir" } })), /packet\.pinDir: must be an absolute folder on bpffs/);
  assert.match(refused(base({}, {}, { packet: { pinDir: "/sys/fs/bpf/toa.lb" } })), /packet\.pinDir: bpffs refuses names with a dot; use e\.g\. \/sys\/fs\/bpf\/toa-lb/);
});

test("dataPath packet refuses what it can't do, naming the field and the way out", () => {
  assert.match(refused(base({ mode: "proxy-v1" })), /lb\.yaml: listeners\[0\]\.mode: proxy-v1 is text whose length varies per client; .* \(use proxy-v2, or dataPath js for proxy-v1\)/);
  assert.match(refused(base({}, { scheduler: "least-connections" })), /listeners\[0\]\.dataPath: packet: pool web uses least-connections/);
  assert.match(refused(base({ listen: "0.0.0.0:80" })), /listeners\[0\]\.listen: dataPath packet needs a specific address and port/);
  assert.match(refused(base({}, { backends: ["[2001:db8:2::10]:80"] })), /backend \[2001:db8:2::10\]:80 is IPv6 but the listener is IPv4/);
  assert.match(refused(base({}, {}, { packet: { mtu: 100 } })), /packet\.mtu/);
  assert.match(refused(base({}, {}, { packet: { interfaces: "eth0" } })), /packet\.interfaces: must be a list of device names/);
  assert.match(refused(base({}, {}, { packet: { ports: 1 } })), /packet/);
  assert.match(refused(base({}, {}, { packet: { maxHalfOpen: 3 } })), /packet\.maxHalfOpen/);
  assert.match(refused(base({}, {}, { packet: { synTimeout: "10ms" } })), /packet\.synTimeout/);
  // 130 backends × 2 local addresses: 260 slot entries, 256 at most; one address is fine.
  const many = Array.from({ length: 130 }, (_, i) => `203.0.113.${i + 1}:80`);
  assert.match(
    refused(base({}, { backends: many, sourceAddresses: ["198.51.100.1", "198.51.100.2"] })),
    /listeners\[0\]\.dataPath: packet: pool web has 130 backends × 2 sourceAddresses = 260 slot entries, at most 256; use fewer sourceAddresses or split the pool/,
  );
  assert.doesNotThrow(() => validateConfig(base({}, { backends: many, sourceAddresses: ["198.51.100.1", "2001:db8::1"] }), "lb.yaml"));
});

test("the NAT program: a tc program that redirects, grows the packet for the TOA and fixes checksums", () => {
  const spec = natProgram();
  assert.equal(spec.type, "SCHED_CLS");
  const calls = new Set(spec.instructions.filter((i): i is asm.Instruction => "opcode" in i && i.opcode === 0x85).map((i) => i.imm));
  for (const h of ["redirect_neigh", "skb_change_tail", "csum_diff", "l3_csum_replace", "l4_csum_replace", "skb_store_bytes", "skb_load_bytes"] as const) {
    assert.ok(calls.has(asm.Helper[h]), `uses bpf_${h}`);
  }
  // Labels resolve and it encodes (the verifier itself runs in test/priv/lb-packet.test.ts).
  assert.ok(asm.encode(spec.instructions, () => 3).length > 0);
});
