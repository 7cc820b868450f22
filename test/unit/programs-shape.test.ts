import { test } from "node:test";
import assert from "node:assert/strict";
import { asm } from "../../src/bpf/index.js";
import { receiverProgram } from "../../src/programs/receiver.js";
import { getpeername4Program, getpeername6Program } from "../../src/programs/rewriter.js";
import { nat64LookupProgram } from "../../src/programs/nat64.js";
import { senderProgram } from "../../src/programs/sender.js";
import { MapName } from "../../src/programs/layout.js";

const allMaps = new Map(Object.values(MapName).map((n, i) => [n, 100 + i]));

test("every program encodes: labels resolve, maps are known, names are kernel-valid", () => {
  const specs = [
    receiverProgram({ kinds: [254, 253, 200], trust: true }),
    receiverProgram({ kinds: [200], trust: false, syn: false }),
    getpeername4Program(),
    getpeername6Program(),
    nat64LookupProgram(),
    senderProgram(),
  ];
  for (const spec of specs) {
    const bytes = asm.encode(spec.instructions, allMaps);
    assert.ok(bytes.length > 0 && bytes.length % 8 === 0, spec.name);
    assert.match(spec.name, /^[A-Za-z0-9_.]{1,15}$/);
    assert.ok(bytes.length / 8 < 4096, `${spec.name} fits the unprivileged 4096-instruction limit`);
  }
});

test("the receiver compares against exactly the configured kinds", () => {
  const kindsCompared = (kinds: number[]) => {
    const seen = new Set<number>();
    for (const i of receiverProgram({ kinds, trust: false }).instructions) {
      // jeq r3, K: the option-kind compare in the walk
      if (i.kind === "insn" && i.opcode === 0x15 && i.dst === 3 && /\.kind\.\d+$/.test(i.target ?? "")) seen.add(i.imm);
    }
    return [...seen].sort((a, b) => a - b);
  };
  assert.deepEqual(kindsCompared([254]), [254]);
  assert.deepEqual(kindsCompared([200, 253, 254]), [200, 253, 254]);
});

test("trust lookups appear only when a trust list is given", () => {
  const refs = (trust: boolean) => new Set(receiverProgram({ kinds: [254], trust }).instructions.flatMap((i) => (i.kind === "insn" && i.mapRef ? [i.mapRef] : [])));
  assert.ok(refs(true).has(MapName.trust4) && refs(true).has(MapName.trust6));
  assert.ok(!refs(false).has(MapName.trust4) && !refs(false).has(MapName.trust6));
});

test("sock_addr and sockopt programs set the expected attach type the kernel requires at load", () => {
  assert.equal(getpeername4Program().expectedAttachType, "CGROUP_INET4_GETPEERNAME");
  assert.equal(getpeername6Program().expectedAttachType, "CGROUP_INET6_GETPEERNAME");
  assert.equal(nat64LookupProgram().expectedAttachType, "CGROUP_GETSOCKOPT");
});

test("the disassembly of a rewriter reads like the C it replaces", () => {
  const text = asm.disassemble(getpeername4Program().instructions);
  assert.match(text, /call bpf_sk_storage_get/);
  assert.match(text, /\*\(W \*\)\(r6 \+ 4\) = r2/, "user_ip4 = p->addr");
  assert.match(text, /\*\(W \*\)\(r6 \+ 24\) = r2/, "user_port = p->port");
});
