/** The splice verdict program's shape and map specs, and the dataPath config field (no kernel). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { asm } from "../../src/bpf/index.js";
import { SplicePeer, spliceMapSpecs, spliceVerdictProgram } from "../../src/programs/splice.js";
import { validateConfig } from "../../src/lb/config.js";

test("splice verdict: SK_SKB, bare FIN dropped, cookie lookup, byte count, redirect to the peer's egress", () => {
  const spec = spliceVerdictProgram();
  assert.equal(spec.type, "SK_SKB");
  assert.equal(spec.license, "GPL");
  const insns = spec.instructions.filter((i): i is asm.Instruction => i.kind === "insn");
  const calls = insns.filter((i) => i.opcode === 0x85).map((i) => i.imm);
  assert.deepEqual(calls, [asm.Helper.get_socket_cookie, asm.Helper.map_lookup_elem, asm.Helper.sk_redirect_map]);
  assert.deepEqual(insns.filter((i) => i.mapRef).map((i) => i.mapRef), ["splice_peers", "splice_socks"]);
  // One atomic add of skb->len into the peer value's byte counter.
  const atomics = insns.filter((i) => i.opcode === (0x03 | 0xc0 | 0x18));
  assert.equal(atomics.length, 1);
  assert.equal(atomics[0].off, SplicePeer.bytes);
  // r4 = 0 (egress of the peer) right before the redirect.
  const redirect = insns.findIndex((i) => i.imm === asm.Helper.sk_redirect_map && i.opcode === 0x85);
  assert.deepEqual([insns[redirect - 1].opcode, insns[redirect - 1].dst, insns[redirect - 1].imm], [0xb7, 4, 0]);
  assert.ok(insns.length < 40, `${insns.length} instructions`);
});

test("splice maps: two sockmaps with u64 values (fd in, cookie out) and the cookie → peer hash", () => {
  const m = spliceMapSpecs(100);
  assert.deepEqual([m.socks.type, m.socks.keySize, m.socks.valueSize, m.socks.maxEntries], ["SOCKMAP", 4, 8, 200]);
  assert.deepEqual([m.verdict.type, m.verdict.maxEntries], ["SOCKMAP", 200]);
  assert.deepEqual([m.peers.type, m.peers.keySize, m.peers.valueSize], ["HASH", 8, 16]);
});

test("dataPath: global default js, per-listener override, bad values refused", () => {
  const pools = { p: { backends: ["192.0.2.1:80"] } };
  const c = validateConfig({ dataPath: "kernel", listeners: [{ listen: "192.0.2.2:80", mode: "none" }, { listen: "192.0.2.2:81", mode: "none", dataPath: "js" }], pools }, "t");
  assert.deepEqual(c.listeners.map((l) => l.dataPath), ["kernel", "js"]);
  assert.equal(validateConfig({ listeners: [{ listen: "192.0.2.2:80" }], pools }, "t").listeners[0].dataPath, "js");
  assert.throws(() => validateConfig({ dataPath: "fast", listeners: [{ listen: "192.0.2.2:80" }], pools }, "t"), /dataPath: must be one of auto, packet, kernel, js; got "fast"/);
});
